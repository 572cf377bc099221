package filestore_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"

	"filippo.io/age"
	"filippo.io/age/armor"

	"github.com/alecrypt/alecrypt/internal/key"
	"github.com/alecrypt/alecrypt/internal/keyring"
	"github.com/alecrypt/alecrypt/internal/keyring/refresh"
	"github.com/alecrypt/alecrypt/internal/keystore"
	"github.com/alecrypt/alecrypt/internal/keystore/filestore"
	"github.com/alecrypt/alecrypt/internal/keystore/keystoretest"
)

func newIdentity(t *testing.T) *age.X25519Identity {
	t.Helper()
	id, err := age.GenerateX25519Identity()
	if err != nil {
		t.Fatal(err)
	}
	return id
}

// writeSealedStore makes a sealed keystore holding recs, written through
// the store itself: the test never puts a plaintext keystore on disk.
func writeSealedStore(t *testing.T, id *age.X25519Identity, recs ...key.Record) *filestore.Store {
	t.Helper()
	s := filestore.New(filepath.Join(t.TempDir(), "keystore.json"), filestore.WithIdentities(id))
	if err := os.WriteFile(s.RecipientsPath(), []byte(id.Recipient().String()+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := s.Update(true, func([]key.Record) ([]key.Record, error) { return recs, nil }); err != nil {
		t.Fatalf("Update on a new sealed store err = %v, want nil", err)
	}
	return s
}

// sealedMutable lets the conformance suite change a sealed store.
type sealedMutable struct {
	mutable
	id *age.X25519Identity
}

// AddInvalid opens the sealed file, appends an invalid record and seals it
// again, around the store's checks.
func (m sealedMutable) AddInvalid(_ context.Context, fp string) error {
	sealed, err := os.ReadFile(m.Path())
	if err != nil {
		return err
	}
	r, err := age.Decrypt(armor.NewReader(bytes.NewReader(sealed)), m.id)
	if err != nil {
		return err
	}
	doc, err := io.ReadAll(r)
	if err != nil {
		return err
	}
	var f struct {
		Keys []json.RawMessage `json:"keys"`
	}
	if err := json.Unmarshal(doc, &f); err != nil {
		return err
	}
	b, err := key.MarshalRecord(rec(fp))
	if err != nil {
		return err
	}
	bad := strings.Replace(string(b), fmt.Sprintf(`"iterations":%d`, key.MinIterations), `"iterations":1`, 1)
	out, err := json.Marshal(struct {
		Keys []json.RawMessage `json:"keys"`
	}{append(f.Keys, json.RawMessage(bad))})
	if err != nil {
		return err
	}
	var buf bytes.Buffer
	a := armor.NewWriter(&buf)
	w, err := age.Encrypt(a, m.id.Recipient())
	if err != nil {
		return err
	}
	if _, err := w.Write(out); err != nil {
		return err
	}
	if err := w.Close(); err != nil {
		return err
	}
	if err := a.Close(); err != nil {
		return err
	}
	return os.WriteFile(m.Path(), buf.Bytes(), filestore.Mode)
}

func TestSealedConformance(t *testing.T) {
	t.Parallel()
	keystoretest.Run(t, func(t *testing.T, recs []key.Record) keystore.Reader {
		id := newIdentity(t)
		return sealedMutable{mutable{writeSealedStore(t, id, recs...)}, id}
	})
}

// checkNoSecrets fails if data shows any secret, fingerprint or alias of
// recs: a sealed file reveals nothing of the document.
func checkNoSecrets(t *testing.T, what string, data []byte, recs ...key.Record) {
	t.Helper()
	if bytes.Contains(data, []byte(canary)) {
		t.Errorf("%s holds key material (the canary)", what)
	}
	for _, r := range recs {
		for _, s := range append([]string{r.Fingerprint, string(r.Secret.Expose()), r.KDF.Salt}, r.Aliases...) {
			if bytes.Contains(data, []byte(s)) {
				t.Errorf("%s holds %q of key %s", what, s, r.Fingerprint)
			}
		}
	}
	if !filestore.IsSealed(data) {
		t.Errorf("%s is not an age file", what)
	}
}

func TestSealConvertsPlaintext(t *testing.T) {
	t.Parallel()
	recs := []key.Record{rec("fp-seal-1"), rec("fp-seal-2")}
	plain := writeStore(t, filestore.Mode, recs...)
	id := newIdentity(t)
	n, err := filestore.New(plain.Path()).Seal([]age.Recipient{id.Recipient()})
	if err != nil || n != 2 {
		t.Fatalf("Seal = %d, %v; want 2, nil", n, err)
	}
	data, err := os.ReadFile(plain.Path())
	if err != nil {
		t.Fatal(err)
	}
	checkNoSecrets(t, "the sealed keystore", data, recs...)
	list, err := os.ReadFile(plain.RecipientsPath())
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(list), id.Recipient().String()) || strings.Contains(string(list), "AGE-SECRET-KEY") {
		t.Errorf("recipients file = %q, want the recipient and no identity", list)
	}
	snap, err := filestore.New(plain.Path(), filestore.WithIdentities(id)).Load(t.Context())
	if err != nil {
		t.Fatalf("Load with the identity err = %v, want nil", err)
	}
	if got := fingerprints(snap.Records); !slices.Equal(got, []string{"fp-seal-1", "fp-seal-2"}) {
		t.Errorf("Load = %q, want both keys", got)
	}
	if got := dirEntries(t, filepath.Dir(plain.Path())); !slices.Equal(got, []string{"keystore.json", "keystore.json.lock", "keystore.json.recipients"}) {
		t.Errorf("after Seal the directory holds %q; want no temporary file left", got)
	}
}

// TestSealedLoadErrors: a sealed keystore opened without its identity, with
// another one, or a plaintext keystore where a sealed one is expected, is a
// clear error that names no key.
func TestSealedLoadErrors(t *testing.T) {
	t.Parallel()
	id := newIdentity(t)
	sealed := writeSealedStore(t, id, rec("fp-1"))
	plain := writeStore(t, filestore.Mode, rec("fp-1"))
	// One byte of the payload changed: age's authentication refuses it.
	tampered := writeSealedStore(t, id, rec("fp-1"))
	data, err := os.ReadFile(tampered.Path())
	if err != nil {
		t.Fatal(err)
	}
	// The first character of a full line of the armor carries 6 bits of the
	// payload, so changing it always changes the file (replacing one letter
	// throughout a line changed nothing when the line had none, a third of
	// the time).
	lines := strings.Split(string(data), "\n")
	i := len(lines) / 2
	flip := byte('A')
	if lines[i][0] == 'A' {
		flip = 'B'
	}
	lines[i] = string(flip) + lines[i][1:]
	if err := os.WriteFile(tampered.Path(), []byte(strings.Join(lines, "\n")), filestore.Mode); err != nil {
		t.Fatal(err)
	}
	errTampered := errors.New("cannot open the sealed file")
	for _, tc := range []struct {
		name  string
		store *filestore.Store
		want  error
	}{
		{"tampered", tampered, errTampered},
		{"no identity", filestore.New(sealed.Path()), filestore.ErrSealed},
		{"wrong identity", filestore.New(sealed.Path(), filestore.WithIdentities(newIdentity(t))), filestore.ErrWrongIdentity},
		{"plaintext where sealed expected", filestore.New(plain.Path(), filestore.WithIdentities(id)), filestore.ErrNotSealed},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			snap, err := tc.store.Load(t.Context())
			if tc.want == errTampered && err != nil && strings.Contains(err.Error(), errTampered.Error()) {
				err = errTampered
			}
			if !errors.Is(err, tc.want) {
				t.Fatalf("Load err = %v, want %v", err, tc.want)
			}
			if len(snap.Records) != 0 || strings.Contains(err.Error(), canary) {
				t.Errorf("Load returned %d records, err %q; want none and no key material", len(snap.Records), err)
			}
			before, _ := os.ReadFile(tc.store.Path())
			err = tc.store.Update(false, func(recs []key.Record) ([]key.Record, error) { return append(recs, rec("fp-2")), nil })
			if tc.want == errTampered && err != nil && strings.Contains(err.Error(), errTampered.Error()) {
				err = errTampered
			}
			if !errors.Is(err, tc.want) {
				t.Errorf("Update err = %v, want %v", err, tc.want)
			}
			if after, _ := os.ReadFile(tc.store.Path()); !bytes.Equal(before, after) {
				t.Errorf("a refused Update changed the file")
			}
		})
	}
}

