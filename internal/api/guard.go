package api

import (
	"context"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"connectrpc.com/connect"
	"connectrpc.com/grpchealth"
	"connectrpc.com/grpcreflect"

	"github.com/alecrypt/alecrypt/gen/ale/v1/alev1connect"
	"github.com/alecrypt/alecrypt/internal/authn"
	"github.com/alecrypt/alecrypt/internal/rpcframe"
)

// Defaults of the HTTP layer's limits.
const (
	// DefaultMaxInflightBytes bounds the memory that calls in progress may
	// hold (see MemoryPerRequestByte).
	DefaultMaxInflightBytes = 256 << 20
	// DefaultReadTimeout bounds how long a unary request body, or one stream
	// message once its first byte arrived, may take to arrive.
	DefaultReadTimeout = 30 * time.Second
)

// MemoryPerRequestByte is what a call is charged against the in-flight
// budget per byte of its request message: the heap a 4 MiB Encrypt was
// measured to hold, about 5.3 times its size (about 21 MiB of live heap per
// call after GC, with GODEBUG=gctrace=1 and test/bench/memory.sh), rounded
// up. connect-go's read buffer (grown by doubling, then pooled), the
// decoded message, the result and the marshalled response (pooled too) each
// hold about the request's size or twice it while the call runs. The budget
// is then the live heap of calls; with GOGC=100 the process's RSS stays
// within about twice it.
const MemoryPerRequestByte = 6

// StreamCharge is what an open stream is charged for as long as it lives,
// on top of its messages: what an idle stream was measured to hold (about
// 30 KiB of live heap and stack with 4,096 idle Streams open: the 16 KiB
// read-ahead, connect-go's and HTTP/2's per-stream state, the handler's
// goroutine), rounded up. Charged for the stream's life rather than given
// back while it idles, so the streams one caller keeps open, idle or not,
// are bounded by its share of the budget, and a stream's next message costs
// no extra read of the connection (see aheadBuf).
const StreamCharge = 32 << 10

// Limits of the procedures served without a credential (health and
// reflection): their requests are a service or symbol name, read at most
// probeMaxMessage, and they are charged against a budget of their own, so no
// unauthenticated call can take any of --max-inflight-bytes.
const (
	probeMaxMessage = 64 << 10
	// probeInflightBytes admits about ten calls of the largest size a probe
	// reads at once, and thousands of real health checks (a few bytes each).
	probeInflightBytes = 4 << 20
	// probeCallCharge is charged to every unauthenticated call on top of
	// its message, for the goroutine and buffers it holds even when it
	// claims an empty body: it bounds the calls, not only their bytes.
	probeCallCharge = 4 << 10
)

// callerShareDivisor sets the default share of the budget one caller may
// hold: a quarter, so no single caller can hold more than that.
const callerShareDivisor = 4

// maxCallers bounds the callers tracked at once per budget. Callers are
// identities, or connections for anonymous ones, with a call in progress,
// so the operating system's limit on connections bounds them long before
// this; it is a backstop against a bug, not a limit anyone should meet.
const maxCallers = 1 << 16

// MinInflightBytes is the least budget (and the least share of a caller)
// that admits a stream carrying one request of maxRequest bytes, and so
// any one request.
func MinInflightBytes(maxRequest int) int64 {
	return int64(maxRequest+rpcframe.PrefixLen)*MemoryPerRequestByte + StreamCharge
}

// DefaultPerCaller is the share of a budget of maxInflight bytes that one
// caller may hold by default: a quarter, but never less than one request of
// maxRequest bytes needs, nor more than the budget.
func DefaultPerCaller(maxRequest int, maxInflight int64) int64 {
	return min(max(maxInflight/callerShareDivisor, MinInflightBytes(maxRequest)), maxInflight)
}

