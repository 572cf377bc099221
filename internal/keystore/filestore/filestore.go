// Package filestore is the embedded keystore: one JSON file, mode 0600,
//
//	{"keys": [record, ...]}
//
// where each record has the shape key.MarshalRecord writes. It is the default
// keystore for a single node, development and tests.
//
// Writers (alectl, first start) take an exclusive flock on a sibling ".lock"
// file and replace the file atomically (temporary file, fsync, rename), so a
// reader never sees half a file and two writers never lose each other's
// updates. The store refuses to read a keystore that group or others may
// read, as ssh does for private keys.
//
// Validity is decided like Vault's, record by record: a file that is not a
// keystore document (malformed JSON, unknown top-level fields, no "keys"
// array), or that cannot be read safely, fails as a whole; within a document,
// a record that does not validate, or whose fingerprint appears more than
// once (no copy can be trusted), is reported in Snapshot.Invalid and the
// others load. Writers stay strict: Update refuses to rewrite a file holding
// an invalid record, since writing it back would silently drop it.
//
// A store given age identities (WithIdentities) is sealed: the file is the
// document above encrypted with age, and a writer re-seals it in memory, so
// no plaintext copy ever reaches the disk, temporary files included. See
// seal.go for the format and why the whole file is sealed.
package filestore

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"syscall"

	"filippo.io/age"

	"github.com/alecrypt/alecrypt/internal/key"
	"github.com/alecrypt/alecrypt/internal/keystore"
)

// Mode is the file mode of the keystore and of its directory's files.
const Mode = 0o600

// MaxFileSize bounds what Load reads: 10,000 keys take about 4 MB.
const MaxFileSize = 64 << 20

// Store is a keystore file.
type Store struct {
	path string
	ids  []age.Identity // set: the file is sealed (see seal.go)
}

var (
	_ keystore.Reader  = (*Store)(nil)
	_ keystore.Locator = (*Store)(nil)
)

// New returns the store at path; nothing is read or created yet.
func New(path string, opts ...Option) *Store {
	s := &Store{path: path}
	for _, o := range opts {
		o(s)
	}
	return s
}

// Path is the keystore file's path.
func (s *Store) Path() string { return s.path }

// Location is the file's path, for keystore.Locator.
func (s *Store) Location() string { return s.path }

// Load reads the file and validates each record. Its Revision is the
// SHA-256 of the file's bytes, so an unchanged file costs the refresher
// nothing.
func (s *Store) Load(context.Context) (keystore.Snapshot, error) {
	data, err := s.read()
	if err != nil {
		return keystore.Snapshot{}, err
	}
	sum := sha256.Sum256(data)
	doc, err := s.open(data)
	if err != nil {
		return keystore.Snapshot{}, err
	}
	recs, invalid, err := Decode(doc)
	clear(doc)
	if err != nil {
		return keystore.Snapshot{}, fmt.Errorf("keystore %s: %w", s.path, err)
	}
	return keystore.Snapshot{Records: recs, Invalid: invalid, Revision: hex.EncodeToString(sum[:])}, nil
}

// Revision implements keystore.Reviser with one stat: the file's inode,
// size, modification time, permissions and change time. Writers replace the
// file by rename, so their changes give a new inode; an edit in place moves
// the change time even when size and mtime are kept; and a chmod that
// exposes the file moves mode and change time, so the next tick loads it and
// Load refuses it, instead of the service never noticing.
func (s *Store) Revision(context.Context) (string, error) {
	fi, err := os.Stat(s.path)
	if err != nil {
		return "", err
	}
	var ino uint64
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		ino = st.Ino
	}
	return fmt.Sprintf("%d:%d:%d:%o:%d", ino, fi.Size(), fi.ModTime().UnixNano(), fi.Mode(), changeTime(fi)), nil
}

var _ keystore.Reviser = (*Store)(nil)

