package wire

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"strings"
	"testing"
)

// TestParseFrameFastPath pins which frames the fast path reads (fast) and,
// for all of them, that ParseFrame answers as the encoding/json reference:
// the same frame or the same error code and reason.
func TestParseFrameFastPath(t *testing.T) {
	t.Parallel()
	const iv16 = "AAECAwQFBgcICQoLDA0ODw=="
	const fp, msg = `"fingerprint":"fp-1"`, `"message":"aGk="`
	const ivm = `"iv":"` + iv16 + `"`
	good := `{` + ivm + `,` + fp + `,` + msg + `}`
	bigMsg := base64.StdEncoding.EncodeToString(bytes.Repeat([]byte{0xa5}, 1<<20))
	tests := []struct {
		name     string
		in       string
		wantFast bool
		wantALE  int // 0 = success
	}{
		{"good", good, true, 0},
		{"every order", `{` + msg + `,` + ivm + `,` + fp + `}`, true, 0},
		{"json whitespace everywhere", " \t\r\n{ \n" + `"iv"` + " \t: \r" + `"` + iv16 + `"` + " ,\n" + fp + "\t,\r" + msg + " \n}\r\n\t ", true, 0},
		{"empty object", `{}`, true, CodeHeaders},
		{"empty object with space", "{ \n}", true, CodeHeaders},
		{"only iv", `{` + ivm + `}`, true, CodeHeaders},
		{"empty strings", `{"iv":"","fingerprint":"","message":""}`, true, CodeHeaders},
		{"empty fingerprint", `{` + ivm + `,"fingerprint":"",` + msg + `}`, true, CodeHeaders},
		{"empty message", `{` + ivm + `,` + fp + `,"message":""}`, true, CodeHeaders},
		{"fingerprint with DEL", `{` + ivm + `,"fingerprint":"fp` + "\x7f" + `",` + msg + `}`, true, CodeHeaders},
		{"fingerprint too long", `{` + ivm + `,"fingerprint":"` + strings.Repeat("f", MaxFingerprintSize+1) + `",` + msg + `}`, true, CodeHeaders},
		{"fingerprint longest", `{` + ivm + `,"fingerprint":"` + strings.Repeat("f", MaxFingerprintSize) + `",` + msg + `}`, true, 0},
		{"iv unpadded", `{"iv":"AAECAwQFBgcICQoLDA0ODw",` + fp + `,` + msg + `}`, true, CodeHeaders},
		{"iv url-safe", `{"iv":"-_-_",` + fp + `,` + msg + `}`, true, CodeHeaders},
		{"iv padding bits set", `{"iv":"AB==",` + fp + `,` + msg + `}`, true, CodeHeaders},
		{"message padding bits set", `{` + ivm + `,` + fp + `,"message":"aGl="}`, true, CodeDecrypt},
		{"message not base64", `{` + ivm + `,` + fp + `,"message":"%%%"}`, true, CodeDecrypt},
		{"huge message", `{` + ivm + `,` + fp + `,"message":"` + bigMsg + `"}`, true, 0},
		{"huge message not base64", `{` + ivm + `,` + fp + `,"message":"` + bigMsg + `!"}`, true, CodeDecrypt},

		// Left to encoding/json.
		{"escaped name", `{"i\u0076":"` + iv16 + `",` + fp + `,` + msg + `}`, false, 0},
		{"escaped name \\u0069v", `{"\u0069v":"` + iv16 + `",` + fp + `,` + msg + `}`, false, 0},
		{"escape in the iv", `{"iv":"AAECAwQFBgcICQoLDA0ODw\u003d\u003d",` + fp + `,` + msg + `}`, false, 0},
		{"escaped solidus in the message", `{` + ivm + `,` + fp + `,"message":"a\/8="}`, false, 0},
		// base64 skips line breaks, so an escaped one is a good frame, a
		// raw one is not JSON.
		{"escaped line break in the message", `{` + ivm + `,` + fp + `,"message":"aG\nk="}`, false, 0},
		{"raw line break in the message", `{` + ivm + `,` + fp + `,"message":"aG` + "\n" + `k="}`, false, CodeDecrypt},
		{"control byte in the fingerprint", `{` + ivm + `,"fingerprint":"fp` + "\x01" + `",` + msg + `}`, false, CodeDecrypt},
		{"non-ASCII fingerprint", `{` + ivm + `,"fingerprint":"fp-é",` + msg + `}`, false, CodeHeaders},
		{"invalid UTF-8 in the fingerprint", `{` + ivm + `,"fingerprint":"fp` + "\xff" + `",` + msg + `}`, false, CodeHeaders},
		{"escaped quote in the message", `{` + ivm + `,` + fp + `,"message":"aGk=\""}`, false, CodeDecrypt},
		{"duplicate iv", `{` + ivm + `,` + ivm + `,` + fp + `,` + msg + `}`, false, CodeHeaders},
		{"duplicate fingerprint, other value", `{` + ivm + `,` + fp + `,"fingerprint":"fp-2",` + msg + `}`, false, CodeHeaders},
		{"duplicate message through an escape", `{` + ivm + `,` + fp + `,` + msg + `,"m\u0065ssage":"aGk="}`, false, CodeHeaders},
		{"duplicate after a null", `{"iv":null,` + ivm + `,` + fp + `,` + msg + `}`, false, CodeHeaders},
		{"case variant IV", `{"IV":"` + iv16 + `",` + fp + `,` + msg + `}`, false, CodeHeaders},
		{"case variant next to the real one", `{` + ivm + `,"Fingerprint":"fp-1",` + fp + `,` + msg + `}`, false, CodeHeaders},
		{"unicode case variant (long s)", `{` + ivm + `,` + fp + `,"meſſage":"aGk="}`, false, CodeHeaders},
		{"unknown member", `{` + ivm + `,` + fp + `,` + msg + `,"extra":"x"}`, false, CodeDecrypt},
		{"nested object", `{"iv":{"iv":"` + iv16 + `"},` + fp + `,` + msg + `}`, false, CodeDecrypt},
		{"array value", `{` + ivm + `,"fingerprint":["fp-1"],` + msg + `}`, false, CodeDecrypt},
		{"number value", `{"iv":16,` + fp + `,` + msg + `}`, false, CodeDecrypt},
		{"boolean value", `{` + ivm + `,` + fp + `,"message":true}`, false, CodeDecrypt},
		{"null value", `{` + ivm + `,` + fp + `,"message":null}`, false, CodeHeaders},
		{"trailing garbage", good + ` x`, false, CodeDecrypt},
		{"trailing object", good + `{}`, false, CodeDecrypt},
		{"trailing brace", good + `}`, false, CodeDecrypt},
		{"trailing NUL", good + "\x00", false, CodeDecrypt},
		{"leading BOM", "\ufeff" + good, false, CodeDecrypt},
		{"vertical tab is not JSON whitespace", "\v" + good, false, CodeDecrypt},
		{"trailing comma", `{` + ivm + `,` + fp + `,` + msg + `,}`, false, CodeDecrypt},
		{"leading comma", `{,` + ivm + `,` + fp + `,` + msg + `}`, false, CodeDecrypt},
		{"missing comma", `{` + ivm + ` ` + fp + `,` + msg + `}`, false, CodeDecrypt},
		{"missing colon", `{"iv" "` + iv16 + `",` + fp + `,` + msg + `}`, false, CodeDecrypt},
		{"single quotes", `{'iv':'` + iv16 + `',` + fp + `,` + msg + `}`, false, CodeDecrypt},
		{"unterminated object", `{` + ivm + `,` + fp + `,` + msg, false, CodeDecrypt},
		{"unterminated string", `{` + ivm + `,` + fp + `,"message":"aGk=`, false, CodeDecrypt},
		{"unterminated after the colon", `{"iv":`, false, CodeDecrypt},
		{"an array", `[` + ivm + `]`, false, CodeDecrypt},
		{"empty input", ``, false, CodeDecrypt},
		{"whitespace only", " \n", false, CodeDecrypt},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			data := []byte(tc.in)
			if _, fast := scanPlainFrame(data); fast != tc.wantFast {
				t.Errorf("scanPlainFrame(%.80q) ok = %v, want %v", data, fast, tc.wantFast)
			}
			fr, err := ParseFrame(data)
			checkSameAsJSON(t, data, fr, err)
			if tc.wantALE == 0 {
				if err != nil {
					t.Fatalf("ParseFrame(%.80q) err = %v, want nil", data, err)
				}
				return
			}
			if e, ok := AsError(err); !ok || e.Code != tc.wantALE {
				t.Fatalf("ParseFrame(%.80q) err = %v, want ALE code %d", data, err, tc.wantALE)
			}
		})
	}
}

