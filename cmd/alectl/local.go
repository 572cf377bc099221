package main

import (
	"bytes"
	"crypto/rand"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/alecrypt/alecrypt/internal/key"
	"github.com/alecrypt/alecrypt/internal/keystore/filestore"
	"github.com/alecrypt/alecrypt/service/secret"
)

func (e env) keystoreFlag(fs interface {
	StringVar(*string, string, string, string)
}) *string {
	path := e.getenv("ALECRYPT_KEYSTORE")
	if path == "" {
		path = "./alecrypt-data/keystore.json"
	}
	p := new(string)
	fs.StringVar(p, "keystore", path, "embedded keystore file (env ALECRYPT_KEYSTORE)")
	e.identityFlag(fs)
	return p
}

// openKeystore is the keystore at path, which must exist unless create is
// set: a relative default run from another directory would otherwise make
// a new keystore nobody serves, and the running service would answer
// not_found for the key just added. Its errors and messages carry the
// absolute path, so the user sees which file was meant.
func openKeystore(fset *flag.FlagSet, path string, create bool) (*filestore.Store, string, error) {
	abs, err := filepath.Abs(path)
	if err != nil {
		return nil, "", err
	}
	if !create {
		if _, err := os.Stat(abs); errors.Is(err, fs.ErrNotExist) {
			return nil, abs, fmt.Errorf("keystore %s does not exist: run alectl in the directory alecryptd runs in, "+
				"point --keystore (env ALECRYPT_KEYSTORE) at the file alecryptd serves, or create one with 'alectl keys init'", abs)
		} else if err != nil {
			return nil, abs, err
		}
	}
	opts, err := storeOptions(fset)
	if err != nil {
		return nil, abs, err
	}
	return filestore.New(abs, opts...), abs, nil
}

// keysInit creates a keystore with one fresh key, as alecryptd does on its
// first start, and refuses to touch one that exists.
func (e env) keysInit(args []string) error {
	fs := e.newFlags("keys init")
	ks := e.keystoreFlag(fs)
	alias := fs.String("alias", "default", "the fresh key's alias")
	if _, err := parse(fs, args, 0); err != nil {
		return err
	}
	store, abs, err := openKeystore(fs, *ks, true)
	if err != nil {
		return err
	}
	var fresh key.Record
	created, err := store.Init(func() (key.Record, error) {
		var err error
		fresh, err = key.Generate(rand.Reader, key.AES256CTR, splitList(*alias), time.Now())
		return fresh, err
	})
	if err != nil {
		return sealHint(err)
	}
	if !created {
		return fmt.Errorf("keystore %s exists: 'alectl keys add' adds keys to it", abs)
	}
	_, err = fmt.Fprintf(e.stdout, "created %s with key %s (%s, aliases %s)\n", abs, fresh.Fingerprint, fresh.Algorithm, strings.Join(fresh.Aliases, ","))
	return err
}

