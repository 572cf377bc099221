package engine_test

import (
	"context"
	"fmt"
	"testing"

	"github.com/alecrypt/alecrypt/internal/engine"
	"github.com/alecrypt/alecrypt/internal/key"
	"github.com/alecrypt/alecrypt/internal/keyring"
)

// benchSizes are the payload sizes every alecrypt benchmark uses: a small
// order event, a typical ticket, a large menu or report.
var benchSizes = []int{64, 1 << 10, 64 << 10}

func sizeName(n int) string {
	switch {
	case n >= 1<<10 && n%(1<<10) == 0:
		return fmt.Sprintf("%dKiB", n>>10)
	default:
		return fmt.Sprintf("%dB", n)
	}
}

// benchEngine is an engine over one CTR and one GCM key, derived before the
// timer starts so no PBKDF2 is measured.
func benchEngine(b *testing.B) *engine.Engine {
	b.Helper()
	ring := keyring.New()
	_, fresh, err := ring.Replace([]key.Record{
		rec("fp-ctr", key.AES256CTR, key.Active, t0, "ctr"),
		rec("fp-gcm", key.AES256GCM, key.Active, t0, "gcm"),
	})
	if err != nil {
		b.Fatal(err)
	}
	if failed := keyring.Warm(b.Context(), fresh, 1); failed != 0 {
		b.Fatalf("Warm: %d keys failed", failed)
	}
	return engine.New(ring)
}

// BenchmarkEncrypt is the engine's cost over the raw cipher of
// suite.BenchmarkSeal: alias resolution, state checks, a crypto/rand IV and
// one output allocation.
func BenchmarkEncrypt(b *testing.B) {
	eng := benchEngine(b)
	for _, alg := range []string{"ctr", "gcm"} {
		for _, n := range benchSizes {
			b.Run(alg+"/"+sizeName(n), func(b *testing.B) {
				pt := make([]byte, n)
				ref := engine.Ref{Alias: alg}
				b.SetBytes(int64(n))
				b.ReportAllocs()
				for b.Loop() {
					if _, _, err := eng.Encrypt(context.Background(), ref, pt, nil); err != nil {
						b.Fatal(err)
					}
				}
			})
		}
	}
}

// BenchmarkDecrypt is Decrypt with no plaintext check (FormatAny).
func BenchmarkDecrypt(b *testing.B) {
	eng := benchEngine(b)
	for _, alg := range []string{"ctr", "gcm"} {
		for _, n := range benchSizes {
			b.Run(alg+"/"+sizeName(n), func(b *testing.B) {
				env, _, err := eng.Encrypt(context.Background(), engine.Ref{Alias: alg}, make([]byte, n), nil)
				if err != nil {
					b.Fatal(err)
				}
				b.SetBytes(int64(n))
				b.ReportAllocs()
				for b.Loop() {
					if _, _, err := eng.Decrypt(context.Background(), env, nil, engine.FormatAny); err != nil {
						b.Fatal(err)
					}
				}
			})
		}
	}
}
