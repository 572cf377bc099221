package wire

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
)

func TestParseFrame(t *testing.T) {
	t.Parallel()
	const iv16 = "AAECAwQFBgcICQoLDA0ODw==" // bytes 0..15
	tests := []struct {
		name    string
		in      string
		want    Frame
		wantALE int // 0 = success
	}{
		{"good", `{"iv":"` + iv16 + `","fingerprint":"fp-1","message":"aGk="}`, Frame{IV: seq(16), Fingerprint: "fp-1", Message: []byte("hi")}, 0},
		{"member order free", `{"message":"aGk=","fingerprint":"fp-1","iv":"` + iv16 + `"}`, Frame{IV: seq(16), Fingerprint: "fp-1", Message: []byte("hi")}, 0},
		{"member name escaped", `{"i\u0076":"` + iv16 + `","fingerprint":"fp-1","message":"aGk="}`, Frame{IV: seq(16), Fingerprint: "fp-1", Message: []byte("hi")}, 0},
		// A frame without a message must never be forwarded as an empty
		// payload: it is a missing security field.
		{"missing message", `{"iv":"` + iv16 + `","fingerprint":"fp-1"}`, Frame{}, CodeHeaders},
		{"null message", `{"iv":"` + iv16 + `","fingerprint":"fp-1","message":null}`, Frame{}, CodeHeaders},
		{"empty message", `{"iv":"` + iv16 + `","fingerprint":"fp-1","message":""}`, Frame{}, CodeHeaders},
		// base64 skips line breaks: these messages decode to nothing.
		{"message of an escaped line break", `{"iv":"` + iv16 + `","fingerprint":"fp-1","message":"\n"}`, Frame{}, CodeHeaders},
		{"message of escaped line breaks", `{"iv":"` + iv16 + `","fingerprint":"fp-1","message":"\r\n\n"}`, Frame{}, CodeHeaders},
		// Duplicates and case variants: decoders disagree on which value
		// wins (Go's takes the last and matches names case-insensitively),
		// so the gateway and the client could read different frames.
		{"duplicate iv", `{"iv":"` + iv16 + `","iv":"` + iv16 + `","fingerprint":"fp-1","message":"aGk="}`, Frame{}, CodeHeaders},
		{"duplicate fingerprint", `{"iv":"` + iv16 + `","fingerprint":"fp-1","fingerprint":"fp-2","message":"aGk="}`, Frame{}, CodeHeaders},
		{"duplicate message", `{"iv":"` + iv16 + `","fingerprint":"fp-1","message":"aGk=","message":"aGk="}`, Frame{}, CodeHeaders},
		{"duplicate through an escape", `{"iv":"` + iv16 + `","i\u0076":"` + iv16 + `","fingerprint":"fp-1","message":"aGk="}`, Frame{}, CodeHeaders},
		{"case variant IV", `{"IV":"` + iv16 + `","fingerprint":"fp-1","message":"aGk="}`, Frame{}, CodeHeaders},
		{"case variant next to the real one", `{"iv":"` + iv16 + `","Message":"aGk=","fingerprint":"fp-1","message":"aGk="}`, Frame{}, CodeHeaders},
		{"not JSON", `iv=abc`, Frame{}, CodeDecrypt},
		{"JSON array", `[1,2]`, Frame{}, CodeDecrypt},
		{"JSON null", `null`, Frame{}, CodeDecrypt},
		{"JSON string", `"x"`, Frame{}, CodeDecrypt},
		{"unknown member", `{"iv":"` + iv16 + `","fingerprint":"f","message":"aGk=","extra":1}`, Frame{}, CodeDecrypt},
		{"mistyped member", `{"iv":16,"fingerprint":"f","message":"aGk="}`, Frame{}, CodeDecrypt},
		{"trailing data", `{"iv":"` + iv16 + `","fingerprint":"f","message":"aGk="} {}`, Frame{}, CodeDecrypt},
		{"unterminated", `{"iv":"` + iv16 + `","fingerprint":"f","message":"aGk="`, Frame{}, CodeDecrypt},
		{"missing iv", `{"fingerprint":"f","message":"aGk="}`, Frame{}, CodeHeaders},
		{"empty iv", `{"iv":"","fingerprint":"f","message":"aGk="}`, Frame{}, CodeHeaders},
		{"missing fingerprint", `{"iv":"` + iv16 + `","message":"aGk="}`, Frame{}, CodeHeaders},
		{"empty fingerprint", `{"iv":"` + iv16 + `","fingerprint":"","message":"aGk="}`, Frame{}, CodeHeaders},
		{"fingerprint with space", `{"iv":"` + iv16 + `","fingerprint":"a b","message":"aGk="}`, Frame{}, CodeHeaders},
		{"iv not base64", `{"iv":"!!!!","fingerprint":"f","message":"aGk="}`, Frame{}, CodeHeaders},
		{"iv url-safe base64", `{"iv":"-_-_","fingerprint":"f","message":"aGk="}`, Frame{}, CodeHeaders},
		{"iv unpadded", `{"iv":"AAECAwQFBgcICQoLDA0ODw","fingerprint":"f","message":"aGk="}`, Frame{}, CodeHeaders},
		{"message not base64", `{"iv":"` + iv16 + `","fingerprint":"f","message":"%%%"}`, Frame{}, CodeDecrypt},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			got, err := ParseFrame([]byte(tc.in))
			if tc.wantALE == 0 {
				if err != nil {
					t.Fatalf("ParseFrame(%s) err = %v, want nil", tc.in, err)
				}
				if !bytes.Equal(got.IV, tc.want.IV) || got.Fingerprint != tc.want.Fingerprint || !bytes.Equal(got.Message, tc.want.Message) {
					t.Fatalf("ParseFrame(%s) = %+v, want %+v", tc.in, got, tc.want)
				}
				return
			}
			e, ok := AsError(err)
			if !ok || e.Code != tc.wantALE {
				t.Fatalf("ParseFrame(%s) err = %v, want ALE code %d", tc.in, err, tc.wantALE)
			}
		})
	}
}

