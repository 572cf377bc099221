package keysync_test

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/alecrypt/alecrypt/internal/key"
	"github.com/alecrypt/alecrypt/internal/key/keytest"
	"github.com/alecrypt/alecrypt/internal/keystore"
	"github.com/alecrypt/alecrypt/internal/keysync"
	"github.com/alecrypt/alecrypt/service/secret"
)

// canary is part of every test secret; no action, outcome or error may
// print it.
const canary = keytest.Canary

// rec is a Portal record as the Portal would list it: every field set.
func rec(fp string, mutate ...keytest.Option) key.Record {
	return keytest.Record(fp, append([]keytest.Option{
		keytest.Aliases("store-1"), keytest.CounterBits(key.CounterBits64), keytest.Version(3),
		keytest.CreatedAt(time.Date(2025, 1, 2, 3, 4, 5, 6, time.UTC)), keytest.Source(key.SourcePortal),
		func(r *key.Record) { r.NotAfter = time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC) },
	}, mutate...)...)
}

func stored(r key.Record, version int) keystore.Entry {
	return keystore.Entry{Record: r, Version: version}
}

var errBroken = fmt.Errorf("%w: bad data", keystore.ErrInvalidEntry)

func invalid(version int) keystore.Entry {
	return keystore.Entry{Version: version, Err: errBroken}
}

// want is an action reduced to what the table checks.
type want struct {
	kind keysync.Kind
	cas  int
}

