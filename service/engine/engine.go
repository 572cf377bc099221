// Package engine owns the crypto operations of alecrypt: Encrypt, Decrypt and
// Resolve over a keyring, with the rules of key states, default keys, IV
// generation and plaintext checks.
//
// It is plain Go (no Connect, no generated code) so every transport (the
// Connect API, benchmarks, tests) runs the same rules. Its errors are the
// sentinels below, wrapped with context; the API layer maps them to wire codes
// in one place. Errors never contain key material or plaintext.
package engine

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"time"
	"unicode/utf8"

	"github.com/alecrypt/alecrypt/service/key"
	"github.com/alecrypt/alecrypt/service/keyring"
	"github.com/alecrypt/alecrypt/service/suite"
)

// The errors callers distinguish. Each maps to one Connect code and ALE code
// (see package api).
var (
	// ErrUnknownKey: no key has the fingerprint or alias (ALE 2).
	ErrUnknownKey = keyring.ErrUnknownKey
	// ErrKeyDisabled: the key exists but is disabled (ALE 2).
	ErrKeyDisabled = errors.New("key is disabled")
	// ErrKeyNotActive: the key may decrypt but not encrypt: decrypt-only or
	// past not_after; or an alias has no such key (ALE 2).
	ErrKeyNotActive = errors.New("key cannot encrypt")
	// ErrDecrypt: the message did not decrypt, authenticate or pass the
	// plaintext check. One error for all of these, so no oracle (ALE 2).
	ErrDecrypt = errors.New("unable to decrypt payload")
	// ErrKeyUnusable: the key's derivation failed (ALE 2). The record was
	// validated, so this is an internal fault worth alerting on.
	ErrKeyUnusable = errors.New("key cannot be derived")
	// ErrPermissionDenied: the caller may not use this key for this
	// operation. Authorizers wrap it.
	ErrPermissionDenied = errors.New("permission denied")
)

// Op is an operation an Authorizer decides on.
type Op string

// The operations.
const (
	OpEncrypt Op = "encrypt"
	OpDecrypt Op = "decrypt"
	OpResolve Op = "resolve"
	OpList    Op = "list"
)

// Authorizer decides whether the caller in ctx may apply op to a key. The
// engine asks it after resolving the key and before touching any cipher, so
// a denied call learns nothing but the denial.
type Authorizer interface {
	// Authorize returns nil or an error wrapping ErrPermissionDenied.
	Authorize(ctx context.Context, op Op, k *keyring.Key) error
	// DefaultAlias is the caller's default alias ("" for the service's).
	DefaultAlias(ctx context.Context) string
}

// FieldError reports a missing or unusable request field (ALE 1).
type FieldError struct {
	Field  string
	Reason string
}

func (e *FieldError) Error() string { return e.Field + ": " + e.Reason }

// Ref names a key: Fingerprint or Alias, or neither for the default key.
type Ref struct {
	Fingerprint string
	Alias       string
}

// Envelope is one sealed message: the EK triple.
type Envelope struct {
	IV          []byte
	Fingerprint string
	Message     []byte
}

// Format is a plaintext check Decrypt can apply.
type Format int

// Plaintext checks.
const (
	FormatAny Format = iota
	FormatUTF8
	FormatJSON
)

// Engine runs the operations. It is safe for concurrent use.
type Engine struct {
	ring         *keyring.Ring
	rand         io.Reader
	now          func() time.Time
	defaultAlias string
	authz        Authorizer // nil: everything allowed
}

// Option configures an Engine.
type Option func(*Engine)

// WithRand replaces crypto/rand as the IV source (deterministic tests only).
func WithRand(r io.Reader) Option { return func(e *Engine) { e.rand = r } }

// WithClock injects the clock used for expiry checks.
func WithClock(now func() time.Time) Option { return func(e *Engine) { e.now = now } }

