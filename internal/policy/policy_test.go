package policy

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/alecrypt/alecrypt/internal/engine"
	"github.com/alecrypt/alecrypt/internal/key"
	"github.com/alecrypt/alecrypt/internal/key/keytest"
	"github.com/alecrypt/alecrypt/internal/keyring"
)

const testPolicy = `{
  "tokens": [{"identity": "pos-2", "sha256": "%s"}],
  "callers": {
    "pos-2":  {"operations": ["encrypt", "decrypt"], "keys": ["store-2*"], "default_alias": "store-2"},
    "gw":     {"operations": ["encrypt", "decrypt", "resolve"], "keys": ["*"]},
    "exact":  {"operations": ["resolve"], "keys": ["fingerprint:fp-9", "store-7"]},
    "none":   {"operations": ["list"], "keys": []}
  }
}`

func mustParse(t *testing.T) *Policy {
	t.Helper()
	p, err := Parse([]byte(strings.Replace(testPolicy, "%s", HashToken("secret-token-2"), 1)))
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func TestAllowedKey(t *testing.T) {
	t.Parallel()
	p := mustParse(t)
	tests := []struct {
		name     string
		identity string
		op       engine.Op
		fp       string
		aliases  []string
		want     bool
	}{
		{"exact stem", "pos-2", engine.OpEncrypt, "fp-1", []string{"store-2"}, true},
		{"after -", "pos-2", engine.OpEncrypt, "fp-1", []string{"store-2-pos"}, true},
		{"after /", "pos-2", engine.OpEncrypt, "fp-1", []string{"store-2/a"}, true},
		{"after .", "pos-2", engine.OpEncrypt, "fp-1", []string{"store-2.x"}, true},
		{"after :", "pos-2", engine.OpEncrypt, "fp-1", []string{"store-2:x"}, true},
		{"one of several aliases", "pos-2", engine.OpDecrypt, "fp-1", []string{"other", "store-2-b"}, true},
		{"store-20 is another tenant", "pos-2", engine.OpEncrypt, "fp-1", []string{"store-20"}, false},
		{"store-21-east is another tenant", "pos-2", engine.OpEncrypt, "fp-1", []string{"store-21-east"}, false},
		{"store-2x is another tenant", "pos-2", engine.OpEncrypt, "fp-1", []string{"store-2x"}, false},
		{"shorter alias", "pos-2", engine.OpEncrypt, "fp-1", []string{"store-"}, false},
		{"other tenant", "pos-2", engine.OpEncrypt, "fp-1", []string{"store-1"}, false},
		{"operation not granted", "pos-2", engine.OpResolve, "fp-1", []string{"store-2"}, false},
		{"alias prefix never matches a fingerprint", "pos-2", engine.OpEncrypt, "store-2-fp", nil, false},
		{"alias prefix never matches the stem as a fingerprint", "pos-2", engine.OpEncrypt, "store-2", nil, false},
		{"* matches any fingerprint", "gw", engine.OpDecrypt, "anything", nil, true},
		{"* matches any alias", "gw", engine.OpDecrypt, "fp", []string{"x"}, true},
		{"* does not grant operations", "gw", engine.OpList, "anything", nil, false},
		{"fingerprint selector", "exact", engine.OpResolve, "fp-9", nil, true},
		{"fingerprint selector is exact", "exact", engine.OpResolve, "fp-99", nil, false},
		{"fingerprint selector never matches an alias", "exact", engine.OpResolve, "x", []string{"fp-9"}, false},
		{"exact alias", "exact", engine.OpResolve, "x", []string{"store-7"}, true},
		{"exact alias has no children", "exact", engine.OpResolve, "x", []string{"store-7-a"}, false},
		{"exact alias never matches a fingerprint", "exact", engine.OpResolve, "store-7", nil, false},
		{"no selectors", "none", engine.OpList, "fp-9", []string{"store-7"}, false},
		{"unknown identity", "stranger", engine.OpResolve, "fp-9", nil, false},
		{"empty identity", "", engine.OpResolve, "fp-9", nil, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			if got := p.AllowedKey(tc.identity, tc.op, tc.fp, tc.aliases); got != tc.want {
				t.Errorf("AllowedKey(%q, %s, %q, %q) = %v, want %v", tc.identity, tc.op, tc.fp, tc.aliases, got, tc.want)
			}
		})
	}
	if got := p.DefaultAlias("pos-2"); got != "store-2" {
		t.Errorf("DefaultAlias(pos-2) = %q", got)
	}
}

