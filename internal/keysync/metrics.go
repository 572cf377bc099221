package keysync

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Metrics are alesync's Prometheus metrics, an Observer: runs by outcome,
// keys by result, and when the last run and the last clean run finished. An
// operator alerts on the age of the last clean run. They live here, beside
// the run they count, so that the shared metrics package links no sync or
// Portal code into the daemons that do not sync.
type Metrics struct {
	runs        *prometheus.CounterVec
	keys        *prometheus.CounterVec
	lastRun     prometheus.Gauge
	lastSuccess prometheus.Gauge
}

var _ Observer = (*Metrics)(nil)

// NewMetrics registers alesync's metrics on reg.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	s := &Metrics{
		runs: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "alecrypt_sync_runs_total", Help: "Sync runs, by outcome (ok, failed, aborted).",
		}, []string{"outcome"}),
		keys: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "alecrypt_sync_keys_total", Help: "Keys handled by sync runs, by result (added, updated, retired, unchanged, failed).",
		}, []string{"result"}),
		lastRun: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "alecrypt_sync_last_run_timestamp_seconds", Help: "Unix time the last sync run ended.",
		}),
		lastSuccess: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "alecrypt_sync_last_success_timestamp_seconds", Help: "Unix time the last clean sync run ended.",
		}),
	}
	for _, o := range []RunOutcome{RunOK, RunFailed, RunAborted} {
		s.runs.WithLabelValues(string(o))
	}
	for _, r := range []string{"added", "updated", "retired", "unchanged", "failed"} {
		s.keys.WithLabelValues(r)
	}
	reg.MustRegister(s.runs, s.keys, s.lastRun, s.lastSuccess)
	return s
}

// Observe implements Observer: it records one run.
func (s *Metrics) Observe(c Summary, outcome RunOutcome, at time.Time) {
	s.runs.WithLabelValues(string(outcome)).Inc()
	for r, n := range map[string]int{"added": c.Added, "updated": c.Updated, "retired": c.Retired, "unchanged": c.Unchanged, "failed": c.Failed} {
		s.keys.WithLabelValues(r).Add(float64(n))
	}
	ts := float64(at.UnixNano()) / 1e9
	s.lastRun.Set(ts)
	if outcome == RunOK {
		s.lastSuccess.Set(ts)
	}
}
