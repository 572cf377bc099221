package wire

import (
	"encoding/binary"
	"math/bits"
)

// The fast path of ParseFrame (issue 13: encoding/json's decoder was 12 % of
// alegate's CPU under WebSocket load). It reads only the frame every client
// sends, a JSON object whose members are exactly "iv", "fingerprint" and
// "message", each at most once, in any order, with JSON whitespace, whose
// values are strings of plain characters: printable ASCII (and DEL) without
// '"' or '\'. Base64 and fingerprints need nothing else.
//
// It never decides that an input is malformed: anything else (an escape, a
// non-ASCII byte, a duplicate, a case variant, null, a number, trailing
// data, ...) makes it give up, and the strict encoding/json path answers,
// with its own code and reason. On an input it does read, encoding/json
// reads the same three strings (no escapes, no replacement of invalid
// UTF-8, no other member), so both paths reach the same checks with the
// same values. FuzzParseFrame holds the two paths to the same answer for
// every input.

// plainFrame is what scanPlainFrame read: each member's value as it stands
// in the input, nil or empty when absent (ParseFrame treats both alike).
type plainFrame struct {
	iv, fingerprint, message []byte
}

// Which members a frame has named so far.
const (
	seenIV = 1 << iota
	seenFingerprint
	seenMessage
)

// scanPlainFrame reads data if it is a plain frame (see above); ok is false
// when it is not, and only then.
func scanPlainFrame(data []byte) (p plainFrame, ok bool) {
	i := skipSpace(data, 0)
	if i == len(data) || data[i] != '{' {
		return plainFrame{}, false
	}
	i = skipSpace(data, i+1)
	if i < len(data) && data[i] == '}' {
		return plainFrame{}, skipSpace(data, i+1) == len(data)
	}
	seen := 0
	for {
		name, j, ok := plainString(data, i)
		if !ok {
			return plainFrame{}, false
		}
		i = skipSpace(data, j)
		if i == len(data) || data[i] != ':' {
			return plainFrame{}, false
		}
		value, j, ok := plainString(data, skipSpace(data, i+1))
		if !ok {
			return plainFrame{}, false
		}
		var dst *[]byte
		var bit int
		switch string(name) {
		case "iv":
			dst, bit = &p.iv, seenIV
		case "fingerprint":
			dst, bit = &p.fingerprint, seenFingerprint
		case "message":
			dst, bit = &p.message, seenMessage
		default:
			return plainFrame{}, false
		}
		if seen&bit != 0 {
			return plainFrame{}, false // a duplicate: the strict path refuses it
		}
		seen |= bit
		*dst = value
		i = skipSpace(data, j)
		if i == len(data) {
			return plainFrame{}, false
		}
		switch data[i] {
		case ',':
			i = skipSpace(data, i+1)
		case '}':
			return p, skipSpace(data, i+1) == len(data)
		default:
			return plainFrame{}, false
		}
	}
}

// skipSpace returns the index of the first byte at or after i that is not
// JSON whitespace (RFC 8259 §2: space, tab, line feed, carriage return).
func skipSpace(data []byte, i int) int {
	for i < len(data) {
		switch data[i] {
		case ' ', '\t', '\n', '\r':
			i++
		default:
			return i
		}
	}
	return i
}

// plainString reads the JSON string that starts with the '"' at data[i]:
// its contents and the index after its closing quote. ok is false unless it
// is there, closed, and holds plain characters only.
func plainString(data []byte, i int) (s []byte, next int, ok bool) {
	if i >= len(data) || data[i] != '"' {
		return nil, 0, false
	}
	start := i + 1
	j := start
	// Eight bytes at a time while none of them ends the string or needs
	// a look (base64 payloads are long).
	for ; j+8 <= len(data); j += 8 {
		if m := notPlain(binary.LittleEndian.Uint64(data[j:])); m != 0 {
			j += bits.TrailingZeros64(m) / 8
			break
		}
	}
	for ; j < len(data); j++ {
		switch c := data[j]; {
		case c == '"':
			return data[start:j], j + 1, true
		case c < 0x20 || c >= 0x80 || c == '\\':
			return nil, 0, false
		}
	}
	return nil, 0, false
}

const (
	ones  = 0x0101010101010101
	highs = 0x8080808080808080
)

// notPlain has the high bit set of each byte of w (read little-endian)
// that is not plain: below 0x20, 0x80 or above, '"' or '\'. Each test is
// exact up to its first hit: a borrow can mark bytes above it, never below,
// so the lowest set bit finds the first byte that is not plain.
func notPlain(w uint64) uint64 {
	control := (w - 0x20*ones) &^ w // a byte below 0x20 (bytes from 0x80 are w's own high bits)
	return (control | w | zeroByte(w^'"'*ones) | zeroByte(w^'\\'*ones)) & highs
}

// zeroByte has the high bit set of each zero byte of v (and maybe of bytes
// above the first one, from the borrow).
func zeroByte(v uint64) uint64 { return (v - ones) &^ v }
