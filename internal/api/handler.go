// Package api owns alecrypt's Connect surface: the ale.v1 CryptoService and
// KeyService handlers, the one mapping from domain errors to Connect codes and
// ALE error details, the request interceptors, and the HTTP handler that also
// serves gRPC health and server reflection, with the guard in front of it
// (authentication, the in-flight budget, read deadlines) and the observer
// that records calls refused before the interceptors ran. The RPC framing
// both read (envelopes, end-of-stream messages, gRPC status) is package
// rpcframe's.
//
// Handlers translate between protobuf and package engine and do nothing else;
// cross-cutting work (logging, request ids) lives in interceptors. Nothing here
// puts key material or plaintext in an error, a log line or a response other
// than the plaintext a Decrypt returns to its caller.
package api

import (
	"context"
	"log/slog"
	"net/http"
	"time"

	"connectrpc.com/connect"
	"connectrpc.com/grpchealth"
	"connectrpc.com/grpcreflect"
	"connectrpc.com/otelconnect"
	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"

	"github.com/alecrypt/alecrypt/gen/ale/v1/alev1connect"
	"github.com/alecrypt/alecrypt/internal/audit"
	"github.com/alecrypt/alecrypt/internal/engine"
	"github.com/alecrypt/alecrypt/internal/keyring"
)

// DefaultMaxRequestBytes is the default limit on one request message.
const DefaultMaxRequestBytes = 4 << 20

// Options configure the handler.
type Options struct {
	// MaxRequestBytes limits each request message; larger ones fail with
	// ResourceExhausted. Zero means DefaultMaxRequestBytes.
	MaxRequestBytes int
	// Logger receives one line per call; nil discards.
	Logger *slog.Logger
	// Metrics, when set, receives the RPC metrics (requests by procedure
	// and code, latency, message bytes).
	Metrics prometheus.Registerer
	// Tracing, when set, traces every call (otelconnect) with these; calls
	// continue the trace their caller propagated.
	TracerProvider trace.TracerProvider
	Propagator     propagation.TextMapPropagator
	// RequireAuth refuses ale.v1 calls without an authenticated caller
	// (Unauthenticated) before their body is read; see authn.Required.
	// Callers are established by authn.Middleware around the returned
	// handler; a credential that failed is refused whatever this says.
	RequireAuth bool
	// MaxInflightBytes bounds the memory ale.v1 calls in progress may hold:
	// each is charged MemoryPerRequestByte per request byte (per message for
	// streams, plus StreamCharge while a stream is open) before its body is
	// read, and refused with ResourceExhausted when the charge does not fit.
	// Calls that need no credential have a small budget of their own.
	// Zero means DefaultMaxInflightBytes.
	MaxInflightBytes int64
	// MaxInflightBytesPerCaller bounds what one caller (its authenticated
	// identity, or its connection when anonymous) may hold of
	// MaxInflightBytes. Zero means DefaultPerCaller: a quarter of the
	// budget, at least what one largest request needs.
	MaxInflightBytesPerCaller int64
	// ReadTimeout bounds how long a unary request body, or one stream
	// message once its first byte arrived, may take to arrive. Zero means
	// DefaultReadTimeout.
	ReadTimeout time.Duration
	// Stopping, when done, ends every open stream at its next idle point
	// with Unavailable, so a graceful shutdown does not wait on idle streams.
	Stopping context.Context
	// Audit, when set, gets one entry per operation.
	Audit *audit.Log
	// Health is the grpc.health.v1 checker to serve; nil means all
	// services SERVING, always.
	Health *grpchealth.StaticChecker
	// Interceptors run after the built-in ones (outermost first).
	Interceptors []connect.Interceptor
}

// NewHealth returns a health checker reporting the ale.v1 services SERVING.
func NewHealth() *grpchealth.StaticChecker {
	return grpchealth.NewStaticChecker(alev1connect.CryptoServiceName, alev1connect.KeyServiceName)
}

// SetServing flips the overall and per-service health status.
func SetServing(h *grpchealth.StaticChecker, serving bool) {
	st := grpchealth.StatusServing
	if !serving {
		st = grpchealth.StatusNotServing
	}
	for _, name := range []string{"", alev1connect.CryptoServiceName, alev1connect.KeyServiceName} {
		h.SetStatus(name, st)
	}
}

