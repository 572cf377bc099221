package filestore_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/alecrypt/alecrypt/internal/key"
	"github.com/alecrypt/alecrypt/internal/key/keytest"
	"github.com/alecrypt/alecrypt/internal/keyring"
	"github.com/alecrypt/alecrypt/internal/keyring/refresh"
	"github.com/alecrypt/alecrypt/internal/keystore"
	"github.com/alecrypt/alecrypt/internal/keystore/filestore"
	"github.com/alecrypt/alecrypt/internal/keystore/keystoretest"
)

// canary stands in for key material in tests that check errors never echo it.
const canary = keytest.Canary

func rec(fp string) key.Record { return keytest.Record(fp) }

func encode(t *testing.T, recs ...key.Record) []byte {
	t.Helper()
	data, err := filestore.Encode(recs)
	if err != nil {
		t.Fatalf("Encode err = %v, want nil", err)
	}
	return data
}

// writeStore writes a keystore file with recs and returns its store.
func writeStore(t *testing.T, mode os.FileMode, recs ...key.Record) *filestore.Store {
	t.Helper()
	path := filepath.Join(t.TempDir(), "keystore.json")
	if err := os.WriteFile(path, encode(t, recs...), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(path, mode); err != nil { // WriteFile's mode is masked by umask
		t.Fatal(err)
	}
	return filestore.New(path)
}

func fingerprints(recs []key.Record) []string {
	var fps []string
	for _, r := range recs {
		fps = append(fps, r.Fingerprint)
	}
	slices.Sort(fps)
	return fps
}

// mutable lets the conformance suite change a file store through Update.
type mutable struct{ *filestore.Store }

var _ keystoretest.Mutator = mutable{}

func (m mutable) SetRecords(_ context.Context, recs []key.Record) error {
	return m.Update(true, func([]key.Record) ([]key.Record, error) { return recs, nil })
}

var _ keystoretest.Corrupter = mutable{}

// AddInvalid appends a record with too few PBKDF2 iterations to the file,
// writing the bytes directly: Update would refuse it.
func (m mutable) AddInvalid(_ context.Context, fp string) error {
	data, err := os.ReadFile(m.Path())
	if err != nil {
		return err
	}
	b, err := key.MarshalRecord(rec(fp))
	if err != nil {
		return err
	}
	bad := strings.Replace(string(b), fmt.Sprintf(`"iterations":%d`, key.MinIterations), `"iterations":1`, 1)
	var f struct {
		Keys []json.RawMessage `json:"keys"`
	}
	if err := json.Unmarshal(data, &f); err != nil {
		return err
	}
	out, err := json.Marshal(struct {
		Keys []json.RawMessage `json:"keys"`
	}{append(f.Keys, json.RawMessage(bad))})
	if err != nil {
		return err
	}
	return os.WriteFile(m.Path(), out, filestore.Mode)
}

func TestConformance(t *testing.T) {
	t.Parallel()
	keystoretest.Run(t, func(t *testing.T, recs []key.Record) keystore.Reader {
		return mutable{writeStore(t, filestore.Mode, recs...)}
	})
}

func TestParse(t *testing.T) {
	t.Parallel()
	one, two := marshal(t, rec("fp-1")), marshal(t, rec("fp-2"))
	bad := strings.Replace(two, `"active"`, `"paused"`, 1)
	for _, tc := range []struct {
		name    string
		input   string
		wantFPs []string // nil: want an error
		wantErr string   // substring of the error
	}{
		{name: "two keys", input: `{"keys":[` + one + `,` + two + `]}`, wantFPs: []string{"fp-1", "fp-2"}},
		{name: "no keys", input: `{"keys":[]}`, wantFPs: []string{}},
		{name: "trailing whitespace", input: "{\"keys\":[" + one + "]}\n\n", wantFPs: []string{"fp-1"}},
		{name: "Encode output", input: string(encode(t, rec("fp-1"), rec("fp-2"))), wantFPs: []string{"fp-1", "fp-2"}},

		{name: "empty", input: ``, wantErr: "malformed"},
		{name: "malformed JSON", input: `{"keys":[` + one + `,]}`, wantErr: "malformed JSON"},
		{name: "truncated", input: `{"keys":[` + one, wantErr: "malformed"},
		{name: "missing keys array", input: `{}`, wantErr: `no "keys" array`},
		{name: "keys null", input: `{"keys":null}`, wantErr: `no "keys" array`},
		{name: "top level null", input: `null`, wantErr: `no "keys" array`},
		{name: "keys not an array", input: `{"keys":` + one + `}`, wantErr: "malformed"},
		{name: "top level array", input: `[` + one + `]`, wantErr: "malformed"},
		{name: "unknown top-level field", input: `{"keys":[],"version":2}`, wantErr: "unknown field"},
		{name: "duplicate fingerprint", input: `{"keys":[` + one + `,` + two + `,` + one + `]}`, wantErr: `keys[2]: duplicate fingerprint "fp-1"`},
		{name: "invalid record", input: `{"keys":[` + one + `,` + bad + `]}`, wantErr: "keys[1]: invalid key record"},
		{name: "record not an object", input: `{"keys":[` + one + `,"` + canary + `"]}`, wantErr: "keys[1]"},
		{name: "trailing data", input: `{"keys":[]} {"keys":[]}`, wantErr: "trailing data"},
		{name: "trailing brace", input: `{"keys":[` + one + `]}}`, wantErr: "trailing data"},
		{name: "trailing bracket", input: `{"keys":[` + one + `]}]`, wantErr: "trailing data"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			recs, err := filestore.Parse([]byte(tc.input))
			if tc.wantFPs == nil {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("Parse(%s) err = %v, want an error containing %q", tc.name, err, tc.wantErr)
				}
				if recs != nil {
					t.Errorf("Parse(%s) returned %d records along with its error; want none", tc.name, len(recs))
				}
				if strings.Contains(err.Error(), canary) {
					t.Errorf("Parse(%s) error contains key material: %q", tc.name, err)
				}
				return
			}
			if err != nil {
				t.Fatalf("Parse(%s) err = %v, want nil", tc.name, err)
			}
			if got := fingerprints(recs); !slices.Equal(got, tc.wantFPs) && !(len(got) == 0 && len(tc.wantFPs) == 0) {
				t.Errorf("Parse(%s) fingerprints = %q, want %q", tc.name, got, tc.wantFPs)
			}
		})
	}
}

