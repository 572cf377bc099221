package vaultstore_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync/atomic"
	"testing"

	vaultapi "github.com/hashicorp/vault/api"

	"github.com/alecrypt/alecrypt/internal/key"
	"github.com/alecrypt/alecrypt/internal/key/keytest"
	"github.com/alecrypt/alecrypt/internal/keystore"
	"github.com/alecrypt/alecrypt/internal/keystore/keystoretest"
	"github.com/alecrypt/alecrypt/internal/keystore/vaultstore"
	"github.com/alecrypt/alecrypt/test/harness"
)

// canary is part of every test secret: no error may print it.
const canary = keytest.Canary

// attacks are fingerprints that were once written at paths they do not own:
// over another key's secret, outside the key prefix, and into a sub-folder
// no listing returns as a key.
var attacks = []string{"z/../victim", "../../other-app/x", "x/y"}

func rec(fp string) key.Record {
	return keytest.Record(fp, keytest.Aliases("store-1"), keytest.Source(key.SourcePortal))
}

// mutable lets the conformance suite change a Vault store through Put (with
// check-and-set, in place, so KV versions move as in production) and delete.
type mutable struct {
	*vaultstore.Store
	root   *vaultapi.Client
	prefix string
}

func (m mutable) SetRecords(ctx context.Context, recs []key.Record) error {
	cur, err := m.Entries(ctx)
	if err != nil {
		return err
	}
	keep := map[string]bool{}
	for _, r := range recs {
		keep[r.Fingerprint] = true
		if _, err := m.Put(ctx, r, cur[r.Fingerprint].Version); err != nil {
			return err
		}
	}
	for fp := range cur {
		if !keep[fp] {
			if err := m.root.KVv2("secret").DeleteMetadata(ctx, m.prefix+"/"+fp); err != nil {
				return err
			}
		}
	}
	return nil
}

var _ keystoretest.Corrupter = mutable{}

// AddInvalid writes a record with too few PBKDF2 iterations straight to KV:
// Put would refuse it.
func (m mutable) AddInvalid(ctx context.Context, fp string) error {
	data, err := recordDataErr(rec(fp), func(d map[string]any) { d["kdf"].(map[string]any)["iterations"] = 1 })
	if err != nil {
		return err
	}
	_, err = m.root.KVv2("secret").Put(ctx, m.prefix+"/"+fp, data)
	return err
}