// jsonMarshalFrame is MarshalFrame as it was written before the hand-made
// encoder: the output MarshalFrame must keep, byte for byte.
func jsonMarshalFrame(f Frame) []byte {
	b, _ := json.Marshal(struct {
		IV          string `json:"iv"`
		Fingerprint string `json:"fingerprint"`
		Message     string `json:"message"`
	}{base64.StdEncoding.EncodeToString(f.IV), f.Fingerprint, base64.StdEncoding.EncodeToString(f.Message)})
	return b
}

func TestMarshalFrameMatchesJSON(t *testing.T) {
	t.Parallel()
	fingerprints := []string{
		"", "fp-1", "sha256:AbC+/=~_.-", strings.Repeat("f", MaxFingerprintSize),
		`q"uote`, `back\slash`, "<script>&", "tab\tnew\nline\x00", "del\x7f", "é", "bad\xffutf8", "line\u2028sep",
	}
	for _, fp := range fingerprints {
		for _, n := range []int{0, 1, 2, 3, 4, 16, 1024, 1025, 1 << 16} {
			f := Frame{IV: seq(n % 17), Fingerprint: fp, Message: bytes.Repeat([]byte{0xfb, 0xff, 0x01}, n)[:n]}
			want := jsonMarshalFrame(f)
			if got := MarshalFrame(f); !bytes.Equal(got, want) {
				t.Fatalf("MarshalFrame(fp %q, %d bytes) = %.100s, want %.100s", fp, n, got, want)
			}
			prefix := []byte("prefix")
			if got := AppendFrame(prefix, f); !bytes.Equal(got, append([]byte("prefix"), want...)) {
				t.Fatalf("AppendFrame(prefix, fp %q, %d bytes) = %.100s, want prefix%.100s", fp, n, got, want)
			}
		}
	}
	if f := (Frame{IV: seq(16), Fingerprint: "fp-1", Message: []byte("hi")}); cap(MarshalFrame(f)) != len(MarshalFrame(f)) {
		t.Errorf("MarshalFrame allocates %d bytes for a %d-byte frame, want exactly", cap(MarshalFrame(f)), len(MarshalFrame(f)))
	}
}

