package gateway_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"
)

// TestFrameSizes: frames of every size pass both ways on one connection,
// whose buffers are reused from frame to frame (small after large after
// small: nothing of one frame may show in the next), and a frame over the
// read limit still ends the connection with 1009, as Conn.Read did.
func TestFrameSizes(t *testing.T) {
	t.Parallel()
	opts := defaultOpts()
	opts.MaxFrameBytes = 100 << 10 // frames from the client up to about 134 KiB
	e := newEnv(t, opts, 0)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	c := dial(t, ctx, wsURL(e.url)+"/kds", e.handshakeHeader("k-ctr"))
	c.SetReadLimit(1 << 20)
	// The kitchen takes messages up to 32 KiB; frames above the largest
	// buffer kept for reuse (64 KiB) are refused ones.
	for i, n := range []int{1, 1000, 24 << 10, 3, -90 << 10, 10, 2000, 20 << 10, 5} {
		if n < 0 {
			bad := `{"iv":"AAECAwQFBgcICQoLDA0ODw==","fingerprint":"k-ctr","message":"` + strings.Repeat("!", -n) + `"}`
			if err := c.Write(ctx, websocket.MessageText, []byte(bad)); err != nil {
				t.Fatal(err)
			}
			if got := readText(t, ctx, c); got != ale2 {
				t.Fatalf("frame %d (%d bytes, not base64) = %s, want %s", i, -n, got, ale2)
			}
			continue
		}
		pt := `{"n":"` + strings.Repeat(string(rune('a'+i)), n) + `"}`
		if err := c.Write(ctx, websocket.MessageText, []byte(e.frame(t, "k-ctr", pt))); err != nil {
			t.Fatal(err)
		}
		if got := e.open(t, readText(t, ctx, c)); got != "echo:"+pt {
			t.Fatalf("frame %d (%d bytes): echo of %d bytes differs", i, n, len(got))
		}
	}
	tooBig := strings.Repeat("x", int(opts.MaxFrameBytes)*4/3+1025)
	if err := c.Write(ctx, websocket.MessageText, []byte(tooBig)); err != nil {
		t.Fatal(err)
	}
	if _, _, err := c.Read(ctx); websocket.CloseStatus(err) != websocket.StatusMessageTooBig {
		t.Fatalf("after a frame over the limit: %v, want close status 1009", err)
	}
}

// BenchmarkWSFrame is a 1 KiB frame's round trip through the gateway on 8
// WebSockets, the real API handler and a kitchen echoing it, all in this
// process: allocs/op is the whole round trip's (client and kitchen
// included), a guard against per-frame garbage coming back. CPU against a
// plain proxy is test/bench/floors.sh's ws row.
func BenchmarkWSFrame(b *testing.B) {
	e := newEnv(b, defaultOpts(), 0)
	env := e.seal(b, "k-ctr", `{"order":"`+strings.Repeat("x", 1000)+`"}`)
	frame := []byte(`{"iv":"` + b64(env.IV) + `","fingerprint":"k-ctr","message":"` + b64(env.Message) + `"}`)
	ctx := context.Background()
	b.ReportAllocs()
	b.SetParallelism(4) // 8 connections on 2 cores
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		c, _, err := websocket.Dial(ctx, wsURL(e.url)+"/kds", &websocket.DialOptions{HTTPHeader: e.handshakeHeader("k-ctr")})
		if err != nil {
			b.Error(err)
			return
		}
		defer c.CloseNow()
		for pb.Next() {
			if err := c.Write(ctx, websocket.MessageText, frame); err != nil {
				b.Error(err)
				return
			}
			if _, _, err := c.Read(ctx); err != nil {
				b.Error(err)
				return
			}
		}
	})
}
