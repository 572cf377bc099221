package engine_test

import (
	"context"
	"testing"
	"time"

	"github.com/alecrypt/alecrypt/service/engine"
	"github.com/alecrypt/alecrypt/service/keyring"
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
