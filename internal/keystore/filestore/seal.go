package filestore

// Sealing. A sealed keystore is the whole keystore document encrypted as
// one age file (https://age-encryption.org/v1), ASCII-armored so it stays a
// text file. File-level sealing, not per-secret sealing, because:
//   - age's payload is one authenticated stream, so nothing of the document
//     is readable without the identity: neither the secrets nor the
//     aliases, fingerprints, states and number of keys, which tell an
//     attacker which key protects what;
//   - `age -d -i IDENTITY keystore.json` gives an operator back the plain
//     keystore document, with no format of ours to decode; per-secret
//     sealing would need our own envelope inside JSON;
//   - one identity unwrap per load, not one per key (an scrypt or plugin
//     identity costs a lot per unwrap).
// The cost is that every load and edit decrypts the whole file: about 50 ms
// more than plaintext for a full load of 10,000 keys (BenchmarkLoad10kKeys);
// the periodic check is still one stat.
//
// age encrypts to public recipients, which are not secret: sealing keeps the
// keys confidential, it does not prove who wrote the file. Whoever may write
// the keystore can replace it, sealed or not, as today.
//
// A sealed file does not list its recipients (age headers name none), so
// the recipients a writer re-seals to live beside the keystore in
// KEYSTORE.recipients, in age's recipients-file format (public keys only,
// one a line): `age -R keystore.json.recipients` reads it too. Seal writes
// it; every other write re-seals to what it lists.

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"filippo.io/age"
	"filippo.io/age/armor"

	"github.com/alecrypt/alecrypt/internal/key"
)

var (
	// ErrSealed means the keystore file is sealed and the store was given
	// no identity to open it.
	ErrSealed = errors.New("the keystore is sealed (age) and no identity was given to open it")
	// ErrNotSealed means the store was given an identity but the file is
	// a plaintext keystore: a store configured as sealed never reads
	// plaintext keys, so a sealed keystore swapped for a plaintext one is
	// noticed.
	ErrNotSealed = errors.New("the keystore is not sealed, but an identity was given: seal it first")
	// ErrWrongIdentity means no identity given opens the sealed file.
	ErrWrongIdentity = errors.New("no identity given opens the sealed keystore (it is sealed to other recipients)")
	// ErrNoRecipients means a sealed keystore cannot be written because
	// its recipients file is missing.
	ErrNoRecipients = errors.New("no recipients file beside the sealed keystore: reseal it to its recipients")
)

// Option configures a Store.
type Option func(*Store)

// WithIdentities makes the store sealed: Load and every write open the file
// with these age identities, and refuse a plaintext file. The store keeps
// the parsed identities, so the identity file is read once by the caller.
func WithIdentities(ids ...age.Identity) Option {
	return func(s *Store) { s.ids = ids }
}

// Sealed reports whether the store was given identities.
func (s *Store) Sealed() bool { return len(s.ids) > 0 }

// RecipientsPath is the recipients file a sealed keystore is re-sealed to.
func (s *Store) RecipientsPath() string { return s.path + ".recipients" }

// IsSealed reports whether data is an age file, binary or armored.
func IsSealed(data []byte) bool {
	return bytes.HasPrefix(data, []byte("age-encryption.org/")) ||
		bytes.HasPrefix(bytes.TrimLeft(data, " \t\r\n"), []byte(armor.Header))
}

// open returns the keystore document in data: as is when the store is
// plaintext, decrypted when it is sealed. The caller clears the result.
func (s *Store) open(data []byte) ([]byte, error) {
	sealed := IsSealed(data)
	switch {
	case !s.Sealed() && sealed:
		return nil, fmt.Errorf("keystore %s: %w", s.path, ErrSealed)
	case s.Sealed() && !sealed:
		return nil, fmt.Errorf("keystore %s: %w", s.path, ErrNotSealed)
	case !sealed:
		return data, nil
	}
	var src io.Reader = bytes.NewReader(data)
	if !bytes.HasPrefix(data, []byte("age-encryption.org/")) {
		src = armor.NewReader(src)
	}
	r, err := age.Decrypt(src, s.ids...)
	var nomatch *age.NoIdentityMatchError
	if errors.As(err, &nomatch) {
		return nil, fmt.Errorf("keystore %s: %w", s.path, ErrWrongIdentity)
	}
	if err != nil {
		// age's errors describe the format, never the key.
		return nil, fmt.Errorf("keystore %s: cannot open the sealed file: %v", s.path, err)
	}
	var buf bytes.Buffer
	if _, err := buf.ReadFrom(io.LimitReader(r, MaxFileSize+1)); err != nil {
		clear(buf.Bytes())
		return nil, fmt.Errorf("keystore %s: cannot open the sealed file: %v", s.path, err)
	}
	if buf.Len() > MaxFileSize {
		clear(buf.Bytes())
		return nil, fmt.Errorf("keystore %s: sealed content is over the %d byte limit", s.path, MaxFileSize)
	}
	return buf.Bytes(), nil
}

// seal encrypts a keystore document to recipients, in memory: the plaintext
// is never written anywhere.
func seal(doc []byte, recipients []age.Recipient) ([]byte, error) {
	var out bytes.Buffer
	a := armor.NewWriter(&out)
	w, err := age.Encrypt(a, recipients...)
	if err != nil {
		return nil, fmt.Errorf("keystore seal: %w", err)
	}
	if _, err := w.Write(doc); err != nil {
		return nil, fmt.Errorf("keystore seal: %w", err)
	}
	if err := w.Close(); err != nil {
		return nil, fmt.Errorf("keystore seal: %w", err)
	}
	if err := a.Close(); err != nil {
		return nil, fmt.Errorf("keystore seal: %w", err)
	}
	return out.Bytes(), nil
}

