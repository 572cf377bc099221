package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/alecrypt/alecrypt/service/key"
	"github.com/alecrypt/alecrypt/service/keystore"
	"github.com/alecrypt/alecrypt/service/portal"
	"github.com/alecrypt/alecrypt/service/secret"
)

const (
	testToken = "portal-token-5d1e77"
	canary    = "CANARY-SECRET-0b9d"
)

func env(vars map[string]string) func(string) string {
	return func(k string) string { return vars[k] }
}

func TestParseConfig(t *testing.T) {
	t.Parallel()
	tokenFile := filepath.Join(t.TempDir(), "token")
	base := []string{"--portal-url", "https://portal.example/api", "--portal-token-file", tokenFile}
	vaultEnv := map[string]string{"VAULT_TOKEN": "hvs.x"}
	for _, tc := range []struct {
		name    string
		args    []string
		env     map[string]string
		wantErr string // substring; "" means valid
		check   func(t *testing.T, c Config)
	}{
		{name: "minimal", args: base, env: vaultEnv, check: func(t *testing.T, c Config) {
			if c.Interval != 0 || c.DryRun || c.Vault.Mount != "secret" || c.Vault.Prefix != "alecrypt/keys" || c.PortalURL.Path != "/api" {
				t.Errorf("defaults = %+v", c)
			}
		}},
		{name: "env token", args: []string{"--portal-url", "https://p", "--interval", "5m", "--dry-run", "--vault-mount", "/kv/", "--vault-prefix", "/a/b/"},
			env: map[string]string{"ALESYNC_PORTAL_TOKEN": testToken, "VAULT_TOKEN": "x"}, check: func(t *testing.T, c Config) {
				if c.Interval != 5*time.Minute || !c.DryRun || c.Vault.Mount != "kv" || c.Vault.Prefix != "a/b" {
					t.Errorf("config = %+v", c)
				}
				if got := fmt.Sprintf("%+v %#v", c, c); strings.Contains(got, testToken) {
					t.Errorf("printing the Config shows the token: %s", got)
				}
			}},
		{name: "env url", args: []string{"--portal-token-file", tokenFile}, env: map[string]string{"ALESYNC_PORTAL_URL": "https://p", "VAULT_TOKEN": "x"}},
		{name: "approle", args: append(base, "--vault-auth", "approle", "--vault-role-id", "r", "--vault-secret-id-file", "f")},
		{name: "once", args: append(base, "--once"), env: vaultEnv},
		{name: "no url", args: []string{"--portal-token-file", tokenFile}, env: vaultEnv, wantErr: "--portal-url is required"},
		{name: "http url", args: []string{"--portal-url", "http://portal.example", "--portal-token-file", tokenFile}, env: vaultEnv, wantErr: "https://"},
		{name: "credentials in url", args: []string{"--portal-url", "https://u:pw@portal.example", "--portal-token-file", tokenFile}, env: vaultEnv, wantErr: "without credentials"},
		{name: "no token", args: []string{"--portal-url", "https://p"}, env: vaultEnv, wantErr: "token is required"},
		{name: "two tokens", args: base, env: map[string]string{"ALESYNC_PORTAL_TOKEN": testToken, "VAULT_TOKEN": "x"}, wantErr: "not both"},
		{name: "bad env token", args: []string{"--portal-url", "https://p"}, env: map[string]string{"ALESYNC_PORTAL_TOKEN": testToken + "\n", "VAULT_TOKEN": "x"}, wantErr: "ALESYNC_PORTAL_TOKEN"},
		{name: "once and interval", args: append(base, "--once", "--interval", "1m"), env: vaultEnv, wantErr: "exclude"},
		{name: "tiny interval", args: append(base, "--interval", "10ms"), env: vaultEnv, wantErr: "at least 1s"},
		{name: "negative interval", args: append(base, "--interval", "-1m"), env: vaultEnv, wantErr: "at least 1s"},
		{name: "empty prefix", args: append(base, "--vault-prefix", "/"), env: vaultEnv, wantErr: "must not be empty"},
		{name: "no vault token", args: base, wantErr: "VAULT_TOKEN"},
		{name: "kubernetes", args: append(base, "--vault-auth", "kubernetes", "--vault-k8s-role", "alesync")},
		{name: "approle incomplete", args: append(base, "--vault-auth", "approle", "--vault-role-id", "r"), wantErr: "secret id file"},
		{name: "kubernetes without role", args: append(base, "--vault-auth", "kubernetes"), wantErr: "needs a role"},
		{name: "unknown auth", args: append(base, "--vault-auth", "ldap"), env: vaultEnv, wantErr: "unknown vault auth method"},
		{name: "bad log format", args: append(base, "--log-format", "xml"), env: vaultEnv, wantErr: "json or text"},
		{name: "stray argument", args: append(base, "now"), env: vaultEnv, wantErr: "unexpected arguments"},
		{name: "unknown flag", args: append(base, "--delete-everything"), env: vaultEnv, wantErr: "not defined"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			c, err := parseConfig(tc.args, env(tc.env), io.Discard)
			switch {
			case tc.wantErr == "" && err != nil:
				t.Fatalf("parseConfig() err = %v, want nil", err)
			case tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)):
				t.Fatalf("parseConfig() err = %v, want one mentioning %q", err, tc.wantErr)
			}
			if err != nil && strings.Contains(err.Error(), testToken) {
				t.Errorf("parseConfig() err = %v shows the token", err)
			}
			if err == nil && tc.check != nil {
				tc.check(t, c)
			}
		})
	}
	if _, err := parseConfig([]string{"--help"}, env(nil), io.Discard); !errors.Is(err, flag.ErrHelp) {
		t.Errorf("parseConfig(--help) err = %v, want flag.ErrHelp", err)
	}
}

