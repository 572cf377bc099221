package e2e

import (
	"context"
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"connectrpc.com/connect"

	alev1 "github.com/alecrypt/alecrypt/gen/ale/v1"
	"github.com/alecrypt/alecrypt/internal/key"
	"github.com/alecrypt/alecrypt/internal/keystore/filestore"
	"github.com/alecrypt/alecrypt/internal/keystore/vaultstore"
	"github.com/alecrypt/alecrypt/test/harness"
)

func encryptFP(c interface {
	Encrypt(context.Context, *connect.Request[alev1.EncryptRequest]) (*connect.Response[alev1.EncryptResponse], error)
}, fp string) error {
	_, err := c.Encrypt(context.Background(), connect.NewRequest(&alev1.EncryptRequest{
		Key: &alev1.KeyRef{Ref: &alev1.KeyRef_Fingerprint{Fingerprint: fp}}, Plaintext: []byte(`{"n":1}`)}))
	return err
}

// TestSIGHUPReloadsSameSizeEdit: an operator edits the keystore in place
// with the same size and puts its mtime back, then sends SIGHUP: the service
// reloads. Periodic reloads are off (an hour), so only the signal can do it.
func TestSIGHUPReloadsSameSizeEdit(t *testing.T) {
	ks := filepath.Join(t.TempDir(), "keystore.json")
	data, err := filestore.Encode([]key.Record{testKey("fp-hup", "store-1", "sighup-secret", time.Now().UTC())})
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(ks, data, filestore.Mode); err != nil {
		t.Fatal(err)
	}
	svc := harness.StartAlecryptd(t, harness.StartOptions{Keystore: ks, Args: []string{"--refresh", "1h"}})
	client := newCryptoClient(svc.URL)
	if got := resolveFP(t, client, "store-1"); got != "fp-hup" {
		t.Fatalf("Resolve(store-1) = %q, want fp-hup", got)
	}
	fi, err := os.Stat(ks)
	if err != nil {
		t.Fatal(err)
	}
	edited := strings.Replace(string(data), `"store-1"`, `"store-9"`, 1)
	f, err := os.OpenFile(ks, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteAt([]byte(edited), 0); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	if err := os.Chtimes(ks, fi.ModTime(), fi.ModTime()); err != nil {
		t.Fatal(err)
	}
	if after, _ := os.Stat(ks); after.Size() != fi.Size() || !after.ModTime().Equal(fi.ModTime()) {
		t.Fatalf("the edit changed size or mtime: %d %v, was %d %v", after.Size(), after.ModTime(), fi.Size(), fi.ModTime())
	}
	svc.Signal(t, syscall.SIGHUP)
	waitFor(t, "SIGHUP to load the edited alias", func() bool { return resolveFP(t, client, "store-9") == "fp-hup" })
}

// TestExposedKeystoreIsNoticed: a keystore that becomes group-readable while
// the service runs fails the next periodic reload: the keys stay served,
// metrics, log and /readyz say so, and fixing the mode recovers.
func TestExposedKeystoreIsNoticed(t *testing.T) {
	svc := harness.StartAlecryptd(t, harness.StartOptions{})
	frame := mustAlectl(t, svc, "before", "encrypt")
	if err := os.Chmod(svc.Keystore, 0o640); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the exposed keystore to be refused", func() bool {
		return strings.Contains(svc.Logs(), "lets others read keys") && series(t, svc.MetricsURL)["alecrypt_keystore_up{}"] == 0
	})
	if got := mustAlectl(t, svc, frame, "decrypt"); got != "before" {
		t.Fatalf("decrypt with the keystore exposed = %q, want before (the last good keys)", got)
	}
	if code, body := readyz(t, svc); code != http.StatusOK || !strings.Contains(body, "last reload failed") {
		t.Errorf("/readyz = %d %q; want 200 reporting the failed reload", code, body)
	}
	if err := os.Chmod(svc.Keystore, 0o600); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "recovery after chmod 600", func() bool { return series(t, svc.MetricsURL)["alecrypt_keystore_up{}"] == 1 })
}