// ParseRecipient parses one age recipient (age1...). An age identity (a
// private key) given by mistake is refused without echoing it.
func ParseRecipient(s string) (age.Recipient, error) {
	s = strings.TrimSpace(s)
	if up := strings.ToUpper(s); strings.HasPrefix(up, "AGE-SECRET-KEY-") || strings.HasPrefix(up, "AGE-PLUGIN-") {
		return nil, errors.New("that is an age identity (a private key), not a recipient: give its public key, age1..., as printed by age-keygen -y IDENTITY-FILE; and treat that private key as exposed if it was typed somewhere shared")
	}
	rs, err := age.ParseRecipients(strings.NewReader(s))
	switch {
	case err != nil && !strings.HasPrefix(s, "age1"):
		// Not even shaped like a recipient: say so without echoing it,
		// it may be a secret pasted into the wrong place.
		return nil, errors.New("not an age recipient: want a public key starting with age1")
	case err != nil:
		return nil, fmt.Errorf("age recipient %q: %v", s, err)
	case len(rs) != 1:
		return nil, errors.New("want exactly one age recipient")
	}
	return rs[0], nil
}

// readRecipients reads the recipients file. It is public, but whoever can
// write it chooses who can read the next sealed file, so it is refused when
// group or others may write it.
func (s *Store) readRecipients() ([]age.Recipient, error) {
	p := s.RecipientsPath()
	f, err := os.Open(p)
	if errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("keystore %s: %w (%s)", s.path, ErrNoRecipients, p)
	}
	if err != nil {
		return nil, fmt.Errorf("keystore recipients: %w", err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("keystore recipients: %w", err)
	}
	if fi.Mode().Perm()&0o022 != 0 {
		return nil, fmt.Errorf("keystore recipients %s: mode %v lets others choose who can read the keystore; run chmod 600 on it", p, fi.Mode().Perm())
	}
	rs, err := age.ParseRecipients(f)
	if err != nil {
		return nil, fmt.Errorf("keystore recipients %s: %v", p, err)
	}
	return rs, nil
}

// recipientsFile is the recipients file's content: a comment and one
// recipient a line, which age -R reads as well.
func recipientsFile(recipients []age.Recipient) ([]byte, error) {
	var b bytes.Buffer
	b.WriteString("# age recipients this keystore is sealed to (public keys only); written by alectl keys seal\n")
	for _, r := range recipients {
		st, ok := r.(fmt.Stringer)
		if !ok {
			return nil, fmt.Errorf("recipient of type %T cannot be written to a recipients file", r)
		}
		b.WriteString(st.String())
		b.WriteByte('\n')
	}
	return b.Bytes(), nil
}

// Seal seals the keystore to recipients: a plaintext keystore is converted,
// a sealed one (the store needs its identities) is re-sealed under a fresh
// file key, which is how the key-encrypting key is rotated. The recipients
// file is written first, then the keystore, each atomically, so a crash
// leaves either the old keystore with the new recipients (the next write
// seals to them) or both new; never a plaintext copy on disk, since the
// document is encrypted in memory.
func (s *Store) Seal(recipients []age.Recipient) (keys int, err error) {
	if len(recipients) == 0 {
		return 0, errors.New("keystore seal: no recipients")
	}
	unlock, err := s.lock()
	if err != nil {
		return 0, err
	}
	defer unlock()
	data, err := s.read()
	if err != nil {
		return 0, err
	}
	var recs []key.Record
	if IsSealed(data) {
		if !s.Sealed() {
			return 0, fmt.Errorf("keystore %s: %w", s.path, ErrSealed)
		}
		doc, err := s.open(data)
		if err != nil {
			return 0, err
		}
		recs, err = Parse(doc)
		clear(doc)
		if err != nil {
			return 0, fmt.Errorf("keystore %s: %w", s.path, err)
		}
	} else if recs, err = Parse(data); err != nil {
		clear(data)
		return 0, fmt.Errorf("keystore %s: %w", s.path, err)
	}
	clear(data)
	doc, err := Encode(recs)
	if err != nil {
		return 0, err
	}
	out, err := seal(doc, recipients)
	clear(doc)
	if err != nil {
		return 0, err
	}
	list, err := recipientsFile(recipients)
	if err != nil {
		return 0, err
	}
	if err := writeFileAtomic(s.RecipientsPath(), list); err != nil {
		return 0, err
	}
	return len(recs), writeFileAtomic(s.path, out)
}

// ReadIdentities reads an age identity file (age-keygen's output: one
// AGE-SECRET-KEY-1... a line, # comments) for WithIdentities. It is read
// once; its bytes are cleared after parsing and never logged, and the
// errors age returns name a line, never its content. A file others may read
// is refused, as the keystore is.
func ReadIdentities(path string) ([]age.Identity, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("keystore identity: %w", err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("keystore identity: %w", err)
	}
	if fi.Mode().Perm()&0o004 != 0 {
		return nil, fmt.Errorf("keystore identity %s: mode %v lets every user read it; run chmod 600 on it", path, fi.Mode().Perm())
	}
	var buf bytes.Buffer
	_, err = buf.ReadFrom(io.LimitReader(f, 1<<20))
	defer clear(buf.Bytes())
	if err != nil {
		return nil, fmt.Errorf("keystore identity %s: %w", path, err)
	}
	ids, err := age.ParseIdentities(bytes.NewReader(buf.Bytes()))
	if err != nil {
		return nil, fmt.Errorf("keystore identity %s: not an age identity file: %v", path, err)
	}
	return ids, nil
}
