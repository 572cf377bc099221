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
package gateway

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"mime"
	"net/http"
	"net/http/httputil"
	"net/url"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"connectrpc.com/connect"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"

	alev1 "github.com/alecrypt/alecrypt/gen/ale/v1"
	"github.com/alecrypt/alecrypt/gen/ale/v1/alev1connect"
	"github.com/alecrypt/alecrypt/service/aleerr"
	"github.com/alecrypt/alecrypt/service/replay"
	"github.com/alecrypt/alecrypt/service/wire"
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

// Gateway is the http.Handler in front of the kitchen backend.
type Gateway struct {
	crypto   alev1connect.CryptoServiceClient
	upstream *url.URL
	opts     Options
	proxy    *httputil.ReverseProxy
	log      *slog.Logger
	metrics  *Metrics
	tracer   trace.Tracer // nil when tracing is off
	mux      *cryptoMux
}

// New builds a gateway that sends decrypted traffic to upstream and asks
// crypto for every cryptographic operation. One Connect client (one HTTP/2
// connection pool) serves all requests.
func New(crypto alev1connect.CryptoServiceClient, upstream *url.URL, opts Options) *Gateway {
	if opts.MaxBodyBytes <= 0 {
		opts.MaxBodyBytes = DefaultMaxBodyBytes
	}
	if opts.MaxResponseBytes <= 0 {
		opts.MaxResponseBytes = DefaultMaxResponseBytes
	}
	if opts.MaxFrameBytes <= 0 {
		opts.MaxFrameBytes = DefaultMaxFrameBytes
	}
	if opts.BodyReadTimeout <= 0 {
		opts.BodyReadTimeout = DefaultReadTimeout
	}
	if opts.WebSocketIdleTimeout == 0 {
		opts.WebSocketIdleTimeout = DefaultWebSocketIdleTimeout
	}
	if opts.Transport == nil {
		opts.Transport = NewUpstreamTransport()
	}
	g := &Gateway{crypto: crypto, upstream: upstream, opts: opts, log: opts.Logger, metrics: opts.Metrics}
	if g.log == nil {
		g.log = slog.New(slog.DiscardHandler)
	}
	g.mux = newCryptoMux(crypto, g.log, g.metrics)
	if opts.TracerProvider != nil {
		g.tracer = opts.TracerProvider.Tracer("github.com/alecrypt/alecrypt/service/gateway")
		if g.opts.Propagator == nil {
			g.opts.Propagator = propagation.TraceContext{}
		}
	}
	g.proxy = &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			// pr.Out is the proxy's own copy of the request: the plaintext
			// request loses its ALE parameters here rather than in a
			// second copy of its headers and URL.
			if px, _ := pr.Out.Context().Value(ctxKey{}).(*proxied); px != nil && px.opened {
				px.strip(pr.Out)
			}
			pr.SetURL(upstream)
			pr.SetXForwarded()
			if g.tracer != nil {
				g.opts.Propagator.Inject(pr.Out.Context(), propagation.HeaderCarrier(pr.Out.Header))
			}
		},
		Transport:      opts.Transport,
		BufferPool:     BufferPool,
		ModifyResponse: g.modifyResponse,
		ErrorHandler:   g.proxyError,
	}
	return g
}

// UpstreamIdleConns is how many idle keep-alive connections to the kitchen
// the gateway keeps. http.DefaultTransport keeps 2 per host: with more
// requests in flight than that, every further one dialed a new connection
// and closed it after one request, which cost alegate more CPU than the
// proxying itself (BENCHMARKS.md, "The gateway path").
const UpstreamIdleConns = 256

