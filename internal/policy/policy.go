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
// # Key selectors
//
// Each caller's "keys" is a list of selectors, of three kinds:
//
//   - "*" matches every key.
//   - "fingerprint:<fp>" matches the one key whose fingerprint is <fp>,
//     exactly. It is the only kind that matches fingerprints.
//   - Anything else names aliases: "store-1" matches the alias store-1
//     exactly; "store-1*" matches store-1 and the aliases that continue it
//     after a delimiter ('-', '/', '.' or ':'): store-1-pos, store-1/a,
//     store-1.x, store-1:x. Never store-10 or store-1x, which belong to
//     other tenants.
//
// A key is allowed when a selector matches its fingerprint or one of its
// aliases. A selector that could be read two ways is refused when the file
// is parsed: "*" anywhere but at the end, a prefix that already ends in a
// delimiter ("store-1-*": write "store-1*"), a fingerprint selector with a
// "*" or with no fingerprint, "Fingerprint:" in another case, an empty
// selector or one with spaces or non-ASCII characters.
//
// # Deciding on the reference
//
// A caller learns whether a key exists, and its state, only for keys it may
// use (see engine.Authorizer). So the policy decides on the reference as
// the request names it, whether or not a key answers to it: an alias
// reference by the alias selectors alone; a fingerprint reference by the key
// it names when there is one (its fingerprint and aliases), else by the
// fingerprint selectors alone. A caller allowed "store-1*" therefore gets
// PermissionDenied for every fingerprint that is not one of store-1's keys,
// issued or not, and NotFound only for names of its own, such as an unknown
// alias store-1-x.
//
// Tokens are stored only as SHA-256 hashes (tokens are long random strings,
// so a slow hash adds nothing) and compared in constant time. The Store
// reloads the file when it changes; a file that does not parse leaves the
// last good policy in force.
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
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/alecrypt/alecrypt/internal/authn"
	"github.com/alecrypt/alecrypt/internal/engine"
	"github.com/alecrypt/alecrypt/internal/keyring"
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
	keys         []selector
	defaultAlias string
}

// FingerprintSelectorPrefix starts a selector that names a fingerprint.
const FingerprintSelectorPrefix = "fingerprint:"

// aliasDelimiters end a tenant's part of an alias: "store-1*" covers the
// aliases that continue store-1 after one of them. Without a delimiter a
// prefix would cover store-10 and store-1x, someone else's stores.
const aliasDelimiters = "-/.:"

// selector is one parsed entry of a caller's "keys".
type selector struct {
	all         bool
	fingerprint string // a "fingerprint:" selector: this fingerprint exactly
	alias       string // an alias, or the stem of an alias prefix
	prefix      bool   // alias and the aliases continuing it after a delimiter
}

// parseSelector reads one selector, refusing any that could be read two
// ways (see the package doc).
func parseSelector(s string) (selector, error) {
	switch {
	case s == "*":
		return selector{all: true}, nil
	case s == "":
		return selector{}, errors.New("empty")
	case strings.ContainsFunc(s, func(r rune) bool { return r < 0x21 || r > 0x7e }):
		return selector{}, errors.New("must be printable ASCII without spaces, as fingerprints and aliases are")
	}
	if fp, ok := strings.CutPrefix(s, FingerprintSelectorPrefix); ok {
		switch {
		case fp == "":
			return selector{}, errors.New("names no fingerprint")
		case strings.Contains(fp, "*"):
			return selector{}, errors.New("fingerprint selectors are exact: no *")
		}
		return selector{fingerprint: fp}, nil
	}
	if strings.HasPrefix(strings.ToLower(s), FingerprintSelectorPrefix) {
		return selector{}, fmt.Errorf("write %q in lower case for a fingerprint", FingerprintSelectorPrefix)
	}
	stem, prefix := strings.CutSuffix(s, "*")
	if strings.Contains(stem, "*") {
		return selector{}, errors.New("* may only end a selector")
	}
	if prefix && strings.ContainsRune(aliasDelimiters, rune(stem[len(stem)-1])) {
		return selector{}, fmt.Errorf("ends in a delimiter: write %q, which matches %s and the aliases continuing it after %s",
			stem[:len(stem)-1]+"*", stem[:len(stem)-1], strings.Join(strings.Split(aliasDelimiters, ""), " "))
	}
	return selector{alias: stem, prefix: prefix}, nil
}

// matchesAlias reports whether an alias selector covers alias.
func (sel selector) matchesAlias(alias string) bool {
	if sel.all {
		return true
	}
	if sel.fingerprint != "" || !strings.HasPrefix(alias, sel.alias) {
		return false
	}
	if len(alias) == len(sel.alias) {
		return true
	}
	return sel.prefix && strings.IndexByte(aliasDelimiters, alias[len(sel.alias)]) >= 0
}

