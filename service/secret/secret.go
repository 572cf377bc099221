// Package secret owns the type that holds key material in memory.
//
// A Bytes value never prints, logs or marshals its contents: String, GoString,
// Format, LogValue and MarshalJSON all redact, so an accidental %v, slog
// attribute or json.Marshal of a struct holding a key cannot leak it. The
// bytes come out only through Expose, whose name makes every use greppable.
// It must never gain a method that returns the material in any other way.
package secret

import (
	"crypto/subtle"
	"errors"
	"fmt"
	"log/slog"
)

// Redacted is what every formatting of a Bytes prints.
const Redacted = "[REDACTED]"

// ErrMarshal is returned when something tries to serialize a Bytes. Writing
// "[REDACTED]" instead would silently destroy a key on its way to a keystore,
// so marshaling fails loudly instead.
var ErrMarshal = errors.New("secret: key material cannot be marshaled; use Expose in a keystore codec")

// Bytes is immutable secret key material.
type Bytes struct {
	b []byte
}

// New copies b into a new Bytes; the caller may reuse or wipe b afterwards.
func New(b []byte) Bytes {
	return Bytes{b: append([]byte(nil), b...)}
}

// FromString holds the UTF-8 bytes of s, the form in which the Portal issues
// Secret Keys.
func FromString(s string) Bytes {
	return Bytes{b: []byte(s)}
}

// Expose returns a copy of the material. Callers must not log or return it.
func (s Bytes) Expose() []byte {
	return append([]byte(nil), s.b...)
}

// Len is the length of the material in bytes.
func (s Bytes) Len() int { return len(s.b) }

// IsZero reports whether no material is held.
func (s Bytes) IsZero() bool { return len(s.b) == 0 }

// Equal compares two secrets in constant time (for equal lengths).
func (s Bytes) Equal(o Bytes) bool {
	return subtle.ConstantTimeCompare(s.b, o.b) == 1
}

// String implements fmt.Stringer without revealing the material.
func (s Bytes) String() string { return Redacted }

// GoString implements fmt.GoStringer for %#v.
func (s Bytes) GoString() string { return "secret.Bytes(" + Redacted + ")" }

// Format makes every verb (%x, %q, %s, %v, ...) print Redacted.
func (s Bytes) Format(f fmt.State, _ rune) { _, _ = f.Write([]byte(Redacted)) }

// LogValue implements slog.LogValuer.
func (s Bytes) LogValue() slog.Value { return slog.StringValue(Redacted) }

// MarshalJSON refuses: see ErrMarshal.
func (s Bytes) MarshalJSON() ([]byte, error) { return nil, ErrMarshal }

// MarshalText refuses: see ErrMarshal.
func (s Bytes) MarshalText() ([]byte, error) { return nil, ErrMarshal }
