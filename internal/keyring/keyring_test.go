package keyring

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/alecrypt/alecrypt/internal/key"
	"github.com/alecrypt/alecrypt/internal/key/keytest"
	"github.com/alecrypt/alecrypt/service/secret"
)

var t0 = time.Date(2025, 5, 1, 0, 0, 0, 0, time.UTC)

// rec is a valid record with the cheapest allowed KDF.
func rec(fp string, state key.State, created time.Time, aliases ...string) key.Record {
	return keytest.Record(fp, keytest.State(state), keytest.CreatedAt(created), keytest.Aliases(aliases...))
}

// clock is a settable clock, safe for concurrent reads.
type clock struct{ ns atomic.Int64 }

func newClock(t time.Time) *clock { c := &clock{}; c.set(t); return c }
func (c *clock) set(t time.Time)  { c.ns.Store(t.UnixNano()) }
func (c *clock) now() time.Time   { return time.Unix(0, c.ns.Load()).UTC() }

func mustReplace(t *testing.T, r *Ring, recs ...key.Record) (Stats, []*Key) {
	t.Helper()
	st, fresh, err := r.Replace(recs)
	if err != nil {
		t.Fatalf("Replace err = %v, want nil", err)
	}
	return st, fresh
}

func fingerprints(keys []*Key) []string {
	var fps []string
	for _, k := range keys {
		fps = append(fps, k.Fingerprint())
	}
	return fps
}

func TestReplaceRejectsAndChangesNothing(t *testing.T) {
	t.Parallel()
	invalid := rec("fp-bad", key.Active, t0)
	invalid.KDF.Iterations = 1
	for _, tc := range []struct {
		name string
		recs []key.Record
		want error
	}{
		{"duplicate fingerprint", []key.Record{rec("fp-x", key.Active, t0), rec("fp-y", key.Active, t0), rec("fp-x", key.Disabled, t0)}, ErrDuplicate},
		{"invalid record", []key.Record{rec("fp-x", key.Active, t0), invalid}, key.ErrInvalidRecord},
		{"invalid record first", []key.Record{invalid}, key.ErrInvalidRecord},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			clk := newClock(t0)
			r := New(WithClock(clk.now))
			mustReplace(t, r, rec("fp-a", key.Active, t0, "default"))
			before, _ := r.Lookup("fp-a")
			keysBefore := r.Keys()
			clk.set(t0.Add(time.Hour))

			st, fresh, err := r.Replace(tc.recs)
			if !errors.Is(err, tc.want) {
				t.Fatalf("Replace(%s) err = %v, want %v", tc.name, err, tc.want)
			}
			if st.Total != 0 || fresh != nil {
				t.Errorf("Replace(%s) = %+v, %d fresh keys; want zero values with the error", tc.name, st, len(fresh))
			}
			if after, err := r.Lookup("fp-a"); err != nil || after != before {
				t.Errorf("after a failed Replace, Lookup(fp-a) = %p, %v; want the same key %p", after, err, before)
			}
			if _, err := r.Lookup("fp-x"); !errors.Is(err, ErrUnknownKey) {
				t.Errorf("after a failed Replace, Lookup(fp-x) err = %v, want ErrUnknownKey", err)
			}
			if got := r.Keys(); len(got) != 1 || &got[0] != &keysBefore[0] {
				t.Errorf("after a failed Replace, Keys() = %q, want the old snapshot", fingerprints(got))
			}
			if k, err := r.Primary("default"); err != nil || k != before {
				t.Errorf("after a failed Replace, Primary(default) = %v, %v; want fp-a", k, err)
			}
		})
	}
}

