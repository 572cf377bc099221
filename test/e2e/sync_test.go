package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"connectrpc.com/connect"

	alev1 "github.com/alecrypt/alecrypt/gen/ale/v1"
	"github.com/alecrypt/alecrypt/internal/key"
	"github.com/alecrypt/alecrypt/internal/keystore/vaultstore"
	"github.com/alecrypt/alecrypt/test/harness"
	"github.com/alecrypt/alecrypt/test/portaltest"
)

const portalToken = "portal-bearer-token-for-tests"

type syncEnv struct {
	vault     *harness.Vault
	portal    *portaltest.Portal
	syncToken string
	tokenFile string
}

func newSyncEnv(t *testing.T) *syncEnv {
	t.Helper()
	e := &syncEnv{vault: harness.StartVault(t), portal: portaltest.Start(t, portalToken)}
	e.syncToken = policyToken(t, e.vault, "alesync")
	e.tokenFile = filepath.Join(t.TempDir(), "portal-token")
	if err := os.WriteFile(e.tokenFile, []byte(portalToken+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return e
}

type syncSummary struct{ added, updated, retired, unchanged, failed int }

var summaryRE = regexp.MustCompile(`added=(\d+) updated=(\d+) retired=(\d+) unchanged=(\d+) failed=(\d+)`)

// alesync runs one alesync --once with the alesync policy's token and
// returns its summary, combined output and exit code.
func (e *syncEnv) alesync(t *testing.T, extra ...string) (syncSummary, string, int) {
	t.Helper()
	args := append([]string{"--once", "--portal-url", e.portal.URL, "--portal-token-file", e.tokenFile, "--portal-ca", e.portal.CAFile}, extra...)
	out, errOut, code := harness.Run(t, "", append(e.vault.Env(e.syncToken), "ALESYNC_PORTAL_TOKEN="),
		filepath.Join(harness.Binaries(t), "alesync"), args...)
	all := out + errOut
	var s syncSummary
	if m := summaryRE.FindStringSubmatch(all); m != nil {
		fmt.Sscan(m[1]+" "+m[2]+" "+m[3]+" "+m[4]+" "+m[5], &s.added, &s.updated, &s.retired, &s.unchanged, &s.failed)
	} else if code == 0 {
		t.Fatalf("alesync printed no summary line:\n%s", all)
	}
	if strings.Contains(all, portalToken) || strings.Contains(all, "sync-secret-") {
		t.Fatalf("alesync output contains the Portal token or a key secret")
	}
	return s, all, code
}

func (e *syncEnv) versions(t *testing.T) map[string]int {
	t.Helper()
	entries, err := vaultstore.New(e.vault.Client(t, harness.VaultRootToken)).Entries(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]int{}
	for fp, en := range entries {
		out[fp] = en.Version
	}
	return out
}

// TestPortalSyncEndToEnd is the deployed path: Portal → alesync → Vault →
// alecryptd → an independent Node WebCrypto client, then a rotation, then
// the failures a sync must survive without changing anything.
func TestPortalSyncEndToEnd(t *testing.T) {
	node := harness.RequireTool(t, "node")
	e := newSyncEnv(t)
	t0 := time.Now().UTC().Truncate(time.Second)
	k1 := testKey("ek-store-1-v1", "store-1", "sync-secret-1-ünïcode", t0)
	k2 := testKey("ek-store-2-v1", "store-2", "sync-secret-2", t0)
	e.portal.SetKeys(k1, k2)

	if s, out, code := e.alesync(t); code != 0 || s != (syncSummary{added: 2}) {
		t.Fatalf("first sync: exit %d, %+v\n%s", code, s, out)
	}
	if s, out, code := e.alesync(t); code != 0 || s != (syncSummary{unchanged: 2}) {
		t.Fatalf("second sync: exit %d, %+v, want 2 unchanged\n%s", code, s, out)
	}
	before := e.versions(t)

	svc := harness.StartAlecryptd(t, harness.StartOptions{Keystore: "vault", Env: e.vault.Env(policyToken(t, e.vault, "alecryptd")),
		Args: []string{"--default-alias", "store-1"}})
	client := newCryptoClient(svc.URL)

	// The Node WebCrypto client, which shares no code with us, encrypts and
	// decrypts against the Vault-backed service under the Portal's key.
	keyJSON, _ := json.Marshal(map[string]any{"fingerprint": k1.Fingerprint, "secret": string(k1.Secret.Expose()),
		"salt": k1.KDF.Salt, "iterations": k1.KDF.Iterations, "counter_bits": 64})
	out, errOut, code := harness.Run(t, "", []string{"ALECRYPT_URL=" + svc.URL, "ALE_INTEROP_KEY=" + string(keyJSON)},
		node, filepath.Join(harness.RepoRoot(), "test", "node", "interop.mjs"))
	if code != 0 || !strings.Contains(out, "checks passed") {
		t.Fatalf("interop.mjs against the Vault-backed service: exit %d\n%s%s", code, out, errOut)
	}

	// Old traffic, sealed before the rotation.
	ctx := context.Background()
	old, err := client.Encrypt(ctx, connect.NewRequest(&alev1.EncryptRequest{Plaintext: []byte(`{"before":"rotation"}`)}))
	if err != nil || old.Msg.GetEnvelope().GetFingerprint() != k1.Fingerprint {
		t.Fatalf("Encrypt before rotation = %v, %v", old, err)
	}

	// Rotation: the Portal issues a new key for store-1 and stops listing
	// the old one.
	k1b := testKey("ek-store-1-v2", "store-1", "sync-secret-1b", t0.Add(time.Hour))
	e.portal.SetKeys(k1b, k2)
	if s, out, code := e.alesync(t); code != 0 || s != (syncSummary{added: 1, retired: 1, unchanged: 1}) {
		t.Fatalf("rotation sync: exit %d, %+v\n%s", code, s, out)
	}
	svc.Signal(t, syscall.SIGHUP) // reload now rather than in 30s
	waitFor(t, "store-1 to rotate to v2", func() bool { return resolveFP(t, client, "store-1") == k1b.Fingerprint })
	_, err = client.Encrypt(ctx, connect.NewRequest(&alev1.EncryptRequest{Key: &alev1.KeyRef{Ref: &alev1.KeyRef_Fingerprint{Fingerprint: k1.Fingerprint}}}))
	if connect.CodeOf(err) != connect.CodeFailedPrecondition {
		t.Fatalf("Encrypt under the retired key: err = %v, want failed_precondition", err)
	}
	dec, err := client.Decrypt(ctx, connect.NewRequest(&alev1.DecryptRequest{Envelope: old.Msg.GetEnvelope(), Expect: alev1.PlaintextFormat_PLAINTEXT_FORMAT_JSON}))
	if err != nil || string(dec.Msg.GetPlaintext()) != `{"before":"rotation"}` || dec.Msg.GetKey().GetState() != alev1.KeyState_KEY_STATE_DECRYPT_ONLY {
		t.Fatalf("Decrypt of pre-rotation traffic = %v, %v; want the plaintext under a decrypt-only key", dec, err)
	}
	rotated := e.versions(t)
	if rotated[k1.Fingerprint] != before[k1.Fingerprint]+1 || rotated[k2.Fingerprint] != before[k2.Fingerprint] {
		t.Fatalf("versions after rotation = %v, before = %v", rotated, before)
	}

	// Failures change nothing and say so in the exit code.
	e.portal.SetKeys() // a Portal that suddenly lists nothing must not be trusted blindly...
	e.portal.FailWith(http.StatusInternalServerError)
	if _, out, code := e.alesync(t); code == 0 {
		t.Fatalf("sync with the Portal failing: exit 0\n%s", out)
	}
	e.portal.FailWith(0)
	e.portal.SetKeys(k1b, k2)
	wrongToken := filepath.Join(t.TempDir(), "wrong")
	_ = os.WriteFile(wrongToken, []byte("not-the-token"), 0o600)
	saved := e.tokenFile
	e.tokenFile = wrongToken
	if _, out, code := e.alesync(t); code == 0 || !strings.Contains(out, "401") {
		t.Fatalf("sync with a wrong Portal token: exit %d, want non-zero naming the 401\n%s", code, out)
	}
	e.tokenFile = saved
	e.portal.AddRaw(`{"fingerprint":"ek-broken","algorithm":"rot13","secret":"sync-secret-broken"}`)
	if s, out, code := e.alesync(t); code == 0 || s.failed != 1 || s.retired != 0 || s.unchanged != 3 { // k1b, k2, and the retired k1
		t.Fatalf("sync with a malformed record: exit %d, %+v; want failed=1 and nothing else touched\n%s", code, s, out)
	}
	if after := e.versions(t); fmt.Sprint(after) != fmt.Sprint(rotated) {
		t.Fatalf("failed syncs changed Vault: %v, was %v", after, rotated)
	}

	// A dry run prints the plan and writes nothing.
	k3 := testKey("ek-store-3-v1", "store-3", "sync-secret-3", t0)
	e.portal.SetKeys(k1b, k2, k3)
	if _, out, code := e.alesync(t, "--dry-run"); code != 0 || !strings.Contains(out, k3.Fingerprint) {
		t.Fatalf("dry run: exit %d\n%s", code, out)
	}
	if _, ok := e.versions(t)[k3.Fingerprint]; ok {
		t.Fatal("a dry run wrote to Vault")
	}
	for _, r := range []key.Record{k1, k1b, k2, k3} {
		if strings.Contains(svc.Logs(), string(r.Secret.Expose())) {
			t.Fatal("a key secret appeared in the service log")
		}
	}
}

// TestAlesyncIntervalMetrics runs alesync on an interval with its metrics
// listener: the counters show the runs and the keys they handled.
func TestAlesyncIntervalMetrics(t *testing.T) {
	e := newSyncEnv(t)
	t0 := time.Now().UTC().Truncate(time.Second)
	e.portal.SetKeys(testKey("ek-m-1", "store-1", "sync-secret-m1", t0), testKey("ek-m-2", "store-2", "sync-secret-m2", t0))
	p := harness.StartProgram(t, "alesync", []string{"--interval", "1s", "--metrics-listen", "127.0.0.1:0",
		"--portal-url", e.portal.URL, "--portal-token-file", e.tokenFile, "--portal-ca", e.portal.CAFile},
		append(e.vault.Env(e.syncToken), "ALESYNC_PORTAL_TOKEN=", "ALESYNC_METRICS_LISTEN="), "metrics listening", false)
	url := p.URL + "/metrics"
	waitFor(t, "two sync runs", func() bool { return series(t, url)["alecrypt_sync_runs_total{outcome=ok}"] >= 2 })
	m := series(t, url)
	if m["alecrypt_sync_keys_total{result=added}"] != 2 || m["alecrypt_sync_keys_total{result=failed}"] != 0 ||
		m["alecrypt_sync_keys_total{result=unchanged}"] < 2 || m["alecrypt_sync_last_success_timestamp_seconds{}"] == 0 {
		t.Fatalf("sync metrics = added %v, failed %v, unchanged %v, last success %v",
			m["alecrypt_sync_keys_total{result=added}"], m["alecrypt_sync_keys_total{result=failed}"],
			m["alecrypt_sync_keys_total{result=unchanged}"], m["alecrypt_sync_last_success_timestamp_seconds{}"])
	}
	e.portal.FailWith(http.StatusServiceUnavailable)
	waitFor(t, "an aborted run to be counted", func() bool { return series(t, url)["alecrypt_sync_runs_total{outcome=aborted}"] >= 1 })
	if err := p.Stop(t); err != nil {
		t.Fatalf("alesync --interval exit after SIGTERM = %v, want 0", err)
	}
}
