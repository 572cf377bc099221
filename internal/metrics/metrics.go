// Package metrics owns alecrypt's Prometheus metrics: the registry, the
// collectors that read the keyring, the keystore refresher and the audit
// trail at scrape time (through small interfaces, so a program that does not
// hold keys links no keyring), and the /metrics, /healthz and /readyz
// listener. A daemon's own metrics live with the daemon's domain package
// (gateway.Metrics, keysync.Metrics), so importing this package links no
// gateway or sync code.
//
// Labels are states and outcomes only, with one exception: the key usage
// metrics (RegisterKeyUsage) are labelled by fingerprint, the public name of
// a key. Key material never reaches a scrape.
package metrics

import (
	"fmt"
	"net"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/alecrypt/alecrypt/internal/key"
)

// NewRegistry returns a registry with the Go runtime and process collectors.
func NewRegistry() *prometheus.Registry {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return reg
}

// handler serves the registry in the Prometheus exposition format.
func handler(reg *prometheus.Registry) http.Handler {
	return promhttp.HandlerFor(reg, promhttp.HandlerOpts{Registry: reg})
}

// KeystoreStatus is what the keystore collector reads at scrape time.
type KeystoreStatus interface {
	Status() (lastOK time.Time, lastErr error)
	Failures() int64
	// InvalidRecords is how many entries the last load skipped as invalid.
	InvalidRecords() int
	// HeldRemoval is how many keys are still served although the store no
	// longer has them, awaiting confirmation, and since when.
	HeldRemoval() (keys int, since time.Time)
}

// KeyCounter is what the keystore collector counts keys with at scrape time:
// the keyring (*keyring.Ring) in alecryptd.
type KeyCounter interface {
	// CountByState counts the keys served in each state.
	CountByState() map[key.State]int
}

// RegisterKeystore adds the keystore metrics: keys loaded by state, when the
// keys were last confirmed current and how stale they are, whether the last
// refresh worked, and failed refreshes. Staleness is what an operator alerts
// on while Vault is down and the service serves its last good keys.
func RegisterKeystore(reg prometheus.Registerer, keys KeyCounter, status KeystoreStatus, now func() time.Time) {
	reg.MustRegister(&keystoreCollector{keys: keys, status: status, now: now})
}

var (
	keysDesc = prometheus.NewDesc("alecrypt_keys", "Keys loaded, by state.", []string{"state"}, nil)
	lastDesc = prometheus.NewDesc("alecrypt_keystore_last_success_timestamp_seconds",
		"Unix time the keys were last loaded or confirmed current.", nil, nil)
	ageDesc = prometheus.NewDesc("alecrypt_keystore_age_seconds",
		"Seconds since the keys were last loaded or confirmed current (staleness).", nil, nil)
	upDesc = prometheus.NewDesc("alecrypt_keystore_up",
		"1 if the last keystore refresh succeeded, 0 if the service is serving its last good keys.", nil, nil)
	failDesc = prometheus.NewDesc("alecrypt_keystore_refresh_failures_total",
		"Keystore refreshes that failed since start.", nil, nil)
	invalidDesc = prometheus.NewDesc("alecrypt_keystore_invalid_records",
		"Entries of the keystore skipped as invalid by the last load; every other key is served.", nil, nil)
	heldDesc = prometheus.NewDesc("alecrypt_keystore_removal_held",
		"Keys still served although the keystore no longer has them: a removal over the allowed share, held until confirmed.", nil, nil)
	heldSinceDesc = prometheus.NewDesc("alecrypt_keystore_removal_held_since_timestamp_seconds",
		"Unix time the held removal was first seen; absent when none is held.", nil, nil)
)

type keystoreCollector struct {
	keys   KeyCounter
	status KeystoreStatus
	now    func() time.Time
}

func (c *keystoreCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{keysDesc, lastDesc, ageDesc, upDesc, failDesc, invalidDesc, heldDesc, heldSinceDesc} {
		ch <- d
	}
}

