// Package vaultstore keeps key records in HashiCorp Vault's KV v2 engine: one
// secret per fingerprint at {mount}/data/{prefix}/{fingerprint}, whose data is
// the key record (the same fields as the embedded keystore's records).
//
// alecryptd reads through Load (read and list only; its Vault policy allows
// nothing else); alesync writes through Put with check-and-set, so two syncs
// racing cannot lose an update. The store takes a built *api.Client: address,
// TLS, namespace and authentication are the caller's business. Errors name
// paths and fingerprints, never secrets.
//
// A fingerprint becomes a path segment here, so the store never builds a path
// from one that fails key.ValidateFingerprint: Put refuses it, and a listed
// name that is not a valid fingerprint (or a sub-folder, which no valid key
// creates) is reported as an invalid entry without being read. One invalid
// entry never fails a load: Load serves the others and lists it in
// Snapshot.Invalid.
package vaultstore

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"sync"

	"github.com/hashicorp/vault/api"

	"github.com/alecrypt/alecrypt/internal/key"
	"github.com/alecrypt/alecrypt/internal/keystore"
)

// Defaults for where keys live.
const (
	DefaultMount  = "secret"
	DefaultPrefix = "alecrypt/keys"
)

// readers bounds concurrent secret reads during a load: enough to hide
// round-trip latency for thousands of keys, few enough not to flood Vault.
const readers = 8

// Store is a KV v2 keystore.
type Store struct {
	client *api.Client
	mount  string
	prefix string
}

var (
	_ keystore.Reader   = (*Store)(nil)
	_ keystore.CASStore = (*Store)(nil)
	_ keystore.Locator  = (*Store)(nil)
)

// Option configures a Store.
type Option func(*Store)

// WithMount sets the KV v2 mount (default "secret").
func WithMount(m string) Option { return func(s *Store) { s.mount = strings.Trim(m, "/") } }

// WithPrefix sets the path under the mount (default "alecrypt/keys").
func WithPrefix(p string) Option { return func(s *Store) { s.prefix = strings.Trim(p, "/") } }

// New returns a store over client.
func New(client *api.Client, opts ...Option) *Store {
	s := &Store{client: client, mount: DefaultMount, prefix: DefaultPrefix}
	for _, o := range opts {
		o(s)
	}
	return s
}

// Location describes where the keys live, for logs.
func (s *Store) Location() string { return s.mount + "/" + s.prefix }

// Entries implements keystore.CASStore: every key under the prefix, by
// listed name, with its KV version. A secret whose
// data is invalid is returned with Err set, so a sync can repair it; so is a
// name that is not a valid fingerprint (or a sub-folder), which is never read
// and can never be written. A Vault failure fails the whole call.
func (s *Store) Entries(ctx context.Context) (map[string]keystore.Entry, error) {
	listed, err := s.list(ctx)
	if err != nil {
		return nil, err
	}
	out := make(map[string]keystore.Entry, len(listed))
	names := make([]string, 0, len(listed))
	for _, name := range listed {
		if err := checkName(name); err != nil {
			out[name] = keystore.Entry{Err: fmt.Errorf("%w at %s/%q: %w", keystore.ErrInvalidEntry, s.prefix, name, err)}
			continue
		}
		names = append(names, name)
	}
	var (
		mu       sync.Mutex
		firstErr error
		wg       sync.WaitGroup
		next     = make(chan string)
	)
	for range min(readers, len(names)) {
		wg.Go(func() {
			for fp := range next {
				e, found, err := s.get(ctx, fp)
				mu.Lock()
				switch {
				case err != nil && firstErr == nil:
					firstErr = err
				case err == nil && found:
					out[fp] = e
				}
				mu.Unlock()
			}
		})
	}
	for _, fp := range names {
		next <- fp
	}
	close(next)
	wg.Wait()
	if firstErr != nil {
		return nil, firstErr
	}
	return out, nil
}

// Load implements keystore.Reader: every valid record, and every invalid
// entry in Snapshot.Invalid; an error only if Vault fails. The revision
// hashes the listed names and KV versions, so an unchanged Vault costs the
// refresher no keyring rebuild.
func (s *Store) Load(ctx context.Context) (keystore.Snapshot, error) {
	entries, err := s.Entries(ctx)
	if err != nil {
		return keystore.Snapshot{}, err
	}
	fps := make([]string, 0, len(entries))
	for fp := range entries {
		fps = append(fps, fp)
	}
	slices.Sort(fps)
	h := sha256.New()
	snap := keystore.Snapshot{Records: make([]key.Record, 0, len(entries))}
	for _, fp := range fps {
		e := entries[fp]
		fmt.Fprintf(h, "%q\x00%d\x00", fp, e.Version)
		if e.Err != nil {
			inv := keystore.InvalidRecord{Name: fp, Err: e.Err}
			if key.ValidateFingerprint(fp) == nil {
				inv.Fingerprint = fp
			}
			snap.Invalid = append(snap.Invalid, inv)
			continue
		}
		snap.Records = append(snap.Records, e.Record)
	}
	snap.Revision = hex.EncodeToString(h.Sum(nil))
	return snap, nil
}

