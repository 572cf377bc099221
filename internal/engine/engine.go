// Package engine owns the crypto operations of alecrypt: Encrypt, Decrypt and
// Resolve over a keyring, with the rules of key states, default keys, IV
// generation and plaintext checks.
//
// It is plain Go (no Connect, no generated code) so every transport (the
// Connect API, benchmarks, tests) runs the same rules. Its errors are the
// sentinels below, wrapped with context; the API layer maps them to wire codes
// in one place. Errors never contain key material or plaintext.
//
// # Usage
//
// A key's usage counters (keyring.Usage: the "is a key still used?" signal
// of retirement) count only operations on real content, so that nobody can
// make a retired key look used with messages that prove nothing:
//
//   - A decryption counts when its message was not empty. An empty
//     aes-256-ctr message "opens" to nothing under any IV: anyone who knows
//     a fingerprint can forge it (a gateway forwards an empty body as
//     such), so it counts nothing. An aes-256-gcm message always carries its
//     16-byte tag, so every successful GCM open verified a tag and counts,
//     an empty plaintext included (a client's sealed empty body is real use
//     of the key).
//   - An encryption counts when it had plaintext to seal. Sealing nothing is
//     how a gateway asks whether a key can encrypt now (before a WebSocket
//     upgrade, and before forwarding a request whose response it must
//     seal); under GCM the tag-only message it makes counts when opened.
//
// Operations that do not count still run every check of a real one
// (policy, state, IV) and are audited like any other.
package engine

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"time"
	"unicode/utf8"

	"github.com/alecrypt/alecrypt/internal/jsonscan"
	"github.com/alecrypt/alecrypt/internal/key"
	"github.com/alecrypt/alecrypt/internal/keyring"
	"github.com/alecrypt/alecrypt/internal/suite"
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

// Authorizer decides whether the caller in ctx may use a key.
//
// The engine asks it before anything else about the key reaches the caller:
// before a missing key is reported (NotFound), before the key's state is
// checked (FailedPrecondition) and before any cipher is touched. A caller
// therefore learns whether a key exists, and in what state, only for keys
// its Authorizer lets it use; for every other reference it gets the same
// ErrPermissionDenied, so the answer cannot serve as an existence oracle
// across tenants.
type Authorizer interface {
	// Authorize decides on ref, the reference as the request named it
	// (the default alias filled in), and k, the key it names: the key with
	// that fingerprint, or the alias's primary; nil when there is none. It
	// returns nil or an error wrapping ErrPermissionDenied, and must decide
	// the same way whether k is nil or not when the caller may not use the
	// name (that is the point of asking before the lookup's answer).
	Authorize(ctx context.Context, op Op, ref Ref, k *keyring.Key) error
	// AuthorizeOp decides whether the caller may apply op to any key at
	// all; listing asks it before filtering keys one by one.
	AuthorizeOp(ctx context.Context, op Op) error
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
	return e.lookup(ctx, OpResolve, ref)
}

// Authorize asks the configured Authorizer about one key; the api layer uses
// it for operations on key sets (listing) and for listing filters.
func (e *Engine) Authorize(ctx context.Context, op Op, ref Ref, k *keyring.Key) error {
	if e.authz == nil {
		return nil
	}
	return e.authz.Authorize(ctx, op, ref, k)
}

// AuthorizeOp asks the configured Authorizer whether the caller may apply
// op to any key at all.
func (e *Engine) AuthorizeOp(ctx context.Context, op Op) error {
	if e.authz == nil {
		return nil
	}
	return e.authz.AuthorizeOp(ctx, op)
}