func TestReplaceStatsAndOrder(t *testing.T) {
	t.Parallel()
	r := New(WithClock(func() time.Time { return t0 }))
	st, fresh := mustReplace(t, r,
		rec("fp-c", key.Active, t0),
		rec("fp-a", key.DecryptOnly, t0),
		rec("fp-b", key.Disabled, t0),
		rec("fp-d", key.Active, t0),
	)
	want := Stats{
		Total:   4,
		ByState: map[key.State]int{key.Active: 2, key.DecryptOnly: 1, key.Disabled: 1},
		Added:   4,
	}
	if st.Total != want.Total || st.Added != want.Added || st.Reused != 0 ||
		fmt.Sprint(st.ByState) != fmt.Sprint(want.ByState) {
		t.Errorf("Replace stats = %+v, want %+v", st, want)
	}
	if got := fingerprints(fresh); !slices.Equal(got, []string{"fp-c", "fp-a", "fp-b", "fp-d"}) {
		t.Errorf("Replace fresh keys = %q, want all four in input order", got)
	}
	if got := fingerprints(r.Keys()); !slices.Equal(got, []string{"fp-a", "fp-b", "fp-c", "fp-d"}) {
		t.Errorf("Keys() = %q, want sorted by fingerprint", got)
	}
	if got := r.CountByState(); fmt.Sprint(got) != fmt.Sprint(want.ByState) {
		t.Errorf("CountByState() = %v, want %v", got, want.ByState)
	}
}

func TestReplaceCopiesRecords(t *testing.T) {
	t.Parallel()
	r := New()
	recs := []key.Record{rec("fp-a", key.Active, t0, "default")}
	mustReplace(t, r, recs...)
	recs[0].Aliases[0] = "changed"
	if _, err := r.Primary("default"); err != nil {
		t.Errorf("after the caller changed its slice, Primary(default) err = %v, want nil", err)
	}
	k, _ := r.Lookup("fp-a")
	if got := k.Record().Aliases; !slices.Equal(got, []string{"default"}) {
		t.Errorf("Record().Aliases = %q, want [default]", got)
	}
}

func TestLookup(t *testing.T) {
	t.Parallel()
	r := New()
	mustReplace(t, r, rec("fp-active", key.Active, t0), rec("fp-old", key.DecryptOnly, t0), rec("fp-off", key.Disabled, t0))
	for _, tc := range []struct {
		fp      string
		wantErr error
	}{
		{"fp-active", nil},
		{"fp-old", nil},
		{"fp-off", nil}, // Lookup finds keys in every state; the engine applies the rules.
		{"fp-missing", ErrUnknownKey},
		{"", ErrUnknownKey},
		{"FP-ACTIVE", ErrUnknownKey},
	} {
		t.Run(tc.fp, func(t *testing.T) {
			t.Parallel()
			k, err := r.Lookup(tc.fp)
			if !errors.Is(err, tc.wantErr) {
				t.Fatalf("Lookup(%q) err = %v, want %v", tc.fp, err, tc.wantErr)
			}
			if err == nil && k.Fingerprint() != tc.fp {
				t.Errorf("Lookup(%q) = %q", tc.fp, k.Fingerprint())
			}
		})
	}
}

