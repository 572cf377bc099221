package gateway_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/redis/go-redis/v9"

	"github.com/alecrypt/alecrypt/internal/replay"
	"github.com/alecrypt/alecrypt/test/harness"
)

// replicas builds two gateways sharing one replay window: one gateway (both
// "replicas" are the same) on a memory store, or two gateways on one real
// Redis.
type replicas func(t *testing.T) (first, second *env)

var windows = []struct {
	name  string
	build replicas
}{
	{"memory, one gateway", func(t *testing.T) (*env, *env) {
		e := newEnv(t, replayOpts(replay.NewMemory(time.Minute, 100, time.Now)), 0)
		return e, e
	}},
	{"redis, two gateways", func(t *testing.T) (*env, *env) {
		srv := harness.StartRedis(t)
		store := func() replay.Store {
			rc := redis.NewClient(&redis.Options{Addr: srv.Addr, MaxRetries: -1})
			t.Cleanup(func() { rc.Close() })
			return replay.NewRedis(rc, time.Minute, replay.DefaultRedisPrefix)
		}
		return newEnv(t, replayOpts(store()), 0), newEnv(t, replayOpts(store()), 0)
	}},
}

// sendFrame writes one frame and returns the answer: the kitchen's echo or
// an ALE error frame.
func sendFrame(t *testing.T, ctx context.Context, c *websocket.Conn, frame string) string {
	t.Helper()
	if err := c.Write(ctx, websocket.MessageText, []byte(frame)); err != nil {
		t.Fatal(err)
	}
	return readText(t, ctx, c)
}

func isEcho(answer string) bool { return !strings.HasPrefix(answer, `{"errorCode"`) }

// kitchenGot is what the kitchens of both replicas received: HTTP requests
// (upgrades included) and frames.
func kitchenGot(a, b *env) (requests, frames int) {
	for _, e := range []*env{a, b} {
		n := len(e.kitchen.Messages())
		requests, frames = requests+e.kitchen.Seen()-n, frames+n
		if b == a {
			break
		}
	}
	return requests, frames
}

