package key_test

import (
	"encoding/json"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/alecrypt/alecrypt/internal/key"
	"github.com/alecrypt/alecrypt/service/secret"
)

// recordOpts compares records field by field: times with Equal (cmp uses
// the method), nil and empty alias lists alike, and the secret separately
// through Secret.Equal, the only way to compare it.
var recordOpts = cmp.Options{
	cmpopts.IgnoreFields(key.Record{}, "Secret"),
	cmpopts.EquateEmpty(),
}

func diffRecords(want, got key.Record) string {
	d := cmp.Diff(want, got, recordOpts)
	if !want.Secret.Equal(got.Secret) {
		d += "\nSecret differs"
	}
	return d
}

func TestCodecRoundTrip(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name   string
		mutate func(*key.Record)
	}{
		{"ctr full", func(*key.Record) {}},
		{"ctr counter 128", func(r *key.Record) { r.CounterBits = key.CounterBits128 }},
		{"ctr counter default", func(r *key.Record) { r.CounterBits = 0 }},
		{"gcm no expiry", func(r *key.Record) {
			r.Algorithm, r.CounterBits, r.NotAfter = key.AES256GCM, 0, time.Time{}
		}},
		{"no aliases", func(r *key.Record) { r.Aliases = nil }},
		{"non-UTC times", func(r *key.Record) {
			zone := time.FixedZone("UTC+5:30", 5*3600+1800)
			r.CreatedAt = r.CreatedAt.In(zone).Add(123456789 * time.Nanosecond)
			r.NotAfter = r.NotAfter.In(zone)
		}},
		{"unicode and escapes", func(r *key.Record) {
			r.Secret = secret.FromString(`clé "secrète" \ <🔑> ` + canary)
			r.KDF.Salt = "sel-日本語-\u2028"
		}},
		{"decrypt-only local", func(r *key.Record) { r.State, r.Source, r.Version = key.DecryptOnly, key.SourceLocal, 0 }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			want := validRecord()
			tc.mutate(&want)
			got := roundTrip(t, want)
			if loc := got.CreatedAt.Location(); loc != time.UTC {
				t.Errorf("decoded created_at is in %v, want UTC (the codec writes UTC)", loc)
			}
		})
	}
}

// roundTrip sends r through MarshalRecord and UnmarshalRecord, fails the
// test unless it comes back unchanged, and returns what came back.
func roundTrip(t *testing.T, r key.Record) key.Record {
	t.Helper()
	data, err := key.MarshalRecord(r)
	if err != nil {
		t.Fatalf("MarshalRecord err = %v, want nil", err)
	}
	back, err := key.UnmarshalRecord(data)
	if err != nil {
		t.Fatalf("UnmarshalRecord(MarshalRecord(r)) err = %v, want nil", err)
	}
	if d := diffRecords(r, back); d != "" {
		t.Fatalf("record changed through MarshalRecord → UnmarshalRecord (-before +after):\n%s", d)
	}
	return back
}

// TestMarshalRecordShape pins the wire field names: the same JSON is the
// embedded keystore file, the Vault secret and the Portal's format.
func TestMarshalRecordShape(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name     string
		mutate   func(*key.Record)
		wantKeys []string
	}{
		{
			name:     "all fields",
			mutate:   func(*key.Record) {},
			wantKeys: []string{"algorithm", "aliases", "counter_bits", "created_at", "fingerprint", "kdf", "not_after", "secret", "source", "state", "version"},
		},
		{
			name: "optional fields omitted",
			mutate: func(r *key.Record) {
				r.Algorithm, r.CounterBits, r.Version, r.NotAfter, r.Aliases = key.AES256GCM, 0, 0, time.Time{}, nil
			},
			wantKeys: []string{"algorithm", "aliases", "created_at", "fingerprint", "kdf", "secret", "source", "state"},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			r := validRecord()
			tc.mutate(&r)
			data, err := key.MarshalRecord(r)
			if err != nil {
				t.Fatal(err)
			}
			var m map[string]json.RawMessage
			if err := json.Unmarshal(data, &m); err != nil {
				t.Fatal(err)
			}
			var keys []string
			for k := range m {
				keys = append(keys, k)
			}
			slices.Sort(keys)
			if d := cmp.Diff(tc.wantKeys, keys); d != "" {
				t.Errorf("MarshalRecord field names mismatch (-want +got):\n%s", d)
			}
			if string(m["aliases"]) == "null" {
				t.Errorf(`MarshalRecord wrote "aliases": null, want []`)
			}
			var kdf map[string]any
			if err := json.Unmarshal(m["kdf"], &kdf); err != nil || len(kdf) != 3 || kdf["name"] != key.KDFPBKDF2SHA256 {
				t.Errorf(`MarshalRecord "kdf" = %s, want {"name","salt","iterations"}`, m["kdf"])
			}
		})
	}
}

func TestMarshalRecordRejectsInvalid(t *testing.T) {
	t.Parallel()
	r := validRecord()
	r.State = "paused"
	data, err := key.MarshalRecord(r)
	if !errors.Is(err, key.ErrInvalidRecord) || data != nil {
		t.Errorf("MarshalRecord(state paused) = %d bytes, %v; want nil, ErrInvalidRecord", len(data), err)
	}
}

