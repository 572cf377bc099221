// Package keystore owns the contract between alecryptd and the places keys are
// stored (the embedded file, Vault), and the loop that keeps a keyring in step
// with a store.
//
// A store only reads; how keys get into it (alectl, alesync) is the store's own
// business. The refresher never lets a failed or invalid load change the keys
// being served: the last good set stays until a good one replaces it.
package keystore

import (
	"context"
	"errors"
	"log/slog"
	"runtime"
	"sync"
	"time"

	"github.com/alecrypt/alecrypt/service/key"
	"github.com/alecrypt/alecrypt/service/keyring"
)

// Snapshot is the full content of a store at one moment.
type Snapshot struct {
	Records []key.Record
	// Revision changes whenever the content may have changed; equal
	// revisions mean the refresher can skip the reload.
	Revision string
}

// Reader is a keystore as alecryptd sees it.
type Reader interface {
	// Load returns every record. It fails as a whole: a store with one
	// invalid record returns an error, never a partial set.
	Load(ctx context.Context) (Snapshot, error)
}

// Reviser is implemented by stores that can tell cheaply whether their
// content may have changed (a file's stat, say). The refresher asks it first
// and skips Load when the answer equals the revision it last loaded, so an
// idle service does not re-read and re-parse thousands of keys every tick.
type Reviser interface {
	// Revision returns a token that changes whenever the content may have
	// changed; it need not equal Snapshot.Revision.
	Revision(ctx context.Context) (string, error)
}

// ErrNotFound is returned by Load when the store does not exist yet.
var ErrNotFound = errors.New("keystore not found")

// Refresher loads a store into a ring, once and then on an interval or on
// demand.
type Refresher struct {
	store    Reader
	ring     *keyring.Ring
	log      *slog.Logger
	interval time.Duration

	reloadMu     sync.Mutex // serializes reloads
	lastRevision string     // guarded by reloadMu
	lastCheap    string     // the Reviser's token at the last good load; guarded by reloadMu

	statusMu sync.Mutex // guards the status fields; never held during a load
	lastErr  error
	lastOK   time.Time
	failures int64

	trigger chan struct{}
}

// LoadTimeout bounds one load, so a hung backend cannot stall reloads.
const LoadTimeout = 30 * time.Second

// NewRefresher builds a refresher; interval <= 0 disables periodic reloads.
func NewRefresher(store Reader, ring *keyring.Ring, log *slog.Logger, interval time.Duration) *Refresher {
	return &Refresher{store: store, ring: ring, log: log, interval: interval, trigger: make(chan struct{}, 1)}
}

// Reload loads the store now. On any failure the ring keeps its keys and the
// error is returned (and logged). New keys are derived in the background.
func (r *Refresher) Reload(ctx context.Context) error {
	r.reloadMu.Lock()
	defer r.reloadMu.Unlock()
	lctx, cancel := context.WithTimeout(ctx, LoadTimeout)
	defer cancel()
	var cheap string
	if rv, ok := r.store.(Reviser); ok {
		if tok, err := rv.Revision(lctx); err == nil {
			if tok != "" && tok == r.lastCheap {
				r.setStatus(nil)
				return nil
			}
			cheap = tok
		}
	}
	snap, err := r.store.Load(lctx)
	if err == nil && snap.Revision != "" && snap.Revision == r.lastRevision {
		r.lastCheap = cheap
		r.setStatus(nil)
		return nil
	}
	var st keyring.Stats
	var fresh []*keyring.Key
	if err == nil {
		st, fresh, err = r.ring.Replace(snap.Records)
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
	r.lastRevision, r.lastCheap = snap.Revision, cheap
	r.setStatus(nil)
	r.log.Info("keystore loaded", "keys", st.Total, "active", st.ByState[key.Active],
		"decrypt_only", st.ByState[key.DecryptOnly], "disabled", st.ByState[key.Disabled],
		"derivations_reused", st.Reused, "derivations_pending", st.Added)
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
		case <-r.trigger:
		}
		_ = r.Reload(ctx) // logged inside; the last good keys stay
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
