package deploy

import (
	"bufio"
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"maps"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
)

// TestAlecryptdWithManifestArgs starts the real alecryptd with the
// arguments of the base Deployment — TLS, client CA, the example caller
// policy, audit on stdout — on files laid out as the pod's volumes would
// lay them out. Only the keystore differs (an embedded file instead of
// Vault) and the listeners move to free loopback ports. It checks what the
// manifests count on: the probe path answers on the metrics port, gRPC
// health answers over TLS without a client certificate, a caller without
// credentials is refused, alegate's certificate identity may encrypt, and
// each operation writes an audit line to stdout.
func TestAlecryptdWithManifestArgs(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs alecryptd")
	}
	r, c, cm := renderAlecryptd(t, baseDir)

	dir := t.TempDir()
	bin := buildProgram(t, dir, "alecryptd")

	// The pod's files, under dir.
	pki := newTestPKI(t)
	files := map[string][]byte{
		"/etc/alecrypt/tls/tls.crt":           pki.serverCert,
		"/etc/alecrypt/tls/tls.key":           pki.serverKey,
		"/etc/alecrypt/trust/internal-ca.crt": pki.caCert,
		"/etc/alecrypt/policy/policy.json":    []byte(cm.Data["policy.json"]),
		"/var/run/secrets/vault/token":        []byte("unused"),
		"/etc/alecrypt/trust/vault-ca.crt":    pki.caCert,
		"/etc/alecrypt/audit-chain/key":       []byte(strings.Repeat("5a", 32) + "\n"),
	}
	writeFiles(t, dir, files)
	keystore := filepath.Join(dir, "var/lib/alecrypt/keystore.json")
	if err := os.MkdirAll(filepath.Dir(keystore), 0o700); err != nil {
		t.Fatal(err)
	}
	args := localArgs(c.Args, dir, func(name, value string) ([]string, bool) {
		switch {
		case name == "keystore":
			return []string{"--keystore=" + keystore}, true
		case strings.HasPrefix(name, "vault-"):
			return nil, true // Vault is replaced by the embedded keystore here.
		case strings.HasPrefix(value, "/"):
			if _, ok := files[value]; !ok {
				t.Fatalf("--%s=%s: no stand-in file for it", name, value)
			}
		}
		return nil, false
	})

	proc := startProgram(t, bin, args, "alecryptd listening", "metrics listening")
	api, metrics := proc.addrs["alecryptd listening"], proc.addrs["metrics listening"]

	// The probes' target.
	for _, p := range []*corev1.Probe{c.StartupProbe, c.ReadinessProbe, c.LivenessProbe} {
		res, err := http.Get("http://" + metrics + p.HTTPGet.Path)
		if err != nil {
			t.Fatalf("probe GET %s: %v", p.HTTPGet.Path, err)
		}
		res.Body.Close()
		if res.StatusCode != http.StatusOK {
			t.Errorf("probe GET %s = %d, want 200", p.HTTPGet.Path, res.StatusCode)
		}
	}

	call := func(cert *tls.Certificate, procedure, body string) (int, string) {
		t.Helper()
		return postTLS(t, pki, cert, api, procedure, body)
	}

	code, body := call(nil, "/grpc.health.v1.Health/Check", `{}`)
	var health struct{ Status string }
	if err := json.Unmarshal([]byte(body), &health); code != http.StatusOK || err != nil || health.Status != "SERVING_STATUS_SERVING" {
		t.Errorf("health over TLS without a client certificate = %d %s, want 200 and SERVING_STATUS_SERVING", code, body)
	}
	if code, body := call(nil, "/ale.v1.CryptoService/Encrypt", `{"plaintext":"aGk="}`); code != http.StatusUnauthorized {
		t.Errorf("Encrypt without credentials = %d %s, want 401 (policy in force)", code, body)
	}
	if code, body := call(&pki.alegate, "/ale.v1.CryptoService/Encrypt", `{"plaintext":"aGk="}`); code != http.StatusOK || !strings.Contains(body, `"envelope"`) {
		t.Errorf("Encrypt as spiffe://alecrypt/alegate = %d %s, want 200 and an envelope", code, body)
	}
	deadline := time.Now().Add(5 * time.Second)
	for !strings.Contains(proc.stdout.String(), "spiffe://alecrypt/alegate") && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	if !strings.Contains(proc.stdout.String(), "spiffe://alecrypt/alegate") {
		t.Errorf("no audit line naming spiffe://alecrypt/alegate on stdout:\n%s", proc.stdout.String())
	}

	t.Run("alegate", func(t *testing.T) {
		checkAlegate(t, r, dir, pki, api)
	})
	proc.stop(t)
}

