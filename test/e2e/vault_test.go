package e2e

import (
	"context"
	"errors"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"connectrpc.com/connect"
	vaultapi "github.com/hashicorp/vault/api"

	alev1 "github.com/alecrypt/alecrypt/gen/ale/v1"
	"github.com/alecrypt/alecrypt/internal/key"
	"github.com/alecrypt/alecrypt/internal/keystore"
	"github.com/alecrypt/alecrypt/internal/keystore/vaultstore"
	"github.com/alecrypt/alecrypt/test/harness"
)

func isPermissionDenied(err error) bool {
	var re *vaultapi.ResponseError
	return errors.As(err, &re) && re.StatusCode == http.StatusForbidden
}

// TestVaultPolicies proves the least-privilege policies in deploy/vault on a
// real Vault: alecryptd's token reads and lists keys but cannot write;
// alesync's token writes keys but cannot touch any other path.
func TestVaultPolicies(t *testing.T) {
	v := harness.StartVault(t)
	ctx := context.Background()
	root := v.Client(t, harness.VaultRootToken)
	if _, err := vaultstore.New(root).Put(ctx, testKey("fp-policy", "store-1", "policy-test-secret", time.Now()), 0); err != nil {
		t.Fatal(err)
	}
	if _, err := root.KVv2("secret").Put(ctx, "other/app", map[string]any{"password": "not yours"}); err != nil {
		t.Fatal(err)
	}

	svc := v.Client(t, policyToken(t, v, "alecryptd"))
	if entries, err := vaultstore.New(svc).Entries(ctx); err != nil || len(entries) != 1 {
		t.Fatalf("alecryptd token: Entries = %d, %v; want 1 key", len(entries), err)
	}
	if _, err := vaultstore.New(svc).Put(ctx, testKey("fp-evil", "store-1", "x-secret-x", time.Now()), 0); !isPermissionDenied(err) {
		t.Errorf("alecryptd token wrote a key: err = %v, want permission denied", err)
	}
	if _, err := svc.KVv2("secret").Get(ctx, "other/app"); !isPermissionDenied(err) {
		t.Errorf("alecryptd token read secret/other/app: err = %v, want permission denied", err)
	}
	if err := svc.KVv2("secret").DeleteMetadata(ctx, "alecrypt/keys/fp-policy"); !isPermissionDenied(err) {
		t.Errorf("alecryptd token deleted a key: err = %v, want permission denied", err)
	}

	sync := v.Client(t, policyToken(t, v, "alesync"))
	if _, err := vaultstore.New(sync).Put(ctx, testKey("fp-new", "store-2", "sync-test-secret", time.Now()), 0); err != nil {
		t.Errorf("alesync token cannot write a key: %v", err)
	}
	// A key soft-deleted by hand reads as absent and can be written again
	// by the sync, whose create-only write must not be stuck on it.
	if err := root.KVv2("secret").Delete(ctx, "alecrypt/keys/fp-new"); err != nil {
		t.Fatal(err)
	}
	if entries, err := vaultstore.New(sync).Entries(ctx); err != nil || len(entries) != 1 {
		t.Fatalf("after a soft delete, Entries = %v, %v; want only fp-policy", entries, err)
	}
	if v, err := vaultstore.New(sync).Put(ctx, testKey("fp-new", "store-2", "sync-test-secret", time.Now()), 0); err != nil || v != 2 {
		t.Errorf("re-creating a soft-deleted key: version %d, %v; want version 2", v, err)
	}
	if _, err := vaultstore.New(sync).Put(ctx, testKey("fp-new", "store-2", "sync-test-secret", time.Now()), 0); !errors.Is(err, keystore.ErrCASMismatch) {
		t.Errorf("create-only write over a live key: err = %v, want ErrCASMismatch", err)
	}
	if _, err := sync.KVv2("secret").Get(ctx, "other/app"); !isPermissionDenied(err) {
		t.Errorf("alesync token read secret/other/app: err = %v, want permission denied", err)
	}
	if _, err := sync.KVv2("secret").Put(ctx, "other/app", map[string]any{"x": "y"}); !isPermissionDenied(err) {
		t.Errorf("alesync token wrote secret/other/app: err = %v, want permission denied", err)
	}
	if err := sync.KVv2("secret").DeleteMetadata(ctx, "alecrypt/keys/fp-policy"); !isPermissionDenied(err) {
		t.Errorf("alesync token deleted a key: err = %v, want permission denied", err)
	}
	if _, err := sync.Sys().ListPolicies(); !isPermissionDenied(err) {
		t.Errorf("alesync token listed policies: err = %v, want permission denied", err)
	}
}

