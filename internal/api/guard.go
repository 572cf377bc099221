package api

import (
	"context"
	"mime"
	"net/http"
	"strings"
	"sync"
	"time"

	"connectrpc.com/connect"
	"connectrpc.com/grpchealth"
	"connectrpc.com/grpcreflect"

	"github.com/alecrypt/alecrypt/gen/ale/v1/alev1connect"
	"github.com/alecrypt/alecrypt/internal/authn"
	"github.com/alecrypt/alecrypt/internal/rpcframe"
)

// streamingProcedures are the client- and bidi-streaming procedures we serve:
// their bodies are a sequence of messages, each charged and timed on its own,
// with idle waits between them allowed.
var streamingProcedures = map[string]bool{
	alev1connect.CryptoServiceStreamProcedure:                             true,
	"/" + grpcreflect.ReflectV1ServiceName + "/ServerReflectionInfo":      true,
	"/" + grpcreflect.ReflectV1AlphaServiceName + "/ServerReflectionInfo": true,
}

// guard is the HTTP layer in front of connect-go's handlers: what must be
// decided before a request body is read. connect-go reads and unmarshals a
// unary request before any interceptor runs, so a caller that did not
// authenticate, a body the server has no memory for, or one that never
// finishes arriving must be refused here, or it costs memory and a goroutine
// whatever the interceptors decide later.
//
//   - ale.v1 calls need an authenticated caller when one is required (and a
//     failed credential is refused always); health and reflection stay open.
//   - Every call is charged against a budget before its body (or, for a
//     stream, each message) is read: ale.v1 calls against --max-inflight-bytes,
//     everything served without a credential against a small budget of its
//     own. Over the budget, or over the caller's share of it, the call is
//     refused at once with ResourceExhausted rather than queued.
//   - Bodies have a read deadline; streams may idle between messages but not
//     inside one.
//   - When the server stops, streams end at their next idle point.
type guard struct {
	next        http.Handler
	errw        *connect.ErrorWriter
	requireAuth bool
	main, probe lane
	readTimeout time.Duration
	obs         *observer

	mu       sync.Mutex
	stopping bool
	streams  map[*bodyReader]struct{}
}

func (g *guard) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	ct := contentType(r)
	c := g.obs.begin(r, ct)
	if c != nil {
		// The header's value slice lives in the call: one allocation less
		// per call than Header().Set (the key is already canonical).
		c.idHeader[0] = c.id
		w.Header()[RequestIDHeader] = c.idHeader[:]
		c.rec = recorder{ResponseWriter: w, c: c}
		w = &c.rec
		r = r.WithContext(context.WithValue(r.Context(), callKey{}, c))
		defer g.obs.finish(r.Context(), c, &c.rec)
	}
	l := &g.probe
	caller, authenticated := authn.FromContext(r.Context())
	if strings.HasPrefix(r.URL.Path, "/ale.v1.") {
		if err := g.authenticate(r.Context(), authenticated); err != nil {
			g.refuse(w, r, c, err)
			return
		}
		l = &g.main
	}
	k := callerKey{id: caller.Identity}
	if !authenticated {
		k = callerKey{id: r.RemoteAddr, conn: true}
	}
	stream := streamingProcedures[r.URL.Path]
	enveloped := rpcframe.IsEnveloped(ct)
	if stream && !enveloped {
		// connect-go serves a stream only over an enveloped protocol; refusing
		// anything else here means no stream is read without being charged
		// per message, timed, and drained on stop.
		g.refuseMediaType(w, c)
		return
	}
	var b *bodyReader
	if c != nil {
		// Allocated with the call: one allocation per call, not three.
		b = &c.bodyReader
		c.body = b
	} else {
		b = new(bodyReader)
	}
	*b = bodyReader{g: g, lane: l, key: k, src: r.Body, rc: *http.NewResponseController(w), c: c, stream: stream, enveloped: enveloped, hdrOut: rpcframe.PrefixLen}
	// Charged up front, before anything is read: a stream's StreamCharge, a
	// unary call's fixed charge in a lane that has one, and a whole unary
	// body whose size is known (its messages otherwise, one by one).
	var fixed, body int64
	if stream {
		fixed = StreamCharge
	} else {
		fixed = l.callCharge
		// The whole body of a unary call must arrive in time; a body that
		// stops half-way would otherwise hold its budget for ever.
		_ = b.rc.SetReadDeadline(time.Now().Add(g.readTimeout))
		if !b.enveloped || r.ContentLength >= 0 {
			n := r.ContentLength
			if n > l.maxMessage+rpcframe.PrefixLen {
				g.refuse(w, r, c, errTooLarge)
				return
			}
			if n < 0 {
				n = l.maxMessage // unknown length: charge the most it may be
			}
			body = n * MemoryPerRequestByte
			b.prepaid = true
		}
	}
	if err := l.join(k, fixed+body); err != nil {
		g.refuse(w, r, c, err)
		return
	}
	b.fixed, b.held = fixed, body
	defer b.releaseAll(true)
	if stream {
		if !g.track(b) {
			g.refuse(w, r, c, errShuttingDown)
			return
		}
		defer g.untrack(b)
		if c != nil {
			// Our Stream handler receives and sends on one goroutine, which
			// the read-ahead and the held flush rely on (see aheadBuf).
			b.ahead = aheadPool.Get().(*aheadBuf)
			defer b.endAhead()
		}
	}
	r.Body = b
	g.next.ServeHTTP(w, r)
}