// checkAlegate starts alegate with the base Deployment's arguments (files
// laid out as in the pod, listener on a free loopback port, --upstream a
// local kitchen, --crypto the alecryptd above) and sends one ALE request
// through it: the kitchen must get the plaintext, which proves the mTLS
// wiring and the caller policy's entry for alegate.
func checkAlegate(t *testing.T, r rendered, dir string, pki testPKI, api string) {
	d := find[appsv1.Deployment](r, "alegate")
	if d == nil {
		t.Fatal("no Deployment alegate")
	}
	c := d.Spec.Template.Spec.Containers[0]
	bin := buildProgram(t, dir, "alegate")
	files := map[string][]byte{
		"/etc/alegate/tls/tls.crt":            pki.serverCert,
		"/etc/alegate/tls/tls.key":            pki.serverKey,
		"/etc/alecrypt/crypto-client/tls.crt": pki.alegateCert,
		"/etc/alecrypt/crypto-client/tls.key": pki.alegateKey,
		"/etc/alecrypt/trust/internal-ca.crt": pki.caCert,
	}
	writeFiles(t, dir, files)

	kitchen := make(chan string, 1)
	upstream := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		select {
		case kitchen <- r.Method + " " + r.URL.Path + " " + string(b):
		default:
		}
		w.Header().Set("Content-Type", "application/json")
		_, _ = io.WriteString(w, `{"ok":true}`)
	}))
	defer upstream.Close()

	var args []string
	for _, a := range c.Args {
		name, value, _ := strings.Cut(strings.TrimPrefix(a, "--"), "=")
		switch {
		case name == "listen" || name == "metrics-listen":
			args = append(args, "--"+name+"=127.0.0.1:0")
		case name == "upstream":
			args = append(args, "--upstream="+upstream.URL)
		case name == "crypto":
			u, err := url.Parse(value)
			if err != nil || u.Scheme != "https" || u.Port() != "8443" {
				t.Fatalf("--crypto=%s: want https://...:8443", value)
			}
			args = append(args, "--crypto=https://"+api)
		case strings.HasPrefix(value, "/"):
			if _, ok := files[value]; !ok {
				t.Fatalf("--%s=%s: no stand-in file for it", name, value)
			}
			args = append(args, "--"+name+"="+filepath.Join(dir, value))
		default:
			args = append(args, a)
		}
	}
	proc := startProgram(t, bin, args, "alegate listening", "metrics listening")
	defer proc.stop(t)
	gate := proc.addrs["alegate listening"]

	// The probes' targets: alecryptd above is up, so both answer 200.
	for _, p := range []*corev1.Probe{c.ReadinessProbe, c.LivenessProbe} {
		res, err := http.Get("http://" + proc.addrs["metrics listening"] + p.HTTPGet.Path)
		if err != nil {
			t.Fatalf("probe GET %s: %v", p.HTTPGet.Path, err)
		}
		res.Body.Close()
		if res.StatusCode != http.StatusOK {
			t.Errorf("alegate probe GET %s = %d, want 200", p.HTTPGet.Path, res.StatusCode)
		}
	}

	// A POS would encrypt through alecryptd; the test does it as alegate's
	// identity, which the example policy allows.
	plaintext := `{"order":42}`
	_, body := postTLS(t, pki, &pki.alegate, api, "/ale.v1.CryptoService/Encrypt",
		fmt.Sprintf(`{"plaintext":%q}`, base64.StdEncoding.EncodeToString([]byte(plaintext))))
	var enc struct {
		Envelope struct{ IV, Fingerprint, Message string }
	}
	if err := json.Unmarshal([]byte(body), &enc); err != nil || enc.Envelope.IV == "" {
		t.Fatalf("Encrypt response %s: %v", body, err)
	}
	req, _ := http.NewRequest(http.MethodPost, "https://"+gate+"/v1/orders", strings.NewReader(enc.Envelope.Message))
	req.Header.Set("Authorization", "Bearer pos-token")
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("sec-iv", enc.Envelope.IV)
	req.Header.Set("sec-fingerprint", enc.Envelope.Fingerprint)
	res, err := tlsClient(pki, nil).Do(req)
	if err != nil {
		t.Fatalf("request through alegate: %v", err)
	}
	b, _ := io.ReadAll(res.Body)
	res.Body.Close()
	if res.StatusCode != http.StatusOK {
		t.Fatalf("request through alegate = %d %s, want 200\n%s", res.StatusCode, b, proc.logs.String())
	}
	select {
	case got := <-kitchen:
		if want := "POST /v1/orders " + plaintext; got != want {
			t.Errorf("the kitchen got %q, want %q", got, want)
		}
	case <-time.After(5 * time.Second):
		t.Error("the kitchen got nothing")
	}
}

