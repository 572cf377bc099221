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

	"github.com/alecrypt/alecrypt/internal/gateway"
	"github.com/alecrypt/alecrypt/internal/key"
	"github.com/alecrypt/alecrypt/internal/replay"
	"github.com/alecrypt/alecrypt/internal/suite"
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
	return fmt.Sprintf(`{"iv":%q,"fingerprint":%q,"message":%q}`, b64(iv), fp, b64(sealWithIV(t, fp, iv, plaintext)))
}

// sealWithIV is the ciphertext of plaintext under fp and iv.
func sealWithIV(t *testing.T, fp string, iv []byte, plaintext string) []byte {
	t.Helper()
	c, err := suite.Derive(record(fp, key.Active))
	if err != nil {
		t.Fatal(err)
	}
	msg, err := c.Seal(nil, iv, []byte(plaintext), nil)
	if err != nil {
		t.Fatal(err)
	}
	return msg
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

func (f failingStore) Claim(context.Context, replay.ID, replay.Owner) (bool, error) {
	return false, f.err
}
func (f failingStore) Release(context.Context, replay.ID, replay.Owner) error { return nil }
func (f failingStore) Ready(context.Context) error                            { return f.err }

// TestReplayFailsClosed: when the store cannot tell, nothing that needs a
// check is forwarded unchecked: an HTTP request with a body gets 503, and a
// connection whose frame cannot be checked is closed with 1013. A request
// with an empty body and a handshake claim nothing, so they go through.
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
			get := http.Header{"Authorization": {"Bearer pos"}, "Sec-Iv": {b64(order.IV)}, "Sec-Fingerprint": {"k-ctr"}}
			if res, body := e.post(t, "/orders", get, ""); res.StatusCode != http.StatusOK {
				t.Fatalf("empty-body request with the store down: %d %s, want 200 (nothing to claim)", res.StatusCode, body)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			c := dial(t, ctx, wsURL(e.url)+"/kds", e.handshakeHeader("k-ctr"))
			if err := c.Write(ctx, websocket.MessageText, []byte(e.frame(t, "k-ctr", `{"ticket":1}`))); err != nil {
				t.Fatal(err)
			}
			if _, _, err := c.Read(ctx); websocket.CloseStatus(err) != websocket.StatusTryAgainLater {
				t.Fatalf("read after an unchecked frame: %v, want close 1013", err)
			}
			if n := len(e.kitchen.Messages()); e.kitchen.Seen() != 2 || n != 0 {
				t.Fatalf("the kitchen saw %d requests, upgrades and frames, %d frames; want the empty request and the upgrade", e.kitchen.Seen(), n)
			}
		})
	}
}

// TestReplayFrames: a handshake claims nothing (the same handshake opens a
// second connection); a frame sent twice reaches the kitchen once (the copy
// gets the ALE 2 error frame, the connection stays up); a frame with its own
// IV also claims its pair, so another ciphertext under that IV is refused;
// frames that reuse the handshake's IV pass, as clients that read EK's text
// that way send them, but an exact copy of one is refused there too, and
// every captured frame is refused on another connection.
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
	own2 := frameWithIV(t, "k-ctr", hsIV, `{"ticket":"shares it too"}`)
	freshIV := []byte("fresh-frame-iv-1")
	fresh := frameWithIV(t, "k-ctr", freshIV, `{"ticket":2}`)
	flipped := frameWithIV(t, "k-ctr", freshIV, `{"ticket":9}`) // the same IV, another ciphertext
	for _, tc := range []struct{ name, frame, want string }{
		{"frame with the handshake's IV", own, "echo"},
		{"another one with the handshake's IV", own2, "echo"},
		{"an exact copy under the handshake's IV", own, ale2},
		{"a frame with its own IV", fresh, "echo"},
		{"that frame replayed", fresh, ale2},
		{"its IV under another ciphertext", flipped, ale2},
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

	// Captured frames on connections of the attacker's own, with a fresh
	// handshake IV or with the victim's: every one is a replay there.
	for _, hsIV := range [][]byte{nil, hsIV, freshIV} {
		h := e.handshakeHeader("k-ctr")
		if hsIV != nil {
			h.Set("Sec-Iv", b64(hsIV))
		}
		c2 := dial(t, ctx, wsURL(e.url)+"/kds", h)
		for _, f := range []string{own, own2, fresh} {
			if err := c2.Write(ctx, websocket.MessageText, []byte(f)); err != nil {
				t.Fatal(err)
			}
			if got := readText(t, ctx, c2); got != ale2 {
				t.Fatalf("captured frame on another connection (handshake IV %q): got %s, want %s", hsIV, got, ale2)
			}
		}
	}
	msgs := e.kitchen.Messages()
	if len(msgs) != 4 {
		t.Fatalf("kitchen got %d frames %q, want 4 (no replay among them)", len(msgs), msgs)
	}
}

