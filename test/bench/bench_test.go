// Package bench_test runs alebench, briefly, against the real programs it is
// for: a real alecryptd and a real Vault dev server with Transit, and the
// startup measurement on a generated keystore. It checks that the tool
// measures, not what it measures: the numbers are BENCHMARKS.md's business
// (test/bench/run.sh).
package bench_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"

	vaultapi "github.com/hashicorp/vault/api"

	"github.com/alecrypt/alecrypt/test/harness"
)

var (
	buildOnce sync.Once
	alebench  string
	buildErr  error
	// binDir holds the binary for the whole test process. It must not be
	// the first caller's t.TempDir(): that is removed when that test ends,
	// while parallel tests still run the binary.
	binDir string
)

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "alebench-test-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	binDir = dir
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// alebenchBinary builds cmd/alebench once per test process.
func alebenchBinary(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() {
		alebench = filepath.Join(binDir, "alebench")
		cmd := exec.Command("go", "build", "-o", alebench, "./cmd/alebench")
		cmd.Dir = harness.RepoRoot()
		if out, err := cmd.CombinedOutput(); err != nil {
			buildErr = fmt.Errorf("go build ./cmd/alebench: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return alebench
}

type row struct {
	Target          string  `json:"target"`
	Protocol        string  `json:"protocol"`
	Op              string  `json:"op"`
	Items           int64   `json:"items"`
	ItemsPerSecond  float64 `json:"items_per_second"`
	ServerCPUPerOp  float64 `json:"server_cpu_us_per_item"`
	ServerRSSBytes  int64   `json:"server_rss_bytes"`
	ServerPeakBytes int64   `json:"server_peak_rss_bytes"`
}

func TestSweepAlecryptdAndTransit(t *testing.T) {
	t.Parallel()
	bin := alebenchBinary(t)
	vault := harness.StartVault(t)
	vc := vault.Client(t, harness.VaultRootToken)
	ctx := context.Background()
	if err := vc.Sys().MountWithContext(ctx, "transit", &vaultapi.MountInput{Type: "transit"}); err != nil {
		t.Fatalf("enabling transit: %v", err)
	}
	if _, err := vc.Logical().WriteWithContext(ctx, "transit/keys/bench", map[string]any{"type": "aes256-gcm96"}); err != nil {
		t.Fatalf("creating the transit key: %v", err)
	}
	// Info, not the harness's debug: a line per call would only slow it.
	svc := harness.StartAlecryptd(t, harness.StartOptions{Args: []string{"--log-level", "info"}})

	stdout, stderr, code := harness.Run(t, "", nil, bin, "--target", "both",
		"--alecrypt-url", svc.URL, "--alecrypt-pid", fmt.Sprint(svc.PID()),
		"--vault-addr", vault.Addr, "--vault-token", harness.VaultRootToken, "--vault-pid", fmt.Sprint(vault.PID()),
		"--protocol", "connect,connect-http1", "--ops", "encrypt,decrypt,batch,stream",
		"--sizes", "1024", "--concurrency", "4", "--duration", "400ms", "--warmup", "100ms", "--json")
	if code != 0 {
		t.Fatalf("alebench exit %d:\n%s", code, stderr)
	}
	var rep struct {
		Rows    []row            `json:"results"`
		Targets []map[string]any `json:"targets"`
	}
	if err := json.Unmarshal([]byte(stdout), &rep); err != nil {
		t.Fatalf("alebench --json: %v\n%s", err, stdout)
	}
	cpuSeen := map[string]bool{}
	count := map[string]int{}
	for _, r := range rep.Rows {
		count[r.Target]++
		if r.Items == 0 || r.ItemsPerSecond <= 0 {
			t.Errorf("%s %s %s measured nothing: %+v", r.Target, r.Protocol, r.Op, r)
		}
		// The server's memory comes from /proc/PID/status of the right
		// process: Vault's dev server is far larger than alecryptd.
		if r.ServerRSSBytes <= 0 || r.ServerPeakBytes < r.ServerRSSBytes {
			t.Errorf("%s %s: RSS %d, peak %d; want 0 < RSS <= peak", r.Target, r.Op, r.ServerRSSBytes, r.ServerPeakBytes)
		}
		if r.ServerCPUPerOp > 0 {
			cpuSeen[r.Target] = true
		}
	}
	// encrypt, decrypt and batch over two protocols, stream over one (no
	// bidi over HTTP/1.1), and two half-peak rows per protocol; Transit has
	// no stream.
	if count["alecrypt"] != 3*2+1+2*2 || count["transit"] != 3+2 {
		t.Errorf("rows per target = %v, want alecrypt 11, transit 5", count)
	}
	if !cpuSeen["alecrypt"] || !cpuSeen["transit"] {
		t.Errorf("server CPU measured for %v, want both targets", cpuSeen)
	}
	if len(rep.Targets) == 0 {
		t.Error("no targets evaluated")
	}
}

func TestStartupOnGeneratedKeystore(t *testing.T) {
	t.Parallel()
	bin := alebenchBinary(t)
	ks := filepath.Join(t.TempDir(), "keystore.json")
	if out, errs, code := harness.Run(t, "", nil, bin, "genkeys", "--n", "300", "--iterations", "1000", "--out", ks); code != 0 {
		t.Fatalf("genkeys exit %d: %s%s", code, out, errs)
	}
	alecryptd := filepath.Join(harness.Binaries(t), "alecryptd")
	stdout, stderr, code := harness.Run(t, "", nil, bin, "startup", "--alecryptd", alecryptd, "--keystore", ks, "--samples", "50", "--json")
	if code != 0 {
		t.Fatalf("startup exit %d:\n%s", code, stderr)
	}
	var res struct {
		Keys        int     `json:"keys"`
		Serving     float64 `json:"first_encrypt_ok_seconds"`
		Derived     float64 `json:"all_keys_derived_seconds"`
		RSSDerived  int64   `json:"rss_after_derivation_bytes"`
		AfterDerive struct {
			N int `json:"n"`
		} `json:"encrypt_random_key_after_us"`
	}
	if err := json.Unmarshal([]byte(stdout), &res); err != nil {
		t.Fatalf("startup --json: %v\n%s", err, stdout)
	}
	if res.Keys != 300 || res.Serving <= 0 || res.Derived < res.Serving || res.RSSDerived <= 0 || res.AfterDerive.N != 50 {
		t.Errorf("startup = %+v", res)
	}
	if strings.Contains(stderr, "panic") {
		t.Errorf("stderr: %s", stderr)
	}
}

// TestFloors: alebench floors measures alegate next to a plain proxy and
// alecryptd next to the bare handler, each floor served by alebench serve.
func TestFloors(t *testing.T) {
	t.Parallel()
	bin := alebenchBinary(t)
	ks := filepath.Join(t.TempDir(), "keystore.json")
	if out, errs, code := harness.Run(t, "", nil, bin, "genkeys", "--n", "1", "--iterations", "1000", "--algorithm", "aes-256-ctr", "--out", ks); code != 0 {
		t.Fatalf("genkeys exit %d: %s%s", code, out, errs)
	}
	svc := harness.StartAlecryptd(t, harness.StartOptions{Keystore: ks, Args: []string{"--log-level", "info"}})
	kitchen := startServe(t, bin, "kitchen")
	gate := harness.StartAlegate(t, kitchen.URL, svc.URL)
	proxy := startServe(t, bin, "proxy", "--upstream", kitchen.URL)
	bare := startServe(t, bin, "bare", "--keystore", ks)

	stdout, stderr, code := harness.Run(t, "", nil, bin, "floors", "--paths", "http,ws,unary",
		"--gate-url", gate.URL, "--gate-pids", fmt.Sprintf("%d,%d", gate.PID(), svc.PID()),
		"--proxy-url", proxy.URL, "--proxy-pid", fmt.Sprint(proxy.pid),
		"--alecrypt-url", svc.URL, "--alecrypt-pid", fmt.Sprint(svc.PID()),
		"--bare-url", bare.URL, "--bare-pid", fmt.Sprint(bare.pid), "--keystore", ks,
		"--concurrency", "4", "--duration", "300ms", "--warmup", "100ms", "--rounds", "2")
	if code != 0 {
		t.Fatalf("alebench floors exit %d:\n%s", code, stderr)
	}
	for _, want := range []string{"| http ", "| ws ", "| unary ", "alegate / proxy", "alecryptd / bare"} {
		if !strings.Contains(stdout, want) {
			t.Errorf("no %q in the report:\n%s", want, stdout)
		}
	}
	if strings.Contains(stdout, "| — ") {
		t.Errorf("a ratio is missing:\n%s", stdout)
	}
}

// TestConns: alebench conns holds WebSockets through alegate and the plain
// proxy and storms both with new ones, with no error on either.
func TestConns(t *testing.T) {
	t.Parallel()
	bin := alebenchBinary(t)
	ks := filepath.Join(t.TempDir(), "keystore.json")
	if out, errs, code := harness.Run(t, "", nil, bin, "genkeys", "--n", "1", "--iterations", "1000", "--algorithm", "aes-256-ctr", "--out", ks); code != 0 {
		t.Fatalf("genkeys exit %d: %s%s", code, out, errs)
	}
	b, err := os.ReadFile(ks)
	if err != nil {
		t.Fatal(err)
	}
	var store struct {
		Keys []struct{ Fingerprint string }
	}
	if err := json.Unmarshal(b, &store); err != nil || len(store.Keys) != 1 {
		t.Fatalf("keystore %s: %v", b, err)
	}
	svc := harness.StartAlecryptd(t, harness.StartOptions{Keystore: ks, Args: []string{"--log-level", "info"}})
	kitchen := startServe(t, bin, "kitchen")
	gate := harness.StartAlegate(t, kitchen.URL, svc.URL)
	proxy := startServe(t, bin, "proxy", "--upstream", kitchen.URL)

	stdout, stderr, code := harness.Run(t, "", nil, bin, "conns", "--json",
		"--gate-url", gate.URL, "--gate-pid", fmt.Sprint(gate.PID()), "--crypto-pid", fmt.Sprint(svc.PID()),
		"--proxy-url", proxy.URL, "--proxy-pid", fmt.Sprint(proxy.pid), "--fingerprint", store.Keys[0].Fingerprint,
		"--hold", "20", "--settle", "100ms", "--idle", "100ms", "--storm-rate", "50", "--storm-duration", "400ms")
	if code != 0 {
		t.Fatalf("alebench conns exit %d:\n%s", code, stderr)
	}
	var got struct {
		Held []struct {
			Target string
			Held   int
			Errors int
		}
		Storm []struct {
			Target string
			Done   int
			Errors int
		}
	}
	if err := json.Unmarshal([]byte(stdout), &got); err != nil {
		t.Fatalf("report %s: %v", stdout, err)
	}
	if len(got.Held) != 2 || len(got.Storm) != 2 {
		t.Fatalf("report has %d held and %d storm rows, want 2 each (alegate, proxy):\n%s", len(got.Held), len(got.Storm), stdout)
	}
	for _, h := range got.Held {
		if h.Held != 20 || h.Errors != 0 {
			t.Errorf("%s held %d with %d errors, want 20 and 0", h.Target, h.Held, h.Errors)
		}
	}
	for _, s := range got.Storm {
		if s.Done != 20 || s.Errors != 0 {
			t.Errorf("%s storm: %d done with %d errors, want 20 and 0", s.Target, s.Done, s.Errors)
		}
	}
}

type served struct {
	URL string
	pid int
}

// startServe runs alebench serve KIND until the test ends.
func startServe(t *testing.T, bin, kind string, args ...string) served {
	t.Helper()
	cmd := exec.Command(bin, append([]string{"serve", kind}, args...)...)
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		_ = cmd.Wait()
	})
	sc := bufio.NewScanner(stderr)
	for sc.Scan() {
		var line struct{ Msg, Addr string }
		if json.Unmarshal(sc.Bytes(), &line) == nil && line.Msg == "alebench serve listening" {
			go func() { _, _ = io.Copy(io.Discard, stderr) }()
			return served{URL: "http://" + line.Addr, pid: cmd.Process.Pid}
		}
	}
	t.Fatalf("alebench serve %s did not start", kind)
	return served{}
}
