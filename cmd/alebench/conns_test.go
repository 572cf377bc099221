package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/alecrypt/alecrypt/internal/engine"
	"github.com/alecrypt/alecrypt/service/wire"
)

func TestParseConns(t *testing.T) {
	t.Parallel()
	base := []string{"--gate-url", "http://127.0.0.1:1", "--gate-pid", "7", "--fingerprint", "fp"}
	c, err := parseConns(base, io.Discard)
	if err != nil {
		t.Fatalf("parseConns(defaults): %v", err)
	}
	if c.WarmFrames != 0 || c.WarmSize != 1024 || len(c.targets) != 1 || !c.targets[0].resealed {
		t.Errorf("defaults: warm frames %d, size %d, targets %+v; want 0, 1024, alegate resealing", c.WarmFrames, c.WarmSize, c.targets)
	}
	c, err = parseConns(append(base, "--proxy-url", "http://127.0.0.1:2", "--proxy-pid", "8",
		"--warm-frames", "3", "--warm-size", "200", "--keystore", "ks.json"), io.Discard)
	if err != nil {
		t.Fatalf("parseConns(--warm-frames 3): %v", err)
	}
	if c.WarmFrames != 3 || c.WarmSize != 200 || c.Keystore != "ks.json" || len(c.targets) != 2 || c.targets[1].resealed {
		t.Errorf("parseConns(--warm-frames 3) = frames %d, size %d, keystore %q, targets %+v", c.WarmFrames, c.WarmSize, c.Keystore, c.targets)
	}
	for _, tc := range []struct {
		name string
		args []string
	}{
		{"warm frames without keystore", []string{"--warm-frames", "1"}},
		{"negative warm frames", []string{"--warm-frames", "-1", "--keystore", "ks.json"}},
		{"warm size below a JSON order", []string{"--warm-frames", "1", "--keystore", "ks.json", "--warm-size", "11"}},
		{"warm frames not a number", []string{"--warm-frames", "one"}},
		{"zero dial concurrency", []string{"--dial-concurrency", "0"}},
		{"proxy without pid", []string{"--proxy-url", "http://127.0.0.1:2"}},
		{"stray argument", []string{"now"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			args := append(append([]string{}, base...), tc.args...)
			_, err := parseConns(args, io.Discard)
			var u *usageError
			if !errors.As(err, &u) {
				t.Errorf("parseConns(%q) err = %v, want a usage error", args, err)
			}
		})
	}
	if _, err := parseConns([]string{"--gate-url", "http://127.0.0.1:1", "--gate-pid", "7"}, io.Discard); err == nil {
		t.Error("parseConns without --fingerprint: err = nil, want a usage error")
	}
}

// testSealer writes a keystore of one key and returns a sealer on it, and
// the keystore's path.
func testSealer(t *testing.T) (*sealer, string) {
	t.Helper()
	out := filepath.Join(t.TempDir(), "keystore.json")
	cfg, err := parseGenkeys([]string{"--n", "1", "--out", out, "--iterations", "1000", "--algorithm", "aes-256-ctr"}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if err := genkeys(cfg, io.Discard); err != nil {
		t.Fatal(err)
	}
	s, err := newSealer(out, "")
	if err != nil {
		t.Fatal(err)
	}
	return s, out
}

// wsServer serves WebSockets, answering each message with reply(message)
// until reply returns nil (then it closes the connection).
func wsServer(t *testing.T, reply func([]byte) []byte) string {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, err := websocket.Accept(w, r, nil)
		if err != nil {
			return
		}
		defer c.CloseNow()
		for {
			typ, data, err := c.Read(r.Context())
			if err != nil {
				return
			}
			out := reply(data)
			if out == nil {
				return
			}
			if err := c.Write(r.Context(), typ, out); err != nil {
				return
			}
		}
	}))
	t.Cleanup(srv.Close)
	return "ws" + strings.TrimPrefix(srv.URL, "http")
}

// resealer answers as alegate does, with the kitchen's echo sealed again
// under a fresh IV: it opens a frame and seals what it held (or other, when
// not nil).
func resealer(seal *sealer, other []byte) func([]byte) []byte {
	return func(data []byte) []byte {
		f, err := wire.ParseFrame(data)
		if err != nil {
			return []byte(`{"errorCode":1}`)
		}
		pt, _, err := seal.eng.Decrypt(context.Background(), engine.Envelope{IV: f.IV, Fingerprint: f.Fingerprint, Message: f.Message}, nil, engine.FormatAny)
		if err != nil {
			return []byte(`{"errorCode":2}`)
		}
		if other != nil {
			pt = other
		}
		env, err := seal.seal(pt)
		if err != nil {
			return nil
		}
		return wire.MarshalFrame(wire.Frame{IV: env.IV, Fingerprint: env.Fingerprint, Message: env.Message})
	}
}

