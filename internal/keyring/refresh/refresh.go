// Package refresh owns the loop that keeps a keyring in step with a keystore:
// a load at start, then one on an interval (skipped when the store's cheap
// revision says nothing changed) or on demand (SIGHUP), and the health of
// those loads for metrics and /readyz.
//
// It only reads the store (keystore.Reader); how keys get into it (alectl,
// alesync) is the store's own business. The refresher never lets a failed
// load change the keys being served: the last good set stays until a good one
// replaces it. Within a good load, an invalid record is skipped (reported,
// counted, logged) and never blocks the others; a key already served whose
// record turned invalid keeps its last good record. A load that would remove
// more than a share of the served keys (always one that would remove them
// all, as when Vault comes back empty) is held until the same removal is seen
// again after a confirmation delay; see WithRemovalGuard.
package refresh

import (
	"context"
	"fmt"
	"log/slog"
	"maps"
	"runtime"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/alecrypt/alecrypt/internal/key"
	"github.com/alecrypt/alecrypt/internal/keyring"
	"github.com/alecrypt/alecrypt/internal/keystore"
)

// Removal guard defaults: a reload removing more than half of the served
// keys, or all of them, waits a minute (and a second sighting) before it is
// applied.
const (
	DefaultMaxRemovalShare     = 0.5
	DefaultRemovalConfirmAfter = time.Minute
)

// Refresher loads a store into a ring, once and then on an interval or on
// demand.
type Refresher struct {
	store    keystore.Reader
	ring     *keyring.Ring
	log      *slog.Logger
	interval time.Duration
	now      func() time.Time

	maxRemovalShare float64
	confirmAfter    time.Duration

	reloadMu     sync.Mutex // serializes reloads
	lastRevision string     // guarded by reloadMu
	lastCheap    string     // the Reviser's token at the last good load; guarded by reloadMu
	// missing holds, while a removal is held, when each held key was first
	// seen missing in an unbroken run of suspect loads; guarded by reloadMu.
	missing     map[string]time.Time
	lastInvalid string // the invalid entries last logged; guarded by reloadMu

	statusMu  sync.Mutex // guards the status fields; never held during a load
	lastErr   error
	lastOK    time.Time
	failures  int64
	invalid   int
	held      int
	heldSince time.Time
	empty     bool // the last good load left no key to serve

	trigger chan struct{}
}

// loadTimeout bounds one load, so a hung backend cannot stall reloads.
const loadTimeout = 30 * time.Second

// Option configures a Refresher.
type Option func(*Refresher)

// WithClock injects the clock the removal guard measures with (tests).
func WithClock(now func() time.Time) Option { return func(r *Refresher) { r.now = now } }

// WithRemovalGuard sets when a reload that removes keys is held. A load that
// would remove more than maxShare (0 to 1) of the served keys, or all of
// them, is suspect: an emptied or half-restored store (a Vault dev server
// restarted, a wrong prefix) looks exactly like it, and applying it would
// make every replica fail its traffic at once. The served keys stay; only
// when a key has been missing from every load for at least confirmAfter, and
// from at least two loads in a row, is its removal applied. Removals within
// the share apply at once. The defaults are DefaultMaxRemovalShare and
// DefaultRemovalConfirmAfter.
func WithRemovalGuard(maxShare float64, confirmAfter time.Duration) Option {
	return func(r *Refresher) { r.maxRemovalShare, r.confirmAfter = maxShare, confirmAfter }
}

// New builds a refresher; interval <= 0 disables periodic reloads.
func New(store keystore.Reader, ring *keyring.Ring, log *slog.Logger, interval time.Duration, opts ...Option) *Refresher {
	r := &Refresher{store: store, ring: ring, log: log, interval: interval, now: time.Now,
		maxRemovalShare: DefaultMaxRemovalShare, confirmAfter: DefaultRemovalConfirmAfter,
		trigger: make(chan struct{}, 1)}
	for _, o := range opts {
		o(r)
	}
	return r
}

// Reload loads the store now, unless its cheap revision says nothing
// changed. On any failure the ring keeps its keys and the error is returned
// (and logged). New keys are derived in the background.
func (r *Refresher) Reload(ctx context.Context) error { return r.reload(ctx, false) }

// ForceReload loads the store now whatever its cheap revision says: for an
// operator's explicit request (SIGHUP), which must never be answered from a
// stat that can miss a change (same size, restored mtime).
func (r *Refresher) ForceReload(ctx context.Context) error { return r.reload(ctx, true) }

