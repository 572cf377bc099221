package key_test

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/alecrypt/alecrypt/internal/key"
	"github.com/alecrypt/alecrypt/service/secret"
)

// canary stands in for a Secret Key in tests that check errors never echo
// one. It is deliberately not shaped like a real key.
const canary = "CANARY-not-a-real-secret-0451"

var created = time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)

func validRecord() key.Record {
	return key.Record{
		Fingerprint: "fp-valid-1",
		Aliases:     []string{"default", "store-17"},
		Algorithm:   key.AES256CTR,
		Secret:      secret.FromString(canary),
		KDF:         key.KDF{Name: key.KDFPBKDF2SHA256, Salt: "salt-1", Iterations: 100_000},
		CounterBits: key.CounterBits64,
		State:       key.Active,
		Version:     3,
		CreatedAt:   created,
		NotAfter:    created.AddDate(1, 0, 0),
		Source:      key.SourcePortal,
	}
}

func TestValidate(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name    string
		mutate  func(*key.Record)
		wantErr bool
	}{
		{name: "valid ctr", mutate: func(*key.Record) {}},
		{name: "valid ctr counter default", mutate: func(r *key.Record) { r.CounterBits = 0 }},
		{name: "valid ctr counter 128", mutate: func(r *key.Record) { r.CounterBits = key.CounterBits128 }},
		{name: "valid gcm", mutate: func(r *key.Record) { r.Algorithm, r.CounterBits = key.AES256GCM, 0 }},
		{name: "valid no aliases", mutate: func(r *key.Record) { r.Aliases = nil }},
		{name: "valid decrypt-only", mutate: func(r *key.Record) { r.State = key.DecryptOnly }},
		{name: "valid disabled", mutate: func(r *key.Record) { r.State = key.Disabled }},
		{name: "valid local", mutate: func(r *key.Record) { r.Source = key.SourceLocal }},
		{name: "valid version zero", mutate: func(r *key.Record) { r.Version = 0 }},
		{name: "valid min iterations", mutate: func(r *key.Record) { r.KDF.Iterations = key.MinIterations }},
		{name: "valid max iterations", mutate: func(r *key.Record) { r.KDF.Iterations = key.MaxIterations }},
		{name: "valid longest fingerprint", mutate: func(r *key.Record) { r.Fingerprint = strings.Repeat("f", key.MaxFingerprintLen) }},
		{name: "valid zero times", mutate: func(r *key.Record) { r.CreatedAt, r.NotAfter = time.Time{}, time.Time{} }},
		{name: "valid year 9999 UTC", mutate: func(r *key.Record) { r.NotAfter = time.Date(9999, 12, 31, 23, 0, 0, 0, time.UTC) }},

		{name: "empty fingerprint", mutate: func(r *key.Record) { r.Fingerprint = "" }, wantErr: true},
		{name: "fingerprint with space", mutate: func(r *key.Record) { r.Fingerprint = "fp 1" }, wantErr: true},
		{name: "fingerprint with newline", mutate: func(r *key.Record) { r.Fingerprint = "fp\n1" }, wantErr: true},
		{name: "fingerprint non-ASCII", mutate: func(r *key.Record) { r.Fingerprint = "fp-é" }, wantErr: true},
		{name: "fingerprint too long", mutate: func(r *key.Record) { r.Fingerprint = strings.Repeat("f", key.MaxFingerprintLen+1) }, wantErr: true},
		{name: "empty alias", mutate: func(r *key.Record) { r.Aliases = []string{"default", ""} }, wantErr: true},
		{name: "alias with space", mutate: func(r *key.Record) { r.Aliases = []string{"store 17"} }, wantErr: true},
		{name: "alias too long", mutate: func(r *key.Record) { r.Aliases = []string{strings.Repeat("a", key.MaxFingerprintLen+1)} }, wantErr: true},
		{name: "empty algorithm", mutate: func(r *key.Record) { r.Algorithm = "" }, wantErr: true},
		{name: "unknown algorithm", mutate: func(r *key.Record) { r.Algorithm = "aes-128-ctr" }, wantErr: true},
		{name: "ctr counter 32", mutate: func(r *key.Record) { r.CounterBits = 32 }, wantErr: true},
		{name: "ctr counter negative", mutate: func(r *key.Record) { r.CounterBits = -64 }, wantErr: true},
		{name: "gcm with counter", mutate: func(r *key.Record) { r.Algorithm = key.AES256GCM }, wantErr: true},
		{name: "empty secret", mutate: func(r *key.Record) { r.Secret = secret.Bytes{} }, wantErr: true},
		{name: "empty kdf", mutate: func(r *key.Record) { r.KDF.Name = "" }, wantErr: true},
		{name: "unknown kdf", mutate: func(r *key.Record) { r.KDF.Name = "pbkdf2-sha1" }, wantErr: true},
		{name: "empty salt", mutate: func(r *key.Record) { r.KDF.Salt = "" }, wantErr: true},
		{name: "iterations below min", mutate: func(r *key.Record) { r.KDF.Iterations = key.MinIterations - 1 }, wantErr: true},
		{name: "iterations above max", mutate: func(r *key.Record) { r.KDF.Iterations = key.MaxIterations + 1 }, wantErr: true},
		{name: "zero iterations", mutate: func(r *key.Record) { r.KDF.Iterations = 0 }, wantErr: true},
		{name: "empty state", mutate: func(r *key.Record) { r.State = "" }, wantErr: true},
		{name: "unknown state", mutate: func(r *key.Record) { r.State = "paused" }, wantErr: true},
		{name: "negative version", mutate: func(r *key.Record) { r.Version = -1 }, wantErr: true},
		{name: "empty source", mutate: func(r *key.Record) { r.Source = "" }, wantErr: true},
		{name: "unknown source", mutate: func(r *key.Record) { r.Source = "vault" }, wantErr: true},
		{name: "created_at past 9999 in UTC", mutate: func(r *key.Record) {
			r.CreatedAt = time.Date(9999, 12, 31, 23, 0, 0, 0, time.FixedZone("", -2*3600))
		}, wantErr: true},
		{name: "not_after before year 0 in UTC", mutate: func(r *key.Record) {
			r.NotAfter = time.Date(0, 1, 1, 0, 30, 0, 0, time.FixedZone("", 3600))
		}, wantErr: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			r := validRecord()
			tc.mutate(&r)
			err := r.Validate()
			if !tc.wantErr {
				if err != nil {
					t.Fatalf("Validate() err = %v, want nil", err)
				}
				return
			}
			if !errors.Is(err, key.ErrInvalidRecord) {
				t.Fatalf("Validate() err = %v, want ErrInvalidRecord", err)
			}
			if strings.Contains(err.Error(), canary) {
				t.Errorf("Validate() error contains the secret: %q", err)
			}
		})
	}
}

