package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"
	"testing"
	"time"

	alev1 "github.com/alecrypt/alecrypt/gen/ale/v1"
	"github.com/alecrypt/alecrypt/internal/gateway"
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
		{name: "replay off by default", check: func(t *testing.T, c Config) {
			if c.Replay.Window != 0 || c.Replay.Store != "memory" {
				t.Errorf("replay = %+v, want off with the memory store", c.Replay)
			}
		}},
		{name: "replay in memory", args: []string{"--replay-window", "5m", "--replay-max-entries", "1000"}, check: func(t *testing.T, c Config) {
			if c.Replay.Window.Minutes() != 5 || c.Replay.MaxEntries != 1000 {
				t.Errorf("replay = %+v", c.Replay)
			}
		}},
		{name: "replay on redis from the env", args: []string{"--replay-window", "1m", "--replay-store", "redis"}, env: map[string]string{"ALEGATE_REPLAY_REDIS": "redis://:pw@10.0.0.5:6379/2"}, check: func(t *testing.T, c Config) {
			if c.Replay.RedisURL == "" {
				t.Error("ALEGATE_REPLAY_REDIS not read")
			}
			if d := c.Replay.describe(); strings.Contains(fmtAny(d), "pw") || !strings.Contains(fmtAny(d), "10.0.0.5:6379") {
				t.Errorf("startup description %v: want the address, never the password", d)
			}
		}},
		{name: "replay on redis without a URL", args: []string{"--replay-window", "1m", "--replay-store", "redis"}, wantErr: "--replay-redis"},
		{name: "replay redis URL malformed, not echoed", args: []string{"--replay-window", "1m", "--replay-store", "redis", "--replay-redis", "http://secret@x"}, wantErr: "not a redis://"},
		{name: "replay store unknown", args: []string{"--replay-window", "1m", "--replay-store", "etcd"}, wantErr: "--replay-store"},
		{name: "replay window negative", args: []string{"--replay-window", "-1s"}, wantErr: "--replay-window"},
		{name: "every flag has an env var, the command line wins",
			args: []string{"--read-timeout", "7s"},
			env:  map[string]string{"ALEGATE_READ_TIMEOUT": "3s", "ALEGATE_IDLE_TIMEOUT": "1m", "ALEGATE_ENCRYPT_RESPONSES": "true", "ALEGATE_MAX_BODY_BYTES": "1234"},
			check: func(t *testing.T, c Config) {
				if c.ReadTimeout != 7*time.Second || c.IdleTimeout != time.Minute || !c.EncryptResponses || c.MaxBodyBytes != 1234 {
					t.Errorf("config = read %v idle %v encrypt %v max %d, want 7s 1m true 1234", c.ReadTimeout, c.IdleTimeout, c.EncryptResponses, c.MaxBodyBytes)
				}
			}},
		{name: "an env var that does not parse", env: map[string]string{"ALEGATE_IDLE_TIMEOUT": "soon"}, wantErr: "ALEGATE_IDLE_TIMEOUT"},
		// /metrics, /healthz and /readyz have no TLS and no authentication.
		{name: "metrics beyond loopback refused", args: []string{"--metrics-listen", "0.0.0.0:9091"}, wantErr: "--metrics-listen 0.0.0.0:9091 is beyond loopback"},
		{name: "metrics beyond loopback from the env refused", env: map[string]string{"ALEGATE_METRICS_LISTEN": ":9091"}, wantErr: "give --insecure-metrics-listen"},
		{name: "metrics beyond loopback allowed", args: []string{"--metrics-listen", "0.0.0.0:9091", "--insecure-metrics-listen"}, check: func(t *testing.T, c Config) {
			if c.MetricsListen != "0.0.0.0:9091" || !c.InsecureMetricsListen {
				t.Errorf("metrics listen = %q, insecure %v", c.MetricsListen, c.InsecureMetricsListen)
			}
		}},
		{name: "metrics off", args: []string{"--metrics-listen="}, check: func(t *testing.T, c Config) {
			if c.MetricsListen != "" {
				t.Errorf("metrics listen = %q, want off", c.MetricsListen)
			}
		}},
		{name: "metrics not host:port", args: []string{"--metrics-listen", "9091"}, wantErr: "--metrics-listen \"9091\""},
		{name: "ws idle timeout default", check: func(t *testing.T, c Config) {
			if got := c.gatewayOptions().WebSocketIdleTimeout; got != gateway.DefaultWebSocketIdleTimeout {
				t.Errorf("WebSocketIdleTimeout = %v, want %v", got, gateway.DefaultWebSocketIdleTimeout)
			}
		}},
		// The flag's 0 is "off", which the gateway spells negative (its 0
		// means the default).
		{name: "ws idle timeout 0 turns it off", args: []string{"--ws-idle-timeout", "0"}, check: func(t *testing.T, c Config) {
			if got := c.gatewayOptions().WebSocketIdleTimeout; got >= 0 {
				t.Errorf("WebSocketIdleTimeout = %v, want negative (off)", got)
			}
		}},
		{name: "ws idle timeout negative refused", args: []string{"--ws-idle-timeout", "-1s"}, wantErr: "--ws-idle-timeout"},
		{name: "utf8 still selectable", args: []string{"--ws-expect", "utf8"}, check: func(t *testing.T, c Config) {
			if c.FrameFormat != alev1.PlaintextFormat_PLAINTEXT_FORMAT_UTF8 {
				t.Errorf("frame check = %v", c.FrameFormat)
			}
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			c, err := parseConfig(append(append([]string{}, base...), tc.args...), func(k string) string { return tc.env[k] }, io.Discard)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("parseConfig err = %v, want %q", err, tc.wantErr)
				}
				if strings.Contains(err.Error(), "secret") {
					t.Fatalf("parseConfig err = %v echoes a credential", err)
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

func fmtAny(v []any) string {
	var b strings.Builder
	for _, x := range v {
		fmt.Fprint(&b, x, " ")
	}
	return b.String()
}

// TestHelpShowsNoSecret: --help prints each flag's default, so a default
// taken from the environment would print the Redis password; the variable
// is named, its value never.
func TestHelpShowsNoSecret(t *testing.T) {
	t.Parallel()
	const password = "s3cret-pw"
	env := map[string]string{"ALEGATE_REPLAY_REDIS": "redis://user:" + password + "@10.0.0.5:6379/2"}
	var out strings.Builder
	if _, err := parseConfig([]string{"--help"}, func(k string) string { return env[k] }, &out); !errors.Is(err, flag.ErrHelp) {
		t.Fatalf("parseConfig(--help) err = %v, want flag.ErrHelp", err)
	}
	if strings.Contains(out.String(), password) {
		t.Errorf("--help shows the Redis password:\n%s", out.String())
	}
	if !strings.Contains(out.String(), "ALEGATE_REPLAY_REDIS") {
		t.Errorf("--help does not name ALEGATE_REPLAY_REDIS:\n%s", out.String())
	}
}