func (s *Store) read() ([]byte, error) {
	f, err := os.Open(s.path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("keystore %s: %w", s.path, keystore.ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("keystore: %w", err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("keystore: %w", err)
	}
	// A sealed keystore may be readable by its group: its keys need the
	// identity, and a Kubernetes Secret volume with an fsGroup makes its
	// files 0440 whatever defaultMode says.
	exposed := fs.FileMode(0o077)
	if s.Sealed() {
		exposed = 0o037
	}
	if fi.Mode().Perm()&exposed != 0 {
		return nil, fmt.Errorf("keystore %s: mode %v lets others read keys; run chmod 600 on it", s.path, fi.Mode().Perm())
	}
	if fi.Size() > MaxFileSize {
		return nil, fmt.Errorf("keystore %s: %d bytes is over the %d byte limit", s.path, fi.Size(), MaxFileSize)
	}
	var buf bytes.Buffer
	if _, err := buf.ReadFrom(f); err != nil {
		return nil, fmt.Errorf("keystore %s: %w", s.path, err)
	}
	return buf.Bytes(), nil
}

// fileJSON is the file's top level; records are decoded one by one by the key
// codec so a bad record is reported with its index.
type fileJSON struct {
	Keys []json.RawMessage `json:"keys"`
}

// Parse decodes and validates a keystore file's content for a writer: every
// record valid, fingerprints unique. It fails as a whole.
func Parse(data []byte) ([]key.Record, error) {
	recs, invalid, err := Decode(data)
	if err != nil {
		return nil, err
	}
	if len(invalid) > 0 {
		return nil, fmt.Errorf("%s: %w", invalid[0].Name, invalid[0].Err)
	}
	return recs, nil
}

// Decode decodes a keystore file's content for a reader. A document that is
// not a keystore fails as a whole; otherwise each record is decoded alone:
// the valid ones are returned, the others (a record that does not validate,
// every copy of a fingerprint listed more than once) are in invalid, named
// "keys[i]", in the order found.
func Decode(data []byte) (recs []key.Record, invalid []keystore.InvalidRecord, err error) {
	var f fileJSON
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&f); err != nil {
		var se *json.SyntaxError
		if errors.As(err, &se) {
			return nil, nil, fmt.Errorf("malformed JSON at offset %d", se.Offset)
		}
		return nil, nil, fmt.Errorf("malformed keystore: %v", err)
	}
	// dec.More reports false before a stray '}' or ']'; anything but EOF
	// after the object is trailing data.
	if _, err := dec.Token(); err != io.EOF {
		return nil, nil, errors.New("malformed keystore: trailing data")
	}
	if f.Keys == nil {
		return nil, nil, errors.New(`malformed keystore: no "keys" array`)
	}
	recs = make([]key.Record, 0, len(f.Keys))
	first := make(map[string]int, len(f.Keys)) // fingerprint -> index of its first valid copy
	dup := map[string]bool{}
	for i, raw := range f.Keys {
		name := fmt.Sprintf("keys[%d]", i)
		r, err := key.UnmarshalRecord(raw)
		if err != nil {
			invalid = append(invalid, keystore.InvalidRecord{Name: name, Fingerprint: readFingerprint(raw), Err: err})
			continue
		}
		if _, seen := first[r.Fingerprint]; seen {
			dup[r.Fingerprint] = true
			invalid = append(invalid, keystore.InvalidRecord{Name: name, Fingerprint: r.Fingerprint,
				Err: fmt.Errorf("duplicate fingerprint %q", r.Fingerprint)})
			continue
		}
		first[r.Fingerprint] = i
		recs = append(recs, r)
	}
	if len(dup) == 0 {
		return recs, invalid, nil
	}
	// Nothing says which copy of a duplicated fingerprint is right: drop
	// the first one too.
	recs = slices.DeleteFunc(recs, func(r key.Record) bool {
		if !dup[r.Fingerprint] {
			return false
		}
		invalid = append(invalid, keystore.InvalidRecord{Name: fmt.Sprintf("keys[%d]", first[r.Fingerprint]),
			Fingerprint: r.Fingerprint, Err: fmt.Errorf("fingerprint %q is listed more than once", r.Fingerprint)})
		return true
	})
	return recs, invalid, nil
}

// readFingerprint salvages the fingerprint of a record the codec refused, so
// the refresher can keep serving that key's last good record. Only a valid
// fingerprint counts.
func readFingerprint(raw json.RawMessage) string {
	var v struct {
		Fingerprint string `json:"fingerprint"`
	}
	if json.Unmarshal(raw, &v) != nil || key.ValidateFingerprint(v.Fingerprint) != nil {
		return ""
	}
	return v.Fingerprint
}

// Encode writes records in the file format, validating each and checking
// fingerprints are unique: whatever it writes, Parse accepts, so an Update
// cannot leave a keystore that no one can load or update again.
func Encode(recs []key.Record) ([]byte, error) {
	raws := make([]json.RawMessage, 0, len(recs))
	seen := make(map[string]bool, len(recs))
	for i, r := range recs {
		b, err := key.MarshalRecord(r)
		if err != nil {
			return nil, err
		}
		if seen[r.Fingerprint] {
			return nil, fmt.Errorf("keys[%d]: duplicate fingerprint %q", i, r.Fingerprint)
		}
		seen[r.Fingerprint] = true
		raws = append(raws, b)
	}
	var out bytes.Buffer
	enc := json.NewEncoder(&out)
	enc.SetIndent("", "  ")
	if err := enc.Encode(fileJSON{Keys: raws}); err != nil {
		return nil, err
	}
	return out.Bytes(), nil
}

// Update applies fn to the current records under the write lock and writes
// the result atomically. A missing file starts as no records when create is
// true. If fn or the write fails, the file is unchanged.
func (s *Store) Update(create bool, fn func([]key.Record) ([]key.Record, error)) error {
	unlock, err := s.lock()
	if err != nil {
		return err
	}
	defer unlock()
	var recs []key.Record
	data, err := s.read()
	switch {
	case err == nil:
		doc, err := s.open(data)
		if err != nil {
			return err
		}
		recs, err = Parse(doc)
		clear(doc)
		if err != nil {
			return fmt.Errorf("keystore %s: %w", s.path, err)
		}
	case errors.Is(err, keystore.ErrNotFound) && create:
	default:
		return err
	}
	next, err := fn(recs)
	if err != nil {
		return err
	}
	out, err := Encode(next)
	if err != nil {
		return err
	}
	if s.Sealed() {
		// Re-sealed to the recipients file; a missing one fails here,
		// before anything is written.
		recipients, err := s.readRecipients()
		if err != nil {
			clear(out)
			return err
		}
		doc := out
		out, err = seal(doc, recipients)
		clear(doc)
		if err != nil {
			return err
		}
	}
	return writeFileAtomic(s.path, out)
}

// Init creates the keystore with the record gen returns if the file does not
// exist, and reports whether it did. An existing file is left alone, and
// only read, not locked, so a keystore on a read-only mount (a Kubernetes
// Secret) can be served; one that cannot be read or opened is an error.
func (s *Store) Init(gen func() (key.Record, error)) (created bool, err error) {
	if _, err := os.Stat(s.path); err == nil {
		data, err := s.read()
		if err != nil {
			return false, err
		}
		doc, err := s.open(data)
		clear(doc)
		return false, err
	}
	err = s.Update(true, func(recs []key.Record) ([]key.Record, error) {
		if recs != nil {
			return nil, errExists
		}
		r, err := gen()
		if err != nil {
			return nil, err
		}
		created = true
		return []key.Record{r}, nil
	})
	if errors.Is(err, errExists) {
		return false, nil
	}
	return created, err
}

var errExists = errors.New("keystore exists")

func (s *Store) lock() (unlock func(), err error) {
	if err := os.MkdirAll(filepath.Dir(s.path), 0o700); err != nil {
		return nil, fmt.Errorf("keystore: %w", err)
	}
	f, err := os.OpenFile(s.path+".lock", os.O_CREATE|os.O_RDWR, Mode)
	if err != nil {
		return nil, fmt.Errorf("keystore lock: %w", err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX); err != nil {
		f.Close()
		return nil, fmt.Errorf("keystore lock: %w", err)
	}
	return func() {
		_ = syscall.Flock(int(f.Fd()), syscall.LOCK_UN)
		f.Close()
	}, nil
}

// beforeRename, when set by a test, runs once the temporary file is
// written and synced, before the rename: a crash test exits there.
var beforeRename func(tmp string)

// writeFileAtomic replaces path with data: a temporary file in the same
// directory, created 0600, written, synced, renamed over path, and the
// directory synced. A crash at any point leaves the old file whole.
func writeFileAtomic(path string, data []byte) error {
	dir := filepath.Dir(path)
	tmp, err := os.CreateTemp(dir, ".keystore-*.tmp")
	if err != nil {
		return fmt.Errorf("keystore write: %w", err)
	}
	defer os.Remove(tmp.Name()) // no-op after a successful rename
	if err := tmp.Chmod(Mode); err != nil {
		tmp.Close()
		return fmt.Errorf("keystore write: %w", err)
	}
	// Keep the replaced file's owner, so root editing the service user's
	// keystore (the identity of a sealed one may be root's alone) leaves it
	// readable by the service. Only root may give a file away: for anyone
	// else this fails and the file becomes theirs, as any rename does.
	if fi, err := os.Stat(path); err == nil {
		if st, ok := fi.Sys().(*syscall.Stat_t); ok && (int(st.Uid) != os.Geteuid() || int(st.Gid) != os.Getegid()) {
			_ = tmp.Chown(int(st.Uid), int(st.Gid))
		}
	}
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return fmt.Errorf("keystore write: %w", err)
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return fmt.Errorf("keystore write: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("keystore write: %w", err)
	}
	if beforeRename != nil {
		beforeRename(tmp.Name())
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("keystore write: %w", err)
	}
	// Make the rename durable.
	if d, err := os.Open(dir); err == nil {
		_ = d.Sync()
		d.Close()
	}
	return nil
}
