package wsconn

import (
	"bufio"
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/alecrypt/alecrypt/internal/wsconn/wsconntest"
)

// The tests below put a Conn opposite coder/websocket over loopback TCP:
// another implementation, and the socket path that waits for readability.

// echoServer accepts with Accept and echoes every message back as the
// gateway would run a connection: read until an error, then wait for the
// peer's answer to a close before closing the socket.
func echoServer(t *testing.T, limit int64, seen chan<- error) *httptest.Server {
	t.Helper()
	srv := httptest.NewServer(echoHandler(t, limit, seen))
	t.Cleanup(srv.Close)
	return srv
}

func echoHandler(t *testing.T, limit int64, seen chan<- error) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, err := Accept(w, r)
		if err != nil {
			t.Errorf("Accept: %v", err)
			return
		}
		defer c.CloseNow()
		c.SetReadLimit(limit)
		for {
			typ, p, err := c.Read(nil)
			if err != nil {
				c.AwaitClose()
				if seen != nil {
					seen <- err
				}
				return
			}
			if c.rbuf != nil {
				t.Errorf("a read buffer is held after a whole message with nothing pending")
			}
			if err := c.Write(typ, p); err != nil {
				return
			}
		}
	})
}

func wsURL(s string) string { return "ws" + strings.TrimPrefix(s, "http") }

// TestAcceptInterop: messages of every length encoding, whole or in
// fragments, come back intact; pings are answered; a close's status
// reaches the server and the client's close handshake completes.
func TestAcceptInterop(t *testing.T) {
	t.Parallel()
	seen := make(chan error, 1)
	srv := echoServer(t, 1<<20, seen)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	c, _, err := websocket.Dial(ctx, wsURL(srv.URL), nil)
	if err != nil {
		t.Fatal(err)
	}
	c.SetReadLimit(1 << 20)
	for _, n := range []int{0, 1, 125, 126, 4095, 4096, 4097, 70000, 300000} {
		msg := bytes.Repeat([]byte{byte('a' + n%26)}, n)
		if n > 4096 {
			// Written through a Writer, the message goes out in fragments.
			wr, err := c.Writer(ctx, websocket.MessageBinary)
			if err != nil {
				t.Fatal(err)
			}
			for chunk := range slices.Chunk(msg, 5000) {
				if _, err := wr.Write(chunk); err != nil {
					t.Fatal(err)
				}
			}
			if err := wr.Close(); err != nil {
				t.Fatal(err)
			}
		} else if err := c.Write(ctx, websocket.MessageText, msg); err != nil {
			t.Fatal(err)
		}
		typ, got, err := c.Read(ctx)
		if err != nil {
			t.Fatalf("%d bytes: %v", n, err)
		}
		wantTyp := websocket.MessageText
		if n > 4096 {
			wantTyp = websocket.MessageBinary
		}
		if typ != wantTyp || !bytes.Equal(got, msg) {
			t.Fatalf("%d bytes: echo of type %v and %d bytes differs", n, typ, len(got))
		}
	}
	// A ping is answered while the client reads.
	read := make(chan error, 1)
	go func() { _, _, err := c.Read(ctx); read <- err }()
	if err := c.Ping(ctx); err != nil {
		t.Fatalf("ping: %v", err)
	}
	if err := c.Close(4001, "done here"); err != nil {
		t.Fatalf("close handshake: %v", err)
	}
	if got := CloseStatus(<-seen); got != 4001 {
		t.Errorf("server read ended with status %d, want 4001", got)
	}
	<-read
}

