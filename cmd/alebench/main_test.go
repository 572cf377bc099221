package main

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"flag"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	vaultapi "github.com/hashicorp/vault/api"

	"github.com/alecrypt/alecrypt/cmd/alebench/internal/loadgen"
	"github.com/alecrypt/alecrypt/internal/api"
	"github.com/alecrypt/alecrypt/internal/engine"
	"github.com/alecrypt/alecrypt/internal/key"
	"github.com/alecrypt/alecrypt/internal/keyring"
	"github.com/alecrypt/alecrypt/internal/keystore/filestore"
	"github.com/alecrypt/alecrypt/service/secret"
)

func noEnv(string) string { return "" }

func TestParseConfig(t *testing.T) {
	t.Parallel()
	c, err := parseConfig(nil, noEnv, io.Discard)
	if err != nil {
		t.Fatalf("parseConfig(defaults): %v", err)
	}
	if !slices.Equal(c.Targets, []string{targetAlecrypt}) || !slices.Equal(c.Sizes, []int{64, 1024, 65536}) ||
		!slices.Equal(c.Concurrency, []int{1, 4, 16, 64}) || !slices.Equal(c.Protocols, []string{protoConnect}) ||
		!slices.Equal(c.Ops, []string{"encrypt", "decrypt", "batch", "stream"}) {
		t.Errorf("defaults = %+v", c)
	}
	env := func(name string) string {
		return map[string]string{"VAULT_ADDR": "http://127.0.0.1:8200", "VAULT_TOKEN": "root"}[name]
	}
	c, err = parseConfig([]string{"--target", "both", "--protocol", "grpc,connect-http1", "--concurrency", "2,8"}, env, io.Discard)
	if err != nil {
		t.Fatalf("parseConfig(both): %v", err)
	}
	if !slices.Equal(c.Targets, []string{targetAlecrypt, targetTransit}) || c.VaultToken != "root" ||
		!slices.Equal(c.Protocols, []string{protoGRPC, protoConnectHTTP1}) || !slices.Equal(c.Concurrency, []int{2, 8}) {
		t.Errorf("parseConfig(both) = %+v", c)
	}
	for _, tc := range []struct {
		name string
		args []string
	}{
		{"unknown target", []string{"--target", "kms"}},
		{"transit without vault", []string{"--target", "transit"}},
		{"unknown op", []string{"--ops", "encrypt,sign"}},
		{"repeated op", []string{"--ops", "encrypt,encrypt"}},
		{"unknown protocol", []string{"--protocol", "grpc-web"}},
		{"zero concurrency", []string{"--concurrency", "0"}},
		{"negative size", []string{"--sizes", "-1"}},
		{"not a number", []string{"--sizes", "1k"}},
		{"zero duration", []string{"--duration", "0s"}},
		{"zero window", []string{"--stream-window", "0"}},
		{"stray argument", []string{"now"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			_, err := parseConfig(tc.args, noEnv, io.Discard)
			var u *usageError
			if !errors.As(err, &u) {
				t.Errorf("parseConfig(%q) err = %v, want a usage error", tc.args, err)
			}
		})
	}
}

func TestRunExitCodes(t *testing.T) {
	t.Parallel()
	var out, errb bytes.Buffer
	if code := run(context.Background(), []string{"--target", "nope"}, noEnv, &out, &errb); code != 2 {
		t.Errorf("run(bad flag) = %d, want 2; stderr %s", code, errb.String())
	}
	if code := run(context.Background(), []string{"-h"}, noEnv, &out, &errb); code != 0 {
		t.Errorf("run(-h) = %d, want 0", code)
	}
	if code := run(context.Background(), []string{"--alecrypt-url", "http://127.0.0.1:1", "--duration", "10ms"}, noEnv, &out, &errb); code != 1 {
		t.Errorf("run(nothing listening) = %d, want 1", code)
	}
}

func TestBatchItems(t *testing.T) {
	t.Parallel()
	cfg := Config{BatchSize: 100, BatchBytes: 1 << 20}
	for _, tc := range []struct{ size, want int }{{0, 100}, {64, 100}, {1024, 100}, {16 << 10, 64}, {64 << 10, 16}, {4 << 20, 1}} {
		if got := batchItems(cfg, tc.size); got != tc.want {
			t.Errorf("batchItems(%d) = %d, want %d", tc.size, got, tc.want)
		}
	}
}