// CheckLimits reports whether a budget of maxInflight bytes, of which one
// caller may hold perCaller, admits a request of maxRequest bytes at all.
func CheckLimits(maxRequest int, maxInflight, perCaller int64) error {
	need := MinInflightBytes(maxRequest)
	switch {
	case maxInflight < need:
		return fmt.Errorf("--max-inflight-bytes %d cannot admit one request of --max-request-bytes %d: each request byte is charged %d bytes, and a stream %d more, so it must be at least %d",
			maxInflight, maxRequest, MemoryPerRequestByte, StreamCharge, need)
	case perCaller < need:
		return fmt.Errorf("--max-inflight-bytes-per-caller %d cannot admit one request of --max-request-bytes %d: each request byte is charged %d bytes, and a stream %d more, so it must be at least %d",
			perCaller, maxRequest, MemoryPerRequestByte, StreamCharge, need)
	case perCaller > maxInflight:
		return fmt.Errorf("--max-inflight-bytes-per-caller %d is more than --max-inflight-bytes %d: a caller's share is part of the budget", perCaller, maxInflight)
	}
	return nil
}

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

// lane is a budget of bytes charged by calls in progress, of which no one
// caller may hold more than perCaller, and the largest message its calls may
// send.
type lane struct {
	max, perCaller int64
	maxMessage     int64
	callCharge     int64 // charged to every unary call on top of its message
	errFull        error // why a call that does not fit the budget is refused

	mu sync.Mutex
	// used is written under mu and read by the gauge without it.
	used atomic.Int64
	// callers holds what each caller with a call in progress holds; an
	// entry goes when the caller's last call ends. By value, so a caller's
	// first call allocates nothing.
	callers map[callerKey]callerShare
}

// callerKey is who a call is charged to: the authenticated identity, or
// for an anonymous call its connection (remote address).
type callerKey struct {
	id   string
	conn bool
}

// callerShare is what one caller holds of a lane, and how many of its
// calls are in progress (its entry goes when the last one ends).
type callerShare struct {
	held  int64
	calls int
}

func newLane(max, perCaller, maxMessage, callCharge int64, errFull error) lane {
	return lane{max: max, perCaller: perCaller, maxMessage: maxMessage, callCharge: callCharge, errFull: errFull,
		callers: map[callerKey]callerShare{}}
}

// join starts a call of caller k charged n bytes, if they fit, without
// waiting: a refused call holds nothing, where a queued one would hold its
// connection and buffers.
func (l *lane) join(k callerKey, n int64) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	s, ok := l.callers[k]
	if !ok && len(l.callers) >= maxCallers {
		return l.errFull
	}
	if err := l.fits(s, n); err != nil {
		return err
	}
	s.held += n
	s.calls++
	l.callers[k] = s
	l.used.Add(n)
	return nil
}

// fits says why n more bytes for a caller holding s do not fit, or nil.
// The caller's share is checked first: a caller over its share is told so
// even when the budget is full too.
func (l *lane) fits(s callerShare, n int64) error {
	switch {
	case s.held+n > l.perCaller:
		return errOverShare
	case l.used.Load()+n > l.max:
		return l.errFull
	}
	return nil
}

// acquire charges n more bytes to caller k, which has a call in progress.
func (l *lane) acquire(k callerKey, n int64) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	s := l.callers[k]
	if err := l.fits(s, n); err != nil {
		return err
	}
	s.held += n
	l.callers[k] = s
	l.used.Add(n)
	return nil
}