// TestReplayPreclaimedHandshake: an attacker who captured a frame opens a
// connection whose handshake names the frame's IV (a handshake needs no
// key: it decrypts an empty message) and sends the frame again and again.
// It reaches the kitchen once, whether the attacker's connection comes
// before or after the victim's frame got through.
func TestReplayPreclaimedHandshake(t *testing.T) {
	t.Parallel()
	for _, victimFirst := range []bool{false, true} {
		t.Run(fmt.Sprintf("victim first %v", victimFirst), func(t *testing.T) {
			t.Parallel()
			e := newEnv(t, replayOpts(replay.NewMemory(time.Minute, 100, time.Now)), 0)
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			iv := []byte("victim-frame-iv1")
			captured := frameWithIV(t, "k-ctr", iv, `{"order":"pay 100"}`)
			forwarded := 0
			if victimFirst {
				victim := dial(t, ctx, wsURL(e.url)+"/kds", e.handshakeHeader("k-ctr"))
				if err := victim.Write(ctx, websocket.MessageText, []byte(captured)); err != nil {
					t.Fatal(err)
				}
				if got := readText(t, ctx, victim); strings.HasPrefix(got, `{"errorCode"`) {
					t.Fatalf("the victim's frame: %s", got)
				}
				forwarded++
			}
			hs := http.Header{"Authorization": {"Bearer anything"}, "Sec-Iv": {b64(iv)}, "Sec-Fingerprint": {"k-ctr"}}
			c := dial(t, ctx, wsURL(e.url)+"/kds", hs)
			for i := range 5 {
				if err := c.Write(ctx, websocket.MessageText, []byte(captured)); err != nil {
					t.Fatal(err)
				}
				got := readText(t, ctx, c)
				if !strings.HasPrefix(got, `{"errorCode"`) {
					forwarded++
				} else if got != ale2 {
					t.Fatalf("copy %d: %s, want %s or the echo", i, got, ale2)
				}
			}
			if n := len(e.kitchen.Messages()); n != 1 || forwarded != 1 {
				t.Fatalf("kitchen got %d copies of one captured frame (%d echoed), want 1", n, forwarded)
			}
		})
	}
}

// TestReplayKeylessFlood: requests with an empty body and handshakes carry
// no ciphertext, so anyone who knows a fingerprint can send them under any
// IV; they claim nothing, and genuine traffic still gets through after as
// many of them as the store could hold.
func TestReplayKeylessFlood(t *testing.T) {
	t.Parallel()
	const cap = 20
	m := replay.NewMemory(time.Minute, cap, time.Now)
	e := newEnv(t, replayOpts(m), 0)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	for i := range cap {
		h := http.Header{"Authorization": {"Bearer x"}, "Sec-Iv": {b64([]byte(fmt.Sprintf("forged-iv-%06d", i)))}, "Sec-Fingerprint": {"k-ctr"}}
		if res, body := e.post(t, "/orders", h, ""); res.StatusCode != http.StatusOK {
			t.Fatalf("empty-body request %d: %d %s", i, res.StatusCode, body)
		}
		h.Set("Sec-Iv", b64([]byte(fmt.Sprintf("forged-hs-%06d", i))))
		c := dial(t, ctx, wsURL(e.url)+"/kds", h)
		c.Close(websocket.StatusNormalClosure, "")
	}
	if n := m.Len(); n != 0 {
		t.Fatalf("keyless requests and handshakes claimed %d entries, want 0", n)
	}
	order := e.seal(t, "k-ctr", `{"order":1}`)
	if res, body := e.post(t, "/orders", aleHeader(order), b64(order.Message)); res.StatusCode != http.StatusOK {
		t.Fatalf("a genuine request after %d keyless ones: %d %s", 2*cap, res.StatusCode, body)
	}
	c := dial(t, ctx, wsURL(e.url)+"/kds", e.handshakeHeader("k-ctr"))
	if err := c.Write(ctx, websocket.MessageText, []byte(e.frame(t, "k-ctr", `{"ticket":1}`))); err != nil {
		t.Fatal(err)
	}
	if got := readText(t, ctx, c); strings.HasPrefix(got, `{"errorCode"`) {
		t.Fatalf("a genuine frame after the keyless ones: %s", got)
	}
}

// downAfter is a store that answers its first claims, then goes down.
type downAfter struct {
	ok    chan struct{}
	inner replay.Store
}

func (d downAfter) Claim(ctx context.Context, id replay.ID, o replay.Owner) (bool, error) {
	select {
	case <-d.ok:
		return d.inner.Claim(ctx, id, o)
	default:
		return false, errors.New("replay store: connection refused")
	}
}
func (d downAfter) Release(ctx context.Context, id replay.ID, o replay.Owner) error {
	return d.inner.Release(ctx, id, o)
}
func (d downAfter) Ready(context.Context) error { return nil }

