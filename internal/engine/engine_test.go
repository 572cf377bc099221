package engine_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/alecrypt/alecrypt/internal/engine"
	"github.com/alecrypt/alecrypt/internal/key"
	"github.com/alecrypt/alecrypt/internal/key/keytest"
	"github.com/alecrypt/alecrypt/internal/keyring"
	"github.com/alecrypt/alecrypt/internal/suite"
)

var (
	t0  = time.Date(2025, 5, 1, 0, 0, 0, 0, time.UTC)
	now = t0.Add(24 * time.Hour)
)

// canaryPlaintext must never show up in an error.
const canaryPlaintext = "CANARY-plaintext-7d1e"

func rec(fp string, alg key.Algorithm, state key.State, created time.Time, aliases ...string) key.Record {
	return keytest.Record(fp, keytest.Algorithm(alg), keytest.State(state), keytest.CreatedAt(created), keytest.Aliases(aliases...))
}

// testRecords is the key set every test runs against.
func testRecords() []key.Record {
	expired := rec("fp-expired", key.AES256CTR, key.Active, t0.Add(2*time.Hour), "expired-only")
	expired.NotAfter = now.Add(-time.Minute)
	return []key.Record{
		rec("fp-ctr", key.AES256CTR, key.Active, t0.Add(time.Hour), "default"),
		rec("fp-old", key.AES256CTR, key.DecryptOnly, t0.Add(3*time.Hour), "default", "retired"),
		rec("fp-gcm", key.AES256GCM, key.Active, t0, "gcm"),
		rec("fp-tenant", key.AES256GCM, key.Active, t0, "tenant"),
		rec("fp-off", key.AES256CTR, key.Disabled, t0.Add(4*time.Hour), "default", "off-only"),
		expired,
	}
}

func newEngine(t *testing.T, opts ...engine.Option) *engine.Engine {
	t.Helper()
	clock := func() time.Time { return now }
	ring := keyring.New(keyring.WithClock(clock))
	if _, _, err := ring.Replace(testRecords()); err != nil {
		t.Fatal(err)
	}
	return engine.New(ring, append([]engine.Option{engine.WithClock(clock)}, opts...)...)
}

// sealDirect seals with fp's material directly through suite, for keys the
// engine will not encrypt with (decrypt-only, disabled, expired).
func sealDirect(t *testing.T, fp string, plaintext []byte) engine.Envelope {
	t.Helper()
	for _, r := range testRecords() {
		if r.Fingerprint != fp {
			continue
		}
		c, err := suite.Derive(r)
		if err != nil {
			t.Fatal(err)
		}
		iv := bytes.Repeat([]byte{0x5a}, c.IVSize())
		msg, err := c.Seal(nil, iv, plaintext, nil)
		if err != nil {
			t.Fatal(err)
		}
		return engine.Envelope{IV: iv, Fingerprint: fp, Message: msg}
	}
	t.Fatalf("no test record %q", fp)
	return engine.Envelope{}
}

func mustEncrypt(t *testing.T, e *engine.Engine, ref engine.Ref, plaintext, aad []byte) engine.Envelope {
	t.Helper()
	env, _, err := e.Encrypt(context.Background(), ref, plaintext, aad)
	if err != nil {
		t.Fatalf("Encrypt(%+v) err = %v, want nil", ref, err)
	}
	return env
}

func flipLast(b []byte) []byte {
	b = bytes.Clone(b)
	b[len(b)-1] ^= 1
	return b
}

