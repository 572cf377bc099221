#!/usr/bin/env bash
# Measures many WebSockets through alegate next to the plain proxy, in one run
# (BENCHMARKS.md, "Many WebSocket connections"):
#
#   held     N WebSockets open at once, each having carried WARM_FRAMES sealed
#            frames (default 1, echoed by the kitchen) and then idle: RSS
#            growth of alegate (and of the proxy) ÷ N, and their CPU while the
#            connections idle
#   storm    new WebSockets at a fixed rate (each closed once open): errors,
#            handshakes per second, latency, and CPU per handshake (alegate +
#            alecryptd; the proxy alone)
#
# The kitchen is `alebench serve kitchen` (Go: it takes a storm that a Node
# server's listen backlog refuses). Servers under test run on CPU 0, the
# kitchen and the load generator on CPU 1.
#
#   test/bench/conns.sh                          hold 1000 and 9990, storm 1000/s for 10 s
#   HOLD=1000 STORM_RATE=500 test/bench/conns.sh smaller
#   WARM_FRAMES=0 test/bench/conns.sh            held connections that never carried a frame
#   test/bench/conns.sh -- --json                extra alebench conns flags after --
#   ALEGATE=/path/to/alegate test/bench/conns.sh measure another build (e.g. an older commit)
#
# The load generator connects from 127.0.1.1-16 (alebench conns), so a run of
# tens of thousands of connections does not run out of ephemeral ports.
#
# Descriptors: a bridged WebSocket costs alegate two (the client's and the
# kitchen's connection), the proxy two, the kitchen and the load generator
# one; a process also holds a few of its own (listeners, the alecryptd
# connection, epoll, stdio). With this machine's hard limit of 20,000 per
# process the largest run is 9,990 connections; 10,000 need a limit of at
# least 20,016 (deploy/ sets 65,536).
set -euo pipefail
cd "$(dirname "$0")/../.."

extra=()
if [ "${1:-}" = "--" ]; then
  shift
  extra=("$@")
fi
hold=${HOLD:-1000,9990}
storm_rate=${STORM_RATE:-1000}
storm_duration=${STORM_DURATION:-10s}
warm_frames=${WARM_FRAMES:-1}

script=conns.sh keep=${CONNS_KEEP:-}
# shellcheck source=test/bench/lib.sh
source test/bench/lib.sh
alegate=${ALEGATE:-$bin/alegate}
fp=$(sed -n 's/.*"fingerprint": *"\([^"]*\)".*/\1/p' "$work/keys/keystore.json" | head -1)

# servers: fresh processes for one measurement, so that none starts from
# memory an earlier one grew. A kitchen each for alegate and the proxy: their
# connections to it (and the TIME_WAITs those leave) do not share one
# destination's ephemeral ports.
servers() {
  for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  pids=()
  start kitchen "alebench serve listening" "${lg[@]}" "$bin/alebench" serve kitchen
  start kitchen2 "alebench serve listening" "${lg[@]}" "$bin/alebench" serve kitchen
  start crypto "alecryptd listening" "${srv[@]}" "$bin/alecryptd" --listen 127.0.0.1:0 --metrics-listen '' \
    --keystore "$work/keys/keystore.json"
  # alegate's defaults, its WebSocket idle timeout (10 minutes) included: a
  # run is shorter, and the timer is part of what an idle connection holds.
  start gate "alegate listening" "${srv[@]}" "$alegate" --listen 127.0.0.1:0 --metrics-listen '' \
    --upstream "http://$kitchen_addr" --crypto "http://$crypto_addr"
  start proxy "alebench serve listening" "${srv[@]}" "$bin/alebench" serve proxy --upstream "http://$kitchen2_addr"
}

# conns FLAGS...: one alebench conns run against fresh servers.
conns() {
  servers
  "${lg[@]}" "$bin/alebench" conns --gate-url "http://$gate_addr" --gate-pid "$gate_pid" --crypto-pid "$crypto_pid" \
    --proxy-url "http://$proxy_addr" --proxy-pid "$proxy_pid" --fingerprint "$fp" --keystore "$work/keys/keystore.json" \
    --warm-frames "$warm_frames" "$@" "${extra[@]}"
}

log "alebench conns ($layout)"
echo "machine: $(nproc) cores, $(sed -n 's/^model name\s*: //p' /proc/cpuinfo | head -1); $layout; open files $(ulimit -Hn) per process; GOGC=${GOGC:-default}"
for n in ${hold//,/ }; do
  conns --hold "$n" --storm-rate 0
done
if [ "$storm_rate" != 0 ]; then
  conns --hold "" --storm-rate "$storm_rate" --storm-duration "$storm_duration"
fi