// TestSealedReload: a keystore re-sealed to a recipient alecryptd has no
// identity for fails the reload and the keys already served stay served.
func TestSealedReload(t *testing.T) {
	t.Parallel()
	id := newIdentity(t)
	s := writeSealedStore(t, id, rec("fp-1"))
	ring := keyring.New()
	r := refresh.New(s, ring, slog.New(slog.DiscardHandler), 0)
	if err := r.Reload(t.Context()); err != nil {
		t.Fatal(err)
	}
	if err := s.Update(false, func(recs []key.Record) ([]key.Record, error) { return append(recs, rec("fp-2")), nil }); err != nil {
		t.Fatal(err)
	}
	if err := r.Reload(t.Context()); err != nil {
		t.Fatalf("Reload after an edit err = %v", err)
	}
	if _, err := ring.Lookup("fp-2"); err != nil {
		t.Fatalf("Lookup(fp-2) after the reload err = %v; want the added key", err)
	}
	other := newIdentity(t)
	if _, err := s.Seal([]age.Recipient{other.Recipient()}); err != nil {
		t.Fatal(err)
	}
	if err := r.Reload(t.Context()); !errors.Is(err, filestore.ErrWrongIdentity) {
		t.Fatalf("Reload of a keystore sealed to another recipient err = %v, want ErrWrongIdentity", err)
	}
	for _, fp := range []string{"fp-1", "fp-2"} {
		if _, err := ring.Lookup(fp); err != nil {
			t.Errorf("after the refused reload Lookup(%s) err = %v; want the keys still served", fp, err)
		}
	}
}