func TestPlan(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name    string
		listed  []key.Record
		failed  []string
		current map[string]keystore.Entry
		want    map[string]want
		// check inspects the planned actions further.
		check func(t *testing.T, actions map[string]keysync.Action)
	}{
		{
			name: "empty", want: map[string]want{},
		},
		{
			name:   "new key is added without a version",
			listed: []key.Record{rec("a")},
			want:   map[string]want{"a": {keysync.Add, 0}},
			check: func(t *testing.T, as map[string]keysync.Action) {
				if !as["a"].Record.Equal(rec("a")) {
					t.Error("add does not write the Portal's record")
				}
			},
		},
		{
			name:    "changed secret is updated",
			listed:  []key.Record{rec("a", func(r *key.Record) { r.Secret = secret.FromString(canary + "-rotated") })},
			current: map[string]keystore.Entry{"a": stored(rec("a"), 7)},
			want:    map[string]want{"a": {keysync.Update, 7}},
		},
		{
			name:    "changed aliases are updated",
			listed:  []key.Record{rec("a", func(r *key.Record) { r.Aliases = []string{"store-1", "store-2"} })},
			current: map[string]keystore.Entry{"a": stored(rec("a"), 2)},
			want:    map[string]want{"a": {keysync.Update, 2}},
		},
		{
			name:    "changed version is updated",
			listed:  []key.Record{rec("a", func(r *key.Record) { r.Version = 4 })},
			current: map[string]keystore.Entry{"a": stored(rec("a"), 2)},
			want:    map[string]want{"a": {keysync.Update, 2}},
		},
		{
			name:    "changed not_after is updated",
			listed:  []key.Record{rec("a", func(r *key.Record) { r.NotAfter = time.Time{} })},
			current: map[string]keystore.Entry{"a": stored(rec("a"), 2)},
			want:    map[string]want{"a": {keysync.Update, 2}},
		},
		{
			name:    "changed kdf is updated",
			listed:  []key.Record{rec("a", func(r *key.Record) { r.KDF.Iterations = 2000 })},
			current: map[string]keystore.Entry{"a": stored(rec("a"), 2)},
			want:    map[string]want{"a": {keysync.Update, 2}},
		},
		{
			name:    "re-listed retired key becomes active again",
			listed:  []key.Record{rec("a")},
			current: map[string]keystore.Entry{"a": stored(rec("a", func(r *key.Record) { r.State, r.Version = key.DecryptOnly, 4 }), 5)},
			want:    map[string]want{"a": {keysync.Update, 5}},
		},
		{
			name: "unchanged key is left alone, whatever the time zone or alias list's nil-ness",
			listed: []key.Record{
				rec("a", func(r *key.Record) {
					r.CreatedAt = r.CreatedAt.In(time.FixedZone("X", 3600))
				}),
				rec("b", func(r *key.Record) { r.Aliases = nil }),
			},
			current: map[string]keystore.Entry{
				"a": stored(rec("a"), 9),
				"b": stored(rec("b", func(r *key.Record) { r.Aliases = []string{} }), 1),
			},
			want: map[string]want{"a": {keysync.Unchanged, 0}, "b": {keysync.Unchanged, 0}},
		},
		{
			name:    "unlisted active key is retired",
			current: map[string]keystore.Entry{"a": stored(rec("a"), 4)},
			want:    map[string]want{"a": {keysync.Retire, 4}},
			check: func(t *testing.T, as map[string]keysync.Action) {
				r := as["a"].Record
				if r.State != key.DecryptOnly || r.Version != 4 {
					t.Errorf("retired record state %s version %d, want decrypt-only version 4", r.State, r.Version)
				}
				if !r.Equal(rec("a", func(r *key.Record) { r.State, r.Version = key.DecryptOnly, 4 })) {
					t.Error("retire changed more than state and version")
				}
			},
		},
		{
			name: "unlisted retired or disabled key is left alone",
			current: map[string]keystore.Entry{
				"a": stored(rec("a", func(r *key.Record) { r.State = key.DecryptOnly }), 4),
				"b": stored(rec("b", func(r *key.Record) { r.State = key.Disabled }), 4),
			},
			want: map[string]want{"a": {keysync.Unchanged, 0}, "b": {keysync.Unchanged, 0}},
		},
		{
			name:    "invalid stored entry is overwritten by the Portal's record",
			listed:  []key.Record{rec("a")},
			current: map[string]keystore.Entry{"a": invalid(6)},
			want:    map[string]want{"a": {keysync.Update, 6}},
		},
		{
			name:    "invalid stored entry the Portal does not list is skipped, never deleted",
			current: map[string]keystore.Entry{"a": invalid(6)},
			want:    map[string]want{"a": {keysync.Skip, 0}},
		},
		{
			name:    "failed Portal record is skipped, not retired",
			listed:  []key.Record{rec("b")},
			failed:  []string{"a"},
			current: map[string]keystore.Entry{"a": stored(rec("a"), 4), "b": stored(rec("b"), 1)},
			want:    map[string]want{"a": {keysync.Skip, 0}, "b": {keysync.Unchanged, 0}},
		},
		{
			name:   "failed Portal record of a key not stored is skipped",
			failed: []string{"a"},
			want:   map[string]want{"a": {keysync.Skip, 0}},
		},
		{
			name:    "failure wins over a valid copy of the same key",
			listed:  []key.Record{rec("a", func(r *key.Record) { r.Version = 9 })},
			failed:  []string{"a"},
			current: map[string]keystore.Entry{"a": stored(rec("a"), 4)},
			want:    map[string]want{"a": {keysync.Skip, 0}},
		},
		{
			name:    "a key listed twice is skipped",
			listed:  []key.Record{rec("a"), rec("a", func(r *key.Record) { r.Version = 9 })},
			current: map[string]keystore.Entry{"a": stored(rec("a"), 4)},
			want:    map[string]want{"a": {keysync.Skip, 0}},
		},
		{
			name:   "all failed never retires anything",
			failed: []string{"a", "b"},
			current: map[string]keystore.Entry{
				"a": stored(rec("a"), 1), "b": stored(rec("b"), 1),
			},
			want: map[string]want{"a": {keysync.Skip, 0}, "b": {keysync.Skip, 0}},
		},
		{
			name:   "a mixed run",
			listed: []key.Record{rec("new"), rec("same"), rec("changed", func(r *key.Record) { r.Version = 4 })},
			failed: []string{"broken"},
			current: map[string]keystore.Entry{
				"same":    stored(rec("same"), 1),
				"changed": stored(rec("changed"), 2),
				"gone":    stored(rec("gone"), 3),
				"broken":  stored(rec("broken"), 4),
			},
			want: map[string]want{
				"new":     {keysync.Add, 0},
				"same":    {keysync.Unchanged, 0},
				"changed": {keysync.Update, 2},
				"gone":    {keysync.Retire, 3},
				"broken":  {keysync.Skip, 0},
			},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			before := maps.Clone(tc.current)
			actions := keysync.Plan(tc.listed, tc.failed, tc.current)
			got := map[string]want{}
			byFP := map[string]keysync.Action{}
			for i, a := range actions {
				if i > 0 && actions[i-1].Fingerprint >= a.Fingerprint {
					t.Errorf("Plan() not sorted by fingerprint: %q before %q", actions[i-1].Fingerprint, a.Fingerprint)
				}
				if strings.Contains(a.String(), canary) || strings.Contains(fmt.Sprintf("%+v", a), canary) {
					t.Errorf("action %q prints a secret", a)
				}
				got[a.Fingerprint] = want{a.Kind, a.CAS}
				byFP[a.Fingerprint] = a
			}
			if !maps.Equal(got, tc.want) {
				t.Errorf("Plan() = %v, want %v", got, tc.want)
			}
			for fp, e := range before {
				if after := tc.current[fp]; e.Record.State != after.Record.State || e.Record.Version != after.Record.Version {
					t.Errorf("Plan() modified the current entry %s", fp)
				}
			}
			if tc.check != nil {
				tc.check(t, byFP)
			}
		})
	}
}

