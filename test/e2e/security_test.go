package e2e

import (
	"context"
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"connectrpc.com/connect"

	alev1 "github.com/alecrypt/alecrypt/gen/ale/v1"
	"github.com/alecrypt/alecrypt/internal/key"
	"github.com/alecrypt/alecrypt/internal/keystore/filestore"
	"github.com/alecrypt/alecrypt/internal/policy"
	"github.com/alecrypt/alecrypt/service/client"
	"github.com/alecrypt/alecrypt/service/secret"
	"github.com/alecrypt/alecrypt/test/harness"
	"github.com/alecrypt/alecrypt/test/kitchentest"
)

const (
	idStore1  = "spiffe://alecrypt/pos/store-1"
	idGateway = "spiffe://alecrypt/alegate"
	tokenPOS2 = "pos-2-token-7f3a9c1e5b"
	tokenOps  = "ops-token-0d8b2e4f6a"
)

// policyJSON allows store-1's terminal (mTLS) store-1* keys, store-2's
// terminal (token) store-2* keys with store-2 as its default, the gateway
// everything, and ops only listing. store1Ops sets store-1's operations,
// for the reload test.
func policyJSON(store1Ops []string) string {
	b, _ := json.Marshal(map[string]any{
		"tokens": []map[string]string{
			{"identity": "pos-store-2", "sha256": policy.HashToken(tokenPOS2)},
			{"identity": "ops", "sha256": policy.HashToken(tokenOps)},
		},
		"callers": map[string]any{
			idStore1:      map[string]any{"operations": store1Ops, "keys": []string{"store-1*"}},
			"pos-store-2": map[string]any{"operations": []string{"encrypt", "decrypt", "resolve"}, "keys": []string{"store-2*"}, "default_alias": "store-2"},
			idGateway:     map[string]any{"operations": []string{"encrypt", "decrypt", "resolve"}, "keys": []string{"*"}},
			"ops":         map[string]any{"operations": []string{"list", "resolve"}, "keys": []string{"*"}},
		},
	})
	return string(b)
}

type secureEnv struct {
	pki             *harness.PKI
	svc             *harness.Service
	policyFile      string
	auditFile       string
	store1Cert, key string
}

func startSecure(t *testing.T) *secureEnv {
	t.Helper()
	e := &secureEnv{pki: harness.NewPKI(t)}
	dir := t.TempDir()
	ks := filepath.Join(dir, "keystore.json")
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	if _, err := filestore.New(ks).Import([]key.Record{
		testKey("fp-store-1a", "store-1", "sec-secret-1a", t0),
		testKey("fp-store-2a", "store-2", "sec-secret-2a", t0),
	}, false); err != nil {
		t.Fatal(err)
	}
	e.policyFile = filepath.Join(dir, "policy.json")
	writeAtomic(t, e.policyFile, []byte(policyJSON([]string{"encrypt", "decrypt", "resolve"})))
	e.auditFile = filepath.Join(dir, "audit.jsonl")
	cert, key := e.pki.Server(t, "alecryptd")
	e.store1Cert, e.key = e.pki.Client(t, "pos-store-1", idStore1)
	e.svc = harness.StartAlecryptd(t, harness.StartOptions{Keystore: ks, Args: []string{
		"--tls-cert", cert, "--tls-key", key, "--client-ca", e.pki.CAFile, "--policy", e.policyFile, "--audit-log", e.auditFile}})
	return e
}

