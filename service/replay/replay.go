// Package replay owns replay rejection for the ALE channel: it remembers
// which (fingerprint, IV) pairs, and which exact messages, were seen within
// a window, so that a captured request or frame sent again is refused
// instead of reaching the kitchen twice. AES-CTR has no integrity and the channel is unsecured, so
// the IV, fresh for every message by the protocol, is the one thing that
// tells a resent message from a new one.
//
// A pair is claimed atomically: of two copies racing, exactly one wins.
// Memory is bounded and a store that cannot remember refuses rather than
// forgets: beyond its cap, or while unreachable, Claim fails with an error
// that is not ErrReplay, and the caller refuses the message (fail closed).
// Two stores: Memory for one gateway replica, Redis (or Valkey) shared by
// several. What is claimed is stored as a hash; a payload is never stored.
package replay

import (
	"context"
	"crypto/sha256"
	"errors"
)

var (
	// ErrReplay means the ID was already claimed within the window.
	ErrReplay = errors.New("replayed: already seen within the replay window")
	// ErrFull means the store holds as many pairs as it may; nothing is
	// forgotten early to make room, so the message is refused.
	ErrFull = errors.New("replay store full")
)

// ID is a claim as stored: the first 16 bytes of a SHA-256 over what is
// claimed. Hashing gives every entry the same small size whatever the
// fingerprint's length (up to 256 characters) and keeps client-chosen
// strings out of store keys. 128 bits make an accidental collision (a fresh
// message refused as a replay) negligible: about 2^-88 with a million
// claims in the window.
//
// Two kinds share a store, told apart by the hash input's first byte: a
// pair (NewID) starts with its fingerprint, never empty and never holding
// a 0 byte, and a copy (NewCopyID) starts with 0. Pairs keep the input they
// always had, so replicas of two versions sharing a Redis during a rolling
// upgrade still recognise each other's pairs.
type ID [16]byte

// NewID is the ID of a (fingerprint, IV) pair: SHA-256(fingerprint, 0, IV).
// The 0 byte cannot occur in a fingerprint, so no two pairs share an input.
func NewID(fingerprint string, iv []byte) ID {
	h := sha256.New()
	h.Write([]byte(fingerprint))
	h.Write([]byte{0})
	h.Write(iv)
	var id ID
	copy(id[:], h.Sum(nil))
	return id
}

// NewCopyID is the ID of one exact message: SHA-256(0, fingerprint, 0,
// SHA-256(ciphertext), IV). It refuses an exact copy however its IV was
// chosen (a WebSocket client may reuse one IV for every frame), while a
// different ciphertext under the same pair gets an ID of its own. The
// ciphertext's digest has a fixed length, so the IV after it cannot shift
// into it.
func NewCopyID(fingerprint string, iv, ciphertext []byte) ID {
	digest := sha256.Sum256(ciphertext)
	h := sha256.New()
	h.Write([]byte{0})
	h.Write([]byte(fingerprint))
	h.Write([]byte{0})
	h.Write(digest[:])
	h.Write(iv)
	var id ID
	copy(id[:], h.Sum(nil))
	return id
}

// Store remembers claimed IDs for the window it was built with.
type Store interface {
	// Claim records id. It returns nil if id was not claimed within the
	// window (the caller may go on), ErrReplay if it was, and any other
	// error when the store cannot tell (full, unreachable): the caller
	// must then refuse the message too.
	Claim(ctx context.Context, id ID) error
	// Ready reports whether Claim can work now (for readiness probes).
	Ready(ctx context.Context) error
}