// TestVaultKeystoreAppRole runs alecryptd on Vault, logged in with AppRole
// and the alecryptd policy: keys written to Vault are served, changes are
// picked up without a restart, and a key removed from Vault stops encrypting.
func TestVaultKeystoreAppRole(t *testing.T) {
	v := harness.StartVault(t)
	ctx := context.Background()
	root := v.Client(t, harness.VaultRootToken)
	policyToken(t, v, "alecryptd") // installs the policy
	if err := root.Sys().EnableAuthWithOptions("approle", &vaultapi.EnableAuthOptions{Type: "approle"}); err != nil {
		t.Fatal(err)
	}
	if _, err := root.Logical().Write("auth/approle/role/alecryptd", map[string]any{"token_policies": "alecryptd", "token_ttl": "10s", "token_max_ttl": "1h"}); err != nil {
		t.Fatal(err)
	}
	roleID, err := root.Logical().Read("auth/approle/role/alecryptd/role-id")
	if err != nil {
		t.Fatal(err)
	}
	secretID, err := root.Logical().Write("auth/approle/role/alecryptd/secret-id", nil)
	if err != nil {
		t.Fatal(err)
	}
	secretIDFile := filepath.Join(t.TempDir(), "secret-id")
	if err := os.WriteFile(secretIDFile, []byte(secretID.Data["secret_id"].(string)), 0o600); err != nil {
		t.Fatal(err)
	}
	store := vaultstore.New(root)
	t0 := time.Now().UTC()
	if _, err := store.Put(ctx, testKey("fp-a", "store-1", "vault-secret-a", t0), 0); err != nil {
		t.Fatal(err)
	}
	svc := harness.StartAlecryptd(t, harness.StartOptions{
		Keystore: "vault",
		Env:      append(v.Env(""), "VAULT_TOKEN="),
		Args: []string{"--vault-auth", "approle", "--vault-role-id", roleID.Data["role_id"].(string),
			"--vault-secret-id-file", secretIDFile},
	})
	client := newCryptoClient(svc.URL)
	if got := resolveFP(t, client, "store-1"); got != "fp-a" {
		t.Fatalf("Resolve(store-1) = %q, want fp-a", got)
	}
	// A newer key for the alias is picked up without a restart.
	if _, err := store.Put(ctx, testKey("fp-b", "store-1", "vault-secret-b", t0.Add(time.Minute)), 0); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "fp-b to become store-1's primary", func() bool { return resolveFP(t, client, "store-1") == "fp-b" })
	sealedB, err := client.Encrypt(ctx, connect.NewRequest(&alev1.EncryptRequest{Key: &alev1.KeyRef{Ref: &alev1.KeyRef_Fingerprint{Fingerprint: "fp-b"}}, Plaintext: []byte("b")}))
	if err != nil {
		t.Fatal(err)
	}
	// A key removed from Vault (half the keys: within --max-removal-share,
	// so applied at once) stops encrypting and decrypting.
	if err := root.KVv2("secret").DeleteMetadata(ctx, "alecrypt/keys/fp-b"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "fp-b to disappear", func() bool {
		_, err := client.Encrypt(ctx, connect.NewRequest(&alev1.EncryptRequest{Key: &alev1.KeyRef{Ref: &alev1.KeyRef_Fingerprint{Fingerprint: "fp-b"}}}))
		return connect.CodeOf(err) == connect.CodeNotFound
	})
	if got := resolveFP(t, client, "store-1"); got != "fp-a" {
		t.Fatalf("after removing fp-b, Resolve(store-1) = %q, want fp-a", got)
	}
	if _, err := client.Decrypt(ctx, connect.NewRequest(&alev1.DecryptRequest{Envelope: sealedB.Msg.GetEnvelope()})); connect.CodeOf(err) != connect.CodeNotFound {
		t.Fatalf("Decrypt under the removed fp-b: err = %v, want not_found", err)
	}
	// The AppRole token has a 10s TTL: after it has been renewed a few
	// times, the service still reads Vault.
	time.Sleep(12 * time.Second)
	if _, err := store.Put(ctx, testKey("fp-c", "store-9", "vault-secret-c", t0), 0); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "fp-c after the token's first TTL", func() bool { return resolveFP(t, client, "store-9") == "fp-c" })
	if !strings.Contains(svc.Logs(), "vault token renewed") {
		t.Errorf("no token renewal was logged")
	}
	for _, s := range []string{"vault-secret-a", "vault-secret-b", "vault-secret-c", secretID.Data["secret_id"].(string)} {
		if strings.Contains(svc.Logs(), s) {
			t.Fatal("a secret appeared in the service log")
		}
	}
}

