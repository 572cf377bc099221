package api

import (
	"context"
	"sync"
	"time"

	"connectrpc.com/connect"
	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/protobuf/proto"
)

// rpcMetrics counts calls by procedure and outcome, their latency and the
// bytes of their messages. Labels are procedure names and codes only: never
// fingerprints, aliases or payloads.
type rpcMetrics struct {
	requests *prometheus.CounterVec
	duration *prometheus.HistogramVec
	bytes    *prometheus.CounterVec
	messages *prometheus.CounterVec
	// procs holds each procedure's children (*procMetrics): resolving
	// labels hashes them and takes the vector's lock, six times per unary
	// call, so it is done once per procedure.
	procs sync.Map
}

func newRPCMetrics(reg prometheus.Registerer) *rpcMetrics {
	m := &rpcMetrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "alecrypt_rpc_requests_total",
			Help: "RPCs handled, by procedure and Connect code (ok for success).",
		}, []string{"procedure", "code"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "alecrypt_rpc_duration_seconds",
			Help: "Time to handle an RPC (whole stream for streaming RPCs), by procedure.",
			// From tens of microseconds (a 1 KiB unary call) to seconds.
			Buckets: []float64{25e-6, 50e-6, 100e-6, 250e-6, 500e-6, 1e-3, 2.5e-3, 5e-3, 10e-3, 25e-3, 50e-3, 100e-3, 250e-3, 1, 5},
		}, []string{"procedure"}),
		bytes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "alecrypt_rpc_message_bytes_total",
			Help: "Bytes of protobuf messages received and sent, by procedure and direction (in, out).",
		}, []string{"procedure", "direction"}),
		messages: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "alecrypt_rpc_messages_total",
			Help: "Messages received and sent, by procedure and direction (in, out); for streams, one per item.",
		}, []string{"procedure", "direction"}),
	}
	reg.MustRegister(m.requests, m.duration, m.bytes, m.messages)
	return m
}

// procMetrics are one procedure's series, each resolved on first use (a
// series appears when it is first counted, as with WithLabelValues); the
// codes of failures are resolved when they happen (they are rare, and many).
type procMetrics struct {
	ok                      lazy[prometheus.Counter]
	duration                lazy[prometheus.Observer]
	messagesIn, messagesOut lazy[prometheus.Counter]
	bytesIn, bytesOut       lazy[prometheus.Counter]
}

type lazy[T any] struct {
	once sync.Once
	v    T
}

func (l *lazy[T]) get(resolve func() T) T {
	l.once.Do(func() { l.v = resolve() })
	return l.v
}

func (m *rpcMetrics) proc(procedure string) *procMetrics {
	if p, ok := m.procs.Load(procedure); ok {
		return p.(*procMetrics)
	}
	p, _ := m.procs.LoadOrStore(procedure, &procMetrics{})
	return p.(*procMetrics)
}

func (m *rpcMetrics) observe(procedure string, start time.Time, err error) {
	m.observeOf(m.proc(procedure), procedure, start, err)
}

func (m *rpcMetrics) observeOf(p *procMetrics, procedure string, start time.Time, err error) {
	if err != nil {
		m.requests.WithLabelValues(procedure, connect.CodeOf(err).String()).Inc()
	} else {
		p.ok.get(func() prometheus.Counter { return m.requests.WithLabelValues(procedure, "ok") }).Inc()
	}
	p.duration.get(func() prometheus.Observer { return m.duration.WithLabelValues(procedure) }).Observe(time.Since(start).Seconds())
}

// messageOf counts one message of the procedure whose series are p.
func (m *rpcMetrics) messageOf(p *procMetrics, procedure, direction string, msg any) {
	count, bytes := &p.messagesIn, &p.bytesIn
	if direction == "out" {
		count, bytes = &p.messagesOut, &p.bytesOut
	}
	count.get(func() prometheus.Counter { return m.messages.WithLabelValues(procedure, direction) }).Inc()
	if pm, ok := msg.(proto.Message); ok {
		bytes.get(func() prometheus.Counter { return m.bytes.WithLabelValues(procedure, direction) }).Add(float64(proto.Size(pm)))
	}
}

func (m *rpcMetrics) WrapUnary(next connect.UnaryFunc) connect.UnaryFunc {
	return func(ctx context.Context, req connect.AnyRequest) (connect.AnyResponse, error) {
		if req.Spec().IsClient {
			return next(ctx, req)
		}
		start := time.Now()
		proc := req.Spec().Procedure
		p := m.proc(proc)
		m.messageOf(p, proc, "in", req.Any())
		res, err := next(ctx, req)
		if err == nil && res != nil {
			m.messageOf(p, proc, "out", res.Any())
		}
		m.observeOf(p, proc, start, err)
		return res, err
	}
}

func (m *rpcMetrics) WrapStreamingClient(next connect.StreamingClientFunc) connect.StreamingClientFunc {
	return next
}

func (m *rpcMetrics) WrapStreamingHandler(next connect.StreamingHandlerFunc) connect.StreamingHandlerFunc {
	return func(ctx context.Context, conn connect.StreamingHandlerConn) error {
		start := time.Now()
		proc := conn.Spec().Procedure
		err := next(ctx, &countingConn{StreamingHandlerConn: conn, m: m, p: m.proc(proc), procedure: proc})
		m.observe(conn.Spec().Procedure, start, err)
		return err
	}
}

// countingConn counts a stream's messages; the procedure's series are
// looked up once per stream, not per message.
type countingConn struct {
	connect.StreamingHandlerConn
	m         *rpcMetrics
	p         *procMetrics
	procedure string
}

func (c *countingConn) Receive(msg any) error {
	err := c.StreamingHandlerConn.Receive(msg)
	if err == nil {
		c.m.messageOf(c.p, c.procedure, "in", msg)
	}
	return err
}

func (c *countingConn) Send(msg any) error {
	err := c.StreamingHandlerConn.Send(msg)
	if err == nil {
		c.m.messageOf(c.p, c.procedure, "out", msg)
	}
	return err
}

// registerBudget exposes the in-flight budgets, so a refusal rate can be
// read against how full they were.
func registerBudget(reg prometheus.Registerer, main, probe *lane) {
	reg.MustRegister(
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "alecrypt_inflight_bytes",
			Help: "Bytes charged against --max-inflight-bytes by calls in progress.",
		}, func() float64 { return float64(main.used.Load()) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "alecrypt_inflight_bytes_limit",
			Help: "--max-inflight-bytes: calls that would take alecrypt_inflight_bytes over it get ResourceExhausted.",
		}, func() float64 { return float64(main.max) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "alecrypt_inflight_unauthenticated_bytes",
			Help: "Bytes charged by calls in progress that need no credential (health, reflection) against their own budget of 4 MiB.",
		}, func() float64 { return float64(probe.used.Load()) }),
	)
}
