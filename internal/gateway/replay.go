package gateway

import (
	"context"
	"errors"
	"net/http"
	"time"

	"github.com/alecrypt/alecrypt/internal/replay"
	"github.com/alecrypt/alecrypt/internal/wsconn"
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
// A (fingerprint, IV) pair that carried ciphertext belongs, for the window,
// to the channel it came on: one HTTP request, or one WebSocket connection,
// each a random replay.Owner. Any other channel using that pair is refused,
// whatever it carries: so a frame cannot be bit-flipped and sent on a new
// connection opened with the same sec-iv, an HTTP order cannot come back as
// a frame, nor a frame as an HTTP request.
//
//   - HTTP request with a body: its (sec-fingerprint, sec-iv) is claimed; a
//     replay gets 400 {"errorCode":2,...} and never reaches the kitchen. A
//     request with an empty body claims nothing.
//   - WebSocket handshake: claims nothing (it carries no ciphertext).
//   - WebSocket frame: its (fingerprint, iv) pair and its exact copy,
//     (fingerprint, iv, SHA-256 of the ciphertext), are claimed, so a copy
//     is refused on any connection. EK's text can be read as frames sharing
//     the handshake's IV, so the one pair a connection may use for many
//     frames is its handshake's (each frame renews its window, so it stays
//     the connection's while in use): they keep working there, with exact-copy
//     protection only against a sender on that very connection (an
//     identical resend under that IV is refused like a replay: nothing tells
//     them apart). Any other IV is used once: a second ciphertext under it,
//     on the same connection too, is refused (CTR bit-flipping). A refused
//     frame gets the ALE 2 error frame and the connection stays up, as for
//     any bad frame.
//
// When the store cannot tell (full, unreachable, timed out) the message is
// refused, never forwarded unchecked, and what this message may have claimed
// is released first (replay.Store.Release, for up to releaseTimeout), so
// that sending it again works: an HTTP request gets 503
// {"error":"replay check unavailable"} with Retry-After, and a WebSocket
// connection whose frame could not be checked is closed with 1013 (try again
// later). A handshake IV's pair that the connection held before is not
// released: it stays the connection's, so a frame under it must be sealed
// again under the next connection's handshake IV.

const replayUnavailable = "replay check unavailable"

// releaseTimeout bounds how long a refused message waits for the store to
// record its release: a claim that timed out may still land, and until the
// release is recorded it could block the client's retry. A Redis that
// stalls for longer than its command timeout plus this gets the 503 anyway
// (logged), and that retry may be refused as a replay.
const releaseTimeout = 5 * time.Second

// claim checks an HTTP request's pair and answers the refusal itself;
// false means refused. A request without ciphertext claims nothing.
func (q *request) claim(fingerprint string, iv, ciphertext []byte) bool {
	g, r := q.g, q.r
	if g.opts.Replay == nil || len(ciphertext) == 0 {
		return true
	}
	owner := replay.NewOwner()
	id := replay.NewID(fingerprint, iv)
	// A fresh owner cannot hold the pair already: again cannot be true.
	_, err := g.opts.Replay.Claim(r.Context(), id, owner)
	switch {
	case err == nil:
		return true
	case errors.Is(err, replay.ErrReplay):
		q.end(outcomeReplay)
		g.log.Warn("replayed request refused", "method", r.Method, "path", r.URL.Path, "fingerprint", truncate(fingerprint))
		wire.WriteError(q.w, wire.CodeDecrypt)
	default:
		g.log.Error("replay check failed; request refused", "method", r.Method, "path", r.URL.Path, "err", err)
		g.release(r.Context(), owner, id)
		q.w.Header().Set("Retry-After", "1")
		q.fail(outcomeReplayUnavailable, http.StatusServiceUnavailable, replayUnavailable)
	}
	return false
}

// release gives up ids for owner after the store could not tell, so the
// message can be sent again; it outlives ctx's cancellation (a client that
// went away still leaves its claim behind).
func (g *Gateway) release(ctx context.Context, owner replay.Owner, ids ...replay.ID) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), releaseTimeout)
	defer cancel()
	for _, id := range ids {
		if err := g.opts.Replay.Release(ctx, id, owner); err != nil {
			g.log.Error("releasing a replay claim failed; sending the message again may be refused as a replay until the window passes", "err", err)
		}
	}
}

// connClaims is one WebSocket connection's standing with the replay store.
type connClaims struct {
	owner       replay.Owner
	handshakeIV []byte
	// held are the pairs under the handshake IV that frames claimed: they
	// are the connection's and are never released. Usually one; at most
	// one per key a frame decrypted under, since a frame is claimed only
	// once it decrypted. Nil until the first: a connection that sends
	// nothing holds no map.
	held map[replay.ID]struct{}
}

func newConnClaims(handshakeIV []byte) *connClaims {
	return &connClaims{owner: replay.NewOwner(), handshakeIV: handshakeIV}
}

// claimFrame checks a client frame: its pair, which must be new unless it
// is the connection's handshake IV, then its exact copy. It returns false
// when the frame must not go upstream; when the connection must end as well
// it has been closed. The pair goes first: a frame reusing another frame's
// IV is then refused without leaving an entry for its copy.
func (g *Gateway) claimFrame(ctx context.Context, client, up *wsconn.Conn, cc *connClaims, f wire.Frame) (forward, keepOpen bool) {
	if g.opts.Replay == nil {
		return true, true
	}
	onHandshake := string(f.IV) == string(cc.handshakeIV)
	pair := replay.NewID(f.Fingerprint, f.IV)
	_, held := cc.held[pair] // the connection's already: never released
	again, err := g.opts.Replay.Claim(ctx, pair, cc.owner)
	var unsure []replay.ID // what this frame may have claimed, released if it cannot go on
	if !held && !errors.Is(err, replay.ErrReplay) {
		unsure = append(unsure, pair)
	}
	if err == nil && again && !onHandshake {
		err = replay.ErrReplay // a frame IV used twice on one connection
	}
	if err == nil && onHandshake {
		if cc.held == nil {
			cc.held = make(map[replay.ID]struct{}, 1)
		}
		cc.held[pair] = struct{}{}
	}
	if err == nil {
		copyID := replay.NewCopyID(f.Fingerprint, f.IV, f.Message)
		again, err = g.opts.Replay.Claim(ctx, copyID, cc.owner)
		if err == nil && again {
			err = replay.ErrReplay // an exact copy on the connection it came on
		}
		if err != nil && !errors.Is(err, replay.ErrReplay) {
			unsure = append(unsure, copyID)
		}
	}
	switch {
	case err == nil:
		return true, true
	case errors.Is(err, replay.ErrReplay):
		g.log.Warn("replayed websocket frame refused", "fingerprint", truncate(f.Fingerprint))
		g.metrics.frame("client", outcomeReplay)
		return false, client.Write(wsconn.Text, wire.ErrorBody(wire.CodeDecrypt)) == nil
	default:
		g.log.Error("replay check failed on a websocket frame; closing", "err", err)
		g.metrics.frame("client", outcomeReplayUnavailable)
		g.release(ctx, cc.owner, unsure...)
		client.Close(wsconn.StatusTryAgainLater, replayUnavailable)
		up.Close(wsconn.StatusGoingAway, "client side closed")
		return false, false
	}
}
