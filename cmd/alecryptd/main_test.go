package main

import (
	"strings"
	"testing"
	"time"
)

// TestParseConfigRemovalGuard: the removal guard's flags, their environment
// variables and their bounds.
func TestParseConfigRemovalGuard(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name        string
		args        []string
		env         map[string]string
		wantShare   float64
		wantConfirm time.Duration
		wantErr     string
	}{
		{name: "defaults", wantShare: 0.5, wantConfirm: time.Minute},
		{name: "flags", args: []string{"--max-removal-share", "0.2", "--removal-confirm-after", "5m"}, wantShare: 0.2, wantConfirm: 5 * time.Minute},
		{name: "env", env: map[string]string{"ALECRYPT_MAX_REMOVAL_SHARE": "1", "ALECRYPT_REMOVAL_CONFIRM_AFTER": "0s"}, wantShare: 1, wantConfirm: 0},
		{name: "flag beats env", args: []string{"--max-removal-share", "0"}, env: map[string]string{"ALECRYPT_MAX_REMOVAL_SHARE": "0.9"}, wantShare: 0, wantConfirm: time.Minute},
		{name: "share above 1", args: []string{"--max-removal-share", "1.5"}, wantErr: "--max-removal-share"},
		{name: "share negative", args: []string{"--max-removal-share", "-0.1"}, wantErr: "--max-removal-share"},
		{name: "share not a number", env: map[string]string{"ALECRYPT_MAX_REMOVAL_SHARE": "half"}, wantErr: "ALECRYPT_MAX_REMOVAL_SHARE"},
		{name: "confirm negative", args: []string{"--removal-confirm-after", "-1s"}, wantErr: "--removal-confirm-after"},
		{name: "confirm not a duration", args: []string{"--removal-confirm-after", "60"}, wantErr: "-removal-confirm-after"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			c, err := parseConfig(tc.args, func(k string) string { return tc.env[k] })
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("parseConfig err = %v, want one naming %s", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("parseConfig err = %v, want nil", err)
			}
			if c.MaxRemovalShare != tc.wantShare || c.RemovalConfirmAfter != tc.wantConfirm {
				t.Errorf("parseConfig = share %v, confirm %v; want %v, %v", c.MaxRemovalShare, c.RemovalConfirmAfter, tc.wantShare, tc.wantConfirm)
			}
		})
	}
}

// TestParseConfigCallerShare: the per-caller share of the in-flight budget,
// its default and its bounds, checked before anything starts.
func TestParseConfigCallerShare(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name    string
		args    []string
		env     map[string]string
		want    int64
		wantErr string
	}{
		{name: "default is a quarter of the budget", want: 64 << 20},
		{name: "a quarter of a set budget", args: []string{"--max-inflight-bytes", "134217728"}, want: 32 << 20},
		{name: "never below one largest request", args: []string{"--max-inflight-bytes", "52428800"}, want: 4<<20*6 + 5*6 + 32<<10},
		{name: "flag", args: []string{"--max-inflight-bytes-per-caller", "100000000"}, want: 100000000},
		{name: "env", env: map[string]string{"ALECRYPT_MAX_INFLIGHT_BYTES_PER_CALLER": "268435456"}, want: 256 << 20},
		{name: "below one largest request", args: []string{"--max-inflight-bytes-per-caller", "1000000"}, wantErr: "--max-inflight-bytes-per-caller 1000000 cannot admit one request"},
		{name: "above the budget", args: []string{"--max-inflight-bytes-per-caller", "300000000"}, wantErr: "is more than --max-inflight-bytes"},
		{name: "negative", args: []string{"--max-inflight-bytes-per-caller", "-1"}, wantErr: "must not be negative"},
		{name: "not a number", env: map[string]string{"ALECRYPT_MAX_INFLIGHT_BYTES_PER_CALLER": "lots"}, wantErr: "ALECRYPT_MAX_INFLIGHT_BYTES_PER_CALLER"},
		{name: "budget below one largest request", args: []string{"--max-inflight-bytes", "1000000"}, wantErr: "--max-inflight-bytes 1000000 cannot admit one request"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			c, ok := parseCase(t, tc.args, tc.env, tc.wantErr)
			if !ok {
				return
			}
			if c.MaxInflightBytesPerCaller != tc.want {
				t.Errorf("MaxInflightBytesPerCaller = %d, want %d", c.MaxInflightBytesPerCaller, tc.want)
			}
		})
	}
}

