package suite_test

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"encoding/binary"
	"errors"
	"fmt"
	"math/rand/v2"
	"testing"

	"github.com/alecrypt/alecrypt/internal/key"
	"github.com/alecrypt/alecrypt/internal/key/keytest"
	"github.com/alecrypt/alecrypt/internal/suite"
	"github.com/alecrypt/alecrypt/service/secret"
)

// testRecord is a valid record with the cheapest allowed KDF.
// The secret and salt are the same for every width and algorithm, so the
// records derive the same AES key and only the mode differs.
func testRecord(alg key.Algorithm, counterBits int) key.Record {
	return keytest.Record(fmt.Sprintf("test-%s-%d", alg, counterBits), keytest.Algorithm(alg), keytest.CounterBits(counterBits),
		keytest.Secret("test-only-secret"), keytest.Salt("test-only-salt"))
}

func mustDerive(t testing.TB, r key.Record) suite.Cipher {
	t.Helper()
	c, err := suite.Derive(r)
	if err != nil {
		t.Fatalf("Derive(%s) err = %v, want nil", r.Fingerprint, err)
	}
	return c
}

// mustBlock is the raw AES block of r's derived key, for reference
// implementations built from the block cipher alone.
func mustBlock(t testing.TB, r key.Record) cipher.Block {
	t.Helper()
	dk, err := suite.DeriveKey(r)
	if err != nil {
		t.Fatalf("DeriveKey(%s) err = %v, want nil", r.Fingerprint, err)
	}
	b, err := aes.NewCipher(dk)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

var suites = []struct {
	name string
	rec  key.Record
}{
	{"ctr64", testRecord(key.AES256CTR, key.CounterBits64)},
	{"ctr64-default", testRecord(key.AES256CTR, 0)},
	{"ctr128", testRecord(key.AES256CTR, key.CounterBits128)},
	{"gcm", testRecord(key.AES256GCM, 0)},
}

func TestSizes(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		alg              key.Algorithm
		counterBits      int
		ivSize, overhead int
	}{
		{alg: key.AES256CTR, counterBits: 64, ivSize: 16, overhead: 0},
		{alg: key.AES256GCM, ivSize: 12, overhead: 16},
	} {
		t.Run(string(tc.alg), func(t *testing.T) {
			t.Parallel()
			c := mustDerive(t, testRecord(tc.alg, tc.counterBits))
			if got := c.IVSize(); got != tc.ivSize {
				t.Errorf("IVSize() = %d, want %d", got, tc.ivSize)
			}
			if got := c.Overhead(); got != tc.overhead {
				t.Errorf("Overhead() = %d, want %d", got, tc.overhead)
			}
		})
	}
}

// TestRoundTripBoundaries seals and opens around the AES block size, and
// checks that Seal and Open append to dst without touching its prefix.
func TestRoundTripBoundaries(t *testing.T) {
	t.Parallel()
	sizes := []int{0, 1, 15, 16, 17, 31, 32, 33, 4096, 1<<20 + 3}
	for _, s := range suites {
		for _, n := range sizes {
			t.Run(fmt.Sprintf("%s/%d", s.name, n), func(t *testing.T) {
				t.Parallel()
				c := mustDerive(t, s.rec)
				rng := rand.NewChaCha8([32]byte{byte(n), 1})
				iv := make([]byte, c.IVSize())
				plaintext := make([]byte, n)
				_, _ = rng.Read(iv)
				_, _ = rng.Read(plaintext)
				prefix := []byte("prefix")

				ct, err := c.Seal(bytes.Clone(prefix), iv, plaintext, nil)
				if err != nil {
					t.Fatalf("Seal err = %v, want nil", err)
				}
				if !bytes.HasPrefix(ct, prefix) {
					t.Fatalf("Seal(dst, ...) overwrote dst")
				}
				ct = ct[len(prefix):]
				if len(ct) != n+c.Overhead() {
					t.Fatalf("len(Seal(%d bytes)) = %d, want %d", n, len(ct), n+c.Overhead())
				}
				if n >= 16 && bytes.Equal(ct[:n], plaintext) {
					t.Fatalf("Seal returned the plaintext unchanged")
				}
				pt, err := c.Open(bytes.Clone(prefix), iv, ct, nil)
				if err != nil {
					t.Fatalf("Open err = %v, want nil", err)
				}
				if !bytes.HasPrefix(pt, prefix) {
					t.Fatalf("Open(dst, ...) overwrote dst")
				}
				if !bytes.Equal(pt[len(prefix):], plaintext) {
					t.Errorf("Open(Seal(%d bytes)) does not give the plaintext back", n)
				}
			})
		}
	}
}

