package filestore_test

import (
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/alecrypt/alecrypt/internal/key"
	"github.com/alecrypt/alecrypt/internal/keystore/filestore"
)

// FuzzParse: Parse must never panic, and whatever it accepts must be
// writable by Encode and read back unchanged, or one odd file would stop
// every later Update. The seed corpus is in testdata/fuzz/FuzzParse.
func FuzzParse(f *testing.F) {
	f.Add([]byte(`{"keys":[]}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		recs, err := filestore.Parse(data)
		if err != nil {
			if recs != nil {
				t.Fatalf("Parse returned %d records along with err = %v", len(recs), err)
			}
			return
		}
		seen := map[string]bool{}
		for i, r := range recs {
			if err := r.Validate(); err != nil {
				t.Fatalf("Parse accepted keys[%d], which fails Validate: %v", i, err)
			}
			if seen[r.Fingerprint] {
				t.Fatalf("Parse accepted a duplicate fingerprint %q", r.Fingerprint)
			}
			seen[r.Fingerprint] = true
		}
		out, err := filestore.Encode(recs)
		if err != nil {
			t.Fatalf("Encode(Parse(data)) err = %v, want nil", err)
		}
		back, err := filestore.Parse(out)
		if err != nil {
			t.Fatalf("Parse(Encode(Parse(data))) err = %v, want nil", err)
		}
		opts := cmp.Options{cmpopts.IgnoreFields(key.Record{}, "Secret"), cmpopts.EquateEmpty()}
		if d := cmp.Diff(recs, back, opts); d != "" {
			t.Fatalf("records changed through Encode → Parse (-before +after):\n%s", d)
		}
		for i := range recs {
			if !recs[i].Secret.Equal(back[i].Secret) {
				t.Fatalf("keys[%d] secret changed through Encode → Parse", i)
			}
		}
	})
}
