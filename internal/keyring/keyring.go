// Package keyring owns the set of keys a service holds in memory: lookup by
// fingerprint, alias resolution to the primary key, and key derivation done
// once per key.
//
// Readers never take a lock: the key set is an immutable snapshot behind an
// atomic pointer, swapped whole by Replace. Derivation (PBKDF2) is lazy and
// deduplicated per key, can be warmed in the background with bounded
// parallelism, and survives reloads for records whose material did not change.
// The keyring never logs and never hands out key material.
package keyring

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/alecrypt/alecrypt/internal/key"
	"github.com/alecrypt/alecrypt/internal/suite"
)

var (
	// ErrUnknownKey means no key has the fingerprint or alias.
	ErrUnknownKey = errors.New("unknown key")
	// ErrNoPrimary means an alias exists but none of its keys may encrypt.
	ErrNoPrimary = errors.New("no active key for alias")
	// ErrDuplicate means two records share a fingerprint.
	ErrDuplicate = errors.New("duplicate fingerprint")
)

// Key is one key of a snapshot: its record and, on first use, its cipher.
// Keys are immutable; a reload produces new Keys.
type Key struct {
	rec key.Record
	d   *derivation
	use *Usage // shared with the keys of the same fingerprint in other snapshots
	// snap and now let Primary answer for the moment it is asked: whether
	// a key is primary depends on the clock (not_after), not only on the
	// records.
	snap *snapshot
	now  func() time.Time
}

// derivation is shared by the Keys of successive snapshots whose records have
// the same material, so a reload does not run PBKDF2 again.
type derivation struct {
	once   sync.Once
	cipher suite.Cipher
	err    error
	rec    key.Record
}

func (d *derivation) get() (suite.Cipher, error) {
	d.once.Do(func() { d.cipher, d.err = suite.Derive(d.rec) })
	return d.cipher, d.err
}

// Record returns the key's record. Its Secret redacts itself; callers outside
// keystores use the metadata only.
func (k *Key) Record() key.Record { return k.rec }

// Fingerprint is the key's fingerprint.
func (k *Key) Fingerprint() string { return k.rec.Fingerprint }

// String names the key by fingerprint. Without it, %v of a Key would print
// the record's fields, secret bytes included (fmt cannot reach the secret's
// own redacting String through an unexported field).
func (k *Key) String() string { return "key " + k.rec.Fingerprint }

// Primary reports whether the key is, now, the primary of at least one of
// its aliases in the snapshot it came from. It is computed when asked, by the
// rule Ring.Primary applies, so a key that passed not_after stops being
// primary (and the next one takes over) without a reload.
func (k *Key) Primary() bool {
	if k.snap == nil || k.rec.State != key.Active {
		return false
	}
	now := k.now()
	for _, a := range k.rec.Aliases {
		if k.snap.primary(a, now) == k {
			return true
		}
	}
	return false
}

// Usage is the key's usage counters in this process, kept across reloads.
func (k *Key) Usage() *Usage { return k.use }

// Cipher returns the derived cipher, deriving it on first use. Concurrent
// first uses wait for one derivation.
func (k *Key) Cipher() (suite.Cipher, error) { return k.d.get() }

type snapshot struct {
	byFingerprint map[string]*Key
	// byAlias lists each alias's keys that may become primary, best first.
	byAlias map[string][]*Key
	// aliasKnown holds every alias, including those with no active key.
	aliasKnown map[string]bool
	sorted     []*Key
}

// Ring is the key set. The zero value is not usable; call New.
type Ring struct {
	snap atomic.Pointer[snapshot]
	now  func() time.Time
	// replaceMu serializes writers only; readers never touch it.
	replaceMu sync.Mutex
}

// Option configures a Ring.
type Option func(*Ring)

// WithClock injects the clock used for expiry (tests).
func WithClock(now func() time.Time) Option { return func(r *Ring) { r.now = now } }

// New returns an empty ring.
func New(opts ...Option) *Ring {
	r := &Ring{now: time.Now}
	for _, o := range opts {
		o(r)
	}
	r.snap.Store(&snapshot{byFingerprint: map[string]*Key{}, byAlias: map[string][]*Key{}, aliasKnown: map[string]bool{}})
	return r
}

// Stats summarizes a snapshot.
type Stats struct {
	Total   int
	ByState map[key.State]int
	// Reused counts keys whose derivation was carried over from the previous
	// snapshot; Added counts keys that will need PBKDF2.
	Reused, Added int
}