// keysAdd creates a key in the keystore: generated, or from a Secret Key the
// Portal issued (--secret-file). The secret is never printed.
func (e env) keysAdd(args []string) error {
	fs := e.newFlags("keys add")
	ks := e.keystoreFlag(fs)
	aliases := fs.String("alias", "", "comma-separated aliases (required)")
	alg := fs.String("algorithm", string(key.AES256CTR), "aes-256-ctr or aes-256-gcm")
	secretFile := fs.String("secret-file", "", "file holding the Secret Key as issued (- for stdin); generated when empty")
	fingerprint := fs.String("fingerprint", "", "fingerprint (required with --secret-file; random otherwise)")
	salt := fs.String("salt", "", "PBKDF2 salt (required with --secret-file; random otherwise)")
	iterations := fs.Int("iterations", key.DefaultIterations, "PBKDF2 iterations")
	counterBits := fs.Int("counter-bits", 64, "aes-256-ctr counter width: 64 (WebCrypto length 64, EK) or 128")
	notAfter := fs.String("not-after", "", "RFC 3339 time after which the key no longer encrypts")
	jsonOut := fs.Bool("json", false, "print the new key's metadata as JSON")
	create := fs.Bool("create", false, "create the keystore if it does not exist")
	if _, err := parse(fs, args, 0); err != nil {
		return err
	}
	if *aliases == "" {
		return usageError("keys add needs --alias")
	}
	store, abs, err := openKeystore(fs, *ks, *create)
	if err != nil {
		return err
	}
	rec, err := key.Generate(rand.Reader, key.Algorithm(*alg), splitList(*aliases), time.Now())
	if err != nil {
		return err
	}
	if *secretFile != "" {
		if *fingerprint == "" || *salt == "" {
			return usageError("--secret-file needs --fingerprint and --salt")
		}
		src := "@" + *secretFile
		if *secretFile == "-" {
			src = "-"
		}
		raw, err := e.readData(src)
		if err != nil {
			return err
		}
		// Secret files usually end with a newline the Portal did not issue.
		rec.Secret = secret.New(bytes.TrimRight(raw, "\r\n"))
		clear(raw)
		rec.Source = key.SourcePortal
	}
	if *fingerprint != "" {
		rec.Fingerprint = *fingerprint
	}
	if *salt != "" {
		rec.KDF.Salt = *salt
	}
	rec.KDF.Iterations = *iterations
	if rec.Algorithm == key.AES256CTR {
		rec.CounterBits = *counterBits
	}
	if *notAfter != "" {
		if rec.NotAfter, err = time.Parse(time.RFC3339, *notAfter); err != nil {
			return usageError("--not-after: %v", err)
		}
	}
	if err := rec.Validate(); err != nil {
		return err
	}
	res, err := store.Import([]key.Record{rec}, false)
	if err != nil {
		return sealHint(err)
	}
	if res.Added != 1 {
		return fmt.Errorf("key %q already exists", rec.Fingerprint)
	}
	if *jsonOut {
		return json.NewEncoder(e.stdout).Encode(metadata(rec))
	}
	_, err = fmt.Fprintf(e.stdout, "added %s (%s, aliases %s) to %s\n", rec.Fingerprint, rec.Algorithm, strings.Join(rec.Aliases, ","), abs)
	return err
}

// keysImport merges a file of records ({"keys":[...]}, the keystore format)
// into the keystore, all or nothing.
func (e env) keysImport(args []string) error {
	fs := e.newFlags("keys import")
	ks := e.keystoreFlag(fs)
	replace := fs.Bool("replace", false, "overwrite keys whose fingerprint exists, if the import has a higher version")
	create := fs.Bool("create", false, "create the keystore if it does not exist")
	pos, err := parse(fs, args, 1)
	if err != nil {
		return err
	}
	store, abs, err := openKeystore(fs, *ks, *create)
	if err != nil {
		return err
	}
	data, err := os.ReadFile(pos[0])
	if err != nil {
		return err
	}
	recs, err := filestore.Parse(data)
	if err != nil {
		return fmt.Errorf("%s: %w", pos[0], err)
	}
	res, err := store.Import(recs, *replace)
	if err != nil {
		return sealHint(err)
	}
	_, err = fmt.Fprintf(e.stdout, "imported into %s: %d added, %d replaced, %d unchanged\n", abs, res.Added, res.Replaced, res.Unchanged)
	return err
}

// keysState moves a key through rotation: active, decrypt-only, disabled.
func (e env) keysState(args []string) error {
	fs := e.newFlags("keys state")
	ks := e.keystoreFlag(fs)
	pos, err := parse(fs, args, 2)
	if err != nil {
		return err
	}
	state := key.State(pos[1])
	switch state {
	case key.Active, key.DecryptOnly, key.Disabled:
	default:
		return usageError("state must be active, decrypt-only or disabled, got %q", pos[1])
	}
	store, _, err := openKeystore(fs, *ks, false)
	if err != nil {
		return err
	}
	rec, err := store.SetState(pos[0], state)
	if err != nil {
		return sealHint(err)
	}
	_, err = fmt.Fprintf(e.stdout, "%s is now %s (version %d)\n", rec.Fingerprint, rec.State, rec.Version)
	return err
}

// metadata is a record without its secret, for printing.
func metadata(r key.Record) map[string]any {
	m := map[string]any{
		"fingerprint": r.Fingerprint, "aliases": r.Aliases, "algorithm": r.Algorithm,
		"state": r.State, "version": r.Version, "created_at": r.CreatedAt, "source": r.Source,
		"kdf": map[string]any{"name": r.KDF.Name, "iterations": r.KDF.Iterations},
	}
	if r.Algorithm == key.AES256CTR {
		m["counter_bits"] = r.EffectiveCounterBits()
	}
	if !r.NotAfter.IsZero() {
		m["not_after"] = r.NotAfter
	}
	return m
}

func splitList(s string) []string {
	var out []string
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}
