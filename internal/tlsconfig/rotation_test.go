package tlsconfig

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"io"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestMain(m *testing.M) {
	// Every handshake re-checks the files, so a rotation shows at the next
	// handshake rather than after a second.
	recheck = 0
	os.Exit(m.Run())
}

// ca is a throwaway certificate authority.
type ca struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	pem  []byte
}

var serial int64

func newCA(t *testing.T, name string) *ca {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	serial++
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(serial), Subject: pkix.Name{CommonName: name},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &k.PublicKey, k)
	if err != nil {
		t.Fatal(err)
	}
	c, _ := x509.ParseCertificate(der)
	return &ca{cert: c, key: k, pem: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})}
}

// issue returns a leaf's certificate and key PEM: a server certificate for
// 127.0.0.1 when server, else a client certificate named cn.
func (c *ca) issue(t *testing.T, cn string, server bool) (certPEM, keyPEM []byte) {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	serial++
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(serial), Subject: pkix.Name{CommonName: cn},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}
	if server {
		tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}
		tmpl.IPAddresses = []net.IP{net.ParseIP("127.0.0.1")}
		tmpl.DNSNames = []string{"localhost"}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, c.cert, &k.PublicKey, c.key)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalPKCS8PrivateKey(k)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kder})
}

// replace writes a file the way rotations do: a new file renamed over the
// old one.
func replace(t *testing.T, path string, data []byte) {
	t.Helper()
	tmp := path + ".new"
	if err := os.WriteFile(tmp, data, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

// files is the set of PEM files of one side.
type files struct{ ca, cert, key string }

func writeFiles(t *testing.T, dir string, caPEM, certPEM, keyPEM []byte) files {
	t.Helper()
	f := files{filepath.Join(dir, "ca.pem"), filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")}
	replace(t, f.ca, caPEM)
	replace(t, f.cert, certPEM)
	replace(t, f.key, keyPEM)
	return f
}

// startServer serves, over TLS from Server, the common name of the client
// certificate each request came with.
func startServer(t *testing.T, f files) *httptest.Server {
	t.Helper()
	cfg, err := Server(f.cert, f.key, f.ca)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if len(r.TLS.VerifiedChains) == 0 {
			io.WriteString(w, "anonymous")
			return
		}
		io.WriteString(w, r.TLS.VerifiedChains[0][0].Subject.CommonName)
	}))
	srv.TLS = cfg
	srv.EnableHTTP2 = true
	srv.StartTLS()
	t.Cleanup(srv.Close)
	return srv
}

func newClient(t *testing.T, f files) *http.Client {
	t.Helper()
	d, err := NewDialer(f.ca, f.cert, f.key, "h2", "http/1.1")
	if err != nil {
		t.Fatal(err)
	}
	tr := &http.Transport{DialTLSContext: d.DialTLSContext, ForceAttemptHTTP2: true}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr, Timeout: 10 * time.Second}
}

