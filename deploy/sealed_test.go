package deploy

import (
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"filippo.io/age"
)

// TestAlecryptdWithSealedOverlayArgs starts alecryptd with the
// sealed-keystore overlay's arguments, the pod's files laid out under a
// temporary root as kubelet mounts them (Secret files 0440 under the pod's
// fsGroup, read-only directories): it must open the sealed keystore with the
// identity, serve, and not warn that the keystore is unsealed.
func TestAlecryptdWithSealedOverlayArgs(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs alecryptd")
	}
	_, c, cm := renderAlecryptd(t, filepath.Join(k8sDir, "overlays", "sealed-keystore"))
	dir := t.TempDir()
	bin := buildProgram(t, dir, "alecryptd")

	id, err := age.GenerateX25519Identity()
	if err != nil {
		t.Fatal(err)
	}
	pki := newTestPKI(t)
	files := map[string][]byte{
		"/etc/alecrypt/tls/tls.crt":                       pki.serverCert,
		"/etc/alecrypt/tls/tls.key":                       pki.serverKey,
		"/etc/alecrypt/trust/internal-ca.crt":             pki.caCert,
		"/etc/alecrypt/policy/policy.json":                []byte(cm.Data["policy.json"]),
		"/etc/alecrypt/keystore-identity/identity":        []byte(id.String() + "\n"),
		"/etc/alecrypt/keystore/keystore.json.recipients": []byte(id.Recipient().String() + "\n"),
		"/etc/alecrypt/audit-chain/key":                   []byte(strings.Repeat("5a", 32) + "\n"),
	}
	writeFiles(t, dir, files)
	args := localArgs(c.Args, dir, nil)

	// The first start creates the sealed keystore (one fresh key, sealed to
	// the recipients file), as an operator's alectl would have; then the
	// Secret's files are made what kubelet mounts: 0440, read-only.
	first := startProgram(t, bin, args, "alecryptd listening", "metrics listening")
	first.stop(t)
	ksDir := filepath.Join(dir, "/etc/alecrypt/keystore")
	if err := os.Remove(filepath.Join(ksDir, "keystore.json.lock")); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{filepath.Join(ksDir, "keystore.json"), filepath.Join(dir, "/etc/alecrypt/keystore-identity/identity")} {
		if err := os.Chmod(f, 0o440); err != nil {
			t.Fatal(err)
		}
	}
	data, err := os.ReadFile(filepath.Join(ksDir, "keystore.json"))
	if err != nil || !strings.HasPrefix(string(data), "-----BEGIN AGE ENCRYPTED FILE-----") {
		t.Fatalf("the keystore alecryptd created is not sealed (err %v)", err)
	}
	if err := os.Chmod(ksDir, 0o500); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.Chmod(ksDir, 0o700) })

	proc := startProgram(t, bin, args, "alecryptd listening", "metrics listening")
	res, err := http.Get("http://" + proc.addrs["metrics listening"] + "/readyz")
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != http.StatusOK {
		t.Errorf("GET /readyz = %d, want 200", res.StatusCode)
	}
	if code, body := postTLS(t, pki, &pki.alegate, proc.addrs["alecryptd listening"], "/ale.v1.CryptoService/Encrypt", `{"plaintext":"aGk="}`); code != http.StatusOK {
		t.Errorf("Encrypt with the sealed keystore = %d %s, want 200", code, body)
	}
	logs := proc.logs.String()
	if strings.Contains(logs, "NOT sealed") || strings.Contains(strings.ToUpper(logs), "AGE-SECRET-KEY") {
		t.Errorf("alecryptd's log warns of an unsealed keystore or shows the identity:\n%s", logs)
	}
	entries, _ := os.ReadDir(ksDir)
	if len(entries) != 2 {
		t.Errorf("the read-only keystore directory holds %d files, want the keystore and its recipients file", len(entries))
	}
	proc.stop(t)
}
