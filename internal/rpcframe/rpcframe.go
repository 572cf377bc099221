// Package rpcframe owns the framing of the RPC protocols alecrypt serves
// (gRPC, gRPC-Web and Connect) below the messages: the 5-byte envelope that
// carries each streamed message, Connect's end-of-stream message, and
// gRPC's status in headers, trailers or gRPC-Web's trailer frame. It is the
// one place that knows their layout, as connect-go's envelope.go is for
// connect-go: package api's guard reads request envelopes through Prefix,
// and its observer reads a refused call's status through Outcome.
//
// It never reads more than it is given and never allocates to read a
// prefix: the guard calls it for every message of every stream.
package rpcframe

import (
	"encoding/binary"
	"strings"

	"connectrpc.com/connect"
)

// PrefixLen is the length of an envelope's prefix: one byte of flags, then
// the payload's length (big-endian uint32).
const PrefixLen = 5

// Flags of an envelope's first byte.
const (
	// FlagCompressed marks a compressed payload.
	FlagCompressed byte = 0b0000_0001
	// FlagEndStream marks Connect streaming's end-of-stream message, a
	// JSON object holding the call's error and trailers.
	FlagEndStream byte = 0b0000_0010
	// FlagTrailer marks gRPC-Web's trailer frame, HTTP/1-style header
	// lines holding grpc-status and grpc-message.
	FlagTrailer byte = 0b1000_0000
)

// Prefix is an envelope's prefix as it stands on the wire. It is an array,
// not a slice, so that a reader keeps it in its own struct and reads it in
// pieces without allocating.
type Prefix [PrefixLen]byte

// MakePrefix is the prefix of a payload of size bytes with flags.
func MakePrefix(flags byte, size uint32) Prefix {
	var p Prefix
	p[0] = flags
	binary.BigEndian.PutUint32(p[1:], size)
	return p
}

// Flags is the prefix's flags byte.
func (p Prefix) Flags() byte { return p[0] }

// Size is the length of the payload that follows the prefix. It is read as
// sent: callers bound it before they trust it.
func (p Prefix) Size() uint32 { return binary.BigEndian.Uint32(p[1:]) }

// Append appends one envelope, the prefix and payload, to dst.
func Append(dst []byte, flags byte, payload []byte) []byte {
	p := MakePrefix(flags, uint32(len(payload)))
	return append(append(dst, p[:]...), payload...)
}

// Split splits the first envelope off b: its flags, its payload and what
// follows it. ok is false when b does not begin with a whole envelope (it is
// shorter than the prefix or than the size the prefix announces).
func Split(b []byte) (flags byte, payload, rest []byte, ok bool) {
	if len(b) < PrefixLen {
		return 0, nil, nil, false
	}
	p := Prefix(b[:PrefixLen])
	size := p.Size()
	if uint64(len(b)-PrefixLen) < uint64(size) {
		return 0, nil, nil, false
	}
	end := PrefixLen + int(size)
	return p.Flags(), b[PrefixLen:end], b[end:], true
}

// IsEnveloped reports whether a request of media type ct carries its
// messages in envelopes: gRPC, gRPC-Web and Connect streaming do; Connect
// unary's body is the message itself.
func IsEnveloped(ct string) bool {
	return strings.HasPrefix(ct, "application/grpc") || strings.HasPrefix(ct, "application/connect+")
}

// Protocol is the protocol, as connect-go names it, of a request of media
// type ct.
func Protocol(ct string) string {
	switch {
	case strings.HasPrefix(ct, "application/grpc-web"):
		return connect.ProtocolGRPCWeb
	case strings.HasPrefix(ct, "application/grpc"):
		return connect.ProtocolGRPC
	}
	return connect.ProtocolConnect
}
