package keysync_test

import (
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/alecrypt/alecrypt/internal/keysync"
)

// TestMetricsObserve checks what one clean run and one failed run leave in
// the scrape: the counters add up and only the clean run moves the last
// success.
func TestMetricsObserve(t *testing.T) {
	t.Parallel()
	reg := prometheus.NewRegistry()
	m := keysync.NewMetrics(reg)
	clean, failed := time.Unix(1000, 0), time.Unix(2000, 0)
	m.Observe(keysync.Summary{Added: 2, Unchanged: 3}, keysync.RunOK, clean)
	m.Observe(keysync.Summary{Updated: 1, Failed: 1}, keysync.RunFailed, failed)
	got := scrape(t, reg)
	want := map[string]float64{
		`alecrypt_sync_runs_total{outcome="ok"}`:       1,
		`alecrypt_sync_runs_total{outcome="failed"}`:   1,
		`alecrypt_sync_runs_total{outcome="aborted"}`:  0,
		`alecrypt_sync_keys_total{result="added"}`:     2,
		`alecrypt_sync_keys_total{result="updated"}`:   1,
		`alecrypt_sync_keys_total{result="retired"}`:   0,
		`alecrypt_sync_keys_total{result="unchanged"}`: 3,
		`alecrypt_sync_keys_total{result="failed"}`:    1,
		`alecrypt_sync_last_run_timestamp_seconds`:     2000,
		`alecrypt_sync_last_success_timestamp_seconds`: 1000,
	}
	for name, v := range want {
		if g, ok := got[name]; !ok || g != v {
			t.Errorf("%s = %v (present %v), want %v", name, g, ok, v)
		}
	}
	if len(got) != len(want) {
		t.Errorf("scrape has %d series, want %d: %v", len(got), len(want), got)
	}
}

// scrape is reg's series as name{label="value"} to value.
func scrape(t *testing.T, reg *prometheus.Registry) map[string]float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]float64{}
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			name := mf.GetName()
			var labels []string
			for _, l := range m.GetLabel() {
				labels = append(labels, l.GetName()+`="`+l.GetValue()+`"`)
			}
			if len(labels) > 0 {
				name += "{" + strings.Join(labels, ",") + "}"
			}
			v := m.GetGauge().GetValue()
			if c := m.GetCounter(); c != nil {
				v = c.GetValue()
			}
			out[name] = v
		}
	}
	return out
}