func TestPrimary(t *testing.T) {
	t.Parallel()
	expired := rec("fp-expired", key.Active, t0.Add(5*time.Hour), "expiring")
	expired.NotAfter = t0.Add(time.Hour)
	olderVersion := rec("fp-v1", key.Active, t0, "tie")
	newerVersion := rec("fp-v2", key.Active, t0, "tie")
	newerVersion.Version = 2
	for _, tc := range []struct {
		name    string
		recs    []key.Record
		alias   string
		want    string
		wantErr error
	}{
		{
			name:  "newest active wins",
			recs:  []key.Record{rec("fp-1", key.Active, t0, "a"), rec("fp-3", key.Active, t0.Add(2*time.Hour), "a"), rec("fp-2", key.Active, t0.Add(time.Hour), "a")},
			alias: "a", want: "fp-3",
		},
		{
			name:  "newer decrypt-only skipped",
			recs:  []key.Record{rec("fp-1", key.Active, t0, "a"), rec("fp-2", key.DecryptOnly, t0.Add(time.Hour), "a")},
			alias: "a", want: "fp-1",
		},
		{
			name:  "newer disabled skipped",
			recs:  []key.Record{rec("fp-1", key.Active, t0, "a"), rec("fp-2", key.Disabled, t0.Add(time.Hour), "a")},
			alias: "a", want: "fp-1",
		},
		{
			name:  "newer expired skipped",
			recs:  []key.Record{rec("fp-1", key.Active, t0, "expiring"), expired},
			alias: "expiring", want: "fp-1",
		},
		{
			name:  "same created_at: higher version",
			recs:  []key.Record{olderVersion, newerVersion},
			alias: "tie", want: "fp-v2",
		},
		{
			name:  "same created_at and version: lowest fingerprint",
			recs:  []key.Record{rec("fp-b", key.Active, t0, "a"), rec("fp-a", key.Active, t0, "a"), rec("fp-c", key.Active, t0, "a")},
			alias: "a", want: "fp-a",
		},
		{
			name:  "key with several aliases",
			recs:  []key.Record{rec("fp-1", key.Active, t0, "a", "b"), rec("fp-2", key.Active, t0.Add(time.Hour), "a")},
			alias: "b", want: "fp-1",
		},
		{
			name:  "only decrypt-only",
			recs:  []key.Record{rec("fp-1", key.DecryptOnly, t0, "a")},
			alias: "a", wantErr: ErrNoPrimary,
		},
		{
			name:  "only disabled",
			recs:  []key.Record{rec("fp-1", key.Disabled, t0, "a")},
			alias: "a", wantErr: ErrNoPrimary,
		},
		{
			name:  "only expired",
			recs:  []key.Record{expired},
			alias: "expiring", wantErr: ErrNoPrimary,
		},
		{
			name:  "unknown alias",
			recs:  []key.Record{rec("fp-1", key.Active, t0, "a")},
			alias: "b", wantErr: ErrUnknownKey,
		},
		{
			name:  "fingerprint is not an alias",
			recs:  []key.Record{rec("fp-1", key.Active, t0, "a")},
			alias: "fp-1", wantErr: ErrUnknownKey,
		},
		{
			name:  "empty ring",
			alias: "a", wantErr: ErrUnknownKey,
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			r := New(WithClock(func() time.Time { return t0.Add(90 * time.Minute) }))
			mustReplace(t, r, tc.recs...)
			k, err := r.Primary(tc.alias)
			if tc.wantErr != nil {
				if !errors.Is(err, tc.wantErr) || k != nil {
					t.Fatalf("Primary(%q) = %v, %v; want nil, %v", tc.alias, k, err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("Primary(%q) err = %v, want nil", tc.alias, err)
			}
			if k.Fingerprint() != tc.want {
				t.Errorf("Primary(%q) = %s, want %s", tc.alias, k.Fingerprint(), tc.want)
			}
			if !k.Primary() {
				t.Errorf("Primary(%q).Primary() = false, want true", tc.alias)
			}
		})
	}
}

// TestPrimaryFollowsClock: a key that expires after the snapshot was built
// stops being primary without a reload.
func TestPrimaryFollowsClock(t *testing.T) {
	t.Parallel()
	clk := newClock(t0)
	r := New(WithClock(clk.now))
	newest := rec("fp-new", key.Active, t0.Add(time.Hour), "a")
	newest.NotAfter = t0.Add(2 * time.Hour)
	mustReplace(t, r, rec("fp-old", key.Active, t0, "a"), newest)
	if k, err := r.Primary("a"); err != nil || k.Fingerprint() != "fp-new" {
		t.Fatalf("before not_after, Primary(a) = %v, %v; want fp-new", k, err)
	}
	clk.set(t0.Add(2 * time.Hour))
	if k, err := r.Primary("a"); err != nil || k.Fingerprint() != "fp-old" {
		t.Errorf("at not_after, Primary(a) = %v, %v; want fp-old", k, err)
	}
}

// TestKeyPrimaryFollowsClock: Key.Primary (what ListKeys and Resolve report
// as KeyInfo.primary) agrees with Ring.Primary at every moment, not only at
// load time: once the newest key passes not_after, it is no longer flagged
// primary and the older key is, without a reload. Keys held from before the
// clock moved answer for the present too.
func TestKeyPrimaryFollowsClock(t *testing.T) {
	t.Parallel()
	clk := newClock(t0)
	r := New(WithClock(clk.now))
	newest := rec("fp-new", key.Active, t0.Add(time.Hour), "a")
	newest.NotAfter = t0.Add(2 * time.Hour)
	mustReplace(t, r, rec("fp-old", key.Active, t0, "a"), newest, rec("fp-retired", key.DecryptOnly, t0.Add(3*time.Hour), "a"))
	held, err := r.Lookup("fp-new")
	if err != nil {
		t.Fatal(err)
	}
	for _, step := range []struct {
		at   time.Time
		want map[string]bool
	}{
		{t0.Add(90 * time.Minute), map[string]bool{"fp-new": true, "fp-old": false, "fp-retired": false}},
		{t0.Add(2 * time.Hour), map[string]bool{"fp-new": false, "fp-old": true, "fp-retired": false}},
	} {
		clk.set(step.at)
		for _, k := range r.Keys() {
			if got := k.Primary(); got != step.want[k.Fingerprint()] {
				t.Errorf("at %v, %s.Primary() = %v, want %v", step.at.Sub(t0), k.Fingerprint(), got, step.want[k.Fingerprint()])
			}
		}
		if got := held.Primary(); got != step.want["fp-new"] {
			t.Errorf("at %v, fp-new (looked up earlier).Primary() = %v, want %v", step.at.Sub(t0), got, step.want["fp-new"])
		}
		p, err := r.Primary("a")
		if err != nil || !p.Primary() {
			t.Errorf("at %v, Primary(a) = %v, %v; want a key reporting Primary() = true", step.at.Sub(t0), p, err)
		}
	}
}

// TestDerivationReuse: Replace carries a derived cipher over to the next
// snapshot when the material is unchanged (whatever the metadata), and
// derives again when anything PBKDF2 or the cipher depends on changed.
func TestDerivationReuse(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name      string
		mutate    func(*key.Record)
		wantReuse bool
	}{
		{"unchanged", func(*key.Record) {}, true},
		{"metadata changed", func(r *key.Record) {
			r.State, r.Version, r.Aliases, r.NotAfter = key.DecryptOnly, 7, []string{"other"}, t0.AddDate(1, 0, 0)
		}, true},
		{"counter 64 made explicit", func(r *key.Record) { r.CounterBits = key.CounterBits64 }, true},
		{"secret changed", func(r *key.Record) { r.Secret = secret.FromString("test-only-rotated") }, false},
		{"salt changed", func(r *key.Record) { r.KDF.Salt += "-2" }, false},
		{"iterations changed", func(r *key.Record) { r.KDF.Iterations++ }, false},
		{"counter width changed", func(r *key.Record) { r.CounterBits = key.CounterBits128 }, false},
		{"algorithm changed", func(r *key.Record) { r.Algorithm = key.AES256GCM }, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			r := New()
			base := rec("fp-a", key.Active, t0, "default")
			mustReplace(t, r, base, rec("fp-other", key.Active, t0))
			k1, _ := r.Lookup("fp-a")
			c1, err := k1.Cipher()
			if err != nil {
				t.Fatal(err)
			}

			next := base.Clone()
			tc.mutate(&next)
			st, fresh := mustReplace(t, r, next, rec("fp-other", key.Active, t0))
			k2, _ := r.Lookup("fp-a")
			c2, err := k2.Cipher()
			if err != nil {
				t.Fatal(err)
			}
			if k2 == k1 {
				t.Fatalf("Replace kept the old *Key; want a new Key with the new record")
			}
			if got := k2.Record(); got.Version != next.Version || got.State != next.State {
				t.Errorf("after Replace, Record() = version %d state %s; want the new record's %d %s", got.Version, got.State, next.Version, next.State)
			}
			wantReused, wantAdded := 2, 0
			if !tc.wantReuse {
				wantReused, wantAdded = 1, 1
			}
			if st.Reused != wantReused || st.Added != wantAdded || len(fresh) != wantAdded {
				t.Errorf("Replace(%s) Reused, Added, len(fresh) = %d, %d, %d; want %d, %d, %d",
					tc.name, st.Reused, st.Added, len(fresh), wantReused, wantAdded, wantAdded)
			}
			if same := c1 == c2; same != tc.wantReuse {
				t.Errorf("Replace(%s): same Cipher() = %v, want %v", tc.name, same, tc.wantReuse)
			}
			if !tc.wantReuse && (len(fresh) != 1 || fresh[0] != k2) {
				t.Errorf("Replace(%s) fresh = %q, want [fp-a]", tc.name, fingerprints(fresh))
			}
		})
	}
}