// WithDefaultAlias sets the alias an empty Ref resolves to.
func WithDefaultAlias(alias string) Option { return func(e *Engine) { e.defaultAlias = alias } }

// WithAuthorizer makes every operation ask a (nil means allow all).
func WithAuthorizer(a Authorizer) Option { return func(e *Engine) { e.authz = a } }

// DefaultAlias is the alias an empty Ref resolves to unless configured; the
// key created on first start carries it.
const DefaultAlias = "default"

// New returns an engine over ring.
func New(ring *keyring.Ring, opts ...Option) *Engine {
	e := &Engine{ring: ring, rand: rand.Reader, now: time.Now, defaultAlias: DefaultAlias}
	for _, o := range opts {
		o(e)
	}
	return e
}

// Resolve returns the key a reference names: the exact key for a fingerprint
// (in any state), the primary for an alias; if the caller may resolve it.
func (e *Engine) Resolve(ctx context.Context, ref Ref) (*keyring.Key, error) {
	k, err := e.resolve(ctx, ref)
	if err != nil {
		return nil, err
	}
	if err := e.authorize(ctx, OpResolve, k); err != nil {
		return nil, err
	}
	return k, nil
}

// Authorize asks the configured Authorizer; the api layer uses it for
// operations on key sets (listing).
func (e *Engine) Authorize(ctx context.Context, op Op, k *keyring.Key) error {
	return e.authorize(ctx, op, k)
}

func (e *Engine) authorize(ctx context.Context, op Op, k *keyring.Key) error {
	if e.authz == nil {
		return nil
	}
	return e.authz.Authorize(ctx, op, k)
}

func (e *Engine) resolve(ctx context.Context, ref Ref) (*keyring.Key, error) {
	switch {
	case ref.Fingerprint != "" && ref.Alias != "":
		return nil, &FieldError{Field: "key", Reason: "set fingerprint or alias, not both"}
	case ref.Fingerprint != "":
		k, err := e.ring.Lookup(ref.Fingerprint)
		if err != nil {
			return nil, fmt.Errorf("fingerprint %q: %w", ref.Fingerprint, err)
		}
		return k, nil
	default:
		alias := ref.Alias
		if alias == "" && e.authz != nil {
			alias = e.authz.DefaultAlias(ctx)
		}
		if alias == "" {
			alias = e.defaultAlias
		}
		k, err := e.ring.Primary(alias)
		switch {
		case errors.Is(err, keyring.ErrNoPrimary):
			return nil, fmt.Errorf("alias %q: %w", alias, ErrKeyNotActive)
		case err != nil:
			return nil, fmt.Errorf("alias %q: %w", alias, err)
		}
		return k, nil
	}
}

// Encrypt seals plaintext under the referenced key with a fresh random IV.
func (e *Engine) Encrypt(ctx context.Context, ref Ref, plaintext, aad []byte) (Envelope, *keyring.Key, error) {
	k, err := e.resolve(ctx, ref)
	if err != nil {
		return Envelope{}, nil, err
	}
	if err := e.authorize(ctx, OpEncrypt, k); err != nil {
		return Envelope{}, nil, err
	}
	rec := k.Record()
	switch {
	case rec.State == key.Disabled:
		return Envelope{}, nil, fmt.Errorf("encrypt with %q: %w", rec.Fingerprint, ErrKeyDisabled)
	case !rec.CanEncrypt(e.now()):
		return Envelope{}, nil, fmt.Errorf("encrypt with %q (%s): %w", rec.Fingerprint, rec.State, ErrKeyNotActive)
	}
	c, err := cipherOf(k)
	if err != nil {
		return Envelope{}, nil, err
	}
	if len(aad) != 0 && c.Overhead() == 0 {
		return Envelope{}, nil, &FieldError{Field: "associated_data", Reason: suite.ErrAADUnsupported.Error()}
	}
	// A fresh IV from crypto/rand for every message: CTR and GCM both lose
	// confidentiality completely if an IV repeats under one key.
	iv := make([]byte, c.IVSize(), c.IVSize()+len(plaintext)+c.Overhead())
	if _, err := io.ReadFull(e.rand, iv); err != nil {
		return Envelope{}, nil, fmt.Errorf("encrypt: reading random IV: %w", err)
	}
	// IV and ciphertext share one allocation; the full-slice expression keeps
	// the IV's capacity from being written by Seal.
	msg, err := c.Seal(iv[len(iv):], iv[:len(iv):len(iv)], plaintext, aad)
	if err != nil {
		return Envelope{}, nil, fmt.Errorf("encrypt with %q: %w", rec.Fingerprint, err)
	}
	return Envelope{IV: iv[:len(iv):len(iv)], Fingerprint: rec.Fingerprint, Message: msg}, k, nil
}