// NewHandler returns the HTTP handler serving ale.v1 (Connect, gRPC and
// gRPC-Web), grpc.health.v1 and server reflection v1 and v1alpha.
func NewHandler(eng *engine.Engine, ring *keyring.Ring, opts Options) http.Handler {
	if opts.MaxRequestBytes == 0 {
		opts.MaxRequestBytes = DefaultMaxRequestBytes
	}
	if opts.MaxInflightBytes == 0 {
		opts.MaxInflightBytes = DefaultMaxInflightBytes
	}
	if opts.MaxInflightBytesPerCaller == 0 {
		opts.MaxInflightBytesPerCaller = DefaultPerCaller(opts.MaxRequestBytes, opts.MaxInflightBytes)
	}
	if opts.ReadTimeout == 0 {
		opts.ReadTimeout = DefaultReadTimeout
	}
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	var interceptors []connect.Interceptor
	if opts.TracerProvider != nil {
		// Outermost, so the log line of a call can name its trace. Callers
		// are our own gateways and backends, so their trace context is
		// trusted: a call continues the caller's trace rather than starting
		// a new one linked to it.
		otel, err := otelconnect.NewInterceptor(otelconnect.WithTracerProvider(opts.TracerProvider),
			otelconnect.WithPropagator(opts.Propagator), otelconnect.WithoutMetrics(), otelconnect.WithTrustRemote())
		if err != nil {
			panic(err) // only invalid options fail, and these are fixed
		}
		interceptors = append(interceptors, otel)
	}
	obs := &observer{log: newLogInterceptor(log), audit: opts.Audit}
	interceptors = append(interceptors, obs.log)
	if opts.Audit != nil {
		interceptors = append(interceptors, auditInterceptor{log: opts.Audit})
	}
	if opts.Metrics != nil {
		obs.metrics = newRPCMetrics(opts.Metrics)
		interceptors = append(interceptors, obs.metrics)
	}
	interceptors = append(interceptors, opts.Interceptors...)
	keys := newKeyInfos()
	handlerOpts := []connect.HandlerOption{
		connect.WithInterceptors(interceptors...),
		// connect-go's JSON codec, with each key's JSON marshalled once.
		connect.WithCodec(&jsonCodec{name: "json", keys: keys}),
		connect.WithCodec(&jsonCodec{name: "json; charset=utf-8", keys: keys}),
		connect.WithReadMaxBytes(opts.MaxRequestBytes),
		// Ciphertext does not compress; offering gzip only burns CPU (it
		// halves unary throughput on the reference machine).
		connect.WithCompression("gzip", nil, nil),
	}
	mux := http.NewServeMux()
	mux.Handle(alev1connect.NewCryptoServiceHandler(&cryptoServer{eng: eng, keys: keys}, handlerOpts...))
	mux.Handle(alev1connect.NewKeyServiceHandler(&keyServer{ring: ring, eng: eng}, handlerOpts...))
	health := opts.Health
	if health == nil {
		health = NewHealth()
	}
	// grpcurl lists only what the reflector names, so the health and
	// reflection services are named too.
	reflector := newReflector(
		alev1connect.CryptoServiceName,
		alev1connect.KeyServiceName,
		grpchealth.HealthV1ServiceName,
		grpcreflect.ReflectV1ServiceName,
		grpcreflect.ReflectV1AlphaServiceName,
	)
	// Health and reflection carry no key information and are served
	// without authentication, so probes and operators' grpcurl work.
	mountProbes(mux, health, reflector)
	g := &guard{
		next:        mux,
		errw:        connect.NewErrorWriter(),
		requireAuth: opts.RequireAuth,
		main:        newLane(opts.MaxInflightBytes, opts.MaxInflightBytesPerCaller, int64(opts.MaxRequestBytes), 0, errOverBudget),
		probe:       newLane(probeInflightBytes, probeInflightBytes/callerShareDivisor, probeMaxMessage, probeCallCharge, errProbesBusy),
		readTimeout: opts.ReadTimeout,
		obs:         obs,
		streams:     map[*bodyReader]struct{}{},
	}
	if opts.Metrics != nil {
		registerBudget(opts.Metrics, &g.main, &g.probe)
	}
	if opts.Stopping != nil {
		context.AfterFunc(opts.Stopping, g.drainAll)
	}
	return g
}
