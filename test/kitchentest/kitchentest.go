// Package kitchentest is a kitchen backend for gateway tests: a real HTTP
// and WebSocket server that records every request and message it receives
// and echoes them back, so a test can assert exactly what crossed the
// gateway, and that nothing did when nothing should.
package kitchentest

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"

	"github.com/coder/websocket"
)

// Request is what the kitchen saw of one HTTP request.
type Request struct {
	Method, Path, RawQuery string
	Header                 http.Header
	ContentLength          int64
	Body                   []byte
}

// Kitchen is a running backend.
type Kitchen struct {
	URL string

	mu       sync.Mutex
	requests []Request
	upgrades []Request // WebSocket handshakes that reached the kitchen
	messages []string
	// Reply, when set, is the HTTP response body instead of the echo.
	reply []byte
	// closeWith, when set, makes the WebSocket side close with this status
	// after echoing a message equal to "close".
	srv *httptest.Server
}

// Start serves a kitchen until the test ends. HTTP requests are answered
// with 200 and a JSON echo; WebSocket messages are echoed as "echo:" + msg,
// and the message "close-4001" makes the kitchen close with status 4001.
func Start(t testing.TB) *Kitchen {
	t.Helper()
	k := &Kitchen{}
	k.srv = httptest.NewServer(http.HandlerFunc(k.serve))
	t.Cleanup(k.srv.Close)
	k.URL = k.srv.URL
	return k
}

// Close stops the kitchen (an "upstream down" test).
func (k *Kitchen) Close() { k.srv.Close() }

// SetReply fixes the HTTP response body.
func (k *Kitchen) SetReply(b []byte) {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.reply = b
}

// Requests returns the HTTP requests seen so far.
func (k *Kitchen) Requests() []Request {
	k.mu.Lock()
	defer k.mu.Unlock()
	return append([]Request(nil), k.requests...)
}

// Messages returns the WebSocket messages seen so far.
func (k *Kitchen) Messages() []string {
	k.mu.Lock()
	defer k.mu.Unlock()
	return append([]string(nil), k.messages...)
}

// Upgrades returns the WebSocket handshakes that reached the kitchen.
func (k *Kitchen) Upgrades() []Request {
	k.mu.Lock()
	defer k.mu.Unlock()
	return append([]Request(nil), k.upgrades...)
}

// Seen counts everything that reached the kitchen: requests, WebSocket
// handshakes and messages.
func (k *Kitchen) Seen() int {
	k.mu.Lock()
	defer k.mu.Unlock()
	return len(k.requests) + len(k.upgrades) + len(k.messages)
}

func (k *Kitchen) serve(w http.ResponseWriter, r *http.Request) {
	if r.Header.Get("Upgrade") == "websocket" {
		k.serveWS(w, r)
		return
	}
	body, _ := io.ReadAll(r.Body)
	k.mu.Lock()
	k.requests = append(k.requests, Request{Method: r.Method, Path: r.URL.Path, RawQuery: r.URL.RawQuery,
		Header: r.Header.Clone(), ContentLength: r.ContentLength, Body: body})
	reply := k.reply
	k.mu.Unlock()
	if reply == nil {
		reply = body
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("X-Kitchen", "yes")
	_, _ = w.Write(reply)
}

func (k *Kitchen) serveWS(w http.ResponseWriter, r *http.Request) {
	k.mu.Lock()
	k.upgrades = append(k.upgrades, Request{Method: r.Method, Path: r.URL.Path, RawQuery: r.URL.RawQuery, Header: r.Header.Clone()})
	k.mu.Unlock()
	c, err := websocket.Accept(w, r, nil)
	if err != nil {
		return
	}
	defer c.CloseNow()
	ctx := context.Background()
	for {
		_, data, err := c.Read(ctx)
		if err != nil {
			return
		}
		k.mu.Lock()
		k.messages = append(k.messages, string(data))
		k.mu.Unlock()
		if string(data) == "close-4001" || string(data) == `{"close":4001}` {
			c.Close(4001, "kitchen says bye")
			return
		}
		if err := c.Write(ctx, websocket.MessageText, append([]byte("echo:"), data...)); err != nil {
			return
		}
	}
}