func TestFormatting(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		got, want string
	}{
		{count(0), "0"}, {count(999.6), "1,000"}, {count(1234567), "1,234,567"},
		{dur(0), "0"}, {dur(1500 * time.Nanosecond), "1.50µs"}, {dur(62100 * time.Nanosecond), "62.1µs"},
		{dur(1999 * time.Microsecond), "2.00ms"}, {dur(12340 * time.Microsecond), "12.3ms"},
		{sizeName(64), "64B"}, {sizeName(1024), "1KiB"}, {sizeName(65536), "64KiB"}, {sizeName(1000), "1000B"},
	} {
		if tc.got != tc.want {
			t.Errorf("got %q, want %q", tc.got, tc.want)
		}
	}
	var b bytes.Buffer
	writeMarkdown(&b, []string{"size", "c", "proto", "items/s"}, [][]string{{"1KiB", "16", "grpc", "1,000"}})
	want := "| size | c  | proto | items/s |\n| ---- | -- | ----- | ------: |\n| 1KiB | 16 | grpc  |   1,000 |\n"
	if b.String() != want {
		t.Errorf("writeMarkdown =\n%s\nwant\n%s", b.String(), want)
	}
}

// row builds a report row by hand for the target checks.
func row(target, proto, op string, size, conc int, itemsPerSec float64, cpuPerItem time.Duration, halfPeakRate float64) Row {
	window := time.Second
	items := int64(itemsPerSec)
	res := loadgen.Result{Window: window, Operations: items, Items: items, ServerCPU: cpuPerItem * time.Duration(items),
		Latency: loadgen.Summary{P99: time.Millisecond}}
	return Row{Target: target, Protocol: proto, Op: op, Size: size, Concurrency: conc, Rate: halfPeakRate, HalfPeak: halfPeakRate > 0,
		ItemsPerSec: itemsPerSec, MBPerSec: itemsPerSec * float64(size) / 1e6, Result: res, hasServer: true}
}

func TestTargets(t *testing.T) {
	t.Parallel()
	r := &report{cfg: Config{Targets: []string{targetAlecrypt, targetTransit}, Protocols: []string{protoConnect}}}
	for _, x := range []Row{
		row(targetAlecrypt, protoConnect, "encrypt", 1024, 16, 30_000, 10*time.Microsecond, 0),
		row(targetTransit, protoTransit, "encrypt", 1024, 16, 9_000, 140*time.Microsecond, 0),
		row(targetAlecrypt, protoConnect, "encrypt", 1024, 64, 27_000, 15*time.Microsecond, 0),
		row(targetTransit, protoTransit, "encrypt", 1024, 64, 10_000, 130*time.Microsecond, 0),
		row(targetAlecrypt, protoConnect, "encrypt", 1024, 64, 15_000, 0, 15_000),
		row(targetAlecrypt, protoConnect, "stream", 1024, 4, 120_000, 0, 0),
		row(targetAlecrypt, protoConnect, "batch", 64<<10, 4, 6_000, 0, 0),
		row(targetAlecrypt, protoConnect, "stream", 64<<10, 4, 9_000, 0, 0),
	} {
		r.add(x)
	}
	got := map[string]Target{}
	for _, tg := range r.targets() {
		got[tg.Name] = tg
	}
	for name, want := range map[string]struct {
		met      bool
		measured string
	}{
		// 140/10 = 14× at c=16 but 130/15 = 8.67× at c=64: missed.
		"Encrypt 1 KiB server CPU/op vs Transit (connect)": {false, "c=16 14.00×, c=64 8.67×"},
		"Encrypt 1 KiB throughput vs Transit (connect)":    {false, "c=16 3.33×, c=64 2.70×"},
		"Encrypt 1 KiB p99 at half of peak (connect)":      {true, "1.00ms at 15,000/s"},
		"bidi stream 1 KiB":                                {true, "120,000 msgs/s (connect, 4 streams)"},
		"stream or batch 64 KiB":                           {true, "590 MB/s (stream, connect, concurrency 4)"},
	} {
		tg, ok := got[name]
		if !ok {
			t.Errorf("no target %q in %v", name, got)
			continue
		}
		if tg.Met != want.met || tg.Got != want.measured {
			t.Errorf("%s = %q met=%v, want %q met=%v", name, tg.Got, tg.Met, want.measured, want.met)
		}
	}
}

// startHandler serves the real API handler in-process, as alecryptd does,
// over a keystore of one GCM key.
func startHandler(t *testing.T) string {
	t.Helper()
	ring := keyring.New()
	_, _, err := ring.Replace([]key.Record{{
		Fingerprint: "bench-gcm", Aliases: []string{"default"}, Algorithm: key.AES256GCM,
		Secret: secret.FromString("test-only"), KDF: key.KDF{Name: key.KDFPBKDF2SHA256, Salt: "salt", Iterations: key.MinIterations},
		State: key.Active, Version: 1, CreatedAt: time.Now(), Source: key.SourceLocal,
	}})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewUnstartedServer(api.NewHandler(engine.New(ring), ring, api.Options{Logger: slog.New(slog.DiscardHandler)}))
	srv.Config.Protocols = new(http.Protocols)
	srv.Config.Protocols.SetHTTP1(true)
	srv.Config.Protocols.SetUnencryptedHTTP2(true)
	srv.Start()
	t.Cleanup(srv.Close)
	return srv.URL
}

