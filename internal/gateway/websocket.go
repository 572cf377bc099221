package gateway

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"connectrpc.com/connect"
	"go.opentelemetry.io/otel/trace"

	alev1 "github.com/alecrypt/alecrypt/gen/ale/v1"
	"github.com/alecrypt/alecrypt/internal/wsconn"
	"github.com/alecrypt/alecrypt/service/aleerr"
	"github.com/alecrypt/alecrypt/service/wire"
)

// isUpgrade is any request asking to switch protocols the way
// httputil.ReverseProxy would forward it (Connection: upgrade and an
// Upgrade header).
func isUpgrade(r *http.Request) bool {
	return wsconn.HasToken(r.Header, "Connection", "upgrade") && r.Header.Get("Upgrade") != ""
}

// serveWebSocket checks the handshake (protocol, ALE values, and that the
// key is known, fits the IV and can seal what the kitchen sends back),
// all before the kitchen is dialed or anything upgraded; then it bridges:
// each client frame {"iv","fingerprint","message"} is decrypted and its
// plaintext sent upstream; each upstream message goes to the client as a
// fresh frame under the connection's key. A bad frame gets an ALE error
// frame and is dropped; the connection stays up. The Origin was checked by
// ServeHTTP.
func (q *request) serveWebSocket() {
	g, w, r := q.g, q.w, q.r
	// A handshake that cannot be accepted is refused before the kitchen is
	// dialed: the dial carries the client's Authorization and Cookie, and
	// a refused client must not open a kitchen connection with them.
	if status, reason := wsconn.CheckHandshake(w, r); status != 0 {
		g.log.Info("websocket handshake refused", "path", r.URL.Path, "status", status, "reason", reason)
		q.fail(outcomeBadHandshake, status, reason)
		return
	}
	p, err := wire.ReadParams(r.Header, r.URL.Query())
	if err != nil {
		q.refuse(err)
		return
	}
	iv, err := p.Check()
	if err != nil {
		q.refuse(err)
		return
	}
	if err := g.probeHandshake(r.Context(), iv, p.Fingerprint); err != nil {
		q.cryptoFailed(err)
		return
	}
	// The handshake claims nothing for replay rejection: it carries no
	// ciphertext, so anyone can forge it (replay.go).

	ctx, cancel := context.WithCancel(context.WithoutCancel(r.Context()))
	up, err := wsconn.Dial(ctx, g.upstreamWS(r), g.upstreamDial(upstreamHeaders(r, p)))
	if err != nil {
		cancel()
		g.log.Warn("upstream websocket failed", "path", r.URL.Path, "err", err)
		q.fail(outcomeUpstreamError, http.StatusBadGateway, "upstream unavailable")
		return
	}
	up.SetReadLimit(g.opts.MaxFrameBytes)

	// The Origin was judged by the gateway's own rule; no extension
	// (permessage-deflate) is chosen, so every client can read what it
	// gets.
	client, err := wsconn.Accept(w, r)
	if err != nil {
		q.end(outcomeBadHandshake)
		g.log.Info("websocket accept failed", "path", r.URL.Path, "err", err)
		up.Close(wsconn.StatusGoingAway, "client handshake failed")
		up.CloseNow()
		cancel()
		return
	}
	// The bridge may last hours: the handshake is what is counted and timed.
	q.end(outcomeForwarded)
	q.finish()
	g.metrics.websocketOpen(1)
	// Base64 makes a frame 4/3 of its plaintext, plus the JSON around it.
	client.SetReadLimit(g.opts.MaxFrameBytes*4/3 + 1024)

	// A bridge nobody uses is closed like an idle keep-alive connection,
	// both sides told why; pings count as use, so clients that heartbeat
	// stay up.
	idle := newIdleTimer(g.opts.WebSocketIdleTimeout)
	up.OnControl(idle.touch)
	client.OnControl(idle.touch)
	path := r.URL.Path
	stopIdle := idle.start(func() {
		g.log.Info("websocket idle; closing", "path", path, "after", g.opts.WebSocketIdleTimeout)
		up.Close(wsconn.StatusGoingAway, "idle timeout")
		client.Close(wsconn.StatusGoingAway, "idle timeout")
	})
	// Frames' crypto calls go on the shared streams, traced or not: a
	// span per frame would outlive any trace of the handshake.
	ctx = trace.ContextWithSpanContext(ctx, trace.SpanContext{})
	claims, fingerprint := newConnClaims(iv), p.Fingerprint

	// The handler returns once the bridge is up, and the bridge runs on
	// two goroutines of its own, one per direction: an idle bridge holds
	// two small stacks, its two connections and no buffer (a read waits
	// for its socket to be readable before it takes one), and not the
	// handler's stack, the request, its response writer and the server's
	// connection state.
	go func() {
		defer cancel()
		defer up.CloseNow()
		defer client.CloseNow()
		defer g.metrics.websocketOpen(-1)
		defer stopIdle()
		done := make(chan struct{})
		go func() {
			defer close(done)
			g.upstreamToClient(ctx, up, client, fingerprint, idle)
			// Whatever ended this direction, the other's reader ends too:
			// with the client's answer to a close, or its timeout. (A
			// close sent already makes this a no-op.)
			client.Close(wsconn.StatusGoingAway, "peer went away")
			up.AwaitClose()
		}()
		g.clientToUpstream(ctx, client, up, claims, idle)
		up.Close(wsconn.StatusGoingAway, "peer went away")
		client.AwaitClose()
		<-done
	}()
}

