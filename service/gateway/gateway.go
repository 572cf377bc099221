// Package gateway owns alegate: the Kitchen-side reverse proxy and WebSocket
// bridge that terminates Application Level Encryption in front of a kitchen
// backend.
//
// It holds no keys: every decryption and encryption is a call to alecryptd
// over Connect, and the ALE error a client gets is the one alecryptd's
// ErrorDetail names. A request or frame that fails its checks never reaches
// the upstream. The gateway never logs payloads.
package gateway

import (
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"mime"
	"net/http"
	"net/http/httputil"
	"net/url"
	"strconv"
	"strings"

	"connectrpc.com/connect"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"

	alev1 "github.com/alecrypt/alecrypt/gen/ale/v1"
	"github.com/alecrypt/alecrypt/gen/ale/v1/alev1connect"
	"github.com/alecrypt/alecrypt/service/wire"
)

// Default limits.
const (
	DefaultMaxBodyBytes     = 4 << 20
	DefaultMaxResponseBytes = 16 << 20
	DefaultMaxFrameBytes    = 1 << 20
)

// Options configure a Gateway.
type Options struct {
	// RequireALE refuses requests without ALE headers (errorCode 1). When
	// false, a request with neither sec-iv nor sec-fingerprint is proxied
	// as it is.
	RequireALE bool
	// EncryptResponses seals upstream response bodies under the request's
	// key with a fresh IV.
	EncryptResponses bool
	// MaxBodyBytes limits an encrypted request body (413 beyond it).
	MaxBodyBytes int64
	// MaxResponseBytes limits an upstream response that is to be encrypted.
	MaxResponseBytes int64
	// MaxFrameBytes limits one WebSocket message, both directions.
	MaxFrameBytes int64
	// FrameFormat is the check applied to each client frame's plaintext
	// before it goes upstream. AES-CTR decrypts a frame sealed under the
	// wrong key to random bytes; requiring UTF-8 (the default, and what a
	// WebSocket text message must be anyway) or JSON stops those bytes at
	// the gateway with errorCode 2. PLAINTEXT_FORMAT_UNSPECIFIED forwards
	// anything.
	FrameFormat alev1.PlaintextFormat
	// OriginPatterns are the browser origins allowed to open WebSockets
	// (same origin, and clients that send no Origin, are always allowed).
	OriginPatterns []string
	// Transport reaches the upstream; nil means a clone of
	// http.DefaultTransport.
	Transport http.RoundTripper
	// Logger gets one line per refused request or frame; nil discards.
	Logger *slog.Logger
	// TracerProvider, when set, gives every request a server span that
	// continues the caller's W3C trace; the Connect client to alecryptd
	// (given its own otelconnect interceptor) and the upstream request then
	// carry it on.
	TracerProvider trace.TracerProvider
	Propagator     propagation.TextMapPropagator
}

// Gateway is the http.Handler in front of the kitchen backend.
type Gateway struct {
	crypto   alev1connect.CryptoServiceClient
	upstream *url.URL
	opts     Options
	proxy    *httputil.ReverseProxy
	log      *slog.Logger
	tracer   trace.Tracer // nil when tracing is off
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
	if opts.Transport == nil {
		opts.Transport = http.DefaultTransport.(*http.Transport).Clone()
	}
	g := &Gateway{crypto: crypto, upstream: upstream, opts: opts, log: opts.Logger}
	if g.log == nil {
		g.log = slog.New(slog.DiscardHandler)
	}
	if opts.TracerProvider != nil {
		g.tracer = opts.TracerProvider.Tracer("github.com/alecrypt/alecrypt/service/gateway")
		if g.opts.Propagator == nil {
			g.opts.Propagator = propagation.TraceContext{}
		}
	}
	g.proxy = &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.SetURL(upstream)
			pr.SetXForwarded()
			if g.tracer != nil {
				g.opts.Propagator.Inject(pr.Out.Context(), propagation.HeaderCarrier(pr.Out.Header))
			}
		},
		Transport:      opts.Transport,
		ModifyResponse: g.encryptResponse,
		ErrorHandler:   g.upstreamError,
	}
	return g
}

// aleKey carries the request's key fingerprint to ModifyResponse.
type aleKey struct{}