// TestAllowedRef: references are decided on their name when no key answers
// to them, so an absent key and another tenant's key look the same.
func TestAllowedRef(t *testing.T) {
	t.Parallel()
	p := mustParse(t)
	ring := keyring.New()
	recs := []key.Record{
		testRecord("fp-2", "store-2"),
		testRecord("fp-3", "store-3"),
		testRecord("fp-9", "store-9"),
	}
	if _, _, err := ring.Replace(recs); err != nil {
		t.Fatal(err)
	}
	lookup := func(fp string) *keyring.Key {
		k, err := ring.Lookup(fp)
		if err != nil {
			return nil
		}
		return k
	}
	tests := []struct {
		name     string
		identity string
		op       engine.Op
		ref      engine.Ref
		k        *keyring.Key
		want     bool
	}{
		{"own key by fingerprint", "pos-2", engine.OpDecrypt, engine.Ref{Fingerprint: "fp-2"}, lookup("fp-2"), true},
		{"other tenant's key by fingerprint", "pos-2", engine.OpDecrypt, engine.Ref{Fingerprint: "fp-3"}, lookup("fp-3"), false},
		{"absent fingerprint", "pos-2", engine.OpDecrypt, engine.Ref{Fingerprint: "fp-404"}, nil, false},
		{"absent fingerprint spelt like an own alias", "pos-2", engine.OpDecrypt, engine.Ref{Fingerprint: "store-2-x"}, nil, false},
		{"own alias, no key", "pos-2", engine.OpEncrypt, engine.Ref{Alias: "store-2-x"}, nil, true},
		{"own alias with its key", "pos-2", engine.OpEncrypt, engine.Ref{Alias: "store-2"}, lookup("fp-2"), true},
		{"other alias, no key", "pos-2", engine.OpEncrypt, engine.Ref{Alias: "store-20"}, nil, false},
		{"other alias with its key", "pos-2", engine.OpEncrypt, engine.Ref{Alias: "store-3"}, lookup("fp-3"), false},
		{"fingerprint selector, key present", "exact", engine.OpResolve, engine.Ref{Fingerprint: "fp-9"}, lookup("fp-9"), true},
		{"fingerprint selector, key not issued yet", "exact", engine.OpResolve, engine.Ref{Fingerprint: "fp-9"}, nil, true},
		{"fingerprint selector does not allow the key's alias", "exact", engine.OpResolve, engine.Ref{Alias: "store-9"}, lookup("fp-9"), false},
		{"* and an absent fingerprint", "gw", engine.OpResolve, engine.Ref{Fingerprint: "fp-404"}, nil, true},
		{"* and an absent alias", "gw", engine.OpResolve, engine.Ref{Alias: "nope"}, nil, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			if got := p.AllowedRef(tc.identity, tc.op, tc.ref, tc.k); got != tc.want {
				t.Errorf("AllowedRef(%q, %s, %+v) = %v, want %v", tc.identity, tc.op, tc.ref, got, tc.want)
			}
		})
	}
	for _, tc := range []struct {
		identity string
		op       engine.Op
		want     bool
	}{
		{"pos-2", engine.OpEncrypt, true},
		{"pos-2", engine.OpList, false},
		{"none", engine.OpList, false}, // the operation, but no keys
		{"gw", engine.OpResolve, true},
		{"stranger", engine.OpEncrypt, false},
	} {
		if got := p.AllowedOp(tc.identity, tc.op); got != tc.want {
			t.Errorf("AllowedOp(%q, %s) = %v, want %v", tc.identity, tc.op, got, tc.want)
		}
	}
}

