package key_test

import (
	"errors"
	"testing"

	"github.com/alecrypt/alecrypt/internal/key"
)

// FuzzUnmarshalRecord: the codec must never panic, must wrap every failure
// in ErrInvalidRecord, and whatever it accepts must be valid and survive
// MarshalRecord → UnmarshalRecord unchanged (a record that loads but cannot
// be written back would break every later keystore update).
// The seed corpus is in testdata/fuzz/FuzzUnmarshalRecord.
func FuzzUnmarshalRecord(f *testing.F) {
	f.Add([]byte(validJSON))
	f.Fuzz(func(t *testing.T, data []byte) {
		r, err := key.UnmarshalRecord(data)
		if err != nil {
			if !errors.Is(err, key.ErrInvalidRecord) {
				t.Fatalf("UnmarshalRecord err = %v, want ErrInvalidRecord", err)
			}
			return
		}
		if err := r.Validate(); err != nil {
			t.Fatalf("UnmarshalRecord accepted a record that fails Validate: %v", err)
		}
		roundTrip(t, r)
	})
}
