package refresh_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/alecrypt/alecrypt/internal/key"
	"github.com/alecrypt/alecrypt/internal/key/keytest"
	"github.com/alecrypt/alecrypt/internal/keyring"
	"github.com/alecrypt/alecrypt/internal/keyring/refresh"
	"github.com/alecrypt/alecrypt/internal/keystore"
)

// canarySecret must never reach a log line.
const canarySecret = keytest.Canary

func rec(fp string) key.Record { return keytest.Record(fp, keytest.Source(key.SourcePortal)) }

// fakeStore returns whatever it was last set to.
type fakeStore struct {
	mu    sync.Mutex
	snap  keystore.Snapshot
	err   error
	loads int
}

func (f *fakeStore) Load(context.Context) (keystore.Snapshot, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.loads++
	if f.err != nil {
		return keystore.Snapshot{}, f.err
	}
	recs := make([]key.Record, len(f.snap.Records))
	for i, r := range f.snap.Records {
		recs[i] = r.Clone()
	}
	return keystore.Snapshot{Records: recs, Invalid: slices.Clone(f.snap.Invalid), Revision: f.snap.Revision}, nil
}

// setInvalid adds invalid entries to what the store returns.
func (f *fakeStore) setInvalid(inv ...keystore.InvalidRecord) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.snap.Invalid = inv
}

func (f *fakeStore) set(revision string, err error, recs ...key.Record) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.snap, f.err = keystore.Snapshot{Records: recs, Revision: revision}, err
}

func (f *fakeStore) loadCount() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.loads
}

// logBuffer collects log output; the refresher logs from its own goroutines.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *logBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *logBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

func newRefresher(t *testing.T, interval time.Duration) (*fakeStore, *keyring.Ring, *refresh.Refresher, *logBuffer) {
	t.Helper()
	store := &fakeStore{}
	ring := keyring.New()
	logs := &logBuffer{}
	log := slog.New(slog.NewJSONHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	return store, ring, refresh.New(store, ring, log, interval), logs
}

func lookup(t *testing.T, ring *keyring.Ring, fp string) *keyring.Key {
	t.Helper()
	k, err := ring.Lookup(fp)
	if err != nil {
		t.Fatalf("Lookup(%s) err = %v, want nil", fp, err)
	}
	return k
}

// TestRefresherKeepsLastGoodKeys: a load that fails, or returns records the
// ring refuses, changes nothing being served; Status reports the error until
// a good load recovers.
func TestRefresherKeepsLastGoodKeys(t *testing.T) {
	t.Parallel()
	invalid := rec("fp-invalid")
	invalid.KDF.Iterations = 1
	errUnreachable := errors.New("vault: connection refused")
	for _, tc := range []struct {
		name string
		set  func(*fakeStore)
		want error
	}{
		{"load fails", func(s *fakeStore) { s.set("", errUnreachable) }, errUnreachable},
		{"store missing", func(s *fakeStore) { s.set("", fmt.Errorf("keystore x: %w", keystore.ErrNotFound)) }, keystore.ErrNotFound},
		{"invalid record", func(s *fakeStore) { s.set("r-bad", nil, rec("fp-new"), invalid) }, key.ErrInvalidRecord},
		{"duplicate fingerprint", func(s *fakeStore) { s.set("r-bad", nil, rec("fp-new"), rec("fp-new")) }, keyring.ErrDuplicate},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			store, ring, r, logs := newRefresher(t, 0)
			store.set("r1", nil, rec("fp-a"), rec("fp-b"))
			if err := r.Reload(t.Context()); err != nil {
				t.Fatalf("Reload(good) err = %v, want nil", err)
			}
			goodA, goodB := lookup(t, ring, "fp-a"), lookup(t, ring, "fp-b")
			okAt, err := r.Status()
			if err != nil || okAt.IsZero() {
				t.Fatalf("Status after a good load = %v, %v; want a time, nil", okAt, err)
			}
			keysBefore := ring.Keys()

			tc.set(store)
			if err := r.Reload(t.Context()); !errors.Is(err, tc.want) {
				t.Fatalf("Reload(%s) err = %v, want %v", tc.name, err, tc.want)
			}
			if lookup(t, ring, "fp-a") != goodA || lookup(t, ring, "fp-b") != goodB || len(ring.Keys()) != 2 {
				t.Errorf("after Reload(%s), the ring's keys changed; want the last good keys", tc.name)
			}
			if _, err := ring.Lookup("fp-new"); !errors.Is(err, keyring.ErrUnknownKey) {
				t.Errorf("after Reload(%s), Lookup(fp-new) err = %v, want ErrUnknownKey", tc.name, err)
			}
			if got := ring.Keys(); &got[0] != &keysBefore[0] {
				t.Errorf("after Reload(%s), the ring holds a new snapshot; want the last good one", tc.name)
			}
			if gotOK, gotErr := r.Status(); !errors.Is(gotErr, tc.want) || !gotOK.Equal(okAt) {
				t.Errorf("Status after Reload(%s) = %v, %v; want %v, %v", tc.name, gotOK, gotErr, okAt, tc.want)
			}
			// A second failure keeps reporting, and still changes nothing.
			if err := r.Reload(t.Context()); !errors.Is(err, tc.want) || lookup(t, ring, "fp-a") != goodA {
				t.Errorf("second Reload(%s) err = %v, or keys changed; want %v and the last good keys", tc.name, err, tc.want)
			}

			store.set("r2", nil, rec("fp-a"), rec("fp-c"))
			if err := r.Reload(t.Context()); err != nil {
				t.Fatalf("Reload(recovered) err = %v, want nil", err)
			}
			if _, err := ring.Lookup("fp-c"); err != nil {
				t.Errorf("after recovery, Lookup(fp-c) err = %v, want nil", err)
			}
			if _, err := ring.Lookup("fp-b"); !errors.Is(err, keyring.ErrUnknownKey) {
				t.Errorf("after recovery, Lookup(fp-b) err = %v, want ErrUnknownKey", err)
			}
			if gotOK, gotErr := r.Status(); gotErr != nil || gotOK.Before(okAt) {
				t.Errorf("Status after recovery = %v, %v; want a newer time, nil", gotOK, gotErr)
			}
			if strings.Contains(logs.String(), canarySecret) {
				t.Errorf("refresher logs contain key material:\n%s", logs)
			}
			if !strings.Contains(logs.String(), "serving the last good keys") {
				t.Errorf("refresher did not log the failed reload:\n%s", logs)
			}
		})
	}
}

