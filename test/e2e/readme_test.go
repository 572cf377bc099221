package e2e

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/alecrypt/alecrypt/test/harness"
	"github.com/alecrypt/alecrypt/test/kitchentest"
)

// readmeBlockRE finds the code blocks marked for this test.
var readmeBlockRE = regexp.MustCompile("(?s)<!-- readme-test: ([a-z0-9-]+) -->\n```sh\n(.*?)```")

// readmePages are the documents whose marked blocks this test runs: the
// README's Quick start, and the pages of docs/ that go on from it (alectl and
// grpcurl, key rotation and rewrap, the POS side, a local Vault).
var readmePages = []string{"README.md", "docs/clients.md", "docs/keys.md", "docs/vault.md"}

// readmeBlocks returns the marked blocks of readmePages by name; a name
// marked twice fails the test, so each block runs from the one page it is on.
func readmeBlocks(t *testing.T) map[string]string {
	t.Helper()
	out := map[string]string{}
	where := map[string]string{}
	for _, page := range readmePages {
		b, err := os.ReadFile(filepath.Join(harness.RepoRoot(), page))
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range readmeBlockRE.FindAllStringSubmatch(string(b), -1) {
			if prev, ok := where[m[1]]; ok {
				t.Fatalf("block readme-test: %s is marked in %s and in %s", m[1], prev, page)
			}
			out[m[1]], where[m[1]] = m[2], page
		}
	}
	return out
}

// asRun is a marked block as this test runs it. The only rewrites: the
// binaries (grpcurl included) are the ones the harness built, already on
// PATH, so `make build` and `make tools` lines are dropped (TestMakeBuild
// checks what they put in bin/) and `go run ./cmd/X` is X; and the fixed
// addresses of the pages (127.0.0.1:8080, alegate's :8081, Vault's :8200)
// become the test's free ports.
func asRun(block string, addrs *strings.Replacer) string {
	var lines []string
	for _, l := range strings.Split(block, "\n") {
		if strings.HasPrefix(l, "make build") || strings.HasPrefix(l, "make tools") {
			continue
		}
		lines = append(lines, strings.ReplaceAll(l, "go run ./cmd/", ""))
	}
	return addrs.Replace(strings.Join(lines, "\n"))
}

// readmeDir is a working directory laid out like the repository root for
// the pages' relative paths: examples/ and test/vault/build-vault.sh.
func readmeDir(t *testing.T, dir string) {
	t.Helper()
	root := harness.RepoRoot()
	if err := os.MkdirAll(filepath.Join(dir, "test", "vault"), 0o755); err != nil {
		t.Fatal(err)
	}
	for _, l := range []string{"examples", "test/vault/build-vault.sh"} {
		if err := os.Symlink(filepath.Join(root, l), filepath.Join(dir, l)); err != nil {
			t.Fatal(err)
		}
	}
}

// startBlock starts the long-running program of a block that is a
// terminal's: `export K=V ...` lines set its environment, the one other line
// is the command (a trailing # comment dropped). It listens on free ports.
func startBlock(t *testing.T, block string) *harness.Service {
	t.Helper()
	var env, cmd []string
	for _, l := range strings.Split(strings.TrimSpace(block), "\n") {
		if rest, ok := strings.CutPrefix(l, "export "); ok {
			env = append(env, strings.Fields(rest)...)
			continue
		}
		if cmd != nil {
			t.Fatalf("block has two commands: %q", block)
		}
		for _, f := range strings.Fields(l) {
			if strings.HasPrefix(f, "#") {
				break
			}
			cmd = append(cmd, f)
		}
	}
	if len(cmd) == 0 || cmd[0] != "alecryptd" {
		t.Fatalf("block's command is %q, want alecryptd", cmd)
	}
	env = append(env, "ALECRYPT_LISTEN=127.0.0.1:0", "ALECRYPT_METRICS_LISTEN=127.0.0.1:0", "ALECRYPT_KEYSTORE=")
	return harness.StartProgram(t, "alecryptd", cmd[1:], env, "alecryptd listening", false)
}