func (e *secureEnv) client(t *testing.T, grpc bool, certFile, keyFile, token string) *client.Clients {
	t.Helper()
	c, err := client.New(client.Config{URL: e.svc.URL, GRPC: grpc, CAFile: e.pki.CAFile, CertFile: certFile, KeyFile: keyFile, Token: secret.FromString(token)})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func encryptWith(c *client.Clients, alias string, pt string) (*alev1.Envelope, error) {
	var ref *alev1.KeyRef
	if alias != "" {
		ref = &alev1.KeyRef{Ref: &alev1.KeyRef_Alias{Alias: alias}}
	}
	res, err := c.Crypto.Encrypt(context.Background(), connect.NewRequest(&alev1.EncryptRequest{Plaintext: []byte(pt), Key: ref}))
	if err != nil {
		return nil, err
	}
	return res.Msg.GetEnvelope(), nil
}

// TestCallerAuthenticationAndPolicy runs over real TLS and mTLS: callers
// without credentials are Unauthenticated, a terminal allowed only store-1*
// keys cannot use or read store-2 traffic, tokens and default aliases work,
// and every decision is in the audit log without any secret.
func TestCallerAuthenticationAndPolicy(t *testing.T) {
	e := startSecure(t)
	ctx := context.Background()
	// Health stays open without credentials, for probes.
	res, err := e.client(t, false, "", "", "").HTTP.Post(e.svc.URL+"/grpc.health.v1.Health/Check", "application/json", strings.NewReader("{}"))
	if err != nil {
		t.Fatal(err)
	}
	var h struct{ Status string }
	_ = json.NewDecoder(res.Body).Decode(&h)
	res.Body.Close()
	if h.Status != "SERVING_STATUS_SERVING" {
		t.Fatalf("unauthenticated health over TLS = %q, want SERVING", h.Status)
	}
	for _, grpc := range []bool{false, true} {
		anon := e.client(t, grpc, "", "", "")
		if _, err := encryptWith(anon, "store-1", "x"); connect.CodeOf(err) != connect.CodeUnauthenticated {
			t.Fatalf("grpc=%v: no credential: err = %v, want unauthenticated", grpc, err)
		}
		if _, err := encryptWith(e.client(t, grpc, "", "", "not-a-token"), "store-1", "x"); connect.CodeOf(err) != connect.CodeUnauthenticated {
			t.Fatalf("grpc=%v: unknown token: err = %v, want unauthenticated", grpc, err)
		}
		store1 := e.client(t, grpc, e.store1Cert, e.key, "")
		pos2 := e.client(t, grpc, "", "", tokenPOS2)
		env1, err := encryptWith(store1, "store-1", `{"order":"s1"}`)
		if err != nil || env1.GetFingerprint() != "fp-store-1a" {
			t.Fatalf("grpc=%v: store-1 encrypting its own key: %v, %v", grpc, env1, err)
		}
		if _, err := encryptWith(store1, "store-2", "x"); connect.CodeOf(err) != connect.CodePermissionDenied {
			t.Fatalf("grpc=%v: store-1 encrypting with store-2's key: err = %v, want permission_denied", grpc, err)
		}
		env2, err := encryptWith(pos2, "", `{"order":"s2"}`) // default alias store-2
		if err != nil || env2.GetFingerprint() != "fp-store-2a" {
			t.Fatalf("grpc=%v: token caller's default key: %v, %v; want fp-store-2a", grpc, env2, err)
		}
		_, err = store1.Crypto.Decrypt(ctx, connect.NewRequest(&alev1.DecryptRequest{Envelope: env2}))
		if connect.CodeOf(err) != connect.CodePermissionDenied {
			t.Fatalf("grpc=%v: store-1 decrypting store-2 traffic: err = %v, want permission_denied", grpc, err)
		}
		if _, err := pos2.Crypto.Decrypt(ctx, connect.NewRequest(&alev1.DecryptRequest{Envelope: env1})); connect.CodeOf(err) != connect.CodePermissionDenied {
			t.Fatalf("grpc=%v: store-2 decrypting store-1 traffic: err = %v, want permission_denied", grpc, err)
		}
		if res, err := store1.Crypto.Decrypt(ctx, connect.NewRequest(&alev1.DecryptRequest{Envelope: env1})); err != nil || string(res.Msg.GetPlaintext()) != `{"order":"s1"}` {
			t.Fatalf("grpc=%v: store-1 decrypting its own traffic: %v", grpc, err)
		}
		ops := e.client(t, grpc, "", "", tokenOps)
		if res, err := ops.Keys.ListKeys(ctx, connect.NewRequest(&alev1.ListKeysRequest{})); err != nil || len(res.Msg.GetKeys()) != 2 {
			t.Fatalf("grpc=%v: ops listing: %v", grpc, err)
		}
		if _, err := store1.Keys.ListKeys(ctx, connect.NewRequest(&alev1.ListKeysRequest{})); connect.CodeOf(err) != connect.CodePermissionDenied {
			t.Fatalf("grpc=%v: store-1 listing: err = %v, want permission_denied", grpc, err)
		}
		if _, err := encryptWith(ops, "store-1", "x"); connect.CodeOf(err) != connect.CodePermissionDenied {
			t.Fatalf("grpc=%v: ops encrypting: err = %v, want permission_denied", grpc, err)
		}
	}

	// The audit log has the lines, with identities and outcomes, and no
	// secret, token or plaintext.
	raw, err := os.ReadFile(e.auditFile)
	if err != nil {
		t.Fatal(err)
	}
	var denied, unauth, okStore1 int
	for _, line := range strings.Split(strings.TrimSpace(string(raw)), "\n") {
		var a struct {
			Identity, Outcome, Operation string
			Fingerprints                 []string
		}
		if err := json.Unmarshal([]byte(line), &a); err != nil {
			t.Fatalf("audit line %q: %v", line, err)
		}
		switch {
		case a.Outcome == "permission_denied":
			denied++
		case a.Outcome == "unauthenticated" && a.Identity == "anonymous":
			unauth++
		case a.Outcome == "ok" && a.Identity == idStore1 && len(a.Fingerprints) == 1 && a.Fingerprints[0] == "fp-store-1a":
			okStore1++
		}
	}
	if denied < 10 || unauth < 4 || okStore1 < 4 {
		t.Fatalf("audit: %d denied, %d unauthenticated, %d ok store-1 lines; want >= 10, 4, 4\n%s", denied, unauth, okStore1, raw)
	}
	for _, s := range []string{"sec-secret-1a", "sec-secret-2a", tokenPOS2, tokenOps, `{"order"`, "eyJvcmRlci"} {
		if strings.Contains(string(raw), s) {
			t.Fatalf("the audit log contains a secret, token or plaintext")
		}
	}
}

// TestPolicyReloadUnderLoad rewrites the policy while store-1's terminal
// keeps calling: decisions change (decrypt is revoked, then restored)
// without a single call failing for any other reason.
func TestPolicyReloadUnderLoad(t *testing.T) {
	e := startSecure(t)
	store1 := e.client(t, true, e.store1Cert, e.key, "")
	env, err := encryptWith(store1, "store-1", `{"n":1}`)
	if err != nil {
		t.Fatal(err)
	}
	var ok, denied, other atomic.Int64
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				_, err := store1.Crypto.Decrypt(context.Background(), connect.NewRequest(&alev1.DecryptRequest{Envelope: env}))
				switch connect.CodeOf(err) {
				case connect.CodeUnknown:
					if err == nil {
						ok.Add(1)
					} else {
						other.Add(1)
					}
				case connect.CodePermissionDenied:
					denied.Add(1)
				default:
					other.Add(1)
				}
			}
		})
	}
	time.Sleep(300 * time.Millisecond)
	writeAtomic(t, e.policyFile, []byte(policyJSON([]string{"encrypt", "resolve"}))) // decrypt revoked
	waitFor(t, "the revocation to take effect", func() bool { return denied.Load() > 0 })
	okAtRevocation := ok.Load()
	time.Sleep(300 * time.Millisecond)
	writeAtomic(t, e.policyFile, []byte(policyJSON([]string{"encrypt", "decrypt", "resolve"}))) // restored
	waitFor(t, "the restoration to take effect", func() bool { return ok.Load() > okAtRevocation+10 })
	// A broken policy file leaves the last good one in force.
	writeAtomic(t, e.policyFile, []byte(`{"callers": {`))
	waitFor(t, "the bad policy to be refused", func() bool { return strings.Contains(e.svc.Logs(), "keeping the last good policy") })
	before := ok.Load()
	time.Sleep(200 * time.Millisecond)
	close(stop)
	wg.Wait()
	if other.Load() != 0 || ok.Load() <= before {
		t.Fatalf("calls: %d ok, %d denied, %d failed otherwise; want no other failures and calls still allowed", ok.Load(), denied.Load(), other.Load())
	}
	t.Logf("policy reloads under load: %d ok, %d denied, 0 other failures", ok.Load(), denied.Load())
}

