package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/alecrypt/alecrypt/internal/suite"
	"github.com/alecrypt/alecrypt/test/harness"
)

// postALE sends one sealed order to a gateway, as a POS would.
func postALE(t *testing.T, gateURL, fp string, iv, msg []byte) (int, string) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, gateURL+"/orders", strings.NewReader(b64(msg)))
	req.Header = http.Header{"Authorization": {"Bearer pos-1"}, "Sec-Iv": {b64(iv)}, "Sec-Fingerprint": {fp}, "Content-Type": {"application/json"}}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	return res.StatusCode, string(b)
}

// TestGatewayReplayAcrossReplicas: two real alegate replicas share one
// window in a real redis-server: an order captured on its way to one
// replica and resent to the other is refused there (errorCode 2), and the
// kitchen cooks it once. With Redis gone both refuse (503) and report not
// ready, rather than let anything through unchecked.
func TestGatewayReplayAcrossReplicas(t *testing.T) {
	redis := harness.StartRedis(t)
	args := []string{"--replay-window", "1m", "--replay-store", "redis", "--replay-redis", "redis://" + redis.Addr + "/0"}
	e := startGateway(t, args...)
	other := harness.StartAlegate(t, e.kitchen.URL, e.crypto.URL, args...)
	if !strings.Contains(e.gate.Logs(), `"replay_store":"redis"`) || strings.Contains(e.gate.Logs(), "redis://") {
		t.Fatalf("startup line should name the replay store, never its URL:\n%s", e.gate.Logs())
	}

	order := e.seal(t, "k-ctr", []byte(`{"order":1}`))
	if code, body := postALE(t, e.gate.URL, "k-ctr", order.Iv, order.Message); code != http.StatusOK {
		t.Fatalf("first order: %d %s", code, body)
	}
	if code, body := postALE(t, other.URL, "k-ctr", order.Iv, order.Message); code != http.StatusBadRequest || body != aleDecryptBody {
		t.Fatalf("the same order at the other replica: %d %s, want 400 %s", code, body, aleDecryptBody)
	}
	next := e.seal(t, "k-ctr", []byte(`{"order":2}`))
	if code, body := postALE(t, other.URL, "k-ctr", next.Iv, next.Message); code != http.StatusOK {
		t.Fatalf("a new order at the other replica: %d %s", code, body)
	}
	if got := e.kitchen.Seen(); got != 2 {
		t.Fatalf("the kitchen saw %d orders, want 2", got)
	}
	if n := series(t, other.MetricsURL)["alegate_requests_total{kind=http,outcome=replay}"]; n != 1 {
		t.Errorf("alegate_requests_total{outcome=replay} = %v on the refusing replica, want 1", n)
	}

	redis.Stop()
	third := e.seal(t, "k-ctr", []byte(`{"order":3}`))
	if code, body := postALE(t, e.gate.URL, "k-ctr", third.Iv, third.Message); code != http.StatusServiceUnavailable || body != `{"error":"replay check unavailable"}` {
		t.Fatalf("order with Redis down: %d %s, want 503", code, body)
	}
	if code, _ := readyz(t, e.gate); code != http.StatusServiceUnavailable {
		t.Errorf("/readyz with Redis down = %d, want 503", code)
	}
	if got := e.kitchen.Seen(); got != 2 {
		t.Fatalf("the kitchen saw %d orders with Redis down, want still 2", got)
	}
}

