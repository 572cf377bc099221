package client_test

import (
	"context"
	"crypto/tls"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"

	"connectrpc.com/connect"

	alev1 "github.com/alecrypt/alecrypt/gen/ale/v1"
	"github.com/alecrypt/alecrypt/gen/ale/v1/alev1connect"
	"github.com/alecrypt/alecrypt/service/client"
	"github.com/alecrypt/alecrypt/service/secret"
	"github.com/alecrypt/alecrypt/test/harness"
)

// seen is what a test server saw of one request.
type seen struct {
	path  string
	proto int
	auth  string
}

// recorder is an h2c test server that answers health checks with status
// and records every request.
func recorder(t *testing.T, status string) (*httptest.Server, func() []seen) {
	t.Helper()
	var (
		mu   sync.Mutex
		reqs []seen
	)
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		reqs = append(reqs, seen{r.URL.Path, r.ProtoMajor, r.Header.Get("Authorization")})
		mu.Unlock()
		if r.URL.Path == "/grpc.health.v1.Health/Check" && status != "" {
			w.Header().Set("Content-Type", "application/json")
			_, _ = w.Write([]byte(`{"status":` + status + `}`))
			return
		}
		http.Error(w, "no", http.StatusNotFound)
	}))
	srv.Config.Protocols = new(http.Protocols)
	srv.Config.Protocols.SetHTTP1(true)
	srv.Config.Protocols.SetUnencryptedHTTP2(true)
	srv.Start()
	t.Cleanup(srv.Close)
	return srv, func() []seen {
		mu.Lock()
		defer mu.Unlock()
		return append([]seen(nil), reqs...)
	}
}

func get(t *testing.T, c *client.Clients, path string) {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), http.MethodPost, c.URL+path, strings.NewReader("{}"))
	if err != nil {
		t.Fatal(err)
	}
	res, err := c.HTTP.Do(req)
	if err != nil {
		t.Fatalf("POST %s: %v", path, err)
	}
	res.Body.Close()
}

// TestProtocols: plain http:// speaks h2c; with HTTP1 unary calls go over
// HTTP/1.1 and only the bidi Stream over h2c; gRPC ignores HTTP1. The
// bearer token rides on every call.
func TestProtocols(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name        string
		cfg         client.Config
		unary, strm int // the HTTP major version each path must use
	}{
		{name: "h2c", unary: 2, strm: 2},
		{name: "http1 for unary calls", cfg: client.Config{HTTP1: true}, unary: 1, strm: 2},
		{name: "grpc ignores http1", cfg: client.Config{HTTP1: true, GRPC: true}, unary: 2, strm: 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			srv, reqs := recorder(t, "")
			cfg := tc.cfg
			cfg.URL = srv.URL + "/"
			cfg.Token = secret.FromString("tok-7")
			c, err := client.New(cfg)
			if err != nil {
				t.Fatal(err)
			}
			if c.URL != srv.URL {
				t.Errorf("URL = %q, want %q without the trailing slash", c.URL, srv.URL)
			}
			get(t, c, alev1connect.CryptoServiceEncryptProcedure)
			get(t, c, alev1connect.CryptoServiceStreamProcedure)
			got := reqs()
			if len(got) != 2 || got[0].proto != tc.unary || got[1].proto != tc.strm {
				t.Errorf("requests = %+v, want unary over HTTP/%d and Stream over HTTP/%d", got, tc.unary, tc.strm)
			}
			for _, r := range got {
				if r.auth != "Bearer tok-7" {
					t.Errorf("%s: Authorization = %q, want the bearer token", r.path, r.auth)
				}
			}
		})
	}
}

func TestNewErrors(t *testing.T) {
	t.Parallel()
	pki := harness.NewPKI(t)
	for _, tc := range []struct {
		name string
		cfg  client.Config
		want string
	}{
		{"no host", client.Config{URL: "127.0.0.1:8080"}, "want http://host:port"},
		{"other scheme", client.Config{URL: "ftp://127.0.0.1:8080"}, "scheme must be http or https"},
		{"https with a missing CA", client.Config{URL: "https://127.0.0.1:8443", CAFile: filepath.Join(t.TempDir(), "ca.pem")}, "CA file"},
		{"https with half a client certificate", client.Config{URL: "https://127.0.0.1:8443", CAFile: pki.CAFile, CertFile: pki.CAFile}, "both"},
	} {
		if _, err := client.New(tc.cfg); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("New(%s) err = %v, want one mentioning %q", tc.name, err, tc.want)
		}
	}
}