// TestTLSClientsAndListenRules: alectl and alegate as TLS/mTLS clients of
// alecryptd, and plaintext beyond loopback refused without --insecure-listen.
func TestTLSClientsAndListenRules(t *testing.T) {
	e := startSecure(t)
	alectl := filepath.Join(harness.Binaries(t), "alectl")
	env := []string{"ALECRYPT_ADDR=" + e.svc.URL, "ALECRYPT_CA=" + e.pki.CAFile, "ALECRYPT_CERT=" + e.store1Cert, "ALECRYPT_KEY=" + e.key, "ALECRYPT_TOKEN="}
	frame, errOut, code := harness.Run(t, `{"via":"alectl"}`, env, alectl, "encrypt", "--alias", "store-1")
	if code != 0 {
		t.Fatalf("alectl encrypt over mTLS: exit %d: %s", code, errOut)
	}
	if out, errOut, code := harness.Run(t, frame, env, alectl, "decrypt", "--grpc"); code != 0 || out != `{"via":"alectl"}` {
		t.Fatalf("alectl decrypt over mTLS/gRPC: exit %d, %q, %s", code, out, errOut)
	}
	if _, errOut, code := harness.Run(t, "x", env[:2], alectl, "encrypt", "--alias", "store-1"); code != 1 || !strings.Contains(errOut, "unauthenticated") {
		t.Fatalf("alectl without a client certificate: exit %d, %s; want unauthenticated", code, errOut)
	}

	// alegate reaches alecryptd over mTLS with its own identity.
	gwCert, gwKey := e.pki.Client(t, "alegate", idGateway)
	kitchen := kitchentest.Start(t)
	gate := harness.StartAlegate(t, kitchen.URL, e.svc.URL, "--crypto-ca", e.pki.CAFile, "--crypto-cert", gwCert, "--crypto-key", gwKey)
	out, errOut, code := harness.Run(t, "", env, alectl, "http", "POST", gate.URL+"/orders", "--alias", "store-1",
		"--authorization", "Bearer t", "--data", `{"via":"gateway"}`)
	if code != 0 || out != `{"via":"gateway"}` || len(kitchen.Requests()) != 1 {
		t.Fatalf("through alegate over mTLS: exit %d, %q, %s", code, out, errOut)
	}

	// Plaintext beyond loopback needs --insecure-listen.
	p := harness.StartProgram(t, "alecryptd", []string{"--listen", "0.0.0.0:0", "--keystore", filepath.Join(t.TempDir(), "ks.json"), "--metrics-listen", ""}, nil, "alecryptd listening", true)
	waitFor(t, "alecryptd to refuse", func() bool { done, _ := p.Exited(); return done })
	if _, err := p.Exited(); err == nil || !strings.Contains(p.Logs(), "beyond loopback") {
		t.Fatalf("alecryptd on 0.0.0.0 without TLS: %v\n%s", err, p.Logs())
	}
}

