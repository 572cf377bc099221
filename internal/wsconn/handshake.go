package wsconn

import (
	"bufio"
	"context"
	"crypto/rand"
	"crypto/sha1"
	"crypto/tls"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"strings"
	"time"
)

// keyGUID is section 1.3's constant, hashed with a handshake's key.
const keyGUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

// acceptKey is the Sec-WebSocket-Accept value for a Sec-WebSocket-Key.
func acceptKey(key string) string {
	h := sha1.Sum([]byte(key + keyGUID))
	return base64.StdEncoding.EncodeToString(h[:])
}

// IsHandshake reports whether r asks to open a WebSocket.
func IsHandshake(r *http.Request) bool {
	return HasToken(r.Header, "Upgrade", "websocket") && HasToken(r.Header, "Connection", "upgrade")
}

// CheckHandshake applies section 4.2.1's rules to a client's opening
// handshake, so that one Accept could not complete is refused before
// anything else is done for it. It returns 0 when the handshake is
// acceptable, else the status to answer and why; a wrong version's answer
// names the one spoken, in w's header.
func CheckHandshake(w http.ResponseWriter, r *http.Request) (status int, reason string) {
	switch {
	case !r.ProtoAtLeast(1, 1):
		return http.StatusUpgradeRequired, "websocket handshake needs HTTP/1.1"
	case r.Method != http.MethodGet:
		return http.StatusMethodNotAllowed, "websocket handshake must be GET"
	case r.Header.Get("Sec-WebSocket-Version") != "13":
		w.Header().Set("Sec-WebSocket-Version", "13")
		return http.StatusUpgradeRequired, "websocket version must be 13"
	}
	keys := r.Header.Values("Sec-WebSocket-Key")
	if len(keys) != 1 {
		return http.StatusBadRequest, "websocket handshake needs one Sec-WebSocket-Key"
	}
	if k, err := base64.StdEncoding.DecodeString(strings.TrimSpace(keys[0])); err != nil || len(k) != 16 {
		return http.StatusBadRequest, "Sec-WebSocket-Key must be 16 bytes in base64"
	}
	return 0, ""
}

// Accept answers a client's opening handshake with 101 Switching
// Protocols and takes the connection over from the HTTP server. The caller
// has checked the handshake (CheckHandshake). Headers
// already set on w go out with the 101; no extension or subprotocol is
// chosen.
func Accept(w http.ResponseWriter, r *http.Request) (*Conn, error) {
	key := strings.TrimSpace(r.Header.Get("Sec-WebSocket-Key"))
	if key == "" {
		http.Error(w, "websocket handshake needs a Sec-WebSocket-Key", http.StatusBadRequest)
		return nil, errors.New("websocket: handshake without a key")
	}
	rc := http.NewResponseController(w)
	h := w.Header()
	h.Set("Upgrade", "websocket")
	h.Set("Connection", "Upgrade")
	h.Set("Sec-WebSocket-Accept", acceptKey(key))
	w.WriteHeader(http.StatusSwitchingProtocols)
	// Hijacking sends the header written above.
	nc, brw, err := rc.Hijack()
	if err != nil {
		return nil, fmt.Errorf("websocket: taking the connection over: %w", err)
	}
	// A client may send frames right behind its handshake; the server's
	// reader may hold them.
	leftover, _ := brw.Reader.Peek(brw.Reader.Buffered())
	return newConn(nc, false, leftover), nil
}

// DialOptions are how Dial reaches a server.
type DialOptions struct {
	// Header goes out with the handshake (the protocol's own fields are
	// set by Dial).
	Header http.Header
	// DialContext opens the TCP connection; nil is a net.Dialer's.
	DialContext func(ctx context.Context, network, addr string) (net.Conn, error)
	// TLSConfig is for wss URLs; nil is the system's roots.
	TLSConfig *tls.Config
	// HandshakeTimeout bounds the connection and its handshake; 0 is
	// DefaultHandshakeTimeout.
	HandshakeTimeout time.Duration
	// Proxy chooses an HTTP proxy as an http.Transport's does, from the
	// request for the WebSocket's http or https URL
	// (http.ProxyFromEnvironment: HTTP_PROXY, HTTPS_PROXY, NO_PROXY).
	// The WebSocket then goes through a CONNECT tunnel, whatever its
	// scheme. nil, or a nil URL: no proxy.
	Proxy func(*http.Request) (*url.URL, error)
}

// DefaultHandshakeTimeout bounds a Dial whose options set none.
const DefaultHandshakeTimeout = 30 * time.Second

