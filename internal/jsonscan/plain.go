package jsonscan

import (
	"encoding/binary"
	"math/bits"
)

// PlainString reads the JSON string that starts with the '"' at data[i]:
// its contents and the index after its closing quote. ok is false unless it
// is there, closed, and holds plain characters only: printable ASCII (and
// DEL) without '"' or '\', so that its contents are its value as they stand,
// with no escape to decode and no invalid UTF-8 to replace. Base64 and key
// fingerprints need nothing else.
func PlainString(data []byte, i int) (s []byte, next int, ok bool) {
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
