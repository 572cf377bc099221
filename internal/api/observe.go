package api

import (
	"context"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"connectrpc.com/connect"

	"github.com/alecrypt/alecrypt/internal/audit"
	"github.com/alecrypt/alecrypt/internal/rpcframe"
)

// call is one ale.v1 call as the HTTP layer sees it. connect-go refuses some
// calls before any interceptor runs (a request that does not unmarshal, is
// over the size limit or uses an unknown compression), and the guard refuses
// others itself; the observer logs, counts and audits those, and leaves every
// call the interceptors saw to them, so each call is recorded exactly once.
type call struct {
	id, procedure, protocol string
	callerID                string // the caller's X-Request-Id, if usable
	start                   time.Time
	// handled is set by the log interceptor, the outermost of ours: from
	// then on the interceptors record the call.
	handled atomic.Bool
	// cause is why the guard refused the call, when it did.
	cause error
	body  *bodyReader // nil until the guard reads the body

	// Storage for the call's parts, allocated with it: the response
	// writer the observer reads, the body reader, the X-Request-Id value.
	rec        recorder
	bodyReader bodyReader
	idHeader   [1]string
}

type callKey struct{}

// markHandled tells the observer that the interceptors own the call of ctx.
func markHandled(ctx context.Context) {
	if c, ok := ctx.Value(callKey{}).(*call); ok {
		c.handled.Store(true)
	}
}

type observer struct {
	log     *logInterceptor
	metrics *rpcMetrics // nil: no metrics
	audit   *audit.Log  // nil: no audit
}

// begin returns the call for an ale.v1 procedure, nil for anything else
// (health, reflection, unknown paths: no procedure label of ours).
// ct is the request's media type (contentType).
func (o *observer) begin(r *http.Request, ct string) *call {
	if _, ok := procedureOps[r.URL.Path]; !ok {
		return nil
	}
	ids := newRequestIDs(r.Header)
	return &call{id: ids.ours, callerID: ids.caller, procedure: r.URL.Path, protocol: rpcframe.Protocol(ct), start: time.Now()}
}

func (o *observer) finish(ctx context.Context, c *call, rec *recorder) {
	if c.handled.Load() {
		return
	}
	code, msg, failed := rpcframe.Outcome(c.protocol, rec.status, rec.Header(), rec.body)
	if !failed {
		return
	}
	cause := c.cause
	if cause == nil {
		// connect-go's own message, cut before any detail: an unmarshal
		// error may quote the request, and requests carry plaintext.
		msg, _, _ = strings.Cut(msg, ":")
		cause = connectRefusal(msg)
	}
	err := connect.NewError(code, errPublic{msg, cause})
	o.log.done(ctx, c.id, c.procedure, c.protocol, c.start, err)
	if o.metrics != nil {
		o.metrics.observe(c.procedure, c.start, err)
	}
	if o.audit != nil {
		e := auditInterceptor{log: o.audit}.base(ctx, c.procedure)
		outcome(&e, err)
		if c.body != nil {
			e.BytesIn = int(c.body.read)
		}
		o.audit.Write(e)
	}
}

// connectRefusal is a refusal by connect-go, as its message says.
type connectRefusal string

func (e connectRefusal) Error() string { return "refused before the handler: " + string(e) }

// recorder keeps what the observer needs of a response: its status, and
// its body while the interceptors have not taken the call (then the body is
// only an error, a few hundred bytes).
//
// For a stream it also passes each message on in one Write. connect-go
// writes a message's 5-byte envelope prefix and then its data; Go's HTTP/2
// server buffers a response in 4 KiB chunks, so a message of 4 KiB or more
// (a batch of four 1 KiB items) left as two DATA frames, a 4 KiB one and the
// rest, each a hand-off to the connection's goroutine and a write, and the
// caller's window updates doubled with them. Passed on whole, a message is
// one DATA frame.
type recorder struct {
	http.ResponseWriter
	c      *call
	status int
	body   []byte
	prefix [rpcframe.PrefixLen]byte
	held   bool // prefix holds a write not yet passed on
}

const maxRecordedBody = 4 << 10

func (r *recorder) WriteHeader(code int) {
	if r.status == 0 {
		r.status = code
	}
	r.ResponseWriter.WriteHeader(code)
}

func (r *recorder) Write(p []byte) (int, error) {
	if r.status == 0 {
		r.status = http.StatusOK
	}
	if !r.c.handled.Load() && len(r.body) < maxRecordedBody {
		r.body = append(r.body, p[:min(len(p), maxRecordedBody-len(r.body))]...)
	}
	switch {
	case r.held:
		return r.writeJoined(p)
	case len(p) == rpcframe.PrefixLen && r.c.body != nil && r.c.body.ahead != nil:
		// Our Stream (see aheadBuf): the next write is this message's data.
		copy(r.prefix[:], p)
		r.held = true
		return len(p), nil
	}
	return r.ResponseWriter.Write(p)
}

// maxJoined bounds the messages passed on in one Write; a larger one goes
// as two writes (its prefix is then a small part of it).
const maxJoined = 64 << 10

var joinBufs = sync.Pool{New: func() any { return new([]byte) }}

// writeJoined writes the held prefix and p as one.
func (r *recorder) writeJoined(p []byte) (int, error) {
	r.held = false
	if len(p) > maxJoined {
		if _, err := r.ResponseWriter.Write(r.prefix[:]); err != nil {
			return 0, err
		}
		return r.ResponseWriter.Write(p)
	}
	bp := joinBufs.Get().(*[]byte)
	buf := append(append((*bp)[:0], r.prefix[:]...), p...)
	// The ResponseWriter keeps no reference to buf after Write.
	n, err := r.ResponseWriter.Write(buf)
	*bp = buf[:0]
	joinBufs.Put(bp)
	return max(n-rpcframe.PrefixLen, 0), err
}

// release passes a held prefix on.
func (r *recorder) release() {
	if r.held {
		r.held = false
		_, _ = r.ResponseWriter.Write(r.prefix[:])
	}
}

// Flush flushes the response, unless the call is a stream with its next
// request already read ahead: then the flush waits until the stream is about
// to wait for its caller (aheadBuf).
func (r *recorder) Flush() {
	if r.c.body != nil && r.c.body.holdFlush() {
		return
	}
	r.flush()
}

func (r *recorder) flush() {
	r.release()
	if f, ok := r.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

// Unwrap lets http.ResponseController reach the connection (read deadlines).
func (r *recorder) Unwrap() http.ResponseWriter { return r.ResponseWriter }
