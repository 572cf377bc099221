package suite

import "crypto/cipher"

// gcmCipher is AES-256-GCM with a 12-byte IV and the 16-byte tag appended to
// the ciphertext (WebCrypto's and Go's default layout). A modified message,
// IV, tag or AAD fails Open with ErrOpen.
type gcmCipher struct {
	aead cipher.AEAD
}

func newGCM(block cipher.Block) (*gcmCipher, error) {
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return nil, err
	}
	return &gcmCipher{aead: aead}, nil
}

func (c *gcmCipher) IVSize() int   { return GCMIVSize }
func (c *gcmCipher) Overhead() int { return GCMTagLen }

func (c *gcmCipher) Seal(dst, iv, plaintext, aad []byte) ([]byte, error) {
	if len(iv) != GCMIVSize {
		return nil, ErrIVSize
	}
	return c.aead.Seal(dst, iv, plaintext, aad), nil
}

func (c *gcmCipher) Open(dst, iv, ciphertext, aad []byte) ([]byte, error) {
	if len(iv) != GCMIVSize {
		return nil, ErrIVSize
	}
	out, err := c.aead.Open(dst, iv, ciphertext, aad)
	if err != nil {
		return nil, ErrOpen
	}
	return out, nil
}