func (r *Refresher) reload(ctx context.Context, force bool) error {
	r.reloadMu.Lock()
	defer r.reloadMu.Unlock()
	lctx, cancel := context.WithTimeout(ctx, loadTimeout)
	defer cancel()
	holding := len(r.missing) > 0 // a held removal is re-examined every time
	var cheap string
	if rv, ok := r.store.(keystore.Reviser); ok && !force {
		if tok, err := rv.Revision(lctx); err == nil {
			if tok != "" && tok == r.lastCheap && !holding {
				r.setStatus(nil)
				return nil
			}
			cheap = tok
		}
	} else if ok {
		cheap, _ = rv.Revision(lctx)
	}
	snap, err := r.store.Load(lctx)
	if err == nil && snap.Revision != "" && snap.Revision == r.lastRevision && !holding {
		r.lastCheap = cheap
		r.setStatus(nil)
		return nil
	}
	var (
		st      keyring.Stats
		fresh   []*keyring.Key
		records []key.Record
		g       guardResult
	)
	if err == nil {
		r.logInvalid(snap.Invalid)
		records, g = r.guard(snap, r.now())
		st, fresh, err = r.ring.Replace(records)
	}
	if err != nil {
		lastOK := r.setStatus(err)
		attrs := []any{"err", err, "keys", len(r.ring.Keys())}
		if !lastOK.IsZero() {
			attrs = append(attrs, "stale_for", time.Since(lastOK).Round(time.Millisecond).String())
		}
		r.log.Error("keystore reload failed; serving the last good keys", attrs...)
		return err
	}
	if g.missing != nil {
		// Not the store's content: never skip the next load on its
		// revision, or the removal could never be confirmed.
		r.lastRevision, r.lastCheap = "", ""
	} else {
		r.lastRevision, r.lastCheap = snap.Revision, cheap
	}
	r.missing = g.missing
	r.setLoaded(nil, len(snap.Invalid), len(g.missing), g.since)
	if r.setEmpty(st.Total == 0) {
		// A new Vault, a wrong prefix: the service runs and answers, but
		// every call fails. Say so once, loudly, with where it looked.
		r.log.Warn("keystore is empty: no keys to serve; every call fails until keys are added there",
			"path", r.location())
	}
	if g.confirmed > 0 {
		r.log.Warn("keystore: applying a confirmed removal of keys", "removed", g.confirmed,
			"confirm_after", r.confirmAfter.String())
	}
	if len(g.missing) > 0 {
		level := slog.LevelDebug
		if g.changed {
			level = slog.LevelWarn
		}
		r.log.Log(ctx, level, "keystore: reload would remove too many keys; serving them until the removal is confirmed",
			"held", len(g.missing), "served", st.Total, "max_removal_share", r.maxRemovalShare,
			"held_since", g.since.UTC().Format(time.RFC3339), "confirm_after", r.confirmAfter.String())
	} else {
		r.log.Info("keystore loaded", "keys", st.Total, "active", st.ByState[key.Active],
			"decrypt_only", st.ByState[key.DecryptOnly], "disabled", st.ByState[key.Disabled],
			"invalid", len(snap.Invalid), "derivations_reused", st.Reused, "derivations_pending", st.Added)
	}
	if len(fresh) > 0 {
		go func() {
			start := time.Now()
			// Leave a core to requests: a key they need before the warm-up
			// reaches it is derived on demand anyway.
			workers := max(1, runtime.GOMAXPROCS(0)-1)
			if failed := keyring.Warm(context.WithoutCancel(ctx), fresh, workers); failed > 0 {
				r.log.Error("key derivation failed", "keys", failed)
			}
			r.log.Debug("keys derived", "keys", len(fresh), "took", time.Since(start))
		}()
	}
	return nil
}

// guardResult is what the removal guard decided for one load.
type guardResult struct {
	missing   map[string]time.Time // held keys and when each was first missed; nil when none
	since     time.Time            // the earliest of those
	confirmed int                  // held keys whose removal is applied now
	changed   bool                 // the held set differs from the previous load's
}

// guard returns the records to serve for snap: its valid records, plus the
// served record of every key whose entry turned invalid, plus the served
// record of every key the removal guard holds.
func (r *Refresher) guard(snap keystore.Snapshot, now time.Time) ([]key.Record, guardResult) {
	records := slices.Clone(snap.Records)
	listed := make(map[string]bool, len(records))
	for _, rec := range records {
		listed[rec.Fingerprint] = true
	}
	// A served key whose entry is now invalid is damaged, not removed: keep
	// its last good record rather than fail its traffic.
	for _, inv := range snap.Invalid {
		if inv.Fingerprint == "" || listed[inv.Fingerprint] {
			continue
		}
		if k, err := r.ring.Lookup(inv.Fingerprint); err == nil {
			records = append(records, k.Record())
			listed[inv.Fingerprint] = true
		}
	}
	served := r.ring.Keys()
	var gone []*keyring.Key
	for _, k := range served {
		if !listed[k.Fingerprint()] {
			gone = append(gone, k)
		}
	}
	if len(gone) == 0 || !r.suspect(len(gone), len(served)) {
		return records, guardResult{changed: len(r.missing) > 0}
	}
	g := guardResult{missing: map[string]time.Time{}}
	for _, k := range gone {
		fp := k.Fingerprint()
		since, seen := r.missing[fp]
		if seen && now.Sub(since) >= r.confirmAfter {
			g.confirmed++
			continue
		}
		if !seen {
			since = now
		}
		g.missing[fp] = since
		if g.since.IsZero() || since.Before(g.since) {
			g.since = since
		}
		records = append(records, k.Record())
	}
	if len(g.missing) == 0 {
		g.missing = nil
	}
	g.changed = !maps.EqualFunc(g.missing, r.missing, time.Time.Equal)
	return records, g
}