// validJSON is a valid record in wire form whose secret is the canary.
const validJSON = `{"fingerprint":"fp-json-1","aliases":["default"],"algorithm":"aes-256-ctr",` +
	`"secret":"` + canary + `","kdf":{"name":"pbkdf2-sha256","salt":"salt-1","iterations":1000},` +
	`"counter_bits":64,"state":"active","version":1,"created_at":"2025-03-01T12:00:00Z","source":"portal"}`

func TestUnmarshalRecordValid(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name  string
		input string
	}{
		{"compact", validJSON},
		{"surrounding whitespace", "\n\t " + validJSON + " \r\n"},
		{"no optional fields", `{"fingerprint":"fp-2","aliases":[],"algorithm":"aes-256-gcm","secret":"s",` +
			`"kdf":{"name":"pbkdf2-sha256","salt":"x","iterations":1000},"state":"disabled","created_at":"2025-01-01T00:00:00Z","source":"local"}`},
		{"null aliases", strings.Replace(validJSON, `["default"]`, `null`, 1)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			r, err := key.UnmarshalRecord([]byte(tc.input))
			if err != nil {
				t.Fatalf("UnmarshalRecord err = %v, want nil", err)
			}
			if err := r.Validate(); err != nil {
				t.Errorf("UnmarshalRecord returned a record that fails Validate: %v", err)
			}
		})
	}
	r, err := key.UnmarshalRecord([]byte(validJSON))
	if err != nil {
		t.Fatal(err)
	}
	want := key.Record{
		Fingerprint: "fp-json-1",
		Aliases:     []string{"default"},
		Algorithm:   key.AES256CTR,
		Secret:      secret.FromString(canary),
		KDF:         key.KDF{Name: key.KDFPBKDF2SHA256, Salt: "salt-1", Iterations: 1000},
		CounterBits: 64,
		State:       key.Active,
		Version:     1,
		CreatedAt:   created,
		Source:      key.SourcePortal,
	}
	if d := diffRecords(want, r); d != "" {
		t.Errorf("UnmarshalRecord(validJSON) mismatch (-want +got):\n%s", d)
	}
}

func TestUnmarshalRecordRejects(t *testing.T) {
	t.Parallel()
	replace := func(old, new string) string {
		if !strings.Contains(validJSON, old) {
			panic("test input: " + old + " not in validJSON")
		}
		return strings.Replace(validJSON, old, new, 1)
	}
	for _, tc := range []struct {
		name  string
		input string
	}{
		{"empty", ""},
		{"whitespace", "  \n"},
		{"null", "null"},
		{"array", "[" + validJSON + "]"},
		{"string", `"` + canary + `"`},
		{"truncated", validJSON[:len(validJSON)-1]},
		{"truncated in secret", validJSON[:strings.Index(validJSON, canary)+10]},
		{"bad escape in secret", replace(canary, canary+`\q`)},
		{"control character in secret", replace(canary, canary+"\x01")},
		{"unknown field", replace(`"state"`, `"secret_key":"`+canary+`","state"`)},
		{"unknown kdf field", replace(`"iterations"`, `"hash":"sha256","iterations"`)},
		{"trailing garbage", validJSON + " x"},
		{"trailing brace", validJSON + "}"},
		{"trailing bracket", validJSON + "]"},
		{"trailing second record", validJSON + validJSON},
		{"secret wrong type", replace(`"`+canary+`"`, `["`+canary+`"]`)},
		{"iterations wrong type", replace(`"iterations":1000`, `"iterations":"1000"`)},
		{"iterations fractional", replace(`"iterations":1000`, `"iterations":1000.5`)},
		{"version overflows", replace(`"version":1`, `"version":99999999999999999999`)},
		{"created_at not a time", replace(`"2025-03-01T12:00:00Z"`, `"yesterday"`)},
		{"created_at out of range in UTC", replace(`"2025-03-01T12:00:00Z"`, `"9999-12-31T23:00:00-02:00"`)},
		{"invalid state", replace(`"active"`, `"paused"`)},
		{"invalid algorithm", replace(`"aes-256-ctr"`, `"rot13"`)},
		{"gcm with counter bits", replace(`"aes-256-ctr"`, `"aes-256-gcm"`)},
		{"too few iterations", replace(`"iterations":1000`, `"iterations":999`)},
		{"missing secret", replace(`"secret":"`+canary+`",`, ``)},
		{"empty fingerprint", replace(`"fp-json-1"`, `""`)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			r, err := key.UnmarshalRecord([]byte(tc.input))
			if !errors.Is(err, key.ErrInvalidRecord) {
				t.Fatalf("UnmarshalRecord(%s) err = %v, want ErrInvalidRecord", tc.name, err)
			}
			if strings.Contains(err.Error(), canary) || strings.Contains(err.Error(), canary[:12]) {
				t.Errorf("UnmarshalRecord(%s) error contains the secret: %q", tc.name, err)
			}
			if r.Fingerprint != "" || !r.Secret.IsZero() {
				t.Errorf("UnmarshalRecord(%s) returned a partial record along with its error", tc.name)
			}
		})
	}
}
