#!/usr/bin/env bash
# Benchmarks alecryptd against Vault Transit on this machine with one command.
#
# Starts a fresh alecryptd (embedded keystore in a temporary directory, one
# aes-256-gcm key as the default alias, metrics listener off) and a Vault dev
# server (transit enabled, an aes256-gcm96 key), runs alebench against both
# side by side, then times alecryptd's start on a keystore of 10,000 keys and
# reads its RSS. Everything started is stopped, by process id, on exit.
#
#   test/bench/run.sh                 the full sweep (about 7 minutes) and startup (2)
#   test/bench/run.sh --quick         a short run that checks the whole path works
#   test/bench/run.sh --shared        servers and load generator share every core
#   test/bench/run.sh --no-startup    skip the 10,000-key startup measurement
#   test/bench/run.sh --no-sweep      only the startup measurement
#   test/bench/run.sh -- --json       extra alebench flags after --
#   test/bench/run.sh --floors [...]  our paths next to their floors instead (test/bench/floors.sh)
#
# By default the servers run on CPU 0 and the load generator on CPU 1
# (taskset), so the load generator never competes with the server it
# measures; each server then has one core (GOMAXPROCS 1). BENCHMARKS.md
# explains how to read the numbers.
set -euo pipefail
cd "$(dirname "$0")/../.."

quick=0
pinned=1
sweep=1
startup=1
extra=()
while [ $# -gt 0 ]; do
  case "$1" in
    --quick) quick=1 ;;
    --no-startup) startup=0 ;;
    --no-sweep) sweep=0 ;;
    --shared) pinned=0 ;;
    --floors) shift; exec bash test/bench/floors.sh "$@" ;;
    --) shift; extra=("$@"); break ;;
    -h|--help) sed -n '2,21p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "run.sh: unknown argument $1 (alebench flags go after --)" >&2; exit 2 ;;
  esac
  shift
done

