# Shared by floors.sh and conns.sh, which source it after parsing their
# arguments: a work directory removed on exit together with every process
# started in it, the binaries built there, the CPU layout, start(), and a
# keystore of one generated key. Set before sourcing: script (the name errors
# carry) and keep (a directory to copy the servers' logs to on exit, or "").

work=$(mktemp -d "${TMPDIR:-/tmp}/ale${script%.sh}.XXXXXX")
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  if [ -n "$keep" ]; then mkdir -p "$keep" && cp "$work"/*.log "$keep"/; fi
  rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
log() { printf '== %s\n' "$*" >&2; }

log "building alecryptd, alegate and alebench"
go build -o "$work/bin/" ./cmd/alecryptd ./cmd/alegate ./cmd/alebench
bin=$work/bin

srv=() lg=()
if [ "$(nproc)" -ge 2 ] && command -v taskset >/dev/null; then
  srv=(taskset -c 0) lg=(taskset -c 1)
  layout="servers under test on CPU 0, kitchen and load generator on CPU 1"
else
  layout="everything shares the cores"
fi

# start NAME READY-MSG CMD...: starts a process logging JSON to NAME.log and
# sets NAME_pid and NAME_addr from its READY-MSG line.
start() {
  local name=$1 ready=$2
  shift 2
  "$@" 2>"$work/$name.log" >>"$work/$name.log" &
  local pid=$!
  pids+=("$pid")
  for _ in $(seq 300); do
    if grep -q "\"$ready\"" "$work/$name.log" 2>/dev/null; then
      eval "${name}_pid=$pid"
      eval "${name}_addr=$(grep "\"$ready\"" "$work/$name.log" | sed -n 's/.*"addr":"\([^"]*\)".*/\1/p' | head -1)"
      return 0
    fi
    kill -0 "$pid" 2>/dev/null || { echo "$script: $name exited:" >&2; cat "$work/$name.log" >&2; return 1; }
    sleep 0.1
  done
  echo "$script: $name did not start" >&2; cat "$work/$name.log" >&2; return 1
}

mkdir -p "$work/keys"
"$bin/alebench" genkeys --n 1 --algorithm aes-256-ctr --out "$work/keys/keystore.json" >&2