func TestExpiredAndCanEncrypt(t *testing.T) {
	t.Parallel()
	notAfter := created.Add(time.Hour)
	for _, tc := range []struct {
		name                  string
		state                 key.State
		notAfter              time.Time
		now                   time.Time
		wantExpired, wantCanE bool
	}{
		{"active no expiry", key.Active, time.Time{}, created.AddDate(100, 0, 0), false, true},
		{"active before not_after", key.Active, notAfter, notAfter.Add(-time.Nanosecond), false, true},
		{"active at not_after", key.Active, notAfter, notAfter, true, false},
		{"active after not_after", key.Active, notAfter, notAfter.Add(time.Second), true, false},
		{"decrypt-only", key.DecryptOnly, time.Time{}, created, false, false},
		{"disabled", key.Disabled, time.Time{}, created, false, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			r := validRecord()
			r.State, r.NotAfter = tc.state, tc.notAfter
			if got := r.Expired(tc.now); got != tc.wantExpired {
				t.Errorf("Expired(%v) = %v, want %v", tc.now, got, tc.wantExpired)
			}
			if got := r.CanEncrypt(tc.now); got != tc.wantCanE {
				t.Errorf("CanEncrypt(%v) = %v, want %v", tc.now, got, tc.wantCanE)
			}
		})
	}
}

func TestEffectiveCounterBits(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		alg  key.Algorithm
		bits int
		want int
	}{
		{key.AES256CTR, 0, 64},
		{key.AES256CTR, 64, 64},
		{key.AES256CTR, 128, 128},
		{key.AES256GCM, 0, 0},
	} {
		r := key.Record{Algorithm: tc.alg, CounterBits: tc.bits}
		if got := r.EffectiveCounterBits(); got != tc.want {
			t.Errorf("Record{%s, CounterBits: %d}.EffectiveCounterBits() = %d, want %d", tc.alg, tc.bits, got, tc.want)
		}
	}
}

func TestSameMaterial(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name   string
		mutate func(*key.Record)
		want   bool
	}{
		{"identical", func(*key.Record) {}, true},
		{"metadata only", func(r *key.Record) {
			r.State, r.Version, r.Aliases, r.NotAfter, r.Source = key.Disabled, 9, nil, time.Time{}, key.SourceLocal
		}, true},
		{"counter 0 equals 64", func(r *key.Record) { r.CounterBits = 0 }, true},
		{"same secret, new copy", func(r *key.Record) { r.Secret = secret.New([]byte(canary)) }, true},
		{"secret", func(r *key.Record) { r.Secret = secret.FromString(canary + "x") }, false},
		{"salt", func(r *key.Record) { r.KDF.Salt += "x" }, false},
		{"iterations", func(r *key.Record) { r.KDF.Iterations++ }, false},
		{"counter width", func(r *key.Record) { r.CounterBits = 128 }, false},
		{"algorithm", func(r *key.Record) { r.Algorithm, r.CounterBits = key.AES256GCM, 0 }, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			a, b := validRecord(), validRecord()
			tc.mutate(&b)
			if got := a.SameMaterial(b); got != tc.want {
				t.Errorf("SameMaterial(%s) = %v, want %v", tc.name, got, tc.want)
			}
			if got := b.SameMaterial(a); got != tc.want {
				t.Errorf("SameMaterial(%s) reversed = %v, want %v", tc.name, got, tc.want)
			}
		})
	}
}

