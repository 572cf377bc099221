package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/alecrypt/alecrypt/service/secret"
)

const testToken = "portal-token-5d1e77"

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
		{name: "metrics on loopback", args: append(base, "--metrics-listen", "127.0.0.1:9092"), env: vaultEnv},
		{name: "metrics beyond loopback refused", args: append(base, "--metrics-listen", "0.0.0.0:9092"), env: vaultEnv, wantErr: "--metrics-listen 0.0.0.0:9092 is beyond loopback"},
		{name: "metrics beyond loopback allowed", args: append(base, "--metrics-listen", "0.0.0.0:9092", "--insecure-metrics-listen"), env: vaultEnv},
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
