// Package tlsconfig builds the TLS configurations of alecrypt's listeners
// and clients from PEM files: server certificates, client-certificate
// verification for mTLS, and a client dialer with a private CA and an
// optional client certificate.
//
// Every file is re-read when it changes, on both sides, so short-lived
// certificates (cert-manager, SPIFFE) rotate without a restart: a handshake
// first stats the files (at most once a second), and only a changed stamp
// reads and parses them again. A rotation caught halfway (the new certificate
// next to the old key) or a file that does not parse keeps the last good
// value and is retried on the next handshake. Connections already open keep
// the credentials of their handshake; only new handshakes see new files.
package tlsconfig

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"os"
	"strings"
	"sync"
	"time"
)

// recheck is how often a handshake may stat the files again: the stat is
// cheap, but a busy listener shakes hands far more often than certificates
// rotate.
var recheck = time.Second

// Server returns a TLS 1.2+ server config serving certFile/keyFile. With
// clientCAFile, client certificates are verified against it when presented
// (callers may instead use a bearer token; the policy decides who must).
func Server(certFile, keyFile, clientCAFile string) (*tls.Config, error) {
	kp := newPair(certFile, keyFile, "server certificate")
	if _, err := kp.get(); err != nil {
		return nil, err
	}
	cfg := &tls.Config{
		MinVersion:     tls.VersionTLS12,
		GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) { return kp.get() },
		NextProtos:     []string{"h2", "http/1.1"},
	}
	if clientCAFile == "" {
		return cfg, nil
	}
	ca := newPool(clientCAFile)
	pool, err := ca.get()
	if err != nil {
		return nil, err
	}
	cfg.ClientCAs = pool
	cfg.ClientAuth = tls.VerifyClientCertIfGiven
	// The CA pool is part of the config, so a new pool needs a new config:
	// built once per change, not per handshake.
	var (
		mu      sync.Mutex
		current = cfg.Clone()
	)
	cfg.GetConfigForClient = func(*tls.ClientHelloInfo) (*tls.Config, error) {
		pool, err := ca.get()
		if err != nil {
			return nil, err
		}
		mu.Lock()
		defer mu.Unlock()
		if current.ClientCAs != pool {
			current = cfg.Clone()
			current.GetConfigForClient = nil
			current.ClientCAs = pool
		}
		return current, nil
	}
	return cfg, nil
}

// Client returns a TLS 1.2+ client config trusting caFile (system roots when
// empty) and presenting certFile/keyFile when given (mTLS), for callers that
// need a *tls.Config. The client certificate is re-read when its files
// change; the CA is read once, since a config's RootCAs must not change once
// in use: for a CA that rotates too, dial through a Dialer.
func Client(caFile, certFile, keyFile string) (*tls.Config, error) {
	d, err := NewDialer(caFile, certFile, keyFile)
	if err != nil {
		return nil, err
	}
	return d.Config("")
}

// Dialer makes TLS connections to servers, trusting a CA file (the system
// roots when empty) and presenting a client certificate when given (mTLS),
// with the files as they are on disk at each handshake.
type Dialer struct {
	ca         *reloading[*x509.CertPool] // nil: system roots
	pair       *reloading[*tls.Certificate]
	nextProtos []string
}

// HandshakeTimeout bounds a dial and its TLS handshake, as
// http.Transport's TLSHandshakeTimeout does for its own TLS dials.
const HandshakeTimeout = 10 * time.Second

// NewDialer checks the files once and returns a Dialer offering nextProtos
// by ALPN (e.g. "h2", "http/1.1").
func NewDialer(caFile, certFile, keyFile string, nextProtos ...string) (*Dialer, error) {
	d := &Dialer{nextProtos: nextProtos}
	if caFile != "" {
		d.ca = newPool(caFile)
		if _, err := d.ca.get(); err != nil {
			return nil, err
		}
	}
	switch {
	case certFile != "" && keyFile != "":
		d.pair = newPair(certFile, keyFile, "client certificate")
		if _, err := d.pair.get(); err != nil {
			return nil, err
		}
	case certFile != "" || keyFile != "":
		return nil, errors.New("a client certificate needs both the certificate and the key file")
	}
	return d, nil
}

// Config returns a TLS 1.2+ client config for serverName with the CA pool
// on disk now. crypto/tls verifies the server with it as usual. The pool is
// fixed per connection (a config's RootCAs must not change once in use),
// which is why each connection gets a config of its own: one shared config
// could never see a new CA.
func (d *Dialer) Config(serverName string) (*tls.Config, error) {
	cfg := &tls.Config{MinVersion: tls.VersionTLS12, ServerName: serverName, NextProtos: d.nextProtos}
	if d.ca != nil {
		pool, err := d.ca.get()
		if err != nil {
			return nil, err
		}
		cfg.RootCAs = pool
	}
	if d.pair != nil {
		// Asked at each handshake, so a renewed certificate is presented
		// by the next connection.
		cfg.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return d.pair.get() }
	}
	return cfg, nil
}

// DialTLSContext dials addr (host:port) and completes the TLS handshake,
// verifying the server's certificate for host; it fits
// http.Transport.DialTLSContext.
func (d *Dialer) DialTLSContext(ctx context.Context, network, addr string) (net.Conn, error) {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, err
	}
	cfg, err := d.Config(host)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, HandshakeTimeout)
	defer cancel()
	return (&tls.Dialer{Config: cfg}).DialContext(ctx, network, addr)
}

func loadPool(file string) (*x509.CertPool, error) {
	pem, err := os.ReadFile(file)
	if err != nil {
		return nil, fmt.Errorf("CA file: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("CA file %s holds no PEM certificate", file)
	}
	return pool, nil
}

func newPair(certFile, keyFile, what string) *reloading[*tls.Certificate] {
	return &reloading[*tls.Certificate]{files: []string{certFile, keyFile}, load: func() (*tls.Certificate, error) {
		pair, err := tls.LoadX509KeyPair(certFile, keyFile)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", what, err)
		}
		return &pair, nil
	}}
}

func newPool(caFile string) *reloading[*x509.CertPool] {
	return &reloading[*x509.CertPool]{files: []string{caFile}, load: func() (*x509.CertPool, error) { return loadPool(caFile) }}
}

// reloading holds a value built from files and builds it again when a
// file's stamp (inode, modification time and size) changes, checking at most once
// per recheck. A failed load keeps the last good value.
type reloading[T any] struct {
	files []string
	load  func() (T, error)

	mu      sync.Mutex
	val     T
	ok      bool
	stamp   string
	checked time.Time
}

func (r *reloading[T]) get() (T, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.ok && time.Since(r.checked) < recheck {
		return r.val, nil
	}
	r.checked = time.Now()
	stamp := stamps(r.files)
	if r.ok && stamp == r.stamp {
		return r.val, nil
	}
	v, err := r.load()
	if err != nil {
		if r.ok {
			return r.val, nil // keep the last good value; retried next time
		}
		var zero T
		return zero, err
	}
	r.val, r.ok, r.stamp = v, true, stamp
	return v, nil
}

func stamps(files []string) string {
	var b strings.Builder
	for _, f := range files {
		if fi, err := os.Stat(f); err == nil {
			fmt.Fprintf(&b, "%s/%d/%d|", fileID(fi), fi.ModTime().UnixNano(), fi.Size())
		} else {
			b.WriteString("-|")
		}
	}
	return b.String()
}
