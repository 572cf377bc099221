package wsconn

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"unicode/utf8"
)

// MessageType is a data message's opcode.
type MessageType byte

const (
	Text   MessageType = 1
	Binary MessageType = 2
)

type opcode byte

const (
	opContinuation opcode = 0
	opText         opcode = 1
	opBinary       opcode = 2
	opClose        opcode = 8
	opPing         opcode = 9
	opPong         opcode = 10
)

func (o opcode) control() bool { return o >= opClose }

// StatusCode is a close frame's status (RFC 6455 section 7.4).
type StatusCode uint16

const (
	StatusNormalClosure   StatusCode = 1000
	StatusGoingAway       StatusCode = 1001
	StatusProtocolError   StatusCode = 1002
	StatusUnsupportedData StatusCode = 1003
	// StatusNoStatusRcvd is what a close frame without a status reads as;
	// it is never sent.
	StatusNoStatusRcvd            StatusCode = 1005
	StatusInvalidFramePayloadData StatusCode = 1007
	StatusPolicyViolation         StatusCode = 1008
	StatusMessageTooBig           StatusCode = 1009
	StatusInternalError           StatusCode = 1011
	StatusTryAgainLater           StatusCode = 1013
)

const (
	maxControlPayload = 125
	maxCloseReason    = maxControlPayload - 2
	maxHeaderBytes    = 14
)

// sendable reports whether a close frame may carry code (section 7.4.1 and
// the IANA registry): what a peer sends outside this set is a protocol
// error.
func (c StatusCode) sendable() bool {
	switch {
	case c >= 1000 && c <= 1003, c >= 1007 && c <= 1014:
		return true
	case c >= 3000 && c <= 4999:
		return true
	}
	return false
}

// CloseError is how a connection the peer closed ends: the status and
// reason of its close frame.
type CloseError struct {
	Code   StatusCode
	Reason string
}

func (e CloseError) Error() string {
	return fmt.Sprintf("websocket closed: status %d reason %q", e.Code, e.Reason)
}

// CloseStatus is the status of the close frame that ended err's
// connection, or 0 when err is not a close.
func CloseStatus(err error) StatusCode {
	var ce CloseError
	if errors.As(err, &ce) {
		return ce.Code
	}
	return 0
}

// header is a frame header (section 5.2).
type header struct {
	fin    bool
	rsv    byte // the three reserved bits, 0 unless an extension says otherwise
	op     opcode
	masked bool
	mask   [4]byte
	length int64
}

// parseHeader reads a frame header from the start of b. n is the header's
// size, 0 when b does not hold all of it yet (and err is nil).
func parseHeader(b []byte) (h header, n int, err error) {
	if len(b) < 2 {
		return h, 0, nil
	}
	h.fin = b[0]&0x80 != 0
	h.rsv = b[0] >> 4 & 0x7
	h.op = opcode(b[0] & 0xf)
	h.masked = b[1]&0x80 != 0
	n = 2
	switch l := b[1] & 0x7f; l {
	case 126:
		if len(b) < 4 {
			return h, 0, nil
		}
		h.length = int64(binary.BigEndian.Uint16(b[2:]))
		n = 4
	case 127:
		if len(b) < 10 {
			return h, 0, nil
		}
		u := binary.BigEndian.Uint64(b[2:])
		if u > math.MaxInt64 {
			return h, 0, errors.New("frame length has its most significant bit set")
		}
		h.length = int64(u)
		n = 10
	default:
		h.length = int64(l)
	}
	if h.masked {
		if len(b) < n+4 {
			return h, 0, nil
		}
		copy(h.mask[:], b[n:])
		n += 4
	}
	return h, n, nil
}

// appendHeader appends h in its shortest encoding.
func appendHeader(dst []byte, h header) []byte {
	b0 := byte(h.op) | h.rsv<<4
	if h.fin {
		b0 |= 0x80
	}
	var b1 byte
	if h.masked {
		b1 = 0x80
	}
	switch {
	case h.length < 126:
		dst = append(dst, b0, b1|byte(h.length))
	case h.length <= math.MaxUint16:
		dst = append(dst, b0, b1|126)
		dst = binary.BigEndian.AppendUint16(dst, uint16(h.length))
	default:
		dst = append(dst, b0, b1|127)
		dst = binary.BigEndian.AppendUint64(dst, uint64(h.length))
	}
	if h.masked {
		dst = append(dst, h.mask[:]...)
	}
	return dst
}

// check applies the rules of section 5 that do not depend on what came
// before: no extension bits, a known opcode, control frames short and
// whole, and masking by the client only (fromClient: the frame was sent
// by the client side).
func (h header) check(fromClient bool) error {
	switch {
	case h.rsv != 0:
		return errors.New("reserved bits set without an extension")
	case h.op > opBinary && !h.op.control(), h.op > opPong:
		return fmt.Errorf("unknown opcode %d", h.op)
	case h.op.control() && !h.fin:
		return errors.New("fragmented control frame")
	case h.op.control() && h.length > maxControlPayload:
		return errors.New("control frame over 125 bytes")
	case fromClient && !h.masked:
		return errors.New("client frame not masked")
	case !fromClient && h.masked:
		return errors.New("server frame masked")
	}
	return nil
}

// maskBytes XORs b with key, starting at byte pos of the key's cycle, and
// returns the position after b. Masking is its own inverse.
func maskBytes(key [4]byte, pos int, b []byte) int {
	pos &= 3
	for len(b) > 0 && pos != 0 {
		b[0] ^= key[pos]
		b = b[1:]
		pos = (pos + 1) & 3
	}
	// Eight bytes at a time: the key is aligned with b now.
	k := uint64(binary.LittleEndian.Uint32(key[:]))
	k |= k << 32
	for len(b) >= 8 {
		binary.LittleEndian.PutUint64(b, binary.LittleEndian.Uint64(b)^k)
		b = b[8:]
	}
	for i := range b {
		b[i] ^= key[pos]
		pos = (pos + 1) & 3
	}
	return pos
}

// parseClose reads a close frame's payload (section 5.5.1).
func parseClose(p []byte) (CloseError, error) {
	switch {
	case len(p) == 0:
		return CloseError{Code: StatusNoStatusRcvd}, nil
	case len(p) == 1:
		return CloseError{}, errors.New("close frame of one byte")
	}
	ce := CloseError{Code: StatusCode(binary.BigEndian.Uint16(p)), Reason: string(p[2:])}
	if !ce.Code.sendable() {
		return CloseError{}, fmt.Errorf("close status %d may not be sent", ce.Code)
	}
	if !utf8.ValidString(ce.Reason) {
		return CloseError{}, errInvalidUTF8
	}
	return ce, nil
}

var errInvalidUTF8 = errors.New("close reason is not UTF-8")

// appendClose appends a close frame's payload; StatusNoStatusRcvd is an
// empty one. A reason too long for a control frame is cut on a rune
// boundary.
func appendClose(dst []byte, code StatusCode, reason string) []byte {
	if code == StatusNoStatusRcvd {
		return dst
	}
	if len(reason) > maxCloseReason {
		reason = reason[:maxCloseReason]
		for len(reason) > 0 && !utf8.ValidString(reason) {
			reason = reason[:len(reason)-1]
		}
	}
	dst = binary.BigEndian.AppendUint16(dst, uint16(code))
	return append(dst, reason...)
}