// TestErrors checks that each bad input fails with exactly the error the API
// layer maps to the right wire code: a FieldError naming the field (ALE 1)
// or one of the sentinels (ALE 2).
func TestErrors(t *testing.T) {
	t.Parallel()
	e := newEngine(t)
	pt := []byte(canaryPlaintext)
	ctrEnv := mustEncrypt(t, e, engine.Ref{Fingerprint: "fp-ctr"}, pt, nil)
	gcmEnv := mustEncrypt(t, e, engine.Ref{Fingerprint: "fp-gcm"}, []byte(`{"canary":"`+canaryPlaintext+`"}`), []byte("aad"))
	with := func(env engine.Envelope, f func(*engine.Envelope)) engine.Envelope {
		env.IV, env.Message = bytes.Clone(env.IV), bytes.Clone(env.Message)
		f(&env)
		return env
	}
	encrypt := func(ref engine.Ref, aad []byte) func() error {
		return func() error {
			env, k, err := e.Encrypt(context.Background(), ref, pt, aad)
			if err != nil && (env.Message != nil || env.IV != nil || k != nil) {
				return errors.New("Encrypt returned an envelope or key along with an error")
			}
			return err
		}
	}
	decrypt := func(env engine.Envelope, aad []byte, expect engine.Format) func() error {
		return func() error {
			out, k, err := e.Decrypt(context.Background(), env, aad, expect)
			if err != nil && (out != nil || k != nil) {
				return errors.New("Decrypt returned plaintext or a key along with an error")
			}
			return err
		}
	}
	resolve := func(ref engine.Ref) func() error {
		return func() error { _, err := e.Resolve(context.Background(), ref); return err }
	}

	for _, tc := range []struct {
		name      string
		op        func() error
		wantErr   error  // a sentinel, or nil when wantField is set
		wantField string // the FieldError's Field
	}{
		{name: "decrypt missing fingerprint", op: decrypt(with(ctrEnv, func(v *engine.Envelope) { v.Fingerprint = "" }), nil, engine.FormatAny), wantField: "envelope.fingerprint"},
		{name: "decrypt missing IV", op: decrypt(with(ctrEnv, func(v *engine.Envelope) { v.IV = nil }), nil, engine.FormatAny), wantField: "envelope.iv"},
		{name: "decrypt empty IV", op: decrypt(with(ctrEnv, func(v *engine.Envelope) { v.IV = []byte{} }), nil, engine.FormatAny), wantField: "envelope.iv"},
		{name: "decrypt missing IV of unknown key", op: decrypt(engine.Envelope{Fingerprint: "fp-nope"}, nil, engine.FormatAny), wantField: "envelope.iv"},
		{name: "decrypt CTR with 12-byte IV", op: decrypt(with(ctrEnv, func(v *engine.Envelope) { v.IV = v.IV[:12] }), nil, engine.FormatAny), wantField: "envelope.iv"},
		{name: "decrypt CTR with 17-byte IV", op: decrypt(with(ctrEnv, func(v *engine.Envelope) { v.IV = append(v.IV, 0) }), nil, engine.FormatAny), wantField: "envelope.iv"},
		{name: "decrypt GCM with 16-byte IV", op: decrypt(with(gcmEnv, func(v *engine.Envelope) { v.IV = append(v.IV, 1, 2, 3, 4) }), []byte("aad"), engine.FormatAny), wantField: "envelope.iv"},
		{name: "decrypt GCM with 11-byte IV", op: decrypt(with(gcmEnv, func(v *engine.Envelope) { v.IV = v.IV[:11] }), []byte("aad"), engine.FormatAny), wantField: "envelope.iv"},
		{name: "decrypt unknown fingerprint", op: decrypt(with(ctrEnv, func(v *engine.Envelope) { v.Fingerprint = "fp-nope" }), nil, engine.FormatAny), wantErr: engine.ErrUnknownKey},
		{name: "decrypt disabled key", op: decrypt(sealDirect(t, "fp-off", pt), nil, engine.FormatAny), wantErr: engine.ErrKeyDisabled},
		{name: "decrypt CTR with AAD", op: decrypt(ctrEnv, []byte("aad"), engine.FormatAny), wantField: "associated_data"},
		{name: "decrypt GCM tag flipped", op: decrypt(with(gcmEnv, func(v *engine.Envelope) { v.Message = flipLast(v.Message) }), []byte("aad"), engine.FormatAny), wantErr: engine.ErrDecrypt},
		{name: "decrypt GCM ciphertext flipped", op: decrypt(with(gcmEnv, func(v *engine.Envelope) { v.Message[0] ^= 1 }), []byte("aad"), engine.FormatAny), wantErr: engine.ErrDecrypt},
		{name: "decrypt GCM IV flipped", op: decrypt(with(gcmEnv, func(v *engine.Envelope) { v.IV[0] ^= 1 }), []byte("aad"), engine.FormatAny), wantErr: engine.ErrDecrypt},
		{name: "decrypt GCM wrong AAD", op: decrypt(gcmEnv, []byte("aaD"), engine.FormatAny), wantErr: engine.ErrDecrypt},
		{name: "decrypt GCM missing AAD", op: decrypt(gcmEnv, nil, engine.FormatAny), wantErr: engine.ErrDecrypt},
		{name: "decrypt GCM shorter than tag", op: decrypt(with(gcmEnv, func(v *engine.Envelope) { v.Message = v.Message[:15] }), []byte("aad"), engine.FormatAny), wantErr: engine.ErrDecrypt},
		{name: "decrypt GCM empty message", op: decrypt(with(gcmEnv, func(v *engine.Envelope) { v.Message = nil }), []byte("aad"), engine.FormatAny), wantErr: engine.ErrDecrypt},
		{name: "decrypt GCM under another GCM key", op: decrypt(with(gcmEnv, func(v *engine.Envelope) { v.Fingerprint = "fp-tenant" }), []byte("aad"), engine.FormatAny), wantErr: engine.ErrDecrypt},
		{name: "decrypt CTR expect JSON, not JSON", op: decrypt(ctrEnv, nil, engine.FormatJSON), wantErr: engine.ErrDecrypt},
		// Go's json.Valid takes any byte inside a string; a JSON text is
		// UTF-8 (RFC 8259 §8.1), and without that rule a random "..."
		// passes with 222/256 per byte: a frame opened under the wrong
		// key is random bytes and must not pass as JSON.
		{name: "decrypt CTR expect JSON, string of invalid UTF-8", op: decrypt(mustEncrypt(t, e, engine.Ref{Fingerprint: "fp-ctr"}, []byte("\"\xff\xfe\xb1\""), nil), nil, engine.FormatJSON), wantErr: engine.ErrDecrypt},
		{name: "decrypt CTR expect UTF-8, tampered", op: decrypt(with(ctrEnv, func(v *engine.Envelope) { v.Message[0] ^= 0x80 }), nil, engine.FormatUTF8), wantErr: engine.ErrDecrypt},
		{name: "decrypt CTR expect JSON, wrong key", op: decrypt(with(mustEncrypt(t, e, engine.Ref{Fingerprint: "fp-ctr"}, []byte(`{"a":1}`), nil), func(v *engine.Envelope) { v.Fingerprint = "fp-old" }), nil, engine.FormatJSON), wantErr: engine.ErrDecrypt},

		{name: "encrypt unknown fingerprint", op: encrypt(engine.Ref{Fingerprint: "fp-nope"}, nil), wantErr: engine.ErrUnknownKey},
		{name: "encrypt unknown alias", op: encrypt(engine.Ref{Alias: "nope"}, nil), wantErr: engine.ErrUnknownKey},
		{name: "encrypt disabled key", op: encrypt(engine.Ref{Fingerprint: "fp-off"}, nil), wantErr: engine.ErrKeyDisabled},
		{name: "encrypt decrypt-only key", op: encrypt(engine.Ref{Fingerprint: "fp-old"}, nil), wantErr: engine.ErrKeyNotActive},
		{name: "encrypt expired key", op: encrypt(engine.Ref{Fingerprint: "fp-expired"}, nil), wantErr: engine.ErrKeyNotActive},
		{name: "encrypt alias with only an expired key", op: encrypt(engine.Ref{Alias: "expired-only"}, nil), wantErr: engine.ErrKeyNotActive},
		{name: "encrypt alias with only a disabled key", op: encrypt(engine.Ref{Alias: "off-only"}, nil), wantErr: engine.ErrKeyNotActive},
		{name: "encrypt fingerprint and alias", op: encrypt(engine.Ref{Fingerprint: "fp-ctr", Alias: "default"}, nil), wantField: "key"},
		{name: "encrypt CTR with AAD", op: encrypt(engine.Ref{Fingerprint: "fp-ctr"}, []byte("aad")), wantField: "associated_data"},
		{name: "encrypt default alias CTR with AAD", op: encrypt(engine.Ref{}, []byte("aad")), wantField: "associated_data"},

		{name: "resolve fingerprint and alias", op: resolve(engine.Ref{Fingerprint: "fp-ctr", Alias: "default"}), wantField: "key"},
		{name: "resolve unknown fingerprint", op: resolve(engine.Ref{Fingerprint: "fp-nope"}), wantErr: engine.ErrUnknownKey},
		{name: "resolve unknown alias", op: resolve(engine.Ref{Alias: "nope"}), wantErr: engine.ErrUnknownKey},
		{name: "resolve alias without active key", op: resolve(engine.Ref{Alias: "retired"}), wantErr: engine.ErrKeyNotActive},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			err := tc.op()
			if err == nil {
				t.Fatalf("%s: err = nil, want an error", tc.name)
			}
			var fe *engine.FieldError
			switch {
			case tc.wantField != "":
				if !errors.As(err, &fe) || fe.Field != tc.wantField {
					t.Fatalf("%s: err = %v, want FieldError{Field: %q}", tc.name, err, tc.wantField)
				}
				if fe.Reason == "" {
					t.Errorf("%s: FieldError has no reason", tc.name)
				}
			default:
				if !errors.Is(err, tc.wantErr) {
					t.Fatalf("%s: err = %v, want %v", tc.name, err, tc.wantErr)
				}
				if errors.As(err, &fe) {
					t.Errorf("%s: err = %v is also a FieldError; the API would send ALE 1", tc.name, err)
				}
			}
			// Every sentinel is distinct, so the API maps each error once.
			for _, other := range []error{engine.ErrUnknownKey, engine.ErrKeyDisabled, engine.ErrKeyNotActive, engine.ErrDecrypt, engine.ErrKeyUnusable} {
				if other != tc.wantErr && errors.Is(err, other) {
					t.Errorf("%s: err = %v also matches %v", tc.name, err, other)
				}
			}
			if strings.Contains(err.Error(), canaryPlaintext) || strings.Contains(err.Error(), "test-only-secret") {
				t.Errorf("%s: error text leaks plaintext or key material: %q", tc.name, err)
			}
		})
	}
}