func (g *Gateway) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if g.tracer != nil {
		ctx := g.opts.Propagator.Extract(r.Context(), propagation.HeaderCarrier(r.Header))
		ctx, span := g.tracer.Start(ctx, "alegate "+r.Method, trace.WithSpanKind(trace.SpanKindServer))
		defer span.End()
		r = r.WithContext(ctx)
	}
	if isWebSocket(r) {
		g.serveWebSocket(w, r)
		return
	}
	h := headersOf(r, false)
	if !g.opts.RequireALE && h.iv == "" && h.fingerprint == "" {
		g.proxy.ServeHTTP(w, r)
		return
	}
	iv, err := h.check()
	if err != nil {
		g.refuse(w, r, err)
		return
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, g.opts.MaxBodyBytes))
	var tooBig *http.MaxBytesError
	if errors.As(err, &tooBig) {
		writeJSONError(w, http.StatusRequestEntityTooLarge, fmt.Sprintf("request body over %d bytes", g.opts.MaxBodyBytes))
		return
	}
	if err != nil {
		g.refuse(w, r, &wire.Error{Code: wire.CodeDecrypt, Reason: "reading the body: " + err.Error()})
		return
	}
	msg, err := wire.DecodePayload(bytes.TrimSpace(body))
	if err != nil {
		g.refuse(w, r, err)
		return
	}
	res, err := g.crypto.Decrypt(r.Context(), connect.NewRequest(&alev1.DecryptRequest{
		Envelope: &alev1.Envelope{Iv: iv, Fingerprint: h.fingerprint, Message: msg},
		Expect:   expectFor(r.Header.Get("Content-Type")),
	}))
	if err != nil {
		g.cryptoError(w, r, err)
		return
	}
	pt := res.Msg.GetPlaintext()
	out := r.Clone(context.WithValue(r.Context(), aleKey{}, h.fingerprint))
	out.Body = io.NopCloser(bytes.NewReader(pt))
	out.ContentLength = int64(len(pt))
	out.Header.Del("Content-Length")
	out.Header.Del(wire.HeaderIV)
	out.Header.Del(wire.HeaderFingerprint)
	if g.opts.EncryptResponses {
		// The response body is encrypted as bytes; a compressed one would
		// leave the client a Content-Encoding that no longer fits.
		out.Header.Del("Accept-Encoding")
	}
	g.proxy.ServeHTTP(w, out)
}

// encryptResponse seals the upstream's body under the request's key with a
// fresh IV. It runs before anything is written to the client, so a failure
// becomes a clean 502.
func (g *Gateway) encryptResponse(res *http.Response) error {
	fp, _ := res.Request.Context().Value(aleKey{}).(string)
	if !g.opts.EncryptResponses || fp == "" {
		return nil
	}
	body, err := io.ReadAll(io.LimitReader(res.Body, g.opts.MaxResponseBytes+1))
	res.Body.Close()
	if err != nil {
		return fmt.Errorf("reading the upstream response: %w", err)
	}
	if int64(len(body)) > g.opts.MaxResponseBytes {
		return fmt.Errorf("upstream response over %d bytes", g.opts.MaxResponseBytes)
	}
	enc, err := g.crypto.Encrypt(res.Request.Context(), connect.NewRequest(&alev1.EncryptRequest{
		Plaintext: body,
		Key:       &alev1.KeyRef{Ref: &alev1.KeyRef_Fingerprint{Fingerprint: fp}},
	}))
	if err != nil {
		return fmt.Errorf("encrypting the response: %w", err)
	}
	env := enc.Msg.GetEnvelope()
	sealed := []byte(base64.StdEncoding.EncodeToString(env.GetMessage()))
	res.Body = io.NopCloser(bytes.NewReader(sealed))
	res.ContentLength = int64(len(sealed))
	res.Header.Set("Content-Length", strconv.Itoa(len(sealed)))
	res.Header.Del("Content-Encoding")
	res.Header.Set(wire.HeaderIV, base64.StdEncoding.EncodeToString(env.GetIv()))
	res.Header.Set(wire.HeaderFingerprint, env.GetFingerprint())
	return nil
}

func (g *Gateway) upstreamError(w http.ResponseWriter, r *http.Request, err error) {
	g.log.Warn("upstream failed", "method", r.Method, "path", r.URL.Path, "err", err)
	writeJSONError(w, http.StatusBadGateway, "upstream unavailable")
}