// TestSweepAgainstHandler runs every operation over every protocol against
// the real handler and a fake Transit, briefly, and checks the JSON report.
func TestSweepAgainstHandler(t *testing.T) {
	t.Parallel()
	args := []string{"--target", "both", "--alecrypt-url", startHandler(t), "--alecrypt-pid", "0",
		"--vault-addr", startFakeTransit(t), "--vault-token", "test-token",
		"--protocol", "connect,grpc,connect-http1", "--ops", strings.Join(opNames(), ","),
		"--sizes", "100", "--concurrency", "3", "--duration", "50ms", "--warmup", "10ms",
		"--batch-size", "5", "--stream-window", "4", "--rates", "500", "--json"}
	var out, errb bytes.Buffer
	if code := run(context.Background(), args, noEnv, &out, &errb); code != 0 {
		t.Fatalf("alebench exit %d:\n%s", code, errb.String())
	}
	var rep struct {
		Machine Machine
		Rows    []Row `json:"results"`
	}
	if err := json.Unmarshal(out.Bytes(), &rep); err != nil {
		t.Fatalf("report is not JSON: %v\n%s", err, out.String())
	}
	seen := map[string]bool{}
	fixedRate := 0
	for _, r := range rep.Rows {
		seen[r.Target+"/"+r.Protocol+"/"+r.Op] = true
		if r.Rate == 500 && !r.HalfPeak {
			fixedRate++
		}
		if r.Items == 0 || r.ItemsPerSec <= 0 || r.LatencyUS.P50 <= 0 {
			t.Errorf("row %+v measured nothing", r)
		}
		if r.Op == "batch" && r.Items != 5*r.Operations {
			t.Errorf("batch row: %d items in %d calls, want 5 per call", r.Items, r.Operations)
		}
	}
	for _, o := range opNames() {
		for _, p := range []string{protoConnect, protoGRPC, protoConnectHTTP1} {
			want := !strings.HasPrefix(o, "stream") || p != protoConnectHTTP1
			if seen[targetAlecrypt+"/"+p+"/"+o] != want {
				t.Errorf("alecrypt %s over %s measured = %v, want %v", o, p, !want, want)
			}
		}
		if want := !strings.HasPrefix(o, "stream"); seen[targetTransit+"/"+protoTransit+"/"+o] != want {
			t.Errorf("transit %s measured = %v, want %v", o, !want, want)
		}
	}
	// --rates 500: one open-loop row per unary op (2) and series (4).
	if fixedRate != 8 {
		t.Errorf("%d rows at the fixed rate, want 8", fixedRate)
	}
	if rep.Machine.Cores == 0 || rep.Machine.CPU == "" {
		t.Errorf("machine = %+v, want it described", rep.Machine)
	}
	// The table form prints too.
	args = append(args[:len(args)-1], "--ops", "encrypt,stream")
	out.Reset()
	if code := run(context.Background(), args, noEnv, &out, &errb); code != 0 || !strings.Contains(out.String(), "### encrypt") {
		t.Errorf("table run exit %d:\n%s\n%s", code, out.String(), errb.String())
	}
}

// startFakeTransit answers Transit's encrypt and decrypt, single and batch,
// the way Vault does, with base64 "ciphertexts": enough to test the client
// side without a Vault server (test/bench runs against the real one).
func startFakeTransit(t *testing.T) string {
	t.Helper()
	reply := func(w http.ResponseWriter, data any) {
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(map[string]any{"data": data})
	}
	seal := func(pt string) string { return "vault:v1:" + pt }
	open := func(ct string) string { return strings.TrimPrefix(ct, "vault:v1:") }
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/sys/seal-status", func(w http.ResponseWriter, _ *http.Request) {
		_ = json.NewEncoder(w).Encode(map[string]any{"version": "fake"})
	})
	mux.HandleFunc("GET /v1/transit/keys/bench", func(w http.ResponseWriter, _ *http.Request) {
		reply(w, map[string]any{"type": "aes256-gcm96"})
	})
	handle := func(field, out string, f func(string) string) http.HandlerFunc {
		return func(w http.ResponseWriter, r *http.Request) {
			if r.Header.Get("X-Vault-Token") != "test-token" {
				http.Error(w, `{"errors":["permission denied"]}`, http.StatusForbidden)
				return
			}
			var req map[string]any
			if err := json.NewDecoder(r.Body).Decode(&req); err != nil {
				http.Error(w, err.Error(), http.StatusBadRequest)
				return
			}
			if items, ok := req["batch_input"].([]any); ok {
				results := make([]any, len(items))
				for i, it := range items {
					v, _ := it.(map[string]any)[field].(string)
					results[i] = map[string]any{out: f(v)}
				}
				reply(w, map[string]any{"batch_results": results})
				return
			}
			v, _ := req[field].(string)
			reply(w, map[string]any{out: f(v)})
		}
	}
	mux.HandleFunc("PUT /v1/transit/encrypt/bench", handle("plaintext", "ciphertext", seal))
	mux.HandleFunc("PUT /v1/transit/decrypt/bench", handle("ciphertext", "plaintext", open))
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return srv.URL
}