// runBlock runs a block with bash -eu -o pipefail in dir, alectl pointed at
// svc, and returns its stdout; any failing line fails the test.
func runBlock(t *testing.T, name, block, dir string, svc *harness.Service) string {
	t.Helper()
	cmd := exec.Command("bash", "-euo", "pipefail", "-c", block)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "PATH="+harness.Binaries(t)+":"+os.Getenv("PATH"), "ALECRYPT_ADDR="+svc.URL,
		"ALECRYPT_KEYSTORE=")
	var out, errb strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		t.Fatalf("block %q failed: %v\n--- as run:\n%s\n--- stdout:\n%s--- stderr:\n%s", name, err, block, out.String(), errb.String())
	}
	return out.String()
}

// TestReadmeQuickStart runs the README's Quick start in its two terminals,
// then the alectl, grpcurl, key-management, rewrap and POS-side blocks of
// docs/clients.md and docs/keys.md, against examples/.
func TestReadmeQuickStart(t *testing.T) {
	blocks := readmeBlocks(t)
	for _, name := range []string{"terminal-1", "terminal-2", "alectl", "grpcurl", "keys", "rewrap", "alectl-http"} {
		if blocks[name] == "" {
			t.Fatalf("no page of %v has a block marked readme-test: %s", readmePages, name)
		}
	}
	svc := startBlock(t, asRun(blocks["terminal-1"], strings.NewReplacer()))
	readmeDir(t, svc.Dir)
	addrs := strings.NewReplacer("127.0.0.1:8080", svc.Addr)

	out := runBlock(t, "terminal-2", asRun(blocks["terminal-2"], addrs), svc.Dir, svc)
	order, err := os.ReadFile(filepath.Join(harness.RepoRoot(), "examples", "order.json"))
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) < 3 || !regexp.MustCompile(`^\{"iv":"[A-Za-z0-9+/=]{24}","fingerprint":"[^"]+","message":"[A-Za-z0-9+/=]+"\}$`).MatchString(lines[0]) ||
		lines[1] != strings.TrimSpace(string(order)) || !strings.Contains(out, "default") {
		t.Fatalf("Quick start output: want a frame, the order back, and the default key listed:\n%s", out)
	}

	runBlock(t, "alectl", asRun(blocks["alectl"], addrs), svc.Dir, svc)
	harness.RequireTool(t, "jq")
	if out := runBlock(t, "grpcurl", asRun(blocks["grpcurl"], addrs), svc.Dir, svc); !strings.Contains(out, `"plaintext": "aGVsbG8sIGtpdGNoZW4="`) {
		t.Fatalf("grpcurl block: Decrypt of alectl's frame did not give the plaintext back:\n%s", out)
	}
	out = runBlock(t, "keys", asRun(blocks["keys"], addrs), svc.Dir, svc)
	for _, want := range []*regexp.Regexp{
		regexp.MustCompile(`ek-store-7-2026\s+store-7\s+aes-256-ctr\s+decrypt-only`),
		regexp.MustCompile(`ek-store-8-2026\s+store-8\s+aes-256-ctr\s+active\s+true`),
		regexp.MustCompile(`ek-store-8-2025\s+store-8\s+aes-256-ctr\s+decrypt-only`),
		regexp.MustCompile(`store-1\s+aes-256-gcm\s+active\s+true`),
	} {
		if !want.MatchString(out) {
			t.Errorf("keys block: the list lacks %s:\n%s", want, out)
		}
	}

	// Rotation: the stored frames of examples/ move off store-8's retired
	// key, which the keys block imported, to its primary.
	runBlock(t, "rewrap", asRun(blocks["rewrap"], addrs), svc.Dir, svc)
	rewrapped, err := os.ReadFile(filepath.Join(svc.Dir, "rewrapped.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	stored, err := os.ReadFile(filepath.Join(harness.RepoRoot(), "examples", "stored-frames.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	frames := strings.Split(strings.TrimSpace(string(rewrapped)), "\n")
	if len(frames) != strings.Count(string(stored), "\n") || len(frames) == 0 {
		t.Fatalf("rewrap block: %d frames out for %d in:\n%s", len(frames), strings.Count(string(stored), "\n"), rewrapped)
	}
	for _, f := range frames {
		if !strings.Contains(f, `"fingerprint":"ek-store-8-2026"`) {
			t.Errorf("rewrap block: frame not under store-8's primary: %s", f)
		}
		if out := runBlock(t, "decrypt a rewrapped frame", "alectl decrypt --expect json --data '"+f+"'", svc.Dir, svc); !strings.HasPrefix(out, `{"order":`) {
			t.Errorf("rewrapped frame decrypts to %q, want an order", out)
		}
	}

	// The POS side: alectl http through alegate to a kitchen, which gets the
	// order as plaintext.
	kitchen := kitchentest.Start(t)
	gate := harness.StartAlegate(t, kitchen.URL, svc.URL)
	gateAddrs := strings.NewReplacer("127.0.0.1:8080", svc.Addr, "127.0.0.1:8081", gate.Addr)
	t.Setenv("POS_TOKEN", "readme-token")
	runBlock(t, "alectl-http", asRun(blocks["alectl-http"], gateAddrs), svc.Dir, svc)
	reqs := kitchen.Requests()
	if len(reqs) != 1 || string(reqs[0].Body) != string(order) || reqs[0].Header.Get("Authorization") != "Bearer readme-token" {
		t.Fatalf("alectl-http block: the kitchen saw %+v, want one request with the order from examples/ and the token", reqs)
	}
}

// TestReadmeLocalVault runs docs/vault.md's local-Vault walkthrough: alecryptd
// on an empty Vault warns, naming the path, and says so in /readyz; the
// page's `vault kv put` of examples/vault-key.json is then served.
func TestReadmeLocalVault(t *testing.T) {
	blocks := readmeBlocks(t)
	if blocks["vault-alecryptd"] == "" || blocks["vault-put"] == "" {
		t.Fatalf("no page of %v has the blocks marked readme-test: vault-alecryptd and vault-put", readmePages)
	}
	v := harness.StartVault(t) // the page's first terminal, on a free port
	vaddrs := strings.NewReplacer("http://127.0.0.1:8200", v.Addr)
	svc := startBlock(t, asRun(blocks["vault-alecryptd"], vaddrs))
	const warn = `"level":"WARN","msg":"keystore is empty: no keys to serve; every call fails until keys are added there","path":"secret/alecrypt/keys"`
	if !strings.Contains(svc.Logs(), warn) {
		t.Fatalf("alecryptd on an empty Vault: no WARN naming the path in its log:\n%s", svc.Logs())
	}
	if code, body := readyz(t, svc); code != 200 || !strings.Contains(body, "keystore: no keys at secret/alecrypt/keys") {
		t.Fatalf("/readyz on an empty Vault = %d %q, want 200 with the empty keystore named", code, body)
	}
	readmeDir(t, svc.Dir)
	out := runBlock(t, "vault-put", asRun(blocks["vault-put"], vaddrs), svc.Dir, svc)
	if !regexp.MustCompile(`ek-store-9-2026\s+store-9,default\s+aes-256-ctr\s+active\s+true\s+1\s+\S+\s+portal`).MatchString(out) {
		t.Fatalf("vault-put block: resolve does not show the key from examples/vault-key.json:\n%s", out)
	}
	if _, body := readyz(t, svc); strings.Contains(body, "no keys") {
		t.Fatalf("/readyz still reports an empty keystore: %q", body)
	}
}