// TestVaultDownAtStartFails: with Vault unreachable and nothing loaded yet
// there is nothing to serve, so alecryptd exits non-zero and says why.
func TestVaultDownAtStartFails(t *testing.T) {
	svc := harness.StartAlecryptd(t, harness.StartOptions{
		Keystore:   "vault",
		Env:        []string{"VAULT_ADDR=http://127.0.0.1:1", "VAULT_TOKEN=whatever", "VAULT_MAX_RETRIES=0"},
		ExpectExit: true,
	})
	waitFor(t, "alecryptd to exit", func() bool { done, _ := svc.Exited(); return done })
	_, err := svc.Exited()
	if err == nil {
		t.Fatal("alecryptd exited 0 with Vault down")
	}
	if !regexp.MustCompile(`vault: token lookup: .*connection refused`).MatchString(svc.Logs()) {
		t.Fatalf("the log does not say Vault is unreachable:\n%s", svc.Logs())
	}
}

// TestVaultOutageKeepsServing stops Vault under load: every Encrypt and
// Decrypt of cached keys keeps succeeding, health stays SERVING while
// metrics report the staleness, and when Vault is back (empty, as a dev
// server restarts) and re-populated, the service catches up by itself.
func TestVaultOutageKeepsServing(t *testing.T) {
	v := harness.StartVault(t)
	ctx := context.Background()
	root := v.Client(t, harness.VaultRootToken)
	t0 := time.Now().UTC()
	if _, err := vaultstore.New(root).Put(ctx, testKey("fp-1", "store-1", "outage-secret-1", t0), 0); err != nil {
		t.Fatal(err)
	}
	// The dev server loses its tokens when it restarts, all but the fixed
	// root token; a production Vault keeps them. So this test, unlike the
	// policy tests, gives the service the root token.
	svc := harness.StartAlecryptd(t, harness.StartOptions{Keystore: "vault", Env: v.Env(harness.VaultRootToken), Args: []string{"--refresh", "200ms", "--default-alias", "store-1"}})
	client := newCryptoClient(svc.URL)

	load := startLoad(client)
	time.Sleep(300 * time.Millisecond)
	v.Stop(t)
	waitFor(t, "a failed refresh to be logged", func() bool { return strings.Contains(svc.Logs(), "serving the last good keys") })
	time.Sleep(time.Second) // keep traffic going with Vault down
	// grpchealth's JSON names the enum value SERVING_STATUS_SERVING.
	if got := health(t, svc.URL); !strings.HasSuffix(got, "SERVING") || strings.Contains(got, "NOT") {
		t.Errorf("health with Vault down = %q, want SERVING", got)
	}
	m := scrape(t, svc.MetricsURL)
	if !strings.Contains(m, "alecrypt_keystore_up 0") || !regexp.MustCompile(`alecrypt_keystore_age_seconds [0-9.e+-]+`).MatchString(m) {
		t.Errorf("metrics with Vault down do not report staleness:\n%s", grep(m, "alecrypt_keystore"))
	}
	duringOutage := load.ok.Load()

	// Vault returns (empty, as a dev server restarts) and is repopulated,
	// with a key added meanwhile, as alesync would do.
	v.Start(t)
	root = v.Client(t, harness.VaultRootToken)
	for _, r := range []key.Record{testKey("fp-1", "store-1", "outage-secret-1", t0), testKey("fp-2", "store-2", "outage-secret-2", t0)} {
		if _, err := vaultstore.New(root).Put(ctx, r, 0); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, "the service to catch up with fp-2", func() bool { return resolveFP(t, client, "store-2") == "fp-2" })
	if m := scrape(t, svc.MetricsURL); !strings.Contains(m, "alecrypt_keystore_up 1") {
		t.Errorf("metrics after recovery:\n%s", grep(m, "alecrypt_keystore"))
	}
	ok, failed := load.stop()
	if failed != 0 || ok == 0 || duringOutage == 0 {
		t.Fatalf("requests: %d ok, %d failed; want all ok", ok, failed)
	}
	t.Logf("%d Encrypt+Decrypt pairs, none failed, across the Vault outage", ok)
}