func marshal(t *testing.T, r key.Record) string {
	t.Helper()
	b, err := key.MarshalRecord(r)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestEncodeRejectsInvalid(t *testing.T) {
	t.Parallel()
	bad := rec("fp-bad")
	bad.Source = "elsewhere"
	if data, err := filestore.Encode([]key.Record{rec("fp-ok"), bad}); !errors.Is(err, key.ErrInvalidRecord) || data != nil {
		t.Errorf("Encode(invalid record) = %d bytes, %v; want nil, ErrInvalidRecord", len(data), err)
	}
	dup, err := filestore.Encode([]key.Record{rec("fp-1"), rec("fp-2"), rec("fp-1")})
	if err == nil || !strings.Contains(err.Error(), `keys[2]: duplicate fingerprint "fp-1"`) || dup != nil {
		t.Errorf("Encode(duplicate fingerprints) = %d bytes, %v; want nil, a duplicate error (Parse would refuse the file)", len(dup), err)
	}
}

func TestLoad(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		mode    os.FileMode
		wantErr bool
	}{
		{0o600, false},
		{0o400, false},
		{0o700, false},
		{0o644, true},
		{0o640, true},
		{0o604, true},
		{0o620, true},
		{0o602, true},
		{0o660, true},
		{0o666, true},
	} {
		t.Run(fmt.Sprintf("%04o", tc.mode), func(t *testing.T) {
			t.Parallel()
			s := writeStore(t, tc.mode, rec("fp-1"), rec("fp-2"))
			snap, err := s.Load(t.Context())
			if tc.wantErr {
				if err == nil || !strings.Contains(err.Error(), "chmod 600") {
					t.Fatalf("Load(mode %04o) err = %v, want a refusal that says chmod 600", tc.mode, err)
				}
				if len(snap.Records) != 0 {
					t.Errorf("Load(mode %04o) returned %d records with its error", tc.mode, len(snap.Records))
				}
				return
			}
			if err != nil {
				t.Fatalf("Load(mode %04o) err = %v, want nil", tc.mode, err)
			}
			if got := fingerprints(snap.Records); !slices.Equal(got, []string{"fp-1", "fp-2"}) {
				t.Errorf("Load fingerprints = %q, want [fp-1 fp-2]", got)
			}
			data, _ := os.ReadFile(s.Path())
			sum := sha256.Sum256(data)
			if want := hex.EncodeToString(sum[:]); snap.Revision != want {
				t.Errorf("Load Revision = %q, want SHA-256 of the file %q", snap.Revision, want)
			}
		})
	}
}