func testRecord(fp string, aliases ...string) key.Record {
	return keytest.Record(fp, keytest.Aliases(aliases...))
}

func TestTokens(t *testing.T) {
	t.Parallel()
	p := mustParse(t)
	if id, ok := p.IdentityForToken("secret-token-2"); !ok || id != "pos-2" {
		t.Errorf("IdentityForToken(right) = %q, %v", id, ok)
	}
	for _, tok := range []string{"", "secret-token-", "secret-token-2 ", "SECRET-TOKEN-2"} {
		if id, ok := p.IdentityForToken(tok); ok {
			t.Errorf("IdentityForToken(%q) = %q, want no identity", tok, id)
		}
	}
}

func TestParseRejects(t *testing.T) {
	t.Parallel()
	selectors := func(sel string) string {
		b, _ := json.Marshal(map[string]any{"callers": map[string]any{"a": map[string]any{"operations": []string{"encrypt"}, "keys": []string{sel}}}})
		return string(b)
	}
	tests := []struct {
		name, doc, wantErr string
	}{
		{"not JSON", `{`, "policy:"},
		{"unknown field", `{"callers": {}, "extra": 1}`, "unknown field"},
		{"unknown operation", `{"callers": {"a": {"operations": ["delete"], "keys": ["*"]}}}`, "unknown operation"},
		{"star in the middle", selectors("st*re"), "* may only end a selector"},
		{"two stars", selectors("store-1**"), "* may only end a selector"},
		{"empty selector", selectors(""), "empty"},
		{"space", selectors("store 1"), "printable ASCII"},
		{"non-ASCII", selectors("störe-1"), "printable ASCII"},
		{"prefix ending in -", selectors("store-1-*"), `write "store-1*"`},
		{"prefix ending in /", selectors("store-1/*"), `write "store-1*"`},
		{"prefix ending in .", selectors("store-1.*"), `write "store-1*"`},
		{"prefix ending in :", selectors("store-1:*"), `write "store-1*"`},
		{"fingerprint without a fingerprint", selectors("fingerprint:"), "names no fingerprint"},
		{"fingerprint prefix", selectors("fingerprint:abc*"), "exact"},
		{"fingerprint star", selectors("fingerprint:*"), "exact"},
		{"fingerprint in upper case", selectors("Fingerprint:abc"), "lower case"},
		{"bad token hash", `{"tokens": [{"identity": "a", "sha256": "abc"}], "callers": {"a": {"operations": [], "keys": []}}}`, "64 hex"},
		{"token without rules", `{"tokens": [{"identity": "b", "sha256": "` + HashToken("x") + `"}], "callers": {}}`, "no entry in callers"},
		{"empty identity", `{"callers": {"": {"operations": ["encrypt"], "keys": ["*"]}}}`, "empty identity"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			_, err := Parse([]byte(tc.doc))
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("Parse(%s) err = %v, want one saying %q", tc.doc, err, tc.wantErr)
			}
		})
	}
}

// TestParseAccepts: the selectors of existing policies keep parsing.
func TestParseAccepts(t *testing.T) {
	t.Parallel()
	for _, sel := range []string{"*", "store-1*", "store-1", "s*", "fingerprint:a65327c972dcdb8fc982e5083bb120c3", "tenant/eu*", "fp-9"} {
		doc := `{"callers": {"a": {"operations": ["encrypt"], "keys": ["` + sel + `"]}}}`
		if _, err := Parse([]byte(doc)); err != nil {
			t.Errorf("Parse(keys [%q]) = %v", sel, err)
		}
	}
}
