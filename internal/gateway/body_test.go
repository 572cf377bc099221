package gateway_test

import (
	"bytes"
	"io"
	"net/http"
	"strings"
	"testing"
)

// TestHTTPContentType: the Content-Type picks the plaintext check (JSON for
// application/json), the only thing that stops a wrong-key body under
// aes-256-ctr. Two of them, or a list, is errorCode 1 like any other
// duplicated ALE value: text/plain beside application/json must not let a
// wrong-key body through unchecked.
func TestHTTPContentType(t *testing.T) {
	t.Parallel()
	e := newEnv(t, defaultOpts(), 0)
	const order = `{"order":1}`
	right := e.seal(t, "k-ctr", order)
	// Sealed under k-other, sent as k-ctr: decrypts to garbage.
	wrong := e.seal(t, "k-other", order)
	wrong.Fingerprint = "k-ctr"
	for _, tc := range []struct {
		name       string
		types      []string
		wrongKey   bool
		wantStatus int
		wantBody   string // "" = forwarded
	}{
		{name: "json, right key", types: []string{"application/json"}, wantStatus: 200},
		{name: "json, wrong key", types: []string{"application/json"}, wrongKey: true, wantStatus: 400, wantBody: ale2},
		{name: "text/plain and json, wrong key", types: []string{"text/plain", "application/json"}, wrongKey: true, wantStatus: 400, wantBody: ale1},
		{name: "json and text/plain, wrong key", types: []string{"application/json", "text/plain"}, wrongKey: true, wantStatus: 400, wantBody: ale1},
		{name: "json twice, right key", types: []string{"application/json", "application/json"}, wantStatus: 400, wantBody: ale1},
		{name: "a list in one header, wrong key", types: []string{"text/plain, application/json"}, wrongKey: true, wantStatus: 400, wantBody: ale1},
		{name: "text/plain alone, right key", types: []string{"text/plain"}, wantStatus: 200},
	} {
		t.Run(tc.name, func(t *testing.T) {
			env := right
			if tc.wrongKey {
				env = wrong
			}
			h := aleHeader(env)
			h.Del("Content-Type")
			for _, ct := range tc.types {
				h.Add("Content-Type", ct)
			}
			before := len(e.kitchen.Requests())
			res, body := e.post(t, "/orders", h, b64(env.Message))
			forwarded := len(e.kitchen.Requests()) - before
			if res.StatusCode != tc.wantStatus || (tc.wantBody != "" && body != tc.wantBody) {
				t.Fatalf("Content-Type %q: got %d %s, want %d %s", tc.types, res.StatusCode, body, tc.wantStatus, tc.wantBody)
			}
			if want := map[bool]int{true: 0, false: 1}[tc.wantBody != ""]; forwarded != want {
				t.Fatalf("Content-Type %q: kitchen saw %d requests, want %d", tc.types, forwarded, want)
			}
		})
	}
}

// TestChunkedUploadForwardedWithLength: the kitchen gets the plaintext with
// its Content-Length and no Transfer-Encoding, however the client framed the
// sealed body (DESIGN §6: content-length fixed).
func TestChunkedUploadForwardedWithLength(t *testing.T) {
	t.Parallel()
	e := newEnv(t, defaultOpts(), 0)
	const order = `{"order":"chunked","items":[1,2,3]}`
	env := e.seal(t, "k-ctr", order)
	for _, tc := range []struct {
		name    string
		chunked bool
	}{
		{name: "chunked", chunked: true},
		{name: "content-length"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			sealed := b64(env.Message)
			var body io.Reader = strings.NewReader(sealed)
			if tc.chunked {
				// A reader of unknown length: the client sends it chunked.
				body = io.MultiReader(strings.NewReader(sealed[:4]), strings.NewReader(sealed[4:]))
			}
			req, _ := http.NewRequest(http.MethodPost, e.url+"/orders", body)
			req.Header = aleHeader(env)
			if tc.chunked && req.ContentLength != 0 {
				t.Fatalf("request ContentLength = %d, want unknown (chunked)", req.ContentLength)
			}
			before := len(e.kitchen.Requests())
			res, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			_, _ = io.Copy(io.Discard, res.Body)
			res.Body.Close()
			if res.StatusCode != 200 {
				t.Fatalf("status %d, want 200", res.StatusCode)
			}
			reqs := e.kitchen.Requests()
			if len(reqs) != before+1 {
				t.Fatalf("kitchen saw %d requests, want 1", len(reqs)-before)
			}
			got := reqs[len(reqs)-1]
			if got.ContentLength != int64(len(order)) || !bytes.Equal(got.Body, []byte(order)) {
				t.Fatalf("kitchen got Content-Length %d, body %q; want %d, %q", got.ContentLength, got.Body, len(order), order)
			}
			if te := got.Header.Get("Transfer-Encoding"); te != "" {
				t.Fatalf("kitchen got Transfer-Encoding %q", te)
			}
		})
	}
}