// probeHandshake proves what the connection will need before anything is
// dialed, with the two checks alecryptd offers that use no content, so
// neither counts as use of the key (a handshake proves no possession of it:
// anyone can send one under any fingerprint):
//
//   - decrypting an empty message under the handshake's IV: the key is
//     known, the gateway's policy lets it decrypt with it, its state allows
//     decryption and the IV fits its algorithm. With aes-256-ctr this
//     succeeds (there is nothing to open). A key that authenticates
//     refuses it as not authentic (InvalidArgument, ALE 2: an empty message
//     has no tag), which alecryptd answers only after every other check has
//     passed;
//   - sealing nothing: the key can seal the kitchen's messages to the
//     client, so a key that can only decrypt is refused here rather than
//     after the kitchen has acted on a frame it cannot answer. Its message
//     tells whether the key authenticates (a GCM seal of nothing is its
//     tag), which is when the first check's refusal is the expected one.
func (g *Gateway) probeHandshake(ctx context.Context, iv []byte, fingerprint string) error {
	_, openErr := g.decrypt(ctx, &alev1.DecryptRequest{Envelope: &alev1.Envelope{Iv: iv, Fingerprint: fingerprint}})
	if openErr != nil && !notAuthentic(openErr) {
		return openErr
	}
	res, err := g.encrypt(ctx, &alev1.EncryptRequest{Key: byFingerprint(fingerprint)})
	if err != nil {
		return err
	}
	if openErr != nil && len(res.GetEnvelope().GetMessage()) == 0 {
		// A key that does not authenticate has no reason to refuse an
		// empty message.
		return openErr
	}
	return nil
}

// notAuthentic reports alecryptd's answer to a message that did not open:
// the only InvalidArgument that carries ALE 2 (docs/api.md, "Errors").
func notAuthentic(err error) bool {
	return connect.CodeOf(err) == connect.CodeInvalidArgument && aleerr.Code(err) == wire.CodeDecrypt
}