// memTarget is an in-memory keystore.CASStore with KV v2's check-and-set semantics.
type memTarget struct {
	mu      sync.Mutex
	entries map[string]keystore.Entry
	puts    int
	reads   int
	// beforePut runs (unlocked) before each Put: a concurrent writer.
	beforePut func(m *memTarget, r key.Record)
	putErr    map[string]error
	readErr   error
}

func newTarget(entries map[string]keystore.Entry) *memTarget {
	if entries == nil {
		entries = map[string]keystore.Entry{}
	}
	return &memTarget{entries: entries, putErr: map[string]error{}}
}

func (m *memTarget) Entries(context.Context) (map[string]keystore.Entry, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.reads++
	if m.readErr != nil {
		return nil, m.readErr
	}
	return maps.Clone(m.entries), nil
}

func (m *memTarget) Put(ctx context.Context, r key.Record, cas int) (int, error) {
	if m.beforePut != nil {
		m.beforePut(m, r)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if err := m.putErr[r.Fingerprint]; err != nil {
		return 0, err
	}
	if err := r.Validate(); err != nil {
		return 0, err
	}
	cur := m.entries[r.Fingerprint].Version
	if cas != cur {
		return 0, fmt.Errorf("put %q: %w", r.Fingerprint, keystore.ErrCASMismatch)
	}
	m.puts++
	m.entries[r.Fingerprint] = keystore.Entry{Record: r.Clone(), Version: cur + 1}
	return cur + 1, nil
}

// set writes directly, as another writer would.
func (m *memTarget) set(r key.Record) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.entries[r.Fingerprint] = keystore.Entry{Record: r, Version: m.entries[r.Fingerprint].Version + 1}
}

func (m *memTarget) get(fp string) keystore.Entry {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.entries[fp]
}

