package wire

import (
	"net/http"
	"net/url"
	"testing"
)

func TestReadParams(t *testing.T) {
	t.Parallel()
	const iv = "AAECAwQFBgcICQoLDA0ODw=="
	const ivPlus = "+/ECAwQFBgcICQoLDA0ODw=="
	hdr := func(kv ...string) http.Header {
		h := http.Header{}
		for i := 0; i < len(kv); i += 2 {
			h.Add(kv[i], kv[i+1])
		}
		return h
	}
	tests := []struct {
		name      string
		header    http.Header
		rawQuery  string
		want      Params
		wantALE   int
		wantCheck int // ALE code of Check, 0 = passes
	}{
		{"headers", hdr("Authorization", "Bearer a", "Sec-Iv", iv, "Sec-Fingerprint", "fp"), "", Params{Authorization: "Bearer a", IV: iv, Fingerprint: "fp"}, 0, 0},
		{"query", nil, "sec-iv=" + url.QueryEscape(iv) + "&sec-fingerprint=fp&authorization=Bearer%20a", Params{Authorization: "Bearer a", IV: iv, Fingerprint: "fp", AuthorizationFromQuery: true}, 0, 0},
		{"query with a raw +", nil, "sec-iv=" + ivPlus + "&sec-fingerprint=fp&authorization=x", Params{Authorization: "x", IV: ivPlus, Fingerprint: "fp", AuthorizationFromQuery: true}, 0, 0},
		{"header and query agree", hdr("Sec-Iv", iv, "Authorization", "x"), "sec-iv=" + url.QueryEscape(iv) + "&sec-fingerprint=fp", Params{Authorization: "x", IV: iv, Fingerprint: "fp"}, 0, 0},
		{"nothing", nil, "", Params{}, 0, CodeHeaders},
		{"two sec-iv headers", hdr("Sec-Iv", iv, "sec-iv", iv, "Sec-Fingerprint", "fp", "Authorization", "x"), "", Params{}, CodeHeaders, 0},
		{"two sec-fingerprint headers", hdr("Sec-Fingerprint", "fp", "Sec-Fingerprint", "fp2", "Sec-Iv", iv, "Authorization", "x"), "", Params{}, CodeHeaders, 0},
		{"sec-fingerprint list", hdr("Sec-Fingerprint", "fp, fp2", "Sec-Iv", iv, "Authorization", "x"), "", Params{}, CodeHeaders, 0},
		{"two authorization headers", hdr("Authorization", "x", "Authorization", "y", "Sec-Iv", iv, "Sec-Fingerprint", "fp"), "", Params{}, CodeHeaders, 0},
		{"two sec-iv parameters", nil, "sec-iv=" + url.QueryEscape(iv) + "&sec-iv=" + url.QueryEscape(iv) + "&sec-fingerprint=fp&authorization=x", Params{}, CodeHeaders, 0},
		{"header and query differ: iv", hdr("Sec-Iv", iv, "Authorization", "x", "Sec-Fingerprint", "fp"), "sec-iv=" + url.QueryEscape(ivPlus), Params{}, CodeHeaders, 0},
		{"header and query differ: fingerprint", hdr("Sec-Iv", iv, "Authorization", "x", "Sec-Fingerprint", "fp"), "sec-fingerprint=other", Params{}, CodeHeaders, 0},
		{"header and query differ: authorization", hdr("Sec-Iv", iv, "Authorization", "x", "Sec-Fingerprint", "fp"), "authorization=y", Params{}, CodeHeaders, 0},
		{"blank authorization", hdr("Authorization", " ", "Sec-Iv", iv, "Sec-Fingerprint", "fp"), "", Params{Authorization: " ", IV: iv, Fingerprint: "fp"}, 0, CodeHeaders},
		{"iv not base64", hdr("Authorization", "x", "Sec-Iv", "%%", "Sec-Fingerprint", "fp"), "", Params{Authorization: "x", IV: "%%", Fingerprint: "fp"}, 0, CodeHeaders},
		{"fingerprint with a space", hdr("Authorization", "x", "Sec-Iv", iv, "Sec-Fingerprint", "a b"), "", Params{Authorization: "x", IV: iv, Fingerprint: "a b"}, 0, CodeHeaders},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			q, _ := url.ParseQuery(tc.rawQuery)
			h := tc.header
			if h == nil {
				h = http.Header{}
			}
			got, err := ReadParams(h, q)
			if tc.wantALE != 0 {
				if e, ok := AsError(err); !ok || e.Code != tc.wantALE {
					t.Fatalf("ReadParams err = %v, want ALE %d", err, tc.wantALE)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Fatalf("ReadParams = %+v, %v; want %+v", got, err, tc.want)
			}
			_, err = got.Check()
			if tc.wantCheck == 0 && err != nil {
				t.Fatalf("Check err = %v, want nil", err)
			}
			if e, ok := AsError(err); tc.wantCheck != 0 && (!ok || e.Code != tc.wantCheck) {
				t.Fatalf("Check err = %v, want ALE %d", err, tc.wantCheck)
			}
		})
	}
}

