// Package e2e runs alecrypt's real programs against each other and against
// programs we did not write: Node's WebCrypto and grpcurl.
package e2e

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/alecrypt/alecrypt/test/harness"
)

// TestNodeWebCryptoInterop proves byte-for-byte compatibility with an
// implementation we did not write: test/node/interop.mjs uses only Node's
// built-in WebCrypto (PBKDF2, AES-CTR length 64) and fetch, and checks both
// directions against the running service, including a 64-bit counter wrap.
func TestNodeWebCryptoInterop(t *testing.T) {
	node := harness.RequireTool(t, "node")
	ks := filepath.Join(t.TempDir(), "keystore.json")
	const (
		fp     = "ek-interop-1"
		secret = "interop-sécret-🔑-not-a-real-key"
		salt   = "sel-日本語"
		iter   = 1000
	)
	addKey(t, ks, fp, "interop", secret, salt, iter)
	svc := harness.StartAlecryptd(t, harness.StartOptions{Keystore: ks})
	keyJSON, _ := json.Marshal(map[string]any{"fingerprint": fp, "secret": secret, "salt": salt, "iterations": iter, "counter_bits": 64})
	out, errOut, code := harness.Run(t, "", []string{"ALECRYPT_URL=" + svc.URL, "ALE_INTEROP_KEY=" + string(keyJSON)},
		node, filepath.Join(harness.RepoRoot(), "test", "node", "interop.mjs"))
	t.Logf("interop.mjs output:\n%s%s", out, errOut)
	if code != 0 {
		t.Fatalf("interop.mjs exit %d", code)
	}
	m := regexp.MustCompile(`interop: (\d+) checks passed`).FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("interop.mjs printed no summary line")
	}
	if n, _ := strconv.Atoi(m[1]); n < 15 {
		t.Fatalf("interop.mjs ran %d checks, want at least 15", n)
	}
	if strings.Contains(out+errOut+svc.Logs(), secret) {
		t.Fatal("the secret appeared in output or logs")
	}
}

// TestNodeVectorsUpToDate regenerates the WebCrypto vectors and fails if the
// committed file differs, so testdata can only come from WebCrypto.
func TestNodeVectorsUpToDate(t *testing.T) {
	node := harness.RequireTool(t, "node")
	out, errOut, code := harness.Run(t, "", nil, node, filepath.Join(harness.RepoRoot(), "test", "node", "webcrypto-vectors.mjs"), "--check")
	if code != 0 {
		t.Fatalf("webcrypto-vectors.mjs --check: exit %d\n%s%s", code, out, errOut)
	}
}

