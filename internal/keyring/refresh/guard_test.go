package refresh_test

import (
	"context"
	"errors"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/alecrypt/alecrypt/internal/key"
	"github.com/alecrypt/alecrypt/internal/keyring"
	"github.com/alecrypt/alecrypt/internal/keyring/refresh"
	"github.com/alecrypt/alecrypt/internal/keystore"
)

var t0 = time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)

// clock is a settable time source for the removal guard.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) set(t time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = t
}

func recs(fps ...string) []key.Record {
	out := make([]key.Record, len(fps))
	for i, fp := range fps {
		out[i] = rec(fp)
	}
	return out
}

func served(ring *keyring.Ring) []string {
	var fps []string
	for _, k := range ring.Keys() {
		fps = append(fps, k.Fingerprint())
	}
	return fps
}

// TestRefresherRemovalGuard: a load that would remove more than the share of
// the served keys (or all of them: Vault restarted empty) is held, serving the
// keys on, until every removed key has been missing from loads in a row for
// the confirmation delay; a removal within the share, or keys coming back,
// apply at once. Additions are never held.
func TestRefresherRemovalGuard(t *testing.T) {
	t.Parallel()
	type step struct {
		at       time.Duration // after t0
		store    []string
		want     []string // served after the reload
		wantHeld int
	}
	for _, tc := range []struct {
		name         string
		share        float64
		confirmAfter time.Duration
		seed         []string
		steps        []step
	}{
		{
			name: "store emptied: held, then applied once confirmed", share: 0.5, confirmAfter: time.Minute,
			seed: []string{"a", "b", "c", "d"},
			steps: []step{
				{0, nil, []string{"a", "b", "c", "d"}, 4},
				{30 * time.Second, nil, []string{"a", "b", "c", "d"}, 4},
				{59 * time.Second, nil, []string{"a", "b", "c", "d"}, 4},
				{60 * time.Second, nil, nil, 0},
			},
		},
		{
			name: "single key removed is all keys", share: 0.5, confirmAfter: time.Minute,
			seed: []string{"a"},
			steps: []step{
				{0, nil, []string{"a"}, 1},
				{time.Minute, nil, nil, 0},
			},
		},
		{
			name: "removal within the share applies at once", share: 0.5, confirmAfter: time.Minute,
			seed:  []string{"a", "b", "c", "d"},
			steps: []step{{0, []string{"a", "b"}, []string{"a", "b"}, 0}},
		},
		{
			name: "removal over the share is held", share: 0.5, confirmAfter: time.Minute,
			seed: []string{"a", "b", "c", "d"},
			steps: []step{
				{0, []string{"a"}, []string{"a", "b", "c", "d"}, 3},
				{2 * time.Minute, []string{"a"}, []string{"a"}, 0},
			},
		},
		{
			name: "keys coming back end the hold; a new emptying starts over", share: 0.5, confirmAfter: time.Minute,
			seed: []string{"a", "b"},
			steps: []step{
				{0, nil, []string{"a", "b"}, 2},
				{30 * time.Second, []string{"a", "b"}, []string{"a", "b"}, 0},
				{90 * time.Second, nil, []string{"a", "b"}, 2},
				{149 * time.Second, nil, []string{"a", "b"}, 2},
				{150 * time.Second, nil, nil, 0},
			},
		},
		{
			name: "additions are served while removals are held", share: 0.5, confirmAfter: time.Minute,
			seed: []string{"a", "b"},
			steps: []step{
				{0, []string{"x"}, []string{"a", "b", "x"}, 2},
				{time.Minute, []string{"x", "y"}, []string{"x", "y"}, 0},
			},
		},
		{
			name: "a key missed later waits its own delay", share: 0.25, confirmAfter: time.Minute,
			seed: []string{"a", "b", "c", "d"},
			steps: []step{
				{0, []string{"c", "d"}, []string{"a", "b", "c", "d"}, 2},
				{40 * time.Second, []string{"d"}, []string{"a", "b", "c", "d"}, 3},
				{60 * time.Second, []string{"d"}, []string{"c", "d"}, 1},
				{99 * time.Second, []string{"d"}, []string{"c", "d"}, 1},
				{100 * time.Second, []string{"d"}, []string{"d"}, 0},
			},
		},
		{
			name: "no delay still needs two loads in a row", share: 0.5, confirmAfter: 0,
			seed: []string{"a", "b"},
			steps: []step{
				{0, nil, []string{"a", "b"}, 2},
				{0, nil, nil, 0},
			},
		},
		{
			name: "share 0 holds any removal", share: 0, confirmAfter: time.Minute,
			seed: []string{"a", "b", "c", "d"},
			steps: []step{
				{0, []string{"a", "b", "c"}, []string{"a", "b", "c", "d"}, 1},
				{time.Minute, []string{"a", "b", "c"}, []string{"a", "b", "c"}, 0},
			},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			clk := &clock{t: t0}
			store := &fakeStore{}
			ring := keyring.New()
			logs := &logBuffer{}
			r := refresh.New(store, ring, slog.New(slog.NewJSONHandler(logs, nil)), 0,
				refresh.WithClock(clk.now), refresh.WithRemovalGuard(tc.share, tc.confirmAfter))
			store.set("seed", nil, recs(tc.seed...)...)
			if err := r.Reload(t.Context()); err != nil {
				t.Fatal(err)
			}
			for i, st := range tc.steps {
				clk.set(t0.Add(st.at))
				// The revision follows the content, as a store's does: a
				// held removal must be re-examined although it repeats.
				store.set("rev:"+strings.Join(st.store, ","), nil, recs(st.store...)...)
				if err := r.Reload(t.Context()); err != nil {
					t.Fatalf("step %d: Reload err = %v, want nil (a held removal is not a failure)", i, err)
				}
				if got := served(ring); !slices.Equal(got, st.want) {
					t.Fatalf("step %d (t0+%v, store %q): served %q, want %q", i, st.at, st.store, got, st.want)
				}
				held, since := r.HeldRemoval()
				if held != st.wantHeld {
					t.Errorf("step %d: HeldRemoval = %d, want %d", i, held, st.wantHeld)
				}
				if (held > 0) == since.IsZero() {
					t.Errorf("step %d: HeldRemoval since = %v with %d held", i, since, held)
				}
				hasProblem := slices.ContainsFunc(r.Problems(), func(p string) bool { return strings.Contains(p, "removal of") })
				if hasProblem != (held > 0) {
					t.Errorf("step %d: Problems = %q, want a held removal reported: %v", i, r.Problems(), held > 0)
				}
				if _, err := r.Status(); err != nil {
					t.Errorf("step %d: Status err = %v, want nil", i, err)
				}
			}
			if tc.steps[0].wantHeld > 0 && !strings.Contains(logs.String(), `"level":"WARN","msg":"keystore: reload would remove too many keys`) {
				t.Errorf("no WARN log for the held removal:\n%s", logs)
			}
		})
	}
}

