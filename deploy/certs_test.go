package deploy

import (
	"crypto/x509"
	"encoding/pem"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
)

// cert-manager's v1 Certificate and Issuer, as far as deploy/k8s uses them:
// the strict decoder refuses any field not declared here, so a misspelt
// field fails the tests as the API server would refuse it.
type (
	cmIssuerRef struct {
		Name  string `json:"name"`
		Kind  string `json:"kind"`
		Group string `json:"group"`
	}
	cmPrivateKey struct {
		Algorithm      string `json:"algorithm,omitempty"`
		Size           int    `json:"size,omitempty"`
		RotationPolicy string `json:"rotationPolicy,omitempty"`
	}
	cmCertificate struct {
		metav1.TypeMeta   `json:",inline"`
		metav1.ObjectMeta `json:"metadata"`
		Spec              struct {
			SecretName  string        `json:"secretName"`
			CommonName  string        `json:"commonName,omitempty"`
			DNSNames    []string      `json:"dnsNames,omitempty"`
			URIs        []string      `json:"uris,omitempty"`
			IsCA        bool          `json:"isCA,omitempty"`
			Usages      []string      `json:"usages,omitempty"`
			Duration    string        `json:"duration,omitempty"`
			RenewBefore string        `json:"renewBefore,omitempty"`
			PrivateKey  *cmPrivateKey `json:"privateKey,omitempty"`
			IssuerRef   cmIssuerRef   `json:"issuerRef"`
		} `json:"spec"`
	}
	cmIssuer struct {
		metav1.TypeMeta   `json:",inline"`
		metav1.ObjectMeta `json:"metadata"`
		Spec              struct {
			SelfSigned *struct{} `json:"selfSigned,omitempty"`
			CA         *struct {
				SecretName string `json:"secretName"`
			} `json:"ca,omitempty"`
		} `json:"spec"`
	}
)

var cmGroupVersion = schema.GroupVersion{Group: "cert-manager.io", Version: "v1"}

func init() {
	apiTypes[cmGroupVersion.WithKind("Certificate")] = func() any { return new(cmCertificate) }
	apiTypes[cmGroupVersion.WithKind("Issuer")] = func() any { return new(cmIssuer) }
}

// certManagerObjects is what k8s/overlays/cert-manager adds to the base.
var certManagerObjects = []string{
	"Certificate alecrypt/alecrypt-internal-ca",
	"Certificate alecrypt/alecryptd-tls",
	"Certificate alecrypt/alegate-crypto-client",
	"Certificate alecrypt/alegate-tls",
	"Issuer alecrypt/alecrypt-internal-ca",
	"Issuer alecrypt/alecrypt-selfsigned",
}

// wantCerts is what each certificate the base mounts must be valid for,
// derived from the manifests: alecryptd's for the host alegate dials
// (--crypto) and its Service's names, alegate's client certificate for
// the identity the caller policy gives alegate, alegate's own for its
// Service's names.
type wantCert struct {
	secret   string // the Secret the base mounts it from
	dnsNames []string
	uri      string
	usage    x509.ExtKeyUsage
}

func wantCerts(t *testing.T, r rendered) []wantCert {
	t.Helper()
	gate := find[appsv1.Deployment](r, "alegate")
	if gate == nil {
		t.Fatal("no Deployment alegate")
	}
	args := argMap(gate.Spec.Template.Spec.Containers[0].Args)
	crypto, err := url.Parse(args["crypto"])
	if err != nil || crypto.Hostname() == "" {
		t.Fatalf("alegate --crypto = %q: %v", args["crypto"], err)
	}
	svcNames := func(name string) []string {
		return []string{name, name + "." + ns + ".svc", name + "." + ns + ".svc.cluster.local"}
	}
	cryptoNames := svcNames("alecryptd")
	if !slices.Contains(cryptoNames, crypto.Hostname()) {
		cryptoNames = append(cryptoNames, crypto.Hostname())
	}
	return []wantCert{
		{secret: "alecryptd-tls", dnsNames: cryptoNames, usage: x509.ExtKeyUsageServerAuth},
		{secret: "alegate-crypto-client", uri: "spiffe://alecrypt/alegate", usage: x509.ExtKeyUsageClientAuth},
		{secret: "alegate-tls", dnsNames: svcNames("alegate"), usage: x509.ExtKeyUsageServerAuth},
	}
}

