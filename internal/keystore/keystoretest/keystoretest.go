// Package keystoretest is the conformance suite every keystore backend runs
// from its own tests: what Load returns, and how its Revision behaves.
//
// It is test support only: production code must never import it.
package keystoretest

import (
	"cmp"
	"context"
	"slices"
	"sync"
	"testing"
	"time"

	gocmp "github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/alecrypt/alecrypt/internal/key"
	"github.com/alecrypt/alecrypt/internal/key/keytest"
	"github.com/alecrypt/alecrypt/internal/keystore"
	"github.com/alecrypt/alecrypt/service/secret"
)

// Mutator is what the suite needs to change a store in place and check that
// its Revision follows. A backend's test harness returns a Reader that also
// implements it (wrapping the backend's own write path: a file update, a
// Vault write).
type Mutator interface {
	keystore.Reader
	// SetRecords replaces the store's whole content with recs.
	SetRecords(ctx context.Context, recs []key.Record) error
}

// Corrupter is what the suite needs to check that one invalid record never
// hides the others. A backend's harness writes through the backend's raw
// write path (the file's bytes, a KV put), around the store's own checks.
type Corrupter interface {
	// AddInvalid stores, beside the current records, an entry filed under
	// fingerprint fp whose data is not a valid record.
	AddInvalid(ctx context.Context, fp string) error
}