func TestLoadErrors(t *testing.T) {
	t.Parallel()
	t.Run("missing", func(t *testing.T) {
		t.Parallel()
		s := filestore.New(filepath.Join(t.TempDir(), "nope.json"))
		if _, err := s.Load(t.Context()); !errors.Is(err, keystore.ErrNotFound) {
			t.Errorf("Load(missing file) err = %v, want ErrNotFound", err)
		}
	})
	t.Run("too large", func(t *testing.T) {
		t.Parallel()
		s := writeStore(t, 0o600)
		// Sparse: costs no disk, and Load must refuse before reading.
		if err := os.Truncate(s.Path(), filestore.MaxFileSize+1); err != nil {
			t.Fatal(err)
		}
		if _, err := s.Load(t.Context()); err == nil || !strings.Contains(err.Error(), "limit") {
			t.Errorf("Load(oversized file) err = %v, want a size limit error", err)
		}
	})
	t.Run("not a keystore", func(t *testing.T) {
		t.Parallel()
		s := writeStore(t, 0o600)
		if err := os.WriteFile(s.Path(), []byte(`{"keys":{"secret":"`+canary+`"}}`), 0o600); err != nil {
			t.Fatal(err)
		}
		snap, err := s.Load(t.Context())
		if err == nil || !strings.Contains(err.Error(), "malformed") || !strings.Contains(err.Error(), s.Path()) || len(snap.Records) != 0 {
			t.Errorf("Load(not a keystore) = %d records, err %v; want none and a malformed error naming the file", len(snap.Records), err)
		}
		if err != nil && strings.Contains(err.Error(), canary) {
			t.Errorf("Load error contains key material: %q", err)
		}
	})
	t.Run("invalid record", func(t *testing.T) {
		t.Parallel()
		s := writeStore(t, 0o600)
		if err := os.WriteFile(s.Path(), []byte(`{"keys":[{"secret":"`+canary+`"},`+marshal(t, rec("fp-1"))+`]}`), 0o600); err != nil {
			t.Fatal(err)
		}
		snap, err := s.Load(t.Context())
		if err != nil || len(snap.Invalid) != 1 || !errors.Is(snap.Invalid[0].Err, key.ErrInvalidRecord) {
			t.Fatalf("Load(one invalid record) = %+v, %v; want it in Invalid with ErrInvalidRecord", snap.Invalid, err)
		}
		if got := fingerprints(snap.Records); !slices.Equal(got, []string{"fp-1"}) {
			t.Errorf("Load(one invalid record) records = %q, want the valid fp-1", got)
		}
		if strings.Contains(snap.Invalid[0].Err.Error(), canary) {
			t.Errorf("Invalid error contains key material: %q", snap.Invalid[0].Err)
		}
	})
}

