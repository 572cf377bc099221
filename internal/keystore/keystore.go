// Package keystore owns the contract between alecrypt's programs and the
// places keys are stored (the embedded file, Vault): what a reader loads (a
// Snapshot of valid records and invalid entries), the cheap revision check
// (Reviser), and what a writer that syncs keys needs (Entries read at a
// version, check-and-set Put).
//
// It holds no keys and runs no loop: the refresher that keeps a keyring in
// step with a store is internal/keyring/refresh, so a program that merely
// stores keys (alesync) links neither the keyring nor the cipher suites.
// Every backend runs the conformance suite in keystoretest.
package keystore

import (
	"context"
	"errors"

	"github.com/alecrypt/alecrypt/internal/key"
)

// Snapshot is the full content of a store at one moment.
type Snapshot struct {
	// Records are the valid records, one per fingerprint.
	Records []key.Record
	// Invalid are the entries the store holds but cannot use, each skipped
	// alone.
	Invalid []InvalidRecord
	// Revision changes whenever the content (valid or not) may have
	// changed; equal revisions mean the refresher can skip the reload.
	Revision string
}

// InvalidRecord is one stored entry that is not a usable key record.
type InvalidRecord struct {
	// Name is where the store keeps the entry, for an operator to find it:
	// a Vault secret's name under the key prefix, "keys[3]" in the file.
	// It may be any string the store allows: log it quoted.
	Name string
	// Fingerprint is the key the entry is filed under when that is a valid
	// fingerprint, else "". The refresher keeps serving the last good
	// record of a served key whose entry turned invalid.
	Fingerprint string
	// Err says what is wrong; it never holds key material.
	Err error
}

// Reader is a keystore as alecryptd sees it.
type Reader interface {
	// Load returns every valid record, and every entry that is not a valid
	// record in Snapshot.Invalid: one bad entry never hides the others. It
	// fails as a whole only when the store itself cannot be read (Vault
	// unreachable or refusing, a file that is missing, unreadable, exposed
	// to other users or not a keystore document); then it returns no
	// records.
	Load(ctx context.Context) (Snapshot, error)
}

// Reviser is implemented by stores that can tell cheaply whether their
// content may have changed (a file's stat, say). The refresher asks it first
// and skips Load when the answer equals the revision it last loaded, so an
// idle service does not re-read and re-parse thousands of keys every tick. A
// triggered reload (SIGHUP) does not ask it.
type Reviser interface {
	// Revision returns a token that changes whenever the content, or
	// anything Load checks (a file's permissions), may have changed; it
	// need not equal Snapshot.Revision.
	Revision(ctx context.Context) (string, error)
}

// Locator is implemented by stores that can say where their keys live (a
// file's path, a Vault mount and prefix), for the operator reading a log
// line or /readyz.
type Locator interface {
	Location() string
}

// ErrNotFound is returned by Load when the store does not exist yet.
var ErrNotFound = errors.New("keystore not found")

// CASStore is a keystore a sync can write without losing a concurrent
// update: every key is read with its version, and every write is
// conditional on the version read. The Vault store is one.
type CASStore interface {
	// Entries reads every stored key by the name it is stored under, with
	// the version each was read at. An entry that is not a valid record has
	// Err set (wrapping ErrInvalidEntry). A store failure fails the whole
	// call.
	Entries(ctx context.Context) (map[string]Entry, error)
	// Put writes rec if the stored version is still cas (0: must not
	// exist) and returns the new version, or an error wrapping
	// ErrCASMismatch when another writer got there first (nothing
	// written). It refuses a record whose fingerprint is invalid.
	Put(ctx context.Context, rec key.Record, cas int) (int, error)
}

// Entry is one key as stored: the record and the version it was read at,
// which Put needs for check-and-set. Err is set instead of Record when the
// stored data is not a valid record.
type Entry struct {
	Record  key.Record
	Version int
	Err     error
}

var (
	// ErrCASMismatch means the key changed since it was read: another
	// writer got there first. Nothing was written.
	ErrCASMismatch = errors.New("keystore: check-and-set mismatch: the key changed concurrently")
	// ErrInvalidEntry wraps an Entry's error when the stored data is not a
	// valid record.
	ErrInvalidEntry = errors.New("keystore: invalid key record")
)