// TestReadLimitClosesCleanly: a message over the limit ends with 1009 at
// the client, not a reset, even while the client is still sending it.
func TestReadLimitClosesCleanly(t *testing.T) {
	t.Parallel()
	srv := echoServer(t, 1000, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	c, _, err := websocket.Dial(ctx, wsURL(srv.URL), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.CloseNow()
	if err := c.Write(ctx, websocket.MessageText, make([]byte, 200000)); err != nil {
		t.Fatalf("write of the large message: %v", err)
	}
	if _, _, err := c.Read(ctx); websocket.CloseStatus(err) != websocket.StatusMessageTooBig {
		t.Fatalf("read after it = %v, want close status 1009", err)
	}
}

// TestDialInterop: Dial sends the handshake headers it is given, messages
// pass both ways, and the server's close status ends the reader.
func TestDialInterop(t *testing.T) {
	t.Parallel()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, err := websocket.Accept(w, r, nil)
		if err != nil {
			return
		}
		defer c.CloseNow()
		if err := c.Write(r.Context(), websocket.MessageText, []byte("auth="+r.Header.Get("Authorization")+" path="+r.URL.RequestURI())); err != nil {
			return
		}
		typ, p, err := c.Read(r.Context())
		if err != nil {
			return
		}
		if err := c.Write(r.Context(), typ, p); err != nil {
			return
		}
		c.Close(4002, "kitchen closed")
	}))
	defer srv.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	c, err := Dial(ctx, wsURL(srv.URL)+"/kds?a=1", DialOptions{Header: http.Header{"Authorization": {"Bearer x"}}})
	if err != nil {
		t.Fatal(err)
	}
	defer c.CloseNow()
	if _, p, err := c.Read(nil); err != nil || string(p) != "auth=Bearer x path=/kds?a=1" {
		t.Fatalf("first message = %q, %v", p, err)
	}
	if err := c.Write(Binary, []byte{0, 1, 2, 0xff}); err != nil {
		t.Fatal(err)
	}
	if typ, p, err := c.Read(nil); err != nil || typ != Binary || !bytes.Equal(p, []byte{0, 1, 2, 0xff}) {
		t.Fatalf("echo = %v %x, %v", typ, p, err)
	}
	var ce CloseError
	if _, _, err := c.Read(nil); !errors.As(err, &ce) || ce.Code != 4002 || ce.Reason != "kitchen closed" {
		t.Fatalf("end = %v, want close 4002 kitchen closed", err)
	}
}

// rawServer answers one connection with the bytes resp makes of the
// client's key, then holds it open until the test ends.
func rawServer(t *testing.T, resp func(key string) string) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	t.Cleanup(func() { close(done); ln.Close() })
	go func() {
		conn, err := ln.Accept()
		if err != nil {
			return
		}
		defer conn.Close()
		req, err := http.ReadRequest(bufio.NewReader(conn))
		if err != nil {
			return
		}
		if resp != nil {
			conn.Write([]byte(resp(req.Header.Get("Sec-WebSocket-Key"))))
		}
		<-done
	}()
	return "ws://" + ln.Addr().String() + "/"
}

// TestDialRefusals: answers that are not a WebSocket handshake are
// refused with what was wrong; a server that never answers is given up on.
func TestDialRefusals(t *testing.T) {
	t.Parallel()
	ok := func(key string) string {
		return "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: " + acceptKey(key) + "\r\n"
	}
	for _, tc := range []struct {
		name string
		resp func(key string) string
		want string
	}{
		{"not found", func(string) string { return "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n" }, "status 404"},
		{"wrong accept", func(string) string { return ok("other") + "\r\n" }, "Sec-WebSocket-Accept"},
		{"extension chosen", func(k string) string { return ok(k) + "Sec-WebSocket-Extensions: permessage-deflate\r\n\r\n" }, "extension"},
		{"no upgrade", func(k string) string { return strings.Replace(ok(k), "Upgrade: websocket\r\n", "", 1) + "\r\n" }, "Upgrade"},
		{"never answers", nil, "not done within 1s"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			_, err := Dial(context.Background(), rawServer(t, tc.resp), DialOptions{HandshakeTimeout: time.Second})
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Dial = %v, want an error naming %q", err, tc.want)
			}
		})
	}
}

