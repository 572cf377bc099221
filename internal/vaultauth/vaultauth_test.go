package vaultauth

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/vault/api"
)

// seen is one request the fake Vault received.
type seen struct {
	Method, Path, Token string
	Body                map[string]any
}

// fakeVault answers the few endpoints vaultauth calls with canned JSON and
// records every request, so a test sees what was sent where with which
// token. Unknown paths get 404, as Vault answers them.
type fakeVault struct {
	mu     sync.Mutex
	seen   []seen
	routes map[string]func(w http.ResponseWriter, body map[string]any)
}

func (f *fakeVault) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	var body map[string]any
	if b, _ := io.ReadAll(r.Body); len(b) > 0 {
		_ = json.Unmarshal(b, &body)
	}
	f.mu.Lock()
	f.seen = append(f.seen, seen{Method: r.Method, Path: r.URL.Path, Token: r.Header.Get("X-Vault-Token"), Body: body})
	route := f.routes[r.URL.Path]
	f.mu.Unlock()
	if route == nil {
		http.Error(w, `{"errors":[]}`, http.StatusNotFound)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	route(w, body)
}

func (f *fakeVault) requests() []seen {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]seen(nil), f.seen...)
}

// reply answers with status and a JSON body.
func reply(status int, body string) func(http.ResponseWriter, map[string]any) {
	return func(w http.ResponseWriter, _ map[string]any) {
		w.WriteHeader(status)
		_, _ = io.WriteString(w, body)
	}
}

const (
	oldToken = "hvs.old-token-do-not-log"
	newToken = "hvs.new-token-do-not-log"
	secretID = "secret-id-do-not-log"
	saJWT    = "eyJ.service-account.jwt"
)

// newClient is a Vault client of the fake at url holding token, with no
// retries (a refused call is an answer, not a reason to wait).
func newClient(t *testing.T, url, token string) *api.Client {
	t.Helper()
	cfg := api.DefaultConfig()
	cfg.Address = url
	cfg.MaxRetries = 0
	c, err := api.NewClient(cfg)
	if err != nil {
		t.Fatal(err)
	}
	c.SetToken(token) // VAULT_TOKEN from the environment never counts
	return c
}

func writeFile(t *testing.T, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "cred")
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestValidate(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name    string
		cfg     Config
		wantErr string
	}{
		{"token", Config{Method: MethodToken}, ""},
		{"empty is token", Config{}, ""},
		{"approle", Config{Method: MethodAppRole, RoleID: "r", SecretIDFile: "/f"}, ""},
		{"approle without role id", Config{Method: MethodAppRole, SecretIDFile: "/f"}, "approle auth needs a role id and a secret id file"},
		{"approle without secret id file", Config{Method: MethodAppRole, RoleID: "r"}, "approle auth needs a role id and a secret id file"},
		{"kubernetes", Config{Method: MethodKubernetes, Role: "alecryptd"}, ""},
		{"kubernetes without role", Config{Method: MethodKubernetes}, "kubernetes auth needs a role"},
		{"unknown", Config{Method: "ldap"}, `unknown vault auth method "ldap" (token, approle or kubernetes)`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			err := tc.cfg.Validate()
			if got := errString(err); got != tc.wantErr {
				t.Fatalf("Validate() = %q, want %q", got, tc.wantErr)
			}
		})
	}
}