// suspect reports whether removing gone of served keys needs confirming.
func (r *Refresher) suspect(gone, served int) bool {
	return gone == served || float64(gone) > r.maxRemovalShare*float64(served)
}

// logInvalid logs the store's invalid entries when they differ from the last
// ones logged, so a refresh every few seconds does not repeat them.
func (r *Refresher) logInvalid(inv []keystore.InvalidRecord) {
	var b strings.Builder
	for _, i := range inv {
		fmt.Fprintf(&b, "%q %v\n", i.Name, i.Err)
	}
	if b.String() == r.lastInvalid {
		return
	}
	r.lastInvalid = b.String()
	const maxLogged = 20
	for n, i := range inv {
		if n == maxLogged {
			r.log.Warn("keystore: more invalid records not logged", "more", len(inv)-maxLogged)
			break
		}
		r.log.Warn("keystore: skipping an invalid record; the other keys are served", "name", i.Name, "err", i.Err)
	}
}

// Trigger asks Run for a reload as soon as possible (SIGHUP, for example).
func (r *Refresher) Trigger() {
	select {
	case r.trigger <- struct{}{}:
	default: // one is already pending
	}
}

// Run reloads on every interval tick and every Trigger until ctx ends.
func (r *Refresher) Run(ctx context.Context) {
	var tick <-chan time.Time
	if r.interval > 0 {
		t := time.NewTicker(r.interval)
		defer t.Stop()
		tick = t.C
	}
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick:
			_ = r.Reload(ctx) // logged inside; the last good keys stay
		case <-r.trigger:
			_ = r.ForceReload(ctx)
		}
	}
}

// setStatus records an attempt's outcome and returns the last success time.
func (r *Refresher) setStatus(err error) (lastOK time.Time) {
	r.statusMu.Lock()
	defer r.statusMu.Unlock()
	r.lastErr = err
	if err == nil {
		r.lastOK = time.Now()
	} else {
		r.failures++
	}
	return r.lastOK
}

// setLoaded records a good load and what it skipped and held.
func (r *Refresher) setLoaded(err error, invalid, held int, heldSince time.Time) {
	r.setStatus(err)
	r.statusMu.Lock()
	defer r.statusMu.Unlock()
	r.invalid, r.held, r.heldSince = invalid, held, heldSince
}

// setEmpty records whether the served set is empty and reports whether it
// just became so.
func (r *Refresher) setEmpty(empty bool) (became bool) {
	r.statusMu.Lock()
	defer r.statusMu.Unlock()
	became = empty && !r.empty
	r.empty = empty
	return became
}

// location is where the store keeps its keys, or "" if it cannot say.
func (r *Refresher) location() string {
	if l, ok := r.store.(keystore.Locator); ok {
		return l.Location()
	}
	return ""
}

// InvalidRecords is how many entries the last applied load skipped as
// invalid.
func (r *Refresher) InvalidRecords() int {
	r.statusMu.Lock()
	defer r.statusMu.Unlock()
	return r.invalid
}

// HeldRemoval reports the keys still served although the store no longer
// has them, awaiting confirmation, and since when; zero when none.
func (r *Refresher) HeldRemoval() (keys int, since time.Time) {
	r.statusMu.Lock()
	defer r.statusMu.Unlock()
	return r.held, r.heldSince
}

// Problems describes, one line each, what an operator should know about the
// keys being served: a failing store, a held removal, skipped records, no
// key at all. Empty when all is well. It never holds key material or
// fingerprints.
func (r *Refresher) Problems() []string {
	r.statusMu.Lock()
	defer r.statusMu.Unlock()
	var out []string
	if r.lastErr != nil {
		out = append(out, "keystore: the last reload failed; serving the last good keys")
	}
	if r.held > 0 {
		out = append(out, fmt.Sprintf("keystore: removal of %d keys held since %s until confirmed; they are still served",
			r.held, r.heldSince.UTC().Format(time.RFC3339)))
	}
	if r.invalid > 0 {
		out = append(out, fmt.Sprintf("keystore: %d invalid records skipped", r.invalid))
	}
	if r.empty {
		out = append(out, fmt.Sprintf("keystore: no keys at %s; every call fails until keys are added", r.location()))
	}
	return out
}

// Status is the refresher's health: when the keys were last confirmed current
// and the last error, if the latest attempt failed. It never waits for a
// load in progress.
func (r *Refresher) Status() (lastOK time.Time, lastErr error) {
	r.statusMu.Lock()
	defer r.statusMu.Unlock()
	return r.lastOK, r.lastErr
}

// Failures counts failed loads since start.
func (r *Refresher) Failures() int64 {
	r.statusMu.Lock()
	defer r.statusMu.Unlock()
	return r.failures
}