func (c *keystoreCollector) Collect(ch chan<- prometheus.Metric) {
	counts := map[key.State]int{key.Active: 0, key.DecryptOnly: 0, key.Disabled: 0}
	for state, n := range c.keys.CountByState() {
		counts[state] = n
	}
	for state, n := range counts {
		ch <- prometheus.MustNewConstMetric(keysDesc, prometheus.GaugeValue, float64(n), string(state))
	}
	lastOK, lastErr := c.status.Status()
	up := 1.0
	if lastErr != nil {
		up = 0
	}
	ch <- prometheus.MustNewConstMetric(upDesc, prometheus.GaugeValue, up)
	ch <- prometheus.MustNewConstMetric(failDesc, prometheus.CounterValue, float64(c.status.Failures()))
	ch <- prometheus.MustNewConstMetric(invalidDesc, prometheus.GaugeValue, float64(c.status.InvalidRecords()))
	held, since := c.status.HeldRemoval()
	ch <- prometheus.MustNewConstMetric(heldDesc, prometheus.GaugeValue, float64(held))
	if held > 0 {
		ch <- prometheus.MustNewConstMetric(heldSinceDesc, prometheus.GaugeValue, float64(since.UnixNano())/1e9)
	}
	if !lastOK.IsZero() {
		ch <- prometheus.MustNewConstMetric(lastDesc, prometheus.GaugeValue, float64(lastOK.UnixNano())/1e9)
		ch <- prometheus.MustNewConstMetric(ageDesc, prometheus.GaugeValue, c.now().Sub(lastOK).Seconds())
	}
}

var (
	keyOpsDesc = prometheus.NewDesc("alecrypt_key_operations_total",
		"Successful operations with a key on this replica since it started, by fingerprint and operation (encrypt, decrypt). Only keys loaded now and used since start appear.",
		[]string{"fingerprint", "operation"}, nil)
	keyLastDesc = prometheus.NewDesc("alecrypt_key_last_used_timestamp_seconds",
		"Unix time (millisecond resolution) a key last succeeded at an operation on this replica, by fingerprint and operation; absent if it has not since start.",
		[]string{"fingerprint", "operation"}, nil)
)

// RegisterKeyUsage adds each key's usage counters, read from the keyring at
// scrape time, so counting costs the hot path one atomic add and nothing
// here. Summed over replicas they are the fleet's view of whether a retired
// key is still used.
//
// Fingerprints as label values are acceptable here, and only here: they
// are public identifiers (sent in clear with every ALE message, already in
// the audit trail), valid label values by construction (key.ValidateFingerprint:
// at most 256 characters from a small ASCII set), and the number of series is
// bounded by the keys the operator loaded, never by callers: only successful
// operations on loaded keys count, so an unknown fingerprint in a request
// creates nothing. Keys not used since start add no series. Deployments with
// very many keys can drop the two metrics with a metric_relabel_configs rule.
func RegisterKeyUsage(reg prometheus.Registerer, keys KeyUsageSource) {
	reg.MustRegister(&keyUsageCollector{keys: keys})
}

// KeyUsageSource is what the key usage collector reads at scrape time (the
// keyring, in alecryptd).
type KeyUsageSource interface {
	// EachUsage calls fn for every key served, with its successful
	// operations in this process and when it last did each (zero: never).
	EachUsage(fn func(fingerprint string, encrypts, decrypts uint64, lastEncrypt, lastDecrypt time.Time))
}

type keyUsageCollector struct{ keys KeyUsageSource }

func (c *keyUsageCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- keyOpsDesc
	ch <- keyLastDesc
}

