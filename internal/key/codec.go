package key

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"time"

	"github.com/alecrypt/alecrypt/service/secret"
)

// recordJSON is the record's wire shape, shared by the embedded keystore file,
// Vault secrets and the Portal. Record itself has no JSON tags (and its secret
// refuses to marshal), so this codec is the only way a key is serialized.
type recordJSON struct {
	Fingerprint string     `json:"fingerprint"`
	Aliases     []string   `json:"aliases"`
	Algorithm   Algorithm  `json:"algorithm"`
	Secret      string     `json:"secret"`
	KDF         kdfJSON    `json:"kdf"`
	CounterBits int        `json:"counter_bits,omitempty"`
	State       State      `json:"state"`
	Version     int64      `json:"version,omitempty"`
	CreatedAt   time.Time  `json:"created_at"`
	NotAfter    *time.Time `json:"not_after,omitempty"`
	Source      string     `json:"source"`
}

type kdfJSON struct {
	Name       string `json:"name"`
	Salt       string `json:"salt"`
	Iterations int    `json:"iterations"`
}

// MarshalRecord validates r and encodes it, secret included. Use it only to
// write a keystore.
func MarshalRecord(r Record) ([]byte, error) {
	if err := r.Validate(); err != nil {
		return nil, err
	}
	w := recordJSON{
		Fingerprint: r.Fingerprint,
		Aliases:     r.Aliases,
		Algorithm:   r.Algorithm,
		Secret:      string(r.Secret.Expose()),
		KDF:         kdfJSON(r.KDF),
		CounterBits: r.CounterBits,
		State:       r.State,
		Version:     r.Version,
		CreatedAt:   r.CreatedAt.UTC(),
		Source:      r.Source,
	}
	if w.Aliases == nil {
		w.Aliases = []string{}
	}
	if !r.NotAfter.IsZero() {
		t := r.NotAfter.UTC()
		w.NotAfter = &t
	}
	return json.Marshal(w)
}

// UnmarshalRecord decodes and validates one record. Unknown fields are errors:
// in a hand-edited keystore they are typos that would otherwise be ignored.
// Errors never include the secret.
func UnmarshalRecord(data []byte) (Record, error) {
	var w recordJSON
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&w); err != nil {
		return Record{}, fmt.Errorf("%w: %v", ErrInvalidRecord, redactJSONError(err))
	}
	// dec.More reports false before a stray '}' or ']', so ask for the next
	// token instead: anything but EOF is trailing data.
	if _, err := dec.Token(); err != io.EOF {
		return Record{}, fmt.Errorf("%w: trailing data after the record", ErrInvalidRecord)
	}
	r := Record{
		Fingerprint: w.Fingerprint,
		Aliases:     w.Aliases,
		Algorithm:   w.Algorithm,
		Secret:      secret.FromString(w.Secret),
		KDF:         KDF(w.KDF),
		CounterBits: w.CounterBits,
		State:       w.State,
		Version:     w.Version,
		CreatedAt:   w.CreatedAt,
		Source:      w.Source,
	}
	if w.NotAfter != nil {
		r.NotAfter = *w.NotAfter
	}
	if err := r.Validate(); err != nil {
		return Record{}, err
	}
	return r, nil
}

// redactJSONError keeps encoding/json's description of what went wrong but
// drops any quoted value it might echo: a malformed record may hold a secret.
func redactJSONError(err error) string {
	switch e := err.(type) {
	case *json.SyntaxError:
		return fmt.Sprintf("malformed JSON at offset %d", e.Offset)
	case *json.UnmarshalTypeError:
		return fmt.Sprintf("field %q has the wrong type (want %s)", e.Field, e.Type)
	case *time.ParseError:
		return "a time is not RFC 3339"
	default:
		return err.Error()
	}
}
