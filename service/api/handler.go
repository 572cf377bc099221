// Package api owns alecrypt's Connect surface: the ale.v1 CryptoService and
// KeyService handlers, the one mapping from domain errors to Connect codes and
// ALE error details, the request interceptors, and the HTTP handler that also
// serves gRPC health and server reflection.
//
// Handlers translate between protobuf and package engine and do nothing else;
// cross-cutting work (logging, request ids) lives in interceptors. Nothing here
// puts key material or plaintext in an error, a log line or a response other
// than the plaintext a Decrypt returns to its caller.
package api

import (
	"log/slog"
	"net/http"

	"connectrpc.com/connect"
	"connectrpc.com/grpchealth"
	"connectrpc.com/grpcreflect"
	"connectrpc.com/otelconnect"
	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"

	"github.com/alecrypt/alecrypt/gen/ale/v1/alev1connect"
	"github.com/alecrypt/alecrypt/service/audit"
	"github.com/alecrypt/alecrypt/service/engine"
	"github.com/alecrypt/alecrypt/service/keyring"
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
	// RequireAuth refuses calls without an authenticated caller
	// (Unauthenticated); set it whenever a policy is configured. Callers are
	// established by authn.Middleware around the returned handler.
	RequireAuth bool
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
	interceptors = append(interceptors, newLogInterceptor(log))
	if opts.Audit != nil {
		// Outside authentication, so refused calls are audited too.
		interceptors = append(interceptors, auditInterceptor{log: opts.Audit})
	}
	interceptors = append(interceptors, authInterceptor{required: opts.RequireAuth})
	if opts.Metrics != nil {
		interceptors = append(interceptors, newRPCMetrics(opts.Metrics))
	}
	interceptors = append(interceptors, opts.Interceptors...)
	handlerOpts := []connect.HandlerOption{
		connect.WithInterceptors(interceptors...),
		connect.WithReadMaxBytes(opts.MaxRequestBytes),
		// Ciphertext does not compress; offering gzip only burns CPU (it
		// halves unary throughput on the reference machine).
		connect.WithCompression("gzip", nil, nil),
	}
	mux := http.NewServeMux()
	mux.Handle(alev1connect.NewCryptoServiceHandler(&cryptoServer{eng: eng}, handlerOpts...))
	mux.Handle(alev1connect.NewKeyServiceHandler(&keyServer{ring: ring, eng: eng}, handlerOpts...))
	health := opts.Health
	if health == nil {
		health = NewHealth()
	}
	// Health and reflection carry no key information and are served
	// without authentication, so probes and operators' grpcurl work.
	mux.Handle(grpchealth.NewHandler(health))
	// grpcurl lists only what the reflector names, so the health and
	// reflection services are named too.
	reflector := newReflector(
		alev1connect.CryptoServiceName,
		alev1connect.KeyServiceName,
		grpchealth.HealthV1ServiceName,
		grpcreflect.ReflectV1ServiceName,
		grpcreflect.ReflectV1AlphaServiceName,
	)
	mux.Handle(grpcreflect.NewHandlerV1(reflector))
	mux.Handle(grpcreflect.NewHandlerV1Alpha(reflector))
	return mux
}