// TestDecode: within a keystore document each record stands alone; every
// copy of a duplicated fingerprint is invalid, and an invalid record names
// its fingerprint when that much is valid, so the refresher can keep the
// key's last good record.
func TestDecode(t *testing.T) {
	t.Parallel()
	one, two, three := marshal(t, rec("fp-1")), marshal(t, rec("fp-2")), marshal(t, rec("fp-3"))
	badState := strings.Replace(two, `"active"`, `"paused"`, 1)
	for _, tc := range []struct {
		name        string
		input       string
		wantFPs     []string
		wantInvalid map[string]string // name -> fingerprint
	}{
		{"all valid", `{"keys":[` + one + `,` + two + `]}`, []string{"fp-1", "fp-2"}, map[string]string{}},
		{"one invalid", `{"keys":[` + one + `,` + badState + `,` + three + `]}`, []string{"fp-1", "fp-3"}, map[string]string{"keys[1]": "fp-2"}},
		{"duplicate: both copies", `{"keys":[` + one + `,` + two + `,` + one + `]}`, []string{"fp-2"}, map[string]string{"keys[0]": "fp-1", "keys[2]": "fp-1"}},
		{"not an object", `{"keys":[` + one + `,"` + canary + `"]}`, []string{"fp-1"}, map[string]string{"keys[1]": ""}},
		{"traversal fingerprint", `{"keys":[` + one + `,` + strings.Replace(two, `"fp-2"`, `"z/../victim"`, 1) + `]}`, []string{"fp-1"}, map[string]string{"keys[1]": ""}},
		{"escape fingerprint", `{"keys":[` + one + `,` + strings.Replace(two, `"fp-2"`, `"../../other-app/x"`, 1) + `]}`, []string{"fp-1"}, map[string]string{"keys[1]": ""}},
		{"sub-path fingerprint", `{"keys":[` + one + `,` + strings.Replace(two, `"fp-2"`, `"x/y"`, 1) + `]}`, []string{"fp-1"}, map[string]string{"keys[1]": ""}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			recs, invalid, err := filestore.Decode([]byte(tc.input))
			if err != nil {
				t.Fatalf("Decode err = %v, want nil", err)
			}
			if got := fingerprints(recs); !slices.Equal(got, tc.wantFPs) {
				t.Errorf("Decode records = %q, want %q", got, tc.wantFPs)
			}
			got := map[string]string{}
			for _, inv := range invalid {
				got[inv.Name] = inv.Fingerprint
				if inv.Err == nil || strings.Contains(inv.Err.Error(), canary) {
					t.Errorf("Invalid %s err = %v, want an error without key material", inv.Name, inv.Err)
				}
			}
			if !maps.Equal(got, tc.wantInvalid) {
				t.Errorf("Decode invalid = %v, want %v", got, tc.wantInvalid)
			}
			if _, err := filestore.Parse([]byte(tc.input)); (err == nil) != (len(tc.wantInvalid) == 0) {
				t.Errorf("Parse err = %v; writers must refuse any invalid record", err)
			}
		})
	}
}

// TestRevisionSeesModeAndInPlaceEdits: the cheap revision moves when the
// file becomes readable by others (so Load gets the chance to refuse it)
// and when it is edited in place with its size and mtime kept.
func TestRevisionSeesModeAndInPlaceEdits(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name   string
		change func(t *testing.T, path string)
	}{
		{"chmod group-readable", func(t *testing.T, path string) { chmod(t, path, 0o640) }},
		{"chmod world-readable", func(t *testing.T, path string) { chmod(t, path, 0o604) }},
		{"same-size edit, mtime restored", func(t *testing.T, path string) { editInPlace(t, path, "store-1", "store-9") }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			r := rec("fp-1")
			r.Aliases = []string{"store-1"}
			s := writeStore(t, 0o600, r)
			before, err := s.Revision(t.Context())
			if err != nil {
				t.Fatal(err)
			}
			tc.change(t, s.Path())
			after, err := s.Revision(t.Context())
			if err != nil {
				t.Fatal(err)
			}
			if after == before {
				t.Errorf("Revision after %s = %q, unchanged; the refresher would never look", tc.name, after)
			}
		})
	}
}

// TestRefresherNoticesExposedFile: a keystore that becomes group-readable
// while the service runs fails the next periodic reload (the ring keeps its
// keys, the status reports it), and recovers when the mode is fixed.
func TestRefresherNoticesExposedFile(t *testing.T) {
	t.Parallel()
	s := writeStore(t, 0o600, rec("fp-1"))
	ring := keyring.New()
	r := refresh.New(s, ring, slog.New(slog.DiscardHandler), 0)
	if err := r.Reload(t.Context()); err != nil {
		t.Fatal(err)
	}
	chmod(t, s.Path(), 0o640)
	if err := r.Reload(t.Context()); err == nil || !strings.Contains(err.Error(), "lets others read") {
		t.Fatalf("Reload after chmod 640 err = %v, want the mode refused", err)
	}
	if _, err := ring.Lookup("fp-1"); err != nil {
		t.Errorf("after the refused reload, Lookup(fp-1) err = %v; want the last good keys", err)
	}
	if _, err := r.Status(); err == nil || len(r.Problems()) == 0 {
		t.Errorf("Status err = %v, Problems = %q; want the failure reported", err, r.Problems())
	}
	chmod(t, s.Path(), 0o600)
	if err := r.Reload(t.Context()); err != nil {
		t.Fatalf("Reload after chmod 600 err = %v, want nil", err)
	}
	if _, err := r.Status(); err != nil {
		t.Errorf("Status after the mode was fixed err = %v, want nil", err)
	}
}

