package e2e

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/alecrypt/alecrypt/internal/key"
	"github.com/alecrypt/alecrypt/internal/keystore/filestore"
	"github.com/alecrypt/alecrypt/test/harness"
)

// sealedCanary is in the secret of every key these tests seal: it must show
// in no sealed file, temporary file, output or log.
const sealedCanary = "SEALED-CANARY-4f1d-not-a-real-secret"

// ageKeygen makes an identity file with the standard age-keygen and returns
// its path and its recipient.
func ageKeygen(t *testing.T, dir, name string) (identity, recipient string) {
	t.Helper()
	keygen := harness.RequireTool(t, "age-keygen")
	identity = filepath.Join(dir, name)
	if out, errOut, code := harness.Run(t, "", nil, keygen, "-o", identity); code != 0 {
		t.Fatalf("age-keygen -o: exit %d: %s%s", code, out, errOut)
	}
	out, errOut, code := harness.Run(t, "", nil, keygen, "-y", identity)
	if code != 0 {
		t.Fatalf("age-keygen -y: exit %d: %s%s", code, out, errOut)
	}
	return identity, strings.TrimSpace(out)
}

// ageDecrypt opens a file with the standard age CLI, a tool we did not
// write.
func ageDecrypt(t *testing.T, identity, file string) (string, string, int) {
	t.Helper()
	return harness.Run(t, "", nil, harness.RequireTool(t, "age"), "-d", "-i", identity, file)
}