// Put writes rec at its fingerprint's path with check-and-set: cas is the
// version the caller read (0 to create a key that must not exist yet). A
// concurrent change returns keystore.ErrCASMismatch and writes nothing.
//
// A key whose latest version was deleted (soft delete) reads as absent, so a
// sync puts it with cas 0; KV v2 still counts the deleted version, so that
// case is retried once against the deleted version, and only that case.
func (s *Store) Put(ctx context.Context, rec key.Record, cas int) (newVersion int, err error) {
	path, err := s.path(rec.Fingerprint)
	if err != nil {
		return 0, fmt.Errorf("vault: put: %w", err)
	}
	data, err := toData(rec)
	if err != nil {
		return 0, err
	}
	kv := s.client.KVv2(s.mount)
	sec, err := kv.Put(ctx, path, data, api.WithCheckAndSet(cas))
	if err != nil && cas == 0 && isCASError(err) {
		if v, deleted := s.deletedVersion(ctx, path); deleted {
			sec, err = kv.Put(ctx, path, data, api.WithCheckAndSet(v))
		}
	}
	if err != nil {
		if isCASError(err) {
			return 0, fmt.Errorf("put %q: %w", rec.Fingerprint, keystore.ErrCASMismatch)
		}
		return 0, fmt.Errorf("vault: put %s: %w", path, err)
	}
	if sec == nil || sec.VersionMetadata == nil {
		return 0, fmt.Errorf("vault: put %s: no version in the response", path)
	}
	return sec.VersionMetadata.Version, nil
}

// path is the secret path of a fingerprint. It is the one place a
// fingerprint becomes part of a path, so it refuses any that is not valid:
// "z/../victim" would name another key's secret, "../../x" a path outside
// the prefix, "x/y" a secret no listing returns as a key.
func (s *Store) path(fp string) (string, error) {
	if err := key.ValidateFingerprint(fp); err != nil {
		return "", err
	}
	return s.prefix + "/" + fp, nil
}

// checkName tells whether a listed name can be read as a key.
func checkName(name string) error {
	if strings.HasSuffix(name, "/") {
		return errors.New("a sub-folder; keys live directly under the prefix")
	}
	return key.ValidateFingerprint(name)
}

// deletedVersion reports the current version of the key at path whose latest
// version is deleted or destroyed.
func (s *Store) deletedVersion(ctx context.Context, path string) (int, bool) {
	meta, err := s.client.KVv2(s.mount).GetMetadata(ctx, path)
	if err != nil || meta == nil {
		return 0, false
	}
	for _, v := range meta.Versions {
		if v.Version == meta.CurrentVersion {
			return v.Version, !v.DeletionTime.IsZero() || v.Destroyed
		}
	}
	return 0, false
}

func (s *Store) list(ctx context.Context) ([]string, error) {
	sec, err := s.client.Logical().ListWithContext(ctx, s.mount+"/metadata/"+s.prefix)
	if err != nil {
		return nil, fmt.Errorf("vault: list %s: %w", s.Location(), err)
	}
	if sec == nil || sec.Data == nil {
		return nil, nil // no keys yet: Vault answers 404, the client returns nil
	}
	raw, _ := sec.Data["keys"].([]any)
	names := make([]string, 0, len(raw))
	for _, v := range raw {
		if name, ok := v.(string); ok && name != "" {
			names = append(names, name)
		}
	}
	return names, nil
}

// get reads one key; found is false when it was deleted meanwhile (or its
// latest version is soft-deleted), which counts as removed.
func (s *Store) get(ctx context.Context, fp string) (keystore.Entry, bool, error) {
	path, err := s.path(fp)
	if err != nil {
		return keystore.Entry{}, false, fmt.Errorf("vault: read: %w", err)
	}
	sec, err := s.client.KVv2(s.mount).Get(ctx, path)
	if errors.Is(err, api.ErrSecretNotFound) {
		return keystore.Entry{}, false, nil
	}
	if err != nil {
		return keystore.Entry{}, false, fmt.Errorf("vault: read %s: %w", path, err)
	}
	if sec == nil || sec.Data == nil {
		return keystore.Entry{}, false, nil
	}
	e := keystore.Entry{}
	if sec.VersionMetadata != nil {
		e.Version = sec.VersionMetadata.Version
	}
	e.Record, e.Err = fromData(sec.Data)
	if e.Err == nil && e.Record.Fingerprint != fp {
		e.Err = fmt.Errorf("record at %s names fingerprint %q", path, e.Record.Fingerprint)
	}
	if e.Err != nil {
		e.Err = fmt.Errorf("%w at %s: %w", keystore.ErrInvalidEntry, path, e.Err)
	}
	return e, true, nil
}

// toData turns a record into KV data through the one record codec, so Vault
// holds exactly the keystore record shape.
func toData(rec key.Record) (map[string]any, error) {
	b, err := key.MarshalRecord(rec)
	if err != nil {
		return nil, err
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		return nil, err
	}
	clear(b)
	return m, nil
}

func fromData(data map[string]any) (key.Record, error) {
	b, err := json.Marshal(data)
	if err != nil {
		return key.Record{}, err
	}
	defer clear(b)
	return key.UnmarshalRecord(b)
}

func isCASError(err error) bool {
	var re *api.ResponseError
	if errors.As(err, &re) && re.StatusCode == http.StatusBadRequest {
		for _, e := range re.Errors {
			if strings.Contains(e, "check-and-set") {
				return true
			}
		}
	}
	return false
}