func TestMarshalFrameRoundTrip(t *testing.T) {
	t.Parallel()
	f := Frame{IV: seq(16), Fingerprint: "fp-9", Message: []byte{0, 1, 0xff}}
	b := MarshalFrame(f)
	if want := `{"iv":"AAECAwQFBgcICQoLDA0ODw==","fingerprint":"fp-9","message":"AAH/"}`; string(b) != want {
		t.Fatalf("MarshalFrame = %s, want %s", b, want)
	}
	got, err := ParseFrame(b)
	if err != nil || !bytes.Equal(got.IV, f.IV) || got.Fingerprint != f.Fingerprint || !bytes.Equal(got.Message, f.Message) {
		t.Fatalf("ParseFrame(MarshalFrame(f)) = %+v, %v; want %+v", got, err, f)
	}
}

func TestErrorBodies(t *testing.T) {
	t.Parallel()
	for code, want := range map[int]string{
		1: `{"errorCode":1,"message":"Incorrect security headers"}`,
		2: `{"errorCode":2,"message":"Unable to decrypt payload"}`,
	} {
		if got := string(ErrorBody(code)); got != want {
			t.Errorf("ErrorBody(%d) = %s, want %s", code, got, want)
		}
		if !json.Valid(ErrorBody(code)) {
			t.Errorf("ErrorBody(%d) is not valid JSON", code)
		}
	}
}

// FuzzParseFrame holds ParseFrame to its rules for any input, and its fast
// path to the encoding/json reference: the same frame or the same error.
func FuzzParseFrame(f *testing.F) {
	f.Add([]byte(`{"iv":"AAECAwQFBgcICQoLDA0ODw==","fingerprint":"fp-1","message":"aGk="}`))
	f.Add([]byte(`{"iv":"","fingerprint":"","message":""}`))
	f.Add([]byte(`[]`))
	f.Fuzz(func(t *testing.T, data []byte) {
		fr, err := ParseFrame(data)
		checkSameAsJSON(t, data, fr, err)
		if err != nil {
			if e, ok := AsError(err); !ok || (e.Code != CodeHeaders && e.Code != CodeDecrypt) {
				t.Fatalf("ParseFrame error %v is not an ALE 1/2 *Error", err)
			}
			return
		}
		if len(fr.IV) == 0 || fr.Fingerprint == "" || len(fr.Message) == 0 {
			t.Fatalf("ParseFrame accepted a frame without iv, fingerprint or message: %q", data)
		}
		again, err := ParseFrame(MarshalFrame(fr))
		if err != nil || !bytes.Equal(again.IV, fr.IV) || again.Fingerprint != fr.Fingerprint || !bytes.Equal(again.Message, fr.Message) {
			t.Fatalf("round trip of %q: %+v, %v", data, again, err)
		}
	})
}

