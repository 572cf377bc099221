package keysync_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/alecrypt/alecrypt/internal/key"
	"github.com/alecrypt/alecrypt/internal/keystore"
	"github.com/alecrypt/alecrypt/internal/keysync"
	"github.com/alecrypt/alecrypt/internal/portal"
)

// The tests of Run: the rules on top of Plan and Apply (the empty-Portal
// guard, retirements held for unreadable records, a failed Portal, login or
// store read changing nothing), and the run's report (summary line, plan,
// log).

// harness runs keysync.Run against an in-memory store and a fixed Portal
// listing, capturing what the run prints and logs.
type harness struct {
	src    keysync.Source
	opts   keysync.Options
	store  *memTarget
	stdout *bytes.Buffer
	logs   *bytes.Buffer
}

func newHarness(t *testing.T, res portal.Result, fetchErr error, entries map[string]keystore.Entry) *harness {
	t.Helper()
	h := &harness{store: newTarget(entries), stdout: &bytes.Buffer{}, logs: &bytes.Buffer{}}
	h.src = func(context.Context) (portal.Result, error) { return res, fetchErr }
	h.opts = keysync.Options{
		Log: slog.New(slog.NewJSONHandler(h.logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
		Out: h.stdout,
	}
	t.Cleanup(func() {
		for name, out := range map[string]string{"stdout": h.stdout.String(), "log": h.logs.String()} {
			if strings.Contains(out, canary) {
				t.Errorf("%s shows a secret:\n%s", name, out)
			}
		}
	})
	return h
}

// run runs one sync and reports whether it was clean.
func (h *harness) run() bool {
	return keysync.Run(context.Background(), h.src, h.store, h.opts) == nil
}

func TestRunPortalFailureWritesNothing(t *testing.T) {
	t.Parallel()
	stored := map[string]keystore.Entry{"a": {Record: rec("a"), Version: 1}}
	h := newHarness(t, portal.Result{}, fmt.Errorf("portal: page 1: %w: 401 Unauthorized", portal.ErrUnauthorized), stored)
	if h.run() {
		t.Error("Run() = ok after a Portal failure")
	}
	if h.store.puts != 0 || h.store.entries["a"].Record.State != key.Active {
		t.Error("a Portal failure changed Vault")
	}
	if got := h.stdout.String(); got != "added=0 updated=0 retired=0 unchanged=0 failed=0\n" {
		t.Errorf("stdout = %q, want the summary line", got)
	}
	if !strings.Contains(h.logs.String(), "aborted") || !strings.Contains(h.logs.String(), "401") {
		t.Errorf("log does not say the run aborted and why:\n%s", h.logs)
	}
}

func TestRunVaultFailure(t *testing.T) {
	t.Parallel()
	h := newHarness(t, portal.Result{Records: []key.Record{rec("a")}}, nil, nil)
	h.store.readErr = errors.New("vault: list secret/alecrypt/keys: connection refused")
	if h.run() || h.store.puts != 0 {
		t.Errorf("Run() after a Vault failure: ok or wrote %d keys", h.store.puts)
	}
}

func TestRunLoginFailure(t *testing.T) {
	t.Parallel()
	h := newHarness(t, portal.Result{Records: []key.Record{rec("a")}}, nil, nil)
	h.opts.Login = func(context.Context) error { return errors.New("vault approle login: permission denied") }
	if h.run() || h.store.puts != 0 {
		t.Error("Run() after a login failure: ok or wrote keys")
	}
}

func TestRunEmptyPortalGuard(t *testing.T) {
	t.Parallel()
	stored := func() map[string]keystore.Entry {
		return map[string]keystore.Entry{"a": {Record: rec("a"), Version: 1}, "b": {Record: rec("b"), Version: 1}}
	}
	h := newHarness(t, portal.Result{Pages: 1}, nil, stored())
	if h.run() || h.store.puts != 0 {
		t.Errorf("an empty Portal retired %d keys without --allow-empty-portal", h.store.puts)
	}
	if !strings.Contains(h.logs.String(), "allow-empty-portal") {
		t.Errorf("log does not explain the refusal:\n%s", h.logs)
	}

	h = newHarness(t, portal.Result{Pages: 1}, nil, stored())
	h.opts.AllowEmptyPortal = true
	if !h.run() || h.store.puts != 2 {
		t.Errorf("--allow-empty-portal: retired %d keys, want 2", h.store.puts)
	}

	// Nothing active to lose: an empty Portal is just an empty Portal.
	h = newHarness(t, portal.Result{Pages: 1}, nil, nil)
	if !h.run() {
		t.Error("an empty Portal and an empty Vault is not a failure")
	}
}

func TestRunMalformedRecords(t *testing.T) {
	t.Parallel()
	stored := map[string]keystore.Entry{
		"bad":  {Record: rec("bad"), Version: 1},
		"gone": {Record: rec("gone"), Version: 1},
	}
	res := portal.Result{
		Records: []key.Record{rec("new")},
		Problems: []portal.Problem{
			{Index: 1, Fingerprint: "bad", Err: fmt.Errorf("%w \"bad\": unknown algorithm", key.ErrInvalidRecord)},
		},
	}
	h := newHarness(t, res, nil, stored)
	if h.run() {
		t.Error("Run() = ok with malformed records")
	}
	if got := h.stdout.String(); got != "added=1 updated=0 retired=1 unchanged=0 failed=1\n" {
		t.Errorf("stdout = %q", got)
	}
	if e := h.store.entries["bad"]; e.Record.State != key.Active || e.Version != 1 {
		t.Errorf("the key behind a malformed record was changed: %s v%d", e.Record.State, e.Version)
	}
}

// TestRunUnreadableRecordHoldsRetirements: a record without a readable
// fingerprint could be any key, so nothing may be retired, even when every
// record is unreadable (e.g. the Portal renamed "fingerprint").
func TestRunUnreadableRecordHoldsRetirements(t *testing.T) {
	t.Parallel()
	stored := map[string]keystore.Entry{"a": {Record: rec("a"), Version: 1}, "b": {Record: rec("b"), Version: 1}}
	res := portal.Result{Problems: []portal.Problem{
		{Index: 0, Err: fmt.Errorf("%w: json: unknown field \"id\"", key.ErrInvalidRecord)},
		{Index: 1, Err: fmt.Errorf("%w: json: unknown field \"id\"", key.ErrInvalidRecord)},
	}}
	h := newHarness(t, res, nil, stored)
	if h.run() {
		t.Error("Run() = ok with unreadable records")
	}
	if h.store.puts != 0 {
		t.Errorf("unreadable records let %d keys be retired", h.store.puts)
	}
	if got := h.stdout.String(); got != "added=0 updated=0 retired=0 unchanged=0 failed=4\n" {
		t.Errorf("stdout = %q, want 2 unreadable records and 2 held retirements failed", got)
	}
}

func TestRunDryRun(t *testing.T) {
	t.Parallel()
	stored := map[string]keystore.Entry{
		"same": {Record: rec("same"), Version: 1},
		"old":  {Record: rec("old"), Version: 1},
		"gone": {Record: rec("gone"), Version: 1},
	}
	res := portal.Result{Records: []key.Record{rec("new"), rec("same"), rec("old", func(r *key.Record) { r.Version = 2 })}}
	h := newHarness(t, res, nil, stored)
	h.opts.DryRun = true
	if !h.run() {
		t.Error("dry run not ok")
	}
	if h.store.puts != 0 {
		t.Errorf("dry run wrote %d keys", h.store.puts)
	}
	want := "gone retire\nnew add\nold update\nsame unchanged\nadded=1 updated=1 retired=1 unchanged=1 failed=0\n"
	if got := h.stdout.String(); got != want {
		t.Errorf("dry-run stdout =\n%s\nwant\n%s", got, want)
	}
}

func TestRunTwiceWritesOnce(t *testing.T) {
	t.Parallel()
	res := portal.Result{Records: []key.Record{rec("a"), rec("b")}}
	h := newHarness(t, res, nil, nil)
	for run := 1; run <= 2; run++ {
		if !h.run() {
			t.Fatalf("run %d not ok", run)
		}
	}
	if h.store.puts != 2 {
		t.Errorf("two runs wrote %d times, want 2 (the second writes nothing)", h.store.puts)
	}
	if got := h.stdout.String(); got != "added=2 updated=0 retired=0 unchanged=0 failed=0\nadded=0 updated=0 retired=0 unchanged=2 failed=0\n" {
		t.Errorf("stdout = %q", got)
	}
	if !strings.Contains(h.logs.String(), `"msg":"sync run"`) || !strings.Contains(h.logs.String(), `"added":2`) {
		t.Errorf("log has no summary line:\n%s", h.logs)
	}
}

// observer records the outcomes Run reports.
type observer struct {
	outcomes []keysync.RunOutcome
	sums     []string
	after    func(n int)
}

func (o *observer) Observe(s keysync.Summary, outcome keysync.RunOutcome, _ time.Time) {
	o.outcomes = append(o.outcomes, outcome)
	o.sums = append(o.sums, s.String())
	if o.after != nil {
		o.after(len(o.outcomes))
	}
}

func TestRunObserved(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name     string
		res      portal.Result
		fetchErr error
		want     keysync.RunOutcome
		wantErr  error
	}{
		{name: "clean", res: portal.Result{Records: []key.Record{rec("a")}}, want: keysync.RunOK},
		{name: "failed key", res: portal.Result{Problems: []portal.Problem{{Fingerprint: "b", Err: key.ErrInvalidRecord}}},
			want: keysync.RunFailed, wantErr: keysync.ErrRunFailed},
		{name: "aborted", fetchErr: portal.ErrUnauthorized, want: keysync.RunAborted, wantErr: portal.ErrUnauthorized},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			h := newHarness(t, tc.res, tc.fetchErr, nil)
			obs := &observer{}
			h.opts.Observer = obs
			err := keysync.Run(context.Background(), h.src, h.store, h.opts)
			if !errors.Is(err, tc.wantErr) || (tc.wantErr == nil) != (err == nil) {
				t.Errorf("Run() err = %v, want %v", err, tc.wantErr)
			}
			if len(obs.outcomes) != 1 || obs.outcomes[0] != tc.want {
				t.Errorf("observed %v, want one %s", obs.outcomes, tc.want)
			}
		})
	}
}

// TestRunInterval: with an interval Run runs until its context ends, then
// returns nil whatever the runs' outcomes; the second run writes nothing.
func TestRunInterval(t *testing.T) {
	t.Parallel()
	h := newHarness(t, portal.Result{Records: []key.Record{rec("a")}}, nil, nil)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	obs := &observer{after: func(n int) {
		if n == 2 {
			cancel()
		}
	}}
	h.opts.Observer, h.opts.Interval = obs, time.Millisecond
	if err := keysync.Run(ctx, h.src, h.store, h.opts); err != nil {
		t.Errorf("Run(interval) err = %v, want nil after the context ends", err)
	}
	if want := []string{"added=1 updated=0 retired=0 unchanged=0 failed=0", "added=0 updated=0 retired=0 unchanged=1 failed=0"}; len(obs.sums) != 2 || obs.sums[0] != want[0] || obs.sums[1] != want[1] {
		t.Errorf("runs = %q, want %q", obs.sums, want)
	}
}
