package jsonscan

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"
)

// jsonCases are inputs at every edge of the grammar; TestValidJSON holds
// Valid to encoding/json.Valid on each, and FuzzValidJSON starts from them.
var jsonCases = []string{
	``, ` `, `{}`, `[]`, ` {} `, "\t[\n]\r", `{`, `}`, `[`, `]`, `{]`, `[}`, `{}}`, `[]]`, `{} {}`, `[] x`,
	`{"a":1}`, `{"a" : 1 , "b" : [true,false,null]}`, `{"a":}`, `{"a"}`, `{"a":1,}`, `{,"a":1}`, `{a:1}`, `{'a':1}`,
	`{"a":1 "b":2}`, `{"a"::1}`, `{1:2}`, `[1,]`, `[,1]`, `[1 2]`, `[[[]]]`, `[[[]]`, `[{}]`, `[{"a":[{}]}]`,
	`""`, `"abc"`, `"a\"b"`, `"\\"`, `"\/"`, `"\b\f\n\r\t"`, `"\u0041"`, `"\u00e9\uD83D\uDE00"`, `"\uD800"`, `"\u12"`,
	`"\u12G4"`, `"\x41"`, `"\a"`, `"\'"`, "\"a\x00b\"", "\"a\x1fb\"", "\"a\x7fb\"", "\"\xff\xfe\"", "\"é\"", `"abc`, `"\`,
	`"\"`, `"\u"`, `0`, `-0`, `1`, `-1`, `01`, `-01`, `00`, `1.`, `.1`, `1.5`, `-1.5e10`, `1e`, `1e+`, `1E-5`, `1e5.5`,
	`1.2.3`, `--1`, `-`, `+1`, `1x`, `0x10`, `123456789012345678901234567890`, `1ee5`, `true`, `false`, `null`, `tru`,
	`nul`, `True`, `NULL`, `truex`, `[true false]`, `nulls`, "\v1", "1\v", "\u00a01", `{"a":1}garbage`, `{"":""}`,
	strings.Repeat("[", 10000) + strings.Repeat("]", 10000),
	strings.Repeat("[", 10001) + strings.Repeat("]", 10001),
	strings.Repeat(`{"a":`, 10000) + "1" + strings.Repeat("}", 10000),
	strings.Repeat(`{"a":`, 10001) + "1" + strings.Repeat("}", 10001),
	strings.Repeat("[", 10001),
	`{"order":"` + strings.Repeat("x", 1000) + `"}`,
}

func TestValidJSON(t *testing.T) {
	t.Parallel()
	for i, in := range jsonCases {
		if got, want := Valid([]byte(in)), json.Valid([]byte(in)); got != want {
			t.Errorf("case %d %q: Valid = %v, json.Valid = %v", i, truncateCase(in), got, want)
		}
	}
}

// FuzzValidJSON: Valid and encoding/json.Valid agree on every input.
func FuzzValidJSON(f *testing.F) {
	for _, in := range jsonCases {
		if len(in) < 4096 {
			f.Add([]byte(in))
		}
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		if got, want := Valid(in), json.Valid(in); got != want {
			t.Fatalf("%q: Valid = %v, json.Valid = %v", truncateCase(string(in)), got, want)
		}
	})
}

func truncateCase(s string) string {
	if len(s) > 80 {
		return fmt.Sprintf("%s…(%d bytes)", s[:80], len(s))
	}
	return s
}

// BenchmarkValidJSON: the check on a 1 KiB order, next to encoding/json.Valid.
func BenchmarkValidJSON(b *testing.B) {
	order := []byte(`{"order":{"id":"a1b2c3","lines":[{"sku":"burger","qty":2,"price":8.5},{"sku":"fries","qty":1,"price":3.25}],"note":"` +
		strings.Repeat("no onions please, ", 50) + `","table":12}}`)
	for _, impl := range []struct {
		name  string
		valid func([]byte) bool
	}{{"Valid", Valid}, {"encoding-json", json.Valid}} {
		b.Run(impl.name, func(b *testing.B) {
			b.SetBytes(int64(len(order)))
			b.ReportAllocs()
			for b.Loop() {
				if !impl.valid(order) {
					b.Fatal("invalid")
				}
			}
		})
	}
}