// TestCertManagerOverlay: the cert-manager overlay issues every certificate
// the base mounts, under the Secret name it mounts, valid for the names the
// manifests use, from an internal CA whose Issuer chain resolves within the
// overlay; alegate's client certificate carries the identity the caller
// policy allows.
func TestCertManagerOverlay(t *testing.T) {
	dir := filepath.Join(k8sDir, "overlays", "cert-manager")
	r := rendered{dir: dir, all: kustomizeBuild(t, dir)}
	certs := map[string]*cmCertificate{}
	for _, c := range all[cmCertificate](r) {
		certs[c.Spec.SecretName] = c
	}
	issuers := map[string]*cmIssuer{}
	for _, i := range all[cmIssuer](r) {
		issuers[i.Name] = i
	}
	if p := string(mustRead(t, filepath.Join(baseDir, "policy.json"))); !strings.Contains(p, `"spiffe://alecrypt/alegate"`) {
		t.Fatalf("policy.json names no spiffe://alecrypt/alegate caller")
	}
	usage := map[x509.ExtKeyUsage]string{x509.ExtKeyUsageServerAuth: "server auth", x509.ExtKeyUsageClientAuth: "client auth"}
	for _, w := range wantCerts(t, r) {
		c := certs[w.secret]
		if c == nil {
			t.Errorf("no Certificate with secretName %s", w.secret)
			continue
		}
		for _, n := range w.dnsNames {
			if !slices.Contains(c.Spec.DNSNames, n) {
				t.Errorf("Certificate %s: dnsNames %q lack %s", c.Name, c.Spec.DNSNames, n)
			}
		}
		if w.uri != "" && (len(c.Spec.URIs) == 0 || c.Spec.URIs[0] != w.uri) {
			t.Errorf("Certificate %s: uris %q, want %s first (its identity)", c.Name, c.Spec.URIs, w.uri)
		}
		if !slices.Equal(c.Spec.Usages, []string{usage[w.usage]}) {
			t.Errorf("Certificate %s: usages %q, want [%s]", c.Name, c.Spec.Usages, usage[w.usage])
		}
		// The chain: a CA Issuer whose Secret a CA Certificate fills, signed
		// by a self-signed Issuer.
		is := issuers[c.Spec.IssuerRef.Name]
		if c.Spec.IssuerRef.Kind != "Issuer" || is == nil || is.Spec.CA == nil {
			t.Errorf("Certificate %s: issuerRef %+v is not a CA Issuer of the overlay", c.Name, c.Spec.IssuerRef)
			continue
		}
		ca := certs[is.Spec.CA.SecretName]
		if ca == nil || !ca.Spec.IsCA || issuers[ca.Spec.IssuerRef.Name] == nil || issuers[ca.Spec.IssuerRef.Name].Spec.SelfSigned == nil {
			t.Errorf("Issuer %s: its CA Secret %s is not filled by a self-signed CA Certificate", is.Name, is.Spec.CA.SecretName)
		}
	}
}

// TestOpenSSLCommands runs deploy/README.md's openssl block, as written, in
// an empty directory, and checks that each certificate it makes chains to
// its CA and is valid for the names the manifests use, with the identity the
// caller policy allows.
func TestOpenSSLCommands(t *testing.T) {
	for _, tool := range []string{"openssl", "bash"} {
		if _, err := exec.LookPath(tool); err != nil {
			if os.Getenv("CI") == "true" {
				t.Fatalf("%s is required in CI: %v", tool, err)
			}
			t.Skipf("SKIPPING: %s not found (%v); CI=true would fail here", tool, err)
		}
	}
	m := regexp.MustCompile("(?s)<!-- deploy-test: openssl -->\n```sh\n(.*?)```").FindSubmatch(mustRead(t, "README.md"))
	if m == nil {
		t.Fatal("deploy/README.md has no block marked deploy-test: openssl")
	}
	dir := t.TempDir()
	cmd := exec.Command("bash", "-euo", "pipefail", "-c", string(m[1]))
	cmd.Dir = dir
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("the openssl block failed: %v\n%s", err, out)
	}
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM(mustRead(t, filepath.Join(dir, "internal-ca.crt"))) {
		t.Fatal("internal-ca.crt holds no certificate")
	}
	// The files the README's kubectl create secret commands read.
	files := map[string]string{"alecryptd-tls": "alecryptd.crt", "alegate-crypto-client": "alegate-client.crt", "alegate-tls": "alegate.crt"}
	r := rendered{dir: baseDir, all: kustomizeBuild(t, baseDir)}
	for _, w := range wantCerts(t, r) {
		cert := parseCert(t, filepath.Join(dir, files[w.secret]))
		if _, err := os.Stat(filepath.Join(dir, strings.TrimSuffix(files[w.secret], ".crt")+".key")); err != nil {
			t.Errorf("%s: no key beside it: %v", files[w.secret], err)
		}
		names := w.dnsNames
		if len(names) == 0 {
			names = []string{""}
		}
		for _, n := range names {
			if _, err := cert.Verify(x509.VerifyOptions{Roots: roots, DNSName: n, KeyUsages: []x509.ExtKeyUsage{w.usage}}); err != nil {
				t.Errorf("%s for %q: %v", files[w.secret], n, err)
			}
		}
		if w.uri != "" && (len(cert.URIs) == 0 || cert.URIs[0].String() != w.uri) {
			t.Errorf("%s: URI SANs %v, want %s first (its identity)", files[w.secret], cert.URIs, w.uri)
		}
	}
}

func parseCert(t *testing.T, path string) *x509.Certificate {
	t.Helper()
	b, _ := pem.Decode(mustRead(t, path))
	if b == nil {
		t.Fatalf("%s: no PEM block", path)
	}
	c, err := x509.ParseCertificate(b.Bytes)
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return c
}

func mustRead(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// argMap reads a container's --name=value arguments.
func argMap(args []string) map[string]string {
	m := map[string]string{}
	for _, a := range args {
		name, value, _ := strings.Cut(strings.TrimPrefix(a, "--"), "=")
		m[name] = value
	}
	return m
}
