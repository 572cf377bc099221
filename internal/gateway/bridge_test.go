package gateway_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/alecrypt/alecrypt/internal/gateway"
	"github.com/alecrypt/alecrypt/internal/wsconn/wsconntest"
)

// TestBridgeOutlivesHandler: ServeHTTP returns once a WebSocket is bridged
// (an idle bridge holds no handler goroutine, request or response writer),
// and the bridge goes on carrying frames both ways and the kitchen's close
// code after it has.
func TestBridgeOutlivesHandler(t *testing.T) {
	t.Parallel()
	e := newEnv(t, defaultOpts(), 0)
	up, err := url.Parse(e.kitchen.URL)
	if err != nil {
		t.Fatal(err)
	}
	gw := gateway.New(e.crypto, up, defaultOpts())
	t.Cleanup(gw.Close)
	returned := make(chan struct{}, 1)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		gw.ServeHTTP(w, r)
		returned <- struct{}{}
	}))
	t.Cleanup(srv.Close)

	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	c := dial(t, ctx, wsURL(srv.URL)+"/kds", e.handshakeHeader("k-ctr"))
	select {
	case <-returned:
	case <-ctx.Done():
		t.Fatal("ServeHTTP still runs while the bridge is open; want it returned once the bridge is up")
	}
	for _, msg := range []string{`{"ticket":1}`, `{"ticket":2}`} {
		if err := c.Write(ctx, websocket.MessageText, []byte(e.frame(t, "k-ctr", msg))); err != nil {
			t.Fatal(err)
		}
		if got := e.open(t, readText(t, ctx, c)); got != "echo:"+msg {
			t.Errorf("echo = %s, want echo:%s", got, msg)
		}
	}
	if err := c.Write(ctx, websocket.MessageText, []byte(e.frame(t, "k-ctr", `{"close":4001}`))); err != nil {
		t.Fatal(err)
	}
	if _, _, err := c.Read(ctx); websocket.CloseStatus(err) != 4001 {
		t.Fatalf("close = %v, want 4001 from the kitchen", err)
	}
}

// TestBridgeDialsThroughUpstreamProxy: the kitchen's WebSocket goes
// through the upstream transport's proxy, as its HTTP requests do (a
// CONNECT tunnel), and frames pass through it both ways.
func TestBridgeDialsThroughUpstreamProxy(t *testing.T) {
	t.Parallel()
	proxy, tunnels := wsconntest.ConnectProxy(t, "")
	opts := defaultOpts()
	opts.Transport = &http.Transport{Proxy: http.ProxyURL(proxy)}
	e := newEnv(t, opts, 0)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	c := dial(t, ctx, wsURL(e.url)+"/kds", e.handshakeHeader("k-ctr"))
	// The round trip first: a direct dial would have carried it too, and
	// then no tunnel was opened.
	e.roundTrip(t, ctx, c, `{"ticket":7}`)
	select {
	case got := <-tunnels:
		if want := strings.TrimPrefix(e.kitchen.URL, "http://"); got != want {
			t.Errorf("tunnel to %s, want the kitchen %s", got, want)
		}
	default:
		t.Fatal("the kitchen's WebSocket was dialed without the upstream transport's proxy")
	}
}