// TestFirstStartAndAlectl is the walk-through of the README's Quick start
// and docs/keys.md: a fresh alecryptd creates its keystore, then alectl
// encrypts, decrypts, resolves, adds and rotates keys while the service keeps
// running.
func TestFirstStartAndAlectl(t *testing.T) {
	svc := harness.StartAlecryptd(t, harness.StartOptions{})
	created := regexp.MustCompile(`"msg":"created keystore with a fresh key".*"fingerprint":"([0-9a-f]{32})"`).FindStringSubmatch(svc.Logs())
	if created == nil {
		t.Fatalf("no fingerprint logged on first start:\n%s", svc.Logs())
	}
	fi, err := os.Stat(svc.Keystore)
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("keystore = %v, %v; want mode 0600", fi, err)
	}
	first := created[1]

	for _, proto := range [][]string{nil, {"--grpc"}} {
		frame := mustAlectl(t, svc, `{"order":1,"item":"café"}`, append([]string{"encrypt"}, proto...)...)
		var env struct{ IV, Fingerprint, Message string }
		if err := json.Unmarshal([]byte(frame), &env); err != nil || env.Fingerprint != first || env.IV == "" {
			t.Fatalf("encrypt printed %q (%v), want a frame under %s", frame, err, first)
		}
		if got := mustAlectl(t, svc, frame, append([]string{"decrypt", "--expect", "json"}, proto...)...); got != `{"order":1,"item":"café"}` {
			t.Fatalf("decrypt = %q", got)
		}
	}
	var resolved struct {
		Key struct {
			Fingerprint string
			Primary     bool
			State       string
		}
	}
	if err := json.Unmarshal([]byte(mustAlectl(t, svc, "", "resolve", "--json")), &resolved); err != nil ||
		resolved.Key.Fingerprint != first || !resolved.Key.Primary || resolved.Key.State != "KEY_STATE_ACTIVE" {
		t.Fatalf("resolve --json = %+v, %v", resolved, err)
	}

	// A key added to the file is served without a restart.
	out := mustAlectl(t, svc, "", "keys", "add", "--alias", "default", "--json")
	var added struct{ Fingerprint string }
	if err := json.Unmarshal([]byte(out), &added); err != nil || added.Fingerprint == "" {
		t.Fatalf("keys add --json = %q, %v", out, err)
	}
	waitFor(t, "the new key to become the default", func() bool {
		out, _, code := alectl(t, svc, "", "resolve", "--json")
		return code == 0 && strings.Contains(out, added.Fingerprint)
	})
	// Rotation: retire the first key; it still decrypts but no longer encrypts.
	oldFrame := mustAlectl(t, svc, "kept", "encrypt", "--fingerprint", first)
	mustAlectl(t, svc, "", "keys", "state", first, "decrypt-only")
	waitFor(t, "the first key to be decrypt-only", func() bool {
		_, errOut, code := alectl(t, svc, "x", "encrypt", "--fingerprint", first)
		return code == 1 && strings.Contains(errOut, "failed_precondition")
	})
	if got := mustAlectl(t, svc, oldFrame, "decrypt"); got != "kept" {
		t.Fatalf("decrypt under the retired key = %q, want kept", got)
	}
	if list := mustAlectl(t, svc, "", "keys", "list"); !strings.Contains(list, "decrypt-only") || strings.Count(list, "\n") != 3 {
		t.Fatalf("keys list =\n%s", list)
	}

	// A conflicting import changes nothing.
	before, _ := os.ReadFile(svc.Keystore)
	conflict := strings.Replace(string(before), `"state": "active"`, `"state": "disabled"`, 1)
	importFile := filepath.Join(t.TempDir(), "import.json")
	if err := os.WriteFile(importFile, []byte(conflict), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, errOut, code := alectl(t, svc, "", "keys", "import", importFile); code != 1 || !strings.Contains(errOut, "different key") {
		t.Fatalf("conflicting import: exit %d, %s; want exit 1 naming the conflict", code, errOut)
	}
	if after, _ := os.ReadFile(svc.Keystore); string(after) != string(before) {
		t.Fatal("a refused import changed the keystore")
	}

	// Usage errors exit 2.
	if _, _, code := alectl(t, svc, "", "encrypt", "--alias", "a", "--fingerprint", "b"); code != 2 {
		t.Fatalf("alectl with both --alias and --fingerprint: exit %d, want 2", code)
	}
	if err := svc.Stop(t); err != nil {
		t.Fatalf("alecryptd exit after SIGTERM = %v, want clean exit", err)
	}
	if !strings.Contains(svc.Logs(), "alecryptd stopped cleanly") {
		t.Fatalf("no clean-shutdown line in the log")
	}
}

// TestBadKeystoreKeepsLastGoodKeys corrupts the keystore under a running
// service: it keeps serving the keys it had, and recovers when the file is
// fixed. A file that is not a keystore fails the reload; a keystore whose
// only record is invalid skips that record, and the removal of every key it
// would mean is held.
func TestBadKeystoreKeepsLastGoodKeys(t *testing.T) {
	svc := harness.StartAlecryptd(t, harness.StartOptions{})
	good, err := os.ReadFile(svc.Keystore)
	if err != nil {
		t.Fatal(err)
	}
	frame := mustAlectl(t, svc, "before", "encrypt")
	for i, bad := range []struct{ content, log string }{
		{`{"keys":[`, "keystore reload failed"},
		{`{"keys":[{"fingerprint":"x"}]}`, "keystore: skipping an invalid record"},
		{`{"nokeys":[]}`, "keystore reload failed"},
		{`{"keys":[{"fingerprint":"z/../victim"}]}`, "keystore: skipping an invalid record"},
	} {
		before := strings.Count(svc.Logs(), bad.log)
		writeAtomic(t, svc.Keystore, []byte(bad.content))
		svc.Signal(t, syscall.SIGHUP)
		waitFor(t, fmt.Sprintf("%q to be logged for bad keystore %d", bad.log, i), func() bool {
			return strings.Count(svc.Logs(), bad.log) > before
		})
		if got := mustAlectl(t, svc, frame, "decrypt"); got != "before" {
			t.Fatalf("after bad keystore %d: decrypt = %q, want before", i, got)
		}
		mustAlectl(t, svc, "still encrypting", "encrypt")
	}
	writeAtomic(t, svc.Keystore, append(good, ' '))
	waitFor(t, "a successful reload", func() bool {
		return strings.Count(svc.Logs(), `"msg":"keystore loaded"`) >= 2
	})
}
