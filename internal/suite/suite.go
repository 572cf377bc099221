// Package suite owns the cipher suites: it turns a key record into a derived
// key (PBKDF2, once) and seals and opens messages with it.
//
// It never chooses IVs (callers draw them from crypto/rand), never logs, and
// reports every failure to decrypt or authenticate as the single error
// ErrOpen, so that callers cannot become a decryption oracle.
package suite

import (
	"crypto/aes"
	"crypto/pbkdf2"
	"crypto/sha256"
	"errors"
	"fmt"

	"github.com/alecrypt/alecrypt/internal/key"
)

// KeySize is the AES-256 key length both suites derive.
const KeySize = 32

// IV sizes. CTR uses a full AES block because that is the EK protocol's
// 16-byte IV (nonce and counter together). GCM uses the 96-bit nonce its
// specification is optimized for; other lengths go through GHASH and weaken
// its bounds.
const (
	CTRIVSize = aes.BlockSize
	GCMIVSize = 12
	GCMTagLen = 16
)

var (
	// ErrOpen is the one error for every message that does not decrypt or
	// authenticate, whatever the reason.
	ErrOpen = errors.New("unable to decrypt payload")
	// ErrIVSize means the IV does not have the length the algorithm needs.
	ErrIVSize = errors.New("iv has the wrong length")
	// ErrAADUnsupported means associated data was given to an algorithm that
	// cannot authenticate it (CTR); silently ignoring it would promise an
	// integrity check that does not happen.
	ErrAADUnsupported = errors.New("associated data needs an authenticated algorithm")
)

// Cipher is a derived key, ready to use. Implementations are safe for
// concurrent use.
type Cipher interface {
	// IVSize is the IV length Seal and Open require.
	IVSize() int
	// Overhead is how much longer a ciphertext is than its plaintext.
	Overhead() int
	// Seal appends the encryption of plaintext to dst. iv must be fresh
	// random bytes of IVSize.
	Seal(dst, iv, plaintext, aad []byte) ([]byte, error)
	// Open appends the decryption of ciphertext to dst, or returns ErrOpen.
	Open(dst, iv, ciphertext, aad []byte) ([]byte, error)
}

// Derive runs the record's KDF and returns its cipher. It costs one PBKDF2 run
// (about 16 ms at 100k iterations), so callers derive once per key and cache
// the result; nothing on a request path calls it.
func Derive(r key.Record) (Cipher, error) {
	if err := r.Validate(); err != nil {
		return nil, err
	}
	dk, err := DeriveKey(r)
	if err != nil {
		return nil, err
	}
	defer clear(dk)
	block, err := aes.NewCipher(dk)
	if err != nil {
		return nil, fmt.Errorf("derive %q: %w", r.Fingerprint, err)
	}
	switch r.Algorithm {
	case key.AES256CTR:
		return newCTR(block, r.EffectiveCounterBits()), nil
	case key.AES256GCM:
		return newGCM(block)
	default:
		return nil, fmt.Errorf("derive %q: unknown algorithm %q", r.Fingerprint, r.Algorithm)
	}
}

// DeriveKey returns the raw 32-byte AES key: PBKDF2-HMAC-SHA256 over the UTF-8
// bytes of the Secret Key and of the salt, as EK's WebCrypto clients compute
// it. Exported for test vectors only; the caller must wipe the result.
func DeriveKey(r key.Record) ([]byte, error) {
	if r.KDF.Name != key.KDFPBKDF2SHA256 {
		return nil, fmt.Errorf("derive %q: unknown kdf %q", r.Fingerprint, r.KDF.Name)
	}
	dk, err := pbkdf2.Key(sha256.New, string(r.Secret.Expose()), []byte(r.KDF.Salt), r.KDF.Iterations, KeySize)
	if err != nil {
		return nil, fmt.Errorf("derive %q: %w", r.Fingerprint, err)
	}
	return dk, nil
}
