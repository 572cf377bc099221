package e2e

import (
	"context"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/alecrypt/alecrypt/internal/keystore/filestore"
	"github.com/alecrypt/alecrypt/test/harness"
	"github.com/alecrypt/alecrypt/test/kitchentest"
)

// exportedNames is every series name one scrape of url exposes: metric
// families, plus _bucket/_sum/_count for histograms and _sum/_count for
// summaries, as PromQL sees them.
func exportedNames(t *testing.T, url string) map[string]bool {
	t.Helper()
	parser := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := parser.TextToMetricFamilies(strings.NewReader(scrape(t, url)))
	if err != nil {
		t.Fatalf("parsing %s: %v", url, err)
	}
	out := map[string]bool{}
	for name, f := range fams {
		out[name] = true
		switch f.GetType() {
		case dto.MetricType_HISTOGRAM:
			out[name+"_bucket"], out[name+"_sum"], out[name+"_count"] = true, true, true
		case dto.MetricType_SUMMARY:
			out[name+"_sum"], out[name+"_count"] = true, true
		}
	}
	return out
}

// monitoringNameRE matches the metric names of ours (and the process
// collector's) in deploy/monitoring's rules and dashboard.
var monitoringNameRE = regexp.MustCompile(`\b(?:alecrypt|alegate|process)_[a-z0-9_]+`)

// TestMonitoringUsesRealMetrics runs alecryptd (with an audit trail and a
// held key removal), alegate (HTTP and WebSocket traffic) and alesync (on an
// interval), scrapes each, and checks that every metric name the alert
// rules and the Grafana dashboard in deploy/monitoring use is one of them
// exports: a renamed metric fails here, not silently on a dashboard.
func TestMonitoringUsesRealMetrics(t *testing.T) {
	ks := filepath.Join(t.TempDir(), "keystore.json")
	if _, err := filestore.New(ks).Import(gatewayKeys(), false); err != nil {
		t.Fatal(err)
	}
	kitchen := kitchentest.Start(t)
	crypto := harness.StartAlecryptd(t, harness.StartOptions{Keystore: ks,
		Args: []string{"--default-alias", "store-1", "--audit-log", filepath.Join(t.TempDir(), "audit.jsonl")}})
	gate := harness.StartAlegate(t, kitchen.URL, crypto.URL)
	e := &gatewayEnv{crypto: crypto, gate: gate, kitchen: kitchen}

	// alegate: one forwarded HTTP request (requests, duration, kitchen
	// responses) and one WebSocket frame each way.
	env := e.seal(t, "k-ctr", []byte(`{"order":42}`))
	req, _ := http.NewRequest(http.MethodPost, gate.URL+"/v1/orders", strings.NewReader(b64(env.Message)))
	req.Header.Set("Authorization", "Bearer pos")
	req.Header.Set("Sec-Iv", b64(env.Iv))
	req.Header.Set("Sec-Fingerprint", "k-ctr")
	req.Header.Set("Content-Type", "application/json")
	res, err := http.DefaultClient.Do(req)
	if err != nil || res.StatusCode != http.StatusOK {
		t.Fatalf("ALE request through alegate: %v %v", res, err)
	}
	res.Body.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	hs := e.seal(t, "k-ctr", nil)
	ws, _, err := websocket.Dial(ctx, wsURL(gate.URL, "/kds", url.Values{"sec-iv": {b64(hs.Iv)}, "sec-fingerprint": {"k-ctr"}, "authorization": {"Bearer kds"}}), nil)
	if err != nil {
		t.Fatalf("WebSocket through alegate: %v", err)
	}
	defer ws.CloseNow()
	fr := e.seal(t, "k-ctr", []byte(`{"ticket":1}`))
	if err := ws.Write(ctx, websocket.MessageText, []byte(`{"iv":"`+b64(fr.Iv)+`","fingerprint":"k-ctr","message":"`+b64(fr.Message)+`"}`)); err != nil {
		t.Fatal(err)
	}
	if _, _, err := ws.Read(ctx); err != nil { // the kitchen's echo, sealed
		t.Fatal(err)
	}

	// alecryptd: emptying the keystore holds the removal of every key, so
	// the held-removal series exist.
	writeAtomic(t, ks, []byte(`{"keys":[]}`))
	waitFor(t, "the removal to be held", func() bool {
		return series(t, crypto.MetricsURL)["alecrypt_keystore_removal_held{}"] > 0
	})

	// alesync on an interval, with its metrics listener.
	se := newSyncEnv(t)
	sync := harness.StartProgram(t, "alesync", []string{"--interval", "1s", "--metrics-listen", "127.0.0.1:0", "--allow-empty-portal",
		"--portal-url", se.portal.URL, "--portal-token-file", se.tokenFile, "--portal-ca", se.portal.CAFile},
		append(se.vault.Env(se.syncToken), "ALESYNC_PORTAL_TOKEN=", "ALESYNC_METRICS_LISTEN="), "metrics listening", false)
	waitFor(t, "an alesync run", func() bool {
		return series(t, sync.URL+"/metrics")["alecrypt_sync_last_run_timestamp_seconds{}"] > 0
	})

	exported := map[string][]string{}
	for prog, u := range map[string]string{"alecryptd": crypto.MetricsURL, "alegate": gate.MetricsURL, "alesync": sync.URL + "/metrics"} {
		for name := range exportedNames(t, u) {
			exported[name] = append(exported[name], prog)
		}
	}
	for _, f := range []string{"deploy/monitoring/prometheus/alecrypt-rules.yml", "deploy/monitoring/grafana/alecrypt.json"} {
		b, err := os.ReadFile(filepath.Join(harness.RepoRoot(), f))
		if err != nil {
			t.Fatal(err)
		}
		used := slices.Compact(slices.Sorted(slices.Values(monitoringNameRE.FindAllString(string(b), -1))))
		if len(used) < 10 {
			t.Fatalf("%s: only %d metric names found: %v", f, len(used), used)
		}
		for _, name := range used {
			if len(exported[name]) == 0 {
				t.Errorf("%s uses %s, which none of alecryptd, alegate, alesync exports", f, name)
			}
		}
	}
}