// refCTR64 is WebCrypto's AES-CTR with length 64, built straight from the
// block cipher: keystream block i is E(counter), after which the low 64 bits
// of the counter are incremented modulo 2^64 and the high 64 bits never
// change.
func refCTR64(b cipher.Block, iv, in []byte) []byte {
	counter := [16]byte(iv)
	var keystream [16]byte
	out := make([]byte, len(in))
	for i := range in {
		if i%16 == 0 {
			b.Encrypt(keystream[:], counter[:])
			low := binary.BigEndian.Uint64(counter[8:])
			binary.BigEndian.PutUint64(counter[8:], low+1) // wraps, no carry
		}
		out[i] = in[i] ^ keystream[i%16]
	}
	return out
}

// TestCTRCounterWrap checks the 64-bit counter against refCTR64 for IVs
// whose low half is 0 to 5 blocks short of overflowing, at every length up to
// 120 bytes (so the wrap falls at every block and inside partial blocks), and
// the 128-bit counter against crypto/cipher's CTR.
func TestCTRCounterWrap(t *testing.T) {
	t.Parallel()
	rec64 := testRecord(key.AES256CTR, key.CounterBits64)
	rec128 := testRecord(key.AES256CTR, key.CounterBits128)
	block := mustBlock(t, rec64) // same material for both widths
	c64 := mustDerive(t, rec64)
	c128 := mustDerive(t, rec128)

	rng := rand.New(rand.NewPCG(1, 2))
	var ivs [][]byte
	for short := range uint64(6) {
		for range 4 {
			iv := make([]byte, 16)
			binary.BigEndian.PutUint64(iv[:8], rng.Uint64())
			binary.BigEndian.PutUint64(iv[8:], ^uint64(0)-short)
			ivs = append(ivs, iv)
		}
	}
	// The high half all ones too: a 128-bit counter wraps to zero there, a
	// 64-bit one must keep the high half.
	ivs = append(ivs, bytes.Repeat([]byte{0xff}, 16))
	// Far from the wrap, both widths must agree with crypto/cipher.
	ivs = append(ivs, make([]byte, 16), []byte("0123456789abcdef"))

	plaintext := make([]byte, 120)
	for i := range plaintext {
		plaintext[i] = byte(rng.Uint32())
	}
	for _, iv := range ivs {
		for n := 0; n <= len(plaintext); n++ {
			in := plaintext[:n]
			want64 := refCTR64(block, iv, in)
			got64, err := c64.Seal(nil, iv, in, nil)
			if err != nil {
				t.Fatalf("ctr64 Seal(iv=%x, %d bytes) err = %v", iv, n, err)
			}
			if !bytes.Equal(got64, want64) {
				t.Errorf("ctr64 Seal(iv=%x, %d bytes) =\n%x\nwant (reference, low 64 bits wrap)\n%x", iv, n, got64, want64)
			}
			if back, _ := c64.Open(nil, iv, got64, nil); !bytes.Equal(back, in) {
				t.Errorf("ctr64 Open(Seal(iv=%x, %d bytes)) does not give the plaintext back", iv, n)
			}

			want128 := make([]byte, n)
			cipher.NewCTR(block, iv).XORKeyStream(want128, in)
			got128, err := c128.Seal(nil, iv, in, nil)
			if err != nil {
				t.Fatalf("ctr128 Seal(iv=%x, %d bytes) err = %v", iv, n, err)
			}
			if !bytes.Equal(got128, want128) {
				t.Errorf("ctr128 Seal(iv=%x, %d bytes) =\n%x\nwant (cipher.NewCTR)\n%x", iv, n, got128, want128)
			}
		}
	}
}

// TestCTRWidthsDiffer makes sure the reference in TestCTRCounterWrap is not
// trivially equal to cipher.NewCTR: past the wrap the two widths disagree.
func TestCTRWidthsDiffer(t *testing.T) {
	t.Parallel()
	c64 := mustDerive(t, testRecord(key.AES256CTR, key.CounterBits64))
	c128 := mustDerive(t, testRecord(key.AES256CTR, key.CounterBits128))
	iv := []byte{1, 2, 3, 4, 5, 6, 7, 8, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff}
	in := make([]byte, 32)
	a, _ := c64.Seal(nil, iv, in, nil)
	b, _ := c128.Seal(nil, iv, in, nil)
	if !bytes.Equal(a[:16], b[:16]) {
		t.Errorf("first block differs between 64- and 128-bit counters; want equal before the wrap")
	}
	if bytes.Equal(a[16:], b[16:]) {
		t.Errorf("second block is equal for 64- and 128-bit counters; want different after the wrap")
	}
}

