package tlsconfig

import (
	"crypto/tls"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/alecrypt/alecrypt/test/harness"
)

// TestHandshake: a server config from PEM files and a client config trusting
// the CA complete a TLS handshake, and with a client CA the server sees the
// client's verified certificate (mTLS).
func TestHandshake(t *testing.T) {
	t.Parallel()
	pki := harness.NewPKI(t)
	cert, key := pki.Server(t, "server")
	ccert, ckey := pki.Client(t, "client", "spiffe://alecrypt/pos/store-1")
	for _, tc := range []struct {
		name       string
		clientCA   string
		ccert      string
		ckey       string
		wantPeerID string
	}{
		{name: "TLS"},
		{name: "mTLS", clientCA: pki.CAFile, ccert: ccert, ckey: ckey, wantPeerID: "spiffe://alecrypt/pos/store-1"},
		{name: "client CA, no client certificate", clientCA: pki.CAFile},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			scfg, err := Server(cert, key, tc.clientCA)
			if err != nil {
				t.Fatalf("Server() err = %v", err)
			}
			ccfg, err := Client(pki.CAFile, tc.ccert, tc.ckey)
			if err != nil {
				t.Fatalf("Client() err = %v", err)
			}
			ccfg.ServerName = "localhost"
			ln, err := tls.Listen("tcp", "127.0.0.1:0", scfg)
			if err != nil {
				t.Fatal(err)
			}
			defer ln.Close()
			peer := make(chan string, 1)
			go func() {
				c, err := ln.Accept()
				if err != nil {
					peer <- "accept: " + err.Error()
					return
				}
				defer c.Close()
				conn := c.(*tls.Conn)
				if err := conn.Handshake(); err != nil {
					peer <- "handshake: " + err.Error()
					return
				}
				id := ""
				if chains := conn.ConnectionState().VerifiedChains; len(chains) > 0 && len(chains[0][0].URIs) > 0 {
					id = chains[0][0].URIs[0].String()
				}
				peer <- id
			}()
			c, err := tls.Dial("tcp", ln.Addr().String(), ccfg)
			if err != nil {
				t.Fatalf("Dial() err = %v", err)
			}
			defer c.Close()
			if got := <-peer; got != tc.wantPeerID {
				t.Errorf("server saw client %q, want %q", got, tc.wantPeerID)
			}
			if v := c.ConnectionState().Version; v < tls.VersionTLS12 {
				t.Errorf("TLS version %x, want 1.2 or later", v)
			}
		})
	}
}

func TestServerAndClientErrors(t *testing.T) {
	t.Parallel()
	pki := harness.NewPKI(t)
	cert, key := pki.Server(t, "server")
	notPEM := filepath.Join(t.TempDir(), "not.pem")
	if err := os.WriteFile(notPEM, []byte("hello"), 0o600); err != nil {
		t.Fatal(err)
	}
	missing := filepath.Join(t.TempDir(), "missing.pem")
	for _, tc := range []struct {
		name string
		fn   func() error
		want string
	}{
		{"server: missing key", func() error { _, err := Server(cert, missing, ""); return err }, "server certificate"},
		{"server: key of another cert", func() error { _, k := pki.Server(t, "other"); _, err := Server(cert, k, ""); return err }, "server certificate"},
		{"server: client CA not PEM", func() error { _, err := Server(cert, key, notPEM); return err }, "no PEM certificate"},
		{"client: CA missing", func() error { _, err := Client(missing, "", ""); return err }, "CA file"},
		{"client: certificate without key", func() error { _, err := Client("", cert, ""); return err }, "both"},
		{"client: key without certificate", func() error { _, err := Client("", "", key); return err }, "both"},
		{"client: bad pair", func() error { _, err := Client("", cert, notPEM); return err }, "client certificate"},
	} {
		if err := tc.fn(); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: err = %v, want one mentioning %q", tc.name, err, tc.want)
		}
	}
	if cfg, err := Client("", "", ""); err != nil || cfg.RootCAs != nil || cfg.MinVersion != tls.VersionTLS12 {
		t.Errorf("Client() with system roots = %+v, %v", cfg, err)
	}
}

// TestServerCertificateReload: a rotated pair is served once its files
// change, and a broken rotation keeps the last good certificate.
func TestServerCertificateReload(t *testing.T) {
	t.Parallel()
	pki := harness.NewPKI(t)
	cert, key := pki.Server(t, "server")
	kp := newPair(cert, key, "server certificate")
	first, err := kp.get()
	if err != nil {
		t.Fatal(err)
	}
	// Rotate: copy a new pair over the files, with a later mtime.
	ncert, nkey := pki.Server(t, "rotated")
	later := time.Now().Add(time.Minute)
	for src, dst := range map[string]string{ncert: cert, nkey: key} {
		b, err := os.ReadFile(src)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(dst, b, 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Chtimes(dst, later, later); err != nil {
			t.Fatal(err)
		}
	}
	kp.mu.Lock()
	kp.checked = time.Time{} // skip the once-a-second throttle
	kp.mu.Unlock()
	second, err := kp.get()
	if err != nil || second == first || string(second.Certificate[0]) == string(first.Certificate[0]) {
		t.Fatalf("after rotation get() = same certificate (%v), want the new one", err)
	}
	// Break the key file: the last good pair stays.
	if err := os.WriteFile(key, []byte("garbage"), 0o600); err != nil {
		t.Fatal(err)
	}
	kp.mu.Lock()
	kp.checked = time.Time{}
	kp.mu.Unlock()
	if third, err := kp.get(); err != nil || third != second {
		t.Errorf("after a broken rotation get() = %v, %v; want the last good certificate", third, err)
	}
}
