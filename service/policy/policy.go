// Package policy owns who may do what: a file mapping caller identities to
// the operations they may perform and the keys they may use, plus the hashed
// bearer tokens that identify token callers. Once a policy is configured,
// anything it does not allow is denied.
//
// The file is JSON, decoded strictly:
//
//	{
//	  "tokens":  [{"identity": "pos-store-1", "sha256": "<hex SHA-256 of the token>"}],
//	  "callers": {
//	    "pos-store-1": {"operations": ["encrypt", "decrypt", "resolve"],
//	                    "keys": ["store-1*"], "default_alias": "store-1"},
//	    "spiffe://alecrypt/alegate": {"operations": ["encrypt", "decrypt"], "keys": ["*"]}
//	  }
//	}
//
// A key selector matches a key's fingerprint or any of its aliases, exactly,
// or by prefix when it ends in "*" ("*" alone matches every key). Tokens are
// stored only as SHA-256 hashes (tokens are long random strings, so a slow
// hash adds nothing) and compared in constant time. The Store reloads the file
// when it changes; a file that does not parse leaves the last good policy in
// force.
package policy

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/alecrypt/alecrypt/service/authn"
	"github.com/alecrypt/alecrypt/service/engine"
	"github.com/alecrypt/alecrypt/service/keyring"
)

// Policy is one parsed policy file. It is immutable.
type Policy struct {
	tokens  []tokenEntry
	callers map[string]rule
}

type tokenEntry struct {
	identity string
	sum      [sha256.Size]byte
}

type rule struct {
	ops          map[engine.Op]bool
	keys         []string
	defaultAlias string
}

type fileJSON struct {
	Tokens []struct {
		Identity string `json:"identity"`
		SHA256   string `json:"sha256"`
	} `json:"tokens"`
	Callers map[string]struct {
		Operations   []string `json:"operations"`
		Keys         []string `json:"keys"`
		DefaultAlias string   `json:"default_alias"`
	} `json:"callers"`
}

// Parse decodes and checks a policy file.
func Parse(data []byte) (*Policy, error) {
	var f fileJSON
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&f); err != nil {
		return nil, fmt.Errorf("policy: %w", err)
	}
	p := &Policy{callers: make(map[string]rule, len(f.Callers))}
	for i, t := range f.Tokens {
		sum, err := hex.DecodeString(t.SHA256)
		if err != nil || len(sum) != sha256.Size {
			return nil, fmt.Errorf("policy: tokens[%d]: sha256 must be 64 hex characters", i)
		}
		if _, ok := f.Callers[t.Identity]; !ok {
			return nil, fmt.Errorf("policy: tokens[%d]: identity %q has no entry in callers", i, t.Identity)
		}
		var e tokenEntry
		e.identity = t.Identity
		copy(e.sum[:], sum)
		p.tokens = append(p.tokens, e)
	}
	for id, c := range f.Callers {
		if id == "" {
			return nil, errors.New("policy: a caller has an empty identity")
		}
		r := rule{ops: map[engine.Op]bool{}, keys: c.Keys, defaultAlias: c.DefaultAlias}
		for _, op := range c.Operations {
			switch o := engine.Op(op); o {
			case engine.OpEncrypt, engine.OpDecrypt, engine.OpResolve, engine.OpList:
				r.ops[o] = true
			default:
				return nil, fmt.Errorf("policy: caller %q: unknown operation %q (encrypt, decrypt, resolve, list)", id, op)
			}
		}
		for _, sel := range c.Keys {
			if sel == "" || strings.Contains(strings.TrimSuffix(sel, "*"), "*") {
				return nil, fmt.Errorf("policy: caller %q: key selector %q: a name, or a prefix ending in *", id, sel)
			}
		}
		p.callers[id] = r
	}
	return p, nil
}

// HashToken is the hex SHA-256 a policy file stores for token.
func HashToken(token string) string {
	sum := sha256.Sum256([]byte(token))
	return hex.EncodeToString(sum[:])
}