func TestEqual(t *testing.T) {
	t.Parallel()
	base := validRecord()
	for _, tc := range []struct {
		name   string
		mutate func(*key.Record)
		same   bool
	}{
		{"identical", func(*key.Record) {}, true},
		{"aliases removed", func(r *key.Record) { r.Aliases = nil }, false},
		{"other zone, same instant", func(r *key.Record) { r.CreatedAt = r.CreatedAt.In(time.FixedZone("Y", -7200)) }, true},
		{"secret", func(r *key.Record) { r.Secret = secret.FromString("other") }, false},
		{"secret prefix", func(r *key.Record) { r.Secret = secret.FromString(canary[:len(canary)-1]) }, false},
		{"fingerprint", func(r *key.Record) { r.Fingerprint = "b" }, false},
		{"alias order", func(r *key.Record) { r.Aliases = []string{"store-17", "default"} }, false},
		{"algorithm", func(r *key.Record) { r.Algorithm, r.CounterBits = key.AES256GCM, 0 }, false},
		{"counter bits explicit vs default", func(r *key.Record) { r.CounterBits = 0 }, false},
		{"salt", func(r *key.Record) { r.KDF.Salt = "x" }, false},
		{"state", func(r *key.Record) { r.State = key.Disabled }, false},
		{"version", func(r *key.Record) { r.Version++ }, false},
		{"created_at", func(r *key.Record) { r.CreatedAt = r.CreatedAt.Add(time.Nanosecond) }, false},
		{"not_after", func(r *key.Record) { r.NotAfter = time.Time{} }, false},
		{"source", func(r *key.Record) { r.Source = key.SourceLocal }, false},
	} {
		o := base.Clone()
		tc.mutate(&o)
		if got := base.Equal(o); got != tc.same {
			t.Errorf("Equal(%s) = %v, want %v", tc.name, got, tc.same)
		}
	}
}

func TestCloneSharesNoAliases(t *testing.T) {
	t.Parallel()
	r := validRecord()
	c := r.Clone()
	c.Aliases[0] = "changed"
	if r.Aliases[0] != "default" {
		t.Errorf("changing Clone().Aliases changed the original: %q", r.Aliases)
	}
	if !c.HasAlias("store-17") || c.HasAlias("default") || !r.HasAlias("default") {
		t.Errorf("HasAlias disagrees with Aliases: clone %q, original %q", c.Aliases, r.Aliases)
	}
}

// TestValidateFingerprint pins the one fingerprint rule: what the fixtures,
// generated keys and Portal use passes; anything that could act as a path
// separator, an escape or a dot-segment in a Vault path, or break a header,
// is refused.
func TestValidateFingerprint(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		fp   string
		ok   bool
	}{
		{"generated hex", "a65327c972dcdb8fc982e5083bb120c3", true},
		{"fixture", "fp-json-1", true},
		{"every allowed character", "AZaz09-_.:+=~", true},
		{"base64 without slash", "q83vEjRWeJA+AbC=", true},
		{"prefixed digest", "sha256:9f2c", true},
		{"dots inside", "v1.2.3", true},
		{"three dots", "...", true},
		{"one character", "f", true},
		{"longest", strings.Repeat("f", key.MaxFingerprintLen), true},

		{"traversal into another key", "z/../victim", false},
		{"escape from the prefix", "../../other-app/x", false},
		{"sub-path", "x/y", false},
		{"dot", ".", false},
		{"dot-dot", "..", false},
		{"leading slash", "/x", false},
		{"trailing slash", "x/", false},
		{"backslash", `x\y`, false},
		{"percent escape", "x%2Fy", false},
		{"space", "fp 1", false},
		{"tab", "fp\t1", false},
		{"newline", "fp\n1", false},
		{"NUL", "fp\x001", false},
		{"non-ASCII", "fp-é", false},
		{"fullwidth slash", "x\uff0fy", false},
		{"question mark", "x?y", false},
		{"hash", "x#y", false},
		{"empty", "", false},
		{"too long", strings.Repeat("f", key.MaxFingerprintLen+1), false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			err := key.ValidateFingerprint(tc.fp)
			if tc.ok && err != nil {
				t.Fatalf("ValidateFingerprint(%q) err = %v, want nil", tc.fp, err)
			}
			if !tc.ok && !errors.Is(err, key.ErrInvalidFingerprint) {
				t.Fatalf("ValidateFingerprint(%q) err = %v, want ErrInvalidFingerprint", tc.fp, err)
			}
			r := validRecord()
			r.Fingerprint = tc.fp
			if err := r.Validate(); (err == nil) != tc.ok || (err != nil && !errors.Is(err, key.ErrInvalidRecord)) {
				t.Errorf("Record{Fingerprint: %q}.Validate() err = %v, want ok=%v (ErrInvalidRecord)", tc.fp, err, tc.ok)
			}
			if err != nil && strings.ContainsAny(err.Error(), "\n\t\x00") {
				t.Errorf("ValidateFingerprint(%q) error %q carries raw control characters", tc.fp, err)
			}
		})
	}
}