// TestRefresherRecoversToSameRevision: after a failed load, the store coming
// back with the revision the ring already serves clears the error without a
// reload.
func TestRefresherRecoversToSameRevision(t *testing.T) {
	t.Parallel()
	store, ring, r, _ := newRefresher(t, 0)
	store.set("r1", nil, rec("fp-a"))
	if err := r.Reload(t.Context()); err != nil {
		t.Fatal(err)
	}
	before := lookup(t, ring, "fp-a")
	store.set("", errors.New("unreachable"))
	_ = r.Reload(t.Context())
	store.set("r1", nil, rec("fp-a"))
	if err := r.Reload(t.Context()); err != nil {
		t.Fatalf("Reload(same revision again) err = %v, want nil", err)
	}
	if _, err := r.Status(); err != nil {
		t.Errorf("Status after the store came back err = %v, want nil", err)
	}
	if lookup(t, ring, "fp-a") != before {
		t.Errorf("Reload of an unchanged revision replaced the keys; want them kept")
	}
}

func TestRefresherRevision(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name        string
		first, next string
		wantReplace bool
	}{
		{"same revision skips", "r1", "r1", false},
		{"new revision reloads", "r1", "r2", true},
		{"no revision always reloads", "", "", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			store, ring, r, _ := newRefresher(t, 0)
			store.set(tc.first, nil, rec("fp-a"))
			if err := r.Reload(t.Context()); err != nil {
				t.Fatal(err)
			}
			before := lookup(t, ring, "fp-a")
			okBefore, _ := r.Status()
			store.set(tc.next, nil, rec("fp-a"))
			if err := r.Reload(t.Context()); err != nil {
				t.Fatal(err)
			}
			if replaced := lookup(t, ring, "fp-a") != before; replaced != tc.wantReplace {
				t.Errorf("Reload(%q after %q) replaced keys = %v, want %v", tc.next, tc.first, replaced, tc.wantReplace)
			}
			if okAfter, err := r.Status(); err != nil || okAfter.Before(okBefore) {
				t.Errorf("Status after Reload = %v, %v; want a time not before %v, nil", okAfter, err, okBefore)
			}
			if n := store.loadCount(); n != 2 {
				t.Errorf("store loaded %d times, want 2 (the revision check needs a load)", n)
			}
		})
	}
}

