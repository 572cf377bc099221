package gateway

import (
	"log/slog"
	"net/http"
	"time"

	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"

	alev1 "github.com/alecrypt/alecrypt/gen/ale/v1"
	"github.com/alecrypt/alecrypt/internal/replay"
)

// Defaults.
const (
	DefaultMaxBodyBytes     = 4 << 20
	DefaultMaxResponseBytes = 16 << 20
	DefaultMaxFrameBytes    = 1 << 20
	// DefaultFrameFormat is the check on each client frame's plaintext.
	// EK frames are JSON, and JSON is what stops a frame sealed under the
	// wrong key (AES-CTR turns it into random bytes, which pass a UTF-8
	// check far too often for short frames; docs/gateway.md, "Frame check").
	DefaultFrameFormat = alev1.PlaintextFormat_PLAINTEXT_FORMAT_JSON
	// DefaultReadTimeout cuts a client whose request headers, or whose
	// body, stop arriving for this long.
	DefaultReadTimeout = 30 * time.Second
	// DefaultIdleTimeout closes a keep-alive connection with no request.
	DefaultIdleTimeout = 2 * time.Minute
	// DefaultWebSocketIdleTimeout closes a bridged WebSocket on which no
	// message, ping or pong has passed either way for this long: an
	// abandoned or half-open connection otherwise holds a goroutine pair,
	// a kitchen connection and a crypto stream for ever. Generous, since
	// kitchen displays sit quiet between orders; clients that idle longer
	// keep the connection with pings.
	DefaultWebSocketIdleTimeout = 10 * time.Minute
)

// Options configure a Gateway.
type Options struct {
	// RequireALE refuses requests without ALE values (errorCode 1). When
	// false, a request with neither sec-iv nor sec-fingerprint is proxied
	// as it is.
	RequireALE bool
	// EncryptResponses seals upstream response bodies under the request's
	// key with a fresh IV. The key's ability to encrypt is checked before
	// the request is forwarded: a request whose response could not be
	// sealed is never executed.
	EncryptResponses bool
	// MaxBodyBytes limits an encrypted request body (413 beyond it).
	MaxBodyBytes int64
	// MaxResponseBytes limits an upstream response that is to be encrypted.
	MaxResponseBytes int64
	// MaxFrameBytes limits one WebSocket message, both directions.
	MaxFrameBytes int64
	// FrameFormat is the check applied to each client frame's plaintext
	// before it goes upstream (DefaultFrameFormat in alegate).
	// PLAINTEXT_FORMAT_UNSPECIFIED forwards anything.
	FrameFormat alev1.PlaintextFormat
	// Origins is the Origin rule for WebSockets and CORS (the zero value:
	// no Origin, same origin and app origins only).
	Origins Origins
	// WebSocketIdleTimeout closes a bridged WebSocket on which nothing
	// (no message, ping or pong, either way) passed for this long, both
	// sides with 1001 "idle timeout". Zero means DefaultWebSocketIdleTimeout;
	// negative turns it off.
	WebSocketIdleTimeout time.Duration
	// BodyReadTimeout drops a request whose body stops arriving for this
	// long (each read must make progress within it); 0 means
	// DefaultReadTimeout. Slow but moving uploads are not cut.
	BodyReadTimeout time.Duration
	// Metrics, when set, records requests, frames and upstream statuses.
	Metrics *Metrics
	// Transport reaches the upstream; nil means NewUpstreamTransport().
	Transport http.RoundTripper
	// Logger gets one line per refused request or frame; nil discards.
	Logger *slog.Logger
	// TracerProvider, when set, gives every request a server span that
	// continues the caller's W3C trace; the Connect client to alecryptd
	// (given its own otelconnect interceptor) and the upstream request then
	// carry it on.
	TracerProvider trace.TracerProvider
	Propagator     propagation.TextMapPropagator
	// Replay, when set, refuses within its window a request or frame whose
	// (fingerprint, IV) another request or connection used, and a frame's
	// exact copy (see replay.go for what is claimed when).
	Replay replay.Store
}

// withDefaults fills in what the zero value leaves to the gateway.
func (o Options) withDefaults() Options {
	if o.MaxBodyBytes <= 0 {
		o.MaxBodyBytes = DefaultMaxBodyBytes
	}
	if o.MaxResponseBytes <= 0 {
		o.MaxResponseBytes = DefaultMaxResponseBytes
	}
	if o.MaxFrameBytes <= 0 {
		o.MaxFrameBytes = DefaultMaxFrameBytes
	}
	if o.BodyReadTimeout <= 0 {
		o.BodyReadTimeout = DefaultReadTimeout
	}
	if o.WebSocketIdleTimeout == 0 {
		o.WebSocketIdleTimeout = DefaultWebSocketIdleTimeout
	}
	if o.Transport == nil {
		o.Transport = NewUpstreamTransport()
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.TracerProvider != nil && o.Propagator == nil {
		o.Propagator = propagation.TraceContext{}
	}
	return o
}

// NewServer is the http.Server alegate runs the gateway in: request headers
// must arrive within readTimeout (bodies are timed per read by the gateway
// itself, so a slow but moving upload is not cut), and keep-alive
// connections idle for idleTimeout are closed.
func NewServer(h http.Handler, readTimeout, idleTimeout time.Duration) *http.Server {
	if readTimeout <= 0 {
		readTimeout = DefaultReadTimeout
	}
	if idleTimeout <= 0 {
		idleTimeout = DefaultIdleTimeout
	}
	return &http.Server{Handler: h, ReadHeaderTimeout: readTimeout, IdleTimeout: idleTimeout}
}