// Run runs the suite. newStore must return a fresh, independent store that
// holds exactly recs (none when recs is empty) and implements Mutator; it may
// register cleanups on the t it is given. Subtests run in parallel.
func Run(t *testing.T, newStore func(t *testing.T, recs []key.Record) keystore.Reader) {
	t.Helper()
	t.Run("LoadReturnsSeededRecords", func(t *testing.T) {
		t.Parallel()
		for _, tc := range []struct {
			name string
			recs []key.Record
		}{
			{"empty", nil},
			{"one", seedRecords()[:1]},
			{"all", seedRecords()},
		} {
			t.Run(tc.name, func(t *testing.T) {
				t.Parallel()
				s := newStore(t, tc.recs)
				snap, err := s.Load(t.Context())
				if err != nil {
					t.Fatalf("Load err = %v, want nil", err)
				}
				checkRecords(t, tc.recs, snap.Records)
			})
		}
	})

	t.Run("RevisionStableWhenUnchanged", func(t *testing.T) {
		t.Parallel()
		s := newStore(t, seedRecords())
		first, err := s.Load(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		if first.Revision == "" {
			t.Fatalf("Load Revision is empty; want one, so the refresher can skip unchanged stores")
		}
		for i := range 3 {
			snap, err := s.Load(t.Context())
			if err != nil {
				t.Fatal(err)
			}
			if snap.Revision != first.Revision {
				t.Errorf("Load #%d Revision = %q, want %q (nothing changed)", i+2, snap.Revision, first.Revision)
			}
		}
	})

	t.Run("RevisionFollowsChanges", func(t *testing.T) {
		t.Parallel()
		s := newStore(t, seedRecords())
		m, ok := s.(Mutator)
		if !ok {
			t.Fatalf("store %T does not implement keystoretest.Mutator; the harness must wrap it", s)
		}
		snap, err := s.Load(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		seen := map[string]string{snap.Revision: "seeded"}

		demoted := seedRecords()
		demoted[0].State, demoted[0].Version = key.DecryptOnly, demoted[0].Version+1
		rotated := seedRecords()
		rotated[1].Secret = secret.FromString("conformance-only-rotated-material")
		added := append(seedRecords(), record("fp-conf-added", key.AES256GCM, key.Active, "store-9"))
		removed := seedRecords()[1:]
		for _, step := range []struct {
			name string
			recs []key.Record
		}{
			{"metadata changed", demoted},
			{"secret changed", rotated},
			{"key added", added},
			{"key removed", removed},
			{"emptied", nil},
		} {
			if err := m.SetRecords(t.Context(), step.recs); err != nil {
				t.Fatalf("SetRecords(%s) err = %v", step.name, err)
			}
			snap, err := s.Load(t.Context())
			if err != nil {
				t.Fatalf("Load after %s err = %v, want nil", step.name, err)
			}
			checkRecords(t, step.recs, snap.Records)
			if prev, dup := seen[snap.Revision]; dup {
				t.Errorf("Load Revision after %s = %q, the same as after %s; want a new revision", step.name, snap.Revision, prev)
			}
			seen[snap.Revision] = step.name
		}
	})

	t.Run("InvalidRecordIsSkipped", func(t *testing.T) {
		t.Parallel()
		s := newStore(t, seedRecords())
		c, ok := s.(Corrupter)
		if !ok {
			t.Fatalf("store %T does not implement keystoretest.Corrupter; the harness must wrap it", s)
		}
		before, err := s.Load(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		const broken = "fp-conf-broken"
		if err := c.AddInvalid(t.Context(), broken); err != nil {
			t.Fatalf("AddInvalid err = %v", err)
		}
		snap, err := s.Load(t.Context())
		if err != nil {
			t.Fatalf("Load with one invalid record err = %v, want nil: it must not block the others", err)
		}
		checkRecords(t, seedRecords(), snap.Records)
		if len(snap.Invalid) != 1 || snap.Invalid[0].Fingerprint != broken || snap.Invalid[0].Name == "" || snap.Invalid[0].Err == nil {
			t.Errorf("Load Invalid = %+v, want one entry for %s with a name and an error", snap.Invalid, broken)
		}
		if snap.Revision == before.Revision {
			t.Errorf("Load Revision did not change when an invalid record was added")
		}
	})

	t.Run("LoadReturnsCopies", func(t *testing.T) {
		t.Parallel()
		s := newStore(t, seedRecords())
		snap, err := s.Load(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		for i := range snap.Records {
			if len(snap.Records[i].Aliases) > 0 {
				snap.Records[i].Aliases[0] = "changed-by-caller"
			}
			snap.Records[i].State = key.Disabled
		}
		again, err := s.Load(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		checkRecords(t, seedRecords(), again.Records)
	})

	t.Run("ConcurrentLoads", func(t *testing.T) {
		t.Parallel()
		s := newStore(t, seedRecords())
		want, err := s.Load(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		var wg sync.WaitGroup
		for range 8 {
			wg.Go(func() {
				snap, err := s.Load(t.Context())
				if err != nil {
					t.Errorf("concurrent Load err = %v", err)
					return
				}
				if snap.Revision != want.Revision || len(snap.Records) != len(want.Records) {
					t.Errorf("concurrent Load = %d records at %q, want %d at %q", len(snap.Records), snap.Revision, len(want.Records), want.Revision)
				}
			})
		}
		wg.Wait()
	})
}

// seedRecords is the suite's seed: every algorithm, counter width, state and
// optional field, and a non-ASCII secret. Each call returns fresh values.
func seedRecords() []key.Record {
	ctr := record("fp-conf-ctr64", key.AES256CTR, key.Active, "default", "store-1")
	ctr.CounterBits = key.CounterBits64
	ctr.NotAfter = time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	ctr128 := record("fp-conf-ctr128", key.AES256CTR, key.DecryptOnly, "default")
	ctr128.CounterBits = key.CounterBits128
	ctr128.Source = key.SourceLocal
	unicode := record("fp-conf-utf8", key.AES256CTR, key.Active)
	unicode.Secret = secret.FromString("conformance-only-clé-🔑-ключ")
	unicode.KDF.Salt = "sel-日本語"
	return []key.Record{
		ctr,
		ctr128,
		record("fp-conf-gcm", key.AES256GCM, key.Active, "tenant-a"),
		record("fp-conf-off", key.AES256GCM, key.Disabled),
		unicode,
	}
}

func record(fp string, alg key.Algorithm, state key.State, aliases ...string) key.Record {
	return keytest.Record(fp, keytest.Algorithm(alg), keytest.State(state), keytest.Aliases(aliases...), keytest.Version(4),
		keytest.CreatedAt(time.Date(2025, 2, 3, 4, 5, 6, 0, time.UTC)), keytest.Source(key.SourcePortal))
}

// checkRecords compares record sets regardless of order: metadata with cmp,
// the secret with Secret.Equal (it cannot be compared any other way, and a
// diff must never print it).
func checkRecords(t *testing.T, want, got []key.Record) {
	t.Helper()
	byFP := func(a, b key.Record) int { return cmp.Compare(a.Fingerprint, b.Fingerprint) }
	want, got = slices.SortedFunc(slices.Values(want), byFP), slices.SortedFunc(slices.Values(got), byFP)
	opts := gocmp.Options{cmpopts.IgnoreFields(key.Record{}, "Secret"), cmpopts.EquateEmpty()}
	if d := gocmp.Diff(want, got, opts); d != "" {
		t.Errorf("Load records mismatch (-want +got):\n%s", d)
		return
	}
	for i := range want {
		if !want[i].Secret.Equal(got[i].Secret) {
			t.Errorf("Load record %s: secret differs from the seeded one", want[i].Fingerprint)
		}
	}
}