// Each direction ends when its reader does: the close (or failure) is
// passed to the other side, whose reader then ends with its peer's answer
// to it (or after wsconn.CloseTimeout).
func (g *Gateway) clientToUpstream(ctx context.Context, client, up *wsconn.Conn, claims *connClaims, idle *idleTimer) {
	for {
		buf := getFrameBuf()
		var err error
		_, *buf, err = client.Read((*buf)[:0])
		if err != nil {
			putFrameBuf(buf)
			closeLike(up, err)
			return
		}
		idle.touch()
		f, err := wire.ParseFrame(*buf) // f shares no memory with the buffer
		putFrameBuf(buf)
		if err != nil {
			if !g.refuseFrame(client, err) {
				return
			}
			continue
		}
		res, err := g.decrypt(ctx, &alev1.DecryptRequest{
			Envelope: &alev1.Envelope{Iv: f.IV, Fingerprint: f.Fingerprint, Message: f.Message},
			Expect:   g.opts.FrameFormat,
		})
		if err != nil {
			code := connect.CodeOf(err)
			switch fail := classify(code, aleerr.Code(err)); fail {
			case failHeaders, failDecrypt:
				c := wire.CodeDecrypt
				if fail == failHeaders {
					c = wire.CodeHeaders
				}
				g.logRefusal(ctx, code, "websocket frame refused", "ale_code", c, "reason", reasonOf(err))
				g.metrics.frame("client", aleOutcome(c))
				if err := client.Write(wsconn.Text, wire.ErrorBody(c)); err != nil {
					return
				}
				continue
			case failTooLarge:
				// Over alecryptd's size limit, or alecryptd busy: this frame
				// is dropped with the body an HTTP request gets for the same
				// answer (413), and the connection stays up.
				g.metrics.frame("client", outcomeTooLarge)
				g.log.Info("websocket frame refused by alecryptd as too large or busy", "reason", reasonOf(err))
				if err := client.Write(wsconn.Text, jsonError(msgTooLarge)); err != nil {
					return
				}
				continue
			}
		}
		if err != nil {
			g.metrics.frame("client", outcomeCryptoError)
			g.log.Error("crypto service failed on a websocket frame; closing", "err", err)
			client.Close(wsconn.StatusInternalError, "crypto service unavailable")
			up.Close(wsconn.StatusGoingAway, "client side closed")
			return
		}
		if forward, keepOpen := g.claimFrame(ctx, client, up, claims, f); !forward {
			if !keepOpen {
				return
			}
			continue
		}
		pt := res.GetPlaintext()
		typ := wsconn.Text
		if !utf8.Valid(pt) {
			typ = wsconn.Binary
		}
		if err := up.Write(typ, pt); err != nil {
			g.metrics.frame("client", outcomeUpstreamError)
			client.Close(wsconn.StatusInternalError, "upstream write failed")
			return
		}
		g.metrics.frame("client", outcomeForwarded)
	}
}

// refuseFrame answers a frame that failed the gateway's own checks with
// its ALE error frame; false when the client cannot be written to.
func (g *Gateway) refuseFrame(client *wsconn.Conn, err error) bool {
	code := wire.CodeDecrypt
	if e, ok := wire.AsError(err); ok {
		code = e.Code
	}
	g.log.Info("websocket frame refused", "ale_code", code, "reason", err.Error())
	g.metrics.frame("client", aleOutcome(code))
	return client.Write(wsconn.Text, wire.ErrorBody(code)) == nil
}

func (g *Gateway) upstreamToClient(ctx context.Context, up, client *wsconn.Conn, fingerprint string, idle *idleTimer) {
	key := byFingerprint(fingerprint)
	for {
		buf := getFrameBuf()
		var err error
		_, *buf, err = up.Read((*buf)[:0])
		if err != nil {
			putFrameBuf(buf)
			closeLike(client, err)
			return
		}
		idle.touch()
		res, err := g.encrypt(ctx, &alev1.EncryptRequest{Plaintext: *buf, Key: key})
		if err != nil {
			// The buffer is not pooled again: a call that failed may still
			// be queued to be sent with it.
			// Never send plaintext the client expects encrypted.
			g.metrics.frame("upstream", outcomeCryptoError)
			g.log.Error("encrypting an upstream websocket message failed; closing", "err", err)
			client.Close(wsconn.StatusInternalError, "encryption failed")
			up.Close(wsconn.StatusGoingAway, "client side closed")
			return
		}
		// Answered: the plaintext has been sent, so its buffer takes the
		// frame to the client.
		e := res.GetEnvelope()
		*buf = wire.AppendFrame((*buf)[:0], wire.Frame{IV: e.GetIv(), Fingerprint: e.GetFingerprint(), Message: e.GetMessage()})
		err = client.Write(wsconn.Text, *buf) // copies the frame out before it returns
		putFrameBuf(buf)
		if err != nil {
			up.Close(wsconn.StatusGoingAway, "client write failed")
			return
		}
		g.metrics.frame("upstream", outcomeForwarded)
	}
}

