package gateway_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/alecrypt/alecrypt/service/gateway"
	"github.com/alecrypt/alecrypt/service/key"
	"github.com/alecrypt/alecrypt/service/replay"
	"github.com/alecrypt/alecrypt/service/suite"
)

func replayOpts(s replay.Store) gateway.Options {
	o := defaultOpts()
	o.Replay = s
	return o
}

// frameWithIV seals plaintext under fp with a chosen IV, as a client that
// reuses its handshake's IV for frames does.
func frameWithIV(t *testing.T, fp string, iv []byte, plaintext string) string {
	t.Helper()
	c, err := suite.Derive(record(fp, key.Active))
	if err != nil {
		t.Fatal(err)
	}
	msg, err := c.Seal(nil, iv, []byte(plaintext), nil)
	if err != nil {
		t.Fatal(err)
	}
	return fmt.Sprintf(`{"iv":%q,"fingerprint":%q,"message":%q}`, b64(iv), fp, b64(msg))
}

// TestReplayHTTP: a request sent twice reaches the kitchen once; the copy
// gets errorCode 2. Without a window (the default) both go through.
func TestReplayHTTP(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name      string
		store     replay.Store
		wantAgain int
		wantSeen  int
	}{
		{"off by default", nil, http.StatusOK, 3},
		{"memory window", replay.NewMemory(time.Minute, 100, time.Now), http.StatusBadRequest, 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t, replayOpts(tc.store), 0)
			order := e.seal(t, "k-ctr", `{"order":1}`)
			if res, body := e.post(t, "/orders", aleHeader(order), b64(order.Message)); res.StatusCode != http.StatusOK {
				t.Fatalf("first request: %d %s", res.StatusCode, body)
			}
			res, body := e.post(t, "/orders", aleHeader(order), b64(order.Message))
			if res.StatusCode != tc.wantAgain || (tc.wantAgain == http.StatusBadRequest && body != ale2) {
				t.Fatalf("the same request again: %d %s, want %d", res.StatusCode, body, tc.wantAgain)
			}
			// A new message (fresh IV) always goes through.
			next := e.seal(t, "k-ctr", `{"order":2}`)
			if res, body := e.post(t, "/orders", aleHeader(next), b64(next.Message)); res.StatusCode != http.StatusOK {
				t.Fatalf("a new request: %d %s", res.StatusCode, body)
			}
			if got := e.kitchen.Seen(); got != tc.wantSeen {
				t.Fatalf("kitchen saw %d requests, want %d", got, tc.wantSeen)
			}
		})
	}
}

// TestReplayNotClaimedWhenRefused: a request refused for another reason
// (a body that fails the JSON check) claims nothing, so forged IVs fill no
// window and the genuine message with that IV still goes through.
func TestReplayNotClaimedWhenRefused(t *testing.T) {
	t.Parallel()
	m := replay.NewMemory(time.Minute, 100, time.Now)
	e := newEnv(t, replayOpts(m), 0)
	order := e.seal(t, "k-ctr", `{"order":1}`)
	if res, body := e.post(t, "/orders", aleHeader(order), b64([]byte("garbage!!!"))); res.StatusCode != http.StatusBadRequest || body != ale2 {
		t.Fatalf("garbage body: %d %s, want 400 ALE 2", res.StatusCode, body)
	}
	if m.Len() != 0 {
		t.Fatalf("a refused request claimed %d pairs", m.Len())
	}
	if res, body := e.post(t, "/orders", aleHeader(order), b64(order.Message)); res.StatusCode != http.StatusOK {
		t.Fatalf("the genuine request after a forgery with its IV: %d %s", res.StatusCode, body)
	}
}

// failingStore cannot tell (a Redis that is down, a full memory store).
type failingStore struct{ err error }

func (f failingStore) Claim(context.Context, replay.ID) error { return f.err }
func (f failingStore) Ready(context.Context) error            { return f.err }