// TestVaultInvalidRecordSkipped: records no reader can use are written
// straight into a real Vault (where an unchecked writer once put them): a
// record at another key's path naming "z/../victim", a sub-folder "x/y", and
// a record that does not validate. The running service keeps the victim's
// last good record and serves a key added afterwards; a new replica starts;
// the invalid records are counted and logged.
func TestVaultInvalidRecordSkipped(t *testing.T) {
	v := harness.StartVault(t)
	ctx := context.Background()
	root := v.Client(t, harness.VaultRootToken)
	store := vaultstore.New(root)
	t0 := time.Now().UTC()
	for _, r := range []key.Record{testKey("fp-a", "store-1", "skip-secret-a", t0), testKey("victim", "store-2", "skip-secret-v", t0)} {
		if _, err := store.Put(ctx, r, 0); err != nil {
			t.Fatal(err)
		}
	}
	token := policyToken(t, v, "alecryptd")
	svc := harness.StartAlecryptd(t, harness.StartOptions{Keystore: "vault", Env: v.Env(token)})
	client := newCryptoClient(svc.URL)

	kv := root.KVv2("secret")
	overwrite := recordMap(t, testKey("victim", "store-2", "attacker-secret", t0))
	overwrite["fingerprint"] = "z/../victim"
	if _, err := kv.Put(ctx, "alecrypt/keys/victim", overwrite); err != nil {
		t.Fatal(err)
	}
	sub := recordMap(t, testKey("placeholder", "store-3", "skip-secret-x", t0))
	sub["fingerprint"] = "x/y"
	if _, err := kv.Put(ctx, "alecrypt/keys/x/y", sub); err != nil {
		t.Fatal(err)
	}
	broken := recordMap(t, testKey("fp-broken", "store-4", "skip-secret-b", t0))
	broken["algorithm"] = "rot13"
	if _, err := kv.Put(ctx, "alecrypt/keys/fp-broken", broken); err != nil {
		t.Fatal(err)
	}
	// Written after the bad records: it must be served all the same.
	if _, err := store.Put(ctx, testKey("fp-b", "store-5", "skip-secret-b2", t0), 0); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "fp-b, added after the invalid records, to be served", func() bool { return resolveFP(t, client, "store-5") == "fp-b" })
	for _, fp := range []string{"fp-a", "victim"} {
		if err := encryptFP(client, fp); err != nil {
			t.Errorf("Encrypt under %s = %v, want it served (victim: its last good record)", fp, err)
		}
	}
	if got := series(t, svc.MetricsURL)["alecrypt_keystore_invalid_records{}"]; got != 3 {
		t.Errorf("alecrypt_keystore_invalid_records = %v, want 3", got)
	}
	if got := series(t, svc.MetricsURL)["alecrypt_keystore_up{}"]; got != 1 {
		t.Errorf("alecrypt_keystore_up = %v, want 1: invalid records are not a failed load", got)
	}
	for _, name := range []string{`"name":"victim"`, `"name":"x/"`, `"name":"fp-broken"`} {
		if !strings.Contains(svc.Logs(), name) {
			t.Errorf("the log does not name the invalid entry %s", name)
		}
	}

	// A new replica starts (it once failed to) and serves the valid keys.
	fresh := harness.StartAlecryptd(t, harness.StartOptions{Keystore: "vault", Env: v.Env(token)})
	freshClient := newCryptoClient(fresh.URL)
	if got := resolveFP(t, freshClient, "store-5"); got != "fp-b" {
		t.Errorf("new replica: Resolve(store-5) = %q, want fp-b", got)
	}
	for _, s := range []string{"skip-secret", "attacker-secret"} {
		if strings.Contains(svc.Logs()+fresh.Logs(), s) {
			t.Fatal("a secret appeared in a service log")
		}
	}
}

