// Package key owns the model of an ALE key: its record (the same shape in the
// embedded keystore, in Vault and from the Portal), its algorithm, its state in
// rotation, the record's JSON codec, and the one rule for what a fingerprint
// may be (ValidateFingerprint).
//
// # Fingerprints
//
// A fingerprint comes from the Portal (or alectl), travels in the
// sec-fingerprint header and names the key's secret in Vault
// ({prefix}/{fingerprint}). So it must be safe as a header value and as one
// path segment: 1 to 256 characters from A-Z a-z 0-9 and - _ . : + = ~, and
// neither "." nor "..". No "/", "%", backslash, whitespace or control
// character can appear, so a fingerprint can never name another key's path
// or leave the key prefix. Invalid fingerprints are refused, never encoded:
// every entrance (Portal adapter, sync, keystores, the API, the gateway)
// calls ValidateFingerprint.
//
// It holds no cipher state and does no cryptography; package suite turns a
// Record into a usable cipher. Key material stays in secret.Bytes and leaves it
// only in the record codec, which exists to write keystores.
package key

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/alecrypt/alecrypt/service/secret"
)

// Algorithm names a cipher suite as it is spelled in key records.
type Algorithm string

// The cipher suites a key can be used with.
const (
	// AES256CTR is the Enterprise Kitchen algorithm: PBKDF2-derived key,
	// 16-byte IV, no authentication.
	AES256CTR Algorithm = "aes-256-ctr"
	// AES256GCM is the authenticated option: 12-byte IV, AAD, tag appended.
	AES256GCM Algorithm = "aes-256-gcm"
)

// State is where a key stands in rotation.
type State string

// The key states.
const (
	// Active keys encrypt and decrypt.
	Active State = "active"
	// DecryptOnly keys are retired: old traffic still decrypts.
	DecryptOnly State = "decrypt-only"
	// Disabled keys do nothing.
	Disabled State = "disabled"
)

// Source says where a key came from.
const (
	SourcePortal = "portal"
	SourceLocal  = "local"
)

// KDFPBKDF2SHA256 is the only key derivation function EK defines.
const KDFPBKDF2SHA256 = "pbkdf2-sha256"

// Derivation limits. The floor keeps a typo from producing a trivially
// brute-forced key; the ceiling keeps one record from stalling startup (100k
// iterations cost about 16 ms on the reference machine).
const (
	MinIterations = 1000
	MaxIterations = 10_000_000
)

// Counter widths for aes-256-ctr (see suite for why both exist).
const (
	CounterBits64  = 64
	CounterBits128 = 128
)

// MaxFingerprintLen bounds fingerprints, which travel in HTTP headers.
const MaxFingerprintLen = 256

// FingerprintRule describes ValidateFingerprint's rule, for messages.
const FingerprintRule = "1-256 characters from A-Z a-z 0-9 - _ . : + = ~, not \".\" or \"..\""

// KDF says how the 32-byte AES key is derived from the Secret Key.
type KDF struct {
	// Name is KDFPBKDF2SHA256.
	Name string
	// Salt is used as its UTF-8 bytes, as EK clients do.
	Salt string
	// Iterations is the PBKDF2 iteration count.
	Iterations int
}

// Record is one key: metadata plus the Secret Key as the Portal issued it.
type Record struct {
	Fingerprint string
	Aliases     []string
	Algorithm   Algorithm
	// Secret is the Secret Key; PBKDF2 runs over its UTF-8 bytes.
	Secret secret.Bytes
	KDF    KDF
	// CounterBits is the CTR counter width, 64 or 128; zero means 64. Unused
	// for GCM.
	CounterBits int
	State       State
	// Version increases with every change the source makes to the record.
	Version   int64
	CreatedAt time.Time
	// NotAfter is when the key stops encrypting; it still decrypts old
	// traffic until its state says otherwise. Zero means never.
	NotAfter time.Time
	// Source is SourcePortal or SourceLocal.
	Source string
}

// ErrInvalidRecord is wrapped by every validation failure.
var ErrInvalidRecord = errors.New("invalid key record")

// ErrInvalidFingerprint is wrapped by ValidateFingerprint's errors.
var ErrInvalidFingerprint = errors.New("invalid fingerprint")