// NewUpstreamTransport is http.DefaultTransport with a keep-alive pool to
// the kitchen sized for UpstreamIdleConns concurrent requests.
func NewUpstreamTransport() *http.Transport {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.MaxIdleConns = UpstreamIdleConns
	tr.MaxIdleConnsPerHost = UpstreamIdleConns
	return tr
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

// ctxKey carries the request's state to the proxy's callbacks.
type ctxKey struct{}

// proxied is what the proxy's callbacks need of a forwarded request.
type proxied struct {
	st          *reqState
	fingerprint string // set when the response is to be sealed
	origin      string // set when the gateway answers CORS
	opened      bool   // the body was decrypted: strip the ALE parameters
	params      wire.Params
}

// strip turns the proxy's copy of an opened request into the plaintext
// request the kitchen gets: query and headers kept, sec-* removed, the
// length that of the plaintext.
func (px *proxied) strip(out *http.Request) {
	out.URL.RawQuery = wire.StripQuery(out.URL.RawQuery)
	out.Header.Del("Content-Length")
	wire.StripHeaders(out.Header)
	if px.params.AuthorizationFromQuery {
		out.Header.Set("Authorization", px.params.Authorization)
	}
	if px.fingerprint != "" {
		// The response body is encrypted as bytes; a compressed one would
		// leave the client a Content-Encoding that no longer fits.
		out.Header.Del("Accept-Encoding")
	}
}

// BufferPool lends the reverse proxy its 32 KiB copy buffers: without one,
// httputil.ReverseProxy allocates a fresh buffer for every response, which
// was half of the bytes alegate allocated per request (BENCHMARKS.md, "The
// gateway path"). The plain-proxy floor of the benchmarks uses it too.
var BufferPool httputil.BufferPool = &bufferPool{}

type bufferPool struct{ p sync.Pool }

const proxyBufferBytes = 32 << 10

func (b *bufferPool) Get() []byte {
	if buf, ok := b.p.Get().(*[]byte); ok {
		return *buf
	}
	return make([]byte, proxyBufferBytes)
}

func (b *bufferPool) Put(buf []byte) {
	if cap(buf) == proxyBufferBytes {
		buf = buf[:proxyBufferBytes]
		b.p.Put(&buf)
	}
}

func (g *Gateway) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	if g.tracer != nil {
		ctx := g.opts.Propagator.Extract(r.Context(), propagation.HeaderCarrier(r.Header))
		ctx, span := g.tracer.Start(ctx, "alegate "+r.Method, trace.WithSpanKind(trace.SpanKindServer))
		defer span.End()
		r = r.WithContext(ctx)
	}
	st := &reqState{kind: kindHTTP}
	defer g.metrics.done(st, start)

	origin := r.Header.Get("Origin")
	if !g.opts.Origins.Allow(origin, r.Host) {
		st.outcome = outcomeOrigin
		g.log.Info("origin refused", "method", r.Method, "path", r.URL.Path, "origin", truncate(origin))
		writeJSONError(w, http.StatusForbidden, "origin not allowed")
		return
	}
	if isWebSocket(r) {
		st.kind = kindWebSocket
		g.serveWebSocket(w, r, st, start)
		return
	}
	// Any other upgrade is refused before anything else: the reverse proxy
	// would pass it on, and a kitchen answering 101 would get a raw tunnel
	// that no ALE check sees, either way.
	if isUpgrade(r) {
		st.outcome = outcomeBadHandshake
		g.log.Info("non-websocket upgrade refused", "method", r.Method, "path", r.URL.Path, "upgrade", truncate(r.Header.Get("Upgrade")))
		writeJSONError(w, http.StatusBadRequest, "only websocket upgrades are supported")
		return
	}
	if origin != "" {
		setCORS(w.Header(), origin)
	}
	if isPreflight(r) {
		st.outcome = outcomePreflight
		answerPreflight(w)
		return
	}
	g.serveHTTP(w, r, st, origin)
}

