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
// Only what carries ciphertext is claimed. An empty message "decrypts"
// under any IV, so anyone who knows a fingerprint can forge one: claiming
// it would protect nothing and would let anyone fill the store (every
// genuine message then refused with 503) or pre-claim the IV of a frame
// they captured.
//
//   - HTTP request with a body: its (sec-fingerprint, sec-iv) is claimed; a
//     replay gets 400 {"errorCode":2,...} and never reaches the kitchen. A
//     request with an empty body claims nothing.
//   - WebSocket handshake: claims nothing (it carries no ciphertext).
//   - WebSocket frame: its exact copy, (fingerprint, iv, SHA-256 of the
//     ciphertext), is claimed, so a copy is refused on any connection. A
//     frame whose iv differs from its connection's handshake IV also claims
//     (fingerprint, iv), so a client that uses a fresh IV per frame is also
//     protected against the reuse of a frame's IV under another ciphertext
//     (CTR bit-flipping). EK's text can be read as frames sharing the
//     handshake's IV; clients that read it so keep working, with exact-copy
//     protection only, and an identical resend under that IV is refused
//     like a replay (nothing tells them apart). A refused frame gets the
//     ALE 2 error frame and the connection stays up, as for any bad frame.
//
// When the store cannot tell (full, unreachable) the message is refused,
// never forwarded unchecked: an HTTP request gets 503
// {"error":"replay check unavailable"} (retryable: nothing was claimed, and
// a client retrying the same message once the store is back gets through),
// and a WebSocket connection whose frame could not be checked is closed with
// 1013 (try again later).

const replayUnavailable = "replay check unavailable"

// claim checks an HTTP request's pair and answers the refusal itself;
// false means refused. A request without ciphertext claims nothing.
func (g *Gateway) claim(w http.ResponseWriter, r *http.Request, st *reqState, fingerprint string, iv, ciphertext []byte) bool {
	if g.opts.Replay == nil || len(ciphertext) == 0 {
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

// claimFrame checks a client frame: its exact copy, and its pair unless it
// reuses its connection's handshake IV. It returns false when the frame must
// not go upstream; when the connection must end as well it has been closed.
// The pair goes first: a frame reusing another frame's IV is then refused
// without leaving an entry for its copy.
func (g *Gateway) claimFrame(ctx context.Context, client, up *websocket.Conn, handshakeIV []byte, f wire.Frame) (forward, keepOpen bool) {
	if g.opts.Replay == nil {
		return true, true
	}
	ids := make([]replay.ID, 0, 2)
	if string(f.IV) != string(handshakeIV) {
		ids = append(ids, replay.NewID(f.Fingerprint, f.IV))
	}
	ids = append(ids, replay.NewCopyID(f.Fingerprint, f.IV, f.Message))
	var err error
	for _, id := range ids {
		if err = g.opts.Replay.Claim(ctx, id); err != nil {
			break
		}
	}
	switch {
	case err == nil:
		return true, true
	case errors.Is(err, replay.ErrReplay):
		g.log.Warn("replayed websocket frame refused", "fingerprint", truncate(f.Fingerprint))
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