// IdentityForToken implements authn.TokenVerifier. It compares against every
// entry in constant time, so timing reveals neither a match nor its place.
func (p *Policy) IdentityForToken(token string) (string, bool) {
	sum := sha256.Sum256([]byte(token))
	found := ""
	for _, t := range p.tokens {
		if subtle.ConstantTimeCompare(sum[:], t.sum[:]) == 1 {
			found = t.identity
		}
	}
	return found, found != ""
}

// Allowed reports whether identity may apply op to a key with this
// fingerprint and aliases.
func (p *Policy) Allowed(identity string, op engine.Op, fingerprint string, aliases []string) bool {
	r, ok := p.callers[identity]
	if !ok || !r.ops[op] {
		return false
	}
	for _, sel := range r.keys {
		if matches(sel, fingerprint) {
			return true
		}
		for _, a := range aliases {
			if matches(sel, a) {
				return true
			}
		}
	}
	return false
}

// DefaultAlias is the identity's default alias, or "".
func (p *Policy) DefaultAlias(identity string) string { return p.callers[identity].defaultAlias }

func matches(sel, name string) bool {
	if prefix, ok := strings.CutSuffix(sel, "*"); ok {
		return strings.HasPrefix(name, prefix)
	}
	return sel == name
}

// Store holds the policy in force and reloads it from its file. It
// implements engine.Authorizer and authn.TokenVerifier.
type Store struct {
	path string
	log  *slog.Logger
	cur  atomic.Pointer[Policy]

	mu   sync.Mutex // serializes reloads
	last []byte
}

var (
	_ engine.Authorizer   = (*Store)(nil)
	_ authn.TokenVerifier = (*Store)(nil)
)

// Open loads the policy file; it fails if the file does not parse, since
// starting with no policy would allow what the operator meant to deny.
func Open(path string, log *slog.Logger) (*Store, error) {
	s := &Store{path: path, log: log}
	if _, err := s.Reload(); err != nil {
		return nil, err
	}
	return s, nil
}

// Reload re-reads the file; on any error the current policy stays. It
// reports whether the policy changed.
func (s *Store) Reload() (bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	data, err := os.ReadFile(s.path)
	if err != nil {
		return false, fmt.Errorf("policy: %w", err)
	}
	if s.cur.Load() != nil && bytes.Equal(data, s.last) {
		return false, nil
	}
	p, err := Parse(data)
	if err != nil {
		return false, fmt.Errorf("%s: %w", s.path, err)
	}
	s.cur.Store(p)
	s.last = data
	s.log.Info("policy loaded", "path", s.path, "callers", len(p.callers), "tokens", len(p.tokens))
	return true, nil
}

// Run reloads on every tick until ctx ends; failures are logged and the last
// good policy stays in force.
func (s *Store) Run(ctx context.Context, every time.Duration) {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			if _, err := s.Reload(); err != nil {
				s.log.Error("policy reload failed; keeping the last good policy", "err", err)
			}
		}
	}
}

// Policy returns the policy in force.
func (s *Store) Policy() *Policy { return s.cur.Load() }

// IdentityForToken implements authn.TokenVerifier.
func (s *Store) IdentityForToken(token string) (string, bool) {
	return s.cur.Load().IdentityForToken(token)
}

// Authorize implements engine.Authorizer: the caller in ctx must be allowed
// op on k. A call without an authenticated caller is denied.
func (s *Store) Authorize(ctx context.Context, op engine.Op, k *keyring.Key) error {
	c, ok := authn.FromContext(ctx)
	if !ok {
		return fmt.Errorf("%s with %q by an unauthenticated caller: %w", op, k.Fingerprint(), engine.ErrPermissionDenied)
	}
	if !s.cur.Load().Allowed(c.Identity, op, k.Fingerprint(), k.Record().Aliases) {
		return fmt.Errorf("%s with %q by %q: %w", op, k.Fingerprint(), c.Identity, engine.ErrPermissionDenied)
	}
	return nil
}

// DefaultAlias implements engine.Authorizer.
func (s *Store) DefaultAlias(ctx context.Context) string {
	c, ok := authn.FromContext(ctx)
	if !ok {
		return ""
	}
	return s.cur.Load().DefaultAlias(c.Identity)
}