func TestCTRInPlace(t *testing.T) {
	t.Parallel()
	c := mustDerive(t, testRecord(key.AES256CTR, key.CounterBits64))
	iv := bytes.Repeat([]byte{0xff}, 16)
	plaintext := []byte("in-place encryption across the 64-bit counter wrap")
	want, _ := c.Seal(nil, iv, plaintext, nil)
	buf := bytes.Clone(plaintext)
	got, err := c.Seal(buf[:0], iv, buf, nil)
	if err != nil {
		t.Fatalf("Seal(buf[:0], iv, buf) err = %v, want nil", err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("Seal in place = %x, want %x", got, want)
	}
}

// TestGCMTamper flips one bit of every byte of the IV, the ciphertext, the
// tag and the associated data in turn: each must fail with exactly ErrOpen.
func TestGCMTamper(t *testing.T) {
	t.Parallel()
	c := mustDerive(t, testRecord(key.AES256GCM, 0))
	iv := []byte("twelve-byte!")
	aad := []byte("order-42")
	ct, err := c.Seal(nil, iv, []byte(`{"order":"tamper me"}`), aad)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Open(nil, iv, ct, aad); err != nil {
		t.Fatalf("Open(untampered) err = %v, want nil", err)
	}
	type input struct{ iv, ct, aad []byte }
	tampered := map[string]input{
		"aad missing":       {iv, ct, nil},
		"aad extended":      {iv, ct, append(bytes.Clone(aad), 0)},
		"ciphertext empty":  {iv, nil, aad},
		"tag only":          {iv, ct[len(ct)-suite.GCMTagLen:], aad},
		"tag truncated":     {iv, ct[:len(ct)-1], aad},
		"ciphertext longer": {iv, append(bytes.Clone(ct), 0), aad},
	}
	flip := func(b []byte, i int) []byte {
		b = bytes.Clone(b)
		b[i] ^= 0x80
		return b
	}
	for i := range iv {
		tampered[fmt.Sprintf("iv[%d]", i)] = input{flip(iv, i), ct, aad}
	}
	for i := range ct {
		what := "ciphertext"
		if i >= len(ct)-suite.GCMTagLen {
			what = "tag"
		}
		tampered[fmt.Sprintf("%s[%d]", what, i)] = input{iv, flip(ct, i), aad}
	}
	for i := range aad {
		tampered[fmt.Sprintf("aad[%d]", i)] = input{iv, ct, flip(aad, i)}
	}
	for name, in := range tampered {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			pt, err := c.Open(nil, in.iv, in.ct, in.aad)
			if err != suite.ErrOpen { // identity, not just errors.Is: one error for all
				t.Errorf("Open(%s) err = %v, want ErrOpen", name, err)
			}
			if pt != nil {
				t.Errorf("Open(%s) returned %d bytes of plaintext, want none", name, len(pt))
			}
		})
	}
}

func TestIVSize(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		rec  key.Record
		ivs  []int
	}{
		{"ctr64", testRecord(key.AES256CTR, 64), []int{0, 1, 12, 15, 17, 32}},
		{"ctr128", testRecord(key.AES256CTR, 128), []int{0, 12, 15, 17}},
		{"gcm", testRecord(key.AES256GCM, 0), []int{0, 1, 11, 13, 16}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			c := mustDerive(t, tc.rec)
			for _, n := range tc.ivs {
				iv := make([]byte, n)
				if _, err := c.Seal(nil, iv, []byte("x"), nil); !errors.Is(err, suite.ErrIVSize) {
					t.Errorf("Seal(%d-byte iv) err = %v, want ErrIVSize", n, err)
				}
				if _, err := c.Open(nil, iv, make([]byte, 32), nil); !errors.Is(err, suite.ErrIVSize) {
					t.Errorf("Open(%d-byte iv) err = %v, want ErrIVSize", n, err)
				}
			}
		})
	}
}

