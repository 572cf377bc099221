// Package gateway owns alegate: the Kitchen-side reverse proxy and WebSocket
// bridge that terminates Application Level Encryption in front of a kitchen
// backend, for native apps (ALE headers), Ionic/Capacitor web views (app
// origins) and browsers (ALE values in the query, CORS).
//
// It holds no keys: every decryption and encryption is a call to alecryptd
// over Connect, and the ALE error a client gets is decided by one mapping
// (classify) from alecryptd's answer, the same on HTTP and WebSocket. A
// request or frame that fails its checks never reaches the upstream, and a
// request whose response could not be sealed is not forwarded. The protocol
// itself (names, encodings, frames, error bodies) is service/wire's. The
// gateway never logs payloads.
//
// Each HTTP request or handshake is one request value (request.go) that
// carries it from ServeHTTP through its own reverse proxy's callbacks and
// owns its outcome, recorded once in the metrics.
package gateway

import (
	"log/slog"
	"net/http"
	"net/url"
	"time"

	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"

	"github.com/alecrypt/alecrypt/gen/ale/v1/alev1connect"
	"github.com/alecrypt/alecrypt/internal/wsconn"
)

// Gateway is the http.Handler in front of the kitchen backend.
type Gateway struct {
	crypto   alev1connect.CryptoServiceClient
	upstream *url.URL
	opts     Options
	log      *slog.Logger
	metrics  *Metrics
	tracer   trace.Tracer // nil when tracing is off
	mux      *cryptoMux
}

// New builds a gateway that sends decrypted traffic to upstream and asks
// crypto for every cryptographic operation. One Connect client (one HTTP/2
// connection pool) serves all requests.
func New(crypto alev1connect.CryptoServiceClient, upstream *url.URL, opts Options) *Gateway {
	opts = opts.withDefaults()
	g := &Gateway{crypto: crypto, upstream: upstream, opts: opts, log: opts.Logger, metrics: opts.Metrics}
	g.mux = newCryptoMux(crypto, g.log, g.metrics)
	if opts.TracerProvider != nil {
		g.tracer = opts.TracerProvider.Tracer("github.com/alecrypt/alecrypt/internal/gateway")
	}
	return g
}

// Close ends the gateway's streams to alecryptd.
func (g *Gateway) Close() {
	if g.mux != nil {
		g.mux.close()
	}
}

// ServeHTTP answers what needs no ALE (Origin, upgrades, CORS preflights)
// and hands WebSocket handshakes and HTTP requests to their paths.
func (g *Gateway) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	if g.tracer != nil {
		ctx := g.opts.Propagator.Extract(r.Context(), propagation.HeaderCarrier(r.Header))
		ctx, span := g.tracer.Start(ctx, "alegate "+r.Method, trace.WithSpanKind(trace.SpanKindServer))
		defer span.End()
		r = r.WithContext(ctx)
	}
	q := g.newRequest(w, r, start)
	defer q.finish()

	origin := r.Header.Get("Origin")
	if !g.opts.Origins.Allow(origin, r.Host) {
		g.log.Info("origin refused", "method", r.Method, "path", r.URL.Path, "origin", truncate(origin))
		q.fail(outcomeOrigin, http.StatusForbidden, "origin not allowed")
		return
	}
	if wsconn.IsHandshake(r) {
		q.kind = kindWebSocket
		q.serveWebSocket()
		return
	}
	// Any other upgrade is refused before anything else: the reverse proxy
	// would pass it on, and a kitchen answering 101 would get a raw tunnel
	// that no ALE check sees, either way.
	if isUpgrade(r) {
		g.log.Info("non-websocket upgrade refused", "method", r.Method, "path", r.URL.Path, "upgrade", truncate(r.Header.Get("Upgrade")))
		q.fail(outcomeBadHandshake, http.StatusBadRequest, "only websocket upgrades are supported")
		return
	}
	if origin != "" {
		q.origin = origin
		setCORS(w.Header(), origin)
	}
	if isPreflight(r) {
		q.end(outcomePreflight)
		answerPreflight(w)
		return
	}
	q.serveHTTP()
}
