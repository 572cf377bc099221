package api

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"log/slog"
	"time"

	"connectrpc.com/connect"
	"go.opentelemetry.io/otel/trace"
)

// RequestIDHeader carries the request id in and out; a caller's id is kept
// (so a gateway's id follows the request), otherwise one is generated. The
// guard assigns it and sets the response header, so refusals carry it too.
const RequestIDHeader = "X-Request-Id"

type requestIDKey struct{}

// RequestID returns the id of the call ctx belongs to.
func RequestID(ctx context.Context) string {
	id, _ := ctx.Value(requestIDKey{}).(string)
	return id
}

func requestID(h interface{ Get(string) string }) string {
	if id := h.Get(RequestIDHeader); id != "" && len(id) <= 128 {
		return id
	}
	var b [8]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
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
