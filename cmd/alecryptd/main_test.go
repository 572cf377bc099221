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
