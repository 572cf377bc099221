#!/usr/bin/env bash
# Builds the Vault server used by the integration tests, once per machine.
#
# There is no Docker and no Vault package here, so the server is built from the
# Go module proxy. Only this recipe was found to work: Vault v1.19.0 built as
# the main module from a writable copy of its module folder, without the
# replace directives that point at nested modules missing from the module zip
# (sdk, api and its auth modules; the published sdk v0.15.2 and api v1.16.0
# its go.mod requires match its tree). Importing Vault from a small module of
# our own fails (a consumer ignores Vault's replaces and gets sdk versions that
# do not match the tree), and so do v1.20.x and v1.21.x. Some plugin modules
# are missing from the checksum database, hence GONOSUMDB below. The binary is
# cached by version outside the repository; a cached binary is never rebuilt.
# Prints the binary's path on stdout.
set -euo pipefail

VAULT_VERSION="${VAULT_VERSION:-v1.19.0}"
cache="${ALECRYPT_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/alecrypt}"
bin="$cache/vault-$VAULT_VERSION/vault"

if [ -x "$bin" ] && "$bin" version >/dev/null 2>&1; then
  echo "$bin"
  exit 0
fi

mkdir -p "$cache"
exec 9>"$cache/vault-build.lock"
flock 9 # one build at a time, even from parallel test processes
if [ -x "$bin" ] && "$bin" version >/dev/null 2>&1; then
  echo "$bin"
  exit 0
fi

# The first build takes minutes (about 7 on a quiet 2-core machine, far
# longer on a busy one) and several GB of module downloads and build cache:
# say what is happening, and keep saying it, so a first `make test` is never
# silent. Progress goes to stderr; stdout carries only the binary's path.
start=$SECONDS
every="${ALECRYPT_HEARTBEAT:-30}"
beat=""
stop_beat() { if [ -n "$beat" ]; then kill "$beat" 2>/dev/null || true; wait "$beat" 2>/dev/null || true; beat=""; fi; }
trap stop_beat EXIT
phase() {
  stop_beat
  echo "vault build: $1 ($(( SECONDS - start ))s so far)" >&2
  # The heartbeat writes only to stderr: with stdout open it would hold a
  # caller's $(...) open, and with the lock's fd 9 the lock.
  ( while sleep "$every"; do echo "vault build: still $1 ($(( SECONDS - start ))s so far)" >&2; done ) >/dev/null 9>&- &
  beat=$!
}

echo "building vault $VAULT_VERSION from source, once per machine: several minutes the first time" >&2
echo "(about 7 on a quiet 2-core machine, longer on a busy one) and several GB of downloads and" >&2
echo "build cache; the binary is cached in $cache" >&2
export GOFLAGS=-mod=mod
export GONOSUMDB="github.com/hashicorp/vault-plugin-*"
phase "downloading the vault $VAULT_VERSION module"
src_dir=$(cd "$cache" && GOFLAGS= go mod download -json "github.com/hashicorp/vault@$VAULT_VERSION" | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')
[ -d "$src_dir" ] || { echo "go mod download gave no folder for vault $VAULT_VERSION" >&2; exit 1; }
work="$cache/vault-src-$VAULT_VERSION"
rm -rf "$work"
cp -r "$src_dir" "$work"
chmod -R u+w "$work"
cd "$work"
for m in sdk api api/auth/approle api/auth/kubernetes api/auth/userpass; do
  go mod edit -dropreplace "github.com/hashicorp/vault/$m"
done
mkdir -p "$(dirname "$bin")"
phase "downloading vault's dependencies and compiling (the long part)"
go build -ldflags='-s -w' -o "$bin.tmp" . >&2
stop_beat
mv "$bin.tmp" "$bin"
cd "$cache" && rm -rf "$work"
echo "vault build: done in $(( SECONDS - start ))s: $bin" >&2
echo "$bin"