// TestReseal: re-sealing to a new recipient (KEK rotation) locks the old
// identity out, and the next edit seals to the new recipients too.
func TestReseal(t *testing.T) {
	t.Parallel()
	oldID, newID := newIdentity(t), newIdentity(t)
	s := writeSealedStore(t, oldID, rec("fp-1"))
	if _, err := s.Seal([]age.Recipient{newID.Recipient()}); err != nil {
		t.Fatalf("Seal to a new recipient err = %v", err)
	}
	if _, err := s.Load(t.Context()); !errors.Is(err, filestore.ErrWrongIdentity) {
		t.Errorf("Load with the old identity after the reseal err = %v, want ErrWrongIdentity", err)
	}
	s2 := filestore.New(s.Path(), filestore.WithIdentities(newID))
	if _, err := s2.Import([]key.Record{rec("fp-2")}, false); err != nil {
		t.Fatalf("Import with the new identity err = %v", err)
	}
	if _, err := s.Load(t.Context()); !errors.Is(err, filestore.ErrWrongIdentity) {
		t.Errorf("after an edit, the old identity opens the keystore (err = %v): the edit sealed to old recipients", err)
	}
	snap, err := s2.Load(t.Context())
	if err != nil || !slices.Equal(fingerprints(snap.Records), []string{"fp-1", "fp-2"}) {
		t.Errorf("Load with the new identity = %q, %v; want fp-1, fp-2", fingerprints(snap.Records), err)
	}
}

func TestSealedUpdateNeedsRecipients(t *testing.T) {
	t.Parallel()
	id := newIdentity(t)
	s := writeSealedStore(t, id, rec("fp-1"))
	before, _ := os.ReadFile(s.Path())
	for _, tc := range []struct {
		name  string
		setup func()
		want  string
	}{
		{"missing", func() { os.Remove(s.RecipientsPath()) }, "no recipients file"},
		{"writable by others", func() {
			os.WriteFile(s.RecipientsPath(), []byte(id.Recipient().String()+"\n"), 0o600)
			chmod(t, s.RecipientsPath(), 0o666)
		}, "lets others choose"},
		{"an identity in it", func() {
			os.Remove(s.RecipientsPath())
			os.WriteFile(s.RecipientsPath(), []byte(id.String()+"\n"), 0o600)
		}, "unknown recipient type"},
	} {
		// Not parallel: the cases share the store's recipients file.
		t.Run(tc.name, func(t *testing.T) {
			tc.setup()
			err := s.Update(false, func(recs []key.Record) ([]key.Record, error) { return append(recs, rec("fp-2")), nil })
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Update err = %v, want one saying %q", err, tc.want)
			}
			if strings.Contains(err.Error(), "AGE-SECRET-KEY") {
				t.Errorf("Update err = %q echoes an identity", err)
			}
			if after, _ := os.ReadFile(s.Path()); !bytes.Equal(before, after) {
				t.Errorf("a refused Update changed the file")
			}
		})
	}
}