// matchesFingerprint reports whether sel names fingerprint: only "*" and
// fingerprint selectors do, never an alias selector spelt the same way.
func (sel selector) matchesFingerprint(fingerprint string) bool {
	return sel.all || (sel.fingerprint != "" && sel.fingerprint == fingerprint)
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
		r := rule{ops: map[engine.Op]bool{}, defaultAlias: c.DefaultAlias}
		for _, op := range c.Operations {
			switch o := engine.Op(op); o {
			case engine.OpEncrypt, engine.OpDecrypt, engine.OpResolve, engine.OpList:
				r.ops[o] = true
			default:
				return nil, fmt.Errorf("policy: caller %q: unknown operation %q (encrypt, decrypt, resolve, list)", id, op)
			}
		}
		for _, s := range c.Keys {
			sel, err := parseSelector(s)
			if err != nil {
				return nil, fmt.Errorf("policy: caller %q: key selector %q: %w", id, s, err)
			}
			r.keys = append(r.keys, sel)
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

// rule returns the identity's rule if it includes op.
func (p *Policy) rule(identity string, op engine.Op) (rule, bool) {
	r, ok := p.callers[identity]
	return r, ok && r.ops[op]
}

// AllowedOp reports whether identity may apply op to any key at all.
func (p *Policy) AllowedOp(identity string, op engine.Op) bool {
	r, ok := p.rule(identity, op)
	return ok && len(r.keys) > 0
}

// AllowedKey reports whether identity may apply op to the key with this
// fingerprint and aliases.
func (p *Policy) AllowedKey(identity string, op engine.Op, fingerprint string, aliases []string) bool {
	if p.AllowedFingerprint(identity, op, fingerprint) {
		return true
	}
	for _, a := range aliases {
		if p.AllowedAlias(identity, op, a) {
			return true
		}
	}
	return false
}

// AllowedAlias reports whether identity may apply op to the keys of alias,
// decided on the name alone.
func (p *Policy) AllowedAlias(identity string, op engine.Op, alias string) bool {
	return p.anySelector(identity, op, func(sel selector) bool { return sel.matchesAlias(alias) })
}

// AllowedFingerprint reports whether identity may apply op to the key with
// this fingerprint, decided on the name alone: by "*" and fingerprint
// selectors. It is the whole answer when no key has the fingerprint.
func (p *Policy) AllowedFingerprint(identity string, op engine.Op, fingerprint string) bool {
	return p.anySelector(identity, op, func(sel selector) bool { return sel.matchesFingerprint(fingerprint) })
}

// anySelector reports whether identity may apply op and one of its
// selectors satisfies match.
func (p *Policy) anySelector(identity string, op engine.Op, match func(selector) bool) bool {
	r, ok := p.rule(identity, op)
	return ok && slices.ContainsFunc(r.keys, match)
}

// AllowedRef is the decision engine.Authorizer asks for: may identity apply
// op to the key ref names, k (nil when none exists)? An alias is decided on
// its name (k, its primary, carries it); a fingerprint by its key when there
// is one, else by its name, so a caller cannot tell an absent key from a
// key it may not use.
func (p *Policy) AllowedRef(identity string, op engine.Op, ref engine.Ref, k *keyring.Key) bool {
	switch {
	case ref.Alias != "":
		return p.AllowedAlias(identity, op, ref.Alias)
	case k != nil:
		return p.AllowedKey(identity, op, k.Fingerprint(), k.Record().Aliases)
	default:
		return p.AllowedFingerprint(identity, op, ref.Fingerprint)
	}
}

// DefaultAlias is the identity's default alias, or "".
func (p *Policy) DefaultAlias(identity string) string { return p.callers[identity].defaultAlias }

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

// IdentityForToken implements authn.TokenVerifier.
func (s *Store) IdentityForToken(token string) (string, bool) {
	return s.cur.Load().IdentityForToken(token)
}

// Authorize implements engine.Authorizer (see Policy.AllowedRef). A call
// without an authenticated caller is denied. The error names the reference
// for the server's log; clients see only "permission denied".
func (s *Store) Authorize(ctx context.Context, op engine.Op, ref engine.Ref, k *keyring.Key) error {
	c, ok := authn.FromContext(ctx)
	if !ok {
		return fmt.Errorf("%s with %s by an unauthenticated caller: %w", op, describe(ref), engine.ErrPermissionDenied)
	}
	if !s.cur.Load().AllowedRef(c.Identity, op, ref, k) {
		return fmt.Errorf("%s with %s by %q: %w", op, describe(ref), c.Identity, engine.ErrPermissionDenied)
	}
	return nil
}

// AuthorizeOp implements engine.Authorizer.
func (s *Store) AuthorizeOp(ctx context.Context, op engine.Op) error {
	c, ok := authn.FromContext(ctx)
	if !ok {
		return fmt.Errorf("%s by an unauthenticated caller: %w", op, engine.ErrPermissionDenied)
	}
	if !s.cur.Load().AllowedOp(c.Identity, op) {
		return fmt.Errorf("%s by %q: %w", op, c.Identity, engine.ErrPermissionDenied)
	}
	return nil
}

func describe(ref engine.Ref) string {
	if ref.Alias != "" {
		return fmt.Sprintf("alias %q", ref.Alias)
	}
	return fmt.Sprintf("fingerprint %q", ref.Fingerprint)
}

// DefaultAlias implements engine.Authorizer.
func (s *Store) DefaultAlias(ctx context.Context) string {
	c, ok := authn.FromContext(ctx)
	if !ok {
		return ""
	}
	return s.cur.Load().DefaultAlias(c.Identity)
}