func errString(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

func TestLogin(t *testing.T) {
	t.Parallel()
	loginOK := reply(200, `{"auth":{"client_token":"`+newToken+`","renewable":true,"lease_duration":3600}}`)
	secretFile := writeFile(t, secretID+"\n")
	jwtFile := writeFile(t, saJWT)
	for _, tc := range []struct {
		name   string
		token  string // the client's token before Login
		cfg    Config
		routes map[string]func(http.ResponseWriter, map[string]any)
		// On success: the auth Login returns and the client's token after it.
		wantAuth  api.SecretAuth
		wantToken string
		// The one request Login makes.
		wantReq seen
		wantErr string
	}{
		{
			name: "token checked with lookup-self", token: oldToken, cfg: Config{Method: MethodToken},
			routes: map[string]func(http.ResponseWriter, map[string]any){
				"/v1/auth/token/lookup-self": reply(200, `{"data":{"renewable":true,"ttl":1800}}`),
			},
			wantAuth:  api.SecretAuth{ClientToken: oldToken, Renewable: true, LeaseDuration: 1800},
			wantToken: oldToken,
			wantReq:   seen{Method: "GET", Path: "/v1/auth/token/lookup-self", Token: oldToken},
		},
		{
			name: "root token: not renewable, no ttl", token: oldToken, cfg: Config{},
			routes: map[string]func(http.ResponseWriter, map[string]any){
				"/v1/auth/token/lookup-self": reply(200, `{"data":{"renewable":false,"ttl":0}}`),
			},
			wantAuth:  api.SecretAuth{ClientToken: oldToken},
			wantToken: oldToken,
			wantReq:   seen{Method: "GET", Path: "/v1/auth/token/lookup-self", Token: oldToken},
		},
		{
			name: "no token", cfg: Config{Method: MethodToken},
			wantErr: "vault: no token: set VAULT_TOKEN or choose approle or kubernetes auth",
		},
		{
			name: "token refused", token: oldToken, cfg: Config{Method: MethodToken},
			routes: map[string]func(http.ResponseWriter, map[string]any){
				"/v1/auth/token/lookup-self": reply(403, `{"errors":["permission denied"]}`),
			},
			wantReq: seen{Method: "GET", Path: "/v1/auth/token/lookup-self", Token: oldToken},
			wantErr: "vault: token lookup: ",
		},
		{
			name: "approle at its default mount",
			cfg:  Config{Method: MethodAppRole, RoleID: "role-1", SecretIDFile: secretFile},
			routes: map[string]func(http.ResponseWriter, map[string]any){
				"/v1/auth/approle/login": loginOK,
			},
			wantAuth:  api.SecretAuth{ClientToken: newToken, Renewable: true, LeaseDuration: 3600},
			wantToken: newToken,
			wantReq:   seen{Method: "PUT", Path: "/v1/auth/approle/login", Body: map[string]any{"role_id": "role-1", "secret_id": secretID}},
		},
		{
			name: "approle at another mount",
			cfg:  Config{Method: MethodAppRole, Mount: "alecrypt-approle", RoleID: "role-1", SecretIDFile: secretFile},
			routes: map[string]func(http.ResponseWriter, map[string]any){
				"/v1/auth/alecrypt-approle/login": loginOK,
			},
			wantAuth:  api.SecretAuth{ClientToken: newToken, Renewable: true, LeaseDuration: 3600},
			wantToken: newToken,
			wantReq:   seen{Method: "PUT", Path: "/v1/auth/alecrypt-approle/login", Body: map[string]any{"role_id": "role-1", "secret_id": secretID}},
		},
		{
			name:    "approle secret id file missing",
			cfg:     Config{Method: MethodAppRole, RoleID: "role-1", SecretIDFile: filepath.Join(t.TempDir(), "missing")},
			wantErr: "vault approle login: ",
		},
		{
			name: "approle refused", token: oldToken,
			cfg: Config{Method: MethodAppRole, RoleID: "role-1", SecretIDFile: secretFile},
			routes: map[string]func(http.ResponseWriter, map[string]any){
				"/v1/auth/approle/login": reply(400, `{"errors":["invalid role or secret ID"]}`),
			},
			wantReq: seen{Method: "PUT", Path: "/v1/auth/approle/login", Token: oldToken, Body: map[string]any{"role_id": "role-1", "secret_id": secretID}},
			wantErr: "vault approle login: ",
		},
		{
			name: "approle answer without a token",
			cfg:  Config{Method: MethodAppRole, RoleID: "role-1", SecretIDFile: secretFile},
			routes: map[string]func(http.ResponseWriter, map[string]any){
				"/v1/auth/approle/login": reply(200, `{"data":{}}`),
			},
			wantReq: seen{Method: "PUT", Path: "/v1/auth/approle/login", Body: map[string]any{"role_id": "role-1", "secret_id": secretID}},
			wantErr: "vault approle login: response did not return ClientToken",
		},
		{
			name: "kubernetes with its service account token",
			cfg:  Config{Method: MethodKubernetes, Mount: "k8s", Role: "alecryptd", ServiceAccountTokenFile: jwtFile},
			routes: map[string]func(http.ResponseWriter, map[string]any){
				"/v1/auth/k8s/login": loginOK,
			},
			wantAuth:  api.SecretAuth{ClientToken: newToken, Renewable: true, LeaseDuration: 3600},
			wantToken: newToken,
			wantReq:   seen{Method: "PUT", Path: "/v1/auth/k8s/login", Body: map[string]any{"role": "alecryptd", "jwt": saJWT}},
		},
		{
			name:    "kubernetes without a service account token file",
			cfg:     Config{Method: MethodKubernetes, Role: "alecryptd", ServiceAccountTokenFile: filepath.Join(t.TempDir(), "missing")},
			wantErr: "vault kubernetes auth: ",
		},
		{
			name: "unknown method", cfg: Config{Method: "ldap"},
			wantErr: `unknown vault auth method "ldap" (token, approle or kubernetes)`,
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			fv := &fakeVault{routes: tc.routes}
			srv := httptest.NewServer(fv)
			defer srv.Close()
			c := newClient(t, srv.URL, tc.token)
			sec, err := Login(context.Background(), c, tc.cfg)
			reqs := fv.requests()
			switch {
			case tc.wantReq.Path == "" && len(reqs) != 0:
				t.Fatalf("Login sent %+v, want nothing sent", reqs)
			case tc.wantReq.Path != "" && (len(reqs) != 1 || !sameRequest(reqs[0], tc.wantReq)):
				t.Fatalf("Login sent %+v, want exactly %+v", reqs, tc.wantReq)
			}
			if tc.wantErr != "" {
				if err == nil || !strings.HasPrefix(err.Error(), tc.wantErr) {
					t.Fatalf("Login error = %v, want one starting %q", err, tc.wantErr)
				}
				for _, s := range []string{oldToken, secretID, saJWT} {
					if strings.Contains(err.Error(), s) {
						t.Fatalf("Login error %q holds a credential", err)
					}
				}
				return
			}
			if err != nil {
				t.Fatalf("Login: %v", err)
			}
			got := api.SecretAuth{ClientToken: sec.Auth.ClientToken, Renewable: sec.Auth.Renewable, LeaseDuration: sec.Auth.LeaseDuration}
			if got.ClientToken != tc.wantAuth.ClientToken || got.Renewable != tc.wantAuth.Renewable || got.LeaseDuration != tc.wantAuth.LeaseDuration {
				t.Fatalf("Login auth = %+v, want %+v", got, tc.wantAuth)
			}
			if c.Token() != tc.wantToken {
				t.Fatalf("client token after Login = %q, want %q", c.Token(), tc.wantToken)
			}
		})
	}
}

