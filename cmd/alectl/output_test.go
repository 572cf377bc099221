package main

import (
	"bytes"
	"net/http"
	"strings"
	"testing"
)

func TestWritePlaintext(t *testing.T) {
	t.Parallel()
	notUTF8 := []byte{0x9c, 0x1b, '[', '2', 'J', 0xff}
	for _, tc := range []struct {
		name     string
		pt       []byte
		terminal bool
		binary   bool
		want     string
		wantErr  string
	}{
		{"pipe gets the bytes", []byte("hi"), false, false, "hi", ""},
		{"pipe gets any bytes", notUTF8, false, false, string(notUTF8), ""},
		{"terminal gets a newline", []byte("hi"), true, false, "hi\n", ""},
		{"terminal keeps one newline", []byte("hi\n"), true, false, "hi\n", ""},
		{"terminal empty", nil, true, false, "", ""},
		{"terminal refuses non-UTF-8", notUTF8, true, false, "", "is not UTF-8 text: not printing it to a terminal"},
		{"terminal --binary", notUTF8, true, true, string(notUTF8), ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			var out bytes.Buffer
			e := env{stdout: &out, terminal: tc.terminal}
			err := e.writePlaintext(tc.pt, tc.binary)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) || out.Len() != 0 {
					t.Fatalf("writePlaintext(%q) = %v, wrote %q; want an error with %q and nothing written", tc.pt, err, out.String(), tc.wantErr)
				}
				return
			}
			if err != nil || out.String() != tc.want {
				t.Fatalf("writePlaintext(%q) = %v, wrote %q; want %q", tc.pt, err, out.String(), tc.want)
			}
		})
	}
}

func TestALEErrorHint(t *testing.T) {
	t.Parallel()
	all := http.Header{"Sec-Iv": {"x"}, "Sec-Fingerprint": {"f"}, "Authorization": {"Bearer t"}}
	for _, tc := range []struct {
		name   string
		status int
		body   string
		sent   http.Header
		want   string
	}{
		{"no authorization", 400, `{"errorCode":1,"message":"Incorrect security headers"}`,
			http.Header{"Sec-Iv": {"x"}, "Sec-Fingerprint": {"f"}},
			`the gateway wants the ALE headers (errorCode 1) and alectl sent no authorization: give --authorization "Bearer TOKEN"`},
		{"no sec headers", 400, `{"errorCode":1,"message":"Incorrect security headers"}`,
			http.Header{"Authorization": {"Bearer t"}},
			"the gateway wants the ALE headers (errorCode 1) and alectl sent no sec-iv, sec-fingerprint"},
		{"all sent", 400, `{"errorCode":1}`, all,
			"the gateway refused the ALE headers (errorCode 1): alectl sent sec-iv, sec-fingerprint and authorization, so one is unusable there (its log says which)"},
		{"errorCode 2", 400, `{"errorCode":2}`, all, "the gateway could not decrypt the request (errorCode 2)"},
		{"not ALE", 400, `{"error":"x"}`, nil, ""},
		{"not 400", 502, `{"errorCode":1}`, nil, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			got := aleErrorHint(tc.status, []byte(tc.body), tc.sent)
			if (tc.want == "") != (got == "") || !strings.HasPrefix(got, tc.want) {
				t.Fatalf("aleErrorHint(%d, %s) = %q, want %q", tc.status, tc.body, got, tc.want)
			}
		})
	}
}