// TestVault runs the vault store against one real Vault dev server, each
// subtest under its own prefix.
func TestVault(t *testing.T) {
	v := harness.StartVault(t)
	root := v.Client(t, harness.VaultRootToken)
	var n atomic.Int64 // conformance subtests run in parallel
	newStore := func(t *testing.T) (*vaultstore.Store, string) {
		prefix := fmt.Sprintf("test/%d", n.Add(1))
		return vaultstore.New(root, vaultstore.WithPrefix(prefix)), prefix
	}

	t.Run("Conformance", func(t *testing.T) {
		keystoretest.Run(t, func(t *testing.T, recs []key.Record) keystore.Reader {
			s, prefix := newStore(t)
			m := mutable{Store: s, root: root, prefix: prefix}
			if err := m.SetRecords(t.Context(), recs); err != nil {
				t.Fatal(err)
			}
			return m
		})
	})

	t.Run("PutRefusesInvalidFingerprints", func(t *testing.T) {
		ctx := t.Context()
		s, prefix := newStore(t)
		if _, err := s.Put(ctx, rec("victim"), 0); err != nil {
			t.Fatal(err)
		}
		for _, fp := range append(slices.Clone(attacks), ".", "..", "a b", "x%2Fy") {
			_, err := s.Put(ctx, rec(fp), 0)
			if !errors.Is(err, key.ErrInvalidFingerprint) {
				t.Errorf("Put(%q) err = %v, want ErrInvalidFingerprint", fp, err)
			}
			if err != nil && strings.Contains(err.Error(), canary) {
				t.Errorf("Put(%q) error carries the secret: %v", fp, err)
			}
		}
		// Nothing moved: the victim is still at version 1, nothing was
		// written beside or above the prefix.
		meta, err := root.KVv2("secret").GetMetadata(ctx, prefix+"/victim")
		if err != nil || meta.CurrentVersion != 1 {
			t.Errorf("victim metadata = %+v, %v; want version 1, untouched", meta, err)
		}
		for _, p := range []string{"other-app/x", "test/other-app/x", prefix + "/x/y"} {
			if _, err := root.KVv2("secret").Get(ctx, p); !errors.Is(err, vaultapi.ErrSecretNotFound) {
				t.Errorf("secret/%s exists after the refused Puts (err = %v)", p, err)
			}
		}
		snap, err := s.Load(ctx)
		if err != nil || len(snap.Records) != 1 || len(snap.Invalid) != 0 {
			t.Errorf("Load = %d records, %d invalid, %v; want victim only", len(snap.Records), len(snap.Invalid), err)
		}
	})

	t.Run("LoadSkipsInvalidEntries", func(t *testing.T) {
		ctx := t.Context()
		s, prefix := newStore(t)
		for _, fp := range []string{"good-1", "victim", "good-2"} {
			if _, err := s.Put(ctx, rec(fp), 0); err != nil {
				t.Fatal(err)
			}
		}
		good, err := s.Load(ctx)
		if err != nil {
			t.Fatal(err)
		}
		// What the unchecked writers of the past left behind, written as
		// they wrote it (straight to KV, around Put).
		raw := func(fp string) map[string]any {
			b, err := key.MarshalRecord(rec("placeholder"))
			if err != nil {
				t.Fatal(err)
			}
			return map[string]any{"fingerprint": fp, "raw": string(b)}
		}
		kv := root.KVv2("secret")
		bad := map[string]map[string]any{
			"victim":     recordData(t, rec("victim"), func(m map[string]any) { m["fingerprint"] = "z/../victim" }),
			"x/y":        recordData(t, rec("placeholder"), func(m map[string]any) { m["fingerprint"] = "x/y" }),
			"broken":     raw("broken"),
			"bad%20name": recordData(t, rec("placeholder"), func(m map[string]any) { m["fingerprint"] = "bad name" }),
		}
		for p, data := range bad {
			if _, err := kv.Put(ctx, prefix+"/"+p, data); err != nil {
				t.Fatalf("writing %s: %v", p, err)
			}
		}
		snap, err := s.Load(ctx)
		if err != nil {
			t.Fatalf("Load with invalid entries err = %v, want nil: one bad entry must not block the others", err)
		}
		var fps []string
		for _, r := range snap.Records {
			fps = append(fps, r.Fingerprint)
		}
		slices.Sort(fps)
		if !slices.Equal(fps, []string{"good-1", "good-2"}) {
			t.Errorf("Load records = %q, want good-1, good-2", fps)
		}
		names := map[string]string{}
		for _, inv := range snap.Invalid {
			names[inv.Name] = inv.Fingerprint
			if !errors.Is(inv.Err, keystore.ErrInvalidEntry) {
				t.Errorf("Invalid %q err = %v, want ErrInvalidEntry", inv.Name, inv.Err)
			}
			if strings.Contains(inv.Err.Error(), canary) {
				t.Errorf("Invalid %q error carries the secret: %v", inv.Name, inv.Err)
			}
		}
		for name, fp := range map[string]string{"victim": "victim", "x/": "", "broken": "broken"} {
			if got, ok := names[name]; !ok || got != fp {
				t.Errorf("Invalid[%q] = %q (listed %v), want fingerprint %q; all: %v", name, got, ok, fp, names)
			}
		}
		if snap.Revision == good.Revision {
			t.Errorf("Load revision did not change when invalid entries appeared")
		}
		// Entries, what alesync plans from, reports the same entries with
		// Err and never a path built from an invalid name.
		entries, err := s.Entries(ctx)
		if err != nil {
			t.Fatal(err)
		}
		for name := range names {
			if e, ok := entries[name]; !ok || e.Err == nil {
				t.Errorf("Entries[%q] = %+v, want an entry with Err", name, e)
			}
		}
	})
}

// recordData is r as KV data, edited by mutate.
func recordData(t *testing.T, r key.Record, mutate func(map[string]any)) map[string]any {
	t.Helper()
	m, err := recordDataErr(r, mutate)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func recordDataErr(r key.Record, mutate func(map[string]any)) (map[string]any, error) {
	b, err := key.MarshalRecord(r)
	if err != nil {
		return nil, err
	}
	m := map[string]any{}
	if err := json.Unmarshal(b, &m); err != nil {
		return nil, err
	}
	mutate(m)
	return m, nil
}