// TestReplayPairBelongsToOneChannel: within the window a (fingerprint, IV)
// pair that carried ciphertext belongs to the one channel (HTTP request or
// WebSocket connection) it came on, on one gateway or across replicas
// sharing Redis. A handshake naming a used IV cannot walk around it: a
// bit-flipped frame on a new connection opened with the victim's sec-iv, a
// captured HTTP order sent as a frame, a frame sent again as an HTTP request
// are all refused (errorCode 2) and never reach the kitchen; frames sharing
// their own connection's handshake IV keep working.
func TestReplayPairBelongsToOneChannel(t *testing.T) {
	t.Parallel()
	hsIV := []byte("handshake-iv-100")
	for _, tc := range []struct {
		name string
		// run plays the victim on first and the attacker on second; it
		// returns the frames and the HTTP requests (upgrades included)
		// the kitchens should have got.
		run func(t *testing.T, ctx context.Context, first, second *env) (frames, requests int)
	}{
		{"frames under their connection's handshake IV keep working", func(t *testing.T, ctx context.Context, first, _ *env) (int, int) {
			victim := handshake(t, ctx, first, hsIV)
			for _, order := range []string{`{"ticket":1}`, `{"ticket":2}`, `{"ticket":3}`} {
				if got := sendFrame(t, ctx, victim, frameWithIV(t, "k-ctr", hsIV, order)); !isEcho(got) {
					t.Fatalf("frame %s under the connection's handshake IV: %s, want the echo", order, got)
				}
			}
			return 3, 1
		}},
		{"bit-flipped frame on a new connection with the same sec-iv", func(t *testing.T, ctx context.Context, first, second *env) (int, int) {
			victim := handshake(t, ctx, first, hsIV)
			if got := sendFrame(t, ctx, victim, frameWithIV(t, "k-ctr", hsIV, `{"ticket":1}`)); !isEcho(got) {
				t.Fatalf("the victim's frame: %s", got)
			}
			// The same IV under another ciphertext: CTR bit-flipping
			// {"ticket":1} into {"ticket":9}.
			attacker := handshake(t, ctx, second, hsIV)
			if got := sendFrame(t, ctx, attacker, frameWithIV(t, "k-ctr", hsIV, `{"ticket":9}`)); got != ale2 {
				t.Fatalf("bit-flipped frame on a new connection with the same sec-iv: %s, want %s", got, ale2)
			}
			// The victim's connection still works under its IV.
			if got := sendFrame(t, ctx, victim, frameWithIV(t, "k-ctr", hsIV, `{"ticket":2}`)); !isEcho(got) {
				t.Fatalf("the victim's next frame: %s, want the echo", got)
			}
			return 2, 2
		}},
		{"captured HTTP order as a frame on a connection opened with its sec-iv", func(t *testing.T, ctx context.Context, first, second *env) (int, int) {
			order := first.seal(t, "k-ctr", `{"order":1}`)
			if res, body := first.post(t, "/orders", aleHeader(order), b64(order.Message)); res.StatusCode != http.StatusOK {
				t.Fatalf("the HTTP order: %d %s", res.StatusCode, body)
			}
			asFrame := frameWithIV(t, "k-ctr", order.IV, `{"order":1}`) // the captured ciphertext, byte for byte
			if got := sendFrame(t, ctx, handshake(t, ctx, second, order.IV), asFrame); got != ale2 {
				t.Fatalf("captured HTTP order as a frame under its sec-iv: %s, want %s", got, ale2)
			}
			return 0, 2
		}},
		{"frame under its handshake IV POSTed again with that sec-iv", func(t *testing.T, ctx context.Context, first, second *env) (int, int) {
			victim := handshake(t, ctx, first, hsIV)
			if got := sendFrame(t, ctx, victim, frameWithIV(t, "k-ctr", hsIV, `{"ticket":1}`)); !isEcho(got) {
				t.Fatalf("the victim's frame: %s", got)
			}
			h := http.Header{"Authorization": {"Bearer pos"}, "Sec-Iv": {b64(hsIV)}, "Sec-Fingerprint": {"k-ctr"}, "Content-Type": {"application/json"}}
			if res, body := second.post(t, "/orders", h, b64(sealWithIV(t, "k-ctr", hsIV, `{"ticket":1}`))); res.StatusCode != http.StatusBadRequest || body != ale2 {
				t.Fatalf("a frame POSTed again with its handshake IV: %d %s, want 400 %s", res.StatusCode, body, ale2)
			}
			return 1, 1
		}},
	} {
		for _, w := range windows {
			t.Run(tc.name+"/"+w.name, func(t *testing.T) {
				t.Parallel()
				first, second := w.build(t)
				ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
				defer cancel()
				wantFrames, wantRequests := tc.run(t, ctx, first, second)
				if requests, frames := kitchenGot(first, second); frames != wantFrames || requests != wantRequests {
					t.Fatalf("kitchens got %d frames and %d requests or upgrades; want %d and %d", frames, requests, wantFrames, wantRequests)
				}
			})
		}
	}
}

// handshake opens a WebSocket to e under k-ctr with the given sec-iv.
func handshake(t *testing.T, ctx context.Context, e *env, iv []byte) *websocket.Conn {
	t.Helper()
	h := e.handshakeHeader("k-ctr")
	h.Set("Sec-Iv", b64(iv))
	return dial(t, ctx, wsURL(e.url)+"/kds", h)
}