// TestDerivationReuseBeforeUse: a derivation carried over before anyone used
// it runs once, for both snapshots.
func TestDerivationReuseBeforeUse(t *testing.T) {
	t.Parallel()
	r := New()
	mustReplace(t, r, rec("fp-a", key.Active, t0))
	k1, _ := r.Lookup("fp-a")
	st, _ := mustReplace(t, r, rec("fp-a", key.DecryptOnly, t0))
	k2, _ := r.Lookup("fp-a")
	if st.Reused != 1 {
		t.Fatalf("Replace Reused = %d, want 1", st.Reused)
	}
	c2, _ := k2.Cipher()
	c1, _ := k1.Cipher()
	if c1 == nil || c1 != c2 {
		t.Errorf("old and new Key of unchanged material have different ciphers")
	}
}

func TestCipherConcurrentFirstUse(t *testing.T) {
	t.Parallel()
	r := New()
	mustReplace(t, r, rec("fp-a", key.Active, t0))
	k, _ := r.Lookup("fp-a")
	var wg sync.WaitGroup
	ciphers := make([]any, 16)
	for i := range ciphers {
		wg.Go(func() {
			c, err := k.Cipher()
			if err != nil {
				t.Error(err)
			}
			ciphers[i] = c
		})
	}
	wg.Wait()
	for i, c := range ciphers {
		if c != ciphers[0] {
			t.Errorf("concurrent Cipher() call %d got a different cipher; want one derivation", i)
		}
	}
}