func (g *Gateway) serveHTTP(w http.ResponseWriter, r *http.Request, st *reqState, origin string) {
	p, err := wire.ReadParams(r.Header, r.URL.Query())
	if err != nil {
		g.refuse(w, r, st, err)
		return
	}
	px := &proxied{st: st, origin: origin}
	if !g.opts.RequireALE && !p.Present() {
		g.proxy.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), ctxKey{}, px)))
		return
	}
	iv, err := p.Check()
	if err != nil {
		g.refuse(w, r, st, err)
		return
	}
	contentType, err := wire.ContentType(r.Header)
	if err != nil {
		g.refuse(w, r, st, err)
		return
	}
	body, err := g.readBody(w, r)
	var tooBig *http.MaxBytesError
	switch {
	case errors.As(err, &tooBig):
		st.outcome = outcomeTooLarge
		writeJSONError(w, http.StatusRequestEntityTooLarge, fmt.Sprintf("request body over %d bytes", g.opts.MaxBodyBytes))
		return
	case errors.Is(err, os.ErrDeadlineExceeded):
		st.outcome = outcomeTimeout
		g.log.Info("request body stalled; dropped", "method", r.Method, "path", r.URL.Path, "after", g.opts.BodyReadTimeout)
		w.Header().Set("Connection", "close")
		writeJSONError(w, http.StatusRequestTimeout, "request body timed out")
		return
	case err != nil:
		g.refuse(w, r, st, &wire.Error{Code: wire.CodeDecrypt, Reason: "reading the body: " + err.Error()})
		return
	}
	msg, err := wire.OpenBody(body)
	if err != nil {
		g.refuse(w, r, st, err)
		return
	}
	// With sealed responses, ask whether the key can encrypt at the same
	// time as decrypting: a key that can only decrypt (retired during a
	// rotation) would let the kitchen execute the order and then leave
	// the gateway unable to answer, and the client would retry it.
	var canSeal chan error
	if g.opts.EncryptResponses {
		canSeal = make(chan error, 1)
		go func() { canSeal <- g.probeEncrypt(r.Context(), p.Fingerprint) }()
	}
	res, err := g.decrypt(r.Context(), &alev1.DecryptRequest{
		Envelope: &alev1.Envelope{Iv: iv, Fingerprint: p.Fingerprint, Message: msg},
		Expect:   expectFor(contentType),
	})
	if canSeal != nil {
		if serr := <-canSeal; err == nil {
			err = serr
		}
	}
	if err != nil {
		g.cryptoError(w, r, st, err)
		return
	}
	if !g.claim(w, r, st, p.Fingerprint, iv, msg) {
		return
	}
	pt := res.GetPlaintext()
	if g.opts.EncryptResponses {
		px.fingerprint = p.Fingerprint
	}
	px.opened, px.params = true, p
	// A shallow copy: the reverse proxy makes the one deep copy (its
	// outgoing request), which px.strip then edits in the proxy's Rewrite.
	out := r.WithContext(context.WithValue(r.Context(), ctxKey{}, px))
	out.Body = io.NopCloser(bytes.NewReader(pt))
	out.ContentLength = int64(len(pt))
	// The plaintext goes with its Content-Length, however the client sent
	// the sealed body: a chunked upload's Transfer-Encoding (and trailers,
	// which only chunked framing carries) would otherwise be copied to the
	// kitchen's request and win over the length.
	out.TransferEncoding, out.Trailer = nil, nil
	g.proxy.ServeHTTP(w, out)
}

// readBody reads an encrypted body within MaxBodyBytes, giving each read
// BodyReadTimeout to make progress: a client that stops sending mid-body
// is cut instead of holding a connection and a goroutine for ever.
func (g *Gateway) readBody(w http.ResponseWriter, r *http.Request) ([]byte, error) {
	rc := http.NewResponseController(w)
	// The deadline must not outlive the body: the server's background
	// read, which notices a client going away while the upstream works,
	// would take it for a dead connection.
	defer func() { _ = rc.SetReadDeadline(time.Time{}) }()
	src := &progressReader{r: http.MaxBytesReader(w, r.Body, g.opts.MaxBodyBytes), rc: rc, d: g.opts.BodyReadTimeout}
	// A body that says its length is read into one buffer of that size
	// (io.ReadAll would grow one from 512 bytes, copying as it goes).
	if n := r.ContentLength; n > 0 && n <= g.opts.MaxBodyBytes {
		return readAll(make([]byte, 0, n+1), src)
	}
	return io.ReadAll(src)
}

// readAll is io.ReadAll appending to buf.
func readAll(buf []byte, r io.Reader) ([]byte, error) {
	for {
		if len(buf) == cap(buf) {
			buf = append(buf, 0)[:len(buf)]
		}
		n, err := r.Read(buf[len(buf):cap(buf)])
		buf = buf[:len(buf)+n]
		if err == io.EOF {
			return buf, nil
		}
		if err != nil {
			return buf, err
		}
	}
}

type progressReader struct {
	r  io.Reader
	rc *http.ResponseController
	d  time.Duration
}

func (p *progressReader) Read(b []byte) (int, error) {
	if err := p.rc.SetReadDeadline(time.Now().Add(p.d)); err != nil && !errors.Is(err, http.ErrNotSupported) {
		return 0, err
	}
	return p.r.Read(b)
}

// probeEncrypt asks alecryptd to seal nothing under the fingerprint: the one
// honest answer to "can this key encrypt now" (state, expiry and the
// gateway's own policy are alecryptd's to judge). Sealing nothing is no use
// of the key: it does not count in the key's usage.
func (g *Gateway) probeEncrypt(ctx context.Context, fingerprint string) error {
	_, err := g.encrypt(ctx, &alev1.EncryptRequest{Key: byFingerprint(fingerprint)})
	return err
}

