package gateway_test

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/alecrypt/alecrypt/gen/ale/v1/alev1connect"
	"github.com/alecrypt/alecrypt/internal/api"
	"github.com/alecrypt/alecrypt/internal/engine"
	"github.com/alecrypt/alecrypt/internal/gateway"
)

// restartable is alecryptd's side of a test that restarts it: one real API
// handler at a time, each with its own shutdown (api.Options.Stopping, what
// SIGTERM cancels in alecryptd). A stream stays with the handler that
// accepted it, as it would with the process.
type restartable struct {
	mk   newAPI
	cur  atomic.Pointer[instance]
	wrap func(http.Handler) http.Handler // around each new instance; nil: none
}

type instance struct {
	h    http.Handler
	stop context.CancelFunc
}

func (r *restartable) start() *instance {
	ctx, stop := context.WithCancel(context.Background())
	var h http.Handler = r.mk(api.Options{Stopping: ctx})
	if r.wrap != nil {
		h = r.wrap(h)
	}
	in := &instance{h: h, stop: stop}
	r.cur.Store(in)
	return in
}

func (r *restartable) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	r.cur.Load().h.ServeHTTP(w, req)
}

func newRestartableEnv(t *testing.T, opts gateway.Options, wrap func(http.Handler) http.Handler) (*env, *restartable) {
	t.Helper()
	r := &restartable{wrap: wrap}
	e := newEnvWith(t, opts, 0, func(mk newAPI) http.Handler {
		r.mk = mk
		r.start()
		return r
	})
	return e, r
}

// roundTrip sends a good frame and checks the kitchen's echo comes back.
func (e *env) roundTrip(t *testing.T, ctx context.Context, c *websocket.Conn, plaintext string) {
	t.Helper()
	if err := c.Write(ctx, websocket.MessageText, []byte(e.frame(t, "k-ctr", plaintext))); err != nil {
		t.Fatal(err)
	}
	_, b, err := c.Read(ctx)
	if err != nil {
		t.Fatalf("frame %s: the connection ended: %v", plaintext, err)
	}
	if got := e.open(t, string(b)); got != "echo:"+plaintext {
		t.Fatalf("frame %s: got %q back", plaintext, got)
	}
}