// TestDecryptFailuresLookAlike: a failed plaintext check and a failed GCM tag
// produce the same error text, so no log or message tells them apart.
func TestDecryptFailuresLookAlike(t *testing.T) {
	t.Parallel()
	e := newEngine(t)
	notJSON := mustEncrypt(t, e, engine.Ref{Fingerprint: "fp-gcm"}, []byte("not json"), nil)
	_, _, errCheck := e.Decrypt(context.Background(), notJSON, nil, engine.FormatJSON)

	badTag := mustEncrypt(t, e, engine.Ref{Fingerprint: "fp-gcm"}, []byte(`{"ok":true}`), nil)
	badTag.Message = flipLast(badTag.Message)
	_, _, errTag := e.Decrypt(context.Background(), badTag, nil, engine.FormatJSON)

	badUTF8 := mustEncrypt(t, e, engine.Ref{Fingerprint: "fp-gcm"}, []byte{0xff, 0xfe}, nil)
	_, _, errUTF8 := e.Decrypt(context.Background(), badUTF8, nil, engine.FormatUTF8)

	for _, err := range []error{errCheck, errTag, errUTF8} {
		if !errors.Is(err, engine.ErrDecrypt) {
			t.Fatalf("Decrypt err = %v, want ErrDecrypt", err)
		}
	}
	if errCheck.Error() != errTag.Error() || errUTF8.Error() != errTag.Error() {
		t.Errorf("Decrypt error texts differ:\n  JSON check:  %q\n  UTF-8 check: %q\n  GCM tag:     %q\nwant one text for every failure", errCheck, errUTF8, errTag)
	}

	ctr := mustEncrypt(t, e, engine.Ref{Fingerprint: "fp-ctr"}, []byte("not json"), nil)
	_, _, errCTR := e.Decrypt(context.Background(), ctr, nil, engine.FormatJSON)
	if got, want := strings.ReplaceAll(errCTR.Error(), "fp-ctr", "FP"), strings.ReplaceAll(errTag.Error(), "fp-gcm", "FP"); got != want {
		t.Errorf("CTR plaintext check error = %q, want the GCM failure's shape %q", errCTR, errTag)
	}
}

