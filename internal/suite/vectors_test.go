package suite_test

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"os"
	"testing"
	"time"

	"github.com/alecrypt/alecrypt/internal/key"
	"github.com/alecrypt/alecrypt/internal/suite"
	"github.com/alecrypt/alecrypt/service/secret"
)

// minVectors guards against the vector file being emptied or truncated: a
// test that loops over zero vectors passes and proves nothing.
const minVectors = 15

// webcryptoVector is one entry of testdata/webcrypto_vectors.json, written by
// test/node/webcrypto-vectors.mjs with Node's WebCrypto.
type webcryptoVector struct {
	Name                string `json:"name"`
	Algorithm           string `json:"algorithm"`
	CounterBits         int    `json:"counter_bits"`
	Secret              string `json:"secret"`
	Salt                string `json:"salt"`
	Iterations          int    `json:"iterations"`
	DerivedKeyHex       string `json:"derived_key_hex"`
	IVHex               string `json:"iv_hex"`
	AADHex              string `json:"aad_hex"`
	PlaintextHex        string `json:"plaintext_hex"`
	PlaintextSeed       string `json:"plaintext_seed"`
	PlaintextLength     int    `json:"plaintext_length"`
	CiphertextHex       string `json:"ciphertext_hex"`
	CiphertextSHA256Hex string `json:"ciphertext_sha256_hex"`
}

func loadVectors(t *testing.T) []webcryptoVector {
	t.Helper()
	data, err := os.ReadFile("testdata/webcrypto_vectors.json")
	if err != nil {
		t.Fatal(err)
	}
	var file struct {
		Source             string            `json:"source"`
		PlaintextGenerator string            `json:"plaintext_generator"`
		Vectors            []webcryptoVector `json:"vectors"`
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields() // a renamed field must not silently become "".
	if err := dec.Decode(&file); err != nil {
		t.Fatalf("decoding vectors: %v", err)
	}
	if len(file.Vectors) < minVectors {
		t.Fatalf("vector file holds %d vectors, want at least %d", len(file.Vectors), minVectors)
	}
	return file.Vectors
}

// seededPlaintext is the generator the vector file describes:
// SHA-256(utf8(seed) || uint32be(i)) for i = 0, 1, ..., truncated to n.
func seededPlaintext(seed string, n int) []byte {
	out := make([]byte, 0, n+sha256.Size)
	buf := append([]byte(seed), 0, 0, 0, 0)
	for i := uint32(0); len(out) < n; i++ {
		binary.BigEndian.PutUint32(buf[len(seed):], i)
		sum := sha256.Sum256(buf)
		out = append(out, sum[:]...)
	}
	return out[:n]
}

func mustHex(t *testing.T, field, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(s)
	if err != nil {
		t.Fatalf("%s: %v", field, err)
	}
	return b
}

func (v webcryptoVector) record() key.Record {
	r := key.Record{
		Fingerprint: v.Name,
		Algorithm:   key.Algorithm(v.Algorithm),
		Secret:      secret.FromString(v.Secret),
		KDF:         key.KDF{Name: key.KDFPBKDF2SHA256, Salt: v.Salt, Iterations: v.Iterations},
		State:       key.Active,
		CreatedAt:   time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC),
		Source:      key.SourcePortal,
	}
	if r.Algorithm == key.AES256CTR {
		r.CounterBits = v.CounterBits
	}
	return r
}

