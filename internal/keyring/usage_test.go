package keyring

import (
	"sync"
	"testing"
	"time"

	"github.com/alecrypt/alecrypt/internal/key"
	"github.com/alecrypt/alecrypt/service/secret"
)

// TestUsageSurvivesReloads: a key's counts and times belong to its
// fingerprint and carry over every kind of reload that keeps the
// fingerprint (metadata, state, even material), and start from zero for a
// key that was removed and came back.
func TestUsageSurvivesReloads(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name     string
		reload   func(r *Ring, base key.Record)
		wantKept bool
	}{
		{"same records", func(r *Ring, base key.Record) { mustReplace(t, r, base) }, true},
		{"state and version changed", func(r *Ring, base key.Record) {
			next := base.Clone()
			next.State, next.Version = key.DecryptOnly, 2
			mustReplace(t, r, next)
		}, true},
		{"material changed", func(r *Ring, base key.Record) {
			next := base.Clone()
			next.Secret = secret.FromString("test-only-rotated")
			mustReplace(t, r, next)
		}, true},
		{"removed, then back", func(r *Ring, base key.Record) {
			mustReplace(t, r, rec("fp-other", key.Active, t0))
			mustReplace(t, r, base)
		}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			r := New()
			base := rec("fp-a", key.Active, t0, "default")
			mustReplace(t, r, base)
			k, _ := r.Lookup("fp-a")
			at := time.Date(2026, 3, 1, 12, 0, 0, 123456789, time.UTC)
			k.Usage().Encrypted(at)
			k.Usage().Decrypted(at.Add(time.Second))
			k.Usage().Decrypted(at) // an older time never moves last use back

			tc.reload(r, base)
			k2, _ := r.Lookup("fp-a")
			got := k2.Usage().Snapshot()
			want := UsageSnapshot{}
			if tc.wantKept {
				want = UsageSnapshot{Encrypts: 1, Decrypts: 2,
					LastEncrypt: at.Truncate(time.Millisecond), LastDecrypt: at.Add(time.Second).Truncate(time.Millisecond)}
			}
			if got != want {
				t.Errorf("usage after reload = %+v, want %+v", got, want)
			}
		})
	}
}

// TestUsageConcurrent: counts from many goroutines add up exactly, with
// readers and reloads running meanwhile (go test -race checks the rest).
func TestUsageConcurrent(t *testing.T) {
	t.Parallel()
	r := New()
	base := rec("fp-a", key.Active, t0, "default")
	mustReplace(t, r, base)
	const workers, each = 8, 1000
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			for i := range each {
				k, _ := r.Lookup("fp-a")
				now := t0.Add(time.Duration(w*each+i) * time.Millisecond)
				k.Usage().Encrypted(now)
				k.Usage().Decrypted(now)
				_ = k.Usage().Snapshot()
			}
		})
	}
	wg.Go(func() {
		for range 100 {
			mustReplace(t, r, base)
		}
	})
	wg.Wait()
	k, _ := r.Lookup("fp-a")
	if got := k.Usage().Snapshot(); got.Encrypts != workers*each || got.Decrypts != workers*each || got.LastEncrypt.Before(t0) {
		t.Fatalf("usage = %+v, want %d of each", got, workers*each)
	}
}

// BenchmarkUsageParallel is the cost counting adds to every operation, with
// every core hammering one key (the worst case: one contended cache line).
// The clock is read by the engine anyway (expiry checks), so it is left out.
func BenchmarkUsageParallel(b *testing.B) {
	u := &Usage{}
	now := time.Now()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			u.Encrypted(now)
		}
	})
}
