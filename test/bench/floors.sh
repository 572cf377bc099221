#!/usr/bin/env bash
# Measures our paths next to their floors, in one run:
#
#   http     a POS request through alegate → alecryptd → kitchen, next to the same
#            request through a plain httputil.ReverseProxy to the same kitchen
#   ws       a WebSocket frame's round trip through alegate, next to the plain proxy
#   unary    Encrypt (Connect JSON over HTTP/1.1) on alecryptd, next to a bare
#            handler on our generated Connect code doing only AES-CTR
#   prod     Encrypt on alecryptd in the production configuration (TLS, mTLS, a
#            policy, the audit log, metrics on), next to the bare configuration
#   transit  Vault Transit encrypt next to alecryptd's (needs the Vault build)
#
# Servers under test run on CPU 0, the kitchen and the load generator on CPU 1;
# CPU per request is the server processes' own (alegate + alecryptd for the
# gateway paths), read from /proc. Read the ratios: the machine is shared.
#
#   test/bench/floors.sh                     http, ws, unary, prod
#   test/bench/floors.sh --transit           and the Transit row
#   test/bench/floors.sh --quick             short windows (checks the path works)
#   test/bench/floors.sh --gogc 400          every server process (ours and the floors
#                                            alike) runs with GOGC=400, as deploy/ runs ours
#   test/bench/floors.sh --profile DIR       also write 10 s CPU profiles of alegate and
#                                            alecryptd under the http load to DIR
#   test/bench/floors.sh --hop-floor         and the gateway paths again with alegate on
#                                            the bare handler instead of alecryptd: the
#                                            floor of the crypto hop itself
#   test/bench/floors.sh -- --paths http     extra alebench floors flags after --
set -euo pipefail
cd "$(dirname "$0")/../.."

quick=0
transit=0
hop_floor=0
profile=""
extra=()
while [ $# -gt 0 ]; do
  case "$1" in
    --quick) quick=1 ;;
    --gogc) shift; export GOGC=$1 ;;
    --transit) transit=1 ;;
    --hop-floor) hop_floor=1 ;;
    --profile) shift; profile=$1 ;;
    --) shift; extra=("$@"); break ;;
    -h|--help) sed -n '2,27p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "floors.sh: unknown argument $1" >&2; exit 2 ;;
  esac
  shift
done

# FLOORS_KEEP=DIR keeps the servers' logs.
script=floors.sh keep=${FLOORS_KEEP:-}
# shellcheck source=test/bench/lib.sh
source test/bench/lib.sh

start kitchen "alebench serve listening" "${lg[@]}" "$bin/alebench" serve kitchen
start crypto "alecryptd listening" "${srv[@]}" "$bin/alecryptd" --listen 127.0.0.1:0 --metrics-listen '' \
  --keystore "$work/keys/keystore.json"
start gate "alegate listening" "${srv[@]}" "$bin/alegate" --listen 127.0.0.1:0 --metrics-listen '' \
  --upstream "http://$kitchen_addr" --crypto "http://$crypto_addr"
start proxy "alebench serve listening" "${srv[@]}" "$bin/alebench" serve proxy --upstream "http://$kitchen_addr"
start bare "alebench serve listening" "${srv[@]}" "$bin/alebench" serve bare --keystore "$work/keys/keystore.json"
if [ "$hop_floor" = 1 ]; then
  start gatebare "alegate listening" "${srv[@]}" "$bin/alegate" --listen 127.0.0.1:0 --metrics-listen '' \
    --upstream "http://$kitchen_addr" --crypto "http://$bare_addr"
fi

