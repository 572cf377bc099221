package e2e

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"connectrpc.com/connect"
	"github.com/coder/websocket"

	alev1 "github.com/alecrypt/alecrypt/gen/ale/v1"
	"github.com/alecrypt/alecrypt/internal/keystore/filestore"
	"github.com/alecrypt/alecrypt/test/harness"
	"github.com/alecrypt/alecrypt/test/kitchentest"
)

// TestGatewayWebSocketSurvivesAlecryptdRestart: alecryptd is stopped
// (SIGTERM ends the gateway's idle crypto stream with Unavailable) and
// started again on the same address under an open kitchen WebSocket. The
// WebSocket stays up and its next frames go through the new process.
func TestGatewayWebSocketSurvivesAlecryptdRestart(t *testing.T) {
	ks := filepath.Join(t.TempDir(), "keystore.json")
	if _, err := filestore.New(ks).Import(gatewayKeys(), false); err != nil {
		t.Fatal(err)
	}
	e := &gatewayEnv{kitchen: kitchentest.Start(t)}
	e.crypto = harness.StartAlecryptd(t, harness.StartOptions{Keystore: ks})
	e.gate = harness.StartAlegate(t, e.kitchen.URL, e.crypto.URL)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()

	hs := e.seal(t, "k-ctr", nil)
	c, _, err := websocket.Dial(ctx, wsURL(e.gate.URL, "/kds", nil), &websocket.DialOptions{HTTPHeader: map[string][]string{
		"Authorization": {"Bearer kds-1"}, "Sec-Iv": {b64(hs.Iv)}, "Sec-Fingerprint": {"k-ctr"}}})
	if err != nil {
		t.Fatalf("handshake: %v", err)
	}
	defer c.CloseNow()
	roundTrip := func(plaintext string) {
		t.Helper()
		env := e.seal(t, "k-ctr", []byte(plaintext))
		f, _ := json.Marshal(map[string]string{"iv": b64(env.Iv), "fingerprint": env.Fingerprint, "message": b64(env.Message)})
		if err := c.Write(ctx, websocket.MessageText, f); err != nil {
			t.Fatal(err)
		}
		_, data, err := c.Read(ctx)
		if err != nil {
			t.Fatalf("frame %s: the WebSocket ended: %v", plaintext, err)
		}
		var got struct{ IV, Fingerprint, Message string }
		if err := json.Unmarshal(data, &got); err != nil {
			t.Fatalf("frame %s: got %s", plaintext, data)
		}
		iv, _ := base64.StdEncoding.DecodeString(got.IV)
		msg, _ := base64.StdEncoding.DecodeString(got.Message)
		res, err := newCryptoClient(e.crypto.URL).Decrypt(ctx, connect.NewRequest(&alev1.DecryptRequest{
			Envelope: &alev1.Envelope{Iv: iv, Fingerprint: got.Fingerprint, Message: msg}}))
		if err != nil || string(res.Msg.GetPlaintext()) != "echo:"+plaintext {
			t.Fatalf("frame %s: echo %v, %v", plaintext, res, err)
		}
	}
	roundTrip(`{"ticket":1}`)

	// SIGTERM: the open (idle) stream ends at once, so the process exits
	// well within its shutdown timeout.
	if err := e.crypto.Stop(t); err != nil {
		t.Fatalf("alecryptd did not stop cleanly: %v", err)
	}
	e.crypto = harness.StartAlecryptd(t, harness.StartOptions{Keystore: ks, Args: []string{"--listen", e.crypto.Addr}})

	roundTrip(`{"ticket":2}`)
	roundTrip(`{"ticket":3}`)
	if msgs := strings.Join(e.kitchen.Messages(), "|"); msgs != `{"ticket":1}|{"ticket":2}|{"ticket":3}` {
		t.Fatalf("kitchen got %q, want each ticket once", msgs)
	}
	if !strings.Contains(e.gate.Logs(), "crypto stream ended") {
		t.Errorf("alegate did not log the stream's end:\n%s", e.gate.Logs())
	}
}