// maxResponseHeader bounds the server's handshake response.
const maxResponseHeader = 64 << 10

// HandshakeError is a server's answer other than 101 to Dial's handshake,
// or a 101 without what the protocol needs.
type HandshakeError struct {
	Status int
	Reason string
}

func (e *HandshakeError) Error() string {
	return fmt.Sprintf("websocket handshake refused: status %d: %s", e.Status, e.Reason)
}

// Dial opens a WebSocket to a ws:// or wss:// URL. ctx bounds the dial and
// the handshake, not the connection.
func Dial(ctx context.Context, rawURL string, o DialOptions) (*Conn, error) {
	u, err := url.Parse(rawURL)
	if err != nil {
		return nil, fmt.Errorf("websocket: %w", err)
	}
	var port string
	switch u.Scheme {
	case "ws":
		port = "80"
	case "wss":
		port = "443"
	default:
		return nil, fmt.Errorf("websocket: URL scheme %q is not ws or wss", u.Scheme)
	}
	addr := u.Host
	if u.Port() == "" {
		addr = net.JoinHostPort(u.Hostname(), port)
	}
	timeout := o.HandshakeTimeout
	if timeout <= 0 {
		timeout = DefaultHandshakeTimeout
	}
	proxy, err := chooseProxy(u, o.Proxy)
	if err != nil {
		return nil, err
	}
	dialAddr := addr
	if proxy != nil {
		dialAddr = proxy.Host
		if proxy.Port() == "" {
			dialAddr = net.JoinHostPort(proxy.Hostname(), map[string]string{"http": "80", "https": "443"}[proxy.Scheme])
		}
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	dial := o.DialContext
	if dial == nil {
		dial = (&net.Dialer{KeepAlive: 30 * time.Second}).DialContext
	}
	nc, err := dial(ctx, "tcp", dialAddr)
	if err != nil {
		return nil, fmt.Errorf("websocket: %w", err)
	}
	c, err := handshake(ctx, nc, u, addr, proxy, o, timeout)
	if err != nil {
		nc.Close()
		return nil, err
	}
	return c, nil
}

// chooseProxy asks choose for u's proxy, with the request an HTTP client
// would make for it.
func chooseProxy(u *url.URL, choose func(*http.Request) (*url.URL, error)) (*url.URL, error) {
	if choose == nil {
		return nil, nil
	}
	hu := *u
	hu.Scheme = map[string]string{"ws": "http", "wss": "https"}[u.Scheme]
	proxy, err := choose(&http.Request{Method: http.MethodGet, URL: &hu, Host: u.Host, Header: http.Header{}})
	switch {
	case err != nil:
		return nil, fmt.Errorf("websocket: choosing a proxy: %w", err)
	case proxy != nil && proxy.Scheme != "http" && proxy.Scheme != "https":
		return nil, fmt.Errorf("websocket: proxy scheme %q is not http or https", proxy.Scheme)
	}
	return proxy, nil
}

// tunnel asks the proxy nc reaches to connect it to addr (CONNECT,
// RFC 9110 section 9.3.6), with the proxy URL's user as Basic
// credentials.
func tunnel(ctx context.Context, nc net.Conn, proxy *url.URL, addr string, o DialOptions) (net.Conn, error) {
	if proxy.Scheme == "https" {
		cfg := &tls.Config{}
		if o.TLSConfig != nil {
			cfg = o.TLSConfig.Clone()
		}
		cfg.ServerName = proxy.Hostname()
		tc := tls.Client(nc, cfg)
		if err := tc.HandshakeContext(ctx); err != nil {
			return nil, err
		}
		nc = tc
	}
	req := &http.Request{Method: http.MethodConnect, URL: &url.URL{Opaque: addr}, Host: addr, Header: http.Header{}}
	if proxy.User != nil {
		pass, _ := proxy.User.Password()
		req.Header.Set("Proxy-Authorization", "Basic "+base64.StdEncoding.EncodeToString([]byte(proxy.User.Username()+":"+pass)))
	}
	if err := req.Write(nc); err != nil {
		return nil, err
	}
	br := bufio.NewReader(&io.LimitedReader{R: nc, N: maxResponseHeader})
	res, err := http.ReadResponse(br, req)
	if err != nil {
		return nil, err
	}
	if res.StatusCode/100 != 2 {
		return nil, fmt.Errorf("proxy %s refused the tunnel: %s", proxy.Redacted(), res.Status)
	}
	if br.Buffered() > 0 {
		// Nothing may come through the tunnel before the handshake.
		return nil, fmt.Errorf("proxy %s sent data after its answer", proxy.Redacted())
	}
	return nc, nil
}

func handshake(ctx context.Context, nc net.Conn, u *url.URL, addr string, proxy *url.URL, o DialOptions, timeout time.Duration) (*Conn, error) {
	// The context's end interrupts whatever the handshake waits for.
	if d, ok := ctx.Deadline(); ok {
		_ = nc.SetDeadline(d)
	}
	raw := nc // what the layers put on it (a tunnel's TLS, the server's) read and write through
	stop := context.AfterFunc(ctx, func() { _ = raw.SetDeadline(time.Unix(1, 0)) })
	defer stop()
	wrap := func(err error) error {
		switch {
		case errors.Is(ctx.Err(), context.Canceled):
			err = context.Cause(ctx)
		case ctx.Err() != nil, errors.Is(err, os.ErrDeadlineExceeded):
			err = fmt.Errorf("handshake not done within %v: %w", timeout, err)
		}
		return fmt.Errorf("websocket: %w", err)
	}
	if proxy != nil {
		var err error
		if nc, err = tunnel(ctx, nc, proxy, addr, o); err != nil {
			return nil, wrap(err)
		}
	}
	if u.Scheme == "wss" {
		cfg := &tls.Config{}
		if o.TLSConfig != nil {
			cfg = o.TLSConfig.Clone()
		}
		if cfg.ServerName == "" {
			cfg.ServerName = u.Hostname()
		}
		cfg.NextProtos = []string{"http/1.1"}
		tc := tls.Client(nc, cfg)
		if err := tc.HandshakeContext(ctx); err != nil {
			return nil, wrap(err)
		}
		nc = tc
	}
	var nonce [16]byte
	_, _ = rand.Read(nonce[:])
	key := base64.StdEncoding.EncodeToString(nonce[:])
	req := &http.Request{
		Method:     http.MethodGet,
		URL:        &url.URL{Path: u.Path, RawPath: u.RawPath, RawQuery: u.RawQuery},
		Host:       u.Host,
		Proto:      "HTTP/1.1",
		ProtoMajor: 1,
		ProtoMinor: 1,
		Header:     o.Header.Clone(),
	}
	if req.Header == nil {
		req.Header = http.Header{}
	}
	req.Header.Set("Upgrade", "websocket")
	req.Header.Set("Connection", "Upgrade")
	req.Header.Set("Sec-WebSocket-Key", key)
	req.Header.Set("Sec-WebSocket-Version", "13")
	if err := req.Write(nc); err != nil {
		return nil, wrap(err)
	}
	br := bufio.NewReader(&io.LimitedReader{R: nc, N: maxResponseHeader})
	res, err := http.ReadResponse(br, req)
	if err != nil {
		return nil, wrap(err)
	}
	if err := checkResponse(res, key); err != nil {
		return nil, err
	}
	if !stop() {
		return nil, wrap(ctx.Err())
	}
	if err := nc.SetDeadline(time.Time{}); err != nil {
		return nil, wrap(err)
	}
	leftover, _ := br.Peek(br.Buffered())
	return newConn(nc, true, leftover), nil
}

// checkResponse applies section 4.1's rules to the server's answer.
func checkResponse(res *http.Response, key string) error {
	fail := func(reason string) error { return &HandshakeError{Status: res.StatusCode, Reason: reason} }
	switch {
	case res.StatusCode != http.StatusSwitchingProtocols:
		return fail(http.StatusText(res.StatusCode))
	case !HasToken(res.Header, "Upgrade", "websocket"):
		return fail("no Upgrade: websocket")
	case !HasToken(res.Header, "Connection", "upgrade"):
		return fail("no Connection: upgrade")
	case res.Header.Get("Sec-WebSocket-Accept") != acceptKey(key):
		return fail("Sec-WebSocket-Accept does not match the key")
	case res.Header.Get("Sec-WebSocket-Extensions") != "":
		return fail("an extension was chosen, none was offered")
	case res.Header.Get("Sec-WebSocket-Protocol") != "":
		return fail("a subprotocol was chosen, none was offered")
	}
	return nil
}

// HasToken reports whether a header field of h named name lists token
// (compared without case).
func HasToken(h http.Header, name, token string) bool {
	for _, v := range h.Values(name) {
		for t := range strings.SplitSeq(v, ",") {
			if strings.EqualFold(strings.TrimSpace(t), token) {
				return true
			}
		}
	}
	return false
}