// frameBufs holds the buffers client frames are read into and frames to
// the client are written from, for as long as one frame takes: Conn.Read
// would grow a new buffer for every frame.
var frameBufs = sync.Pool{New: func() any { return new([]byte) }}

// maxPooledFrame bounds the buffers kept in frameBufs: one huge frame's
// buffer goes back to the garbage collector rather than staying pooled.
const maxPooledFrame = 64 << 10

func getFrameBuf() *[]byte { return frameBufs.Get().(*[]byte) }

func putFrameBuf(b *[]byte) {
	if cap(*b) <= maxPooledFrame {
		frameBufs.Put(b)
	}
}

// closeLike closes c with the status and reason that ended the other side,
// so close codes pass through the gateway.
func closeLike(c *wsconn.Conn, err error) {
	var ce wsconn.CloseError
	if errors.As(err, &ce) {
		_ = c.Close(ce.Code, ce.Reason)
		return
	}
	_ = c.Close(wsconn.StatusGoingAway, "peer went away")
}

// upstreamWS is the upstream WebSocket URL for r: the upstream's scheme
// turned ws(s), r's path, and r's query without the ALE parameters.
func (g *Gateway) upstreamWS(r *http.Request) string {
	u := *g.upstream
	switch u.Scheme {
	case "https":
		u.Scheme = "wss"
	default:
		u.Scheme = "ws"
	}
	u.Path = strings.TrimSuffix(u.Path, "/") + r.URL.Path
	u.RawPath = ""
	u.RawQuery = wire.StripQuery(r.URL.RawQuery)
	return u.String()
}

// upstreamDial is how the bridge reaches the kitchen: as HTTP requests do,
// with the upstream transport's dialer, TLS settings and proxy rule when it
// is an *http.Transport.
func (g *Gateway) upstreamDial(h http.Header) wsconn.DialOptions {
	o := wsconn.DialOptions{Header: h}
	if tr, ok := g.opts.Transport.(*http.Transport); ok {
		o.DialContext = tr.DialContext
		o.TLSConfig = tr.TLSClientConfig
		o.Proxy = tr.Proxy
	}
	return o
}

// upstreamHeaders forwards the handshake headers a backend uses (auth,
// cookies, request id), never the ALE ones or the WebSocket protocol's own.
func upstreamHeaders(r *http.Request, p wire.Params) http.Header {
	out := http.Header{}
	for _, k := range []string{"Authorization", "Cookie", "X-Request-Id", "Traceparent", "Tracestate"} {
		if v := r.Header.Values(k); len(v) > 0 {
			out[k] = v
		}
	}
	if p.AuthorizationFromQuery {
		out.Set("Authorization", p.Authorization)
	}
	return out
}

// idleTimer closes a bridge on which nothing passed for d. Activity is a
// timestamp stored per message (no timer reset on the hot path); the timer
// re-arms itself for what is left when it fires early.
type idleTimer struct {
	d    time.Duration
	last atomic.Int64 // unix nanoseconds of the last activity
	// now is time.Now; tests replace it so that what counts as idle does
	// not depend on how promptly a busy machine runs their goroutines.
	now func() time.Time
}

// newIdleTimer returns a timer that never fires for d <= 0.
func newIdleTimer(d time.Duration) *idleTimer {
	t := &idleTimer{d: d, now: time.Now}
	t.touch()
	return t
}

func (t *idleTimer) touch() { t.last.Store(t.now().UnixNano()) }

// start arms the timer: onIdle runs once the bridge has been idle for d.
// The returned function disarms it.
func (t *idleTimer) start(onIdle func()) (stop func()) {
	if t.d <= 0 {
		return func() {}
	}
	var mu sync.Mutex
	stopped := false
	var timer *time.Timer
	mu.Lock()
	defer mu.Unlock()
	timer = time.AfterFunc(t.d, func() {
		mu.Lock()
		defer mu.Unlock()
		if stopped {
			return
		}
		if left := t.d - t.now().Sub(time.Unix(0, t.last.Load())); left > 0 {
			timer.Reset(left)
			return
		}
		stopped = true
		go onIdle()
	})
	return func() {
		mu.Lock()
		stopped = true
		mu.Unlock()
		timer.Stop()
	}
}
