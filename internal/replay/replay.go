// Package replay owns replay rejection for the ALE channel: it remembers
// which (fingerprint, IV) pairs, and which exact messages, were seen within
// a window, so that a captured request or frame sent again is refused
// instead of reaching the kitchen twice. AES-CTR has no integrity and the channel is unsecured, so
// the IV, fresh for every message by the protocol, is the one thing that
// tells a resent message from a new one.
//
// A pair is claimed atomically, by an owner: of two copies racing, exactly
// one wins. The owner is the channel the message came on (one HTTP request,
// or one WebSocket connection), so that a pair that carried ciphertext
// belongs to that channel for the window: a channel may learn that it holds
// a pair already (a connection whose frames all reuse its handshake IV),
// and every other channel is refused. An owner can release what it claimed,
// or a claim of its still in flight, so that a message refused because the
// store could not tell can be sent again.
// Memory is bounded and a store that cannot remember refuses rather than
// forgets: beyond its cap, or while unreachable, Claim fails with an error
// that is not ErrReplay, and the caller refuses the message (fail closed).
// Two stores: Memory for one gateway replica, Redis (or Valkey) shared by
// several. What is claimed is stored as a hash; a payload is never stored.
package replay

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
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

// Owner names the channel a claim belongs to: one HTTP request or one
// WebSocket connection. It is random (crypto/rand) and never leaves the
// gateway and its store, so no client can name another's channel; 128 bits
// make two live channels sharing one owner negligible.
type Owner [16]byte

// NewOwner returns a fresh random owner.
func NewOwner() Owner {
	var o Owner
	rand.Read(o[:]) // never fails (crypto/rand crashes the program instead)
	return o
}

// String is the owner as stored in Redis: 32 lowercase hex digits.
func (o Owner) String() string { return hex.EncodeToString(o[:]) }

// Store remembers claimed IDs, with their owner, for the window it was built
// with.
type Store interface {
	// Claim records id for owner. It returns nil if id was not claimed
	// within the window (the caller may go on), or was claimed by this same
	// owner (again is then true: the caller decides whether its channel may
	// use id twice; the claim's window starts again, so a pair a connection
	// keeps using stays its own); ErrReplay if another owner claimed it;
	// and any other
	// error when the store cannot tell (full, unreachable, timed out): the
	// caller must then refuse the message too, and Release id, since a
	// claim that timed out may still land.
	Claim(ctx context.Context, id ID, owner Owner) (again bool, err error)
	// Release gives id up for owner: if owner holds it, it is free again
	// for anyone; if owner's claim of it is still on its way to the store,
	// it will not take effect when it arrives. A claim of another owner is
	// never touched. It returns nil once the store has recorded the
	// release, or when nothing owner sent can still take effect.
	Release(ctx context.Context, id ID, owner Owner) error
	// Ready reports whether Claim can work now (for readiness probes).
	Ready(ctx context.Context) error
}