// buildProgram builds ./cmd/name into dir with the image's build flags, so
// the build cache serves this and the build-stage test alike.
func buildProgram(t *testing.T, dir, name string) string {
	t.Helper()
	bin := filepath.Join(dir, name)
	build := exec.Command("go", "build", "-trimpath", "-buildvcs=false", "-ldflags=-s -w", "-o", bin, "./cmd/"+name)
	build.Dir = repoRoot
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build ./cmd/%s: %v\n%s", name, err, out)
	}
	return bin
}

// program is a started alecryptd or alegate.
type program struct {
	cmd    *exec.Cmd
	addrs  map[string]string // log message → its "addr"
	stdout syncBuffer
	logs   syncBuffer
	exited chan error
}

// startProgram runs bin and waits until it has logged each of msgs (JSON log
// lines with an "addr"), for at most 30 s.
func startProgram(t *testing.T, bin string, args []string, msgs ...string) *program {
	t.Helper()
	p := &program{cmd: exec.Command(bin, args...), addrs: map[string]string{}, exited: make(chan error, 1)}
	p.cmd.Env = []string{"HOME=" + t.TempDir(), "PATH=/usr/bin:/bin"}
	p.cmd.Stdout = &p.stdout
	stderr, err := p.cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = p.cmd.Process.Kill() })
	readyc := make(chan map[string]string, 1)
	go func(ready chan<- map[string]string) {
		seen := map[string]string{}
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			p.logs.Write(append(sc.Bytes(), '\n'))
			var line struct{ Msg, Addr string }
			if json.Unmarshal(sc.Bytes(), &line) != nil || line.Addr == "" || !slices.Contains(msgs, line.Msg) {
				continue
			}
			seen[line.Msg] = line.Addr
			if len(seen) == len(msgs) && ready != nil {
				ready <- maps.Clone(seen)
				ready = nil // once; keep draining stderr
			}
		}
		p.exited <- p.cmd.Wait()
	}(readyc)
	select {
	case p.addrs = <-readyc:
	case err := <-p.exited:
		t.Fatalf("%s %s exited: %v\n%s", filepath.Base(bin), strings.Join(args, " "), err, p.logs.String())
	case <-time.After(30 * time.Second):
		t.Fatalf("%s did not report %q in 30 s\n%s", filepath.Base(bin), msgs, p.logs.String())
	}
	return p
}

// stop sends SIGTERM and expects a clean exit.
func (p *program) stop(t *testing.T) {
	t.Helper()
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-p.exited:
		if err != nil {
			t.Errorf("%s after SIGTERM: %v\n%s", filepath.Base(p.cmd.Path), err, p.logs.String())
		}
	case <-time.After(20 * time.Second):
		t.Errorf("%s still running 20 s after SIGTERM", filepath.Base(p.cmd.Path))
	}
}