// TestRefresherHeldRemovalBypassesRevision: while a removal is held, a store
// whose cheap revision has not moved is loaded again anyway; otherwise the
// removal could never be confirmed.
func TestRefresherHeldRemovalBypassesRevision(t *testing.T) {
	t.Parallel()
	clk := &clock{t: t0}
	store := &revisedStore{fakeStore: &fakeStore{}, tok: "stat-1"}
	store.set("content-1", nil, rec("a"))
	ring := keyring.New()
	r := refresh.New(store, ring, slog.New(slog.DiscardHandler), 0, refresh.WithClock(clk.now))
	if err := r.Reload(t.Context()); err != nil {
		t.Fatal(err)
	}
	store.set("content-2", nil)
	store.setToken("stat-2")
	if err := r.Reload(t.Context()); err != nil {
		t.Fatal(err)
	}
	if got := served(ring); !slices.Equal(got, []string{"a"}) {
		t.Fatalf("after the store emptied, served %q, want [a] held", got)
	}
	clk.set(t0.Add(refresh.DefaultRemovalConfirmAfter))
	if err := r.Reload(t.Context()); err != nil {
		t.Fatal(err)
	}
	if got := served(ring); len(got) != 0 {
		t.Errorf("after the confirmation delay with an unchanged revision, served %q, want none", got)
	}
	if n := store.loadCount(); n != 3 {
		t.Errorf("Load called %d times, want 3", n)
	}
}