// runSync plans against m's content and applies the plan, as alesync does.
func runSync(t *testing.T, m *memTarget, listed []key.Record, failed []string, dryRun bool) keysync.Summary {
	t.Helper()
	cur, err := m.Entries(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	s := keysync.Apply(context.Background(), m, keysync.Plan(listed, failed, cur), dryRun)
	for _, o := range s.Outcomes {
		if o.Err != nil && strings.Contains(o.Err.Error(), canary) {
			t.Errorf("outcome error prints a secret: %v", o.Err)
		}
	}
	return s
}

func TestApplyLifecycle(t *testing.T) {
	t.Parallel()
	m := newTarget(nil)

	s := runSync(t, m, []key.Record{rec("a"), rec("b")}, nil, false)
	if got := s.String(); got != "added=2 updated=0 retired=0 unchanged=0 failed=0" || !s.OK() {
		t.Fatalf("first sync = %s, want two adds", got)
	}

	puts := m.puts
	s = runSync(t, m, []key.Record{rec("a"), rec("b")}, nil, false)
	if got := s.String(); got != "added=0 updated=0 retired=0 unchanged=2 failed=0" || m.puts != puts {
		t.Fatalf("unchanged sync = %s with %d writes, want two unchanged and no writes", got, m.puts-puts)
	}

	s = runSync(t, m, []key.Record{rec("a", func(r *key.Record) { r.Version = 4 })}, nil, false)
	if got := s.String(); got != "added=0 updated=1 retired=1 unchanged=0 failed=0" {
		t.Fatalf("update+retire sync = %s", got)
	}
	if e := m.get("b"); e.Record.State != key.DecryptOnly || e.Record.Version != 4 || !e.Record.Secret.Equal(rec("b").Secret) {
		t.Errorf("retired b = state %s version %d, want decrypt-only version 4 with its secret", e.Record.State, e.Record.Version)
	}

	puts = m.puts
	s = runSync(t, m, []key.Record{rec("a", func(r *key.Record) { r.Version = 4 })}, nil, false)
	if got := s.String(); got != "added=0 updated=0 retired=0 unchanged=2 failed=0" || m.puts != puts {
		t.Fatalf("sync after retiring = %s with %d writes, want nothing written", got, m.puts-puts)
	}
}

func TestApplyDryRunWritesNothing(t *testing.T) {
	t.Parallel()
	m := newTarget(map[string]keystore.Entry{"gone": stored(rec("gone"), 1), "old": stored(rec("old"), 1)})
	s := runSync(t, m, []key.Record{rec("new"), rec("old", func(r *key.Record) { r.Version = 9 })}, []string{"bad"}, true)
	if got := s.String(); got != "added=1 updated=1 retired=1 unchanged=0 failed=1" || !s.DryRun {
		t.Errorf("dry run = %s (dry %v), want the plan's counts", got, s.DryRun)
	}
	if m.puts != 0 {
		t.Errorf("dry run wrote %d keys", m.puts)
	}
	for _, o := range s.Outcomes {
		if o.Action.Kind == keysync.Skip && o.Err == nil {
			t.Error("dry-run skip has no error")
		}
	}
}

func TestApplyFailures(t *testing.T) {
	t.Parallel()
	m := newTarget(map[string]keystore.Entry{"c": stored(rec("c"), 1)})
	m.putErr["b"] = errors.New("vault: put secret/alecrypt/keys/b: 403 permission denied")
	s := runSync(t, m, []key.Record{rec("a"), rec("b")}, []string{"c"}, false)
	if got := s.String(); got != "added=1 updated=0 retired=0 unchanged=0 failed=2" || s.OK() {
		t.Errorf("sync = %s, want a added and b, c failed", got)
	}
	if e := m.get("c"); e.Record.State != key.Active || e.Version != 1 {
		t.Errorf("key c with a failed Portal record was changed: state %s version %d", e.Record.State, e.Version)
	}
	for _, o := range s.Outcomes {
		if o.Failed() != (o.Action.Fingerprint != "a") || (o.Failed() && o.Err == nil) {
			t.Errorf("outcome %s: failed %v err %v", o.Action, o.Failed(), o.Err)
		}
	}
}

func TestApplyCanceled(t *testing.T) {
	t.Parallel()
	m := newTarget(nil)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	s := keysync.Apply(ctx, m, keysync.Plan([]key.Record{rec("a")}, nil, nil), false)
	if s.Failed != 1 || m.puts != 0 || !errors.Is(s.Outcomes[0].Err, context.Canceled) {
		t.Errorf("canceled Apply = %s, %d writes, err %v; want one failure and no writes", s, m.puts, s.Outcomes[0].Err)
	}
}

// TestApplyCASRace races Apply against another writer that changes the key
// between Apply's read and its write.
func TestApplyCASRace(t *testing.T) {
	t.Parallel()
	newer := rec("a", func(r *key.Record) { r.Version = 4 })
	for _, tc := range []struct {
		name    string
		stored  map[string]keystore.Entry
		listed  []key.Record
		writer  func(m *memTarget, r key.Record, n int) // n counts Puts seen
		summary string                                  // b is always added and c updated
		kind    keysync.Kind                            // final action for "a"
		check   func(t *testing.T, e keystore.Entry)
	}{
		{
			name:   "the other sync wrote the same record: nothing left to do",
			stored: map[string]keystore.Entry{"a": stored(rec("a"), 1)},
			listed: []key.Record{newer},
			writer: func(m *memTarget, r key.Record, n int) {
				if n == 1 {
					m.set(newer)
				}
			},
			summary: "added=1 updated=1 retired=0 unchanged=1 failed=0",
			kind:    keysync.Unchanged,
			check: func(t *testing.T, e keystore.Entry) {
				if e.Version != 2 {
					t.Errorf("version %d, want 2: one write (the other writer's)", e.Version)
				}
			},
		},
		{
			name:   "the other writer changed something else: re-planned update wins",
			stored: map[string]keystore.Entry{"a": stored(rec("a"), 1)},
			listed: []key.Record{newer},
			writer: func(m *memTarget, r key.Record, n int) {
				if n == 1 {
					m.set(rec("a", func(r *key.Record) { r.State = key.Disabled }))
				}
			},
			summary: "added=1 updated=2 retired=0 unchanged=0 failed=0",
			kind:    keysync.Update,
			check: func(t *testing.T, e keystore.Entry) {
				if e.Version != 3 || !e.Record.Equal(newer) {
					t.Errorf("stored version %d state %s, want version 3 with the Portal's record", e.Version, e.Record.State)
				}
			},
		},
		{
			name:   "the key appeared meanwhile: add becomes update",
			listed: []key.Record{newer},
			writer: func(m *memTarget, r key.Record, n int) {
				if n == 1 {
					m.set(rec("a"))
				}
			},
			summary: "added=1 updated=2 retired=0 unchanged=0 failed=0",
			kind:    keysync.Update,
		},
		{
			name:   "another sync retired it first: nothing left to do",
			stored: map[string]keystore.Entry{"a": stored(rec("a"), 1)},
			writer: func(m *memTarget, r key.Record, n int) {
				if n == 1 {
					m.set(r)
				}
			},
			summary: "added=1 updated=1 retired=0 unchanged=1 failed=0",
			kind:    keysync.Unchanged,
			check: func(t *testing.T, e keystore.Entry) {
				if e.Record.State != key.DecryptOnly || e.Record.Version != 4 {
					t.Errorf("retired twice: state %s version %d", e.Record.State, e.Record.Version)
				}
			},
		},
		{
			name:   "it keeps changing: one retry, then failed",
			stored: map[string]keystore.Entry{"a": stored(rec("a"), 1)},
			listed: []key.Record{newer},
			writer: func(m *memTarget, r key.Record, n int) {
				m.set(rec("a", func(r *key.Record) { r.Version = int64(10 + n) }))
			},
			summary: "added=1 updated=1 retired=0 unchanged=0 failed=1",
			kind:    keysync.Update,
			check: func(t *testing.T, e keystore.Entry) {
				if e.Record.Version != 12 {
					t.Errorf("stored record version %d, want the other writer's 12", e.Record.Version)
				}
			},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			m := newTarget(maps.Clone(tc.stored))
			// b is written before a and c after it: a conflict on a must
			// not disturb them or their order.
			m.entries["c"] = stored(rec("c"), 1)
			n := 0
			m.beforePut = func(m *memTarget, r key.Record) {
				if r.Fingerprint == "a" {
					n++
					tc.writer(m, r, n)
				}
			}
			listed := append([]key.Record{rec("b")}, tc.listed...)
			listed = append(listed, rec("c", func(r *key.Record) { r.Version = 5 }))
			s := runSync(t, m, listed, nil, false)
			if got := s.String(); got != tc.summary {
				t.Errorf("sync = %s, want %s", got, tc.summary)
			}
			if len(s.Outcomes) != 3 || s.Outcomes[0].Action.Fingerprint != "a" || s.Outcomes[1].Action.Fingerprint != "b" || s.Outcomes[2].Action.Fingerprint != "c" {
				t.Fatalf("outcomes = %v, want a, b, c in order", s.Outcomes)
			}
			a := s.Outcomes[0]
			if !a.Retried || a.Action.Kind != tc.kind {
				t.Errorf("outcome for a = %s retried %v, want %s after a retry", a.Action.Kind, a.Retried, tc.kind)
			}
			if a.Failed() && !errors.Is(a.Err, keystore.ErrCASMismatch) {
				t.Errorf("failed outcome err = %v, want ErrCASMismatch", a.Err)
			}
			if m.reads != 2 {
				t.Errorf("store read %d times, want 2 (plan, retry)", m.reads)
			}
			if tc.check != nil {
				tc.check(t, m.get("a"))
			}
		})
	}
}

