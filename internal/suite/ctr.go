package suite

import (
	"crypto/cipher"
	"encoding/binary"
	"slices"
)

// ctrCipher is AES-256-CTR as EK clients run it through WebCrypto.
//
// The whole 16-byte IV is the initial counter block. WebCrypto's AES-CTR takes
// a `length`: the number of low-order bits that count, which wrap to zero
// without carrying into the bits above them. EK's clients use length 64. Go's
// cipher.NewCTR always counts with all 128 bits, so the two only differ when
// the low 64 bits overflow inside one message; the IV comes from the client, so
// that must be handled, not assumed away. counterBits is 64 or 128.
//
// CTR has no integrity: Open cannot fail on a wrong key or a modified message.
// Callers that need to detect garbage check the plaintext (JSON, UTF-8).
type ctrCipher struct {
	block       cipher.Block
	counterBits int
}

func newCTR(block cipher.Block, counterBits int) *ctrCipher {
	return &ctrCipher{block: block, counterBits: counterBits}
}

func (c *ctrCipher) IVSize() int   { return CTRIVSize }
func (c *ctrCipher) Overhead() int { return 0 }

func (c *ctrCipher) Seal(dst, iv, plaintext, aad []byte) ([]byte, error) {
	return c.xor(dst, iv, plaintext, aad)
}

func (c *ctrCipher) Open(dst, iv, ciphertext, aad []byte) ([]byte, error) {
	return c.xor(dst, iv, ciphertext, aad)
}

func (c *ctrCipher) xor(dst, iv, in, aad []byte) ([]byte, error) {
	if len(iv) != CTRIVSize {
		return nil, ErrIVSize
	}
	if len(aad) != 0 {
		return nil, ErrAADUnsupported
	}
	ret, out := sliceForAppend(dst, len(in))
	split := len(in)
	if c.counterBits == 64 {
		split = bytesBeforeLowWrap(iv, len(in))
	}
	cipher.NewCTR(c.block, iv).XORKeyStream(out[:split], in[:split])
	if split < len(in) {
		// The low 64 bits wrapped to zero; the high 64 bits stay as they were.
		// A message shorter than 2^64 blocks wraps at most once.
		wrapped := make([]byte, CTRIVSize)
		copy(wrapped[:8], iv[:8])
		cipher.NewCTR(c.block, wrapped).XORKeyStream(out[split:], in[split:])
	}
	return ret, nil
}

// bytesBeforeLowWrap is how many of n bytes are encrypted before the low 64
// bits of the counter block would overflow (n if they never do).
func bytesBeforeLowWrap(iv []byte, n int) int {
	low := binary.BigEndian.Uint64(iv[8:])
	if low == 0 {
		return n // 2^64 blocks to go
	}
	blocksLeft := -low // 2^64 - low, in uint64 arithmetic
	blocks := uint64(n+CTRIVSize-1) / CTRIVSize
	if blocks <= blocksLeft {
		return n
	}
	return int(blocksLeft) * CTRIVSize
}

// sliceForAppend extends dst by n bytes, returning the whole slice and the
// new tail (the idiom of crypto/cipher).
func sliceForAppend(dst []byte, n int) (whole, tail []byte) {
	whole = slices.Grow(dst, n)[:len(dst)+n]
	return whole, whole[len(dst):]
}
