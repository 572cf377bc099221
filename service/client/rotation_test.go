package client_test

import (
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"testing"
	"time"

	"github.com/alecrypt/alecrypt/internal/tlsconfig"
	"github.com/alecrypt/alecrypt/service/client"
	"github.com/alecrypt/alecrypt/test/harness"
)

// TestClientCertificateRotates rotates the client certificate and key files
// under a running client, as cert-manager does with short-lived
// certificates, and checks the next connection presents the new one, over
// HTTP/2 as before.
func TestClientCertificateRotates(t *testing.T) {
	pki := harness.NewPKI(t)
	srvCert, srvKey := pki.Server(t, "server")
	cfg, err := tlsconfig.Server(srvCert, srvKey, pki.CAFile)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.ProtoMajor != 2 {
			http.Error(w, "not HTTP/2: "+r.Proto, http.StatusHTTPVersionNotSupported)
			return
		}
		if len(r.TLS.VerifiedChains) == 0 {
			io.WriteString(w, "anonymous")
			return
		}
		io.WriteString(w, r.TLS.VerifiedChains[0][0].URIs[0].String())
	}))
	srv.TLS, srv.EnableHTTP2 = cfg, true
	srv.StartTLS()
	defer srv.Close()

	certA, keyA := pki.Client(t, "a", "spiffe://alecrypt/alegate-a")
	certB, keyB := pki.Client(t, "b", "spiffe://alecrypt/alegate-b")
	// alegate's client: unary calls over HTTP/1.1 where it can, h2 with TLS.
	c, err := client.New(client.Config{URL: srv.URL, HTTP1: true, CAFile: pki.CAFile, CertFile: certA, KeyFile: keyA})
	if err != nil {
		t.Fatal(err)
	}
	whoami := func() string {
		t.Helper()
		res, err := c.HTTP.Get(c.URL + "/whoami")
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		b, _ := io.ReadAll(res.Body)
		if res.StatusCode != http.StatusOK {
			t.Fatalf("GET /whoami: %s %s", res.Status, b)
		}
		return string(b)
	}
	if got := whoami(); got != "spiffe://alecrypt/alegate-a" {
		t.Fatalf("before rotation the server saw %q, want alegate-a", got)
	}

	// Rotate in place: B's files replace A's (rename, as a rotation does).
	for _, mv := range [][2]string{{certB, certA}, {keyB, keyA}} {
		if err := os.Rename(mv[0], mv[1]); err != nil {
			t.Fatal(err)
		}
	}
	// An open connection keeps its handshake: the same identity.
	if got := whoami(); got != "spiffe://alecrypt/alegate-a" {
		t.Fatalf("on the open connection the server saw %q, want alegate-a still", got)
	}
	// The next connection (the server restarted, the connection was
	// recycled, here by the client) presents the new certificate. The files are checked at most
	// once a second.
	time.Sleep(1100 * time.Millisecond)
	c.HTTP.CloseIdleConnections()
	if got := whoami(); got != "spiffe://alecrypt/alegate-b" {
		t.Fatalf("after rotation the server saw %q, want alegate-b", got)
	}
}