func TestApplyRetryReadFails(t *testing.T) {
	t.Parallel()
	m := newTarget(map[string]keystore.Entry{"a": stored(rec("a"), 1)})
	readErr := errors.New("vault: list secret/alecrypt/keys: connection refused")
	m.beforePut = func(m *memTarget, _ key.Record) {
		m.set(rec("a", func(r *key.Record) { r.Version = 8 }))
		m.mu.Lock()
		m.readErr = readErr
		m.mu.Unlock()
	}
	s := runSync(t, m, []key.Record{rec("a", func(r *key.Record) { r.Version = 4 })}, nil, false)
	if s.Failed != 1 || !errors.Is(s.Outcomes[0].Err, keystore.ErrCASMismatch) || !errors.Is(s.Outcomes[0].Err, readErr) {
		t.Errorf("sync = %s, err %v; want failed with both causes", s, s.Outcomes[0].Err)
	}
}

func TestHoldRetirements(t *testing.T) {
	t.Parallel()
	current := map[string]keystore.Entry{"gone": stored(rec("gone"), 2), "same": stored(rec("same"), 1)}
	actions := keysync.Plan([]key.Record{rec("new"), rec("same")}, nil, current)
	held := keysync.HoldRetirements(actions, "an unreadable record")
	got := map[string]keysync.Kind{}
	for _, a := range held {
		got[a.Fingerprint] = a.Kind
	}
	if want := map[string]keysync.Kind{"gone": keysync.Skip, "new": keysync.Add, "same": keysync.Unchanged}; !maps.Equal(got, want) {
		t.Errorf("HoldRetirements() = %v, want %v", got, want)
	}
	if actions[0].Kind != keysync.Retire {
		t.Error("HoldRetirements() modified its input")
	}
	m := newTarget(current)
	if s := keysync.Apply(context.Background(), m, held, false); s.String() != "added=1 updated=0 retired=0 unchanged=1 failed=1" || m.get("gone").Record.State != key.Active {
		t.Errorf("Apply(held) = %s, gone is %s; want gone untouched and failed", s, m.get("gone").Record.State)
	}
}