// Decrypt opens an envelope. Missing or unusable fields are FieldErrors; an
// unknown key is ErrUnknownKey; everything that goes wrong with the message
// itself is ErrDecrypt.
func (e *Engine) Decrypt(ctx context.Context, env Envelope, aad []byte, expect Format) ([]byte, *keyring.Key, error) {
	if env.Fingerprint == "" {
		return nil, nil, &FieldError{Field: "envelope.fingerprint", Reason: "missing"}
	}
	if len(env.IV) == 0 {
		return nil, nil, &FieldError{Field: "envelope.iv", Reason: "missing"}
	}
	k, err := e.ring.Lookup(env.Fingerprint)
	if err != nil {
		return nil, nil, fmt.Errorf("fingerprint %q: %w", env.Fingerprint, err)
	}
	if err := e.authorize(ctx, OpDecrypt, k); err != nil {
		return nil, nil, err
	}
	rec := k.Record()
	if rec.State == key.Disabled {
		return nil, nil, fmt.Errorf("decrypt with %q: %w", rec.Fingerprint, ErrKeyDisabled)
	}
	c, err := cipherOf(k)
	if err != nil {
		return nil, nil, err
	}
	if len(env.IV) != c.IVSize() {
		return nil, nil, &FieldError{Field: "envelope.iv", Reason: fmt.Sprintf("must be %d bytes for %s, got %d", c.IVSize(), rec.Algorithm, len(env.IV))}
	}
	if len(aad) != 0 && c.Overhead() == 0 {
		return nil, nil, &FieldError{Field: "associated_data", Reason: suite.ErrAADUnsupported.Error()}
	}
	pt, err := c.Open(make([]byte, 0, len(env.Message)), env.IV, env.Message, aad)
	if err != nil {
		return nil, nil, fmt.Errorf("decrypt with %q: %w", rec.Fingerprint, ErrDecrypt)
	}
	if !matches(pt, expect) {
		// Word for word the error of a failed Open: which check failed must
		// not show, even in a log.
		return nil, nil, fmt.Errorf("decrypt with %q: %w", rec.Fingerprint, ErrDecrypt)
	}
	return pt, k, nil
}

func cipherOf(k *keyring.Key) (suite.Cipher, error) {
	c, err := k.Cipher()
	if err != nil {
		return nil, fmt.Errorf("key %q: %w: %v", k.Fingerprint(), ErrKeyUnusable, err)
	}
	return c, nil
}

// matches applies the plaintext check. CTR decrypts any bytes under any key,
// so for CTR this is the only way to notice a wrong key or a tampered message.
func matches(pt []byte, f Format) bool {
	switch f {
	case FormatUTF8:
		return utf8.Valid(pt)
	case FormatJSON:
		// A JSON text is UTF-8 (RFC 8259 §8.1), and json.Valid alone
		// accepts any byte inside a string: random bytes between two
		// quotes would pass at 222/256 per byte instead of about 0.45.
		return utf8.Valid(pt) && json.Valid(pt)
	default:
		return true
	}
}
