package gateway

import (
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Outcomes of a request, handshake or frame: the label values of
// alegate_requests_total and alegate_frames_total. Never a fingerprint, a
// path or a payload.
const (
	outcomeForwarded     = "forwarded"
	outcomeALE1          = "ale_1"
	outcomeALE2          = "ale_2"
	outcomeTooLarge      = "too_large"
	outcomeUpstreamError = "upstream_error"
	outcomeCryptoError   = "crypto_error"
	outcomeOrigin        = "origin_refused"
	outcomeBadHandshake  = "bad_handshake"
	outcomePreflight     = "preflight"
	outcomeTimeout       = "timeout"
	// A message whose (fingerprint, IV) was seen within --replay-window
	// (answered errorCode 2), and one refused because the replay store
	// could not tell (full or unreachable).
	outcomeReplay            = "replay"
	outcomeReplayUnavailable = "replay_unavailable"
)

const (
	kindHTTP      = "http"
	kindWebSocket = "websocket"
)

// Metrics are alegate's Prometheus metrics. A nil *Metrics records nothing.
type Metrics struct {
	requests   *prometheus.CounterVec
	frames     *prometheus.CounterVec
	duration   *prometheus.HistogramVec
	open       prometheus.Gauge
	upstream   *prometheus.CounterVec
	batchItems prometheus.Histogram
}

// NewMetrics registers alegate's metrics on reg.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "alegate_requests_total",
			Help: "HTTP requests and WebSocket handshakes, by kind (http, websocket) and outcome."}, []string{"kind", "outcome"}),
		frames: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "alegate_frames_total",
			Help: "WebSocket messages, by direction (client, upstream) and outcome."}, []string{"direction", "outcome"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "alegate_request_duration_seconds",
			Help:    "Time to answer an HTTP request, or to upgrade a WebSocket handshake, by kind.",
			Buckets: []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10}}, []string{"kind"}),
		open: prometheus.NewGauge(prometheus.GaugeOpts{Name: "alegate_websockets_open",
			Help: "WebSocket connections bridged now."}),
		upstream: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "alegate_upstream_responses_total",
			Help: "Kitchen HTTP responses by status class (2xx, 3xx, 4xx, 5xx)."}, []string{"class"}),
		batchItems: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "alegate_crypto_batch_items",
			Help:    "Crypto calls per message on the shared streams to alecryptd (coalesced requests and frames).",
			Buckets: []float64{1, 2, 4, 8, 16, 32, 64}}),
	}
	reg.MustRegister(m.requests, m.frames, m.duration, m.open, m.upstream, m.batchItems)
	return m
}

// request records one request or handshake, as it ended.
func (m *Metrics) request(kind, outcome string, d time.Duration) {
	if m != nil {
		m.requests.WithLabelValues(kind, outcome).Inc()
		m.duration.WithLabelValues(kind).Observe(d.Seconds())
	}
}

func (m *Metrics) frame(direction, outcome string) {
	if m != nil {
		m.frames.WithLabelValues(direction, outcome).Inc()
	}
}

func (m *Metrics) upstreamStatus(code int) {
	if m != nil && code >= 100 && code < 600 {
		m.upstream.WithLabelValues(strconv.Itoa(code/100) + "xx").Inc()
	}
}

func (m *Metrics) websocketOpen(delta float64) {
	if m != nil {
		m.open.Add(delta)
	}
}

// batch records a message of n coalesced calls (none: nothing sent).
func (m *Metrics) batch(n int) {
	if m != nil && n > 0 {
		m.batchItems.Observe(float64(n))
	}
}
