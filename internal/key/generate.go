package key

import (
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"io"
	"time"

	"github.com/alecrypt/alecrypt/service/secret"
)

// DefaultIterations is the PBKDF2 iteration count for locally generated keys:
// about 16 ms per derivation on the reference machine, paid once per key.
const DefaultIterations = 100_000

// Generate creates a fresh local key: a random 256-bit Secret Key and salt
// (base64url text, since EK treats both as strings) and a random fingerprint,
// all drawn from rnd (crypto/rand outside tests). The fingerprint is random,
// not a hash of the secret, so it reveals nothing about the key.
func Generate(rnd io.Reader, alg Algorithm, aliases []string, now time.Time) (Record, error) {
	buf := make([]byte, 32+16+16)
	if _, err := io.ReadFull(rnd, buf); err != nil {
		return Record{}, fmt.Errorf("generate key: %w", err)
	}
	defer clear(buf)
	r := Record{
		Fingerprint: hex.EncodeToString(buf[48:]),
		Aliases:     aliases,
		Algorithm:   alg,
		KDF: KDF{
			Name:       KDFPBKDF2SHA256,
			Salt:       base64.RawURLEncoding.EncodeToString(buf[32:48]),
			Iterations: DefaultIterations,
		},
		State:   Active,
		Version: 1,
		// Full precision: keys added within one second must still order,
		// since the newest active key of an alias is its primary.
		CreatedAt: now.UTC(),
		Source:    SourceLocal,
	}
	secretText := []byte(base64.RawURLEncoding.EncodeToString(buf[:32]))
	r.Secret = secret.New(secretText)
	clear(secretText)
	if alg == AES256CTR {
		r.CounterBits = CounterBits64
	}
	if err := r.Validate(); err != nil {
		return Record{}, err
	}
	return r, nil
}
