// Package tlsconfig builds the TLS configurations of alecrypt's listeners
// and clients from PEM files: server certificates (re-read when the files
// change, so cert-manager rotations need no restart), client-certificate
// verification for mTLS, and client configs with a private CA and an
// optional client certificate.
package tlsconfig

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"sync"
	"time"
)

// Server returns a TLS 1.2+ server config serving certFile/keyFile. With
// clientCAFile, client certificates are verified against it when presented
// (callers may instead use a bearer token; the policy decides who must).
func Server(certFile, keyFile, clientCAFile string) (*tls.Config, error) {
	kp := &reloadingPair{cert: certFile, key: keyFile}
	if _, err := kp.get(); err != nil {
		return nil, err
	}
	cfg := &tls.Config{
		MinVersion:     tls.VersionTLS12,
		GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) { return kp.get() },
		NextProtos:     []string{"h2", "http/1.1"},
	}
	if clientCAFile != "" {
		pool, err := loadPool(clientCAFile)
		if err != nil {
			return nil, err
		}
		cfg.ClientCAs = pool
		cfg.ClientAuth = tls.VerifyClientCertIfGiven
	}
	return cfg, nil
}

// Client returns a TLS 1.2+ client config trusting caFile (system roots when
// empty) and presenting certFile/keyFile when given (mTLS).
func Client(caFile, certFile, keyFile string) (*tls.Config, error) {
	cfg := &tls.Config{MinVersion: tls.VersionTLS12}
	if caFile != "" {
		pool, err := loadPool(caFile)
		if err != nil {
			return nil, err
		}
		cfg.RootCAs = pool
	}
	switch {
	case certFile != "" && keyFile != "":
		pair, err := tls.LoadX509KeyPair(certFile, keyFile)
		if err != nil {
			return nil, fmt.Errorf("client certificate: %w", err)
		}
		cfg.Certificates = []tls.Certificate{pair}
	case certFile != "" || keyFile != "":
		return nil, errors.New("a client certificate needs both the certificate and the key file")
	}
	return cfg, nil
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

// reloadingPair re-reads a key pair when either file's modification time
// changes, at most once a second.
type reloadingPair struct {
	cert, key string
	mu        sync.Mutex
	pair      *tls.Certificate
	stamp     string
	checked   time.Time
}

func (r *reloadingPair) get() (*tls.Certificate, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.pair != nil && time.Since(r.checked) < time.Second {
		return r.pair, nil
	}
	r.checked = time.Now()
	stamp := modStamp(r.cert) + "|" + modStamp(r.key)
	if r.pair != nil && stamp == r.stamp {
		return r.pair, nil
	}
	pair, err := tls.LoadX509KeyPair(r.cert, r.key)
	if err != nil {
		if r.pair != nil {
			return r.pair, nil // keep serving the last good certificate
		}
		return nil, fmt.Errorf("server certificate: %w", err)
	}
	r.pair, r.stamp = &pair, stamp
	return r.pair, nil
}

func modStamp(path string) string {
	fi, err := os.Stat(path)
	if err != nil {
		return ""
	}
	return fi.ModTime().String() + fmt.Sprint(fi.Size())
}