# The production configuration: TLS with client certificates, a policy, the
# audit log on disk, metrics on.
mkdir -p "$work/tls"
(
  cd "$work/tls"
  q=(-loglevel error)
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout ca-key.pem -out ca.pem -days 1 \
    -subj /CN=alebench-ca 2>/dev/null
  for who in server client; do
    if [ "$who" = server ]; then san="subjectAltName=IP:127.0.0.1,DNS:localhost"; else san="subjectAltName=URI:spiffe://alecrypt/alebench"; fi
    openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$who-key.pem" -out "$who.csr" -subj "/CN=$who" 2>/dev/null
    openssl x509 -req -in "$who.csr" -CA ca.pem -CAkey ca-key.pem -CAcreateserial -days 1 -out "$who.pem" \
      -extfile <(echo "$san") 2>/dev/null
  done
  chmod 600 ./*-key.pem
)
fp=$(sed -n 's/.*"fingerprint": *"\([^"]*\)".*/\1/p' "$work/keys/keystore.json" | head -1)
cat >"$work/policy.json" <<POLICY
{"callers": {"spiffe://alecrypt/alebench": {"operations": ["encrypt", "decrypt", "resolve"], "keys": ["*"]}}}
POLICY
start prod "alecryptd listening" "${srv[@]}" "$bin/alecryptd" --listen 127.0.0.1:0 --metrics-listen 127.0.0.1:0 \
  --keystore "$work/keys/keystore.json" --tls-cert "$work/tls/server.pem" --tls-key "$work/tls/server-key.pem" \
  --client-ca "$work/tls/ca.pem" --policy "$work/policy.json" --audit-log "$work/audit.jsonl"

flags=(--gate-url "http://$gate_addr" --gate-pids "$gate_pid,$crypto_pid" --proxy-url "http://$proxy_addr" --proxy-pid "$proxy_pid"
  --alecrypt-url "http://$crypto_addr" --alecrypt-pid "$crypto_pid" --bare-url "http://$bare_addr" --bare-pid "$bare_pid"
  --prod-url "https://$prod_addr" --prod-pid "$prod_pid" --prod-ca "$work/tls/ca.pem" --prod-cert "$work/tls/client.pem"
  --prod-key "$work/tls/client-key.pem" --keystore "$work/keys/keystore.json" --fingerprint "$fp")
paths=http,ws,unary,prod
if [ "$transit" = 1 ]; then
  vault_bin=$(bash test/vault/build-vault.sh)
  # A port with the next one free too (Vault's cluster port); bash's
  # /dev/tcp fails to connect to a free port.
  for _ in $(seq 100); do
    vault_port=$((20000 + RANDOM % 40000))
    (exec 3<>"/dev/tcp/127.0.0.1/$vault_port") 2>/dev/null || (exec 3<>"/dev/tcp/127.0.0.1/$((vault_port + 1))") 2>/dev/null || break
  done
  mkdir -p "$work/vault-home"
  HOME="$work/vault-home" VAULT_ADDR= VAULT_TOKEN= "${srv[@]}" "$vault_bin" server -dev -dev-root-token-id=root \
    -dev-listen-address="127.0.0.1:$vault_port" -dev-no-store-token >"$work/vault.log" 2>&1 &
  vault_pid=$!
  pids+=("$vault_pid")
  export VAULT_ADDR="http://127.0.0.1:$vault_port" VAULT_TOKEN=root
  for i in $(seq 150); do
    "$vault_bin" secrets enable transit >/dev/null 2>&1 && break
    [ "$i" = 150 ] && { echo "floors.sh: could not enable transit" >&2; tail -20 "$work/vault.log" >&2; exit 1; }
    sleep 0.2
  done
  "$vault_bin" write -f transit/keys/bench type=aes256-gcm96 >/dev/null
  flags+=(--vault-pid "$vault_pid")
  paths=$paths,transit
fi
timing=()
[ "$quick" = 1 ] && timing=(--duration 500ms --warmup 200ms --rounds 1)

if [ -n "$profile" ]; then
  mkdir -p "$profile"
  for path in http ws; do
    log "profiling alegate and alecryptd under the $path load (10 s)"
    "${lg[@]}" "$bin/alebench" floors "${flags[@]}" --paths "$path" --half-peak=false --duration 12s --warmup 1s >/dev/null &
    load=$!
    sleep 2
    # perf samples each process's own CPU (Go binaries keep their symbols):
    # perf report -i DIR/alegate-http.perf --children --sort symbol
    perf record -F 999 -g -o "$profile/alegate-$path.perf" -p "$gate_pid" -- sleep 10 2>/dev/null &
    rec=$!
    perf record -F 999 -g -o "$profile/alecryptd-$path.perf" -p "$crypto_pid" -- sleep 10 2>/dev/null
    wait "$rec" "$load"
  done
fi

log "alebench floors ($layout)"
echo "machine: $(nproc) cores, $(sed -n 's/^model name\s*: //p' /proc/cpuinfo | head -1); $layout; GOGC=${GOGC:-default} for every server"
"${lg[@]}" "$bin/alebench" floors "${flags[@]}" --paths "$paths" "${timing[@]}" "${extra[@]}"
if [ "$hop_floor" = 1 ]; then
  log "alebench floors with alegate on the bare handler (the crypto hop's floor)"
  hop_flags=("${flags[@]}")
  for i in "${!hop_flags[@]}"; do
    case "${hop_flags[$i]}" in
      --gate-url) hop_flags[$((i + 1))]="http://$gatebare_addr" ;;
      --gate-pids) hop_flags[$((i + 1))]="$gatebare_pid,$bare_pid" ;;
    esac
  done
  "${lg[@]}" "$bin/alebench" floors "${hop_flags[@]}" --paths http,ws "${timing[@]}" "${extra[@]}"
fi