// Validate checks a record completely. Its errors name the fingerprint and
// the field, never the secret.
func (r Record) Validate() error {
	fail := func(format string, args ...any) error {
		return fmt.Errorf("%w %q: %s", ErrInvalidRecord, r.Fingerprint, fmt.Sprintf(format, args...))
	}
	if err := ValidateFingerprint(r.Fingerprint); err != nil {
		return fmt.Errorf("%w: %w", ErrInvalidRecord, err)
	}
	for _, a := range r.Aliases {
		if a == "" || len(a) > MaxFingerprintLen || strings.ContainsFunc(a, notPrintableASCII) {
			return fail("alias %q must be 1-%d printable ASCII characters", a, MaxFingerprintLen)
		}
	}
	switch r.Algorithm {
	case AES256CTR:
		if r.CounterBits != 0 && r.CounterBits != CounterBits64 && r.CounterBits != CounterBits128 {
			return fail("counter_bits must be 64 or 128, got %d", r.CounterBits)
		}
	case AES256GCM:
		if r.CounterBits != 0 {
			return fail("counter_bits applies to aes-256-ctr only")
		}
	default:
		return fail("unknown algorithm %q", r.Algorithm)
	}
	if r.Secret.IsZero() {
		return fail("secret is empty")
	}
	if r.KDF.Name != KDFPBKDF2SHA256 {
		return fail("unknown kdf %q", r.KDF.Name)
	}
	if r.KDF.Salt == "" {
		return fail("kdf salt is empty")
	}
	if r.KDF.Iterations < MinIterations || r.KDF.Iterations > MaxIterations {
		return fail("kdf iterations must be in [%d, %d], got %d", MinIterations, MaxIterations, r.KDF.Iterations)
	}
	switch r.State {
	case Active, DecryptOnly, Disabled:
	default:
		return fail("unknown state %q", r.State)
	}
	if r.Version < 0 {
		return fail("version is negative")
	}
	if r.Source != SourcePortal && r.Source != SourceLocal {
		return fail("source must be %q or %q, got %q", SourcePortal, SourceLocal, r.Source)
	}
	// The codec writes times as RFC 3339 in UTC, which has four-digit years.
	// A time that is in range only thanks to its zone offset would load but
	// could never be written back, breaking every later keystore update.
	if !encodableTime(r.CreatedAt) {
		return fail("created_at must be within years 0-9999 in UTC")
	}
	if !encodableTime(r.NotAfter) {
		return fail("not_after must be within years 0-9999 in UTC")
	}
	return nil
}

func encodableTime(t time.Time) bool {
	y := t.UTC().Year()
	return y >= 0 && y <= 9999
}

// ValidateFingerprint checks a fingerprint against the one rule (see the
// package doc): it must be usable as a header value and as a single Vault path
// segment, so it can never be a separator, an escape or a dot-segment. The
// error wraps ErrInvalidFingerprint and quotes (a prefix of) the value with
// %q, so a hostile value cannot forge log lines.
func ValidateFingerprint(fp string) error {
	if fp == "" || len(fp) > MaxFingerprintLen || fp == "." || fp == ".." || strings.ContainsFunc(fp, notFingerprintChar) {
		return fmt.Errorf("%w %q: want %s", ErrInvalidFingerprint, truncate(fp), FingerprintRule)
	}
	return nil
}

// notFingerprintChar reports the characters a fingerprint may not hold. The
// allowed set is RFC 3986's unreserved characters (what hex, base64url and
// the fixtures use) plus ':', '+' and '=' (standard base64 without '/',
// "sha256:..." prefixes); none of them is a path separator or an escape in a
// URL, a Vault path or a file name.
func notFingerprintChar(r rune) bool {
	switch {
	case 'a' <= r && r <= 'z', 'A' <= r && r <= 'Z', '0' <= r && r <= '9':
		return false
	}
	return !strings.ContainsRune("-_.:+=~", r)
}

func notPrintableASCII(r rune) bool { return r < 0x21 || r > 0x7e }

func truncate(s string) string {
	if len(s) > 40 {
		return s[:40] + "..."
	}
	return s
}

// EffectiveCounterBits is the CTR counter width with the default applied.
func (r Record) EffectiveCounterBits() int {
	if r.Algorithm == AES256CTR && r.CounterBits == 0 {
		return CounterBits64
	}
	return r.CounterBits
}

// CanEncrypt reports whether the key may seal new messages at time now.
func (r Record) CanEncrypt(now time.Time) bool {
	return r.State == Active && !r.Expired(now)
}

// Expired reports whether NotAfter has passed.
func (r Record) Expired(now time.Time) bool {
	return !r.NotAfter.IsZero() && !now.Before(r.NotAfter)
}

// SameMaterial reports whether two records derive the same cipher: same
// algorithm, counter width, secret and KDF. Keyrings use it to keep a derived
// key across reloads instead of running PBKDF2 again.
func (r Record) SameMaterial(o Record) bool {
	return r.Algorithm == o.Algorithm &&
		r.EffectiveCounterBits() == o.EffectiveCounterBits() &&
		r.KDF == o.KDF &&
		r.Secret.Equal(o.Secret)
}

// Equal reports whether two records are identical in every field, as they
// would be stored: metadata compared exactly (times by instant, a nil alias
// list equal to an empty one), the secret in constant time. counter_bits is
// compared as written, so 0 (the default) and an explicit 64 differ although
// they derive the same cipher (SameMaterial says that): a sync writes the
// Portal's exact record, and an import that would change the stored document
// is not "unchanged".
func (r Record) Equal(o Record) bool {
	return r.Fingerprint == o.Fingerprint &&
		slices.Equal(r.Aliases, o.Aliases) &&
		r.CounterBits == o.CounterBits &&
		r.State == o.State &&
		r.Version == o.Version &&
		r.CreatedAt.Equal(o.CreatedAt) &&
		r.NotAfter.Equal(o.NotAfter) &&
		r.Source == o.Source &&
		r.SameMaterial(o)
}

// Clone returns a copy that shares no slices with r.
func (r Record) Clone() Record {
	r.Aliases = slices.Clone(r.Aliases)
	return r
}

// HasAlias reports whether the record carries alias.
func (r Record) HasAlias(alias string) bool {
	return slices.Contains(r.Aliases, alias)
}