func TestRoundTrip(t *testing.T) {
	t.Parallel()
	e := newEngine(t)
	for _, tc := range []struct {
		name      string
		ref       engine.Ref
		plaintext []byte
		aad       []byte
		expect    engine.Format
		wantFP    string
		wantIV    int
	}{
		{"ctr JSON", engine.Ref{Fingerprint: "fp-ctr"}, []byte(`{"order":"café ☕","total":12.5}`), nil, engine.FormatJSON, "fp-ctr", 16},
		{"ctr empty", engine.Ref{Fingerprint: "fp-ctr"}, nil, nil, engine.FormatAny, "fp-ctr", 16},
		{"ctr binary", engine.Ref{Fingerprint: "fp-ctr"}, []byte{0, 0xff, 0xfe}, nil, engine.FormatAny, "fp-ctr", 16},
		{"gcm with AAD", engine.Ref{Alias: "gcm"}, []byte("hello"), []byte("order-42"), engine.FormatUTF8, "fp-gcm", 12},
		{"gcm empty", engine.Ref{Alias: "tenant"}, []byte{}, nil, engine.FormatAny, "fp-tenant", 12},
		{"default alias", engine.Ref{}, []byte("[]"), nil, engine.FormatJSON, "fp-ctr", 16},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			env, k, err := e.Encrypt(context.Background(), tc.ref, tc.plaintext, tc.aad)
			if err != nil {
				t.Fatalf("Encrypt err = %v, want nil", err)
			}
			if env.Fingerprint != tc.wantFP || k.Fingerprint() != tc.wantFP {
				t.Errorf("Encrypt(%+v) used %s (key %s), want %s", tc.ref, env.Fingerprint, k.Fingerprint(), tc.wantFP)
			}
			if len(env.IV) != tc.wantIV {
				t.Errorf("Encrypt IV is %d bytes, want %d", len(env.IV), tc.wantIV)
			}
			got, dk, err := e.Decrypt(context.Background(), env, tc.aad, tc.expect)
			if err != nil {
				t.Fatalf("Decrypt(Encrypt(...)) err = %v, want nil", err)
			}
			if !bytes.Equal(got, tc.plaintext) || dk.Fingerprint() != tc.wantFP {
				t.Errorf("Decrypt(Encrypt(%q)) = %q with %s", tc.plaintext, got, dk.Fingerprint())
			}
		})
	}
}

