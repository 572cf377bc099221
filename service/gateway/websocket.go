package gateway

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"unicode/utf8"

	"connectrpc.com/connect"
	"github.com/coder/websocket"

	alev1 "github.com/alecrypt/alecrypt/gen/ale/v1"
	"github.com/alecrypt/alecrypt/service/wire"
)

func isWebSocket(r *http.Request) bool {
	return strings.EqualFold(r.Header.Get("Upgrade"), "websocket") &&
		strings.Contains(strings.ToLower(r.Header.Get("Connection")), "upgrade")
}

// serveWebSocket checks the handshake like an HTTP request (errorCode 1 or 2
// as a 400 before any upgrade), connects to the upstream, then bridges: each
// client frame {"iv","fingerprint","message"} is decrypted and its plaintext
// sent upstream; each upstream message goes to the client as a fresh frame
// under the connection's key. A bad frame gets an ALE error frame and is
// dropped; the connection stays up.
func (g *Gateway) serveWebSocket(w http.ResponseWriter, r *http.Request) {
	h := headersOf(r, true)
	iv, err := h.check()
	if err != nil {
		g.refuse(w, r, err)
		return
	}
	// An empty message under the handshake's IV and key: proves the
	// fingerprint is known and usable and the IV fits its algorithm,
	// before anything is upgraded or dialed.
	if _, err := g.crypto.Decrypt(r.Context(), connect.NewRequest(&alev1.DecryptRequest{
		Envelope: &alev1.Envelope{Iv: iv, Fingerprint: h.fingerprint},
	})); err != nil {
		g.cryptoError(w, r, err)
		return
	}

	ctx, cancel := context.WithCancel(context.WithoutCancel(r.Context()))
	defer cancel()
	up, res, err := websocket.Dial(ctx, g.upstreamWS(r), &websocket.DialOptions{
		HTTPHeader: upstreamHeaders(r),
		HTTPClient: &http.Client{Transport: g.opts.Transport},
	})
	if err != nil {
		if res != nil && res.Body != nil {
			res.Body.Close()
		}
		g.upstreamError(w, r, err)
		return
	}
	defer up.CloseNow()
	up.SetReadLimit(g.opts.MaxFrameBytes)

	client, err := websocket.Accept(w, r, &websocket.AcceptOptions{OriginPatterns: g.opts.OriginPatterns})
	if err != nil {
		g.log.Info("websocket accept failed", "path", r.URL.Path, "err", err)
		up.Close(websocket.StatusGoingAway, "client handshake failed")
		return
	}
	defer client.CloseNow()
	// Base64 makes a frame 4/3 of its plaintext, plus the JSON around it.
	client.SetReadLimit(g.opts.MaxFrameBytes*4/3 + 1024)

	sess := openSession(ctx, g.crypto)
	defer sess.close()
	done := make(chan struct{}, 2)
	go func() { g.clientToUpstream(ctx, sess, client, up); done <- struct{}{} }()
	go func() { g.upstreamToClient(ctx, sess, up, client, h.fingerprint); done <- struct{}{} }()
	<-done
	cancel()
	<-done
}

func (g *Gateway) clientToUpstream(ctx context.Context, sess *cryptoSession, client, up *websocket.Conn) {
	for {
		_, data, err := client.Read(ctx)
		if err != nil {
			closeLike(up, err)
			return
		}
		pt, aleErr, err := g.openFrame(ctx, sess, data)
		if err != nil {
			g.log.Error("crypto service failed on a websocket frame; closing", "err", err)
			client.Close(websocket.StatusInternalError, "crypto service unavailable")
			up.Close(websocket.StatusGoingAway, "client side closed")
			return
		}
		if aleErr != 0 {
			g.log.Info("websocket frame refused", "ale_code", aleErr)
			if err := client.Write(ctx, websocket.MessageText, wire.ErrorBody(aleErr)); err != nil {
				return
			}
			continue
		}
		typ := websocket.MessageText
		if !utf8.Valid(pt) {
			typ = websocket.MessageBinary
		}
		if err := up.Write(ctx, typ, pt); err != nil {
			client.Close(websocket.StatusInternalError, "upstream write failed")
			return
		}
	}
}

// openFrame parses and decrypts one client frame. It returns the plaintext,
// or the ALE code to answer the frame with, or an error when alecryptd
// cannot be reached.
func (g *Gateway) openFrame(ctx context.Context, sess *cryptoSession, data []byte) ([]byte, int, error) {
	f, err := wire.ParseFrame(data)
	if err != nil {
		e, _ := wire.AsError(err)
		return nil, e.Code, nil
	}
	return sess.decrypt(ctx, &alev1.DecryptRequest{
		Envelope: &alev1.Envelope{Iv: f.IV, Fingerprint: f.Fingerprint, Message: f.Message},
		Expect:   g.opts.FrameFormat,
	})
}

func (g *Gateway) upstreamToClient(ctx context.Context, sess *cryptoSession, up, client *websocket.Conn, fingerprint string) {
	key := &alev1.KeyRef{Ref: &alev1.KeyRef_Fingerprint{Fingerprint: fingerprint}}
	for {
		_, data, err := up.Read(ctx)
		if err != nil {
			closeLike(client, err)
			return
		}
		e, err := sess.encrypt(ctx, &alev1.EncryptRequest{Plaintext: data, Key: key})
		if err != nil {
			// Never send plaintext the client expects encrypted.
			g.log.Error("encrypting an upstream websocket message failed; closing", "err", err)
			client.Close(websocket.StatusInternalError, "encryption failed")
			up.Close(websocket.StatusGoingAway, "client side closed")
			return
		}
		frame := wire.MarshalFrame(wire.Frame{IV: e.GetIv(), Fingerprint: e.GetFingerprint(), Message: e.GetMessage()})
		if err := client.Write(ctx, websocket.MessageText, frame); err != nil {
			up.Close(websocket.StatusGoingAway, "client write failed")
			return
		}
	}
}

// closeLike closes c with the status and reason that ended the other side,
// so close codes pass through the gateway.
func closeLike(c *websocket.Conn, err error) {
	var ce websocket.CloseError
	if errors.As(err, &ce) {
		_ = c.Close(ce.Code, ce.Reason)
		return
	}
	_ = c.Close(websocket.StatusGoingAway, "peer went away")
}

// upstreamWS is the upstream WebSocket URL for r: the upstream's scheme
// turned ws(s), r's path, and r's query without the security parameters.
func (g *Gateway) upstreamWS(r *http.Request) string {
	u := *g.upstream
	switch u.Scheme {
	case "https":
		u.Scheme = "wss"
	default:
		u.Scheme = "ws"
	}
	u.Path = strings.TrimSuffix(u.Path, "/") + r.URL.Path
	q := r.URL.Query()
	q.Del(wire.HeaderIV)
	q.Del(wire.HeaderFingerprint)
	q.Del("authorization")
	u.RawQuery = q.Encode()
	return u.String()
}

// upstreamHeaders forwards the handshake headers a backend uses (auth,
// cookies, request id), never the ALE ones or the WebSocket protocol's own.
func upstreamHeaders(r *http.Request) http.Header {
	out := http.Header{}
	for _, k := range []string{"Authorization", "Cookie", "X-Request-Id", "Traceparent", "Tracestate"} {
		if v := r.Header.Values(k); len(v) > 0 {
			out[k] = v
		}
	}
	if out.Get("Authorization") == "" {
		if a := r.URL.Query().Get("authorization"); a != "" {
			out.Set("Authorization", a)
		}
	}
	return out
}