func chmod(t *testing.T, path string, mode os.FileMode) {
	t.Helper()
	if err := os.Chmod(path, mode); err != nil {
		t.Fatal(err)
	}
}

// editInPlace replaces old with new (same length) inside the file without
// replacing it, and puts its modification time back.
func editInPlace(t *testing.T, path, old, new string) {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	edited := strings.Replace(string(data), old, new, 1)
	if len(edited) != len(data) || edited == string(data) {
		t.Fatalf("editInPlace: %q -> %q is not a same-size change of the file", old, new)
	}
	f, err := os.OpenFile(path, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteAt([]byte(edited), 0); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	if err := os.Chtimes(path, fi.ModTime(), fi.ModTime()); err != nil {
		t.Fatal(err)
	}
}

// dirEntries lists a directory, to catch temporary files left behind.
func dirEntries(t *testing.T, dir string) []string {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	return names
}

func TestUpdate(t *testing.T) {
	t.Parallel()
	s := writeStore(t, 0o600, rec("fp-1"))
	err := s.Update(false, func(recs []key.Record) ([]key.Record, error) {
		if got := fingerprints(recs); !slices.Equal(got, []string{"fp-1"}) {
			t.Errorf("Update fn got %q, want the file's records [fp-1]", got)
		}
		return append(recs, rec("fp-2")), nil
	})
	if err != nil {
		t.Fatalf("Update err = %v, want nil", err)
	}
	snap, err := s.Load(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if got := fingerprints(snap.Records); !slices.Equal(got, []string{"fp-1", "fp-2"}) {
		t.Errorf("after Update, Load = %q, want [fp-1 fp-2]", got)
	}
	fi, err := os.Stat(s.Path())
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != filestore.Mode {
		t.Errorf("after Update, mode = %04o, want %04o", fi.Mode().Perm(), filestore.Mode)
	}
	if got := dirEntries(t, filepath.Dir(s.Path())); !slices.Equal(got, []string{"keystore.json", "keystore.json.lock"}) {
		t.Errorf("after Update, directory holds %q, want only the keystore and its lock", got)
	}
}

// TestUpdateAtomic: whatever goes wrong, the file stays byte for byte what
// it was, and no temporary file is left behind.
func TestUpdateAtomic(t *testing.T) {
	t.Parallel()
	errFn := errors.New("fn failed")
	invalid := rec("fp-invalid")
	invalid.State = "paused"
	for _, tc := range []struct {
		name   string
		mode   os.FileMode
		fn     func([]key.Record) ([]key.Record, error)
		wantIs error
	}{
		{"fn error", 0o600, func(recs []key.Record) ([]key.Record, error) { return append(recs, rec("fp-2")), errFn }, errFn},
		{"fn returns an invalid record", 0o600, func(recs []key.Record) ([]key.Record, error) { return append(recs, invalid), nil }, key.ErrInvalidRecord},
		{"fn returns a duplicate", 0o600, func(recs []key.Record) ([]key.Record, error) { return append(recs, rec("fp-1")), nil }, nil},
		{"file readable by others", 0o644, func(recs []key.Record) ([]key.Record, error) {
			t.Errorf("Update called fn for a file it must refuse to read")
			return recs, nil
		}, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			s := writeStore(t, tc.mode, rec("fp-1"))
			before, err := os.ReadFile(s.Path())
			if err != nil {
				t.Fatal(err)
			}
			err = s.Update(false, tc.fn)
			if err == nil || (tc.wantIs != nil && !errors.Is(err, tc.wantIs)) {
				t.Fatalf("Update(%s) err = %v, want %v", tc.name, err, tc.wantIs)
			}
			after, err := os.ReadFile(s.Path())
			if err != nil {
				t.Fatal(err)
			}
			if string(after) != string(before) {
				t.Errorf("Update(%s) changed the file; want it byte-identical", tc.name)
			}
			fi, _ := os.Stat(s.Path())
			if fi.Mode().Perm() != tc.mode {
				t.Errorf("Update(%s) changed the mode to %04o", tc.name, fi.Mode().Perm())
			}
			if got := dirEntries(t, filepath.Dir(s.Path())); !slices.Equal(got, []string{"keystore.json", "keystore.json.lock"}) {
				t.Errorf("after Update(%s), directory holds %q, want only the keystore and its lock", tc.name, got)
			}
		})
	}
}

func TestUpdateMissingFile(t *testing.T) {
	t.Parallel()
	t.Run("create false", func(t *testing.T) {
		t.Parallel()
		s := filestore.New(filepath.Join(t.TempDir(), "keystore.json"))
		called := false
		err := s.Update(false, func(recs []key.Record) ([]key.Record, error) { called = true; return recs, nil })
		if !errors.Is(err, keystore.ErrNotFound) || called {
			t.Errorf("Update(create=false, missing file) err = %v, fn called %v; want ErrNotFound, not called", err, called)
		}
		if _, err := os.Stat(s.Path()); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("Update(create=false) created the file: stat err = %v", err)
		}
	})
	t.Run("create true in a new directory", func(t *testing.T) {
		t.Parallel()
		dir := filepath.Join(t.TempDir(), "a", "b")
		s := filestore.New(filepath.Join(dir, "keystore.json"))
		err := s.Update(true, func(recs []key.Record) ([]key.Record, error) {
			if recs != nil {
				t.Errorf("Update(create) fn got %d records for a missing file, want nil", len(recs))
			}
			return []key.Record{rec("fp-1")}, nil
		})
		if err != nil {
			t.Fatalf("Update(create=true) err = %v, want nil", err)
		}
		for path, want := range map[string]os.FileMode{s.Path(): filestore.Mode, dir: 0o700} {
			fi, err := os.Stat(path)
			if err != nil {
				t.Fatal(err)
			}
			if fi.Mode().Perm() != want {
				t.Errorf("mode of %s = %04o, want %04o", filepath.Base(path), fi.Mode().Perm(), want)
			}
		}
		if snap, err := s.Load(t.Context()); err != nil || len(snap.Records) != 1 {
			t.Errorf("Load after Update(create) = %d records, %v; want 1, nil", len(snap.Records), err)
		}
	})
}

