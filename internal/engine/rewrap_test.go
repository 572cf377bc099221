package engine_test

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/alecrypt/alecrypt/internal/engine"
)

// TestRewrapNeedsACheckIntoAnAuthenticatedKey: aes-256-ctr opens any bytes
// under any key, so a rewrap from it into aes-256-gcm without a plaintext
// check would seal a wrong key's garbage under a valid tag. Such a rewrap is
// refused (a FieldError on expect, ALE 1); with
// a check, or between keys of which the source authenticates or the target
// does not, expect stays optional.
func TestRewrapNeedsACheckIntoAnAuthenticatedKey(t *testing.T) {
	t.Parallel()
	e := newEngine(t)
	ctx := context.Background()
	ctrEnv := mustEncrypt(t, e, engine.Ref{Fingerprint: "fp-ctr"}, []byte(`{"order":1}`), nil)
	// A CTR envelope whose fingerprint names the wrong key: it decrypts to
	// garbage, which no CTR check but expect can see.
	wrongKey := mustEncrypt(t, e, engine.Ref{Fingerprint: "fp-ctr"}, []byte(`{"order":2}`), nil)
	wrongKey.Fingerprint = "fp-old"
	gcmEnv := mustEncrypt(t, e, engine.Ref{Fingerprint: "fp-gcm"}, []byte("binary \x00 ok"), nil)
	for _, tc := range []struct {
		name      string
		env       engine.Envelope
		target    engine.Ref
		expect    engine.Format
		wantField bool  // a FieldError on expect
		wantErr   error // otherwise
	}{
		{name: "ctr to gcm without a check", env: ctrEnv, target: engine.Ref{Alias: "gcm"}, wantField: true},
		{name: "wrong-key ctr to gcm without a check", env: wrongKey, target: engine.Ref{Fingerprint: "fp-gcm"}, wantField: true},
		{name: "ctr to gcm, JSON", env: ctrEnv, target: engine.Ref{Alias: "gcm"}, expect: engine.FormatJSON},
		{name: "ctr to gcm, UTF-8", env: ctrEnv, target: engine.Ref{Alias: "gcm"}, expect: engine.FormatUTF8},
		{name: "wrong-key ctr to gcm, JSON", env: wrongKey, target: engine.Ref{Fingerprint: "fp-gcm"}, expect: engine.FormatJSON, wantErr: engine.ErrDecrypt},
		{name: "ctr to ctr without a check", env: ctrEnv, target: engine.Ref{Fingerprint: "fp-ctr"}},
		{name: "gcm to gcm without a check", env: gcmEnv, target: engine.Ref{Fingerprint: "fp-tenant"}},
		{name: "gcm to ctr without a check", env: gcmEnv, target: engine.Ref{Fingerprint: "fp-ctr"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			out, _, _, err := e.Rewrap(ctx, tc.env, tc.target, nil, tc.expect)
			var fe *engine.FieldError
			switch {
			case tc.wantField:
				if !errors.As(err, &fe) || fe.Field != "expect" || !strings.Contains(fe.Reason, "set expect") || !strings.Contains(fe.Reason, "aes-256-ctr") {
					t.Fatalf("Rewrap err = %v, want a FieldError on expect saying to set it", err)
				}
				if out.Message != nil {
					t.Fatalf("Rewrap refused but returned an envelope")
				}
			case tc.wantErr != nil:
				if !errors.Is(err, tc.wantErr) {
					t.Fatalf("Rewrap err = %v, want %v", err, tc.wantErr)
				}
			case err != nil:
				t.Fatalf("Rewrap err = %v, want nil", err)
			}
		})
	}
}
