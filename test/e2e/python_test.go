package e2e

import (
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/alecrypt/alecrypt/test/harness"
)

// pythonDir holds the Python client, its generated stubs and its tests.
func pythonDir() string { return filepath.Join(harness.RepoRoot(), "clients", "python") }

// runUnittest runs one unittest class of clients/python/test_ale_client.py
// with env and checks that at least min tests ran and all passed: a run that
// silently tests nothing must not pass.
func runUnittest(t *testing.T, py string, env []string, class string, min int) {
	t.Helper()
	// PYTHONPATH makes ale_client and the test module importable without a
	// working directory; no .pyc files are left in the checkout.
	env = append(env, "PYTHONPATH="+pythonDir(), "PYTHONDONTWRITEBYTECODE=1")
	_, errOut, code := harness.Run(t, "", env, py, "-m", "unittest", "-v", "test_ale_client."+class)
	t.Logf("unittest %s:\n%s", class, errOut)
	if code != 0 {
		t.Fatalf("python unittest %s: exit %d", class, code)
	}
	m := regexp.MustCompile(`(?m)^Ran (\d+) tests? in `).FindStringSubmatch(errOut)
	if m == nil {
		t.Fatal("unittest printed no summary")
	}
	if n, _ := strconv.Atoi(m[1]); n < min {
		t.Fatalf("unittest ran %d tests, want at least %d", n, min)
	}
	if strings.Contains(errOut, "skipped") {
		t.Fatal("unittest skipped tests")
	}
}

// TestPythonClient runs docs/clients.md's Python example and the client's tests
// (generated stubs, ale_client helper, Debian's grpcio and protobuf) against
// a real alecryptd: round trips, frames, ErrorDetail on failures, batches,
// the bidi Stream and ListKeys.
func TestPythonClient(t *testing.T) {
	py := harness.RequirePython(t)
	svc := harness.StartAlecryptd(t, harness.StartOptions{})

	out, errOut, code := harness.Run(t, "", []string{"PYTHONDONTWRITEBYTECODE=1"}, py, filepath.Join(pythonDir(), "example.py"), svc.Addr)
	if code != 0 {
		t.Fatalf("example.py %s: exit %d\n%s%s", svc.Addr, code, out, errOut)
	}
	if !strings.Contains(out, "plaintext: {\"order\":42}\n") || !regexp.MustCompile(`(?m)^frame: \{"iv":"[A-Za-z0-9+/]{22}==","fingerprint":"[^"]+","message":"`).MatchString(out) {
		t.Errorf("example.py output:\n%s", out)
	}
	if _, _, code := harness.Run(t, "", nil, py, filepath.Join(pythonDir(), "example.py")); code != 2 {
		t.Errorf("example.py without HOST:PORT: exit %d, want 2", code)
	}

	runUnittest(t, py, []string{"ALECRYPT_TARGET=" + svc.Addr}, "PlainTest", 11)

	// The key alecryptd generated never reaches the client.
	data, err := os.ReadFile(svc.Keystore)
	if err != nil {
		t.Fatal(err)
	}
	if m := regexp.MustCompile(`"secret":\s*"([^"]+)"`).FindSubmatch(data); m == nil || strings.Contains(out+errOut, string(m[1])) {
		t.Fatal("no secret in the keystore, or the secret appeared in the example's output")
	}
}

// TestPythonClientTLSToken runs the Python client against alecryptd with TLS
// and a caller policy: the helper's CA and bearer-token options, the
// caller's default alias, and PermissionDenied without an ALE detail.
func TestPythonClientTLSToken(t *testing.T) {
	py := harness.RequirePython(t)
	e := startSecure(t)
	runUnittest(t, py, []string{
		"ALECRYPT_TARGET=" + e.svc.Addr,
		"ALECRYPT_CA=" + e.pki.CAFile,
		"ALECRYPT_TOKEN=" + tokenPOS2,
		"ALECRYPT_TOKEN_ALIAS=store-2",
		"ALECRYPT_FORBIDDEN_ALIAS=store-1",
	}, "SecureTest", 3)
}