func (g *guard) authenticate(ctx context.Context, authenticated bool) error {
	if err := authn.ErrorFromContext(ctx); err != nil {
		return authFailure{err}
	}
	if !authenticated && g.requireAuth {
		return authFailure{authn.ErrUnauthenticated}
	}
	return nil
}

// refuse answers in the caller's protocol without reading the body.
func (g *guard) refuse(w http.ResponseWriter, r *http.Request, c *call, err error) {
	if c != nil {
		c.cause = err
	}
	_ = g.errw.Write(w, r, toConnectError(err))
}

// refuseMediaType answers 415 as connect-go does for a content type it does
// not serve: no body, in no RPC protocol (there is none to answer in).
func (g *guard) refuseMediaType(w http.ResponseWriter, c *call) {
	if c != nil {
		c.cause = errMediaType
	}
	w.WriteHeader(http.StatusUnsupportedMediaType)
}

func (g *guard) track(b *bodyReader) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.stopping {
		return false
	}
	g.streams[b] = struct{}{}
	return true
}

func (g *guard) untrack(b *bodyReader) {
	g.mu.Lock()
	defer g.mu.Unlock()
	delete(g.streams, b)
}

// drainAll ends every open stream at its next idle point. http.Server's
// Shutdown waits for connections to go idle, and a stream waiting for its
// next message (every gateway WebSocket holds one) never would.
func (g *guard) drainAll() {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.stopping = true
	for b := range g.streams {
		b.drain()
	}
}

// contentType is the request's media type as connect-go decides the
// protocol on it (canonicalizeContentType in its protocol.go): parsed and
// lower-cased, or the header as sent when it does not parse. Comparing the
// raw header would take "Application/grpc", which connect-go serves as gRPC,
// for something else, and let it past the per-message budget.
func contentType(r *http.Request) string {
	ct := r.Header.Get("Content-Type")
	if isPlainMediaType(ct) {
		return ct // what ParseMediaType would return, without its parameter map
	}
	if mt, _, err := mime.ParseMediaType(ct); err == nil {
		return mt
	}
	return ct
}

// isPlainMediaType reports whether ct is a media type that
// mime.ParseMediaType returns unchanged: one lower-case token, or two joined
// by a slash, with no parameters or spaces. Content types sent by our
// clients ("application/json", "application/grpc+proto") all are.
func isPlainMediaType(ct string) bool {
	slash := -1
	for i := 0; i < len(ct); i++ {
		switch ch := ct[i]; {
		case ch >= 'a' && ch <= 'z', ch >= '0' && ch <= '9':
		case ch == '/' && slash < 0 && i > 0 && i < len(ct)-1:
			slash = i
		case strings.IndexByte("!#$%&'*+-.^_`|~", ch) >= 0:
		default:
			return false
		}
	}
	return ct != ""
}

// probeOptions bound what health and reflection, served without
// authentication, will read: their requests are a service name at most.
var probeOptions = []connect.HandlerOption{connect.WithReadMaxBytes(probeMaxMessage)}

func mountProbes(mux *http.ServeMux, health grpchealth.Checker, reflector *grpcreflect.Reflector) {
	mux.Handle(grpchealth.NewHandler(health, probeOptions...))
	mux.Handle(grpcreflect.NewHandlerV1(reflector, probeOptions...))
	mux.Handle(grpcreflect.NewHandlerV1Alpha(reflector, probeOptions...))
}