// lookup finds the key ref names (the exact key for a fingerprint, the
// primary for an alias, the default alias for neither) and authorizes op on
// it. Authorization comes first: a lookup's failure (unknown key, alias
// without an active key) is returned only to a caller allowed to use the
// name, so a denied caller gets ErrPermissionDenied whether or not the key
// exists.
func (e *Engine) lookup(ctx context.Context, op Op, ref Ref) (*keyring.Key, error) {
	k, ref, err := e.find(ctx, ref)
	if isFieldError(err) {
		return nil, err
	}
	if aerr := e.Authorize(ctx, op, ref, k); aerr != nil {
		return nil, aerr
	}
	return k, err
}

// isFieldError reports whether err is a FieldError. The nil check keeps the
// hot path (no error) free of errors.As, whose target escapes to the heap.
func isFieldError(err error) bool {
	if err == nil {
		return false
	}
	var fe *FieldError
	return errors.As(err, &fe)
}

// find is lookup without the authorization: the key ref names and ref with
// the default alias filled in. Its lookup failures must reach the caller
// only once the Authorizer has allowed ref; a FieldError (a reference no key
// can have) may be returned at once, since it says nothing about any key.
func (e *Engine) find(ctx context.Context, ref Ref) (*keyring.Key, Ref, error) {
	var (
		k   *keyring.Key
		err error
	)
	switch {
	case ref.Fingerprint != "" && ref.Alias != "":
		return nil, ref, &FieldError{Field: "key", Reason: "set fingerprint or alias, not both"}
	case ref.Fingerprint != "":
		if err := checkFingerprint("key.fingerprint", ref.Fingerprint); err != nil {
			return nil, ref, err
		}
		if k, err = e.ring.Lookup(ref.Fingerprint); err != nil {
			k, err = nil, fmt.Errorf("fingerprint %q: %w", ref.Fingerprint, err)
		}
	default:
		if ref.Alias == "" && e.authz != nil {
			ref.Alias = e.authz.DefaultAlias(ctx)
		}
		if ref.Alias == "" {
			ref.Alias = e.defaultAlias
		}
		k, err = e.ring.Primary(ref.Alias)
		switch {
		case errors.Is(err, keyring.ErrNoPrimary):
			k, err = nil, fmt.Errorf("alias %q: %w", ref.Alias, ErrKeyNotActive)
		case err != nil:
			k, err = nil, fmt.Errorf("alias %q: %w", ref.Alias, err)
		}
	}
	return k, ref, err
}

// Encrypt seals plaintext under the referenced key with a fresh random IV.
func (e *Engine) Encrypt(ctx context.Context, ref Ref, plaintext, aad []byte) (Envelope, *keyring.Key, error) {
	k, err := e.lookup(ctx, OpEncrypt, ref)
	if err != nil {
		return Envelope{}, nil, err
	}
	env, err := e.seal(k, plaintext, aad)
	if err != nil {
		return Envelope{}, nil, err
	}
	return env, k, nil
}

// seal encrypts under k, which the caller was allowed to use, if its state
// lets it encrypt now, and counts the use when there was plaintext to seal
// (see the package doc, "Usage").
func (e *Engine) seal(k *keyring.Key, plaintext, aad []byte) (Envelope, error) {
	now := e.now()
	c, err := e.sealer(k, aad, now)
	if err != nil {
		return Envelope{}, err
	}
	rec := k.Record()
	// A fresh IV from crypto/rand for every message: CTR and GCM both lose
	// confidentiality completely if an IV repeats under one key.
	iv := make([]byte, c.IVSize(), c.IVSize()+len(plaintext)+c.Overhead())
	if _, err := io.ReadFull(e.rand, iv); err != nil {
		return Envelope{}, fmt.Errorf("encrypt: reading random IV: %w", err)
	}
	// IV and ciphertext share one allocation; the full-slice expression keeps
	// the IV's capacity from being written by Seal.
	msg, err := c.Seal(iv[len(iv):], iv[:len(iv):len(iv)], plaintext, aad)
	if err != nil {
		return Envelope{}, fmt.Errorf("encrypt with %q: %w", rec.Fingerprint, err)
	}
	if len(plaintext) > 0 {
		k.Usage().Encrypted(now)
	}
	return Envelope{IV: iv[:len(iv):len(iv)], Fingerprint: rec.Fingerprint, Message: msg}, nil
}