func TestPortalTokenFromFile(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	good := filepath.Join(dir, "good")
	bad := filepath.Join(dir, "bad")
	if err := os.WriteFile(good, []byte("  "+testToken+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(bad, []byte(testToken+" extra\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if tok, err := portalToken(Config{PortalTokenFile: good}); err != nil || tok != testToken {
		t.Errorf("portalToken(good) = %q, %v; want the trimmed token", tok, err)
	}
	if _, err := portalToken(Config{PortalTokenFile: bad}); err == nil || strings.Contains(err.Error(), testToken) {
		t.Errorf("portalToken(bad) err = %v, want an error without the token", err)
	}
	if _, err := portalToken(Config{PortalTokenFile: filepath.Join(dir, "missing")}); err == nil {
		t.Error("portalToken(missing) err = nil")
	}
	if tok, _ := portalToken(Config{PortalToken: secret.FromString(testToken)}); tok != testToken {
		t.Errorf("portalToken(env) = %q", tok)
	}
}

func TestPortalHTTPClientCA(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	notPEM := filepath.Join(dir, "ca.pem")
	if err := os.WriteFile(notPEM, []byte("hello"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := portalHTTPClient(notPEM); err == nil {
		t.Error("portalHTTPClient(not PEM) err = nil")
	}
	if _, err := portalHTTPClient(filepath.Join(dir, "missing.pem")); err == nil {
		t.Error("portalHTTPClient(missing) err = nil")
	}
	if hc, err := portalHTTPClient(""); err != nil || hc.Timeout == 0 {
		t.Errorf("portalHTTPClient(system roots) = %v, %v", hc, err)
	}
}

func rec(fp string, mutate ...func(*key.Record)) key.Record {
	r := key.Record{
		Fingerprint: fp,
		Aliases:     []string{"store-1"},
		Algorithm:   key.AES256GCM,
		Secret:      secret.FromString(canary + "-" + fp),
		KDF:         key.KDF{Name: key.KDFPBKDF2SHA256, Salt: "salt", Iterations: 1000},
		State:       key.Active,
		Version:     1,
		CreatedAt:   time.Date(2025, 3, 4, 5, 6, 7, 0, time.UTC),
		Source:      key.SourcePortal,
	}
	for _, m := range mutate {
		m(&r)
	}
	return r
}

// store is an in-memory keystore.CASStore with check-and-set.
type store struct {
	mu      sync.Mutex
	entries map[string]keystore.Entry
	puts    int
	readErr error
}

func (s *store) Entries(context.Context) (map[string]keystore.Entry, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.readErr != nil {
		return nil, s.readErr
	}
	return maps.Clone(s.entries), nil
}

func (s *store) Put(_ context.Context, r key.Record, cas int) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	cur := s.entries[r.Fingerprint].Version
	if cas != cur {
		return 0, keystore.ErrCASMismatch
	}
	s.puts++
	s.entries[r.Fingerprint] = keystore.Entry{Record: r, Version: cur + 1}
	return cur + 1, nil
}

type harness struct {
	s      *syncer
	store  *store
	stdout *bytes.Buffer
	logs   *bytes.Buffer
}

func newHarness(t *testing.T, res portal.Result, fetchErr error, entries map[string]keystore.Entry) *harness {
	t.Helper()
	if entries == nil {
		entries = map[string]keystore.Entry{}
	}
	h := &harness{store: &store{entries: entries}, stdout: &bytes.Buffer{}, logs: &bytes.Buffer{}}
	h.s = &syncer{
		fetch:  func(context.Context) (portal.Result, error) { return res, fetchErr },
		target: h.store,
		log:    slog.New(slog.NewJSONHandler(h.logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
		out:    h.stdout,
	}
	t.Cleanup(func() {
		for name, out := range map[string]string{"stdout": h.stdout.String(), "log": h.logs.String()} {
			if strings.Contains(out, canary) || strings.Contains(out, testToken) {
				t.Errorf("%s shows a secret or the token:\n%s", name, out)
			}
		}
	})
	return h
}

func TestRunPortalFailureWritesNothing(t *testing.T) {
	t.Parallel()
	stored := map[string]keystore.Entry{"a": {Record: rec("a"), Version: 1}}
	h := newHarness(t, portal.Result{}, fmt.Errorf("portal: page 1: %w: 401 Unauthorized", portal.ErrUnauthorized), stored)
	if h.s.runAndReport(context.Background()) {
		t.Error("runAndReport() = ok after a Portal failure")
	}
	if h.store.puts != 0 || h.store.entries["a"].Record.State != key.Active {
		t.Error("a Portal failure changed Vault")
	}
	if got := h.stdout.String(); got != "added=0 updated=0 retired=0 unchanged=0 failed=0\n" {
		t.Errorf("stdout = %q, want the summary line", got)
	}
	if !strings.Contains(h.logs.String(), "aborted") || !strings.Contains(h.logs.String(), "401") {
		t.Errorf("log does not say the run aborted and why:\n%s", h.logs)
	}
}

func TestRunVaultFailure(t *testing.T) {
	t.Parallel()
	h := newHarness(t, portal.Result{Records: []key.Record{rec("a")}}, nil, nil)
	h.store.readErr = errors.New("vault: list secret/alecrypt/keys: connection refused")
	if h.s.runAndReport(context.Background()) || h.store.puts != 0 {
		t.Errorf("runAndReport() after a Vault failure: ok or wrote %d keys", h.store.puts)
	}
}

func TestRunLoginFailure(t *testing.T) {
	t.Parallel()
	h := newHarness(t, portal.Result{Records: []key.Record{rec("a")}}, nil, nil)
	h.s.login = func(context.Context) error { return errors.New("vault approle login: permission denied") }
	if h.s.runAndReport(context.Background()) || h.store.puts != 0 {
		t.Error("runAndReport() after a login failure: ok or wrote keys")
	}
}

func TestRunEmptyPortalGuard(t *testing.T) {
	t.Parallel()
	stored := func() map[string]keystore.Entry {
		return map[string]keystore.Entry{"a": {Record: rec("a"), Version: 1}, "b": {Record: rec("b"), Version: 1}}
	}
	h := newHarness(t, portal.Result{Pages: 1}, nil, stored())
	if h.s.runAndReport(context.Background()) || h.store.puts != 0 {
		t.Errorf("an empty Portal retired %d keys without --allow-empty-portal", h.store.puts)
	}
	if !strings.Contains(h.logs.String(), "allow-empty-portal") {
		t.Errorf("log does not explain the refusal:\n%s", h.logs)
	}

	h = newHarness(t, portal.Result{Pages: 1}, nil, stored())
	h.s.allowEmpty = true
	if !h.s.runAndReport(context.Background()) || h.store.puts != 2 {
		t.Errorf("--allow-empty-portal: retired %d keys, want 2", h.store.puts)
	}

	// Nothing active to lose: an empty Portal is just an empty Portal.
	h = newHarness(t, portal.Result{Pages: 1}, nil, nil)
	if !h.s.runAndReport(context.Background()) {
		t.Error("an empty Portal and an empty Vault is not a failure")
	}
}

func TestRunMalformedRecords(t *testing.T) {
	t.Parallel()
	stored := map[string]keystore.Entry{
		"bad":  {Record: rec("bad"), Version: 1},
		"gone": {Record: rec("gone"), Version: 1},
	}
	res := portal.Result{
		Records: []key.Record{rec("new")},
		Problems: []portal.Problem{
			{Index: 1, Fingerprint: "bad", Err: fmt.Errorf("%w \"bad\": unknown algorithm", key.ErrInvalidRecord)},
		},
	}
	h := newHarness(t, res, nil, stored)
	if h.s.runAndReport(context.Background()) {
		t.Error("runAndReport() = ok with malformed records")
	}
	if got := h.stdout.String(); got != "added=1 updated=0 retired=1 unchanged=0 failed=1\n" {
		t.Errorf("stdout = %q", got)
	}
	if e := h.store.entries["bad"]; e.Record.State != key.Active || e.Version != 1 {
		t.Errorf("the key behind a malformed record was changed: %s v%d", e.Record.State, e.Version)
	}
}

// TestRunUnreadableRecordHoldsRetirements: a record without a readable
// fingerprint could be any key, so nothing may be retired, even when every
// record is unreadable (e.g. the Portal renamed "fingerprint").
func TestRunUnreadableRecordHoldsRetirements(t *testing.T) {
	t.Parallel()
	stored := map[string]keystore.Entry{"a": {Record: rec("a"), Version: 1}, "b": {Record: rec("b"), Version: 1}}
	res := portal.Result{Problems: []portal.Problem{
		{Index: 0, Err: fmt.Errorf("%w: json: unknown field \"id\"", key.ErrInvalidRecord)},
		{Index: 1, Err: fmt.Errorf("%w: json: unknown field \"id\"", key.ErrInvalidRecord)},
	}}
	h := newHarness(t, res, nil, stored)
	if h.s.runAndReport(context.Background()) {
		t.Error("runAndReport() = ok with unreadable records")
	}
	if h.store.puts != 0 {
		t.Errorf("unreadable records let %d keys be retired", h.store.puts)
	}
	if got := h.stdout.String(); got != "added=0 updated=0 retired=0 unchanged=0 failed=4\n" {
		t.Errorf("stdout = %q, want 2 unreadable records and 2 held retirements failed", got)
	}
}

func TestRunDryRun(t *testing.T) {
	t.Parallel()
	stored := map[string]keystore.Entry{
		"same": {Record: rec("same"), Version: 1},
		"old":  {Record: rec("old"), Version: 1},
		"gone": {Record: rec("gone"), Version: 1},
	}
	res := portal.Result{Records: []key.Record{rec("new"), rec("same"), rec("old", func(r *key.Record) { r.Version = 2 })}}
	h := newHarness(t, res, nil, stored)
	h.s.dryRun = true
	if !h.s.runAndReport(context.Background()) {
		t.Error("dry run not ok")
	}
	if h.store.puts != 0 {
		t.Errorf("dry run wrote %d keys", h.store.puts)
	}
	want := "gone retire\nnew add\nold update\nsame unchanged\nadded=1 updated=1 retired=1 unchanged=1 failed=0\n"
	if got := h.stdout.String(); got != want {
		t.Errorf("dry-run stdout =\n%s\nwant\n%s", got, want)
	}
}

func TestRunTwiceWritesOnce(t *testing.T) {
	t.Parallel()
	res := portal.Result{Records: []key.Record{rec("a"), rec("b")}}
	h := newHarness(t, res, nil, nil)
	for run := 1; run <= 2; run++ {
		if !h.s.runAndReport(context.Background()) {
			t.Fatalf("run %d not ok", run)
		}
	}
	if h.store.puts != 2 {
		t.Errorf("two runs wrote %d times, want 2 (the second writes nothing)", h.store.puts)
	}
	if got := h.stdout.String(); got != "added=2 updated=0 retired=0 unchanged=0 failed=0\nadded=0 updated=0 retired=0 unchanged=2 failed=0\n" {
		t.Errorf("stdout = %q", got)
	}
	if !strings.Contains(h.logs.String(), `"msg":"sync run"`) || !strings.Contains(h.logs.String(), `"added":2`) {
		t.Errorf("log has no summary line:\n%s", h.logs)
	}
}