// TestGatewayReplayChannelsAcrossReplicas: a (fingerprint, IV) pair that
// carried ciphertext belongs to the one channel it came on, across two
// real replicas sharing a real Redis: a client's frames under its own
// handshake IV keep working on its connection, while a bit-flipped copy on
// a connection to the other replica opened with the same sec-iv, a
// captured HTTP order sent there as a frame under its sec-iv, and a frame
// POSTed again there with its handshake IV are refused and never cooked.
func TestGatewayReplayChannelsAcrossReplicas(t *testing.T) {
	redis := harness.StartRedis(t)
	args := []string{"--replay-window", "1m", "--replay-store", "redis", "--replay-redis", "redis://" + redis.Addr + "/0"}
	e := startGateway(t, args...)
	other := harness.StartAlegate(t, e.kitchen.URL, e.crypto.URL, args...)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	connect := func(gateURL string, iv []byte) *websocket.Conn {
		t.Helper()
		h := http.Header{"Authorization": {"Bearer kds-1"}, "Sec-Iv": {b64(iv)}, "Sec-Fingerprint": {"k-ctr"}}
		c, _, err := websocket.Dial(ctx, wsURL(gateURL, "/kds", nil), &websocket.DialOptions{HTTPHeader: h})
		if err != nil {
			t.Fatalf("handshake: %v", err)
		}
		t.Cleanup(func() { c.CloseNow() })
		return c
	}
	send := func(c *websocket.Conn, iv, msg []byte) string {
		t.Helper()
		b, _ := json.Marshal(map[string]string{"iv": b64(iv), "fingerprint": "k-ctr", "message": b64(msg)})
		if err := c.Write(ctx, websocket.MessageText, b); err != nil {
			t.Fatal(err)
		}
		_, got, err := c.Read(ctx)
		if err != nil {
			t.Fatal(err)
		}
		return string(got)
	}
	echoed := func(got string) bool { return !strings.HasPrefix(got, `{"errorCode"`) }

	// The victim's connection: every frame under its handshake IV.
	first := e.seal(t, "k-ctr", []byte(`{"ticket":1}`))
	victim := connect(e.gate.URL, first.Iv)
	if got := send(victim, first.Iv, first.Message); !echoed(got) {
		t.Fatalf("the victim's frame: %s", got)
	}
	c, err := suite.Derive(gatewayKeys()[0])
	if err != nil {
		t.Fatal(err)
	}
	second, err := c.Seal(nil, first.Iv, []byte(`{"ticket":2}`), nil)
	if err != nil {
		t.Fatal(err)
	}
	if got := send(victim, first.Iv, second); !echoed(got) {
		t.Fatalf("the victim's second frame under its handshake IV: %s", got)
	}

	// 1. Bit-flipped on a connection to the other replica opened with the
	// same sec-iv: {"ticket":1} becomes {"ticket":9} without the key.
	flipped := bytes.Clone(first.Message)
	flipped[10] ^= '1' ^ '9'
	if got := send(connect(other.URL, first.Iv), first.Iv, flipped); got != aleDecryptBody {
		t.Fatalf("bit-flipped frame on another replica under the same sec-iv: %s, want %s", got, aleDecryptBody)
	}
	// 2. A captured HTTP order, as a frame on a connection opened with its
	// sec-iv.
	order := e.seal(t, "k-ctr", []byte(`{"order":1}`))
	if code, body := postALE(t, e.gate.URL, "k-ctr", order.Iv, order.Message); code != http.StatusOK {
		t.Fatalf("the HTTP order: %d %s", code, body)
	}
	if got := send(connect(other.URL, order.Iv), order.Iv, order.Message); got != aleDecryptBody {
		t.Fatalf("a captured HTTP order as a frame under its sec-iv: %s, want %s", got, aleDecryptBody)
	}
	// 3. The victim's frame POSTed again with its handshake IV.
	if code, body := postALE(t, other.URL, "k-ctr", first.Iv, first.Message); code != http.StatusBadRequest || body != aleDecryptBody {
		t.Fatalf("a frame POSTed again with its handshake IV: %d %s, want 400 %s", code, body, aleDecryptBody)
	}
	if got := send(victim, first.Iv, func() []byte { m, _ := c.Seal(nil, first.Iv, []byte(`{"ticket":3}`), nil); return m }()); !echoed(got) {
		t.Fatalf("the victim's next frame: %s", got)
	}
	if msgs, reqs := e.kitchen.Messages(), e.kitchen.Requests(); len(msgs) != 3 || len(reqs) != 1 {
		t.Fatalf("the kitchen got frames %q and %d requests, want the victim's 3 frames and the one order", msgs, len(reqs))
	}
}

// TestGatewayReplayRetryAfterRedisStall: Redis stops for a moment (SIGSTOP);
// alegate answers 503 with Retry-After: 1 after its 1 s timeout, and the
// claim it gave up on reaches Redis once it runs again (SIGCONT), with
// alegate's release of it, in whatever order Redis reads them. The client's
// retry, sent as told, is cooked exactly once.
func TestGatewayReplayRetryAfterRedisStall(t *testing.T) {
	redis := harness.StartRedis(t)
	e := startGateway(t, "--replay-window", "1m", "--replay-store", "redis", "--replay-redis", "redis://"+redis.Addr+"/0")
	warm := e.seal(t, "k-ctr", []byte(`{"order":0}`))
	if code, body := postALE(t, e.gate.URL, "k-ctr", warm.Iv, warm.Message); code != http.StatusOK {
		t.Fatalf("an order before the stall: %d %s", code, body)
	}
	order := e.seal(t, "k-ctr", []byte(`{"order":1}`))
	redis.Pause(t)
	type answer struct {
		code       int
		retryAfter string
		body       string
	}
	answered := make(chan answer, 1)
	go func() {
		req, _ := http.NewRequest(http.MethodPost, e.gate.URL+"/orders", strings.NewReader(b64(order.Message)))
		req.Header = http.Header{"Authorization": {"Bearer pos-1"}, "Sec-Iv": {b64(order.Iv)}, "Sec-Fingerprint": {"k-ctr"}, "Content-Type": {"application/json"}}
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			answered <- answer{body: err.Error()}
			return
		}
		defer res.Body.Close()
		b, _ := io.ReadAll(res.Body)
		answered <- answer{res.StatusCode, res.Header.Get("Retry-After"), string(b)}
	}()
	waitFor(t, "alegate to give up on the claim", func() bool { return strings.Contains(e.gate.Logs(), "replay check failed") })
	redis.Resume(t)
	a := <-answered
	if a.code != http.StatusServiceUnavailable || a.retryAfter != "1" || a.body != `{"error":"replay check unavailable"}` {
		t.Fatalf("the order with Redis stopped: %d (Retry-After %q) %s, want 503 replay check unavailable, Retry-After 1", a.code, a.retryAfter, a.body)
	}
	if code, body := postALE(t, e.gate.URL, "k-ctr", order.Iv, order.Message); code != http.StatusOK {
		t.Fatalf("the retry after the 503: %d %s, want 200", code, body)
	}
	if code, body := postALE(t, e.gate.URL, "k-ctr", order.Iv, order.Message); code != http.StatusBadRequest || body != aleDecryptBody {
		t.Fatalf("a copy of the retry: %d %s, want 400 %s", code, body, aleDecryptBody)
	}
	if reqs := e.kitchen.Requests(); len(reqs) != 2 {
		t.Fatalf("the kitchen got %d orders, want 2 (the first, and the retry once)", len(reqs))
	}
}