// TestDecryptStates: only disabled keys refuse to decrypt. Decrypt-only keys
// exist for old traffic, and expiry only stops new encryptions.
func TestDecryptStates(t *testing.T) {
	t.Parallel()
	e := newEngine(t)
	for _, tc := range []struct {
		fp      string
		wantErr error
	}{
		{"fp-ctr", nil},
		{"fp-old", nil},
		{"fp-expired", nil},
		{"fp-off", engine.ErrKeyDisabled},
	} {
		t.Run(tc.fp, func(t *testing.T) {
			t.Parallel()
			env := sealDirect(t, tc.fp, []byte(`{"old":"traffic"}`))
			got, _, err := e.Decrypt(context.Background(), env, nil, engine.FormatJSON)
			if !errors.Is(err, tc.wantErr) {
				t.Fatalf("Decrypt(%s) err = %v, want %v", tc.fp, err, tc.wantErr)
			}
			if err == nil && string(got) != `{"old":"traffic"}` {
				t.Errorf("Decrypt(%s) = %q", tc.fp, got)
			}
		})
	}
}

func TestResolve(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		opts []engine.Option
		ref  engine.Ref
		want string
	}{
		{"fingerprint active", nil, engine.Ref{Fingerprint: "fp-gcm"}, "fp-gcm"},
		{"fingerprint decrypt-only", nil, engine.Ref{Fingerprint: "fp-old"}, "fp-old"},
		{"fingerprint disabled", nil, engine.Ref{Fingerprint: "fp-off"}, "fp-off"},
		{"alias skips newer decrypt-only and disabled", nil, engine.Ref{Alias: "default"}, "fp-ctr"},
		{"empty ref is the default alias", nil, engine.Ref{}, "fp-ctr"},
		{"configured default alias", []engine.Option{engine.WithDefaultAlias("tenant")}, engine.Ref{}, "fp-tenant"},
		{"explicit alias beats configured default", []engine.Option{engine.WithDefaultAlias("tenant")}, engine.Ref{Alias: "gcm"}, "fp-gcm"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			e := newEngine(t, tc.opts...)
			k, err := e.Resolve(context.Background(), tc.ref)
			if err != nil {
				t.Fatalf("Resolve(%+v) err = %v, want nil", tc.ref, err)
			}
			if k.Fingerprint() != tc.want {
				t.Errorf("Resolve(%+v) = %s, want %s", tc.ref, k.Fingerprint(), tc.want)
			}
		})
	}
	if engine.DefaultAlias != "default" {
		t.Errorf("DefaultAlias = %q, want %q (the first-start key carries it)", engine.DefaultAlias, "default")
	}
	e := newEngine(t, engine.WithDefaultAlias("nope"))
	if _, _, err := e.Encrypt(context.Background(), engine.Ref{}, []byte("x"), nil); !errors.Is(err, engine.ErrUnknownKey) {
		t.Errorf("Encrypt(empty ref, default alias unknown) err = %v, want ErrUnknownKey", err)
	}
}