work=$(mktemp -d "${TMPDIR:-/tmp}/alebench.XXXXXX")
pids=()
cleanup() {
  for pid in "${pids[@]}"; do
    kill -TERM "$pid" 2>/dev/null || true
  done
  for pid in "${pids[@]}"; do
    wait "$pid" 2>/dev/null || true
  done
  rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

log() { printf '== %s\n' "$*" >&2; }

log "building alecryptd and alebench"
go build -o "$work/bin/" ./cmd/alecryptd ./cmd/alebench
bench="$work/bin/alebench"

# free_port prints a loopback port nothing listens on (bash's /dev/tcp fails
# to connect to a free port).
free_port() {
  local p
  for _ in $(seq 100); do
    p=$((20000 + RANDOM % 40000))
    if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then
      echo "$p"
      return
    fi
  done
  echo "run.sh: no free port found" >&2
  return 1
}

# wait_for_log FILE PATTERN SECONDS PID: waits for a line in a log file.
wait_for_log() {
  local file=$1 pattern=$2 secs=$3 pid=$4
  for _ in $(seq $((secs * 10))); do
    grep -q "$pattern" "$file" 2>/dev/null && return 0
    kill -0 "$pid" 2>/dev/null || { echo "run.sh: process $pid exited:" >&2; tail -20 "$file" >&2; return 1; }
    sleep 0.1
  done
  echo "run.sh: no '$pattern' in $file after ${secs}s" >&2
  tail -20 "$file" >&2
  return 1
}

# Server and load-generator CPU sets: CPU 0 and CPU 1, or everything.
server_cpus=()
bench_cpus=()
if [ "$pinned" = 1 ]; then
  if [ "$(nproc)" -ge 2 ] && command -v taskset >/dev/null; then
    server_cpus=(taskset -c 0)
    bench_cpus=(taskset -c 1)
  else
    log "fewer than 2 CPUs or no taskset: servers and load generator share the cores"
    pinned=0
  fi
fi

if [ "$sweep" = 1 ]; then
  vault_bin=$(bash test/vault/build-vault.sh)

  log "starting alecryptd (fresh keystore, aes-256-gcm default key, metrics off)"
  mkdir -p "$work/alecrypt"
  "$bench" genkeys --n 1 --algorithm aes-256-gcm --out "$work/alecrypt/keystore.json" >&2
  "${server_cpus[@]}" "$work/bin/alecryptd" --listen 127.0.0.1:0 --metrics-listen '' --keystore "$work/alecrypt/keystore.json" \
    2>"$work/alecryptd.log" &
  alecrypt_pid=$!
  pids+=("$alecrypt_pid")
  wait_for_log "$work/alecryptd.log" '"alecryptd listening"' 30 "$alecrypt_pid"
  alecrypt_addr=$(grep '"alecryptd listening"' "$work/alecryptd.log" | sed -n 's/.*"addr":"\([^"]*\)".*/\1/p' | head -1)

  log "starting vault dev server (transit, aes256-gcm96 key 'bench')"
  vault_port=$(free_port)
  mkdir -p "$work/vault-home"
  HOME="$work/vault-home" VAULT_ADDR= VAULT_TOKEN= "${server_cpus[@]}" "$vault_bin" server -dev -dev-root-token-id=root \
    -dev-listen-address="127.0.0.1:$vault_port" -dev-no-store-token >"$work/vault.log" 2>&1 &
  vault_pid=$!
  pids+=("$vault_pid")
  export VAULT_ADDR="http://127.0.0.1:$vault_port" VAULT_TOKEN=root
  wait_for_log "$work/vault.log" 'Development mode should NOT be used' 60 "$vault_pid"
  for i in $(seq 100); do
    "$vault_bin" secrets enable transit >/dev/null 2>&1 && break
    [ "$i" = 100 ] && { echo "run.sh: could not enable transit" >&2; tail -20 "$work/vault.log" >&2; exit 1; }
    sleep 0.2
  done
  "$vault_bin" write -f transit/keys/bench type=aes256-gcm96 >/dev/null

  if [ "$quick" = 1 ]; then
    sweep_flags=(--duration 300ms --warmup 100ms --concurrency 1,8 --sizes 64,1024 --ops encrypt,decrypt,batch,stream
      --protocol connect,grpc,connect-http1)
  else
    sweep_flags=(--duration 1500ms --warmup 500ms --concurrency 1,4,16,64 --sizes 64,1024,65536
      --ops encrypt,decrypt,batch,stream --protocol connect,grpc,connect-http1)
  fi
  layout="servers and load generator share the cores"
  [ "$pinned" = 1 ] && layout="servers on CPU 0, load generator on CPU 1"
  log "alebench: alecryptd pid $alecrypt_pid at $alecrypt_addr, vault pid $vault_pid at $VAULT_ADDR; $layout"
  echo "command: ${bench_cpus[*]:+${bench_cpus[*]} }alebench --target both ${sweep_flags[*]} ${extra[*]}  ($layout)"
  "${bench_cpus[@]}" "$bench" --target both --alecrypt-url "http://$alecrypt_addr" --alecrypt-pid "$alecrypt_pid" \
    --vault-addr "$VAULT_ADDR" --vault-token root --vault-pid "$vault_pid" \
    "${sweep_flags[@]}" "${extra[@]}"

  # Stop both servers so the startup measurement has the machine to itself.
  kill -TERM "$alecrypt_pid" "$vault_pid" 2>/dev/null || true
  wait "$alecrypt_pid" "$vault_pid" 2>/dev/null || true
  pids=()
fi

if [ "$startup" = 1 ]; then
  if [ "$quick" = 1 ]; then
    n=1000 iterations=1000
  else
    n=10000 iterations=100000
  fi
  log "startup: alecryptd on $n fresh keys ($iterations PBKDF2 iterations each)"
  "$bench" genkeys --n "$n" --iterations "$iterations" --out "$work/many/keystore.json" >&2
  echo
  # Unpinned: key derivation uses every core, as it would in production.
  "$bench" startup --alecryptd "$work/bin/alecryptd" --keystore "$work/many/keystore.json"
fi
