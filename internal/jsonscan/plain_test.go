package jsonscan

import (
	"bytes"
	"testing"
)

// TestPlainStringEveryPosition puts each kind of byte at every position of
// strings around the scanner's eight-byte steps and compares PlainString
// with a byte-at-a-time reading.
func TestPlainStringEveryPosition(t *testing.T) {
	t.Parallel()
	specials := []byte{'"', '\\', 0x00, 0x1f, 0x20, 0x7e, 0x7f, 0x80, 0xc3, 0xff, 'A'}
	for n := 0; n <= 26; n++ {
		for pos := 0; pos < n; pos++ {
			for _, c := range specials {
				body := bytes.Repeat([]byte{'A'}, n)
				body[pos] = c
				data := append(append([]byte{'"'}, body...), '"', 'x')
				got, next, ok := PlainString(data, 0)
				want, wantNext, wantOK := plainStringByByte(data)
				if ok != wantOK || next != wantNext || !bytes.Equal(got, want) {
					t.Fatalf("PlainString(%q) = %q, %d, %v; want %q, %d, %v", data, got, next, ok, want, wantNext, wantOK)
				}
			}
		}
	}
}

// plainStringByByte is PlainString(data, 0) without the word-at-a-time loop.
func plainStringByByte(data []byte) ([]byte, int, bool) {
	for j := 1; j < len(data); j++ {
		switch c := data[j]; {
		case c == '"':
			return data[1:j], j + 1, true
		case c < 0x20 || c >= 0x80 || c == '\\':
			return nil, 0, false
		}
	}
	return nil, 0, false
}