func TestIVFreshness(t *testing.T) {
	t.Parallel()
	e := newEngine(t)
	for _, fp := range []string{"fp-ctr", "fp-gcm"} {
		t.Run(fp, func(t *testing.T) {
			t.Parallel()
			seen := map[string]bool{}
			var msgs [][]byte
			for range 32 {
				env := mustEncrypt(t, e, engine.Ref{Fingerprint: fp}, []byte("same plaintext every time"), nil)
				if seen[string(env.IV)] {
					t.Fatalf("Encrypt repeated IV %x", env.IV)
				}
				seen[string(env.IV)] = true
				for _, m := range msgs {
					if bytes.Equal(m, env.Message) {
						t.Fatalf("two Encrypts of the same plaintext gave the same message")
					}
				}
				msgs = append(msgs, env.Message)
			}
		})
	}
}

func TestWithRandDeterministic(t *testing.T) {
	t.Parallel()
	seed := [32]byte{42}
	e1 := newEngine(t, engine.WithRand(rand.NewChaCha8(seed)))
	e2 := newEngine(t, engine.WithRand(rand.NewChaCha8(seed)))
	wantIVs := rand.NewChaCha8(seed)
	for _, fp := range []string{"fp-ctr", "fp-gcm", "fp-ctr"} {
		a := mustEncrypt(t, e1, engine.Ref{Fingerprint: fp}, []byte("deterministic"), nil)
		b := mustEncrypt(t, e2, engine.Ref{Fingerprint: fp}, []byte("deterministic"), nil)
		if !bytes.Equal(a.IV, b.IV) || !bytes.Equal(a.Message, b.Message) {
			t.Errorf("Encrypt(%s) with the same random stream differs: %x/%x vs %x/%x", fp, a.IV, a.Message, b.IV, b.Message)
		}
		wantIV := make([]byte, len(a.IV))
		_, _ = wantIVs.Read(wantIV)
		if !bytes.Equal(a.IV, wantIV) {
			t.Errorf("Encrypt(%s) IV = %x, want the next %d bytes of the random stream %x", fp, a.IV, len(wantIV), wantIV)
		}
	}
}

func TestRandFailure(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		r    io.Reader
		want error
	}{
		{"empty", bytes.NewReader(nil), io.EOF},
		{"short", bytes.NewReader(make([]byte, 5)), io.ErrUnexpectedEOF},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			e := newEngine(t, engine.WithRand(tc.r))
			env, _, err := e.Encrypt(context.Background(), engine.Ref{Fingerprint: "fp-ctr"}, []byte("x"), nil)
			if !errors.Is(err, tc.want) || env.IV != nil {
				t.Errorf("Encrypt with a failing random source = %x, %v; want no IV, %v", env.IV, err, tc.want)
			}
		})
	}
}