// TestVaultRestartKeepsServing: Vault restarts empty under load (a dev
// server losing its data). The service does not take "no keys" as an order
// to forget them: every request keeps succeeding while the removal is held,
// metrics and /readyz report it, health stays SERVING. When the keys come
// back the hold ends. (Confirmation after --removal-confirm-after is tested
// with an injected clock in internal/keystore; here it is an hour, so nothing
// races the checks.)
func TestVaultRestartKeepsServing(t *testing.T) {
	v := harness.StartVault(t)
	ctx := context.Background()
	root := v.Client(t, harness.VaultRootToken)
	t0 := time.Now().UTC()
	for _, r := range []key.Record{testKey("fp-1", "store-1", "restart-secret-1", t0), testKey("fp-2", "store-2", "restart-secret-2", t0)} {
		if _, err := vaultstore.New(root).Put(ctx, r, 0); err != nil {
			t.Fatal(err)
		}
	}
	// The root token survives a dev server restart; a policy token would not.
	svc := harness.StartAlecryptd(t, harness.StartOptions{Keystore: "vault", Env: v.Env(harness.VaultRootToken),
		Args: []string{"--refresh", "200ms", "--default-alias", "store-1", "--removal-confirm-after", "1h"}})
	client := newCryptoClient(svc.URL)
	sealed, err := client.Encrypt(ctx, connect.NewRequest(&alev1.EncryptRequest{Plaintext: []byte(`{"n":0}`)}))
	if err != nil {
		t.Fatal(err)
	}

	load := startLoad(client)
	v.Restart(t)
	waitFor(t, "the held removal to be reported", func() bool {
		return series(t, svc.MetricsURL)["alecrypt_keystore_removal_held{}"] == 2
	})
	if !strings.Contains(svc.Logs(), "reload would remove too many keys") {
		t.Errorf("no log line for the held removal")
	}
	if code, body := readyz(t, svc); code != http.StatusOK || !strings.Contains(body, "removal of 2 keys held") {
		t.Errorf("/readyz = %d %q; want 200 reporting the held removal", code, body)
	}
	if got := health(t, svc.URL); !strings.HasSuffix(got, "SERVING") || strings.Contains(got, "NOT") {
		t.Errorf("health during the held removal = %q, want SERVING", got)
	}
	ok, failed := load.stop()
	if failed != 0 || ok == 0 {
		t.Fatalf("requests across the Vault restart: %d ok, %d failed; want all ok", ok, failed)
	}
	t.Logf("%d Encrypt+Decrypt pairs, none failed, across the Vault restart", ok)

	if _, err := client.Decrypt(ctx, connect.NewRequest(&alev1.DecryptRequest{Envelope: sealed.Msg.GetEnvelope()})); err != nil {
		t.Errorf("Decrypt of traffic sealed before the restart: %v, want it to decrypt", err)
	}

	// alesync repopulates Vault: the hold ends, nothing was lost.
	root = v.Client(t, harness.VaultRootToken)
	for _, r := range []key.Record{testKey("fp-1", "store-1", "restart-secret-1", t0), testKey("fp-2", "store-2", "restart-secret-2", t0)} {
		if _, err := vaultstore.New(root).Put(ctx, r, 0); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, "the hold to end", func() bool { return series(t, svc.MetricsURL)["alecrypt_keystore_removal_held{}"] == 0 })
	if code, body := readyz(t, svc); code != http.StatusOK || body != "ok\n" {
		t.Errorf("/readyz after recovery = %d %q, want 200 ok", code, body)
	}
}

// recordMap is r as Vault KV data, to be edited into what a careless writer
// might have stored.
func recordMap(t *testing.T, r key.Record) map[string]any {
	t.Helper()
	b, err := key.MarshalRecord(r)
	if err != nil {
		t.Fatal(err)
	}
	m := map[string]any{}
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	return m
}