// checkSealedDir fails if the keystore or anything left beside it shows a
// secret or a fingerprint, or is not sealed.
func checkSealedDir(t *testing.T, ks string, fingerprints ...string) {
	t.Helper()
	data, err := os.ReadFile(ks)
	if err != nil {
		t.Fatal(err)
	}
	if !filestore.IsSealed(data) {
		t.Fatalf("%s is not sealed", ks)
	}
	entries, err := os.ReadDir(filepath.Dir(ks))
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		data, err := os.ReadFile(filepath.Join(filepath.Dir(ks), e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		if strings.Contains(string(data), sealedCanary) {
			t.Errorf("%s holds a secret", e.Name())
		}
		if strings.HasSuffix(e.Name(), ".tmp") {
			t.Errorf("temporary file %s left behind", e.Name())
		}
		for _, fp := range fingerprints {
			if e.Name() == filepath.Base(ks) && strings.Contains(string(data), fp) {
				t.Errorf("the sealed keystore shows fingerprint %s", fp)
			}
		}
	}
}

// TestSealedKeystore: a plaintext keystore sealed with alectl opens with
// the standard age CLI; alecryptd serves it with --keystore-identity; alectl
// edits it and re-seals it to a new recipient (KEK rotation), after which
// the old identity opens nothing and a running alecryptd holding only the
// old one keeps serving what it had.
func TestSealedKeystore(t *testing.T) {
	dir := t.TempDir()
	keysDir := filepath.Join(dir, "data")
	if err := os.Mkdir(keysDir, 0o700); err != nil {
		t.Fatal(err)
	}
	ks := filepath.Join(keysDir, "keystore.json")
	data, err := filestore.Encode([]key.Record{testKey("fp-sealed-1", "store-1", sealedCanary+"-1", time.Now().UTC())})
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(ks, data, filestore.Mode); err != nil {
		t.Fatal(err)
	}
	id1, r1 := ageKeygen(t, dir, "identity-1")
	id2, r2 := ageKeygen(t, dir, "identity-2")
	bin := filepath.Join(harness.Binaries(t), "alectl")
	run := func(env []string, args ...string) (string, string, int) {
		t.Helper()
		out, errOut, code := harness.Run(t, "", append([]string{"ALECRYPT_KEYSTORE=" + ks, "ALECRYPT_KEYSTORE_IDENTITY="}, env...), bin, args...)
		if strings.Contains(out+errOut, sealedCanary) || strings.Contains(out+errOut, "AGE-SECRET-KEY-") {
			t.Errorf("alectl %s printed a secret:\n%s%s", strings.Join(args, " "), out, errOut)
		}
		return out, errOut, code
	}
	mustRun := func(env []string, args ...string) string {
		t.Helper()
		out, errOut, code := run(env, args...)
		if code != 0 {
			t.Fatalf("alectl %s: exit %d\n%s%s", strings.Join(args, " "), code, out, errOut)
		}
		return out
	}

	// An identity where a recipient belongs is refused without echoing it.
	secretLine, err := os.ReadFile(id1)
	if err != nil {
		t.Fatal(err)
	}
	var identity string
	for _, l := range strings.Split(string(secretLine), "\n") {
		if strings.HasPrefix(l, "AGE-SECRET-KEY-") {
			identity = l
		}
	}
	if _, errOut, code := run(nil, "keys", "seal", "--recipient", identity); code != 2 || !strings.Contains(errOut, "age identity (a private key), not a recipient") {
		t.Errorf("keys seal --recipient IDENTITY: exit %d, stderr %q; want 2 naming the mistake", code, errOut)
	}

	out := mustRun(nil, "keys", "seal", "--recipient", r1)
	if !strings.Contains(out, "sealed") || !strings.Contains(out, "1 recipient") {
		t.Errorf("keys seal printed %q", out)
	}
	checkSealedDir(t, ks, "fp-sealed-1")

	// The standard age CLI opens what alectl sealed, into the plain keystore format.
	plain, errOut, code := ageDecrypt(t, id1, ks)
	if code != 0 {
		t.Fatalf("age -d: exit %d: %s", code, errOut)
	}
	recs, err := filestore.Parse([]byte(plain))
	if err != nil || len(recs) != 1 || string(recs[0].Secret.Expose()) != sealedCanary+"-1" {
		t.Fatalf("age -d gave %d records (err %v); want the sealed key with its secret", len(recs), err)
	}

	// Without the identity, an edit fails and says what to give.
	if _, errOut, code := run(nil, "keys", "add", "--alias", "store-2"); code != 1 || !strings.Contains(errOut, "--identity") {
		t.Errorf("keys add on a sealed keystore without --identity: exit %d, stderr %q; want 1 naming --identity", code, errOut)
	}

	svc := harness.StartAlecryptd(t, harness.StartOptions{Keystore: ks, Args: []string{"--keystore-identity", id1, "--refresh", "1h"}})
	client := newCryptoClient(svc.URL)
	if got := resolveFP(t, client, "store-1"); got != "fp-sealed-1" {
		t.Fatalf("Resolve(store-1) = %q, want fp-sealed-1", got)
	}
	if err := encryptFP(client, "fp-sealed-1"); err != nil {
		t.Fatalf("Encrypt with the sealed key: %v", err)
	}
	if strings.Contains(svc.Logs(), "NOT sealed") {
		t.Errorf("alecryptd warned a sealed keystore is not sealed:\n%s", svc.Logs())
	}

	// Edits through the identity (env, as a deployment sets it) re-seal
	// to the recipients file, and alecryptd reloads them.
	idEnv := []string{"ALECRYPT_KEYSTORE_IDENTITY=" + id1}
	secretFile := filepath.Join(dir, "secret-2")
	if err := os.WriteFile(secretFile, []byte(sealedCanary+"-2\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	mustRun(idEnv, "keys", "add", "--alias", "store-2", "--fingerprint", "fp-sealed-2", "--secret-file", secretFile, "--salt", "salt-2",
		"--iterations", "100000")
	mustRun(idEnv, "keys", "state", "fp-sealed-1", "decrypt-only")
	checkSealedDir(t, ks, "fp-sealed-1", "fp-sealed-2")
	svc.Signal(t, syscall.SIGHUP)
	waitFor(t, "alecryptd to serve the key added to the sealed keystore", func() bool { return resolveFP(t, client, "store-2") == "fp-sealed-2" })

	// KEK rotation: re-seal to a new recipient only.
	out = mustRun(idEnv, "keys", "seal", "--recipient", r2)
	if !strings.Contains(out, "2 keys") {
		t.Errorf("keys seal (re-seal) printed %q, want 2 keys", out)
	}
	checkSealedDir(t, ks, "fp-sealed-1", "fp-sealed-2")
	if _, _, code := ageDecrypt(t, id1, ks); code == 0 {
		t.Errorf("age -d with the old identity opened the re-sealed keystore")
	}
	if plain, errOut, code := ageDecrypt(t, id2, ks); code != 0 || !strings.Contains(plain, "fp-sealed-2") {
		t.Errorf("age -d with the new identity: exit %d: %s", code, errOut)
	}
	list, err := os.ReadFile(ks + ".recipients")
	if err != nil || !strings.Contains(string(list), r2) || strings.Contains(string(list), r1) {
		t.Errorf("recipients file = %q (%v), want only the new recipient", list, err)
	}

	// The running alecryptd holds only the old identity: the reload fails
	// clearly and the keys it serves stay served.
	svc.Signal(t, syscall.SIGHUP)
	waitFor(t, "alecryptd to log the failed reload", func() bool { return strings.Contains(svc.Logs(), "no identity given opens the sealed keystore") })
	if got := resolveFP(t, client, "store-2"); got != "fp-sealed-2" {
		t.Errorf("after a reload with the wrong identity, Resolve(store-2) = %q, want the key still served", got)
	}
	if strings.Contains(svc.Logs(), sealedCanary) || strings.Contains(svc.Logs(), "AGE-SECRET-KEY-") {
		t.Errorf("alecryptd logged a secret:\n%s", svc.Logs())
	}

	// A new alecryptd: without an identity, or with the old one, it
	// refuses to start and says why.
	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"no identity", nil, "--keystore-identity"},
		{"old identity", []string{"--keystore-identity", id1}, "no identity given opens the sealed keystore"},
	} {
		failed := harness.StartAlecryptd(t, harness.StartOptions{Keystore: ks, Args: tc.args, Env: []string{"ALECRYPT_KEYSTORE_IDENTITY="}, ExpectExit: true})
		if exited, _ := failed.Exited(); !exited || !strings.Contains(failed.Logs(), tc.want) {
			t.Errorf("alecryptd on the sealed keystore, %s: exited %v, want a start error naming %q:\n%s", tc.name, exited, tc.want, failed.Logs())
		}
	}
}

// TestUnsealedKeystoreWarns: the quick start's plaintext keystore works and
// alecryptd says at start that it is not sealed.
func TestUnsealedKeystoreWarns(t *testing.T) {
	svc := harness.StartAlecryptd(t, harness.StartOptions{})
	waitFor(t, "the unsealed warning", func() bool {
		return slices.ContainsFunc(strings.Split(svc.Logs(), "\n"), func(l string) bool {
			return strings.Contains(l, `"level":"WARN"`) && strings.Contains(l, "NOT sealed")
		})
	})
}
