package main

import (
	"strings"
	"testing"

	alev1 "github.com/alecrypt/alecrypt/gen/ale/v1"
)

func TestParseConfig(t *testing.T) {
	t.Parallel()
	base := []string{"--upstream", "http://127.0.0.1:9000"}
	tests := []struct {
		name    string
		args    []string
		env     map[string]string
		wantErr string
		check   func(t *testing.T, c Config)
	}{
		{name: "defaults", check: func(t *testing.T, c Config) {
			if c.FrameFormat != alev1.PlaintextFormat_PLAINTEXT_FORMAT_JSON {
				t.Errorf("default frame check = %v, want JSON (EK frames are JSON; UTF-8 lets wrong-key frames through)", c.FrameFormat)
			}
			if !c.Origins.Allow("ionic", "gate:8081") || c.Origins.Allow("https://evil.example", "gate:8081") {
				t.Error("default origins: want ionic allowed and web pages refused")
			}
			if c.MetricsListen != "127.0.0.1:9091" {
				t.Errorf("metrics listen = %q", c.MetricsListen)
			}
		}},
		{name: "allow-origins flag", args: []string{"--allow-origins", "https://pos.example.com, null"}, check: func(t *testing.T, c Config) {
			if !c.Origins.Allow("https://pos.example.com", "gate") || !c.Origins.Allow("null", "gate") {
				t.Error("listed origins refused")
			}
		}},
		{name: "allow-origins env", env: map[string]string{"ALEGATE_ALLOW_ORIGINS": "https://kds.example.com"}, check: func(t *testing.T, c Config) {
			if !c.Origins.Allow("https://kds.example.com", "gate") {
				t.Error("origin from ALEGATE_ALLOW_ORIGINS refused")
			}
		}},
		{name: "ws-origins alias with a bare host", args: []string{"--ws-origins", "kds.example.com"}, check: func(t *testing.T, c Config) {
			if !c.Origins.Allow("https://kds.example.com", "gate") || !c.Origins.Allow("http://kds.example.com", "gate") {
				t.Error("--ws-origins host not allowed as its http and https origins")
			}
		}},
		{name: "wildcard pattern refused", args: []string{"--allow-origins", "https://*.example.com"}, wantErr: "--allow-origins"},
		{name: "origin with a path refused", args: []string{"--allow-origins", "https://pos.example.com/app"}, wantErr: "--allow-origins"},
		{name: "utf8 still selectable", args: []string{"--ws-expect", "utf8"}, check: func(t *testing.T, c Config) {
			if c.FrameFormat != alev1.PlaintextFormat_PLAINTEXT_FORMAT_UTF8 {
				t.Errorf("frame check = %v", c.FrameFormat)
			}
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			c, err := parseConfig(append(append([]string{}, base...), tc.args...), func(k string) string { return tc.env[k] })
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("parseConfig err = %v, want %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("parseConfig err = %v", err)
			}
			tc.check(t, c)
		})
	}
}
