// Package wsconntest is what tests of WebSocket dials share: an HTTP proxy
// that tunnels CONNECT requests.
package wsconntest

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"net/url"
	"testing"
)

// ConnectProxy starts an HTTP proxy that tunnels CONNECT requests carrying
// auth as their Proxy-Authorization ("" for none), and refuses others with
// 407. It returns its URL and the targets it tunneled to, in order.
func ConnectProxy(t testing.TB, auth string) (*url.URL, <-chan string) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	targets := make(chan string, 8)
	go func() {
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			go tunnel(conn, auth, targets)
		}
	}()
	return &url.URL{Scheme: "http", Host: ln.Addr().String()}, targets
}

func tunnel(conn net.Conn, auth string, targets chan<- string) {
	defer conn.Close()
	req, err := http.ReadRequest(bufio.NewReader(conn))
	if err != nil {
		return
	}
	if req.Method != http.MethodConnect || req.Header.Get("Proxy-Authorization") != auth {
		io.WriteString(conn, "HTTP/1.1 407 Proxy Authentication Required\r\nContent-Length: 0\r\n\r\n")
		return
	}
	up, err := net.Dial("tcp", req.Host)
	if err != nil {
		io.WriteString(conn, "HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\n\r\n")
		return
	}
	defer up.Close()
	targets <- req.Host
	io.WriteString(conn, "HTTP/1.1 200 Connection established\r\n\r\n")
	go io.Copy(up, conn)
	io.Copy(conn, up)
}