func TestParseRecipient(t *testing.T) {
	t.Parallel()
	id := newIdentity(t)
	for _, tc := range []struct {
		name, in, wantErr string
	}{
		{"recipient", id.Recipient().String(), ""},
		{"recipient with spaces", " " + id.Recipient().String() + "\n", ""},
		{"identity", id.String(), "age identity (a private key), not a recipient"},
		{"identity lower case", strings.ToLower(id.String()), "age identity (a private key), not a recipient"},
		{"plugin identity", "AGE-PLUGIN-YUBIKEY-1QQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQ", "age identity (a private key), not a recipient"},
		{"garbage", "hunter2", "not an age recipient"},
		{"bad checksum", id.Recipient().String()[:len(id.Recipient().String())-1] + "q", "age recipient"},
		{"two", id.Recipient().String() + "\n" + id.Recipient().String(), "exactly one"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			_, err := filestore.ParseRecipient(tc.in)
			if tc.wantErr == "" {
				if err != nil {
					t.Fatalf("ParseRecipient err = %v, want nil", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("ParseRecipient err = %v, want %q", err, tc.wantErr)
			}
			if strings.Contains(strings.ToUpper(err.Error()), "AGE-SECRET-KEY-1") || strings.Contains(err.Error(), "AGE-PLUGIN-") || strings.Contains(err.Error(), "hunter2") {
				t.Errorf("ParseRecipient err = %q echoes its input", err)
			}
		})
	}
}

// crashEnv names the directory of the keystore a child process edits and
// then kills itself in, between its synced temporary file and the rename.
const crashEnv = "FILESTORE_CRASH_TEST_DIR"

// TestCrashMidWrite runs an edit of a sealed keystore in a child process
// that exits just before its rename: the keystore is the old one, byte for
// byte, and the temporary file the crash left holds no secret.
func TestCrashMidWrite(t *testing.T) {
	if dir := os.Getenv(crashEnv); dir != "" {
		crashChild(dir)
		return
	}
	t.Parallel()
	id := newIdentity(t)
	s := writeSealedStore(t, id, rec("fp-1"))
	if err := os.WriteFile(filepath.Join(filepath.Dir(s.Path()), "identity"), []byte(id.String()+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	before, err := os.ReadFile(s.Path())
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(os.Args[0], "-test.run=^TestCrashMidWrite$")
	cmd.Env = append(os.Environ(), crashEnv+"="+filepath.Dir(s.Path()))
	out, err := cmd.CombinedOutput()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 3 {
		t.Fatalf("child err = %v, want exit status 3 from the crash hook; output:\n%s", err, out)
	}
	after, err := os.ReadFile(s.Path())
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(before, after) {
		t.Fatalf("the keystore changed although the edit crashed before its rename")
	}
	if _, err := s.Load(t.Context()); err != nil {
		t.Fatalf("Load after the crash err = %v, want the old keystore whole", err)
	}
	var temps int
	for _, name := range dirEntries(t, filepath.Dir(s.Path())) {
		if !strings.HasSuffix(name, ".tmp") {
			continue
		}
		temps++
		data, err := os.ReadFile(filepath.Join(filepath.Dir(s.Path()), name))
		if err != nil {
			t.Fatal(err)
		}
		fi, _ := os.Stat(filepath.Join(filepath.Dir(s.Path()), name))
		if fi.Mode().Perm() != filestore.Mode {
			t.Errorf("temporary file %s has mode %04o, want %04o", name, fi.Mode().Perm(), filestore.Mode)
		}
		checkNoSecrets(t, "the temporary file "+name, data, rec("fp-1"), rec("fp-crash"))
	}
	if temps != 1 {
		t.Errorf("found %d temporary files after the crash, want the 1 the crash left", temps)
	}
}

func crashChild(dir string) {
	raw, err := os.ReadFile(filepath.Join(dir, "identity"))
	if err != nil {
		os.Exit(1)
	}
	ids, err := age.ParseIdentities(bytes.NewReader(raw))
	if err != nil {
		os.Exit(1)
	}
	filestore.SetBeforeRename(func(string) { os.Exit(3) })
	s := filestore.New(filepath.Join(dir, "keystore.json"), filestore.WithIdentities(ids...))
	_, err = s.Import([]key.Record{rec("fp-crash")}, false)
	fmt.Fprintln(os.Stderr, "edit finished without reaching the crash hook:", err)
	os.Exit(1)
}

// TestSealedReadOnlyMount: a sealed keystore mounted the way Kubernetes
// mounts a Secret (read-only directory, file 0440 because of the pod's
// fsGroup) is initialized and loaded without writing anything.
func TestSealedReadOnlyMount(t *testing.T) {
	t.Parallel()
	id := newIdentity(t)
	src := writeSealedStore(t, id, rec("fp-1"))
	data, err := os.ReadFile(src.Path())
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	path := filepath.Join(dir, "keystore.json")
	if err := os.WriteFile(path, data, 0o440); err != nil {
		t.Fatal(err)
	}
	chmod(t, path, 0o440)
	chmod(t, dir, 0o500)
	t.Cleanup(func() { chmod(t, dir, 0o700) })
	s := filestore.New(path, filestore.WithIdentities(id))
	created, err := s.Init(func() (key.Record, error) {
		t.Error("Init generated a key for an existing keystore")
		return rec("fp-gen"), nil
	})
	if err != nil || created {
		t.Fatalf("Init on a read-only mount = %v, %v; want false, nil", created, err)
	}
	snap, err := s.Load(t.Context())
	if err != nil || len(snap.Records) != 1 {
		t.Fatalf("Load of a 0440 sealed keystore = %d records, %v; want 1, nil", len(snap.Records), err)
	}
	if got := dirEntries(t, dir); !slices.Equal(got, []string{"keystore.json"}) {
		t.Errorf("the read-only directory holds %q, want only the keystore (no lock file)", got)
	}
	// A plaintext keystore stays refused at 0440.
	plain := filepath.Join(t.TempDir(), "keystore.json")
	if err := os.WriteFile(plain, encode(t, rec("fp-1")), 0o440); err != nil {
		t.Fatal(err)
	}
	chmod(t, plain, 0o440)
	if _, err := filestore.New(plain).Load(t.Context()); err == nil || !strings.Contains(err.Error(), "lets others read") {
		t.Errorf("Load of a 0440 plaintext keystore err = %v, want the mode refused", err)
	}
}

// TestUpdateKeepsOwner: root editing a keystore another user owns (the
// service user's) leaves it owned by that user, so the service can still
// read it.
func TestUpdateKeepsOwner(t *testing.T) {
	t.Parallel()
	if os.Geteuid() != 0 {
		t.Skip("only root can give a file to another user")
	}
	id := newIdentity(t)
	s := writeSealedStore(t, id, rec("fp-1"))
	const uid, gid = 4242, 4343
	if err := os.Chown(s.Path(), uid, gid); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Import([]key.Record{rec("fp-2")}, false); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(s.Path())
	if err != nil {
		t.Fatal(err)
	}
	st := fi.Sys().(*syscall.Stat_t)
	if st.Uid != uid || st.Gid != gid || fi.Mode().Perm() != filestore.Mode {
		t.Errorf("after Import the keystore is %d:%d %04o, want %d:%d %04o", st.Uid, st.Gid, fi.Mode().Perm(), uid, gid, filestore.Mode)
	}
}

// BenchmarkLoad10kKeys: what sealing adds to a full load (SIGHUP, or a
// reload after a change) of 10,000 keys, about 4 MB.
func BenchmarkLoad10kKeys(b *testing.B) {
	recs := make([]key.Record, 10_000)
	for i := range recs {
		recs[i] = rec(fmt.Sprintf("fp-bench-%05d", i))
	}
	id, err := age.GenerateX25519Identity()
	if err != nil {
		b.Fatal(err)
	}
	for _, sealed := range []bool{false, true} {
		name := "plaintext"
		var opts []filestore.Option
		if sealed {
			name, opts = "sealed", []filestore.Option{filestore.WithIdentities(id)}
		}
		b.Run(name, func(b *testing.B) {
			s := filestore.New(filepath.Join(b.TempDir(), "keystore.json"), opts...)
			if err := os.WriteFile(s.RecipientsPath(), []byte(id.Recipient().String()+"\n"), 0o600); err != nil {
				b.Fatal(err)
			}
			if err := s.Update(true, func([]key.Record) ([]key.Record, error) { return recs, nil }); err != nil {
				b.Fatal(err)
			}
			b.ResetTimer()
			for b.Loop() {
				if _, err := s.Load(context.Background()); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
