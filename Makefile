# The commands a developer and CI run. `make test` is the README's test command.

GO       ?= go
TOOL     := $(GO) tool -modfile=tools/go.mod
# A count, not a duration: Go 1.26's fuzz coordinator can fail a timed run
# under load without finding anything (golang/go#75804; see test/fuzz/run.sh).
# Before touching a parser, run a campaign: make fuzz FUZZTIME=10m
FUZZTIME ?= 20000x

# package:FuzzTarget pairs, each run for FUZZTIME by `make fuzz` (test/fuzz/run.sh).
FUZZ_TARGETS := \
	./service/wire:FuzzParseFrame \
	./service/wire:FuzzParseFramePlain \
	./internal/key:FuzzUnmarshalRecord \
	./internal/keystore/filestore:FuzzParse \
	./internal/portal:FuzzFetchAll \
	./internal/jsonscan:FuzzValidJSON \
	./internal/api:FuzzContentType \
	./internal/rpcframe:FuzzSplit \
	./internal/rpcframe:FuzzOutcome \
	./internal/wsconn:FuzzRead

# The pinned TypeScript toolchain (protoc-gen-es, connect-node, tsx, typescript),
# installed only when package-lock.json is newer than the installed tree.
NPM_CI := [ node_modules/.package-lock.json -nt package-lock.json ] || npm ci --ignore-scripts --no-audit --no-fund

# Where make build and make tools put the binaries (the README puts it on PATH).
BIN ?= bin

.PHONY: help build tools test run lint gen gen-check fuzz bench bench-load ci node-deps deploy-test ts-pack

# A bare `make` lists the targets: `make test` on a fresh machine builds a
# Vault server and runs for half an hour, which nobody should start by accident.
.DEFAULT_GOAL := help

## help: list the targets with what they do (also what a bare `make` does)
help:
	@echo "usage: make TARGET [VAR=value ...]"
	@echo
	@awk '/^## [a-z][a-z-]*: / { t = substr($$0, 4); i = index(t, ": "); printf "  %-12s %s\n", substr(t, 1, i - 1), substr(t, i + 2) }' $(MAKEFILE_LIST)

## build: every binary into bin/: alecryptd, alectl, alegate, alesync, alebench
build:
	$(GO) build -o $(BIN)/ ./cmd/...

## tools: grpcurl and buf, pinned in tools/go.mod, into bin/ (the first build takes minutes: about 3.5 for grpcurl, up to 9 for buf)
tools:
	@echo "building grpcurl and buf into $(BIN)/ (the first time takes several minutes)"
	$(GO) build -modfile=tools/go.mod -o $(BIN)/ github.com/fullstorydev/grpcurl/cmd/grpcurl github.com/bufbuild/buf/cmd/buf

## test: every test, unit to end-to-end (real alecryptd, alectl, alesync, Vault, grpcurl, Node WebCrypto), with the race detector
test: node-deps
	$(GO) vet ./...
	@# The Vault server is built once per machine (minutes the first time), outside the tests' timeout.
	@# go test -json through internal/testsummary: go test's plain output, then the
	@# skipped tests with their reasons and one line "tests: N passed, N failed,
	@# N skipped"; go test's exit status.
	$(GO) build -o bin/testsummary ./internal/testsummary
	ALECRYPT_VAULT_BIN="$$(bash test/vault/build-vault.sh)" bin/testsummary -race -count=1 -timeout 20m ./...

## run: the service on its embedded default keystore (./alecrypt-data/keystore.json)
run:
	$(GO) run ./cmd/alecryptd

## node-deps: install the pinned npm packages if needed
node-deps:
	@$(NPM_CI)

## ts-pack: build @alecrypt/ale-client (ESM .js + .d.ts) and pack it into bin/alecrypt-ale-client-VERSION.tgz
# npm pack builds it first (the package's prepack script), as npm publish does.
ts-pack: node-deps
	@mkdir -p bin
	npm pack -w clients/ts --pack-destination bin/

## lint: staticcheck, buf lint and format, TypeScript type checks
lint: node-deps
	$(TOOL) staticcheck ./...
	npx tsc --noEmit -p clients/ts
	npx tsc --noEmit -p test/node
	$(TOOL) buf lint
	$(TOOL) buf format --diff --exit-code

# Everything buf generates: Go and TypeScript (buf.gen.yaml), the Python
# client's stubs (buf.gen.python.yaml).
GENERATED := gen clients/python/gen

## gen: regenerate gen/ and clients/python/gen from proto/ (local plugins only: Go, TypeScript, Python)
gen: node-deps
	@# The Python stubs come from Debian's protoc and grpc_python_plugin
	@# (apt-get install protobuf-compiler protobuf-compiler-grpc).
	@command -v protoc >/dev/null && command -v grpc_python_plugin >/dev/null || \
		{ echo "make gen needs protoc and grpc_python_plugin: apt-get install protobuf-compiler protobuf-compiler-grpc"; exit 1; }
	$(TOOL) buf generate
	@# A template of its own: the vendored google/rpc/status.proto must reach
	@# Python only (Go uses genproto's), and clean: true wipes only this out/.
	$(TOOL) buf generate --template buf.gen.python.yaml

## gen-check: fail if gen/ or clients/python/gen is not exactly what buf generate produces
gen-check: gen
	@git diff --exit-code -- $(GENERATED) || (echo "generated code is stale: run make gen and commit" && exit 1)
	@test -z "$$(git status --porcelain -- $(GENERATED))" || (git status --porcelain -- $(GENERATED); echo "generated code has untracked files: run make gen and commit" && exit 1)

## fuzz: run every fuzz target for FUZZTIME (default 20000x; a campaign: FUZZTIME=10m) on top of its committed corpus
fuzz:
	GO=$(GO) bash test/fuzz/run.sh $(FUZZTIME) $(FUZZ_TARGETS)

## deploy-test: manifests, Dockerfile build stage, systemd unit, alert rules and dashboard (promtool) (separate module deploy/)
deploy-test:
	cd deploy && $(GO) vet ./... && $(GO) test -count=1 ./...

## bench: the in-process ceiling (ciphers, engine, Connect handler)
bench:
	$(GO) test -run '^$$' -bench . -benchmem ./internal/suite ./internal/engine ./internal/api

## bench-load: alecryptd against Vault Transit (BENCHMARKS.md); QUICK=1 for a 30 s check
bench-load:
	bash test/bench/run.sh $(if $(QUICK),--quick)

## ci: what .ci/run runs
ci: gen-check lint test deploy-test fuzz