// FuzzParseFramePlain builds frames the way clients write them, with the
// member values put between the quotes unescaped, so that most inputs
// reach deep into the fast path (and out of it, by a quote, a backslash, a
// control or non-ASCII byte in a value). layout chooses, byte by byte, each
// member's name, value and the whitespace around it. It also holds
// MarshalFrame to encoding/json's output for the same three values.
func FuzzParseFramePlain(f *testing.F) {
	f.Add([]byte{0, 7, 14}, "AAECAwQFBgcICQoLDA0ODw==", "fp-1", "aGk=")       // a good frame
	f.Add([]byte{0, 0, 7, 14}, "AAECAwQFBgcICQoLDA0ODw==", "fp-1", "aGk=")    // iv twice
	f.Add([]byte{3, 5, 25, 50}, "AAECAwQFBgcICQoLDA0ODw==", "fp-1", "aGk=")   // IV, i\u0076, spaces
	f.Add([]byte{14, 7, 0}, "AAECAwQFBgcICQoLDA0ODw==", "f\\u0070", "aGk=\n") // escapes, a control byte
	f.Fuzz(func(t *testing.T, layout []byte, iv, fp, msg string) {
		data := buildFrame(layout, [3]string{iv, fp, msg})
		fr, err := ParseFrame(data)
		checkSameAsJSON(t, data, fr, err)

		mf := Frame{IV: []byte(iv), Fingerprint: fp, Message: []byte(msg)}
		if got, want := MarshalFrame(mf), jsonMarshalFrame(mf); !bytes.Equal(got, want) {
			t.Fatalf("MarshalFrame = %s, want %s", got, want)
		}
	})
}

// buildFrame writes a JSON-ish object from layout (see FuzzParseFramePlain):
// per byte b, the name (b%6), the value (b/6%3) and whitespace (b/18%7).
func buildFrame(layout []byte, values [3]string) []byte {
	names := []string{"iv", "fingerprint", "message", "IV", "extra", `i\u0076`}
	spaces := []string{"", " ", "\t", "\n\r ", "  \n", "\v", ","}
	var b bytes.Buffer
	b.WriteString("{")
	for k, c := range layout[:min(len(layout), 8)] {
		if k > 0 {
			b.WriteString(",")
		}
		sp := spaces[int(c)/18%len(spaces)]
		b.WriteString(sp + `"` + names[int(c)%len(names)] + `"` + sp + ":" + sp + `"` + values[int(c)/6%3] + `"` + sp)
	}
	b.WriteString("}")
	if len(layout) > 8 {
		b.Write(layout[8:]) // trailing bytes, most of them garbage
	}
	return b.Bytes()
}

// checkSameAsJSON fails t unless ParseFrame's answer for data (fr, err) is
// the encoding/json reference's: the same frame, or an error with the same
// code and reason.
func checkSameAsJSON(t *testing.T, data []byte, fr Frame, err error) {
	t.Helper()
	want, wantErr := parseFrameJSON(data)
	if (err == nil) != (wantErr == nil) {
		t.Fatalf("ParseFrame(%q) err = %v, reference err = %v", data, err, wantErr)
	}
	if err != nil {
		e, ok := AsError(err)
		we, wok := AsError(wantErr)
		if !ok || !wok || *e != *we {
			t.Fatalf("ParseFrame(%q) err = %#v, reference err = %#v", data, err, wantErr)
		}
		return
	}
	if !bytes.Equal(fr.IV, want.IV) || fr.Fingerprint != want.Fingerprint || !bytes.Equal(fr.Message, want.Message) {
		t.Fatalf("ParseFrame(%q) = %+v, reference = %+v", data, fr, want)
	}
}

func seq(n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(i)
	}
	return b
}

// TestParseFrameNamesUnknownMember: the reason (for logs and alectl) names
// the member a frame should not have, bounded, so a typo is found at once.
func TestParseFrameNamesUnknownMember(t *testing.T) {
	t.Parallel()
	iv16 := "AAECAwQFBgcICQoLDA0ODw=="
	for _, tc := range []struct {
		name, member, want string
	}{
		{"typo", "mesage", `frame has an unknown member "mesage" (a frame has only iv, fingerprint and message)`},
		{"long name clipped", strings.Repeat("x", 100), `frame has an unknown member "` + strings.Repeat("x", 64) + `..." (a frame has only iv, fingerprint and message)`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			in := `{"iv":"` + iv16 + `","fingerprint":"f","` + tc.member + `":"aGk="}`
			_, err := ParseFrame([]byte(in))
			e, ok := AsError(err)
			if !ok || e.Code != CodeDecrypt || e.Reason != tc.want {
				t.Fatalf("ParseFrame(%s) err = %v, want ALE 2 with reason %q", in, err, tc.want)
			}
		})
	}
}