// decrypt and encrypt ask alecryptd: a payload that fits goes on the shared
// streams (cryptoMux), a large one, and every call of a traced request, is a
// unary call of its own (a trace follows a call, not a stream). Errors are
// the unary call's in either case.
func (g *Gateway) decrypt(ctx context.Context, req *alev1.DecryptRequest) (*alev1.DecryptResponse, error) {
	if g.mux != nil && fits(len(req.GetEnvelope().GetMessage())) && !traced(ctx) {
		return g.mux.decrypt(ctx, req)
	}
	res, err := g.crypto.Decrypt(ctx, connect.NewRequest(req))
	if err != nil {
		return nil, err
	}
	return res.Msg, nil
}

func (g *Gateway) encrypt(ctx context.Context, req *alev1.EncryptRequest) (*alev1.EncryptResponse, error) {
	if g.mux != nil && fits(len(req.GetPlaintext())) && !traced(ctx) {
		return g.mux.encrypt(ctx, req)
	}
	res, err := g.crypto.Encrypt(ctx, connect.NewRequest(req))
	if err != nil {
		return nil, err
	}
	return res.Msg, nil
}

// traced says whether ctx belongs to a sampled trace.
func traced(ctx context.Context) bool { return trace.SpanContextFromContext(ctx).IsSampled() }

// reasonOf is alecryptd's message in a Connect error, for logs.
func reasonOf(err error) string {
	if ce, ok := asConnectError(err); ok {
		return ce.Message()
	}
	return err.Error()
}

// Close ends the gateway's streams to alecryptd.
func (g *Gateway) Close() {
	if g.mux != nil {
		g.mux.close()
	}
}

func byFingerprint(fp string) *alev1.KeyRef {
	return &alev1.KeyRef{Ref: &alev1.KeyRef_Fingerprint{Fingerprint: fp}}
}

// errResponseTooLarge and errSeal tell proxyError why a response failed.
var (
	errResponseTooLarge = errors.New("upstream response too large to seal")
	errSeal             = errors.New("sealing the response")
)

// modifyResponse records the kitchen's status, answers CORS for the
// gateway, and seals the body under the request's key with a fresh IV when
// configured. It runs before anything is written to the client, so a
// failure becomes a clean 502.
func (g *Gateway) modifyResponse(res *http.Response) error {
	px, _ := res.Request.Context().Value(ctxKey{}).(*proxied)
	if px == nil {
		return nil
	}
	g.metrics.upstreamStatus(res.StatusCode)
	if px.origin != "" {
		dropUpstreamCORS(res.Header)
	}
	px.st.outcome = outcomeForwarded
	if px.fingerprint == "" {
		return nil
	}
	body, err := io.ReadAll(io.LimitReader(res.Body, g.opts.MaxResponseBytes+1))
	res.Body.Close()
	if err != nil {
		return fmt.Errorf("reading the upstream response: %w", err)
	}
	if int64(len(body)) > g.opts.MaxResponseBytes {
		return errResponseTooLarge
	}
	enc, err := g.encrypt(res.Request.Context(), &alev1.EncryptRequest{Plaintext: body, Key: byFingerprint(px.fingerprint)})
	if err != nil {
		return fmt.Errorf("%w: %w", errSeal, err)
	}
	env := enc.GetEnvelope()
	sealed := wire.SealPayload(env.GetMessage())
	res.Body = io.NopCloser(bytes.NewReader(sealed))
	res.ContentLength = int64(len(sealed))
	res.Header.Set("Content-Length", strconv.Itoa(len(sealed)))
	res.Header.Del("Content-Encoding")
	wire.SetHeaders(res.Header, env.GetIv(), env.GetFingerprint())
	return nil
}

func (g *Gateway) proxyError(w http.ResponseWriter, r *http.Request, err error) {
	px, _ := r.Context().Value(ctxKey{}).(*proxied)
	set := func(o string) {
		if px != nil {
			px.st.outcome = o
		}
	}
	switch {
	case errors.Is(err, errResponseTooLarge):
		set(outcomeTooLarge)
		g.log.Error("upstream response too large to seal", "method", r.Method, "path", r.URL.Path, "limit", g.opts.MaxResponseBytes)
		writeJSONError(w, http.StatusBadGateway, "upstream response too large")
	case errors.Is(err, errSeal):
		set(outcomeCryptoError)
		g.log.Error("sealing the response failed after the kitchen answered", "method", r.Method, "path", r.URL.Path, "err", err)
		writeJSONError(w, http.StatusBadGateway, "crypto service unavailable")
	default:
		set(outcomeUpstreamError)
		g.log.Warn("upstream failed", "method", r.Method, "path", r.URL.Path, "err", err)
		writeJSONError(w, http.StatusBadGateway, "upstream unavailable")
	}
}