// TestConcurrentUpdate: writers serialized by the lock never lose each
// other's updates.
func TestConcurrentUpdate(t *testing.T) {
	t.Parallel()
	const writers = 8
	s := filestore.New(filepath.Join(t.TempDir(), "keystore.json"))
	var wg sync.WaitGroup
	for i := range writers {
		wg.Go(func() {
			// A separate Store per writer, as separate alectl processes would have.
			w := filestore.New(s.Path())
			err := w.Update(true, func(recs []key.Record) ([]key.Record, error) {
				time.Sleep(time.Millisecond) // widen the read-modify-write window
				return append(recs, rec(fmt.Sprintf("fp-%d", i))), nil
			})
			if err != nil {
				t.Errorf("Update #%d err = %v", i, err)
			}
		})
	}
	wg.Wait()
	snap, err := s.Load(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	var want []string
	for i := range writers {
		want = append(want, fmt.Sprintf("fp-%d", i))
	}
	if got := fingerprints(snap.Records); !slices.Equal(got, want) {
		t.Errorf("after %d concurrent Updates, Load = %q, want %q", writers, got, want)
	}
}

func TestInit(t *testing.T) {
	t.Parallel()
	t.Run("creates once", func(t *testing.T) {
		t.Parallel()
		s := filestore.New(filepath.Join(t.TempDir(), "keystore.json"))
		calls := 0
		gen := func() (key.Record, error) { calls++; return rec(fmt.Sprintf("fp-gen-%d", calls)), nil }
		created, err := s.Init(gen)
		if err != nil || !created || calls != 1 {
			t.Fatalf("first Init = %v, %v with %d gen calls; want true, nil, 1", created, err, calls)
		}
		fi, err := os.Stat(s.Path())
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm() != filestore.Mode {
			t.Errorf("Init created mode %04o, want %04o", fi.Mode().Perm(), filestore.Mode)
		}
		before, _ := os.ReadFile(s.Path())
		created, err = s.Init(gen)
		if err != nil || created || calls != 1 {
			t.Errorf("second Init = %v, %v with %d gen calls; want false, nil, 1", created, err, calls)
		}
		after, _ := os.ReadFile(s.Path())
		if string(before) != string(after) {
			t.Errorf("second Init changed the file")
		}
		snap, err := s.Load(t.Context())
		if err != nil || !slices.Equal(fingerprints(snap.Records), []string{"fp-gen-1"}) {
			t.Errorf("Load after Init = %q, %v; want [fp-gen-1]", fingerprints(snap.Records), err)
		}
	})
	for _, tc := range []struct {
		name    string
		content []key.Record
	}{
		{"existing keys", []key.Record{rec("fp-1"), rec("fp-2")}},
		{"existing empty keystore", nil},
	} {
		t.Run("leaves "+tc.name+" alone", func(t *testing.T) {
			t.Parallel()
			s := writeStore(t, 0o600, tc.content...)
			before, _ := os.ReadFile(s.Path())
			created, err := s.Init(func() (key.Record, error) {
				t.Errorf("Init generated a key for an existing keystore")
				return rec("fp-gen"), nil
			})
			if err != nil || created {
				t.Errorf("Init(existing) = %v, %v; want false, nil", created, err)
			}
			if after, _ := os.ReadFile(s.Path()); string(before) != string(after) {
				t.Errorf("Init changed an existing keystore")
			}
		})
	}
	t.Run("gen error creates nothing", func(t *testing.T) {
		t.Parallel()
		s := filestore.New(filepath.Join(t.TempDir(), "keystore.json"))
		errGen := errors.New("no entropy")
		created, err := s.Init(func() (key.Record, error) { return key.Record{}, errGen })
		if !errors.Is(err, errGen) || created {
			t.Errorf("Init(gen fails) = %v, %v; want false, %v", created, err, errGen)
		}
		if _, err := os.Stat(s.Path()); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("Init(gen fails) left a keystore behind: stat err = %v", err)
		}
	})
	t.Run("unreadable existing file is an error", func(t *testing.T) {
		t.Parallel()
		s := writeStore(t, 0o644, rec("fp-1"))
		if created, err := s.Init(func() (key.Record, error) { return rec("fp-gen"), nil }); err == nil || created {
			t.Errorf("Init(group-readable file) = %v, %v; want false, an error", created, err)
		}
	})
}

