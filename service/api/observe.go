package api

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"connectrpc.com/connect"

	"github.com/alecrypt/alecrypt/service/audit"
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
	return &call{id: ids.ours, callerID: ids.caller, procedure: r.URL.Path, protocol: protocolOf(ct), start: time.Now()}
}

func (o *observer) finish(ctx context.Context, c *call, rec *recorder) {
	if c.handled.Load() {
		return
	}
	code, msg, failed := rec.outcome(c.protocol)
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

func protocolOf(ct string) string {
	switch {
	case strings.HasPrefix(ct, "application/grpc-web"):
		return connect.ProtocolGRPCWeb
	case strings.HasPrefix(ct, "application/grpc"):
		return connect.ProtocolGRPC
	}
	return connect.ProtocolConnect
}

// recorder keeps what the observer needs of a response: its status, and
// its body while the interceptors have not taken the call (then the body is
// only an error, a few hundred bytes).
type recorder struct {
	http.ResponseWriter
	c      *call
	status int
	body   []byte
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
	return r.ResponseWriter.Write(p)
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
	if f, ok := r.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

// Unwrap lets http.ResponseController reach the connection (read deadlines).
func (r *recorder) Unwrap() http.ResponseWriter { return r.ResponseWriter }

// outcome reads the Connect code and message of a finished response in the
// call's protocol; failed is false for a success.
func (r *recorder) outcome(protocol string) (code connect.Code, msg string, failed bool) {
	switch protocol {
	case connect.ProtocolGRPC, connect.ProtocolGRPCWeb:
		status, message := r.grpcStatus()
		if status == "" {
			return httpToCode(r.status)
		}
		n, err := strconv.Atoi(status)
		if err != nil {
			return connect.CodeUnknown, "unparsable grpc-status", true
		}
		return connect.Code(n), message, n != 0
	}
	var wire struct {
		Code    connect.Code `json:"code"`
		Message string       `json:"message"`
	}
	body := r.body
	if strings.HasPrefix(r.Header().Get("Content-Type"), "application/connect+") {
		// Connect streaming: the error is in the end-of-stream message.
		var end struct {
			Error *json.RawMessage `json:"error"`
		}
		for len(body) >= envelopePrefix {
			size := int(binary.BigEndian.Uint32(body[1:envelopePrefix]))
			if len(body) < envelopePrefix+size {
				break
			}
			if body[0]&2 != 0 && json.Unmarshal(body[envelopePrefix:envelopePrefix+size], &end) == nil && end.Error != nil {
				if json.Unmarshal(*end.Error, &wire) == nil {
					return wire.Code, wire.Message, true
				}
			}
			body = body[envelopePrefix+size:]
		}
		return httpToCode(r.status)
	}
	if r.status == http.StatusOK || r.status == 0 {
		return 0, "", false
	}
	if json.Unmarshal(body, &wire) == nil && wire.Code != 0 {
		return wire.Code, wire.Message, true
	}
	return httpToCode(r.status)
}

// grpcStatus finds grpc-status and grpc-message: in the headers of a
// trailers-only response, as HTTP trailers (gRPC), or in the trailer frame
// that ends a gRPC-Web body.
func (r *recorder) grpcStatus() (status, message string) {
	for k, v := range r.Header() {
		switch strings.ToLower(strings.TrimPrefix(k, http.TrailerPrefix)) {
		case "grpc-status":
			status = v[0]
		case "grpc-message":
			message, _ = url.PathUnescape(v[0])
		}
	}
	if status != "" {
		return status, message
	}
	body := r.body
	for len(body) >= envelopePrefix {
		size := int(binary.BigEndian.Uint32(body[1:envelopePrefix]))
		if len(body) < envelopePrefix+size {
			break
		}
		if body[0]&0x80 != 0 {
			for line := range strings.SplitSeq(string(body[envelopePrefix:envelopePrefix+size]), "\r\n") {
				k, v, _ := strings.Cut(line, ":")
				switch strings.ToLower(strings.TrimSpace(k)) {
				case "grpc-status":
					status = strings.TrimSpace(v)
				case "grpc-message":
					message, _ = url.PathUnescape(strings.TrimSpace(v))
				}
			}
		}
		body = body[envelopePrefix+size:]
	}
	return status, message
}

// httpToCode maps an HTTP status without an RPC error (405, 415, 505 from
// connect-go's routing) as gRPC does for HTTP errors.
func httpToCode(status int) (connect.Code, string, bool) {
	switch status {
	case 0, http.StatusOK:
		return 0, "", false
	case http.StatusBadRequest:
		return connect.CodeInternal, http.StatusText(status), true
	case http.StatusUnauthorized:
		return connect.CodeUnauthenticated, http.StatusText(status), true
	case http.StatusForbidden:
		return connect.CodePermissionDenied, http.StatusText(status), true
	case http.StatusNotFound:
		return connect.CodeUnimplemented, http.StatusText(status), true
	case http.StatusTooManyRequests, http.StatusBadGateway, http.StatusServiceUnavailable, http.StatusGatewayTimeout:
		return connect.CodeUnavailable, http.StatusText(status), true
	}
	return connect.CodeUnknown, http.StatusText(status), true
}