func TestSummaryString(t *testing.T) {
	t.Parallel()
	s := keysync.Summary{Added: 1, Updated: 2, Retired: 3, Unchanged: 4, Failed: 5}
	if got, want := s.String(), "added=1 updated=2 retired=3 unchanged=4 failed=5"; got != want {
		t.Errorf("String() = %q, want %q", got, want)
	}
}

// recordingTarget accepts every write without checking it, as a careless
// store would, and remembers which fingerprints were written.
type recordingTarget struct {
	entries map[string]keystore.Entry
	mu      sync.Mutex
	puts    []string
}

func (r *recordingTarget) Entries(context.Context) (map[string]keystore.Entry, error) {
	return maps.Clone(r.entries), nil
}

func (r *recordingTarget) Put(_ context.Context, rec key.Record, _ int) (int, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.puts = append(r.puts, rec.Fingerprint)
	return 1, nil
}

// TestPlanNeverWritesInvalidFingerprints: a fingerprint that could name
// another key's path ("z/../victim"), a path outside the prefix
// ("../../other-app/x") or a sub-folder ("x/y") is never written, wherever
// it comes from: a listed record, a failed one, or a stored entry's name
// (with or without an error). Its action is a Skip, printed quoted.
func TestPlanNeverWritesInvalidFingerprints(t *testing.T) {
	t.Parallel()
	for _, fp := range []string{"z/../victim", "../../other-app/x", "x/y"} {
		for _, tc := range []struct {
			name    string
			listed  []key.Record
			failed  []string
			current map[string]keystore.Entry
		}{
			{name: "listed", listed: []key.Record{rec("ok"), rec(fp)}},
			{name: "listed twice", listed: []key.Record{rec(fp), rec(fp)}},
			{name: "listed and stored", listed: []key.Record{rec(fp, func(r *key.Record) { r.Version = 9 })}, current: map[string]keystore.Entry{fp: stored(rec(fp), 1)}},
			{name: "failed", failed: []string{fp}},
			{name: "stored active, unlisted", current: map[string]keystore.Entry{fp: stored(rec(fp), 1)}},
			{name: "stored with an error, unlisted", current: map[string]keystore.Entry{fp: invalid(1)}},
			{name: "stored with an error, listed", listed: []key.Record{rec(fp)}, current: map[string]keystore.Entry{fp: invalid(1)}},
		} {
			t.Run(fp+"/"+tc.name, func(t *testing.T) {
				t.Parallel()
				actions := keysync.Plan(tc.listed, tc.failed, tc.current)
				found := false
				for _, a := range actions {
					if a.Fingerprint != fp {
						continue
					}
					found = true
					if a.Kind != keysync.Skip {
						t.Errorf("Plan action for %q = %s, want skip", fp, a.Kind)
					}
					if strings.ContainsRune(a.String(), '\n') || !strings.HasPrefix(a.String(), `"`) {
						t.Errorf("Action.String() = %q, want the invalid fingerprint quoted", a.String())
					}
				}
				if !found {
					t.Errorf("Plan has no action for %q; want a skip so the run reports it", fp)
				}
				target := &recordingTarget{entries: tc.current}
				sum := keysync.Apply(context.Background(), target, actions, false)
				for _, put := range target.puts {
					if put == fp {
						t.Errorf("Apply wrote %q", fp)
					}
				}
				if sum.OK() {
					t.Errorf("Apply summary %v is OK; an invalid fingerprint must count as failed", sum)
				}
			})
		}
	}
}
