package api_test

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"net/http/httptest"
	"regexp"
	"strings"
	"testing"

	"connectrpc.com/connect"

	alev1 "github.com/alecrypt/alecrypt/gen/ale/v1"
	"github.com/alecrypt/alecrypt/gen/ale/v1/alev1connect"
	"github.com/alecrypt/alecrypt/internal/api"
	"github.com/alecrypt/alecrypt/internal/audit"
	"github.com/alecrypt/alecrypt/internal/engine"
	"github.com/alecrypt/alecrypt/internal/keyring"
)

// TestRequestIDsAreOurs: every call gets an id of alecryptd's own, in the
// response header, the log line and the audit entry, whatever the caller
// sent; the caller's X-Request-Id is recorded apart, and only when it is
// printable and bounded.
func TestRequestIDsAreOurs(t *testing.T) {
	t.Parallel()
	ring := keyring.New()
	if _, _, err := ring.Replace(testRecords()); err != nil {
		t.Fatal(err)
	}
	trail, logs := &syncBuffer{}, &syncBuffer{}
	log := slog.New(slog.NewJSONHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	srv := httptest.NewServer(api.NewHandler(engine.New(ring, engine.WithDefaultAlias("store-1")), ring,
		api.Options{Logger: log, Audit: audit.New(trail, nil)}))
	t.Cleanup(srv.Close)
	c := alev1connect.NewCryptoServiceClient(srv.Client(), srv.URL)
	ours := regexp.MustCompile(`^[0-9a-f]{16}$`)
	tests := []struct {
		name, sent, wantCaller string
	}{
		{"none", "", ""},
		{"a gateway's id", "gw-7f3a-0001", "gw-7f3a-0001"},
		{"an id that copies one of ours", "0123456789abcdef", "0123456789abcdef"},
		{"too long", strings.Repeat("a", 129), ""},
		{"not ASCII", "id-\u00e9", ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			req := connect.NewRequest(&alev1.EncryptRequest{Plaintext: []byte("x")})
			if tc.sent != "" {
				req.Header().Set(api.RequestIDHeader, tc.sent)
			}
			before := len(trail.String())
			res, err := c.Encrypt(context.Background(), req)
			if err != nil {
				t.Fatal(err)
			}
			id := res.Header().Get(api.RequestIDHeader)
			if !ours.MatchString(id) || id == tc.sent {
				t.Fatalf("response %s = %q, want a fresh id of ours (sent %q)", api.RequestIDHeader, id, tc.sent)
			}
			var e audit.Entry
			if err := json.Unmarshal(bytes.TrimSpace([]byte(trail.String()[before:])), &e); err != nil {
				t.Fatalf("audit entry: %v", err)
			}
			if e.RequestID != id || e.CallerRequestID != tc.wantCaller {
				t.Errorf("audit request_id %q, caller_request_id %q; want %q, %q", e.RequestID, e.CallerRequestID, id, tc.wantCaller)
			}
			var line struct {
				RequestID       string `json:"request_id"`
				CallerRequestID string `json:"caller_request_id"`
			}
			for _, l := range strings.Split(strings.TrimSpace(logs.String()), "\n") {
				if strings.Contains(l, id) {
					if err := json.Unmarshal([]byte(l), &line); err != nil {
						t.Fatal(err)
					}
				}
			}
			if line.RequestID != id || line.CallerRequestID != tc.wantCaller {
				t.Errorf("log request_id %q, caller_request_id %q; want %q, %q", line.RequestID, line.CallerRequestID, id, tc.wantCaller)
			}
		})
	}
}