func (c *keyUsageCollector) Collect(ch chan<- prometheus.Metric) {
	c.keys.EachUsage(func(fp string, encrypts, decrypts uint64, lastEncrypt, lastDecrypt time.Time) {
		for _, op := range []struct {
			name  string
			count uint64
			last  time.Time
		}{{"encrypt", encrypts, lastEncrypt}, {"decrypt", decrypts, lastDecrypt}} {
			if op.count == 0 {
				continue
			}
			ch <- prometheus.MustNewConstMetric(keyOpsDesc, prometheus.CounterValue, float64(op.count), fp, op.name)
			if !op.last.IsZero() {
				ch <- prometheus.MustNewConstMetric(keyLastDesc, prometheus.GaugeValue, float64(op.last.UnixMilli())/1e3, fp, op.name)
			}
		}
	})
}

// AuditStatus is what the audit collector reads.
type AuditStatus interface {
	Failures() int64
	Dropped() int64
	Healthy() bool
	// Chained and HeadSeq: whether lines are chained, and the seq of the
	// newest chained line written.
	Chained() bool
	HeadSeq() uint64
}

// RegisterAudit adds the audit trail's health: entries whose write failed,
// entries lost for good, and whether every entry so far is written; and,
// for a chained trail, the chain head's seq. The head's link is left to the
// log (a label changing on every call would make a series per call); the seq
// alone shows a tail removed from the trail, the logged link also one
// removed and written again.
func RegisterAudit(reg prometheus.Registerer, a AuditStatus) {
	if a.Chained() {
		reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "alecrypt_audit_chain_seq",
			Help: "Sequence number of the newest chained audit line written: the trail must reach it (alectl audit verify --head SEQ)."},
			func() float64 { return float64(a.HeadSeq()) }))
	}
	reg.MustRegister(
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "alecrypt_audit_write_failures_total",
			Help: "Audit entries that could not be written when they happened (held for a retry, or dropped)."}, func() float64 { return float64(a.Failures()) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "alecrypt_audit_dropped_total",
			Help: "Audit entries lost because too many were already held waiting for the trail to take writes."}, func() float64 { return float64(a.Dropped()) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "alecrypt_audit_up",
			Help: "1 if every audit entry so far is written (none is held)."}, func() float64 {
			if a.Healthy() {
				return 1
			}
			return 0
		}),
	)
}

// ServeOption configures Serve.
type ServeOption func(*serveOptions)

type serveOptions struct {
	detail func() []string
}

// WithReadyDetail adds detail's lines to the /readyz body, whatever the
// status: conditions an operator should see (a held key removal, say) that
// must not take the replica out of rotation.
func WithReadyDetail(detail func() []string) ServeOption {
	return func(o *serveOptions) { o.detail = detail }
}

// Serve starts serving reg on /metrics at addr (host:port; port 0 picks
// one) and returns the server and the address it listens on. With ready,
// it also serves /readyz: 200 while ready reports true, 503 otherwise, for
// probes that cannot speak gRPC health over TLS, and /healthz: 200 while the
// process serves at all (liveness). Serve errors after startup
// go to errc when it is not nil.
func Serve(addr string, reg *prometheus.Registry, ready func() bool, errc chan<- error, opts ...ServeOption) (*http.Server, net.Addr, error) {
	var o serveOptions
	for _, opt := range opts {
		opt(&o)
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, nil, fmt.Errorf("metrics listener: %w", err)
	}
	mux := http.NewServeMux()
	mux.Handle("/metrics", handler(reg))
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("ok\n")) })
	if ready != nil {
		mux.HandleFunc("/readyz", func(w http.ResponseWriter, _ *http.Request) {
			ok := ready()
			body := "ok\n"
			if !ok {
				body = "not serving\n"
			}
			if o.detail != nil {
				for _, line := range o.detail() {
					body += line + "\n"
				}
			}
			w.Header().Set("Content-Type", "text/plain; charset=utf-8")
			w.Header().Set("X-Content-Type-Options", "nosniff")
			if !ok {
				w.WriteHeader(http.StatusServiceUnavailable)
			}
			_, _ = w.Write([]byte(body))
		})
	}
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go func() {
		if err := srv.Serve(ln); err != nil && err != http.ErrServerClosed && errc != nil {
			errc <- err
		}
	}()
	return srv, ln.Addr(), nil
}
