package gateway

import (
	"context"
	"errors"
	"net/http"

	"github.com/coder/websocket"

	"github.com/alecrypt/alecrypt/service/replay"
	"github.com/alecrypt/alecrypt/service/wire"
)

// Replay rejection (Options.Replay, alegate --replay-window).
//
// A message is claimed only after alecryptd decrypted it (and its plaintext
// passed the check): a replay still costs a decryption, but a flood of
// forged IVs under an unknown fingerprint, or garbage that fails the check,
// fills no window. Claims are atomic, so of two copies racing, through one
// gateway or several sharing a store, exactly one goes upstream.
//
//   - HTTP request: its (sec-fingerprint, sec-iv) is claimed; a replay gets
//     400 {"errorCode":2,...} and never reaches the kitchen.
//   - WebSocket handshake: its (fingerprint, IV) is claimed before the
//     kitchen is dialed; a replayed handshake gets the same 400.
//   - WebSocket frame: its (fingerprint, iv) is claimed, except when it is
//     the handshake's own pair on the connection that made that handshake.
//     EK's text leaves open whether frames carry IVs of their own or reuse
//     the handshake's; clients that reuse it send every frame with one IV,
//     and refusing the second would break them. Such frames pass on their
//     own connection only: the pair was claimed by the handshake, so another
//     connection (an attacker replaying captured frames on a connection of
//     their own) is refused at its handshake if it reuses the pair, or at the
//     frame if it does not. A replayed frame gets the ALE 2 error frame and
//     the connection stays up, as for any bad frame.
//
// When the store cannot tell (full, unreachable) the message is refused,
// never forwarded unchecked: an HTTP request or handshake gets 503
// {"error":"replay check unavailable"} (retryable: nothing was claimed, and
// a client retrying the same message once the store is back gets through),
// and a WebSocket connection whose frame could not be checked is closed with
// 1013 (try again later).

const replayUnavailable = "replay check unavailable"

// claim checks an HTTP request's or handshake's pair and answers the
// refusal itself; false means refused.
func (g *Gateway) claim(w http.ResponseWriter, r *http.Request, st *reqState, fingerprint string, iv []byte) bool {
	if g.opts.Replay == nil {
		return true
	}
	err := g.opts.Replay.Claim(r.Context(), replay.NewID(fingerprint, iv))
	switch {
	case err == nil:
		return true
	case errors.Is(err, replay.ErrReplay):
		st.outcome = outcomeReplay
		g.log.Warn("replayed request refused", "method", r.Method, "path", r.URL.Path, "fingerprint", truncate(fingerprint))
		wire.WriteError(w, wire.CodeDecrypt)
	default:
		st.outcome = outcomeReplayUnavailable
		g.log.Error("replay check failed; request refused", "method", r.Method, "path", r.URL.Path, "err", err)
		w.Header().Set("Retry-After", "1")
		writeJSONError(w, http.StatusServiceUnavailable, replayUnavailable)
	}
	return false
}

// handshakePair is a WebSocket connection's own (fingerprint, IV).
type handshakePair struct {
	fingerprint string
	iv          []byte
}

// claimFrame checks a client frame's pair. It returns false when the frame
// must not go upstream; when the connection must end as well it has been
// closed.
func (g *Gateway) claimFrame(ctx context.Context, client, up *websocket.Conn, hs handshakePair, fingerprint string, iv []byte) (forward, keepOpen bool) {
	if g.opts.Replay == nil || (fingerprint == hs.fingerprint && string(iv) == string(hs.iv)) {
		return true, true
	}
	err := g.opts.Replay.Claim(ctx, replay.NewID(fingerprint, iv))
	switch {
	case err == nil:
		return true, true
	case errors.Is(err, replay.ErrReplay):
		g.log.Warn("replayed websocket frame refused", "fingerprint", truncate(fingerprint))
		g.metrics.frame("client", outcomeReplay)
		return false, client.Write(ctx, websocket.MessageText, wire.ErrorBody(wire.CodeDecrypt)) == nil
	default:
		g.log.Error("replay check failed on a websocket frame; closing", "err", err)
		g.metrics.frame("client", outcomeReplayUnavailable)
		client.Close(websocket.StatusTryAgainLater, replayUnavailable)
		up.Close(websocket.StatusGoingAway, "client side closed")
		return false, false
	}
}