// TestContentType: the Content-Type that picks the plaintext check is one
// value; two, or a list, is errorCode 1.
func TestContentType(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name    string
		values  []string
		want    string
		wantALE int
	}{
		{name: "none"},
		{name: "json", values: []string{"application/json"}, want: "application/json"},
		{name: "with a charset", values: []string{"application/json; charset=utf-8"}, want: "application/json; charset=utf-8"},
		{name: "a comma in a quoted parameter", values: []string{`multipart/form-data; boundary="a,b"`}, want: `multipart/form-data; boundary="a,b"`},
		{name: "not a media type, no comma", values: []string{"json"}, want: "json"},
		{name: "two headers", values: []string{"text/plain", "application/json"}, wantALE: CodeHeaders},
		{name: "the same header twice", values: []string{"application/json", "application/json"}, wantALE: CodeHeaders},
		{name: "a list", values: []string{"text/plain, application/json"}, wantALE: CodeHeaders},
		{name: "a list without a space", values: []string{"application/json,text/plain"}, wantALE: CodeHeaders},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			h := http.Header{}
			for _, v := range tc.values {
				h.Add("Content-Type", v)
			}
			got, err := ContentType(h)
			if tc.wantALE != 0 {
				if e, ok := AsError(err); !ok || e.Code != tc.wantALE {
					t.Fatalf("ContentType(%q) = %q, %v; want ALE %d", tc.values, got, err, tc.wantALE)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Fatalf("ContentType(%q) = %q, %v; want %q", tc.values, got, err, tc.want)
			}
		})
	}
}

func TestStripQuery(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ in, want string }{
		{"", ""},
		{"store=1&rush=true", "store=1&rush=true"},
		{"sec-iv=a%2B&store=1&sec-fingerprint=fp&authorization=Bearer%20x&z=%41", "store=1&z=%41"},
		{"sec%2Div=a&Sec-Fingerprint=f&AUTHORIZATION=x&keep", "keep"},
		{"sec-iv=a", ""},
	} {
		if got := StripQuery(tc.in); got != tc.want {
			t.Errorf("StripQuery(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

func TestSealed(t *testing.T) {
	t.Parallel()
	h := http.Header{}
	SetHeaders(h, seq(16), "fp-1")
	f, ok, err := Sealed(h, append(SealPayload([]byte("hi")), '\n'))
	if !ok || err != nil || string(f.Message) != "hi" || f.Fingerprint != "fp-1" || len(f.IV) != 16 {
		t.Fatalf("Sealed = %+v, %v, %v", f, ok, err)
	}
	if _, ok, _ := Sealed(http.Header{}, []byte("plain")); ok {
		t.Fatal("a response without sec-iv counted as sealed")
	}
}