func writeFiles(t *testing.T, dir string, files map[string][]byte) {
	t.Helper()
	for p, data := range files {
		f := filepath.Join(dir, p)
		if err := os.MkdirAll(filepath.Dir(f), 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(f, data, 0o600); err != nil {
			t.Fatal(err)
		}
	}
}

func tlsClient(pki testPKI, cert *tls.Certificate) *http.Client {
	cfg := &tls.Config{RootCAs: pki.pool, MinVersion: tls.VersionTLS12}
	if cert != nil {
		cfg.Certificates = []tls.Certificate{*cert}
	}
	return &http.Client{Transport: &http.Transport{TLSClientConfig: cfg, ForceAttemptHTTP2: true}, Timeout: 10 * time.Second}
}

// postTLS makes a Connect unary call (JSON) to a TLS server at addr,
// presenting cert when given.
func postTLS(t *testing.T, pki testPKI, cert *tls.Certificate, addr, procedure, body string) (int, string) {
	t.Helper()
	client := tlsClient(pki, cert)
	defer client.CloseIdleConnections()
	res, err := client.Post("https://"+addr+procedure, "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatalf("POST %s: %v", procedure, err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	return res.StatusCode, string(b)
}

// testPKI is an internal CA, a server certificate (SAN alecryptd and
// 127.0.0.1; alegate's listener uses it too) and alegate's client certificate (URI SAN spiffe://alecrypt/alegate).
type testPKI struct {
	caCert, serverCert, serverKey []byte
	alegateCert, alegateKey       []byte
	pool                          *x509.CertPool
	alegate                       tls.Certificate
}

func newTestPKI(t *testing.T) testPKI {
	t.Helper()
	newKey := func() *ecdsa.PrivateKey {
		k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		return k
	}
	now := time.Now()
	caKey := newKey()
	caTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "alecrypt test CA"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	ca, _ := x509.ParseCertificate(caDER)
	issue := func(serial int64, tmpl *x509.Certificate) ([]byte, []byte) {
		k := newKey()
		tmpl.SerialNumber = big.NewInt(serial)
		tmpl.NotBefore, tmpl.NotAfter = now.Add(-time.Hour), now.Add(time.Hour)
		tmpl.KeyUsage = x509.KeyUsageDigitalSignature
		der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &k.PublicKey, caKey)
		if err != nil {
			t.Fatal(err)
		}
		kder, err := x509.MarshalECPrivateKey(k)
		if err != nil {
			t.Fatal(err)
		}
		return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
			pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder})
	}
	p := testPKI{caCert: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER}), pool: x509.NewCertPool()}
	p.pool.AddCert(ca)
	p.serverCert, p.serverKey = issue(2, &x509.Certificate{
		Subject:  pkix.Name{CommonName: "alecryptd"},
		DNSNames: []string{"alecryptd", "alecryptd.alecrypt.svc", "alecryptd.alecrypt.svc.cluster.local"},
		// The test dials 127.0.0.1 where the pods dial the Service name.
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)},
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	})
	spiffe, _ := url.Parse("spiffe://alecrypt/alegate")
	p.alegateCert, p.alegateKey = issue(3, &x509.Certificate{
		Subject:     pkix.Name{CommonName: "alegate"},
		URIs:        []*url.URL{spiffe},
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	})
	if p.alegate, err = tls.X509KeyPair(p.alegateCert, p.alegateKey); err != nil {
		t.Fatal(err)
	}
	return p
}

// syncBuffer is a bytes.Buffer safe for one writer and concurrent readers.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// renderAlecryptd renders the kustomization in dir and returns it with
// alecryptd's container and the caller policy ConfigMap.
func renderAlecryptd(t *testing.T, dir string) (rendered, corev1.Container, *corev1.ConfigMap) {
	t.Helper()
	r := rendered{all: kustomizeBuild(t, dir)}
	d := find[appsv1.Deployment](r, "alecryptd")
	cm := find[corev1.ConfigMap](r, "alecrypt-policy")
	if d == nil || cm == nil {
		t.Fatal("no Deployment alecryptd or ConfigMap alecrypt-policy")
	}
	return r, d.Spec.Template.Spec.Containers[0], cm
}

// localArgs turns a container's arguments into ones for a local run: the
// listeners on free loopback ports, absolute paths under root (where the
// test lays out the pod's files). special sees each --name=value first and
// may replace it (its arguments, true) or leave it to these rules (false).
func localArgs(args []string, root string, special func(name, value string) ([]string, bool)) []string {
	var out []string
	for _, a := range args {
		name, value, _ := strings.Cut(strings.TrimPrefix(a, "--"), "=")
		if special != nil {
			if repl, ok := special(name, value); ok {
				out = append(out, repl...)
				continue
			}
		}
		switch {
		case name == "listen" || name == "metrics-listen":
			out = append(out, "--"+name+"=127.0.0.1:0")
		case strings.HasPrefix(value, "/"):
			out = append(out, "--"+name+"="+filepath.Join(root, value))
		default:
			out = append(out, a)
		}
	}
	return out
}