// refuse answers an ALE error: 400 with the exact EK body.
func (g *Gateway) refuse(w http.ResponseWriter, r *http.Request, err error) {
	code := wire.CodeDecrypt
	if e, ok := wire.AsError(err); ok {
		code = e.Code
	}
	g.log.Info("request refused", "method", r.Method, "path", r.URL.Path, "ale_code", code, "reason", err.Error())
	writeALE(w, code)
}

// cryptoError maps an alecryptd error: an error with an ALE detail is the
// client's fault (400 with that ALE body); a too-large payload is 413; any
// other failure means the crypto service is unusable (502).
func (g *Gateway) cryptoError(w http.ResponseWriter, r *http.Request, err error) {
	if code, ok := aleCode(err); ok {
		g.refuse(w, r, &wire.Error{Code: code, Reason: err.Error()})
		return
	}
	if connect.CodeOf(err) == connect.CodeResourceExhausted {
		writeJSONError(w, http.StatusRequestEntityTooLarge, "payload too large")
		return
	}
	g.log.Error("crypto service failed", "method", r.Method, "path", r.URL.Path, "err", err)
	writeJSONError(w, http.StatusBadGateway, "crypto service unavailable")
}

// aleCode reads the ALE error code from an alecryptd error's ErrorDetail.
func aleCode(err error) (int, bool) {
	var ce *connect.Error
	if !errors.As(err, &ce) {
		return 0, false
	}
	for _, d := range ce.Details() {
		if v, derr := d.Value(); derr == nil {
			if ed, ok := v.(*alev1.ErrorDetail); ok && (ed.GetErrorCode() == wire.CodeHeaders || ed.GetErrorCode() == wire.CodeDecrypt) {
				return int(ed.GetErrorCode()), true
			}
		}
	}
	return 0, false
}

// aleHeaders are the security values of a request.
type aleHeaders struct {
	authorization, iv, fingerprint string
}

// headersOf reads the security values from the headers and, for WebSocket
// handshakes from browsers (which cannot set headers), from the query.
func headersOf(r *http.Request, allowQuery bool) aleHeaders {
	h := aleHeaders{
		authorization: r.Header.Get("Authorization"),
		iv:            r.Header.Get(wire.HeaderIV),
		fingerprint:   r.Header.Get(wire.HeaderFingerprint),
	}
	if allowQuery {
		q := r.URL.Query()
		if h.iv == "" {
			h.iv = q.Get(wire.HeaderIV)
		}
		if h.fingerprint == "" {
			h.fingerprint = q.Get(wire.HeaderFingerprint)
		}
		if h.authorization == "" {
			h.authorization = q.Get("authorization")
		}
		// A browser that builds the URL by concatenation leaves base64's
		// "+" unescaped, and query decoding turns it into a space; no
		// base64 IV contains a space, so put the "+" back.
		h.iv = strings.ReplaceAll(h.iv, " ", "+")
	}
	return h
}

// check applies the errorCode 1 rules: all three present, IV base64,
// fingerprint well formed. The IV's length is checked by alecryptd, which
// knows the key's algorithm.
func (h aleHeaders) check() ([]byte, error) {
	if strings.TrimSpace(h.authorization) == "" {
		return nil, &wire.Error{Code: wire.CodeHeaders, Reason: "missing authorization"}
	}
	if h.iv == "" {
		return nil, &wire.Error{Code: wire.CodeHeaders, Reason: "missing sec-iv"}
	}
	if err := wire.CheckFingerprint(h.fingerprint); err != nil {
		return nil, err
	}
	return wire.DecodeIV(h.iv)
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

func writeALE(w http.ResponseWriter, code int) {
	body := wire.ErrorBody(code)
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Content-Length", strconv.Itoa(len(body)))
	w.WriteHeader(http.StatusBadRequest)
	_, _ = w.Write(body)
}

func writeJSONError(w http.ResponseWriter, status int, msg string) {
	body := []byte(`{"error":` + strconv.Quote(msg) + `}`)
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Content-Length", strconv.Itoa(len(body)))
	w.WriteHeader(status)
	_, _ = w.Write(body)
}