// TestBase64MatchesStdlib holds the payload and IV codecs to encoding/base64
// (standard alphabet, padded, strict) for every length around a block.
func TestBase64MatchesStdlib(t *testing.T) {
	t.Parallel()
	strict := base64.StdEncoding.Strict()
	for n := 0; n <= 70; n++ {
		raw := bytes.Repeat([]byte{0xfe, 0x00, 0x7f, 0x80}, n)[:n]
		enc := base64.StdEncoding.EncodeToString(raw)
		if got := SealPayload(raw); string(got) != enc {
			t.Fatalf("SealPayload(%d bytes) = %s, want %s", n, got, enc)
		}
		if got := EncodeIV(raw); got != enc {
			t.Fatalf("EncodeIV(%d bytes) = %s, want %s", n, got, enc)
		}
		for _, in := range []string{enc, enc + "\n", "\r\n" + enc, enc + "=", strings.TrimRight(enc, "="), strings.ReplaceAll(enc, "/", "_"), enc + "A"} {
			want, wantErr := strict.DecodeString(in)
			got, err := DecodePayload([]byte(in))
			if (err != nil) != (wantErr != nil) || (err == nil && !bytes.Equal(got, want)) {
				t.Fatalf("DecodePayload(%q) = %x, %v; want %x, %v", in, got, err, want, wantErr)
			}
			gotIV, err := DecodeIV(in)
			if wantIVErr := wantErr != nil || len(want) == 0; (err != nil) != wantIVErr || (err == nil && !bytes.Equal(gotIV, want)) {
				t.Fatalf("DecodeIV(%q) = %x, %v; want %x (error %v)", in, gotIV, err, want, wantIVErr)
			}
		}
	}
}