func sameRequest(got, want seen) bool {
	if got.Method != want.Method || got.Path != want.Path || got.Token != want.Token || len(got.Body) != len(want.Body) {
		return false
	}
	for k, v := range want.Body {
		if got.Body[k] != v {
			return false
		}
	}
	return true
}

// lockedBuffer is a log destination safe for the watcher's goroutine.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// keepAlive runs KeepAlive until it returns, which every case here must do
// by itself (the minute is a hang guard, not a timing assumption).
func keepAlive(t *testing.T, ctx context.Context, c *api.Client, cfg Config, sec *api.Secret) string {
	t.Helper()
	var logs lockedBuffer
	log := slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	done := make(chan struct{})
	go func() {
		defer close(done)
		KeepAlive(ctx, c, cfg, sec, log)
	}()
	select {
	case <-done:
	case <-time.After(time.Minute):
		t.Fatalf("KeepAlive did not return; log:\n%s", logs.String())
	}
	out := logs.String()
	for _, s := range []string{oldToken, newToken, secretID} {
		if strings.Contains(out, s) {
			t.Fatalf("KeepAlive logged a credential:\n%s", out)
		}
	}
	return out
}

func paths(reqs []seen) []string {
	var out []string
	for _, r := range reqs {
		out = append(out, r.Path)
	}
	return out
}