// Replace swaps in a new key set. The records must be valid and have unique
// fingerprints; otherwise nothing changes and the error says why. It returns
// the keys that still need deriving, for Warm.
func (r *Ring) Replace(records []key.Record) (Stats, []*Key, error) {
	r.replaceMu.Lock()
	defer r.replaceMu.Unlock()
	old := r.snap.Load()
	next := &snapshot{
		byFingerprint: make(map[string]*Key, len(records)),
		byAlias:       map[string][]*Key{},
		aliasKnown:    map[string]bool{},
	}
	st := Stats{ByState: map[key.State]int{}}
	var fresh []*Key
	for _, rec := range records {
		if err := rec.Validate(); err != nil {
			return Stats{}, nil, err
		}
		if _, dup := next.byFingerprint[rec.Fingerprint]; dup {
			return Stats{}, nil, fmt.Errorf("%w %q", ErrDuplicate, rec.Fingerprint)
		}
		rec = rec.Clone()
		k := &Key{rec: rec, snap: next, now: r.now, use: &Usage{}}
		prev, ok := old.byFingerprint[rec.Fingerprint]
		if ok {
			k.use = prev.use
		}
		if ok && prev.rec.SameMaterial(rec) {
			k.d = prev.d
			st.Reused++
		} else {
			k.d = &derivation{rec: rec}
			fresh = append(fresh, k)
			st.Added++
		}
		next.byFingerprint[rec.Fingerprint] = k
		next.sorted = append(next.sorted, k)
		st.ByState[rec.State]++
		for _, a := range rec.Aliases {
			next.aliasKnown[a] = true
			if rec.State == key.Active {
				next.byAlias[a] = append(next.byAlias[a], k)
			}
		}
	}
	slices.SortFunc(next.sorted, func(a, b *Key) int { return cmp.Compare(a.rec.Fingerprint, b.rec.Fingerprint) })
	for _, keys := range next.byAlias {
		slices.SortStableFunc(keys, newestFirst)
	}
	st.Total = len(records)
	r.snap.Store(next)
	return st, fresh, nil
}

// newestFirst orders candidates for primary: newest created_at, then highest
// version, then fingerprint so the order is total and stable.
func newestFirst(a, b *Key) int {
	if c := b.rec.CreatedAt.Compare(a.rec.CreatedAt); c != 0 {
		return c
	}
	if c := cmp.Compare(b.rec.Version, a.rec.Version); c != 0 {
		return c
	}
	return cmp.Compare(a.rec.Fingerprint, b.rec.Fingerprint)
}

// Lookup returns the key with this fingerprint, whatever its state.
func (r *Ring) Lookup(fingerprint string) (*Key, error) {
	if k, ok := r.snap.Load().byFingerprint[fingerprint]; ok {
		return k, nil
	}
	return nil, ErrUnknownKey
}

// Primary returns the newest active, unexpired key carrying alias.
func (r *Ring) Primary(alias string) (*Key, error) {
	s := r.snap.Load()
	if k := s.primary(alias, r.now()); k != nil {
		return k, nil
	}
	if s.aliasKnown[alias] {
		return nil, ErrNoPrimary
	}
	return nil, ErrUnknownKey
}

// primary is alias's primary at now, or nil: the first candidate, best
// first, that may encrypt at now.
func (s *snapshot) primary(alias string, now time.Time) *Key {
	for _, k := range s.byAlias[alias] {
		if k.rec.CanEncrypt(now) {
			return k
		}
	}
	return nil
}

// Keys returns all keys sorted by fingerprint. The slice must not be modified.
func (r *Ring) Keys() []*Key { return r.snap.Load().sorted }

// CountByState counts the keys in each state (every state present, zero
// when no key has it), for metrics.
func (r *Ring) CountByState() map[key.State]int {
	counts := map[key.State]int{key.Active: 0, key.DecryptOnly: 0, key.Disabled: 0}
	for _, k := range r.snap.Load().sorted {
		counts[k.rec.State]++
	}
	return counts
}

// Warm derives keys in the background of the caller's choosing with at most
// workers PBKDF2 runs at a time (GOMAXPROCS when workers <= 0), so that a
// large key set becomes fast to use without blocking requests: a request for a
// key not yet warmed derives it itself, and the two never derive twice. It
// returns the number of keys whose derivation failed.
func Warm(ctx context.Context, keys []*Key, workers int) (failed int) {
	if workers <= 0 {
		workers = runtime.GOMAXPROCS(0)
	}
	var (
		wg      sync.WaitGroup
		nFailed atomic.Int64
		next    atomic.Int64
	)
	for range min(workers, len(keys)) {
		wg.Go(func() {
			for ctx.Err() == nil {
				i := int(next.Add(1)) - 1
				if i >= len(keys) {
					return
				}
				if _, err := keys[i].Cipher(); err != nil {
					nFailed.Add(1)
				}
			}
		})
	}
	wg.Wait()
	return int(nFailed.Load())
}