// TestRefresherDerivesInBackground: new keys get derived without anyone
// asking for them.
func TestRefresherDerivesInBackground(t *testing.T) {
	t.Parallel()
	store, ring, r, logs := newRefresher(t, 0)
	store.set("r1", nil, rec("fp-a"), rec("fp-b"))
	if err := r.Reload(t.Context()); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the background derivation", func() bool { return strings.Contains(logs.String(), "keys derived") })
	for _, k := range ring.Keys() {
		if _, err := k.Cipher(); err != nil {
			t.Errorf("Cipher(%s) err = %v, want nil", k.Fingerprint(), err)
		}
	}
}

func TestRefresherRun(t *testing.T) {
	t.Parallel()
	t.Run("trigger", func(t *testing.T) {
		t.Parallel()
		store, ring, r, _ := newRefresher(t, 0)
		store.set("r1", nil, rec("fp-a"))
		ctx, cancel := context.WithCancel(t.Context())
		done := make(chan struct{})
		go func() { r.Run(ctx); close(done) }()
		r.Trigger()
		r.Trigger() // coalesces with the pending one, never blocks
		waitFor(t, "a triggered reload", func() bool { _, err := ring.Lookup("fp-a"); return err == nil })
		store.set("r2", nil, rec("fp-b"))
		r.Trigger()
		waitFor(t, "a second triggered reload", func() bool { _, err := ring.Lookup("fp-b"); return err == nil })
		cancel()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			t.Fatal("Run did not return after its context ended")
		}
	})
	t.Run("interval", func(t *testing.T) {
		t.Parallel()
		store, ring, r, _ := newRefresher(t, 5*time.Millisecond)
		store.set("r1", nil, rec("fp-a"))
		ctx, cancel := context.WithCancel(t.Context())
		defer cancel()
		go r.Run(ctx)
		waitFor(t, "a periodic reload", func() bool { _, err := ring.Lookup("fp-a"); return err == nil })
		waitFor(t, "more periodic loads", func() bool { return store.loadCount() >= 3 })
	})
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

// locatedStore is a fakeStore that says where it keeps its keys.
type locatedStore struct{ fakeStore }

func (*locatedStore) Location() string { return "secret/alecrypt/keys" }

// TestEmptyStoreSaysSoLoudly: a store with no key at all (a new Vault, a
// wrong prefix) loads fine but is reported once with its location, in the
// log at WARN and in Problems (/readyz) for as long as it stays empty.
func TestEmptyStoreSaysSoLoudly(t *testing.T) {
	var logs bytes.Buffer
	store := &locatedStore{}
	r := refresh.New(store, keyring.New(), slog.New(slog.NewJSONHandler(&logs, nil)), 0)
	ctx := context.Background()
	for range 2 {
		if err := r.ForceReload(ctx); err != nil {
			t.Fatalf("Reload(empty store) = %v, want nil: an empty store is not an error", err)
		}
	}
	const warn = `"level":"WARN","msg":"keystore is empty: no keys to serve; every call fails until keys are added there","path":"secret/alecrypt/keys"`
	if n := strings.Count(logs.String(), warn); n != 1 {
		t.Fatalf("WARN naming the path logged %d times over two loads, want once:\n%s", n, logs.String())
	}
	want := "keystore: no keys at secret/alecrypt/keys; every call fails until keys are added"
	if !slices.Contains(r.Problems(), want) {
		t.Fatalf("Problems = %q, want %q", r.Problems(), want)
	}
	store.mu.Lock()
	store.snap = keystore.Snapshot{Records: []key.Record{rec("fp-1")}}
	store.mu.Unlock()
	if err := r.ForceReload(ctx); err != nil {
		t.Fatal(err)
	}
	if p := r.Problems(); len(p) != 0 {
		t.Fatalf("Problems after a key arrived = %q, want none", p)
	}
}
