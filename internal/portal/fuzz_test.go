package portal_test

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/alecrypt/alecrypt/internal/portal"
)

// bodyTransport answers every request with one fixed 200 body, so the fuzzer
// exercises page and record parsing without a network.
type bodyTransport []byte

func (b bodyTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	return &http.Response{
		StatusCode: http.StatusOK,
		Status:     "200 OK",
		Body:       io.NopCloser(bytes.NewReader(b)),
		Request:    r,
	}, nil
}

// FuzzFetchAll checks that no page crashes the client, that whatever it
// accepts is valid, and that its errors never carry the token.
func FuzzFetchAll(f *testing.F) {
	f.Add(`{"keys":[]}`)
	f.Add(`{"keys":[{"fingerprint":"fp","secret":"s"}],"next_page_token":""}`)
	f.Add(`{"keys":[{"fingerprint":"fp","aliases":["a"],"algorithm":"aes-256-ctr","secret":"s","kdf":{"name":"pbkdf2-sha256","salt":"x","iterations":1000},"state":"active","created_at":"2025-01-01T00:00:00Z","source":"portal"}]}`)
	f.Add(`{"keys":[1,"` + token + `",null,{}],"next_page_token":"` + token + `"}`)
	f.Add(`{"keys":null}`)
	f.Fuzz(func(t *testing.T, body string) {
		u, _ := url.Parse("https://portal.example")
		c := portal.NewClient(u, &http.Client{Transport: bodyTransport(body)}, token)
		res, err := c.FetchAll(context.Background())
		if err != nil {
			if strings.Contains(err.Error(), token) {
				t.Fatalf("error leaks the token: %q", err)
			}
			return
		}
		seen := map[string]bool{}
		for _, r := range res.Records {
			if err := r.Validate(); err != nil {
				t.Fatalf("accepted an invalid record: %v", err)
			}
			if seen[r.Fingerprint] {
				t.Fatalf("fingerprint %q returned twice", r.Fingerprint)
			}
			seen[r.Fingerprint] = true
		}
		for _, p := range res.Problems {
			if strings.Contains(p.Error(), token) {
				t.Fatalf("problem leaks the token: %q", p)
			}
			if seen[p.Fingerprint] {
				t.Fatalf("fingerprint %q is both a record and a problem", p.Fingerprint)
			}
		}
	})
}