// who asks the server which client certificate it saw, on a new connection.
func who(t *testing.T, c *http.Client, url string) (string, error) {
	t.Helper()
	c.CloseIdleConnections()
	res, err := c.Get(url)
	if err != nil {
		return "", err
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	return string(b), err
}

// TestRotationUnderARunningClient rotates the client certificate, then the
// whole PKI (a new CA for both sides), under a running client and server,
// and checks each new handshake uses the files on disk now.
func TestRotationUnderARunningClient(t *testing.T) {
	ca1 := newCA(t, "ca-1")
	srvCert, srvKey := ca1.issue(t, "server", true)
	cliCert, cliKey := ca1.issue(t, "client-1", false)
	sf := writeFiles(t, t.TempDir(), ca1.pem, srvCert, srvKey)
	cf := writeFiles(t, t.TempDir(), ca1.pem, cliCert, cliKey)
	srv := startServer(t, sf)
	c := newClient(t, cf)

	if got, err := who(t, c, srv.URL); err != nil || got != "client-1" {
		t.Fatalf("before rotation: server saw %q, %v; want client-1", got, err)
	}

	// A short-lived client certificate is renewed: the next handshake
	// presents the new one.
	cliCert, cliKey = ca1.issue(t, "client-2", false)
	replace(t, cf.cert, cliCert)
	replace(t, cf.key, cliKey)
	if got, err := who(t, c, srv.URL); err != nil || got != "client-2" {
		t.Fatalf("after rotating the client certificate: server saw %q, %v; want client-2", got, err)
	}

	// The CA itself rotates. While the client still trusts only ca-1, a
	// server certificate from ca-2 is refused...
	ca2 := newCA(t, "ca-2")
	srvCert, srvKey = ca2.issue(t, "server", true)
	replace(t, sf.cert, srvCert)
	replace(t, sf.key, srvKey)
	if got, err := who(t, c, srv.URL); err == nil {
		t.Fatalf("server certificate from an untrusted CA accepted (server saw %q)", got)
	} else if !isVerifyError(err) {
		t.Fatalf("untrusted server certificate: err = %v, want a certificate verification error", err)
	}
	// ...and once both CA files and the client certificate are from ca-2,
	// the handshake succeeds with the new identity.
	replace(t, cf.ca, ca2.pem)
	replace(t, sf.ca, ca2.pem)
	cliCert, cliKey = ca2.issue(t, "client-3", false)
	replace(t, cf.cert, cliCert)
	replace(t, cf.key, cliKey)
	if got, err := who(t, c, srv.URL); err != nil || got != "client-3" {
		t.Fatalf("after rotating the CA: server saw %q, %v; want client-3", got, err)
	}
	// A client certificate from the old CA is no identity any more: the
	// server's client-CA file was re-read too.
	cliCert, cliKey = ca1.issue(t, "client-old-ca", false)
	replace(t, cf.cert, cliCert)
	replace(t, cf.key, cliKey)
	if got, err := who(t, c, srv.URL); err == nil && got == "client-old-ca" {
		t.Fatalf("server accepted a client certificate from the CA it no longer trusts")
	}
}

// TestHalfRotatedPairKeepsTheLastGood: a certificate written before its
// key does not break the client; the next complete pair is used.
func TestHalfRotatedPairKeepsTheLastGood(t *testing.T) {
	ca1 := newCA(t, "ca")
	srvCert, srvKey := ca1.issue(t, "server", true)
	cliCert, cliKey := ca1.issue(t, "client-1", false)
	srv := startServer(t, writeFiles(t, t.TempDir(), ca1.pem, srvCert, srvKey))
	cf := writeFiles(t, t.TempDir(), ca1.pem, cliCert, cliKey)
	c := newClient(t, cf)
	newCert, newKey := ca1.issue(t, "client-2", false)
	replace(t, cf.cert, newCert) // the key is still the old one
	if got, err := who(t, c, srv.URL); err != nil || got != "client-1" {
		t.Fatalf("half-rotated pair: server saw %q, %v; want the last good client-1", got, err)
	}
	replace(t, cf.key, newKey)
	if got, err := who(t, c, srv.URL); err != nil || got != "client-2" {
		t.Fatalf("completed rotation: server saw %q, %v; want client-2", got, err)
	}
	replace(t, cf.ca, []byte("not a certificate"))
	if got, err := who(t, c, srv.URL); err != nil || got != "client-2" {
		t.Fatalf("unparsable CA file: server saw %q, %v; want the last good CA still trusted", got, err)
	}
}

// TestDialerVerifiesTheServer: a connection's config carries the CA and
// the name to verify, so crypto/tls refuses what it always refuses: a
// certificate for another name, from another CA, or a client certificate
// used as a server's.
func TestDialerVerifiesTheServer(t *testing.T) {
	ca1, other := newCA(t, "ca"), newCA(t, "other")
	cases := []struct {
		name, serverName string
		serve            func() (cert, key []byte)
		wantErr          bool
	}{
		{"good, by IP", "127.0.0.1", func() ([]byte, []byte) { return ca1.issue(t, "server", true) }, false},
		{"good, by name", "localhost", func() ([]byte, []byte) { return ca1.issue(t, "server", true) }, false},
		{"wrong name", "elsewhere.example", func() ([]byte, []byte) { return ca1.issue(t, "server", true) }, true},
		{"other CA", "127.0.0.1", func() ([]byte, []byte) { return other.issue(t, "server", true) }, true},
		{"client certificate as server's", "127.0.0.1", func() ([]byte, []byte) { return ca1.issue(t, "server", false) }, true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			cert, key := tc.serve()
			srv := startServer(t, writeFiles(t, t.TempDir(), ca1.pem, cert, key))
			cc, ck := ca1.issue(t, "client", false)
			f := writeFiles(t, t.TempDir(), ca1.pem, cc, ck)
			d, err := NewDialer(f.ca, f.cert, f.key)
			if err != nil {
				t.Fatal(err)
			}
			cfg, err := d.Config(tc.serverName)
			if err != nil {
				t.Fatal(err)
			}
			conn, err := tls.Dial("tcp", strings.TrimPrefix(srv.URL, "https://"), cfg)
			if err == nil {
				conn.Close()
			}
			if tc.wantErr && !isVerifyError(err) {
				t.Fatalf("dial = %v, want a certificate verification error", err)
			}
			if !tc.wantErr && err != nil {
				t.Fatalf("dial = %v, want success", err)
			}
		})
	}
}

func isVerifyError(err error) bool {
	var ve *tls.CertificateVerificationError
	return errors.As(err, &ve)
}
