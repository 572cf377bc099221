// Package keytest builds valid key records for tests, so every test file
// starts from the same record instead of writing its own literal.
//
// Records are cheap to derive (the fewest PBKDF2 iterations allowed) and
// their secrets contain Canary, which a test can look for in logs, errors
// and output that must never show a secret. It is for tests only.
package keytest

import (
	"time"

	"github.com/alecrypt/alecrypt/internal/key"
	"github.com/alecrypt/alecrypt/service/secret"
)

// Canary is part of every secret Record builds. It is deliberately not
// shaped like a real key.
const Canary = "CANARY-keytest-not-a-real-secret-5e0c"

// Created is the default created_at.
var Created = time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)

// Option changes a record Record builds; any func(*key.Record) is one.
type Option = func(*key.Record)

// Record returns a valid record named fp: aes-256-ctr (default counter
// width), alias "default", secret Canary + "-" + fp, PBKDF2-SHA256 over
// salt "salt-" + fp with key.MinIterations, active, version 1, created at
// Created, source local, no not_after. Options apply in order.
func Record(fp string, opts ...Option) key.Record {
	r := key.Record{
		Fingerprint: fp,
		Aliases:     []string{"default"},
		Algorithm:   key.AES256CTR,
		Secret:      secret.FromString(Canary + "-" + fp),
		KDF:         key.KDF{Name: key.KDFPBKDF2SHA256, Salt: "salt-" + fp, Iterations: key.MinIterations},
		State:       key.Active,
		Version:     1,
		CreatedAt:   Created,
		Source:      key.SourceLocal,
	}
	for _, o := range opts {
		o(&r)
	}
	return r
}

// Aliases sets the aliases (none when called without any).
func Aliases(aliases ...string) Option { return func(r *key.Record) { r.Aliases = aliases } }

// State sets the state.
func State(s key.State) Option { return func(r *key.Record) { r.State = s } }

// Version sets the version.
func Version(v int64) Option { return func(r *key.Record) { r.Version = v } }

// CreatedAt sets created_at.
func CreatedAt(t time.Time) Option { return func(r *key.Record) { r.CreatedAt = t } }

// Source sets the source.
func Source(s string) Option { return func(r *key.Record) { r.Source = s } }

// Secret sets the Secret Key.
func Secret(s string) Option { return func(r *key.Record) { r.Secret = secret.FromString(s) } }

// Algorithm sets the algorithm; counter_bits is cleared for anything but
// aes-256-ctr, where it does not apply.
func Algorithm(a key.Algorithm) Option {
	return func(r *key.Record) {
		r.Algorithm = a
		if a != key.AES256CTR {
			r.CounterBits = 0
		}
	}
}

// CounterBits sets counter_bits (aes-256-ctr only).
func CounterBits(n int) Option { return func(r *key.Record) { r.CounterBits = n } }

// Salt sets the PBKDF2 salt.
func Salt(s string) Option { return func(r *key.Record) { r.KDF.Salt = s } }