// Decrypt opens an envelope. Missing fields are FieldErrors; a key the
// caller may not use is ErrPermissionDenied, present or not; an unknown key
// is ErrUnknownKey; everything that goes wrong with the message itself is
// ErrDecrypt.
func (e *Engine) Decrypt(ctx context.Context, env Envelope, aad []byte, expect Format) ([]byte, *keyring.Key, error) {
	if err := checkEnvelope(env); err != nil {
		return nil, nil, err
	}
	k, err := e.lookup(ctx, OpDecrypt, Ref{Fingerprint: env.Fingerprint})
	if err != nil {
		return nil, nil, err
	}
	pt, err := e.open(k, env, aad, expect)
	if err != nil {
		return nil, nil, err
	}
	return pt, k, nil
}

// Rewrap opens env and seals its plaintext under the key target names (the
// primary for an alias), with a fresh IV; the plaintext never leaves the
// engine and is cleared once sealed. It needs OpDecrypt on the envelope's
// key and OpEncrypt on the target. Both are authorized before either
// lookup's failure is reported: a caller refused either reference gets
// ErrPermissionDenied whether or not either key exists, and learns of a
// missing or unusable key only when it may use both names. From a key that
// does not authenticate (aes-256-ctr) into one that does, expect is required
// (a FieldError otherwise, see checkLaundering). It returns the new envelope,
// the key that opened env and the key that sealed it.
func (e *Engine) Rewrap(ctx context.Context, env Envelope, target Ref, aad []byte, expect Format) (Envelope, *keyring.Key, *keyring.Key, error) {
	if err := checkEnvelope(env); err != nil {
		return Envelope{}, nil, nil, err
	}
	srcRef := Ref{Fingerprint: env.Fingerprint}
	src, _, srcErr := e.find(ctx, srcRef)
	dst, dstRef, dstErr := e.find(ctx, target)
	if isFieldError(dstErr) {
		return Envelope{}, nil, nil, dstErr
	}
	if err := e.Authorize(ctx, OpDecrypt, srcRef, src); err != nil {
		return Envelope{}, nil, nil, err
	}
	if err := e.Authorize(ctx, OpEncrypt, dstRef, dst); err != nil {
		return Envelope{}, nil, nil, err
	}
	if srcErr != nil {
		return Envelope{}, nil, nil, srcErr
	}
	if dstErr != nil {
		return Envelope{}, nil, nil, dstErr
	}
	// A target that cannot seal is refused before anything is decrypted.
	sealer, err := e.sealer(dst, aad, e.now())
	if err != nil {
		return Envelope{}, nil, nil, err
	}
	if err := checkLaundering(src, dst, sealer, expect); err != nil {
		return Envelope{}, nil, nil, err
	}
	pt, err := e.open(src, env, aad, expect)
	if err != nil {
		return Envelope{}, nil, nil, err
	}
	// The plaintext lives only between open and seal; clearing it shortens
	// the time it sits in the heap (a best effort: Go may have copied it).
	defer clear(pt)
	out, err := e.seal(dst, pt, aad)
	if err != nil {
		return Envelope{}, nil, nil, err
	}
	return out, src, dst, nil
}

// checkLaundering refuses to move an envelope from a key that cannot tell
// a wrong key from the right one (aes-256-ctr opens any bytes under any key)
// to one that authenticates, without a plaintext check: the garbage a wrong
// key or a modified message decrypts to would come out sealed under a valid
// tag, and every later Decrypt would vouch for it. The check (expect) is the
// only evidence the source can give that the plaintext is the one sealed.
func checkLaundering(src, dst *keyring.Key, sealer suite.Cipher, expect Format) error {
	if expect != FormatAny || sealer.Overhead() == 0 {
		return nil
	}
	opener, err := cipherOf(src)
	if err != nil {
		return err
	}
	if opener.Overhead() != 0 {
		return nil
	}
	return &FieldError{Field: "expect", Reason: fmt.Sprintf("required to rewrap from %s, which cannot detect a wrong key, into %s, which would authenticate whatever it decrypted: set expect to JSON or UTF-8", src.Record().Algorithm, dst.Record().Algorithm)}
}