// TestEnvelopeSlicesIndependent: IV and message share one allocation;
// appending to the IV must not overwrite the message.
func TestEnvelopeSlicesIndependent(t *testing.T) {
	t.Parallel()
	e := newEngine(t)
	for _, fp := range []string{"fp-ctr", "fp-gcm"} {
		env := mustEncrypt(t, e, engine.Ref{Fingerprint: fp}, []byte(`{"a":"bcdefgh"}`), nil)
		msg := bytes.Clone(env.Message)
		_ = append(env.IV, bytes.Repeat([]byte{0xaa}, 16)...)
		if !bytes.Equal(env.Message, msg) {
			t.Errorf("%s: appending to Envelope.IV changed Envelope.Message", fp)
		}
		if _, _, err := e.Decrypt(context.Background(), env, nil, engine.FormatJSON); err != nil {
			t.Errorf("%s: Decrypt after appending to IV err = %v, want nil", fp, err)
		}
	}
}

func TestFieldErrorText(t *testing.T) {
	t.Parallel()
	err := &engine.FieldError{Field: "envelope.iv", Reason: "missing"}
	if got, want := err.Error(), "envelope.iv: missing"; got != want {
		t.Errorf("FieldError.Error() = %q, want %q", got, want)
	}
}

// denyAll refuses everything and records what it was asked.
type denyAll struct {
	asked []engine.Ref
	keys  []*keyring.Key
}

func (d *denyAll) Authorize(_ context.Context, _ engine.Op, ref engine.Ref, k *keyring.Key) error {
	d.asked, d.keys = append(d.asked, ref), append(d.keys, k)
	return engine.ErrPermissionDenied
}
func (d *denyAll) AuthorizeOp(context.Context, engine.Op) error { return engine.ErrPermissionDenied }
func (d *denyAll) DefaultAlias(context.Context) string          { return "" }

// TestAuthorizationComesFirst: a denied caller gets ErrPermissionDenied
// whatever the key's existence or state, and the authorizer is asked about
// the reference as named (the default alias filled in), with the key when
// there is one.
func TestAuthorizationComesFirst(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		ref     engine.Ref
		wantRef engine.Ref
		wantKey string // fingerprint of the key passed, "" for none
	}{
		{"absent fingerprint", engine.Ref{Fingerprint: "fp-404"}, engine.Ref{Fingerprint: "fp-404"}, ""},
		{"disabled key", engine.Ref{Fingerprint: "fp-off"}, engine.Ref{Fingerprint: "fp-off"}, "fp-off"},
		{"retired key", engine.Ref{Fingerprint: "fp-old"}, engine.Ref{Fingerprint: "fp-old"}, "fp-old"},
		{"absent alias", engine.Ref{Alias: "nope"}, engine.Ref{Alias: "nope"}, ""},
		{"alias without an active key", engine.Ref{Alias: "off-only"}, engine.Ref{Alias: "off-only"}, ""},
		{"default alias", engine.Ref{}, engine.Ref{Alias: "default"}, "fp-ctr"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			az := &denyAll{}
			e := newEngine(t, engine.WithAuthorizer(az))
			ctx := context.Background()
			_, _, encErr := e.Encrypt(ctx, tc.ref, []byte(canaryPlaintext), nil)
			_, resErr := e.Resolve(ctx, tc.ref)
			errs := []error{encErr, resErr}
			if tc.ref.Fingerprint != "" {
				_, _, decErr := e.Decrypt(ctx, engine.Envelope{IV: make([]byte, 16), Fingerprint: tc.ref.Fingerprint}, nil, engine.FormatAny)
				errs = append(errs, decErr)
			}
			for i, err := range errs {
				if !errors.Is(err, engine.ErrPermissionDenied) {
					t.Errorf("call %d err = %v, want ErrPermissionDenied", i, err)
				}
			}
			for i, ref := range az.asked {
				if ref != tc.wantRef {
					t.Errorf("asked about %+v, want %+v", ref, tc.wantRef)
				}
				got := ""
				if az.keys[i] != nil {
					got = az.keys[i].Fingerprint()
				}
				if got != tc.wantKey {
					t.Errorf("asked with key %q, want %q", got, tc.wantKey)
				}
			}
			if len(az.asked) != len(errs) {
				t.Errorf("authorizer asked %d times for %d calls", len(az.asked), len(errs))
			}
		})
	}
}
