package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"time"

	"github.com/coder/websocket"

	"github.com/alecrypt/alecrypt/internal/barefloor"
	"github.com/alecrypt/alecrypt/internal/gateway"
	"github.com/alecrypt/alecrypt/internal/h2conn"
	"github.com/alecrypt/alecrypt/internal/keystore/filestore"
	"github.com/alecrypt/alecrypt/internal/suite"
)

// The processes `alebench floors` compares ours with, each in a process of
// its own so that its CPU is read from /proc like alegate's and alecryptd's:
//
//   - kitchen: the backend behind both gateways; echoes request bodies and
//     WebSocket messages.
//   - proxy: a plain httputil.ReverseProxy in front of the kitchen (it
//     forwards WebSocket upgrades as a byte pipe): what alegate costs with
//     ALE taken away.
//   - bare: the ale.v1 Encrypt and Decrypt of our own generated Connect code
//     over nothing but AES-CTR under the keystore's first key: no
//     interceptors, guard, policy, audit, metrics or key lookup. What
//     alecryptd costs with its service taken away.
type serveConfig struct {
	kind     string
	listen   string
	upstream *url.URL
	keystore string
}

var usagesServe = `alebench serve: the floors alebench floors compares alegate and alecryptd with

  alebench serve kitchen|proxy|bare [--listen 127.0.0.1:0] [--upstream URL] [--keystore FILE]

Prints {"msg":"alebench serve listening","addr":...} on stderr when ready; runs until SIGTERM.
`

func parseServe(args []string, stdout io.Writer) (serveConfig, error) {
	var c serveConfig
	if len(args) == 0 || (args[0] != "kitchen" && args[0] != "proxy" && args[0] != "bare") {
		if len(args) > 0 && (args[0] == "-h" || args[0] == "--help") {
			fmt.Fprint(stdout, usagesServe)
			return c, flag.ErrHelp
		}
		return c, usagef("serve: want kitchen, proxy or bare")
	}
	c.kind = args[0]
	fs := flag.NewFlagSet("alebench serve", flag.ContinueOnError)
	fs.SetOutput(stdout)
	var upstream string
	fs.StringVar(&c.listen, "listen", "127.0.0.1:0", "address to listen on")
	fs.StringVar(&upstream, "upstream", "", "proxy: the kitchen's base URL")
	fs.StringVar(&c.keystore, "keystore", "", "bare: the keystore whose first key seals (aes-256-ctr or gcm)")
	if err := parseFlags(fs, args[1:]); err != nil {
		return c, err
	}
	switch {
	case c.kind == "proxy":
		u, err := url.Parse(upstream)
		if err != nil || u.Host == "" {
			return c, usagef("serve proxy: --upstream must be the kitchen's URL")
		}
		c.upstream = u
	case c.kind == "bare" && c.keystore == "":
		return c, usagef("serve bare: --keystore is required")
	}
	return c, nil
}

func serve(ctx context.Context, c serveConfig, stderr io.Writer) error {
	var h http.Handler
	switch c.kind {
	case "kitchen":
		h = http.HandlerFunc(kitchen)
	case "proxy":
		p := httputil.NewSingleHostReverseProxy(c.upstream)
		// The same connection pool and copy buffers alegate uses for the
		// kitchen, so the floor is a well-configured proxy, not one that
		// redials or allocates 32 KiB per response.
		p.Transport = gateway.NewUpstreamTransport()
		p.BufferPool = gateway.BufferPool
		h = p
	case "bare":
		var err error
		if h, err = bareHandler(c.keystore); err != nil {
			return err
		}
	}
	ln, err := net.Listen("tcp", c.listen)
	if err != nil {
		return err
	}
	if c.kind == "bare" {
		// Connections grouped as alecryptd's plaintext ones are: the bare
		// handler is the floor of the same transport.
		ln = h2conn.Listen(ln)
	}
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 30 * time.Second, Protocols: new(http.Protocols)}
	srv.Protocols.SetHTTP1(true)
	srv.Protocols.SetUnencryptedHTTP2(true)
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	line, _ := json.Marshal(map[string]string{"msg": "alebench serve listening", "kind": c.kind, "addr": ln.Addr().String()})
	fmt.Fprintln(stderr, string(line))
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_ = srv.Shutdown(sctx)
	return nil
}

// kitchen echoes a request's body (as JSON) and every WebSocket message.
func kitchen(w http.ResponseWriter, r *http.Request) {
	if r.Header.Get("Upgrade") == "websocket" {
		c, err := websocket.Accept(w, r, nil)
		if err != nil {
			return
		}
		defer c.CloseNow()
		c.SetReadLimit(16 << 20)
		for {
			typ, data, err := c.Read(r.Context())
			if err != nil {
				return
			}
			if err := c.Write(r.Context(), typ, data); err != nil {
				return
			}
		}
	}
	body, err := io.ReadAll(r.Body)
	if err != nil {
		return
	}
	w.Header().Set("Content-Type", "application/json")
	_, _ = w.Write(body)
}

func bareHandler(keystore string) (http.Handler, error) {
	snap, err := filestore.New(keystore).Load(context.Background())
	if err != nil {
		return nil, err
	}
	if len(snap.Records) == 0 {
		return nil, errors.New("serve bare: the keystore has no key")
	}
	rec := snap.Records[0]
	c, err := suite.Derive(rec)
	if err != nil {
		return nil, err
	}
	return barefloor.Handler(rec.Fingerprint, c), nil
}