// TestImport: identical records are left alone (key.Record.Equal, the one
// record equality: an explicit counter_bits 64 is not the omitted default),
// different ones conflict unless replaced with a higher version, and a
// conflict leaves the file untouched.
func TestImport(t *testing.T) {
	t.Parallel()
	explicit64 := rec("fp-1")
	explicit64.CounterBits = key.CounterBits64
	newer := rec("fp-1")
	newer.Version = 2
	for _, tc := range []struct {
		name    string
		in      []key.Record
		replace bool
		want    filestore.ImportResult
		wantErr error
	}{
		{name: "new and identical", in: []key.Record{rec("fp-2"), rec("fp-1")}, want: filestore.ImportResult{Added: 1, Unchanged: 1}},
		{name: "counter bits made explicit", in: []key.Record{explicit64}, wantErr: filestore.ErrConflict},
		{name: "different without replace", in: []key.Record{rec("fp-2"), newer}, wantErr: filestore.ErrConflict},
		{name: "replaced with a higher version", in: []key.Record{newer}, replace: true, want: filestore.ImportResult{Replaced: 1}},
		{name: "replaced without a higher version", in: []key.Record{explicit64}, replace: true, wantErr: filestore.ErrConflict},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			s := writeStore(t, 0o600, rec("fp-1"))
			before, err := os.ReadFile(s.Path())
			if err != nil {
				t.Fatal(err)
			}
			got, err := s.Import(tc.in, tc.replace)
			if !errors.Is(err, tc.wantErr) {
				t.Fatalf("Import() err = %v, want %v", err, tc.wantErr)
			}
			if err != nil {
				if after, _ := os.ReadFile(s.Path()); string(after) != string(before) {
					t.Error("a refused Import changed the file")
				}
				return
			}
			if got != tc.want {
				t.Errorf("Import() = %+v, want %+v", got, tc.want)
			}
		})
	}
}
