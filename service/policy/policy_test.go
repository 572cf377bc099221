package policy

import (
	"strings"
	"testing"

	"github.com/alecrypt/alecrypt/service/engine"
)

const testPolicy = `{
  "tokens": [{"identity": "pos-2", "sha256": "%s"}],
  "callers": {
    "pos-2":  {"operations": ["encrypt", "decrypt"], "keys": ["store-2*"], "default_alias": "store-2"},
    "gw":     {"operations": ["encrypt", "decrypt", "resolve"], "keys": ["*"]},
    "exact":  {"operations": ["resolve"], "keys": ["fp-9", "store-7"]}
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

func TestAllowed(t *testing.T) {
	t.Parallel()
	p := mustParse(t)
	tests := []struct {
		identity string
		op       engine.Op
		fp       string
		aliases  []string
		want     bool
	}{
		{"pos-2", engine.OpEncrypt, "fp-1", []string{"store-2"}, true},
		{"pos-2", engine.OpEncrypt, "fp-1", []string{"store-21-east"}, true},
		{"pos-2", engine.OpEncrypt, "fp-1", []string{"store-1"}, false},
		{"pos-2", engine.OpResolve, "fp-1", []string{"store-2"}, false},
		{"pos-2", engine.OpEncrypt, "store-2-fp", nil, true},
		{"gw", engine.OpDecrypt, "anything", nil, true},
		{"gw", engine.OpList, "anything", nil, false},
		{"exact", engine.OpResolve, "fp-9", nil, true},
		{"exact", engine.OpResolve, "fp-99", nil, false},
		{"exact", engine.OpResolve, "x", []string{"store-7"}, true},
		{"exact", engine.OpResolve, "x", []string{"store-70"}, false},
		{"stranger", engine.OpResolve, "fp-9", nil, false},
		{"", engine.OpResolve, "fp-9", nil, false},
	}
	for _, tc := range tests {
		if got := p.Allowed(tc.identity, tc.op, tc.fp, tc.aliases); got != tc.want {
			t.Errorf("Allowed(%q, %s, %q, %q) = %v, want %v", tc.identity, tc.op, tc.fp, tc.aliases, got, tc.want)
		}
	}
	if got := p.DefaultAlias("pos-2"); got != "store-2" {
		t.Errorf("DefaultAlias(pos-2) = %q", got)
	}
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
	for name, doc := range map[string]string{
		"not JSON":            `{`,
		"unknown field":       `{"callers": {}, "extra": 1}`,
		"unknown operation":   `{"callers": {"a": {"operations": ["delete"], "keys": ["*"]}}}`,
		"star in the middle":  `{"callers": {"a": {"operations": ["encrypt"], "keys": ["st*re"]}}}`,
		"empty selector":      `{"callers": {"a": {"operations": ["encrypt"], "keys": [""]}}}`,
		"bad token hash":      `{"tokens": [{"identity": "a", "sha256": "abc"}], "callers": {"a": {"operations": [], "keys": []}}}`,
		"token without rules": `{"tokens": [{"identity": "b", "sha256": "` + HashToken("x") + `"}], "callers": {}}`,
		"empty identity":      `{"callers": {"": {"operations": ["encrypt"], "keys": ["*"]}}}`,
	} {
		if _, err := Parse([]byte(doc)); err == nil {
			t.Errorf("Parse(%s) accepted %s", name, doc)
		}
	}
}
