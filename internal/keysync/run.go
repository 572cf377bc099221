package keysync

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"time"

	"github.com/alecrypt/alecrypt/internal/key"
	"github.com/alecrypt/alecrypt/internal/keystore"
	"github.com/alecrypt/alecrypt/internal/portal"
)

// Source fetches the Portal's whole listing: portal.Client.FetchAll, or a
// function that reads a rotated token before it builds the client.
type Source func(ctx context.Context) (portal.Result, error)

// RunOutcome is how a run ended.
type RunOutcome string

// Run outcomes.
const (
	RunOK      RunOutcome = "ok"      // every key synced
	RunFailed  RunOutcome = "failed"  // some keys failed; the others were synced
	RunAborted RunOutcome = "aborted" // a Portal or store failure before any write: nothing written
)

// Observer records each run (Metrics is one).
type Observer interface {
	Observe(s Summary, outcome RunOutcome, at time.Time)
}

// Options configure Run. The zero value runs once, writes, refuses an empty
// Portal, logs nowhere and prints nowhere.
type Options struct {
	// Interval is zero for a single run; otherwise Run runs once and then
	// every Interval until ctx ends.
	Interval time.Duration
	// DryRun prints the plan, one line per key, and writes nothing.
	DryRun bool
	// AllowEmptyPortal lets a Portal that lists no keys at all (and reports
	// no problem) retire every active key. Refused by default: an empty
	// listing is far more likely a misconfigured Portal than a real wish
	// to stop encrypting.
	AllowEmptyPortal bool
	// Login, when set, runs after the listing is fetched and before the
	// store is read (a Vault login); its failure aborts the run.
	Login func(ctx context.Context) error
	// Log receives one line per key written or failed and one per run.
	Log *slog.Logger
	// Out receives each run's summary line, and the plan on a dry run.
	Out io.Writer
	// Observer, when set, records every run's outcome.
	Observer Observer
	// Now is the clock of the Observer's timestamps (time.Now when nil).
	Now func() time.Time
}

// ErrEmptyPortal aborts a run that would retire every active key because
// the Portal listed nothing at all.
var ErrEmptyPortal = errors.New("the Portal listed no keys at all; refusing to retire every active key (pass --allow-empty-portal if that is intended)")

// ErrRunFailed is Run's error for a single run that completed with failed
// keys; each one is logged.
var ErrRunFailed = errors.New("the sync run had failures")

// Run syncs the Portal's listing from src into store, once or every
// opts.Interval, and reports each run: its summary line on opts.Out (after
// the plan on a dry run), a log line, and opts.Observer. The rules, on top
// of Plan and Apply:
//
//   - The whole listing is fetched before the store is read or written, so
//     a Portal failure changes nothing; so does a login or store read
//     failure. Such a run is aborted.
//   - A Portal that lists nothing while the store holds an active key aborts
//     the run with ErrEmptyPortal, unless opts.AllowEmptyPortal.
//   - A record whose fingerprint cannot even be read could be any stored
//     key: every retirement of the run is held (HoldRetirements), and the
//     record counts as failed although it has no action.
//
// A single run returns nil when it was clean, its abort reason, or
// ErrRunFailed. With an interval, Run returns nil when ctx ends; each run's
// outcome is in its report.
func Run(ctx context.Context, src Source, store keystore.CASStore, opts Options) error {
	if opts.Log == nil {
		opts.Log = slog.New(slog.DiscardHandler)
	}
	if opts.Out == nil {
		opts.Out = io.Discard
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Interval <= 0 {
		return runAndReport(ctx, src, store, opts)
	}
	for {
		_ = runAndReport(ctx, src, store, opts) // reported inside
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(opts.Interval):
		}
	}
}

// runAndReport runs one sync, prints its summary line, logs it and observes
// it; the error is nil for a clean run.
func runAndReport(ctx context.Context, src Source, store keystore.CASStore, opts Options) error {
	start := time.Now()
	sum, err := runOnce(ctx, src, store, opts)
	fmt.Fprintln(opts.Out, sum.String())
	outcome := RunOK
	switch {
	case err != nil:
		outcome = RunAborted
	case !sum.OK():
		outcome, err = RunFailed, ErrRunFailed
	}
	attrs := []any{
		"added", sum.Added, "updated", sum.Updated, "retired", sum.Retired,
		"unchanged", sum.Unchanged, "failed", sum.Failed,
		"dry_run", opts.DryRun, "ok", outcome == RunOK, "duration", time.Since(start).String(),
	}
	if opts.Observer != nil {
		opts.Observer.Observe(sum, outcome, opts.Now())
	}
	switch outcome {
	case RunAborted:
		opts.Log.Error("sync run aborted; nothing was written", append(attrs, "err", err)...)
	case RunFailed:
		opts.Log.Error("sync run had failures", attrs...)
	default:
		opts.Log.Info("sync run", attrs...)
	}
	return err
}

// runOnce fetches the whole listing before it reads or writes the store, so
// a Portal failure changes nothing.
func runOnce(ctx context.Context, src Source, store keystore.CASStore, opts Options) (Summary, error) {
	res, err := src(ctx)
	if err != nil {
		return Summary{}, err
	}
	unreadable := 0
	for _, p := range res.Problems {
		if p.Fingerprint == "" {
			unreadable++
		}
		opts.Log.Warn("skipping a Portal record", "index", p.Index, "fingerprint", p.Fingerprint, "err", p.Err)
	}
	if opts.Login != nil {
		if err := opts.Login(ctx); err != nil {
			return Summary{}, err
		}
	}
	current, err := store.Entries(ctx)
	if err != nil {
		return Summary{}, err
	}
	if len(res.Records) == 0 && len(res.Problems) == 0 && !opts.AllowEmptyPortal && anyActive(current) {
		return Summary{}, ErrEmptyPortal
	}
	actions := Plan(res.Records, res.FailedFingerprints(), current)
	if unreadable > 0 {
		actions = HoldRetirements(actions, "the Portal sent a record whose fingerprint is unreadable; it may be this key")
	}
	if opts.DryRun {
		for _, a := range actions {
			fmt.Fprintln(opts.Out, a.String())
		}
	}
	sum := Apply(ctx, store, actions, opts.DryRun)
	// A record whose fingerprint is unreadable has no action, but it is a
	// failure all the same.
	sum.Failed += unreadable
	for _, o := range sum.Outcomes {
		a := o.Action
		switch {
		case o.Failed():
			opts.Log.Error("key not synced", "fingerprint", a.Fingerprint, "action", string(a.Kind), "retried", o.Retried, "err", o.Err)
		case a.Kind == Unchanged || opts.DryRun:
			opts.Log.Debug("key planned", "fingerprint", a.Fingerprint, "action", string(a.Kind))
		default:
			opts.Log.Info("key written", "fingerprint", a.Fingerprint, "action", string(a.Kind),
				"state", string(a.Record.State), "key_version", a.Record.Version, "kv_version", o.Version, "retried", o.Retried)
		}
	}
	return sum, nil
}

func anyActive(entries map[string]keystore.Entry) bool {
	for _, e := range entries {
		if e.Err == nil && e.Record.State == key.Active {
			return true
		}
	}
	return false
}