// TestAuditFailureDegradesHealth points the audit log at /dev/full: every
// write fails, is counted, and health turns NOT_SERVING, so an orchestrator
// takes the replica out of rotation rather than letting it run unaudited.
// A chained trail writes its chain_start line at start, so it is
// NOT_SERVING from the start; an unchained one on the first call.
func TestAuditFailureDegradesHealth(t *testing.T) {
	if _, err := os.Stat("/dev/full"); err != nil {
		t.Skipf("SKIPPING: no /dev/full on this system: %v", err)
	}
	chained := harness.StartAlecryptd(t, harness.StartOptions{Args: []string{"--audit-log", "/dev/full"}})
	if got := health(t, chained.URL); got != "SERVING_STATUS_NOT_SERVING" {
		t.Fatalf("health of a chained trail on /dev/full at start = %q, want NOT_SERVING", got)
	}
	svc := harness.StartAlecryptd(t, harness.StartOptions{Args: []string{"--audit-log", "/dev/full", "--audit-chain-key", "off"}})
	if got := health(t, svc.URL); got != "SERVING_STATUS_SERVING" {
		t.Fatalf("health before any audit write = %q", got)
	}
	if res, err := http.Get(strings.TrimSuffix(svc.MetricsURL, "/metrics") + "/readyz"); err != nil || res.StatusCode != http.StatusOK {
		t.Fatalf("/readyz before any audit write = %v, %v; want 200", res, err)
	} else {
		res.Body.Close()
	}
	if _, err := newCryptoClient(svc.URL).Encrypt(context.Background(), connect.NewRequest(&alev1.EncryptRequest{Plaintext: []byte("x")})); err != nil {
		t.Fatal(err)
	}
	if got := health(t, svc.URL); got != "SERVING_STATUS_NOT_SERVING" {
		t.Fatalf("health after a failed audit write = %q, want NOT_SERVING", got)
	}
	readyz, err := http.Get(strings.TrimSuffix(svc.MetricsURL, "/metrics") + "/readyz")
	if err != nil {
		t.Fatal(err)
	}
	readyz.Body.Close()
	if readyz.StatusCode != http.StatusServiceUnavailable {
		t.Fatalf("/readyz with a failing audit log = %d, want 503", readyz.StatusCode)
	}
	m := series(t, svc.MetricsURL)
	if m["alecrypt_audit_write_failures_total{}"] < 1 || m["alecrypt_audit_up{}"] != 0 {
		t.Fatalf("audit metrics: failures %v, up %v", m["alecrypt_audit_write_failures_total{}"], m["alecrypt_audit_up{}"])
	}
	if !strings.Contains(svc.Logs(), "audit log write failed") {
		t.Fatal("the audit failure was not logged")
	}
}
