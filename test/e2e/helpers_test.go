package e2e

// Helpers shared by the end-to-end tests. Each test file keeps what only it
// uses (its environment's start function, say); what two files need lives
// here.

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"connectrpc.com/connect"
	vaultapi "github.com/hashicorp/vault/api"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	alev1 "github.com/alecrypt/alecrypt/gen/ale/v1"
	"github.com/alecrypt/alecrypt/gen/ale/v1/alev1connect"
	"github.com/alecrypt/alecrypt/internal/key"
	"github.com/alecrypt/alecrypt/internal/key/keytest"
	"github.com/alecrypt/alecrypt/test/harness"
)

// addKey writes a key with a known secret into a keystore with alectl, the
// way an operator imports a Portal key. The secret goes through a file, never
// a flag or the test log.
func addKey(t *testing.T, keystore, fingerprint, alias, secret, salt string, iterations int) {
	t.Helper()
	bin := harness.Binaries(t)
	secretFile := filepath.Join(t.TempDir(), "secret")
	if err := os.WriteFile(secretFile, []byte(secret+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	out, errOut, code := harness.Run(t, "", nil, filepath.Join(bin, "alectl"), "keys", "add", "--create",
		"--keystore", keystore, "--alias", alias, "--fingerprint", fingerprint,
		"--secret-file", secretFile, "--salt", salt, "--iterations", strconv.Itoa(iterations))
	if code != 0 {
		t.Fatalf("alectl keys add: exit %d: %s%s", code, out, errOut)
	}
}

func alectl(t *testing.T, svc *harness.Service, stdin string, args ...string) (string, string, int) {
	t.Helper()
	return harness.Run(t, stdin, []string{"ALECRYPT_ADDR=" + svc.URL, "ALECRYPT_KEYSTORE=" + svc.Keystore},
		filepath.Join(harness.Binaries(t), "alectl"), args...)
}

func mustAlectl(t *testing.T, svc *harness.Service, stdin string, args ...string) string {
	t.Helper()
	out, errOut, code := alectl(t, svc, stdin, args...)
	if code != 0 {
		t.Fatalf("alectl %s: exit %d\n%s%s", strings.Join(args, " "), code, out, errOut)
	}
	return out
}

func writeAtomic(t *testing.T, path string, data []byte) {
	t.Helper()
	tmp := path + ".test-tmp"
	if err := os.WriteFile(tmp, data, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// runNodeScript runs test/node/<name>.mjs and checks it passed every check,
// at least 10 of them, and printed its summary line.
func runNodeScript(t *testing.T, node, name string, env []string) (stdout, stderr string) {
	t.Helper()
	out, errOut, code := harness.Run(t, "", env, node, filepath.Join(harness.RepoRoot(), "test", "node", name+".mjs"))
	t.Logf("%s.mjs output:\n%s%s", name, out, errOut)
	if code != 0 {
		t.Fatalf("%s.mjs exit %d", name, code)
	}
	m := regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(name) + `: (\d+) checks passed$`).FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("%s.mjs printed no summary line", name)
	}
	if n, _ := strconv.Atoi(m[1]); n < 10 {
		t.Fatalf("%s.mjs ran %d checks, want at least 10", name, n)
	}
	if strings.Contains(out, "FAIL") {
		t.Fatalf("%s.mjs reported a failed check but exited 0", name)
	}
	return out, errOut
}

func b64(b []byte) string { return base64.StdEncoding.EncodeToString(b) }

func wsURL(base, path string, q url.Values) string {
	u := strings.Replace(base, "http://", "ws://", 1) + path
	if len(q) > 0 {
		u += "?" + q.Encode()
	}
	return u
}

// readyz returns the /readyz status and body next to a service's metrics.
func readyz(t *testing.T, svc *harness.Service) (int, string) {
	t.Helper()
	res, err := http.Get(strings.TrimSuffix(svc.MetricsURL, "/metrics") + "/readyz")
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	return res.StatusCode, string(b)
}

// series flattens a scrape into "name{label=value,...}" → value, counting
// histograms by their sample count.
func series(t *testing.T, url string) map[string]float64 {
	t.Helper()
	parser := expfmt.NewTextParser(model.UTF8Validation)
	families, err := parser.TextToMetricFamilies(strings.NewReader(scrape(t, url)))
	if err != nil {
		t.Fatalf("parsing /metrics: %v", err)
	}
	out := map[string]float64{}
	for name, fam := range families {
		for _, m := range fam.GetMetric() {
			var labels []string
			for _, l := range m.GetLabel() {
				labels = append(labels, l.GetName()+"="+l.GetValue())
			}
			k := name + "{" + strings.Join(labels, ",") + "}"
			switch fam.GetType() {
			case dto.MetricType_COUNTER:
				out[k] = m.GetCounter().GetValue()
			case dto.MetricType_GAUGE:
				out[k] = m.GetGauge().GetValue()
			case dto.MetricType_HISTOGRAM:
				out[k] = float64(m.GetHistogram().GetSampleCount())
			case dto.MetricType_SUMMARY:
				out[k] = float64(m.GetSummary().GetSampleCount())
			}
		}
	}
	return out
}

// requireNodeModules checks that node_modules holds exactly the versions
// package-lock.json pins for the root package.json's devDependencies. Like a
// missing tool, a missing or stale install fails under CI=true and skips,
// loudly, elsewhere.
func requireNodeModules(t *testing.T) {
	t.Helper()
	root := harness.RepoRoot()
	fail := func(msg string) {
		t.Helper()
		if os.Getenv("CI") == "true" {
			t.Fatal(msg)
		}
		t.Skip("SKIPPING: " + msg + "; CI=true would fail here")
	}
	if _, err := os.Stat(filepath.Join(root, "node_modules")); err != nil {
		fail("node_modules is missing: run `" + npmInstall + "` in " + root)
	}
	var pkg struct {
		DevDependencies map[string]string `json:"devDependencies"`
	}
	var lock struct {
		Packages map[string]struct {
			Version string `json:"version"`
		} `json:"packages"`
	}
	for name, v := range map[string]any{"package.json": &pkg, "package-lock.json": &lock} {
		data, err := os.ReadFile(filepath.Join(root, name))
		if err != nil {
			t.Fatal(err)
		}
		if err := json.Unmarshal(data, v); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
	}
	var problems []string
	for name := range pkg.DevDependencies {
		want := lock.Packages["node_modules/"+name].Version
		var installed struct {
			Version string `json:"version"`
		}
		data, err := os.ReadFile(filepath.Join(root, "node_modules", name, "package.json"))
		if err == nil {
			err = json.Unmarshal(data, &installed)
		}
		switch {
		case err != nil:
			problems = append(problems, name+" is not installed")
		case installed.Version != want:
			problems = append(problems, name+"@"+installed.Version+" is installed, package-lock.json pins "+want)
		}
	}
	// The workspace link that lets test/node import the package by name.
	if _, err := os.Stat(filepath.Join(root, "node_modules", "@alecrypt", "ale-client", "package.json")); err != nil {
		problems = append(problems, "@alecrypt/ale-client (workspace clients/ts) is not linked")
	}
	if len(problems) == 0 {
		return
	}
	sort.Strings(problems)
	fail("node_modules does not match package-lock.json (" + strings.Join(problems, "; ") + "): run `" + npmInstall + "` in " + root)
}

// policyToken installs deploy/vault/<name>.hcl as a policy on v and returns a
// token holding only that policy (plus Vault's default).
func policyToken(t *testing.T, v *harness.Vault, name string) string {
	t.Helper()
	root := v.Client(t, harness.VaultRootToken)
	hcl, err := os.ReadFile(filepath.Join(harness.RepoRoot(), "deploy", "vault", name+".hcl"))
	if err != nil {
		t.Fatal(err)
	}
	if err := root.Sys().PutPolicy(name, string(hcl)); err != nil {
		t.Fatalf("PutPolicy %s: %v", name, err)
	}
	sec, err := root.Auth().Token().Create(&vaultapi.TokenCreateRequest{Policies: []string{name}, TTL: "1h"})
	if err != nil {
		t.Fatalf("token create: %v", err)
	}
	return sec.Auth.ClientToken
}

func testKey(fp, alias, secretText string, created time.Time) key.Record {
	return keytest.Record(fp, keytest.Aliases(alias), keytest.Secret(secretText), keytest.CounterBits(key.CounterBits64),
		keytest.CreatedAt(created), keytest.Source(key.SourcePortal))
}

// load is traffic on the default key: 4 clients each doing Encrypt then
// Decrypt (with a JSON check) in a loop, counting pairs that worked or not.
type load struct {
	ok, failed atomic.Int64
	done       chan struct{}
	wg         sync.WaitGroup
}

func startLoad(client alev1connect.CryptoServiceClient) *load {
	l := &load{done: make(chan struct{})}
	ctx := context.Background()
	for range 4 {
		l.wg.Go(func() {
			for {
				select {
				case <-l.done:
					return
				default:
				}
				enc, err := client.Encrypt(ctx, connect.NewRequest(&alev1.EncryptRequest{Plaintext: []byte(`{"n":1}`)}))
				if err == nil {
					_, err = client.Decrypt(ctx, connect.NewRequest(&alev1.DecryptRequest{Envelope: enc.Msg.GetEnvelope(), Expect: alev1.PlaintextFormat_PLAINTEXT_FORMAT_JSON}))
				}
				if err != nil {
					l.failed.Add(1)
				} else {
					l.ok.Add(1)
				}
			}
		})
	}
	return l
}

func newCryptoClient(url string) alev1connect.CryptoServiceClient {
	return alev1connect.NewCryptoServiceClient(http.DefaultClient, url)
}

func resolveFP(t *testing.T, c alev1connect.CryptoServiceClient, alias string) string {
	t.Helper()
	res, err := c.Resolve(context.Background(), connect.NewRequest(&alev1.ResolveRequest{Key: &alev1.KeyRef{Ref: &alev1.KeyRef_Alias{Alias: alias}}}))
	if err != nil {
		return ""
	}
	return res.Msg.GetKey().GetFingerprint()
}

// health asks grpc.health.v1 over the Connect protocol's JSON form.
func health(t *testing.T, base string) string {
	t.Helper()
	res, err := http.Post(base+"/grpc.health.v1.Health/Check", "application/json", bytes.NewReader([]byte(`{}`)))
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	var out struct{ Status string }
	_ = json.NewDecoder(res.Body).Decode(&out)
	return out.Status
}

func scrape(t *testing.T, url string) string {
	t.Helper()
	if url == "" {
		t.Fatal("no metrics URL")
	}
	res, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	return string(b)
}

func grep(s, sub string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, sub) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

// stop ends the traffic and returns its counts.
func (l *load) stop() (ok, failed int64) {
	close(l.done)
	l.wg.Wait()
	return l.ok.Load(), l.failed.Load()
}
