package wire

import "github.com/alecrypt/alecrypt/internal/jsonscan"

// The fast path of ParseFrame: encoding/json's decoder was 12 % of
// alegate's CPU under WebSocket load, and this path reads a frame five to
// twenty times faster, with 2 allocations instead of about 50
// (BenchmarkParseFrame, 64 B to 64 KiB). It reads only the frame every client
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
	i := jsonscan.SkipSpace(data, 0)
	if i == len(data) || data[i] != '{' {
		return plainFrame{}, false
	}
	i = jsonscan.SkipSpace(data, i+1)
	if i < len(data) && data[i] == '}' {
		return plainFrame{}, jsonscan.SkipSpace(data, i+1) == len(data)
	}
	seen := 0
	for {
		name, j, ok := jsonscan.PlainString(data, i)
		if !ok {
			return plainFrame{}, false
		}
		i = jsonscan.SkipSpace(data, j)
		if i == len(data) || data[i] != ':' {
			return plainFrame{}, false
		}
		value, j, ok := jsonscan.PlainString(data, jsonscan.SkipSpace(data, i+1))
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
		i = jsonscan.SkipSpace(data, j)
		if i == len(data) {
			return plainFrame{}, false
		}
		switch data[i] {
		case ',':
			i = jsonscan.SkipSpace(data, i+1)
		case '}':
			return p, jsonscan.SkipSpace(data, i+1) == len(data)
		default:
			return plainFrame{}, false
		}
	}
}
