package key_test

import (
	"bytes"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"io"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/alecrypt/alecrypt/internal/key"
)

func seeded(seed byte) io.Reader { return rand.NewChaCha8([32]byte{seed}) }

func TestGenerate(t *testing.T) {
	t.Parallel()
	now := time.Date(2025, 6, 1, 10, 30, 15, 999_999_999, time.FixedZone("CEST", 2*3600))
	for _, tc := range []struct {
		alg             key.Algorithm
		wantCounterBits int
	}{
		{key.AES256CTR, key.CounterBits64},
		{key.AES256GCM, 0},
	} {
		t.Run(string(tc.alg), func(t *testing.T) {
			t.Parallel()
			// A counting reader makes every field's source visible: the
			// secret is bytes 0-31, the salt 32-47, the fingerprint 48-63.
			stream := make([]byte, 64)
			for i := range stream {
				stream[i] = byte(i)
			}
			r, err := key.Generate(bytes.NewReader(stream), tc.alg, []string{"default"}, now)
			if err != nil {
				t.Fatalf("Generate err = %v, want nil", err)
			}
			if err := r.Validate(); err != nil {
				t.Errorf("Generate returned an invalid record: %v", err)
			}
			wantSecret := base64.RawURLEncoding.EncodeToString(stream[:32])
			if got := string(r.Secret.Expose()); got != wantSecret {
				t.Errorf("Generate secret is not base64url of the first 32 random bytes")
			}
			for _, c := range []struct{ field, got, want string }{
				{"Fingerprint", r.Fingerprint, hex.EncodeToString(stream[48:])},
				{"KDF.Salt", r.KDF.Salt, base64.RawURLEncoding.EncodeToString(stream[32:48])},
				{"KDF.Name", r.KDF.Name, key.KDFPBKDF2SHA256},
				{"State", string(r.State), string(key.Active)},
				{"Source", r.Source, key.SourceLocal},
				{"Algorithm", string(r.Algorithm), string(tc.alg)},
			} {
				if c.got != c.want {
					t.Errorf("Generate %s = %q, want %q", c.field, c.got, c.want)
				}
			}
			if r.KDF.Iterations != key.DefaultIterations || r.Version != 1 || r.CounterBits != tc.wantCounterBits {
				t.Errorf("Generate iterations, version, counter_bits = %d, %d, %d; want %d, 1, %d",
					r.KDF.Iterations, r.Version, r.CounterBits, key.DefaultIterations, tc.wantCounterBits)
			}
			if want := time.Date(2025, 6, 1, 8, 30, 15, 999_999_999, time.UTC); !r.CreatedAt.Equal(want) || r.CreatedAt.Location() != time.UTC {
				t.Errorf("Generate CreatedAt = %v, want %v (UTC, full precision)", r.CreatedAt, want)
			}
			if !r.NotAfter.IsZero() {
				t.Errorf("Generate NotAfter = %v, want zero (no expiry)", r.NotAfter)
			}
			if !r.HasAlias("default") || len(r.Aliases) != 1 {
				t.Errorf("Generate Aliases = %q, want [default]", r.Aliases)
			}
		})
	}
}

func TestGenerateDistinctAndDeterministic(t *testing.T) {
	t.Parallel()
	now := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	rnd := seeded(1)
	var recs []key.Record
	for range 16 {
		r, err := key.Generate(rnd, key.AES256CTR, nil, now)
		if err != nil {
			t.Fatal(err)
		}
		recs = append(recs, r)
	}
	for i := range recs {
		for j := range i {
			if recs[i].Fingerprint == recs[j].Fingerprint || recs[i].KDF.Salt == recs[j].KDF.Salt || recs[i].Secret.Equal(recs[j].Secret) {
				t.Errorf("Generate keys %d and %d share a fingerprint, salt or secret", j, i)
			}
		}
	}
	again, err := key.Generate(seeded(1), key.AES256CTR, nil, now)
	if err != nil {
		t.Fatal(err)
	}
	if d := diffRecords(recs[0], again); d != "" {
		t.Errorf("Generate with the same random stream differs (-first +second):\n%s", d)
	}
}

func TestGenerateErrors(t *testing.T) {
	t.Parallel()
	now := time.Now()
	for _, tc := range []struct {
		name    string
		rnd     io.Reader
		alg     key.Algorithm
		aliases []string
		want    error
	}{
		{"random source empty", bytes.NewReader(nil), key.AES256CTR, nil, io.EOF},
		{"random source short", bytes.NewReader(make([]byte, 63)), key.AES256CTR, nil, io.ErrUnexpectedEOF},
		{"unknown algorithm", seeded(2), "aes-128-ecb", nil, key.ErrInvalidRecord},
		{"invalid alias", seeded(3), key.AES256GCM, []string{"two words"}, key.ErrInvalidRecord},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			r, err := key.Generate(tc.rnd, tc.alg, tc.aliases, now)
			if !errors.Is(err, tc.want) {
				t.Errorf("Generate(%s) err = %v, want %v", tc.name, err, tc.want)
			}
			if r.Fingerprint != "" || !r.Secret.IsZero() {
				t.Errorf("Generate(%s) returned a record along with its error", tc.name)
			}
		})
	}
}
