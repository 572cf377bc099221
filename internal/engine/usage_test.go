package engine_test

import (
	"context"
	"testing"
	"time"

	"github.com/alecrypt/alecrypt/internal/engine"
	"github.com/alecrypt/alecrypt/internal/keyring"
)

// TestUsageCountsSuccessesOnly: every successful encryption and decryption
// counts on its key, with the engine's clock; failures (wrong check, key
// that may not encrypt, disabled key) count nothing; a rewrap counts a
// decryption on its source and an encryption on its target, and nothing
// when its target cannot encrypt (it is refused before decrypting).
func TestUsageCountsSuccessesOnly(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	clock := func() time.Time { return now }
	ring := keyring.New(keyring.WithClock(clock))
	if _, _, err := ring.Replace(testRecords()); err != nil {
		t.Fatal(err)
	}
	e := engine.New(ring, engine.WithClock(clock))
	env, _, err := e.Encrypt(ctx, engine.Ref{Alias: "default"}, []byte(`{"a":1}`), nil)
	if err != nil {
		t.Fatal(err)
	}
	steps := []struct {
		name string
		run  func() error
	}{
		{"decrypt ok", func() error { _, _, err := e.Decrypt(ctx, env, nil, engine.FormatJSON); return err }},
		{"decrypt fails its check", func() error {
			bad := env
			bad.Message = []byte("zz")
			_, _, err := e.Decrypt(ctx, bad, nil, engine.FormatJSON)
			return err
		}},
		{"encrypt with a decrypt-only key", func() error { _, _, err := e.Encrypt(ctx, engine.Ref{Fingerprint: "fp-old"}, nil, nil); return err }},
		{"decrypt with a disabled key", func() error {
			_, _, err := e.Decrypt(ctx, sealDirect(t, "fp-off", []byte("x")), nil, engine.FormatAny)
			return err
		}},
		{"rewrap to a target that cannot encrypt: refused before decrypting", func() error {
			_, _, _, err := e.Rewrap(ctx, env, engine.Ref{Fingerprint: "fp-old"}, nil, engine.FormatAny)
			if err == nil {
				t.Error("Rewrap to a decrypt-only key succeeded")
			}
			return err
		}},
		{"rewrap old to gcm", func() error {
			_, _, _, err := e.Rewrap(ctx, sealDirect(t, "fp-old", []byte(`{"b":2}`)), engine.Ref{Alias: "gcm"}, nil, engine.FormatJSON)
			return err
		}},
	}
	for _, s := range steps {
		_ = s.run()
	}
	want := map[string]keyring.UsageSnapshot{
		"fp-ctr": {Encrypts: 1, Decrypts: 1, LastEncrypt: now, LastDecrypt: now},
		"fp-old": {Decrypts: 1, LastDecrypt: now},
		"fp-gcm": {Encrypts: 1, LastEncrypt: now},
		"fp-off": {},
	}
	for fp, w := range want {
		k, err := ring.Lookup(fp)
		if err != nil {
			t.Fatal(err)
		}
		if got := k.Usage().Snapshot(); got != w {
			t.Errorf("usage of %s = %+v, want %+v", fp, got, w)
		}
	}
}

// TestUsageCountsRealContentOnly: an operation counts only when it opened or
// sealed content. An empty aes-256-ctr message "opens" under any IV and
// sealing nothing proves nothing, so neither counts, though both succeed
// (they are a gateway's checks of a key); an aes-256-gcm message that opens
// verified its tag and counts, an empty plaintext included.
func TestUsageCountsRealContentOnly(t *testing.T) {
	t.Parallel()
	iv16 := make([]byte, 16)
	for _, tc := range []struct {
		name string
		fp   string
		run  func(*testing.T, *engine.Engine) error
		want keyring.UsageSnapshot
	}{
		{"ctr: decrypt an empty message (anyone can forge it)", "fp-ctr", func(t *testing.T, e *engine.Engine) error {
			_, _, err := e.Decrypt(context.Background(), engine.Envelope{IV: iv16, Fingerprint: "fp-ctr"}, nil, engine.FormatAny)
			return err
		}, keyring.UsageSnapshot{}},
		{"ctr retired: decrypt an empty message", "fp-old", func(t *testing.T, e *engine.Engine) error {
			_, _, err := e.Decrypt(context.Background(), engine.Envelope{IV: iv16, Fingerprint: "fp-old"}, nil, engine.FormatAny)
			return err
		}, keyring.UsageSnapshot{}},
		{"ctr: decrypt one byte", "fp-old", func(t *testing.T, e *engine.Engine) error {
			_, _, err := e.Decrypt(context.Background(), sealDirect(t, "fp-old", []byte("x")), nil, engine.FormatAny)
			return err
		}, keyring.UsageSnapshot{Decrypts: 1, LastDecrypt: now}},
		{"ctr: encrypt nothing", "fp-ctr", func(t *testing.T, e *engine.Engine) error {
			_, _, err := e.Encrypt(context.Background(), engine.Ref{Fingerprint: "fp-ctr"}, nil, nil)
			return err
		}, keyring.UsageSnapshot{}},
		{"gcm: encrypt nothing", "fp-gcm", func(t *testing.T, e *engine.Engine) error {
			_, _, err := e.Encrypt(context.Background(), engine.Ref{Fingerprint: "fp-gcm"}, nil, nil)
			return err
		}, keyring.UsageSnapshot{}},
		{"gcm: decrypt a sealed empty plaintext (its tag verified)", "fp-gcm", func(t *testing.T, e *engine.Engine) error {
			_, _, err := e.Decrypt(context.Background(), sealDirect(t, "fp-gcm", nil), nil, engine.FormatAny)
			return err
		}, keyring.UsageSnapshot{Decrypts: 1, LastDecrypt: now}},
		{"ctr: rewrap an empty message", "fp-ctr", func(t *testing.T, e *engine.Engine) error {
			_, _, _, err := e.Rewrap(context.Background(), engine.Envelope{IV: iv16, Fingerprint: "fp-old"}, engine.Ref{Fingerprint: "fp-ctr"}, nil, engine.FormatAny)
			return err
		}, keyring.UsageSnapshot{}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			clock := func() time.Time { return now }
			ring := keyring.New(keyring.WithClock(clock))
			if _, _, err := ring.Replace(testRecords()); err != nil {
				t.Fatal(err)
			}
			e := engine.New(ring, engine.WithClock(clock))
			if err := tc.run(t, e); err != nil {
				t.Fatalf("operation err = %v, want nil", err)
			}
			for _, r := range testRecords() {
				k, err := ring.Lookup(r.Fingerprint)
				if err != nil {
					t.Fatal(err)
				}
				want := keyring.UsageSnapshot{}
				if r.Fingerprint == tc.fp {
					want = tc.want
				}
				if got := k.Usage().Snapshot(); got != want {
					t.Errorf("usage of %s = %+v, want %+v", r.Fingerprint, got, want)
				}
			}
		})
	}
}