// TestConcurrentReaders runs lookups against Replace; run with -race. A key
// present in every snapshot must never be missing.
func TestConcurrentReaders(t *testing.T) {
	t.Parallel()
	r := New()
	setA := []key.Record{rec("fp-stable", key.Active, t0, "default"), rec("fp-a", key.Active, t0.Add(time.Hour), "default")}
	setB := []key.Record{rec("fp-stable", key.Active, t0, "default"), rec("fp-b", key.DecryptOnly, t0)}
	mustReplace(t, r, setA...)

	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	var lookups atomic.Int64
	for range 4 {
		wg.Go(func() {
			for ctx.Err() == nil {
				k, err := r.Lookup("fp-stable")
				if err != nil {
					t.Errorf("Lookup(fp-stable) during Replace err = %v, want nil", err)
					return
				}
				if _, err := k.Cipher(); err != nil {
					t.Errorf("Cipher() err = %v", err)
					return
				}
				if p, err := r.Primary("default"); err != nil {
					t.Errorf("Primary(default) during Replace err = %v, want nil", err)
					return
				} else if fp := p.Fingerprint(); fp != "fp-a" && fp != "fp-stable" {
					t.Errorf("Primary(default) = %s, want fp-a or fp-stable", fp)
				}
				if n := len(r.Keys()); n != 2 {
					t.Errorf("len(Keys()) = %d, want 2", n)
					return
				}
				lookups.Add(1)
			}
		})
	}
	// Replace until the readers have overlapped plenty of swaps (readers
	// stop early on an error, hence the deadline).
	deadline := time.Now().Add(5 * time.Second)
	replaces := 0
	for ; lookups.Load() < 2000 && time.Now().Before(deadline); replaces++ {
		if replaces%2 == 0 {
			mustReplace(t, r, setB...)
		} else {
			mustReplace(t, r, setA...)
		}
	}
	cancel()
	wg.Wait()
	if n := lookups.Load(); n < 2000 || replaces < 2 {
		t.Errorf("%d lookups during %d replaces, want at least 2000 during 2; the test proved little", n, replaces)
	}
}

