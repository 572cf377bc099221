package gateway

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httputil"
	"strconv"

	"go.opentelemetry.io/otel/propagation"

	alev1 "github.com/alecrypt/alecrypt/gen/ale/v1"
	"github.com/alecrypt/alecrypt/service/wire"
)

// UpstreamIdleConns is how many idle keep-alive connections to the kitchen
// the gateway keeps. http.DefaultTransport keeps 2 per host: with more
// requests in flight than that, every further one would dial a new
// connection and close it after one request, which costs alegate more CPU
// than the proxying itself.
const UpstreamIdleConns = 256

// NewUpstreamTransport is http.DefaultTransport with a keep-alive pool to
// the kitchen sized for UpstreamIdleConns concurrent requests.
func NewUpstreamTransport() *http.Transport {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.MaxIdleConns = UpstreamIdleConns
	tr.MaxIdleConnsPerHost = UpstreamIdleConns
	return tr
}

// forward sends out (the request itself, or its plaintext copy) to the
// kitchen through the request's own reverse proxy, whose callbacks end the
// request: forwarded once the response is ready for the client, or failed.
func (q *request) forward(out *http.Request) {
	q.proxy = httputil.ReverseProxy{
		Rewrite:        q.rewrite,
		Transport:      q.g.opts.Transport,
		BufferPool:     BufferPool,
		ModifyResponse: q.modifyResponse,
		ErrorHandler:   q.proxyError,
	}
	q.proxy.ServeHTTP(q.w, out)
}

func (q *request) rewrite(pr *httputil.ProxyRequest) {
	// pr.Out is the proxy's own copy of the request: the plaintext request
	// loses its ALE parameters here rather than in a second copy of its
	// headers and URL.
	if q.opened {
		q.strip(pr.Out)
	}
	pr.SetURL(q.g.upstream)
	pr.SetXForwarded()
	if q.g.tracer != nil {
		q.g.opts.Propagator.Inject(pr.Out.Context(), propagation.HeaderCarrier(pr.Out.Header))
	}
}

// strip turns the proxy's copy of an opened request into the plaintext
// request the kitchen gets: query and headers kept, sec-* removed, the
// length that of the plaintext.
func (q *request) strip(out *http.Request) {
	out.URL.RawQuery = wire.StripQuery(out.URL.RawQuery)
	out.Header.Del("Content-Length")
	wire.StripHeaders(out.Header)
	if q.params.AuthorizationFromQuery {
		out.Header.Set("Authorization", q.params.Authorization)
	}
	if q.seal != "" {
		// The response body is encrypted as bytes; a compressed one would
		// leave the client a Content-Encoding that no longer fits.
		out.Header.Del("Accept-Encoding")
	}
}

// errResponseTooLarge and errSeal tell proxyError why a response failed.
var (
	errResponseTooLarge = errors.New("upstream response too large to seal")
	errSeal             = errors.New("sealing the response")
)

// modifyResponse records the kitchen's status, answers CORS for the
// gateway, and seals the body under the request's key with a fresh IV when
// configured. It runs before anything is written to the client, so a
// failure becomes a clean 502 (proxyError).
func (q *request) modifyResponse(res *http.Response) error {
	g := q.g
	g.metrics.upstreamStatus(res.StatusCode)
	if q.origin != "" {
		dropUpstreamCORS(res.Header)
	}
	if q.seal == "" {
		q.end(outcomeForwarded)
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
	enc, err := g.encrypt(res.Request.Context(), &alev1.EncryptRequest{Plaintext: body, Key: byFingerprint(q.seal)})
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
	q.end(outcomeForwarded)
	return nil
}

// proxyError answers a request the kitchen did not answer, or whose answer
// could not be sealed. r is the proxy's outgoing request: the path logged is
// the one the kitchen was asked for.
func (q *request) proxyError(_ http.ResponseWriter, r *http.Request, err error) {
	log := q.g.log
	switch {
	case errors.Is(err, errResponseTooLarge):
		log.Error("upstream response too large to seal", "method", r.Method, "path", r.URL.Path, "limit", q.g.opts.MaxResponseBytes)
		q.fail(outcomeTooLarge, http.StatusBadGateway, "upstream response too large")
	case errors.Is(err, errSeal):
		log.Error("sealing the response failed after the kitchen answered", "method", r.Method, "path", r.URL.Path, "err", err)
		q.fail(outcomeCryptoError, http.StatusBadGateway, "crypto service unavailable")
	default:
		log.Warn("upstream failed", "method", r.Method, "path", r.URL.Path, "err", err)
		q.fail(outcomeUpstreamError, http.StatusBadGateway, "upstream unavailable")
	}
}