// TestReplayFailsClosed: when the store cannot tell, nothing is forwarded
// unchecked: HTTP requests and handshakes get 503, and a connection whose
// frame cannot be checked is closed with 1013.
func TestReplayFailsClosed(t *testing.T) {
	t.Parallel()
	for _, err := range []error{replay.ErrFull, errors.New("replay store: dial tcp 127.0.0.1:6379: connection refused")} {
		t.Run(err.Error(), func(t *testing.T) {
			t.Parallel()
			e := newEnv(t, replayOpts(failingStore{err}), 0)
			order := e.seal(t, "k-ctr", `{"order":1}`)
			res, body := e.post(t, "/orders", aleHeader(order), b64(order.Message))
			if res.StatusCode != http.StatusServiceUnavailable || body != `{"error":"replay check unavailable"}` || res.Header.Get("Retry-After") == "" {
				t.Fatalf("request with the store down: %d %s, want 503 replay check unavailable with Retry-After", res.StatusCode, body)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			_, hres, derr := websocket.Dial(ctx, wsURL(e.url)+"/kds", &websocket.DialOptions{HTTPHeader: e.handshakeHeader("k-ctr")})
			if derr == nil || hres == nil || hres.StatusCode != http.StatusServiceUnavailable {
				t.Fatalf("handshake with the store down: %v, want 503", derr)
			}
			if e.kitchen.Seen() != 0 || len(e.kitchen.Upgrades()) != 0 {
				t.Fatalf("the kitchen saw %d requests, %d upgrades; want none", e.kitchen.Seen(), len(e.kitchen.Upgrades()))
			}
		})
	}
}

// TestReplayFrames: on a WebSocket, a replayed handshake is refused before
// the kitchen is dialed; a frame sent twice reaches the kitchen once (the
// copy gets the ALE 2 error frame, the connection stays up); frames that
// reuse the handshake's IV pass on their own connection, as clients that
// read EK's text that way send them, and are refused on another connection.
func TestReplayFrames(t *testing.T) {
	t.Parallel()
	e := newEnv(t, replayOpts(replay.NewMemory(time.Minute, 100, time.Now)), 0)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	hsIV := []byte("handshake-iv-001")
	hs := e.handshakeHeader("k-ctr")
	hs.Set("Sec-Iv", b64(hsIV))
	c := dial(t, ctx, wsURL(e.url)+"/kds", hs)

	own := frameWithIV(t, "k-ctr", hsIV, `{"ticket":"shares the handshake IV"}`)
	fresh := e.frame(t, "k-ctr", `{"ticket":2}`)
	for _, tc := range []struct{ name, frame, want string }{
		{"frame with the handshake's IV", own, "echo"},
		{"again: still its own connection's pair", own, "echo"},
		{"a frame with its own IV", fresh, "echo"},
		{"that frame replayed", fresh, ale2},
		{"the connection stays up", e.frame(t, "k-ctr", `{"ticket":3}`), "echo"},
	} {
		if err := c.Write(ctx, websocket.MessageText, []byte(tc.frame)); err != nil {
			t.Fatal(err)
		}
		got := readText(t, ctx, c)
		if tc.want == "echo" {
			if strings.HasPrefix(got, `{"errorCode"`) {
				t.Fatalf("%s: got %s, want the kitchen's echo", tc.name, got)
			}
			continue
		}
		if got != tc.want {
			t.Fatalf("%s: got %s, want %s", tc.name, got, tc.want)
		}
	}

	// The same handshake again: refused before any dial.
	upgrades := len(e.kitchen.Upgrades())
	_, res, err := websocket.Dial(ctx, wsURL(e.url)+"/kds", &websocket.DialOptions{HTTPHeader: hs})
	if err == nil || res == nil || res.StatusCode != http.StatusBadRequest {
		t.Fatalf("replayed handshake: %v, want 400", err)
	}
	if len(e.kitchen.Upgrades()) != upgrades {
		t.Fatal("a replayed handshake dialed the kitchen")
	}

	// Captured frames on a connection of the attacker's own: the frame
	// with the first connection's handshake IV is a replay there.
	c2 := dial(t, ctx, wsURL(e.url)+"/kds", e.handshakeHeader("k-ctr"))
	for _, f := range []string{own, fresh} {
		if err := c2.Write(ctx, websocket.MessageText, []byte(f)); err != nil {
			t.Fatal(err)
		}
		if got := readText(t, ctx, c2); got != ale2 {
			t.Fatalf("captured frame on another connection: got %s, want %s", got, ale2)
		}
	}
	msgs := e.kitchen.Messages()
	if len(msgs) != 4 {
		t.Fatalf("kitchen got %d frames %q, want 4 (no replay among them)", len(msgs), msgs)
	}
}

// downAfter is a store that answers its first claims, then goes down.
type downAfter struct {
	ok    chan struct{}
	inner replay.Store
}

func (d downAfter) Claim(ctx context.Context, id replay.ID) error {
	select {
	case <-d.ok:
		return d.inner.Claim(ctx, id)
	default:
		return errors.New("replay store: connection refused")
	}
}
func (d downAfter) Ready(context.Context) error { return nil }

// TestReplayFrameStoreDown: a frame that cannot be checked never reaches the
// kitchen; the connection is closed with 1013 (try again later).
func TestReplayFrameStoreDown(t *testing.T) {
	t.Parallel()
	s := downAfter{ok: make(chan struct{}, 1), inner: replay.NewMemory(time.Minute, 100, time.Now)}
	s.ok <- struct{}{} // the handshake's claim
	e := newEnv(t, replayOpts(s), 0)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	c := dial(t, ctx, wsURL(e.url)+"/kds", e.handshakeHeader("k-ctr"))
	if err := c.Write(ctx, websocket.MessageText, []byte(e.frame(t, "k-ctr", `{"ticket":1}`))); err != nil {
		t.Fatal(err)
	}
	if _, _, err := c.Read(ctx); websocket.CloseStatus(err) != websocket.StatusTryAgainLater {
		t.Fatalf("read after an unchecked frame: %v, want close 1013", err)
	}
	if msgs := e.kitchen.Messages(); len(msgs) != 0 {
		t.Fatalf("kitchen got %q, want nothing", msgs)
	}
}