// derived reports whether k's derivation has run (white box: only after
// Warm or Cipher returned, which orders the write before this read).
func derived(k *Key) bool { return k.d.cipher != nil || k.d.err != nil }

func TestWarm(t *testing.T) {
	t.Parallel()
	for _, workers := range []int{0, 1, 3, 64} {
		t.Run(fmt.Sprint("workers=", workers), func(t *testing.T) {
			t.Parallel()
			var recs []key.Record
			for i := range 10 {
				recs = append(recs, rec(fmt.Sprintf("fp-%02d", i), key.Active, t0))
			}
			r := New()
			_, fresh := mustReplace(t, r, recs...)
			if slices.ContainsFunc(fresh, derived) {
				t.Fatalf("Replace derived keys eagerly; want lazy derivation")
			}
			if failed := Warm(context.Background(), fresh, workers); failed != 0 {
				t.Errorf("Warm(%d workers) failed = %d, want 0", workers, failed)
			}
			for _, k := range r.Keys() {
				if !derived(k) || k.d.cipher == nil {
					t.Errorf("after Warm, key %s is not derived", k.Fingerprint())
				}
			}
		})
	}
}

func TestWarmCountsFailures(t *testing.T) {
	t.Parallel()
	good := rec("fp-good", key.Active, t0)
	bad := rec("fp-bad", key.Active, t0)
	bad.KDF.Iterations = 0 // only reachable by building a Key by hand: Replace validates
	keys := []*Key{{rec: good, d: &derivation{rec: good}}, {rec: bad, d: &derivation{rec: bad}}}
	if failed := Warm(context.Background(), keys, 2); failed != 1 {
		t.Errorf("Warm(one underivable key) failed = %d, want 1", failed)
	}
	if _, err := keys[1].Cipher(); err == nil {
		t.Errorf("Cipher() of the underivable key err = nil, want the derivation error")
	}
}

func TestWarmCanceled(t *testing.T) {
	t.Parallel()
	r := New()
	_, fresh := mustReplace(t, r, rec("fp-a", key.Active, t0), rec("fp-b", key.Active, t0))
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if failed := Warm(ctx, fresh, 1); failed != 0 {
		t.Errorf("Warm(canceled) failed = %d, want 0", failed)
	}
	if slices.ContainsFunc(fresh, derived) {
		t.Errorf("Warm(canceled) derived keys; want none")
	}
	if failed := Warm(context.Background(), nil, 4); failed != 0 {
		t.Errorf("Warm(no keys) failed = %d, want 0", failed)
	}
}

// TestKeyStringHidesMaterial: a Key printed with %v or %+v (a test failure,
// a careless log line) names its fingerprint and nothing of its secret.
func TestKeyStringHidesMaterial(t *testing.T) {
	t.Parallel()
	r := New()
	mustReplace(t, r, rec("fp-print", key.Active, t0, "a"))
	k, err := r.Lookup("fp-print")
	if err != nil {
		t.Fatal(err)
	}
	for _, format := range []string{"%v", "%+v", "%s"} {
		got := fmt.Sprintf(format, k)
		if got != "key fp-print" {
			t.Errorf("Sprintf(%q, key) = %q, want %q", format, got, "key fp-print")
		}
	}
}
