package deploy

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"sigs.k8s.io/yaml"
)

const (
	rulesFile     = "monitoring/prometheus/alecrypt-rules.yml"
	rulesTestFile = "monitoring/prometheus/alecrypt-rules_test.yml"
	dashboardFile = "monitoring/grafana/alecrypt.json"
	provisionFile = "monitoring/grafana/provisioning/alecrypt-dashboards.yaml"
)

// promtool finds Debian's promtool (package prometheus). CI installs it, so
// there a missing promtool fails; elsewhere the test is skipped loudly.
func promtool(t *testing.T) string {
	t.Helper()
	p, err := exec.LookPath("promtool")
	if err == nil {
		return p
	}
	if os.Getenv("CI") == "true" {
		t.Fatalf("promtool is required in CI (apt-get install prometheus): %v", err)
	}
	t.Skipf("SKIPPING: promtool not found (apt-get install prometheus); CI=true would fail here")
	return ""
}

// TestAlertRules: promtool accepts the rules, and its unit tests of them
// (alerts fire on the series they are about, with these annotations) pass.
func TestAlertRules(t *testing.T) {
	pt := promtool(t)
	for _, args := range [][]string{
		{"check", "rules", filepath.Base(rulesFile)},
		{"test", "rules", filepath.Base(rulesTestFile)},
	} {
		cmd := exec.Command(pt, args...)
		cmd.Dir = filepath.Dir(rulesFile)
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Errorf("promtool %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
}

// TestAlertRulesCoverTheSignals: the rules watch every signal an operator
// must hear about, each with a severity, a summary and a description.
func TestAlertRulesCoverTheSignals(t *testing.T) {
	var doc struct {
		Groups []struct {
			Name  string `json:"name"`
			Rules []struct {
				Alert       string            `json:"alert"`
				Expr        string            `json:"expr"`
				For         string            `json:"for"`
				Labels      map[string]string `json:"labels"`
				Annotations map[string]string `json:"annotations"`
			} `json:"rules"`
		} `json:"groups"`
	}
	raw, err := os.ReadFile(rulesFile)
	if err != nil {
		t.Fatal(err)
	}
	if err := yaml.UnmarshalStrict(raw, &doc); err != nil {
		t.Fatalf("%s: %v", rulesFile, err)
	}
	exprs := map[string]string{}
	for _, g := range doc.Groups {
		for _, r := range g.Rules {
			if r.Alert == "" {
				t.Errorf("group %s: a rule without alert (recording rules belong elsewhere)", g.Name)
			}
			if s := r.Labels["severity"]; s != "warning" && s != "critical" {
				t.Errorf("%s: severity %q, want warning or critical", r.Alert, s)
			}
			if r.Annotations["summary"] == "" || r.Annotations["description"] == "" {
				t.Errorf("%s: needs a summary and a description", r.Alert)
			}
			exprs[r.Alert] = r.Expr
		}
	}
	for _, want := range []struct{ alert, metric string }{
		{"AlecryptKeystoreReloadFailing", "alecrypt_keystore_up"},
		{"AlecryptKeystoreStale", "alecrypt_keystore_age_seconds"},
		{"AlecryptKeystoreRemovalHeld", "alecrypt_keystore_removal_held"},
		{"AlecryptKeystoreInvalidRecords", "alecrypt_keystore_invalid_records"},
		{"AlecryptNoActiveKeys", "alecrypt_keys"},
		{"AlecryptAuditDown", "alecrypt_audit_up"},
		{"AlecryptAuditEntriesDropped", "alecrypt_audit_dropped_total"},
		{"AlecryptErrorRateHigh", "alecrypt_rpc_requests_total"},
		{"AlecryptLatencyHigh", "alecrypt_rpc_duration_seconds_bucket"},
		{"AlecryptInflightBytesNearLimit", "alecrypt_inflight_bytes_limit"},
		{"AlegateRefusalsHigh", "alegate_requests_total"},
		{"AlegateLatencyHigh", "alegate_request_duration_seconds_bucket"},
		{"AlesyncNoCleanRun", "alecrypt_sync_last_success_timestamp_seconds"},
	} {
		if e, ok := exprs[want.alert]; !ok || !strings.Contains(e, want.metric) {
			t.Errorf("alert %s on %s missing (expr %q)", want.alert, want.metric, e)
		}
	}
}

// dashboard is the part of Grafana's dashboard model the checks below read;
// decoding is not strict, since Grafana's model has many more fields.
type dashboard struct {
	UID           string  `json:"uid"`
	Title         string  `json:"title"`
	SchemaVersion int     `json:"schemaVersion"`
	Panels        []panel `json:"panels"`
	Templating    struct {
		List []struct {
			Name  string          `json:"name"`
			Type  string          `json:"type"`
			Query json.RawMessage `json:"query"`
		} `json:"list"`
	} `json:"templating"`
}

type panel struct {
	ID         int    `json:"id"`
	Type       string `json:"type"`
	Title      string `json:"title"`
	Datasource *struct {
		Type string `json:"type"`
		UID  string `json:"uid"`
	} `json:"datasource"`
	GridPos struct{ H, W, X, Y int } `json:"gridPos"`
	Targets []struct {
		RefID string `json:"refId"`
		Expr  string `json:"expr"`
	} `json:"targets"`
}

// TestDashboard: the dashboard is provisioning-ready (a fixed uid, its
// Prometheus data source a variable, no panel bound to a data source uid of
// some Grafana), its panels tile the grid without overlap, and every query
// is PromQL that promtool parses.
func TestDashboard(t *testing.T) {
	raw, err := os.ReadFile(dashboardFile)
	if err != nil {
		t.Fatal(err)
	}
	var d dashboard
	if err := json.Unmarshal(raw, &d); err != nil {
		t.Fatalf("%s: %v", dashboardFile, err)
	}
	if d.UID == "" || d.Title == "" || d.SchemaVersion == 0 {
		t.Errorf("uid %q, title %q, schemaVersion %d: all needed for provisioning", d.UID, d.Title, d.SchemaVersion)
	}
	vars := map[string]string{}
	for _, v := range d.Templating.List {
		vars[v.Name] = v.Type
	}
	if vars["datasource"] != "datasource" {
		t.Errorf("no datasource variable: panels must not name a data source uid of one Grafana")
	}
	ids := map[int]bool{}
	type cell struct{ x, y int }
	taken := map[cell]string{}
	var rules bytes.Buffer
	rules.WriteString("groups:\n  - name: dashboard\n    rules:\n")
	queries := 0
	for _, p := range d.Panels {
		if ids[p.ID] {
			t.Errorf("panel id %d used twice", p.ID)
		}
		ids[p.ID] = true
		g := p.GridPos
		if g.W <= 0 || g.H <= 0 || g.X < 0 || g.X+g.W > 24 {
			t.Errorf("panel %q: gridPos %+v outside the 24-column grid", p.Title, g)
		}
		for x := g.X; x < g.X+g.W; x++ {
			for y := g.Y; y < g.Y+g.H; y++ {
				if other, ok := taken[cell{x, y}]; ok {
					t.Fatalf("panels %q and %q overlap at %d,%d", other, p.Title, x, y)
				}
				taken[cell{x, y}] = p.Title
			}
		}
		if p.Type == "row" {
			continue
		}
		if p.Datasource == nil || p.Datasource.UID != "${datasource}" {
			t.Errorf("panel %q: datasource %+v, want uid ${datasource}", p.Title, p.Datasource)
		}
		refs := map[string]bool{}
		for _, tg := range p.Targets {
			if refs[tg.RefID] || tg.Expr == "" {
				t.Errorf("panel %q: refId %q repeated or query empty", p.Title, tg.RefID)
			}
			refs[tg.RefID] = true
			// Grafana's variables, as Grafana would expand them.
			e := strings.NewReplacer("$__rate_interval", "5m", "$__range", "6h",
				"$alecryptd", ".*", "$alegate", ".*", "$alesync", ".*").Replace(tg.Expr)
			if strings.Contains(e, "$") {
				t.Errorf("panel %q: unknown variable in %q", p.Title, tg.Expr)
			}
			queries++
			fmt.Fprintf(&rules, "      - record: dashboard:panel%d:%s\n        expr: %s\n", p.ID, tg.RefID, yamlQuote(e))
		}
		if len(p.Targets) == 0 {
			t.Errorf("panel %q has no query", p.Title)
		}
	}
	if queries == 0 {
		t.Fatal("no queries in the dashboard")
	}
	// promtool parses PromQL only in rule files: check every query as the
	// expression of a recording rule.
	pt := promtool(t)
	f := filepath.Join(t.TempDir(), "dashboard-queries.yml")
	if err := os.WriteFile(f, rules.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command(pt, "check", "rules", f).CombinedOutput(); err != nil {
		t.Errorf("promtool check rules on the dashboard's queries: %v\n%s", err, out)
	}
}

// yamlQuote quotes a PromQL expression as a YAML (JSON) string.
func yamlQuote(s string) string {
	b, _ := json.Marshal(s)
	return string(b)
}

// TestDashboardProvisioning: the provider file is Grafana's file provider
// and the dashboard carries the alecrypt tag it is found by.
func TestDashboardProvisioning(t *testing.T) {
	var prov struct {
		APIVersion int `json:"apiVersion"`
		Providers  []struct {
			Name                  string `json:"name"`
			Folder                string `json:"folder"`
			Type                  string `json:"type"`
			DisableDeletion       bool   `json:"disableDeletion"`
			AllowUIUpdates        bool   `json:"allowUiUpdates"`
			UpdateIntervalSeconds int    `json:"updateIntervalSeconds"`
			Options               struct {
				Path string `json:"path"`
			} `json:"options"`
		} `json:"providers"`
	}
	raw, err := os.ReadFile(provisionFile)
	if err != nil {
		t.Fatal(err)
	}
	if err := yaml.UnmarshalStrict(raw, &prov); err != nil {
		t.Fatalf("%s: %v", provisionFile, err)
	}
	if prov.APIVersion != 1 || len(prov.Providers) != 1 || prov.Providers[0].Type != "file" || !filepath.IsAbs(prov.Providers[0].Options.Path) {
		t.Fatalf("%s: %+v, want one file provider with an absolute path", provisionFile, prov)
	}
	var tags struct {
		Tags []string `json:"tags"`
	}
	b, _ := os.ReadFile(dashboardFile)
	if err := json.Unmarshal(b, &tags); err != nil || !slices.Contains(tags.Tags, "alecrypt") {
		t.Errorf("dashboard tags %v, want alecrypt", tags.Tags)
	}
}

// metricRE matches the metric names our programs export; the end-to-end
// test test/e2e/monitoring_test.go checks each one the rules and the
// dashboard use against real scrapes.
var metricRE = regexp.MustCompile(`\b(?:alecrypt|alegate)_[a-z0-9_]+`)

// TestMonitoringNamesAreMetrics guards the e2e check's premise: the names it
// extracts are metric names, not recording rules or dashboard ids.
func TestMonitoringNamesAreMetrics(t *testing.T) {
	for _, f := range []string{rulesFile, dashboardFile} {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		if n := len(metricRE.FindAll(b, -1)); n < 10 {
			t.Errorf("%s: %d metric names found, want the rules' and panels' metrics", f, n)
		}
		if bytes.Contains(b, []byte("alecrypt:")) {
			t.Errorf("%s: a recording-rule name (alecrypt:...) would escape the metric-name check", f)
		}
	}
}