// TestFramesBehindHandshake: a frame that arrives in the same packet as
// the handshake is read, on both sides.
func TestFramesBehindHandshake(t *testing.T) {
	t.Parallel()
	url := rawServer(t, func(key string) string {
		return "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: " +
			acceptKey(key) + "\r\n\r\n\x81\x05Hello"
	})
	c, err := Dial(context.Background(), url, DialOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer c.CloseNow()
	if _, p, err := c.Read(nil); err != nil || string(p) != "Hello" {
		t.Fatalf("client read %q, %v", p, err)
	}

	srv := echoServer(t, 1<<10, nil)
	conn, err := net.Dial("tcp", strings.TrimPrefix(srv.URL, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	hs := "GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\n" +
		"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n\x81\x85\x37\xfa\x21\x3d\x7f\x9f\x4d\x51\x58"
	if _, err := conn.Write([]byte(hs)); err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(conn)
	res, err := http.ReadResponse(br, nil)
	if err != nil || res.StatusCode != http.StatusSwitchingProtocols || res.Header.Get("Sec-WebSocket-Accept") != "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=" {
		t.Fatalf("handshake answer %v, %v", res, err)
	}
	echo := make([]byte, 7)
	if _, err := io.ReadFull(br, echo); err != nil || string(echo) != "\x81\x05Hello" {
		t.Fatalf("echo of the frame behind the handshake = %q, %v", echo, err)
	}
}

// TestTLS: over TLS (where a reader waits in a read, not for readiness)
// Accept and Dial carry messages the same way.
func TestTLS(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()

	srv := httptest.NewUnstartedServer(echoHandler(t, 1<<20, nil))
	srv.StartTLS()
	defer srv.Close()
	c, _, err := websocket.Dial(ctx, "wss"+strings.TrimPrefix(srv.URL, "https"), &websocket.DialOptions{HTTPClient: srv.Client()})
	if err != nil {
		t.Fatal(err)
	}
	defer c.CloseNow()
	for _, msg := range []string{"one", strings.Repeat("two", 3000)} {
		if err := c.Write(ctx, websocket.MessageText, []byte(msg)); err != nil {
			t.Fatal(err)
		}
		if _, got, err := c.Read(ctx); err != nil || string(got) != msg {
			t.Fatalf("echo over TLS of %d bytes = %d bytes, %v", len(msg), len(got), err)
		}
	}

	kitchen := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, err := websocket.Accept(w, r, nil)
		if err != nil {
			return
		}
		defer c.CloseNow()
		typ, p, err := c.Read(r.Context())
		if err == nil {
			c.Write(r.Context(), typ, p)
		}
		c.Close(websocket.StatusNormalClosure, "")
	}))
	kitchen.StartTLS()
	defer kitchen.Close()
	up, err := Dial(ctx, "wss"+strings.TrimPrefix(kitchen.URL, "https"),
		DialOptions{TLSConfig: kitchen.Client().Transport.(*http.Transport).TLSClientConfig})
	if err != nil {
		t.Fatal(err)
	}
	defer up.CloseNow()
	if err := up.Write(Text, []byte("over wss")); err != nil {
		t.Fatal(err)
	}
	if _, p, err := up.Read(nil); err != nil || string(p) != "over wss" {
		t.Fatalf("echo over wss = %q, %v", p, err)
	}
	if _, _, err := up.Read(nil); CloseStatus(err) != StatusNormalClosure {
		t.Fatalf("end = %v, want a normal closure", err)
	}
	if _, err := Dial(ctx, "wss"+strings.TrimPrefix(kitchen.URL, "https"), DialOptions{}); err == nil ||
		!strings.Contains(err.Error(), "certificate") {
		t.Fatalf("Dial to an untrusted certificate = %v, want a certificate error", err)
	}
}

// TestDialThroughProxy: with a proxy chosen, Dial tunnels through it with
// CONNECT and the proxy URL's credentials, and a proxy's refusal is the
// dial's error, naming the proxy without its password.
func TestDialThroughProxy(t *testing.T) {
	t.Parallel()
	srv := echoServer(t, 1<<10, nil)
	target := strings.TrimPrefix(srv.URL, "http://")
	proxy, targets := wsconntest.ConnectProxy(t, "Basic "+base64.StdEncoding.EncodeToString([]byte("gate:s3cret")))
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()

	withUser := *proxy
	withUser.User = url.UserPassword("gate", "s3cret")
	var asked *http.Request
	c, err := Dial(ctx, wsURL(srv.URL)+"/kds", DialOptions{Proxy: func(r *http.Request) (*url.URL, error) {
		asked = r
		return &withUser, nil
	}})
	if err != nil {
		t.Fatal(err)
	}
	defer c.CloseNow()
	if asked.URL.String() != srv.URL+"/kds" {
		t.Errorf("the proxy rule was asked about %s, want %s/kds", asked.URL, srv.URL)
	}
	if got := <-targets; got != target {
		t.Errorf("tunnel to %s, want %s", got, target)
	}
	if err := c.Write(Text, []byte("via proxy")); err != nil {
		t.Fatal(err)
	}
	if _, p, err := c.Read(nil); err != nil || string(p) != "via proxy" {
		t.Fatalf("echo through the tunnel = %q, %v", p, err)
	}

	wrong := *proxy
	wrong.User = url.UserPassword("gate", "wrong-password")
	_, err = Dial(ctx, wsURL(srv.URL), DialOptions{Proxy: http.ProxyURL(&wrong)})
	if err == nil || !strings.Contains(err.Error(), "407") || strings.Contains(err.Error(), "wrong-password") {
		t.Fatalf("Dial through a refusing proxy = %v, want its 407 without the password", err)
	}
	if _, err := Dial(ctx, wsURL(srv.URL), DialOptions{Proxy: http.ProxyURL(&url.URL{Scheme: "socks5", Host: proxy.Host})}); err == nil ||
		!strings.Contains(err.Error(), "socks5") {
		t.Fatalf("Dial through a socks5 proxy = %v, want it refused by scheme", err)
	}
}
