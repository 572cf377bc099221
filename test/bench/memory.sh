#!/usr/bin/env bash
# Measures alecryptd's memory under large concurrent requests (BENCHMARKS.md,
# "Memory under load"): for each case it starts a fresh alecryptd (a policy
# with one token, so authentication is required; metrics off) and runs
# `alebench memory` against it, which keeps N Encrypts of 4 MiB in flight,
# samples the server's RSS from /proc and checks its health throughout.
#
#   test/bench/memory.sh                    the three cases, 20 s each
#   DURATION=5s test/bench/memory.sh        shorter
#   ALECRYPTD=/path/to/alecryptd test/bench/memory.sh
#                                           measure another build (e.g. an older commit)
#   test/bench/memory.sh -- --json          extra alebench memory flags after --
#
# Cases: 500 authenticated gRPC calls (no Content-Length), 500 authenticated
# Connect calls (Content-Length), 200 unauthenticated gRPC calls. Server and
# load generator share the machine's cores. Everything started is stopped,
# by process id, on exit.
set -euo pipefail
cd "$(dirname "$0")/../.."

extra=()
if [ "${1:-}" = "--" ]; then
  shift
  extra=("$@")
fi
duration=${DURATION:-20s}
token=memory-bench-token-4b1d

work=$(mktemp -d "${TMPDIR:-/tmp}/alebench-memory.XXXXXX")
pid=
cleanup() {
  if [ -n "$pid" ]; then
    kill -TERM "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
  fi
  rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

log() { printf '== %s\n' "$*" >&2; }

log "building alebench${ALECRYPTD:+ (alecryptd from $ALECRYPTD)}"
go build -o "$work/bin/" ./cmd/alebench
if [ -z "${ALECRYPTD:-}" ]; then
  go build -o "$work/bin/" ./cmd/alecryptd
  ALECRYPTD="$work/bin/alecryptd"
fi

hash=$(printf %s "$token" | sha256sum | cut -d' ' -f1)
cat >"$work/policy.json" <<EOF
{"tokens": [{"identity": "bench", "sha256": "$hash"}],
 "callers": {"bench": {"operations": ["encrypt"], "keys": ["*"], "default_alias": "default"}}}
EOF

# run_case NAME CONCURRENCY PROTOCOL TOKEN: one fresh alecryptd, one run.
run_case() {
  local name=$1 conc=$2 proto=$3 tok=$4
  rm -rf "$work/ks" && mkdir -p "$work/ks"
  "$ALECRYPTD" --listen 127.0.0.1:0 --metrics-listen '' --keystore "$work/ks/keystore.json" \
    --policy "$work/policy.json" 2>"$work/alecryptd.log" &
  pid=$!
  for _ in $(seq 300); do
    grep -q '"alecryptd listening"' "$work/alecryptd.log" && break
    kill -0 "$pid" 2>/dev/null || { tail -20 "$work/alecryptd.log" >&2; exit 1; }
    sleep 0.1
  done
  addr=$(grep '"alecryptd listening"' "$work/alecryptd.log" | sed -n 's/.*"addr":"\([^"]*\)".*/\1/p' | head -1)
  log "$name"
  "$work/bin/alebench" memory --alecrypt-url "http://$addr" --alecrypt-pid "$pid" --concurrency "$conc" \
    --protocol "$proto" --token "$tok" --duration "$duration" "${extra[@]}"
  kill -TERM "$pid"
  wait "$pid" || true
  pid=
}

echo "# alecryptd memory under load, $(date -u +%Y-%m-%dT%H:%MZ), $(nproc) cores, $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo), $(go env GOVERSION)"
run_case "500 x 4 MiB Encrypt over gRPC, authenticated" 500 grpc "$token"
run_case "500 x 4 MiB Encrypt over Connect, authenticated" 500 connect "$token"
run_case "200 x 4 MiB Encrypt over gRPC, unauthenticated" 200 grpc ""