// TestWarmer runs the warm-up against servers that answer as alegate does
// (the frame sealed again), as a proxy does (the kitchen's echo as it is),
// and wrongly; each wrong answer must count as an error.
func TestWarmer(t *testing.T) {
	t.Parallel()
	seal, _ := testSealer(t)
	order := jsonPayload(100)
	reseal := func(other []byte) func([]byte) []byte { return resealer(seal, other) }
	echo := func(data []byte) []byte { return data }
	for _, tc := range []struct {
		name     string
		reply    func([]byte) []byte
		resealed bool
		wantErr  string // "" for every frame echoed
	}{
		{"alegate", reseal(nil), true, ""},
		{"proxy", echo, false, ""},
		{"alegate answering other plaintext", reseal([]byte(`{"order":"other"}`)), true, "other plaintext"},
		{"alegate passing the echo through unsealed", echo, true, "not sealed again"},
		{"proxy changing the frame", reseal(nil), false, "differs"},
		{"alegate answering an error frame", func([]byte) []byte { return []byte(`{"errorCode":2}`) }, true, "not a sealed frame"},
		{"connection closed", func([]byte) []byte { return nil }, false, "frame 1"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			url := wsServer(t, tc.reply)
			ctx := context.Background()
			var conns []*websocket.Conn
			for range 5 {
				c, _, err := websocket.Dial(ctx, url, nil)
				if err != nil {
					t.Fatal(err)
				}
				t.Cleanup(func() { c.CloseNow() })
				conns = append(conns, c)
			}
			w := warmer{seal: seal, order: order, frames: 3, timeout: time.Minute, resealed: tc.resealed}
			echoed, errs, first := w.run(ctx, conns, 2)
			if tc.wantErr == "" {
				if echoed != 15 || errs != 0 || first != "" {
					t.Errorf("run = %d echoed, %d errors (%s); want 15, 0", echoed, errs, first)
				}
				return
			}
			if echoed != 0 || errs != 5 || !strings.Contains(first, tc.wantErr) {
				t.Errorf("run = %d echoed, %d errors, first %q; want 0, 5, one containing %q", echoed, errs, first, tc.wantErr)
			}
		})
	}
}

// TestRunConnsWarm holds a few connections through two in-process servers,
// one answering as alegate and one as the proxy, warms each with two frames
// and checks the JSON report counts them.
func TestRunConnsWarm(t *testing.T) {
	t.Parallel()
	seal, ks := testSealer(t)
	gate := wsServer(t, resealer(seal, nil))
	proxy := wsServer(t, func(data []byte) []byte { return data })
	pid := strconv.Itoa(os.Getpid()) // RSS and CPU are read from /proc: this process serves both
	c, err := parseConns([]string{"--gate-url", "http" + strings.TrimPrefix(gate, "ws"), "--gate-pid", pid,
		"--proxy-url", "http" + strings.TrimPrefix(proxy, "ws"), "--proxy-pid", pid, "--fingerprint", seal.fp, "--keystore", ks,
		"--hold", "4", "--warm-frames", "2", "--warm-size", "64", "--settle", "0s", "--idle", "10ms", "--storm-rate", "0", "--json"}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	if err := runConns(context.Background(), c, &out, io.Discard); err != nil {
		t.Fatalf("runConns: %v", err)
	}
	var rep struct{ Held []HoldResult }
	if err := json.Unmarshal(out.Bytes(), &rep); err != nil {
		t.Fatalf("report is not JSON: %v\n%s", err, out.String())
	}
	if len(rep.Held) != 2 {
		t.Fatalf("%d held rows, want 2 (alegate, proxy):\n%s", len(rep.Held), out.String())
	}
	for _, r := range rep.Held {
		if r.Held != 4 || r.Errors != 0 || r.WarmFrames != 2 || r.WarmSize != 64 || r.WarmEchoed != 8 || r.WarmErrors != 0 {
			t.Errorf("%s: %+v; want 4 held, 8 frames echoed, no error", r.Target, r)
		}
	}
}
