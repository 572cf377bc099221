package e2e

import (
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"testing"

	"github.com/coder/websocket"
)

// BenchmarkGatewayWebSocketRoundTrip measures one frame through alegate
// and back (decrypt, kitchen echo, encrypt) over real processes, 1 KiB
// payloads. The server-side crypto calls ride one Stream RPC per
// connection. Run: go test -run '^$' -bench GatewayWebSocket ./test/e2e
func BenchmarkGatewayWebSocketRoundTrip(b *testing.B) {
	e := startGateway(b)
	ctx := context.Background()
	hs := e.seal(b, "k-ctr", nil)
	hdr := http.Header{"Authorization": {"Bearer bench"}, "Sec-Iv": {b64(hs.Iv)}, "Sec-Fingerprint": {"k-ctr"}}
	c, _, err := websocket.Dial(ctx, wsURL(e.gate.URL, "/bench", nil), &websocket.DialOptions{HTTPHeader: hdr})
	if err != nil {
		b.Fatal(err)
	}
	defer c.CloseNow()
	env := e.seal(b, "k-ctr", []byte(`{"p":"`+strings.Repeat("x", 1010)+`"}`))
	frame, _ := json.Marshal(map[string]string{"iv": b64(env.Iv), "fingerprint": "k-ctr", "message": b64(env.Message)})
	b.SetBytes(1024)
	b.ResetTimer()
	for b.Loop() {
		if err := c.Write(ctx, websocket.MessageText, frame); err != nil {
			b.Fatal(err)
		}
		if _, _, err := c.Read(ctx); err != nil {
			b.Fatal(err)
		}
	}
}