// TestRefresherSkipsInvalidRecords: a load with invalid entries serves every
// valid record, keeps the last good record of a served key whose entry turned
// invalid, counts the invalid entries and logs each once, quoted, without key
// material.
func TestRefresherSkipsInvalidRecords(t *testing.T) {
	t.Parallel()
	store, ring, r, logs := newRefresher(t, 0)
	store.set("r1", nil, rec("fp-a"), rec("fp-b"))
	if err := r.Reload(t.Context()); err != nil {
		t.Fatal(err)
	}
	goodB := lookup(t, ring, "fp-b")
	badName := keystore.InvalidRecord{Name: "z/../victim", Err: errors.New("name is not a valid fingerprint")}
	damaged := keystore.InvalidRecord{Name: "fp-b", Fingerprint: "fp-b", Err: key.ErrInvalidRecord}
	store.set("r2", nil, rec("fp-a"), rec("fp-c"))
	store.setInvalid(badName, damaged)
	for range 2 {
		if err := r.Reload(t.Context()); err != nil {
			t.Fatalf("Reload with invalid entries err = %v, want nil", err)
		}
	}
	if got := served(ring); !slices.Equal(got, []string{"fp-a", "fp-b", "fp-c"}) {
		t.Fatalf("served %q, want fp-a, fp-c and the last good fp-b", got)
	}
	if lookup(t, ring, "fp-b").Record().Version != goodB.Record().Version {
		t.Errorf("fp-b is not its last good record")
	}
	if n := r.InvalidRecords(); n != 2 {
		t.Errorf("InvalidRecords = %d, want 2", n)
	}
	if !slices.ContainsFunc(r.Problems(), func(p string) bool { return strings.Contains(p, "2 invalid records") }) {
		t.Errorf("Problems = %q, want the invalid records reported", r.Problems())
	}
	if n := strings.Count(logs.String(), `"name":"z/../victim"`); n != 1 {
		t.Errorf("the invalid entry was logged %d times over two identical loads, want once:\n%s", n, logs)
	}
	if strings.Contains(logs.String(), canarySecret) {
		t.Errorf("logs contain key material:\n%s", logs)
	}
	store.set("r3", nil, rec("fp-a"), rec("fp-c"))
	if err := r.Reload(t.Context()); err != nil {
		t.Fatal(err)
	}
	if n := r.InvalidRecords(); n != 0 {
		t.Errorf("after the invalid entries went, InvalidRecords = %d, want 0", n)
	}
}

// TestRefresherTriggerBypassesRevision: a triggered reload (SIGHUP) loads
// the store even when its cheap revision has not moved: a stat can miss a
// change (same size, mtime restored).
func TestRefresherTriggerBypassesRevision(t *testing.T) {
	t.Parallel()
	store := &revisedStore{fakeStore: &fakeStore{}, tok: "stat-1"}
	store.set("content-1", nil, rec("fp-1"))
	ring := keyring.New()
	r := refresh.New(store, ring, slog.New(slog.DiscardHandler), 0)
	if err := r.Reload(t.Context()); err != nil {
		t.Fatal(err)
	}
	store.set("content-2", nil, rec("fp-1"), rec("fp-2")) // the stat does not move
	if err := r.Reload(t.Context()); err != nil {
		t.Fatal(err)
	}
	if _, err := ring.Lookup("fp-2"); err == nil {
		t.Fatal("a plain Reload loaded although the revision did not move; the test cannot tell a trigger apart")
	}
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	go r.Run(ctx)
	r.Trigger()
	waitFor(t, "the triggered reload to serve fp-2", func() bool { _, err := ring.Lookup("fp-2"); return err == nil })
}