// TestTLS: an https:// URL trusts the configured CA and presents the client
// certificate.
func TestTLS(t *testing.T) {
	t.Parallel()
	pki := harness.NewPKI(t)
	cert, key := pki.Server(t, "server")
	ccert, ckey := pki.Client(t, "client", "spiffe://alecrypt/alegate")
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.TLS == nil || len(r.TLS.PeerCertificates) == 0 {
			http.Error(w, "no client certificate", http.StatusUnauthorized)
			return
		}
		_, _ = w.Write([]byte(`{"status":"SERVING"}`))
	}))
	pair, err := tlsPair(cert, key)
	if err != nil {
		t.Fatal(err)
	}
	srv.TLS = pair
	srv.EnableHTTP2 = true
	srv.StartTLS()
	t.Cleanup(srv.Close)
	u := strings.Replace(srv.URL, "127.0.0.1", "localhost", 1)
	c, err := client.New(client.Config{URL: u, CAFile: pki.CAFile, CertFile: ccert, KeyFile: ckey})
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Serving(t.Context()); err != nil {
		t.Errorf("Serving() over mTLS = %v, want nil", err)
	}
}

func TestServing(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		status string // the JSON value of "status"; "" answers 404
		ok     bool
	}{
		{`"SERVING_STATUS_SERVING"`, true},
		{`"SERVING"`, true},
		{`1`, true},
		{`"NOT_SERVING"`, false},
		{`2`, false},
		{"", false},
	} {
		srv, _ := recorder(t, tc.status)
		c, err := client.New(client.Config{URL: srv.URL})
		if err != nil {
			t.Fatal(err)
		}
		if err := c.Serving(context.Background()); (err == nil) != tc.ok {
			t.Errorf("Serving() with status %s = %v, want ok %v", tc.status, err, tc.ok)
		}
	}
}

func TestTokenFromFile(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	good, empty := filepath.Join(dir, "good"), filepath.Join(dir, "empty")
	if err := os.WriteFile(good, []byte("  tok-9\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(empty, []byte(" \n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if tok, err := client.TokenFromFile(good); err != nil || string(tok.Expose()) != "tok-9" {
		t.Errorf("TokenFromFile(good) = %v, %v; want the trimmed token", tok, err)
	}
	if _, err := client.TokenFromFile(empty); err == nil {
		t.Error("TokenFromFile(empty) err = nil")
	}
	if _, err := client.TokenFromFile(filepath.Join(dir, "missing")); err == nil {
		t.Error("TokenFromFile(missing) err = nil")
	}
}

func tlsPair(cert, key string) (*tls.Config, error) {
	pair, err := tls.LoadX509KeyPair(cert, key)
	if err != nil {
		return nil, err
	}
	return &tls.Config{Certificates: []tls.Certificate{pair}, ClientAuth: tls.RequestClientCert}, nil
}

// TestOptions: Connect client options given to New reach both clients.
func TestOptions(t *testing.T) {
	t.Parallel()
	srv, _ := recorder(t, "")
	var procs []string
	rec := connect.UnaryInterceptorFunc(func(next connect.UnaryFunc) connect.UnaryFunc {
		return func(ctx context.Context, req connect.AnyRequest) (connect.AnyResponse, error) {
			procs = append(procs, req.Spec().Procedure)
			return next(ctx, req)
		}
	})
	c, err := client.New(client.Config{URL: srv.URL}, connect.WithInterceptors(rec))
	if err != nil {
		t.Fatal(err)
	}
	_, _ = c.Crypto.Resolve(t.Context(), connect.NewRequest(&alev1.ResolveRequest{}))
	_, _ = c.Keys.ListKeys(t.Context(), connect.NewRequest(&alev1.ListKeysRequest{}))
	if want := []string{alev1connect.CryptoServiceResolveProcedure, alev1connect.KeyServiceListKeysProcedure}; !slices.Equal(procs, want) {
		t.Errorf("interceptor saw %q, want %q", procs, want)
	}
}