func TestCTRRejectsAAD(t *testing.T) {
	t.Parallel()
	for _, bits := range []int{64, 128} {
		t.Run(fmt.Sprint(bits), func(t *testing.T) {
			t.Parallel()
			c := mustDerive(t, testRecord(key.AES256CTR, bits))
			iv := make([]byte, suite.CTRIVSize)
			if _, err := c.Seal(nil, iv, []byte("x"), []byte("aad")); !errors.Is(err, suite.ErrAADUnsupported) {
				t.Errorf("Seal(aad) err = %v, want ErrAADUnsupported", err)
			}
			if _, err := c.Open(nil, iv, []byte("x"), []byte("aad")); !errors.Is(err, suite.ErrAADUnsupported) {
				t.Errorf("Open(aad) err = %v, want ErrAADUnsupported", err)
			}
			if _, err := c.Seal(nil, iv, []byte("x"), []byte{}); err != nil {
				t.Errorf("Seal(empty aad) err = %v, want nil", err)
			}
		})
	}
}

func TestDeriveRejects(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name   string
		mutate func(*key.Record)
	}{
		{"unknown algorithm", func(r *key.Record) { r.Algorithm = "aes-128-cbc" }},
		{"unknown kdf", func(r *key.Record) { r.KDF.Name = "scrypt" }},
		{"empty secret", func(r *key.Record) { r.Secret = secret.Bytes{} }},
		{"too few iterations", func(r *key.Record) { r.KDF.Iterations = 1 }},
		{"bad counter width", func(r *key.Record) { r.CounterBits = 32 }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			r := testRecord(key.AES256CTR, 64)
			tc.mutate(&r)
			if c, err := suite.Derive(r); !errors.Is(err, key.ErrInvalidRecord) || c != nil {
				t.Errorf("Derive(%s) = %v, %v; want nil, ErrInvalidRecord", tc.name, c, err)
			}
		})
	}
}

func TestDeriveKeyRejectsUnknownKDF(t *testing.T) {
	t.Parallel()
	r := testRecord(key.AES256CTR, 64)
	r.KDF.Name = "argon2id"
	if dk, err := suite.DeriveKey(r); err == nil || dk != nil {
		t.Errorf("DeriveKey(kdf argon2id) = %d bytes, %v; want nil, an error", len(dk), err)
	}
}

// TestDeriveDependsOnEveryInput guards against a KDF input being dropped:
// changing any of secret, salt or iterations changes the key.
func TestDeriveDependsOnEveryInput(t *testing.T) {
	t.Parallel()
	base := testRecord(key.AES256CTR, 64)
	baseKey, err := suite.DeriveKey(base)
	if err != nil {
		t.Fatal(err)
	}
	if len(baseKey) != suite.KeySize {
		t.Fatalf("len(DeriveKey) = %d, want %d", len(baseKey), suite.KeySize)
	}
	for _, tc := range []struct {
		name   string
		mutate func(*key.Record)
	}{
		{"secret", func(r *key.Record) { r.Secret = secret.FromString("test-only-secreT") }},
		{"salt", func(r *key.Record) { r.KDF.Salt = "test-only-salT" }},
		{"iterations", func(r *key.Record) { r.KDF.Iterations++ }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			r := base
			tc.mutate(&r)
			dk, err := suite.DeriveKey(r)
			if err != nil {
				t.Fatal(err)
			}
			if bytes.Equal(dk, baseKey) {
				t.Errorf("DeriveKey with another %s gives the same key", tc.name)
			}
		})
	}
}

// BenchmarkSeal is the in-process ceiling: what one core does with a derived
// key and nothing else (no RPC, no IV generation, no allocation of dst).
func BenchmarkSeal(b *testing.B) {
	for _, s := range []struct {
		name string
		rec  key.Record
	}{
		{"ctr64", testRecord(key.AES256CTR, key.CounterBits64)},
		{"gcm", testRecord(key.AES256GCM, 0)},
	} {
		c := mustDerive(b, s.rec)
		iv := make([]byte, c.IVSize())
		for _, size := range []struct {
			name string
			n    int
		}{{"64B", 64}, {"1KiB", 1 << 10}, {"64KiB", 64 << 10}} {
			b.Run(s.name+"/"+size.name, func(b *testing.B) {
				plaintext := make([]byte, size.n)
				dst := make([]byte, 0, size.n+c.Overhead())
				b.SetBytes(int64(size.n))
				b.ReportAllocs()
				for b.Loop() {
					if _, err := c.Seal(dst, iv, plaintext, nil); err != nil {
						b.Fatal(err)
					}
				}
			})
		}
	}
}

// BenchmarkDerive is one key's PBKDF2 at the default iteration count: the
// cost the keyring pays once per key at load.
func BenchmarkDerive(b *testing.B) {
	r := testRecord(key.AES256CTR, key.CounterBits64)
	r.KDF.Iterations = key.DefaultIterations
	for b.Loop() {
		if _, err := suite.Derive(r); err != nil {
			b.Fatal(err)
		}
	}
}