// release returns n bytes of caller k; leave also ends one of its calls.
func (l *lane) release(k callerKey, n int64, leave bool) {
	if n == 0 && !leave {
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	s := l.callers[k]
	s.held -= n
	l.used.Add(-n)
	if leave {
		s.calls--
	}
	if s.calls == 0 {
		delete(l.callers, k)
		return
	}
	l.callers[k] = s
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

// bodyReader is a request body as the guard lets connect-go read it: it
// charges the budget per message (enveloped protocols) or up front, applies
// the read deadlines, caps the size, and turns its own refusals into Connect
// errors, which connect-go passes on to the caller unchanged.
type bodyReader struct {
	g         *guard
	lane      *lane
	key       callerKey
	src       io.ReadCloser
	rc        http.ResponseController // by value: no allocation of its own
	c         *call                   // nil outside ale.v1
	stream    bool
	enveloped bool
	prepaid   bool  // the whole body was charged up front
	fixed     int64 // budget charged for the call's life (StreamCharge, callCharge)
	held      int64 // budget charged for messages and not yet released
	read      int64 // body bytes read

	hdr    rpcframe.Prefix
	hdrOut int   // bytes of hdr handed to the reader (rpcframe.PrefixLen: all)
	left   int64 // payload bytes of the current message still to come

	mu       sync.Mutex
	idle     bool // waiting for a stream's next message
	draining bool

	// ahead is a stream's read-ahead buffer (nil for other calls); timed
	// is set while a read deadline runs for the current message.
	ahead *aheadBuf
	timed bool
}

// aheadBuf holds what a stream's body had ready beyond the message being
// read. Reading the HTTP/2 body in large pieces costs one hand-off to the
// connection's goroutine per piece rather than about three per message
// (header byte, rest of header, payload); and a stream with requests ready
// may hold its responses' flushes until it has to wait for the caller
// (recorder.Flush), so that several responses leave in one DATA frame and
// one write instead of one each.
//
// Both rely on the handler receiving and sending on one goroutine, as our
// Stream does: a response is flushed before any read that may wait for the
// caller, so no response ever waits for a later request.
type aheadBuf struct {
	buf       [aheadSize]byte
	r, w      int   // buf[r:w] is read and not yet consumed
	err       error // what the body returned after buf[:w], once it is consumed
	holdFlush bool  // a flush was held while buf had data
}

// aheadSize bounds what a stream reads before its messages are charged: a
// constant per open stream, like connect-go's own read buffer.
const aheadSize = 16 << 10

var aheadPool = sync.Pool{New: func() any { return new(aheadBuf) }}

func (b *bodyReader) endAhead() {
	b.flushHeld()
	a := b.ahead
	b.ahead = nil
	*a = aheadBuf{}
	aheadPool.Put(a)
}

// buffered is how many bytes a stream has read ahead.
func (b *bodyReader) buffered() int {
	if b.ahead == nil {
		return 0
	}
	return b.ahead.w - b.ahead.r
}

// holdFlush reports whether a response's flush may wait, because the next
// request has begun to arrive and will be read without waiting; the flush is
// then done before the stream next reads from the connection.
func (b *bodyReader) holdFlush() bool {
	if b.buffered() == 0 {
		return false
	}
	b.ahead.holdFlush = true
	return true
}

func (b *bodyReader) flushHeld() {
	if b.ahead != nil && b.ahead.holdFlush {
		b.ahead.holdFlush = false
		b.c.rec.flush()
	}
}

// readSrc reads the body: through the read-ahead buffer for streams.
func (b *bodyReader) readSrc(p []byte) (int, error) {
	a := b.ahead
	if a == nil {
		return b.src.Read(p)
	}
	if a.r == a.w {
		if a.err != nil {
			return 0, a.err
		}
		b.flushHeld() // the read may wait for the caller
		n, err := b.src.Read(a.buf[:])
		a.r, a.w = 0, n
		if n == 0 {
			return 0, err
		}
		a.err = err
	}
	n := copy(p, a.buf[a.r:a.w])
	a.r += n
	return n, nil
}

// setTimed starts or stops the read deadline of a stream's current message.
func (b *bodyReader) setTimed(on bool) {
	if on == b.timed {
		return
	}
	b.timed = on
	if on {
		_ = b.rc.SetReadDeadline(time.Now().Add(b.g.readTimeout))
	} else {
		_ = b.rc.SetReadDeadline(time.Time{})
	}
}

func (b *bodyReader) charge(n int64) error {
	n *= MemoryPerRequestByte
	if err := b.lane.acquire(b.key, n); err != nil {
		return err
	}
	b.held += n
	return nil
}

// releaseAll returns what the messages read so far hold; end also returns
// the call's fixed charge and ends its share of the lane.
func (b *bodyReader) releaseAll(end bool) {
	n := b.held
	if end {
		n += b.fixed
		b.fixed = 0
	}
	b.lane.release(b.key, n, end)
	b.held = 0
}

func (b *bodyReader) Close() error { return b.src.Close() }

func (b *bodyReader) Read(p []byte) (int, error) {
	if b.enveloped {
		return b.readEnveloped(p)
	}
	// Connect unary: the body is the message. connect-go reads one byte over
	// the limit to detect an oversized message and then discards the rest,
	// which for an endless body would be for ever; stop there instead.
	allowed := b.lane.maxMessage + 1 - b.read
	if allowed <= 0 {
		return 0, b.fail(errTooLarge)
	}
	if int64(len(p)) > allowed {
		p = p[:allowed]
	}
	n, err := b.src.Read(p)
	b.read += int64(n)
	if err == io.EOF {
		// All here: clear the deadline so it cannot fire on the server's
		// background read of an HTTP/1.1 connection while the call runs.
		_ = b.rc.SetReadDeadline(time.Time{})
	}
	return n, b.wrap(err)
}

func (b *bodyReader) readEnveloped(p []byte) (int, error) {
	if b.hdrOut < rpcframe.PrefixLen { // the rest of a header read by nextMessage
		n := copy(p, b.hdr[b.hdrOut:])
		b.hdrOut += n
		return n, nil
	}
	if b.left > 0 {
		if int64(len(p)) > b.left {
			p = p[:b.left]
		}
		n, err := b.readSrc(p)
		b.read += int64(n)
		b.left -= int64(n)
		if b.left == 0 && b.stream {
			b.setTimed(false) // the message is here: idle waits are allowed again
		}
		return n, b.wrap(err)
	}
	if err := b.nextMessage(); err != nil {
		return 0, err
	}
	n := copy(p, b.hdr[:])
	b.hdrOut = n
	return n, nil
}

// nextMessage reads the next message's header and charges its size.
func (b *bodyReader) nextMessage() error {
	if b.stream {
		// connect-go reads on only when the handler asks for the next
		// message, so the previous one has been answered: its budget is free.
		b.releaseAll(false)
	}
	b.mu.Lock()
	if b.draining {
		b.mu.Unlock()
		return b.fail(errShuttingDown)
	}
	b.idle = b.stream
	b.mu.Unlock()
	_, err := io.ReadFull(srcReader{b}, b.hdr[:1])
	b.mu.Lock()
	b.idle = false
	draining := b.draining
	b.mu.Unlock()
	switch {
	case err == io.EOF:
		return io.EOF // the caller closed its side between messages
	case err != nil && draining:
		return b.fail(errShuttingDown)
	case err != nil:
		return b.wrap(err)
	}
	if b.stream && b.buffered() < rpcframe.PrefixLen-1 {
		b.setTimed(true) // a message, once started, must arrive in time
	}
	if _, err := io.ReadFull(srcReader{b}, b.hdr[1:]); err != nil {
		if err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		return b.wrap(err)
	}
	b.read += rpcframe.PrefixLen
	size := int64(b.hdr.Size())
	if size > b.lane.maxMessage {
		return b.fail(errTooLarge)
	}
	if !b.prepaid {
		if err := b.charge(size); err != nil {
			return b.fail(err)
		}
	}
	b.left = size
	if b.stream {
		// Timed while the message is not all here; a message already read
		// ahead needs no deadline (and costs no timer).
		b.setTimed(int64(b.buffered()) < size)
	}
	return nil
}

// srcReader reads a bodyReader's source (through its read-ahead).
type srcReader struct{ b *bodyReader }

func (r srcReader) Read(p []byte) (int, error) { return r.b.readSrc(p) }

// drain makes a stream end at its next idle point: at once if it is waiting
// for a message, after the current one otherwise.
func (b *bodyReader) drain() {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.draining = true
	if b.idle {
		_ = b.rc.SetReadDeadline(time.Now())
	}
}

// wrap turns a read deadline into the guard's refusal; other errors pass.
func (b *bodyReader) wrap(err error) error {
	if err == nil || err == io.EOF {
		return err
	}
	if errors.Is(err, os.ErrDeadlineExceeded) {
		b.mu.Lock()
		draining := b.draining
		b.mu.Unlock()
		if draining {
			return b.fail(errShuttingDown)
		}
		return b.fail(errReadTimeout)
	}
	return err
}

func (b *bodyReader) fail(err error) error {
	if b.c != nil && b.c.cause == nil {
		b.c.cause = err
	}
	return toConnectError(err)
}

// probeOptions bound what health and reflection, served without
// authentication, will read: their requests are a service name at most.
var probeOptions = []connect.HandlerOption{connect.WithReadMaxBytes(probeMaxMessage)}

func mountProbes(mux *http.ServeMux, health grpchealth.Checker, reflector *grpcreflect.Reflector) {
	mux.Handle(grpchealth.NewHandler(health, probeOptions...))
	mux.Handle(grpcreflect.NewHandlerV1(reflector, probeOptions...))
	mux.Handle(grpcreflect.NewHandlerV1Alpha(reflector, probeOptions...))
}