func TestTransitBatchItemError(t *testing.T) {
	t.Parallel()
	sec := map[string]any{"batch_results": []any{
		map[string]any{"ciphertext": "vault:v1:x"},
		map[string]any{"error": "invalid base64"},
	}}
	if _, err := checkBatchResults(&vaultapi.Secret{Data: sec}, "ciphertext", 2); err == nil || !strings.Contains(err.Error(), "invalid base64") {
		t.Errorf("checkBatchResults(item error) = %v, want the item's error", err)
	}
	if _, err := checkBatchResults(&vaultapi.Secret{Data: sec}, "ciphertext", 3); err == nil {
		t.Error("checkBatchResults(short batch) err = nil, want an error")
	}
	if err := checkCiphertext(base64.StdEncoding.EncodeToString([]byte("x"))); err == nil {
		t.Error("checkCiphertext(not vault:) err = nil")
	}
}

func TestGenkeys(t *testing.T) {
	t.Parallel()
	out := filepath.Join(t.TempDir(), "ks", "keystore.json")
	cfg, err := parseGenkeys([]string{"--n", "12", "--out", out, "--iterations", "1000", "--algorithm", "aes-256-gcm"}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if err := genkeys(cfg, io.Discard); err != nil {
		t.Fatalf("genkeys: %v", err)
	}
	snap, err := filestore.New(out).Load(context.Background())
	if err != nil {
		t.Fatalf("loading what genkeys wrote: %v", err)
	}
	if len(snap.Records) != 12 {
		t.Fatalf("%d records, want 12", len(snap.Records))
	}
	r0, r11 := snap.Records[0], snap.Records[11]
	if !slices.Equal(r0.Aliases, []string{"default", "store-00"}) || !slices.Equal(r11.Aliases, []string{"store-11"}) {
		t.Errorf("aliases = %v, %v; want [default store-00], [store-11]", r0.Aliases, r11.Aliases)
	}
	if r0.KDF.Iterations != 1000 || r0.Algorithm != key.AES256GCM || r0.Fingerprint == r11.Fingerprint {
		t.Errorf("record 0 = %+v", r0)
	}
	if fi, err := os.Stat(out); err != nil || fi.Mode().Perm() != filestore.Mode {
		t.Errorf("keystore mode = %v, %v; want %v", fi.Mode().Perm(), err, os.FileMode(filestore.Mode))
	}
	if err := genkeys(cfg, io.Discard); err == nil || !strings.Contains(err.Error(), "already exists") {
		t.Errorf("genkeys over an existing keystore = %v, want a refusal", err)
	}
	for _, bad := range [][]string{{"--out", out, "--n", "0"}, {"--n", "3"}, {"--out", out, "--algorithm", "des"}, {"--out", out, "--iterations", "10"}} {
		if _, err := parseGenkeys(bad, io.Discard); err == nil {
			t.Errorf("parseGenkeys(%q) err = nil, want a usage error", bad)
		}
	}
}

// TestHelpShowsNoToken: --help prints each flag's default; the Vault token
// from VAULT_TOKEN must not be one of them.
func TestHelpShowsNoToken(t *testing.T) {
	t.Parallel()
	const token = "hvs.s3cret-token"
	env := func(k string) string {
		if k == "VAULT_TOKEN" {
			return token
		}
		return ""
	}
	for _, cmd := range []struct {
		name  string
		parse func(args []string) (string, error)
	}{
		{"alebench", func(args []string) (string, error) {
			var out bytes.Buffer
			_, err := parseConfig(args, env, &out)
			return out.String(), err
		}},
		{"alebench floors", func(args []string) (string, error) {
			var out bytes.Buffer
			_, err := parseFloors(args, env, &out)
			return out.String(), err
		}},
	} {
		help, err := cmd.parse([]string{"--help"})
		if !errors.Is(err, flag.ErrHelp) {
			t.Fatalf("%s --help: err = %v, want flag.ErrHelp", cmd.name, err)
		}
		if strings.Contains(help, token) {
			t.Errorf("%s --help shows the Vault token:\n%s", cmd.name, help)
		}
	}
}