// TestReplayRetryAfterStall: Redis stalls (a proxy keeps every command
// back), the claim times out, and alegate answers 503 with Retry-After: 1.
// The claim still reaches Redis afterwards, before or after alegate's
// release of it; either way the client's retry, sent as told, reaches the
// kitchen exactly once, and a copy of it after that is a replay.
func TestReplayRetryAfterStall(t *testing.T) {
	t.Parallel()
	for _, releaseFirst := range []bool{true, false} {
		t.Run(fmt.Sprintf("release runs first %v", releaseFirst), func(t *testing.T) {
			t.Parallel()
			srv := harness.StartRedis(t)
			p := harness.StartStallProxy(t, srv.Addr)
			// alegate's client settings, with a command timeout that only
			// the held claim reaches: every other command must get through
			// on a loaded machine (at 200 ms, a retry under the race
			// detector timed out now and then and got a second 503).
			rc := redis.NewClient(&redis.Options{Addr: p.Addr, MaxRetries: -1, ReadTimeout: 2 * time.Second, WriteTimeout: 2 * time.Second})
			t.Cleanup(func() { rc.Close() })
			e := newEnv(t, replayOpts(replay.NewRedis(rc, time.Minute, replay.DefaultRedisPrefix)), 0)
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			warm := e.seal(t, "k-ctr", `{"order":0}`)
			if res, body := e.post(t, "/orders", aleHeader(warm), b64(warm.Message)); res.StatusCode != http.StatusOK {
				t.Fatalf("an order before the stall: %d %s", res.StatusCode, body)
			}

			p.Hold()
			order := e.seal(t, "k-ctr", `{"order":1}`)
			type answer struct {
				status     int
				retryAfter string
				body       string
				err        error
			}
			answered := make(chan answer, 1)
			go func() {
				req, _ := http.NewRequestWithContext(ctx, http.MethodPost, e.url+"/orders", strings.NewReader(b64(order.Message)))
				req.Header = aleHeader(order)
				res, err := http.DefaultClient.Do(req)
				if err != nil {
					answered <- answer{err: err}
					return
				}
				defer res.Body.Close()
				b, err := io.ReadAll(res.Body)
				answered <- answer{res.StatusCode, res.Header.Get("Retry-After"), string(b), err}
			}()
			late, err := p.WaitHeld(ctx) // the claim, kept from Redis
			if err != nil {
				t.Fatal(err)
			}
			var a answer
			select {
			case a = <-answered:
				// Answered with nothing released: the claim lands after
				// the 503, as it would from Redis's socket buffer.
				if err := p.Deliver(ctx, late, true, func() error { return nil }); err != nil {
					t.Fatal(err)
				}
			case <-p.Held(): // alegate gave up and releases the claim
				if err := p.Deliver(ctx, late, !releaseFirst, func() error { a = <-answered; return nil }); err != nil {
					t.Fatal(err)
				}
			case <-ctx.Done():
				t.Fatal("no answer and no release after the claim was kept from Redis")
			}
			if a.err != nil || a.status != http.StatusServiceUnavailable || a.retryAfter != "1" || a.body != `{"error":"replay check unavailable"}` {
				t.Fatalf("the order with Redis stalled: %d (Retry-After %q) %s %v, want 503 replay check unavailable, Retry-After 1", a.status, a.retryAfter, a.body, a.err)
			}
			if res, body := e.post(t, "/orders", aleHeader(order), b64(order.Message)); res.StatusCode != http.StatusOK {
				t.Fatalf("the retry after the 503: %d %s, want 200", res.StatusCode, body)
			}
			if res, body := e.post(t, "/orders", aleHeader(order), b64(order.Message)); res.StatusCode != http.StatusBadRequest || body != ale2 {
				t.Fatalf("a copy of the retry: %d %s, want 400 %s", res.StatusCode, body, ale2)
			}
			if got := e.kitchen.Seen(); got != 2 {
				t.Fatalf("the kitchen saw %d orders, want 2 (the first, and the retry once)", got)
			}
		})
	}
}

// testClock is a settable clock for the memory store.
type testClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *testClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}
func (c *testClock) add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

// TestReplayHandshakePairRenewed: a connection that keeps sending under its
// handshake IV keeps the pair for a window after its last frame, not only
// after its first: a long-lived connection's recent frame cannot be
// bit-flipped on a new connection once the first frame's window passed.
func TestReplayHandshakePairRenewed(t *testing.T) {
	t.Parallel()
	clock := &testClock{now: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
	e := newEnv(t, replayOpts(replay.NewMemory(time.Minute, 100, clock.Now)), 0)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	hsIV := []byte("handshake-iv-200")
	victim := handshake(t, ctx, e, hsIV)
	if got := sendFrame(t, ctx, victim, frameWithIV(t, "k-ctr", hsIV, `{"ticket":1}`)); !isEcho(got) {
		t.Fatalf("first frame: %s", got)
	}
	clock.add(40 * time.Second)
	if got := sendFrame(t, ctx, victim, frameWithIV(t, "k-ctr", hsIV, `{"ticket":2}`)); !isEcho(got) {
		t.Fatalf("second frame: %s", got)
	}
	clock.add(40 * time.Second) // past the first frame's window, within the second's
	if got := sendFrame(t, ctx, handshake(t, ctx, e, hsIV), frameWithIV(t, "k-ctr", hsIV, `{"ticket":9}`)); got != ale2 {
		t.Fatalf("the second frame bit-flipped on a new connection: %s, want %s", got, ale2)
	}
	if got := sendFrame(t, ctx, victim, frameWithIV(t, "k-ctr", hsIV, `{"ticket":3}`)); !isEcho(got) {
		t.Fatalf("the victim's next frame: %s", got)
	}
	if msgs := e.kitchen.Messages(); len(msgs) != 3 {
		t.Fatalf("kitchen got %q, want the victim's 3 frames", msgs)
	}
}
