package gateway

import (
	"context"
	"log/slog"
	"net/http"
	"net/http/httputil"
	"strconv"
	"time"

	"connectrpc.com/connect"

	"github.com/alecrypt/alecrypt/service/aleerr"
	"github.com/alecrypt/alecrypt/service/wire"
)

// request is one HTTP request or WebSocket handshake through the gateway,
// from ServeHTTP to the reverse proxy's last callback: what its handling
// found out and how it ended. Every path ends it exactly once, through the
// method that answers the client (end is the one place the outcome is
// written), and finish reads the outcome once, for the metrics. The proxy
// is the request's own, its callbacks bound to it, so they need no context
// value to find the request.
type request struct {
	g       *Gateway
	w       http.ResponseWriter
	r       *http.Request
	start   time.Time
	kind    string // kindHTTP or kindWebSocket
	outcome string // one of the outcome* labels; "" until the request ends
	counted bool   // finish has recorded the request

	// What the proxy's callbacks need of a forwarded request.
	origin string      // set when the gateway answers CORS
	seal   string      // the fingerprint to seal the response under; "" when it is not sealed
	opened bool        // the body was decrypted: strip the ALE parameters
	params wire.Params // the ALE values of an opened request
	// proxy is the request's reverse proxy (forward), held here so that
	// it costs no allocation of its own.
	proxy httputil.ReverseProxy
}

func (g *Gateway) newRequest(w http.ResponseWriter, r *http.Request, start time.Time) *request {
	return &request{g: g, w: w, r: r, start: start, kind: kindHTTP}
}

// end records how the request ended. The first answer is the request's:
// a request is answered once.
func (q *request) end(outcome string) {
	if q.outcome == "" {
		q.outcome = outcome
	}
}

// finish records the request in the metrics, once: a bridged WebSocket is
// counted as the bridge starts (its duration is the handshake's),
// everything else when ServeHTTP returns.
func (q *request) finish() {
	if q.counted {
		return
	}
	q.counted = true
	q.g.metrics.request(q.kind, q.outcome, time.Since(q.start))
}

// fail ends the request with the gateway's own JSON error (no ALE code).
func (q *request) fail(outcome string, status int, msg string) {
	q.end(outcome)
	writeJSONError(q.w, status, msg)
}

// refuse answers an ALE error from the gateway's own checks: 400 with the
// exact EK body.
func (q *request) refuse(err error) {
	code := wire.CodeDecrypt
	if e, ok := wire.AsError(err); ok {
		code = e.Code
	}
	q.end(aleOutcome(code))
	q.g.log.Info("request refused", "method", q.r.Method, "path", q.r.URL.Path, "ale_code", code, "reason", err.Error())
	wire.WriteError(q.w, code)
}

// cryptoFailed answers a failed alecryptd call, as classify decides.
func (q *request) cryptoFailed(err error) {
	r := q.r
	code := connect.CodeOf(err)
	switch f := classify(code, aleerr.Code(err)); f {
	case failHeaders, failDecrypt:
		ale := wire.CodeDecrypt
		if f == failHeaders {
			ale = wire.CodeHeaders
		}
		q.end(aleOutcome(ale))
		q.g.logRefusal(r.Context(), code, "request refused", "method", r.Method, "path", r.URL.Path, "ale_code", ale, "reason", err.Error())
		wire.WriteError(q.w, ale)
	case failTooLarge:
		q.fail(outcomeTooLarge, http.StatusRequestEntityTooLarge, msgTooLarge)
	default:
		q.g.log.Error("crypto service failed", "method", r.Method, "path", r.URL.Path, "err", err)
		q.fail(outcomeCryptoError, http.StatusBadGateway, "crypto service unavailable")
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
