package keyring

import (
	"sync/atomic"
	"time"
)

// Usage counts one key's successful operations in this process. It belongs
// to the fingerprint, not to a snapshot: Replace hands it from a key to its
// successor of the same fingerprint, so reloads (and changes of state or
// material) keep the counts.
//
// The hot path takes no lock: a count is one atomic add, and a last-use time
// is stored only when it moved on by at least a millisecond, so a key used
// from every core writes its timestamp at most a thousand times a second
// instead of once per call. Two calls racing may store their times out of
// order; the error is bounded by how far apart they ran (microseconds).
type Usage struct {
	encrypts, decrypts atomic.Uint64
	// Unix milliseconds of the last use; 0 means never.
	lastEncrypt, lastDecrypt atomic.Int64
}

// UsageSnapshot is a Usage read at one moment.
type UsageSnapshot struct {
	Encrypts, Decrypts       uint64
	LastEncrypt, LastDecrypt time.Time // zero: not since start
}

// Encrypted counts one successful encryption at now.
func (u *Usage) Encrypted(now time.Time) {
	u.encrypts.Add(1)
	touch(&u.lastEncrypt, now)
}

// Decrypted counts one successful decryption at now.
func (u *Usage) Decrypted(now time.Time) {
	u.decrypts.Add(1)
	touch(&u.lastDecrypt, now)
}

func touch(last *atomic.Int64, now time.Time) {
	ms := now.UnixMilli()
	if last.Load() < ms {
		last.Store(ms)
	}
}

// Snapshot reads the counts and times.
func (u *Usage) Snapshot() UsageSnapshot {
	return UsageSnapshot{
		Encrypts:    u.encrypts.Load(),
		Decrypts:    u.decrypts.Load(),
		LastEncrypt: fromMillis(u.lastEncrypt.Load()),
		LastDecrypt: fromMillis(u.lastDecrypt.Load()),
	}
}

func fromMillis(ms int64) time.Time {
	if ms == 0 {
		return time.Time{}
	}
	return time.UnixMilli(ms).UTC()
}

// EachUsage calls fn for every key of the current snapshot, in fingerprint
// order, with its usage (metrics.KeyUsageSource).
func (r *Ring) EachUsage(fn func(fingerprint string, encrypts, decrypts uint64, lastEncrypt, lastDecrypt time.Time)) {
	for _, k := range r.Keys() {
		u := k.use.Snapshot()
		fn(k.rec.Fingerprint, u.Encrypts, u.Decrypts, u.LastEncrypt, u.LastDecrypt)
	}
}