// TestParseConfigMetricsListen: a metrics listener beyond loopback, which
// serves every key's fingerprint and last use to whoever reaches it, is
// refused without --insecure-metrics-listen, as --listen is without TLS.
func TestParseConfigMetricsListen(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name    string
		args    []string
		env     map[string]string
		want    string
		wantErr string
	}{
		{name: "default loopback", want: "127.0.0.1:9090"},
		{name: "off", args: []string{"--metrics-listen="}, want: ""},
		{name: "all interfaces refused", args: []string{"--metrics-listen=0.0.0.0:9090"}, wantErr: "--metrics-listen 0.0.0.0:9090 is beyond loopback"},
		{name: "empty host refused", args: []string{"--metrics-listen=:9090"}, wantErr: "give --insecure-metrics-listen"},
		{name: "env refused", env: map[string]string{"ALECRYPT_METRICS_LISTEN": "10.1.2.3:9090"}, wantErr: "beyond loopback"},
		{name: "flag allows", args: []string{"--metrics-listen=0.0.0.0:9090", "--insecure-metrics-listen"}, want: "0.0.0.0:9090"},
		{name: "env allows", args: []string{"--metrics-listen=0.0.0.0:9090"}, env: map[string]string{"ALECRYPT_INSECURE_METRICS_LISTEN": "true"}, want: "0.0.0.0:9090"},
		{name: "not host:port", args: []string{"--metrics-listen=9090", "--insecure-metrics-listen"}, wantErr: "--metrics-listen \"9090\""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			c, ok := parseCase(t, tc.args, tc.env, tc.wantErr)
			if !ok {
				return
			}
			if c.MetricsListen != tc.want {
				t.Errorf("MetricsListen = %q, want %q", c.MetricsListen, tc.want)
			}
		})
	}
}

// TestParseConfigAuditChain: an audit trail is chained unless turned off,
// with the key beside the keystore by default (created there), or the file
// named by flag or environment (which must exist).
func TestParseConfigAuditChain(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name        string
		args        []string
		env         map[string]string
		wantKey     string
		wantDefault bool
	}{
		{"no audit trail", nil, nil, "", false},
		{"default beside the keystore", []string{"--audit-log", "a.jsonl", "--keystore", "/srv/ale/keystore.json"}, nil, "/srv/ale/audit-chain.key", true},
		{"default with vault", []string{"--audit-log", "a.jsonl", "--keystore", "vault", "--vault-auth", "token"}, map[string]string{"VAULT_TOKEN": "t"}, "alecrypt-data/audit-chain.key", true},
		{"flag", []string{"--audit-log", "a.jsonl", "--audit-chain-key", "/run/creds/k"}, nil, "/run/creds/k", false},
		{"env", []string{"--audit-log", "a.jsonl"}, map[string]string{"ALECRYPT_AUDIT_CHAIN_KEY": "/run/creds/k"}, "/run/creds/k", false},
		{"off", []string{"--audit-log", "a.jsonl", "--audit-chain-key", "off"}, nil, "", false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			c, err := parseConfig(tc.args, func(k string) string { return tc.env[k] })
			if err != nil {
				t.Fatalf("parseConfig err = %v", err)
			}
			if c.AuditChainKey != tc.wantKey || c.AuditChainKeyDefault != tc.wantDefault {
				t.Fatalf("parseConfig = key %q (default %v), want %q (%v)", c.AuditChainKey, c.AuditChainKeyDefault, tc.wantKey, tc.wantDefault)
			}
		})
	}
}

// parseCase parses args with env as a table case does: it fails the test
// unless the error contains wantErr (or there is none when wantErr is ""),
// and reports whether there is a Config to check.
func parseCase(t *testing.T, args []string, env map[string]string, wantErr string) (Config, bool) {
	t.Helper()
	c, err := parseConfig(args, func(k string) string { return env[k] })
	if wantErr != "" {
		if err == nil || !strings.Contains(err.Error(), wantErr) {
			t.Fatalf("parseConfig err = %v, want one containing %q", err, wantErr)
		}
		return c, false
	}
	if err != nil {
		t.Fatalf("parseConfig err = %v, want nil", err)
	}
	return c, true
}