func (e *env) waitForLog(t *testing.T, ctx context.Context, substr string) {
	t.Helper()
	for !strings.Contains(e.logs.String(), substr) {
		if ctx.Err() != nil {
			t.Fatalf("no log line with %q; logs:\n%s", substr, e.logs.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestWebSocketSurvivesAlecryptdShutdown: alecryptd shutting down ends an
// idle crypto stream at once with Unavailable. The WebSocket stays up and
// its next frame goes over a new stream, to the alecryptd that took over.
func TestWebSocketSurvivesAlecryptdShutdown(t *testing.T) {
	t.Parallel()
	e, crypto := newRestartableEnv(t, defaultOpts(), nil)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	c := dial(t, ctx, wsURL(e.url)+"/kds", e.handshakeHeader("k-ctr"))
	e.roundTrip(t, ctx, c, `{"ticket":1}`)

	old := crypto.cur.Load()
	crypto.start() // the replacement takes new streams
	old.stop()     // SIGTERM for the old one: its idle stream ends now
	// Let the gateway see the end first (the frame would otherwise be the
	// retry case, the next test); the frame is the check either way.
	wctx, wcancel := context.WithTimeout(ctx, 5*time.Second)
	for !strings.Contains(e.logs.String(), "crypto stream ended") && wctx.Err() == nil {
		time.Sleep(10 * time.Millisecond)
	}
	wcancel()

	e.roundTrip(t, ctx, c, `{"ticket":2}`)
	e.roundTrip(t, ctx, c, `{"ticket":3}`)
	if msgs := strings.Join(e.kitchen.Messages(), "|"); msgs != `{"ticket":1}|{"ticket":2}|{"ticket":3}` {
		t.Errorf("kitchen got %q, want each ticket once", msgs)
	}
}

// drainOnNextMessage wraps an API handler: once armed, the next stream
// message that starts to arrive finds the server shutting down, exactly as
// when SIGTERM lands while the message is on the wire. alecryptd then ends
// the stream with Unavailable without reading the message, so the gateway
// must send it again on a new stream.
type drainOnNextMessage struct {
	next  http.Handler
	stop  func()
	armed atomic.Bool
	fired atomic.Bool
}

func (d *drainOnNextMessage) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path == alev1connect.CryptoServiceStreamProcedure {
		r.Body = &drainingBody{ReadCloser: r.Body, d: d}
	}
	d.next.ServeHTTP(w, r)
}

type drainingBody struct {
	io.ReadCloser
	d *drainOnNextMessage
}

func (b *drainingBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	if n == 0 || !b.d.armed.Load() || b.d.fired.Swap(true) {
		return n, err
	}
	// The message's first byte is here and the server starts stopping:
	// alecryptd's guard, idle until this byte, sets the stream's read
	// deadline to now. Wait for that deadline, as a read racing the
	// shutdown would see it, and drop what arrived.
	b.d.stop()
	buf := make([]byte, 4096)
	for {
		if _, err := b.ReadCloser.Read(buf); err != nil {
			return 0, err
		}
	}
}

// TestWebSocketRetriesItemAlecryptdDidNotRun: a frame whose stream ended
// with Unavailable before alecryptd read it is decrypted on a new stream,
// once, and reaches the kitchen once; the WebSocket stays up.
func TestWebSocketRetriesItemAlecryptdDidNotRun(t *testing.T) {
	t.Parallel()
	var first *drainOnNextMessage
	wrapped := 0
	e, crypto := newRestartableEnv(t, defaultOpts(), func(h http.Handler) http.Handler {
		if wrapped++; wrapped > 1 {
			return h
		}
		first = &drainOnNextMessage{next: h}
		return first
	})
	first.stop = crypto.cur.Load().stop
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	c := dial(t, ctx, wsURL(e.url)+"/kds", e.handshakeHeader("k-ctr"))
	// The echo comes back sealed on the same stream: once it is here, both
	// of the stream's messages so far were answered.
	e.roundTrip(t, ctx, c, `{"ticket":1}`)

	crypto.start()
	first.armed.Store(true)
	e.roundTrip(t, ctx, c, `{"ticket":2}`)
	if !first.fired.Load() {
		t.Fatal("the frame never reached the stopping alecryptd")
	}
	e.waitForLog(t, ctx, "sending it again on a new stream")
	e.roundTrip(t, ctx, c, `{"ticket":3}`)
	if msgs := strings.Join(e.kitchen.Messages(), "|"); msgs != `{"ticket":1}|{"ticket":2}|{"ticket":3}` {
		t.Errorf("kitchen got %q, want each ticket once", msgs)
	}
}

// TestWebSocketFrameRefusedByAlecryptd: alecryptd ends the stream with
// ResourceExhausted when a message is over its size limit or its in-flight
// budget. That is the one frame's answer: the client gets the gateway's
// too-large body for it, the kitchen nothing, and the WebSocket stays up.
func TestWebSocketFrameRefusedByAlecryptd(t *testing.T) {
	t.Parallel()
	big := `{"pad":"` + strings.Repeat("x", 4000) + `"}`
	for _, tc := range []struct {
		name string
		opts api.Options
	}{
		{"over the message size limit", api.Options{MaxRequestBytes: 2048}},
		// The stream alegate opens (its read-ahead) and small frames fit; a
		// 4 KB frame is charged about 24 KB.
		{"over the in-flight budget", api.Options{MaxInflightBytes: api.StreamCharge + 12000}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			e := newEnvWith(t, defaultOpts(), 0, func(mk newAPI) http.Handler { return mk(tc.opts) })
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			c := dial(t, ctx, wsURL(e.url)+"/kds", e.handshakeHeader("k-ctr"))
			e.roundTrip(t, ctx, c, `{"ticket":1}`)
			if err := c.Write(ctx, websocket.MessageText, []byte(e.frame(t, "k-ctr", big))); err != nil {
				t.Fatal(err)
			}
			if got := readText(t, ctx, c); got != `{"error":"payload too large"}` {
				t.Fatalf("oversized frame: got %s", got)
			}
			e.roundTrip(t, ctx, c, `{"ticket":2}`)
			if msgs := strings.Join(e.kitchen.Messages(), "|"); msgs != `{"ticket":1}|{"ticket":2}` {
				t.Errorf("kitchen got %q", msgs)
			}
		})
	}
}

// TestWebSocketIdleTimeout: a bridge on which nothing passes is closed on
// both sides with 1001 "idle timeout". That activity (messages, pings,
// pongs) keeps a bridge open is TestIdleTimer's, on a simulated clock.
func TestWebSocketIdleTimeout(t *testing.T) {
	t.Parallel()
	opts := defaultOpts()
	opts.WebSocketIdleTimeout = 3 * time.Second
	e := newEnv(t, opts, 0)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	c := dial(t, ctx, wsURL(e.url)+"/kds", e.handshakeHeader("k-ctr"))
	e.roundTrip(t, ctx, c, `{"ticket":1}`)
	_, _, err := c.Read(ctx)
	var ce websocket.CloseError
	if !errors.As(err, &ce) || ce.Code != websocket.StatusGoingAway || ce.Reason != "idle timeout" {
		t.Fatalf("idle connection ended with %v, want 1001 idle timeout", err)
	}
	e.waitForLog(t, ctx, "websocket idle; closing")
}

// TestConcurrentRequestsShareStreams: concurrent requests' crypto calls are
// coalesced into batch messages on shared streams; each request still gets
// its own answer (its plaintext, or the error its key earns), and a large
// body takes a unary call of its own.
func TestConcurrentRequestsShareStreams(t *testing.T) {
	t.Parallel()
	opts := defaultOpts()
	opts.EncryptResponses = true
	e := newEnv(t, opts, 0)
	const n = 96
	type answer struct {
		status int
		body   string
	}
	got := make([]answer, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			order := fmt.Sprintf(`{"order":%d}`, i)
			if i%16 == 0 {
				order = fmt.Sprintf(`{"order":%d,"pad":"%s"}`, i, strings.Repeat("x", 100<<10))
			}
			env := e.seal(t, "k-ctr", order)
			switch i % 4 {
			case 1:
				env.Fingerprint = "k-nope"
			case 2:
				env.Fingerprint = "k-denied"
			}
			res, body := e.post(t, "/orders", aleHeader(env), b64(env.Message))
			if res.StatusCode == http.StatusOK {
				iv, _ := base64Decode(res.Header.Get("Sec-Iv"))
				body = e.openParts(t, iv, res.Header.Get("Sec-Fingerprint"), body)
			}
			got[i] = answer{res.StatusCode, body}
		})
	}
	wg.Wait()
	forwarded := 0
	for i, a := range got {
		want := answer{http.StatusOK, fmt.Sprintf(`{"order":%d}`, i)}
		if i%16 == 0 {
			want.body = fmt.Sprintf(`{"order":%d,"pad":"%s"}`, i, strings.Repeat("x", 100<<10))
		}
		if i%4 == 1 || i%4 == 2 {
			want = answer{http.StatusBadRequest, ale2}
		} else {
			forwarded++
		}
		if a != want {
			t.Errorf("request %d: %d %.80s, want %d %.80s", i, a.status, a.body, want.status, want.body)
		}
	}
	if len(e.kitchen.Requests()) != forwarded {
		t.Errorf("kitchen got %d requests, want %d", len(e.kitchen.Requests()), forwarded)
	}
}

func base64Decode(s string) ([]byte, error) { return base64.StdEncoding.DecodeString(s) }

// openParts decrypts a sealed response body as the client would.
func (e *env) openParts(t *testing.T, iv []byte, fp, body string) string {
	t.Helper()
	msg, err := base64.StdEncoding.DecodeString(body)
	if err != nil {
		t.Fatalf("sealed body %.80q: %v", body, err)
	}
	pt, _, err := e.sealer.Decrypt(context.Background(), engine.Envelope{IV: iv, Fingerprint: fp, Message: msg}, nil, engine.FormatAny)
	if err != nil {
		t.Fatalf("sealed body does not open: %v", err)
	}
	return string(pt)
}
