package e2e

import (
	"io"
	"net/http"
	"strings"
	"testing"

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