// TestReplayFrameStoreDown: a frame that cannot be fully checked (its pair
// claimed, then the store gone before its copy) never reaches the kitchen;
// the connection is closed with 1013 (try again later), and the pair it
// claimed is released, so the frame sent again on a new connection goes
// through once the store is back.
func TestReplayFrameStoreDown(t *testing.T) {
	t.Parallel()
	for _, onHandshakeIV := range []bool{false, true} {
		t.Run(fmt.Sprintf("frame under the handshake IV %v", onHandshakeIV), func(t *testing.T) {
			t.Parallel()
			s := downAfter{ok: make(chan struct{}, 3), inner: replay.NewMemory(time.Minute, 100, time.Now)}
			s.ok <- struct{}{} // the frame's pair; its copy finds the store down
			e := newEnv(t, replayOpts(s), 0)
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			hs := e.handshakeHeader("k-ctr")
			frame := e.frame(t, "k-ctr", `{"ticket":1}`)
			if onHandshakeIV {
				iv := []byte("handshake-iv-002")
				hs.Set("Sec-Iv", b64(iv))
				frame = frameWithIV(t, "k-ctr", iv, `{"ticket":1}`)
			}
			c := dial(t, ctx, wsURL(e.url)+"/kds", hs)
			if err := c.Write(ctx, websocket.MessageText, []byte(frame)); err != nil {
				t.Fatal(err)
			}
			if _, _, err := c.Read(ctx); websocket.CloseStatus(err) != websocket.StatusTryAgainLater {
				t.Fatalf("read after an unchecked frame: %v, want close 1013", err)
			}
			if msgs := e.kitchen.Messages(); len(msgs) != 0 {
				t.Fatalf("kitchen got %q, want nothing", msgs)
			}
			// The store is back; the client reconnects, as 1013 tells it
			// to, and sends the frame again.
			s.ok <- struct{}{}
			s.ok <- struct{}{}
			c2 := dial(t, ctx, wsURL(e.url)+"/kds", hs)
			if err := c2.Write(ctx, websocket.MessageText, []byte(frame)); err != nil {
				t.Fatal(err)
			}
			if got := readText(t, ctx, c2); strings.HasPrefix(got, `{"errorCode"`) {
				t.Fatalf("the frame sent again after 1013: %s, want the kitchen's echo", got)
			}
			if msgs := e.kitchen.Messages(); len(msgs) != 1 {
				t.Fatalf("kitchen got %q, want the frame once", msgs)
			}
		})
	}
}

// TestReplayHeldPairKeptWhenStoreFails: a connection's handshake pair that
// its frames already use is not released when a later frame cannot be
// checked (1013): the store failing does not hand it to another connection,
// where a bit-flipped earlier frame would then go through.
func TestReplayHeldPairKeptWhenStoreFails(t *testing.T) {
	t.Parallel()
	s := downAfter{ok: make(chan struct{}, 2), inner: replay.NewMemory(time.Minute, 100, time.Now)}
	s.ok <- struct{}{} // the first frame's pair
	s.ok <- struct{}{} // and its copy; the second frame finds the store down
	e := newEnv(t, replayOpts(s), 0)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	hsIV := []byte("handshake-iv-003")
	hs := e.handshakeHeader("k-ctr")
	hs.Set("Sec-Iv", b64(hsIV))
	c := dial(t, ctx, wsURL(e.url)+"/kds", hs)
	if err := c.Write(ctx, websocket.MessageText, []byte(frameWithIV(t, "k-ctr", hsIV, `{"ticket":1}`))); err != nil {
		t.Fatal(err)
	}
	if got := readText(t, ctx, c); strings.HasPrefix(got, `{"errorCode"`) {
		t.Fatalf("first frame: %s", got)
	}
	if err := c.Write(ctx, websocket.MessageText, []byte(frameWithIV(t, "k-ctr", hsIV, `{"ticket":2}`))); err != nil {
		t.Fatal(err)
	}
	if _, _, err := c.Read(ctx); websocket.CloseStatus(err) != websocket.StatusTryAgainLater {
		t.Fatalf("read after an unchecked frame: %v, want close 1013", err)
	}
	s.ok <- struct{}{}
	s.ok <- struct{}{}
	c2 := dial(t, ctx, wsURL(e.url)+"/kds", hs)
	if err := c2.Write(ctx, websocket.MessageText, []byte(frameWithIV(t, "k-ctr", hsIV, `{"ticket":9}`))); err != nil {
		t.Fatal(err)
	}
	if got := readText(t, ctx, c2); got != ale2 {
		t.Fatalf("the first frame bit-flipped on a new connection after the store failed: %s, want %s", got, ale2)
	}
	if msgs := e.kitchen.Messages(); len(msgs) != 1 {
		t.Fatalf("kitchen got %q, want the first frame only", msgs)
	}
}
