package gateway_test

import (
	"context"
	"encoding/base64"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/alecrypt/alecrypt/internal/engine"
	"github.com/alecrypt/alecrypt/internal/keyring"
)

// TestBothAlgorithmsEndToEnd: alegate in front of a real alecryptd handler
// carries HTTP requests (response sealed) and a WebSocket both ways under
// an aes-256-ctr key and under an aes-256-gcm key (whose handshake used to
// be refused with errorCode 2: the handshake check decrypted an empty
// message, which has no GCM tag).
func TestBothAlgorithmsEndToEnd(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ fp string }{{"k-ctr"}, {"k-gcm"}} {
		t.Run(tc.fp, func(t *testing.T) {
			t.Parallel()
			opts := defaultOpts()
			opts.EncryptResponses = true
			e := newEnv(t, opts, 0)
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()

			order := e.seal(t, tc.fp, `{"order":"`+tc.fp+`"}`)
			res, body := e.post(t, "/orders", aleHeader(order), b64(order.Message))
			if res.StatusCode != 200 || res.Header.Get("Sec-Fingerprint") != tc.fp {
				t.Fatalf("POST: %d %s (sec-fingerprint %q), want a sealed 200", res.StatusCode, body, res.Header.Get("Sec-Fingerprint"))
			}
			iv, _ := base64.StdEncoding.DecodeString(res.Header.Get("Sec-Iv"))
			msg, _ := base64.StdEncoding.DecodeString(body)
			if pt, _, err := e.sealer.Decrypt(ctx, engine.Envelope{IV: iv, Fingerprint: tc.fp, Message: msg}, nil, engine.FormatJSON); err != nil || string(pt) != `{"order":"`+tc.fp+`"}` {
				t.Fatalf("sealed response opens to %q, %v", pt, err)
			}

			// The handshake's IV is the length the key's algorithm uses.
			h := e.handshakeHeader(tc.fp)
			h.Set("Sec-Iv", b64(make([]byte, len(order.IV))))
			c := dial(t, ctx, wsURL(e.url)+"/kds", h)
			for i, ticket := range []string{`{"ticket":1}`, `{"ticket":2}`} {
				if err := c.Write(ctx, websocket.MessageText, []byte(e.frame(t, tc.fp, ticket))); err != nil {
					t.Fatal(err)
				}
				frame := readText(t, ctx, c)
				if !strings.Contains(frame, `"fingerprint":"`+tc.fp+`"`) {
					t.Fatalf("frame %d from the gateway: %s, want one under %s", i, frame, tc.fp)
				}
				if got := e.open(t, frame); got != "echo:"+ticket {
					t.Fatalf("frame %d opens to %q, want %q", i, got, "echo:"+ticket)
				}
			}
			if msgs := strings.Join(e.kitchen.Messages(), "|"); msgs != `{"ticket":1}|{"ticket":2}` {
				t.Fatalf("kitchen got %q", msgs)
			}
			c.Close(websocket.StatusNormalClosure, "")
		})
	}
}

// TestUsageNotRaisedWithoutContent: what proves no possession of a key
// counts nothing in its usage (the "is a key still used?" signal): a
// WebSocket handshake, accepted or refused, which carries no ciphertext; an
// HTTP request with an empty body, forwarded or refused. Before, each
// raised the decrypt count and last use of the fingerprint it named, a
// retired one included, so a retired key could be kept looking used for
// ever by anyone. A real frame still counts.
func TestUsageNotRaisedWithoutContent(t *testing.T) {
	t.Parallel()
	opts := defaultOpts()
	e := newEnv(t, opts, 0)
	sealed := defaultOpts()
	sealed.EncryptResponses = true
	es := newEnv(t, sealed, 0)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()

	handshake := func(e *env, fp string, ivLen int, wantOpen bool) {
		t.Helper()
		h := e.handshakeHeader(fp)
		h.Set("Sec-Iv", b64(make([]byte, ivLen)))
		c, res, err := websocket.Dial(ctx, wsURL(e.url)+"/kds", &websocket.DialOptions{HTTPHeader: h})
		if (err == nil) != wantOpen {
			t.Fatalf("handshake under %s: err = %v, want open=%v", fp, err, wantOpen)
		}
		if err == nil {
			c.Close(websocket.StatusNormalClosure, "")
		} else if res == nil || res.StatusCode != 400 {
			t.Fatalf("handshake under %s: %v, want 400", fp, res)
		}
	}
	emptyPost := func(e *env, fp, contentType string, wantStatus int) {
		t.Helper()
		h := http.Header{"Authorization": {"Bearer pos"}, "Sec-Iv": {b64(make([]byte, 16))}, "Sec-Fingerprint": {fp}}
		if contentType != "" {
			h.Set("Content-Type", contentType)
		}
		if res, body := e.post(t, "/orders", h, ""); res.StatusCode != wantStatus {
			t.Fatalf("empty POST under %s (%q): %d %s, want %d", fp, contentType, res.StatusCode, body, wantStatus)
		}
	}
	for _, e := range []*env{e, es} {
		handshake(e, "k-ctr", 16, true)
		handshake(e, "k-gcm", 12, true)
		handshake(e, "k-retired", 16, false) // a retired key cannot seal the kitchen's messages
		handshake(e, "k-gcm-retired", 12, false)
		emptyPost(e, "k-ctr", "", 200)                 // nothing to open: forwarded
		emptyPost(e, "k-ctr", "application/json", 400) // not JSON
		emptyPost(e, "k-gcm", "", 400)                 // no tag
		emptyPost(e, "k-gcm-retired", "", 400)         // no tag
		emptyPost(e, "k-gcm-retired", "application/json", 400)
	}
	emptyPost(e, "k-retired", "", 200)  // without sealed responses a retired key still opens
	emptyPost(es, "k-retired", "", 400) // with them, it cannot seal the answer

	for _, e := range []*env{e, es} {
		e.ring.EachUsage(func(fp string, encrypts, decrypts uint64, lastEncrypt, lastDecrypt time.Time) {
			if encrypts != 0 || decrypts != 0 || !lastEncrypt.IsZero() || !lastDecrypt.IsZero() {
				t.Errorf("usage of %s = %d encryptions (last %v), %d decryptions (last %v), want none: nothing carried content",
					fp, encrypts, lastEncrypt, decrypts, lastDecrypt)
			}
		})
	}

	// A frame with content is use: one decryption (the frame) and one
	// encryption (the kitchen's echo).
	c := dial(t, ctx, wsURL(e.url)+"/kds", e.handshakeHeader("k-ctr"))
	if err := c.Write(ctx, websocket.MessageText, []byte(e.frame(t, "k-ctr", `{"ticket":1}`))); err != nil {
		t.Fatal(err)
	}
	readText(t, ctx, c)
	if got := usageOf(t, e.ring, "k-ctr"); got.Decrypts != 1 || got.Encrypts != 1 {
		t.Fatalf("usage of k-ctr after one frame = %+v, want one decryption and one encryption", got)
	}
}

func usageOf(t *testing.T, ring *keyring.Ring, fp string) keyring.UsageSnapshot {
	t.Helper()
	k, err := ring.Lookup(fp)
	if err != nil {
		t.Fatal(err)
	}
	return k.Usage().Snapshot()
}