func TestKeepAlive(t *testing.T) {
	t.Parallel()
	secretFile := writeFile(t, secretID)
	approle := Config{Method: MethodAppRole, RoleID: "role-1", SecretIDFile: secretFile}
	renewable := &api.Secret{Auth: &api.SecretAuth{ClientToken: oldToken, Renewable: true, LeaseDuration: 3600}}

	t.Run("a token that is not renewable is left alone", func(t *testing.T) {
		t.Parallel()
		fv := &fakeVault{}
		srv := httptest.NewServer(fv)
		defer srv.Close()
		c := newClient(t, srv.URL, oldToken)
		sec := &api.Secret{Auth: &api.SecretAuth{ClientToken: oldToken, Renewable: false}}
		logs := keepAlive(t, context.Background(), c, approle, sec)
		if reqs := fv.requests(); len(reqs) != 0 {
			t.Fatalf("KeepAlive sent %v, want nothing", paths(reqs))
		}
		if !strings.Contains(logs, "vault token is not renewable; no renewal needed") {
			t.Fatalf("log does not say the token is left alone:\n%s", logs)
		}
	})

	t.Run("a token that can no longer be renewed is replaced by a new login", func(t *testing.T) {
		t.Parallel()
		// The renewal grants no more time (a token at its max TTL), so the
		// watcher ends; the new login's token is not renewable, so
		// KeepAlive returns once it has it.
		fv := &fakeVault{routes: map[string]func(http.ResponseWriter, map[string]any){
			"/v1/auth/token/renew-self": reply(200, `{"auth":{"client_token":"`+oldToken+`","renewable":true,"lease_duration":0}}`),
			"/v1/auth/approle/login":    reply(200, `{"auth":{"client_token":"`+newToken+`","renewable":false,"lease_duration":0}}`),
		}}
		srv := httptest.NewServer(fv)
		defer srv.Close()
		c := newClient(t, srv.URL, oldToken)
		logs := keepAlive(t, context.Background(), c, approle, renewable)
		if got, want := strings.Join(paths(fv.requests()), " "), "/v1/auth/token/renew-self /v1/auth/approle/login"; got != want {
			t.Fatalf("KeepAlive sent %s, want %s", got, want)
		}
		if c.Token() != newToken {
			t.Fatalf("client token = %q, want the new login's", c.Token())
		}
		if !strings.Contains(logs, "vault token can no longer be renewed; logging in again") {
			t.Fatalf("log does not say it logs in again:\n%s", logs)
		}
	})

	t.Run("a failed login is retried until the context ends", func(t *testing.T) {
		t.Parallel()
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		fv := &fakeVault{routes: map[string]func(http.ResponseWriter, map[string]any){
			"/v1/auth/token/renew-self": reply(200, `{"auth":{"client_token":"`+oldToken+`","renewable":true,"lease_duration":0}}`),
			"/v1/auth/approle/login": func(w http.ResponseWriter, body map[string]any) {
				cancel() // the program is stopping while Vault refuses
				reply(400, `{"errors":["invalid role or secret ID"]}`)(w, body)
			},
		}}
		srv := httptest.NewServer(fv)
		defer srv.Close()
		c := newClient(t, srv.URL, oldToken)
		logs := keepAlive(t, ctx, c, approle, renewable)
		if c.Token() != oldToken {
			t.Fatalf("client token = %q after a failed login, want the old one kept", c.Token())
		}
		if n := strings.Count(strings.Join(paths(fv.requests()), " "), "/v1/auth/approle/login"); n != 1 {
			t.Fatalf("%d logins after the context ended, want 1", n)
		}
		if !strings.Contains(logs, "vault login failed; retrying") {
			t.Fatalf("log does not report the failed login:\n%s", logs)
		}
	})
}
