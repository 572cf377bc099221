package api

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"log/slog"
	"strings"
	"time"

	"connectrpc.com/connect"
	"go.opentelemetry.io/otel/trace"
)

// RequestIDHeader carries the caller's request id in and ours out. Every call
// gets an id of our own, returned in this header and used in logs and the
// audit trail: a caller could otherwise choose the id its audit entries
// carry (reuse another's, or make them collide). The id the caller sent, if
// any, is kept apart as its caller request id, for correlation with the
// caller's own logs.
//
// The guard assigns both ids before anything else is done with a call and
// sets the response header, so refusals carry ours too.
const RequestIDHeader = "X-Request-Id"

type requestIDs struct{ ours, caller string }

// RequestID returns our id of the call ctx belongs to.
func RequestID(ctx context.Context) string {
	if c, ok := ctx.Value(callKey{}).(*call); ok {
		return c.id
	}
	return ""
}

// CallerRequestID returns the X-Request-Id the caller sent, or "" if it sent
// none or one that is not 1-128 printable ASCII characters.
func CallerRequestID(ctx context.Context) string {
	if c, ok := ctx.Value(callKey{}).(*call); ok {
		return c.callerID
	}
	return ""
}

// newRequestIDs makes the call's fresh id of ours and notes the caller's.
func newRequestIDs(h interface{ Get(string) string }) requestIDs {
	var b [8]byte
	_, _ = rand.Read(b[:])
	ids := requestIDs{ours: hex.EncodeToString(b[:])}
	// The caller's id reaches logs and the audit trail: only a bounded,
	// printable one, so it cannot forge or break lines there.
	if c := h.Get(RequestIDHeader); c != "" && len(c) <= 128 && !strings.ContainsFunc(c, func(r rune) bool { return r < 0x20 || r > 0x7e }) {
		ids.caller = c
	}
	return ids
}

// logInterceptor logs one line per call: procedure, protocol, code,
// duration and, on failure, the server-side cause. It never logs messages,
// so neither plaintext nor ciphertext reaches the log. Being the outermost
// of ours, it also tells the guard's observer that the interceptors own the
// call (markHandled).
type logInterceptor struct {
	log *slog.Logger
}

func newLogInterceptor(log *slog.Logger) *logInterceptor { return &logInterceptor{log: log} }

func (l *logInterceptor) WrapUnary(next connect.UnaryFunc) connect.UnaryFunc {
	return func(ctx context.Context, req connect.AnyRequest) (connect.AnyResponse, error) {
		if req.Spec().IsClient {
			return next(ctx, req)
		}
		markHandled(ctx)
		id := RequestID(ctx)
		start := time.Now()
		res, err := next(ctx, req)
		l.done(ctx, id, req.Spec().Procedure, req.Peer().Protocol, start, err)
		return res, err
	}
}

func (l *logInterceptor) WrapStreamingClient(next connect.StreamingClientFunc) connect.StreamingClientFunc {
	return next
}

func (l *logInterceptor) WrapStreamingHandler(next connect.StreamingHandlerFunc) connect.StreamingHandlerFunc {
	return func(ctx context.Context, conn connect.StreamingHandlerConn) error {
		markHandled(ctx)
		id := RequestID(ctx)
		start := time.Now()
		err := next(ctx, conn)
		l.done(ctx, id, conn.Spec().Procedure, conn.Peer().Protocol, start, err)
		return err
	}
}

func (l *logInterceptor) done(ctx context.Context, id, procedure, protocol string, start time.Time, err error) {
	level := slog.LevelDebug
	if err != nil {
		level = slog.LevelInfo
		if code := connect.CodeOf(err); code == connect.CodeInternal || code == connect.CodeUnknown {
			level = slog.LevelError
		}
	}
	// Successful calls log at debug: skip building the line at all when
	// that is off, since this runs on every call.
	if !l.log.Enabled(ctx, level) {
		return
	}
	attrs := []slog.Attr{
		slog.String("request_id", id),
		slog.String("procedure", procedure),
		slog.String("protocol", protocol),
		slog.Duration("duration", time.Since(start)),
	}
	if c := CallerRequestID(ctx); c != "" {
		attrs = append(attrs, slog.String("caller_request_id", c))
	}
	if sc := trace.SpanContextFromContext(ctx); sc.IsValid() {
		attrs = append(attrs, slog.String("trace_id", sc.TraceID().String()))
	}
	if err == nil {
		l.log.LogAttrs(ctx, level, "call", append(attrs, slog.String("code", "ok"))...)
		return
	}
	l.log.LogAttrs(ctx, level, "call failed", append(attrs,
		slog.String("code", connect.CodeOf(err).String()),
		slog.String("cause", Cause(err).Error()))...)
}