// refuse answers an ALE error from the gateway's own checks: 400 with the
// exact EK body.
func (g *Gateway) refuse(w http.ResponseWriter, r *http.Request, st *reqState, err error) {
	code := wire.CodeDecrypt
	if e, ok := wire.AsError(err); ok {
		code = e.Code
	}
	st.outcome = aleOutcome(code)
	g.log.Info("request refused", "method", r.Method, "path", r.URL.Path, "ale_code", code, "reason", err.Error())
	wire.WriteError(w, code)
}

// failure is what an alecryptd error means for the client.
type failure int

const (
	failHeaders  failure = iota + 1 // ALE 1
	failDecrypt                     // ALE 2
	failTooLarge                    // 413, or the same body as a frame on a WebSocket
	failCrypto                      // alecryptd is unusable: 502, or close 1011
)

// classify is the one mapping from alecryptd's answer to the client's, for
// unary calls and stream items alike (aleerr reads both), so HTTP and
// WebSocket cannot disagree. An ALE detail decides when present.
// PermissionDenied carries none (alecryptd keeps policy out of the ALE
// codes) but is the client's doing: a key outside the gateway's policy is,
// to the client, a key that does not exist, so it gets what an unknown
// fingerprint gets. Anything else without a detail is alecryptd failing,
// never the client's payload.
func classify(code connect.Code, ale int) failure {
	switch {
	case ale == wire.CodeHeaders:
		return failHeaders
	case ale == wire.CodeDecrypt, code == connect.CodePermissionDenied:
		return failDecrypt
	case code == connect.CodeResourceExhausted:
		return failTooLarge
	default:
		return failCrypto
	}
}

// cryptoError answers a failed alecryptd call on HTTP.
func (g *Gateway) cryptoError(w http.ResponseWriter, r *http.Request, st *reqState, err error) {
	code := connect.CodeOf(err)
	switch f := classify(code, aleerr.Code(err)); f {
	case failHeaders, failDecrypt:
		ale := wire.CodeDecrypt
		if f == failHeaders {
			ale = wire.CodeHeaders
		}
		st.outcome = aleOutcome(ale)
		g.logRefusal(r.Context(), code, "request refused", "method", r.Method, "path", r.URL.Path, "ale_code", ale, "reason", err.Error())
		wire.WriteError(w, ale)
	case failTooLarge:
		st.outcome = outcomeTooLarge
		writeJSONError(w, http.StatusRequestEntityTooLarge, msgTooLarge)
	default:
		st.outcome = outcomeCryptoError
		g.log.Error("crypto service failed", "method", r.Method, "path", r.URL.Path, "err", err)
		writeJSONError(w, http.StatusBadGateway, "crypto service unavailable")
	}
}

// logRefusal logs a refusal below ERROR: a client's bad input is not an
// incident. A key outside the gateway's policy is a warning, since an
// operator may have to grant it.
func (g *Gateway) logRefusal(ctx context.Context, code connect.Code, msg string, args ...any) {
	level := slog.LevelInfo
	if code == connect.CodePermissionDenied {
		level = slog.LevelWarn
		args = append(args, "cause", "key outside the gateway's policy")
	}
	g.log.Log(ctx, level, msg, args...)
}

func aleOutcome(code int) string {
	if code == wire.CodeHeaders {
		return outcomeALE1
	}
	return outcomeALE2
}

// expectFor asks alecryptd to check JSON bodies: AES-CTR cannot tell a wrong
// key from a right one, but garbage is rarely valid JSON.
func expectFor(contentType string) alev1.PlaintextFormat {
	mt, _, err := mime.ParseMediaType(contentType)
	if err == nil && (mt == "application/json" || strings.HasSuffix(mt, "+json")) {
		return alev1.PlaintextFormat_PLAINTEXT_FORMAT_JSON
	}
	return alev1.PlaintextFormat_PLAINTEXT_FORMAT_UNSPECIFIED
}

// msgTooLarge is the gateway's answer when alecryptd refuses a payload as
// too large or too much for its memory budget (ResourceExhausted).
const msgTooLarge = "payload too large"

// jsonError is the gateway's own error body, {"error":"..."}, for failures
// that have no ALE code.
func jsonError(msg string) []byte { return []byte(`{"error":` + strconv.Quote(msg) + `}`) }

func writeJSONError(w http.ResponseWriter, status int, msg string) {
	body := jsonError(msg)
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Content-Length", strconv.Itoa(len(body)))
	w.WriteHeader(status)
	_, _ = w.Write(body)
}

// truncate bounds an untrusted value before it reaches a log line.
func truncate(s string) string {
	if len(s) > 80 {
		return s[:80] + "..."
	}
	return s
}