// sealer is the cipher to seal under k at now with aad, or why k cannot.
func (e *Engine) sealer(k *keyring.Key, aad []byte, now time.Time) (suite.Cipher, error) {
	rec := k.Record()
	switch {
	case rec.State == key.Disabled:
		return nil, fmt.Errorf("encrypt with %q: %w", rec.Fingerprint, ErrKeyDisabled)
	case !rec.CanEncrypt(now):
		return nil, fmt.Errorf("encrypt with %q (%s): %w", rec.Fingerprint, rec.State, ErrKeyNotActive)
	}
	c, err := cipherOf(k)
	if err != nil {
		return nil, err
	}
	if len(aad) != 0 && c.Overhead() == 0 {
		return nil, &FieldError{Field: "associated_data", Reason: suite.ErrAADUnsupported.Error()}
	}
	return c, nil
}

// checkEnvelope refuses an envelope no key could open, before any lookup.
func checkEnvelope(env Envelope) error {
	if env.Fingerprint == "" {
		return &FieldError{Field: "envelope.fingerprint", Reason: "missing"}
	}
	if err := checkFingerprint("envelope.fingerprint", env.Fingerprint); err != nil {
		return err
	}
	if len(env.IV) == 0 {
		return &FieldError{Field: "envelope.iv", Reason: "missing"}
	}
	return nil
}

// open decrypts env with k, which the caller was allowed to use, if its
// state lets it decrypt, and counts the use when the message carried
// content (see the package doc, "Usage").
func (e *Engine) open(k *keyring.Key, env Envelope, aad []byte, expect Format) ([]byte, error) {
	rec := k.Record()
	if rec.State == key.Disabled {
		return nil, fmt.Errorf("decrypt with %q: %w", rec.Fingerprint, ErrKeyDisabled)
	}
	c, err := cipherOf(k)
	if err != nil {
		return nil, err
	}
	if len(env.IV) != c.IVSize() {
		return nil, &FieldError{Field: "envelope.iv", Reason: fmt.Sprintf("must be %d bytes for %s, got %d", c.IVSize(), rec.Algorithm, len(env.IV))}
	}
	if len(aad) != 0 && c.Overhead() == 0 {
		return nil, &FieldError{Field: "associated_data", Reason: suite.ErrAADUnsupported.Error()}
	}
	pt, err := c.Open(make([]byte, 0, len(env.Message)), env.IV, env.Message, aad)
	if err != nil {
		return nil, fmt.Errorf("decrypt with %q: %w", rec.Fingerprint, ErrDecrypt)
	}
	if !matches(pt, expect) {
		// Word for word the error of a failed Open: which check failed must
		// not show, even in a log.
		return nil, fmt.Errorf("decrypt with %q: %w", rec.Fingerprint, ErrDecrypt)
	}
	if len(env.Message) > 0 {
		k.Usage().Decrypted(e.now())
	}
	return pt, nil
}

// checkFingerprint refuses a fingerprint no key can have before it is looked
// up: an unusable header (ALE 1), not an unknown key (ALE 2). The reason
// states the rule and does not echo the value.
func checkFingerprint(field, fp string) error {
	if key.ValidateFingerprint(fp) != nil {
		return &FieldError{Field: field, Reason: "not a valid fingerprint (" + key.FingerprintRule + ")"}
	}
	return nil
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
		// jsonscan.Valid is json.Valid, faster.
		return utf8.Valid(pt) && jsonscan.Valid(pt)
	default:
		return true
	}
}