func TestWebCryptoVectors(t *testing.T) {
	t.Parallel()
	for _, v := range loadVectors(t) {
		t.Run(v.Name, func(t *testing.T) {
			t.Parallel()
			rec := v.record()
			wantKey := mustHex(t, "derived_key_hex", v.DerivedKeyHex)
			iv := mustHex(t, "iv_hex", v.IVHex)
			aad := mustHex(t, "aad_hex", v.AADHex)
			wantSum := mustHex(t, "ciphertext_sha256_hex", v.CiphertextSHA256Hex)
			var plaintext, wantCT []byte
			if v.PlaintextSeed != "" {
				plaintext = seededPlaintext(v.PlaintextSeed, v.PlaintextLength)
			} else {
				plaintext = mustHex(t, "plaintext_hex", v.PlaintextHex)
				wantCT = mustHex(t, "ciphertext_hex", v.CiphertextHex)
			}
			if len(plaintext) != v.PlaintextLength {
				t.Fatalf("plaintext is %d bytes, vector says %d", len(plaintext), v.PlaintextLength)
			}

			dk, err := suite.DeriveKey(rec)
			if err != nil {
				t.Fatalf("DeriveKey(%s) err = %v, want nil", v.Name, err)
			}
			if !bytes.Equal(dk, wantKey) {
				t.Errorf("DeriveKey(%s) = %x, want %x", v.Name, dk, wantKey)
			}

			c, err := suite.Derive(rec)
			if err != nil {
				t.Fatalf("Derive(%s) err = %v, want nil", v.Name, err)
			}
			ct, err := c.Seal(nil, iv, plaintext, aad)
			if err != nil {
				t.Fatalf("Seal err = %v, want nil", err)
			}
			if wantCT != nil && !bytes.Equal(ct, wantCT) {
				t.Errorf("Seal(iv, plaintext, aad) =\n%x\nwant (WebCrypto)\n%x", ct, wantCT)
			}
			if sum := sha256.Sum256(ct); !bytes.Equal(sum[:], wantSum) {
				t.Errorf("SHA-256(Seal(iv, plaintext, aad)) = %x, want %x", sum, wantSum)
			}
			if want := len(plaintext) + c.Overhead(); len(ct) != want {
				t.Errorf("len(Seal(...)) = %d, want %d", len(ct), want)
			}

			pt, err := c.Open(nil, iv, ct, aad)
			if err != nil {
				t.Fatalf("Open(Seal(...)) err = %v, want nil", err)
			}
			if !bytes.Equal(pt, plaintext) {
				t.Errorf("Open(Seal(plaintext)) differs from plaintext (%d vs %d bytes)", len(pt), len(plaintext))
			}
		})
	}
}

// TestWebCryptoVectorsCoverage makes sure the vectors still exercise what
// they exist for; editing the generator must not quietly drop a case.
func TestWebCryptoVectorsCoverage(t *testing.T) {
	t.Parallel()
	var ctr64Wrap, ctr128Wrap, gcmAAD, seeded, nonASCIISecret bool
	for _, v := range loadVectors(t) {
		lowFF := len(v.IVHex) == 32 && v.IVHex[16:] == "ffffffffffffffff"
		switch {
		case v.Algorithm == string(key.AES256CTR) && v.CounterBits == 64 && lowFF && v.PlaintextLength > 16:
			ctr64Wrap = true
		case v.Algorithm == string(key.AES256CTR) && v.CounterBits == 128 && lowFF && v.PlaintextLength > 16:
			ctr128Wrap = true
		case v.Algorithm == string(key.AES256GCM) && v.AADHex != "":
			gcmAAD = true
		}
		if v.PlaintextSeed != "" && v.PlaintextLength >= 1<<20 {
			seeded = true
		}
		for _, r := range v.Secret {
			if r > 0x7f {
				nonASCIISecret = true
			}
		}
	}
	for _, c := range []struct {
		name string
		ok   bool
	}{
		{"64-bit CTR whose IV ends in ff ff ff ff ff ff ff ff, over more than one block", ctr64Wrap},
		{"128-bit CTR with the same kind of IV", ctr128Wrap},
		{"GCM with associated data", gcmAAD},
		{"a seeded plaintext of at least 1 MiB", seeded},
		{"a non-ASCII secret", nonASCIISecret},
	} {
		if !c.ok {
			t.Errorf("no vector covers %s", c.name)
		}
	}
}
