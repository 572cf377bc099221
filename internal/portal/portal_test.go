package portal_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/alecrypt/alecrypt/internal/key"
	"github.com/alecrypt/alecrypt/internal/key/keytest"
	"github.com/alecrypt/alecrypt/internal/portal"
	"github.com/alecrypt/alecrypt/service/secret"
	"github.com/alecrypt/alecrypt/test/portaltest"
)

const (
	token = "tok-3b1f9c2e-very-secret-bearer"
	// canary is part of every test secret; no error may contain it.
	canary = keytest.Canary
)

func record(fp string) key.Record {
	return keytest.Record(fp, keytest.Aliases("store-1"), keytest.CounterBits(key.CounterBits64),
		keytest.CreatedAt(time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)), keytest.Source(key.SourcePortal))
}

func marshal(t *testing.T, recs ...key.Record) []json.RawMessage {
	t.Helper()
	out := make([]json.RawMessage, 0, len(recs))
	for _, r := range recs {
		b, err := key.MarshalRecord(r)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, b)
	}
	return out
}

func pageJSON(t *testing.T, keys []json.RawMessage, next string) string {
	t.Helper()
	b, err := json.Marshal(map[string]any{"keys": keys, "next_page_token": next, "unknown_field": 42})
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// server is a TLS Portal whose answer per page token is set by the test. It
// records the requests it saw.
type server struct {
	*httptest.Server
	mu     sync.Mutex
	tokens []string // page_token of each request, in order
}

func newServer(t *testing.T, answer func(w http.ResponseWriter, pageToken string)) *server {
	t.Helper()
	s := &server{}
	s.Server = httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.mu.Lock()
		s.tokens = append(s.tokens, r.URL.Query().Get("page_token"))
		s.mu.Unlock()
		if r.Method != http.MethodGet || !strings.HasSuffix(r.URL.Path, "/v1/secret-keys") {
			http.NotFound(w, r)
			return
		}
		if r.Header.Get("Authorization") != "Bearer "+token {
			http.Error(w, `{"error":"unauthorized"}`, http.StatusUnauthorized)
			return
		}
		answer(w, r.URL.Query().Get("page_token"))
	}))
	t.Cleanup(s.Close)
	return s
}

// pages serves bodies[0] for the first request, bodies[i] for page_token
// "p<i>".
func pages(bodies ...string) func(http.ResponseWriter, string) {
	return func(w http.ResponseWriter, tok string) {
		i := 0
		if tok != "" {
			if _, err := fmt.Sscanf(tok, "p%d", &i); err != nil || i < 1 || i >= len(bodies) {
				http.Error(w, "bad page token", http.StatusBadRequest)
				return
			}
		}
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(bodies[i]))
	}
}

func (s *server) client(t *testing.T, opts ...portal.Option) *portal.Client {
	t.Helper()
	return s.clientWithToken(t, token, opts...)
}

func (s *server) clientWithToken(t *testing.T, tok string, opts ...portal.Option) *portal.Client {
	t.Helper()
	u, err := url.Parse(s.URL)
	if err != nil {
		t.Fatal(err)
	}
	return portal.NewClient(u, s.Client(), tok, opts...)
}

// checkClean fails if err's message leaks the token or a secret.
func checkClean(t *testing.T, err error) {
	t.Helper()
	if err == nil {
		return
	}
	for e := err; e != nil; e = errors.Unwrap(e) {
		msg := e.Error()
		if strings.Contains(msg, token) || strings.Contains(msg, canary) {
			t.Errorf("error leaks the token or a secret: %q", msg)
		}
	}
}

func fingerprints(recs []key.Record) []string {
	fps := make([]string, len(recs))
	for i, r := range recs {
		fps[i] = r.Fingerprint
	}
	return fps
}

func TestFetchAllPages(t *testing.T) {
	t.Parallel()
	srv := newServer(t, pages(
		pageJSON(t, marshal(t, record("fp-a"), record("fp-b")), "p1"),
		pageJSON(t, []json.RawMessage{}, "p2"), // an empty page in the middle is fine
		pageJSON(t, marshal(t, record("fp-c")), ""),
	))
	res, err := srv.client(t).FetchAll(context.Background())
	if err != nil {
		t.Fatalf("FetchAll() err = %v, want nil", err)
	}
	if got, want := fingerprints(res.Records), []string{"fp-a", "fp-b", "fp-c"}; !slices.Equal(got, want) {
		t.Errorf("FetchAll() fingerprints = %v, want %v", got, want)
	}
	if len(res.Problems) != 0 || res.Pages != 3 {
		t.Errorf("FetchAll() problems = %v, pages = %d; want none, 3", res.Problems, res.Pages)
	}
	srv.mu.Lock()
	sent := srv.tokens
	srv.mu.Unlock()
	if want := []string{"", "p1", "p2"}; !slices.Equal(sent, want) {
		t.Errorf("page tokens sent = %q, want %q", sent, want)
	}
	if !res.Records[0].Secret.Equal(secret.FromString(canary + "-fp-a")) {
		t.Error("record fp-a: secret not decoded")
	}
}

func TestFetchAllEmptyListing(t *testing.T) {
	t.Parallel()
	srv := newServer(t, pages(`{"keys":[]}`))
	res, err := srv.client(t).FetchAll(context.Background())
	if err != nil || len(res.Records) != 0 || res.Pages != 1 {
		t.Fatalf("FetchAll() = %d records, %d pages, err %v; want 0, 1, nil", len(res.Records), res.Pages, err)
	}
}

func TestFetchAllBasePath(t *testing.T) {
	t.Parallel()
	paths := make(chan string, 1)
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		paths <- r.URL.Path
		_, _ = w.Write([]byte(`{"keys":[]}`))
	}))
	t.Cleanup(srv.Close)
	u, _ := url.Parse(srv.URL + "/portal/api/")
	if _, err := portal.NewClient(u, srv.Client(), token).FetchAll(context.Background()); err != nil {
		t.Fatal(err)
	}
	if path := <-paths; path != "/portal/api/v1/secret-keys" {
		t.Errorf("request path = %q, want /portal/api/v1/secret-keys", path)
	}
}

// TestFetchAllFailures covers every way a listing fails as a whole: each
// must return an error, no records, and leak neither the token nor a secret.
func TestFetchAllFailures(t *testing.T) {
	t.Parallel()
	good := pageJSON(t, marshal(t, record("fp-a")), "p1")
	echo := func(status int) func(http.ResponseWriter, string) {
		return func(w http.ResponseWriter, _ string) {
			// A misbehaving server echoes the token in headers and body.
			w.Header().Set("X-Echo", token)
			http.Error(w, `{"error":"nope","token":"`+token+`"}`, status)
		}
	}
	for _, tc := range []struct {
		name   string
		answer func(http.ResponseWriter, string)
		token  string
		opts   []portal.Option
		want   error
	}{
		{"wrong token", pages(good), "wrong-token", nil, portal.ErrUnauthorized},
		{"401 echoing the token", echo(http.StatusUnauthorized), token, nil, portal.ErrUnauthorized},
		{"403", echo(http.StatusForbidden), token, nil, portal.ErrUnauthorized},
		{"500 echoing the token", echo(http.StatusInternalServerError), token, nil, portal.ErrStatus},
		{"500 on the second page", func(w http.ResponseWriter, tok string) {
			if tok == "" {
				_, _ = w.Write([]byte(good))
				return
			}
			http.Error(w, "boom", http.StatusInternalServerError)
		}, token, nil, portal.ErrStatus},
		{"bad JSON holding a secret", pages(`{"keys":[{"secret":"` + canary + `"`), token, nil, portal.ErrBadPage},
		{"bad JSON on the second page", pages(good, `<html>oops</html>`), token, nil, portal.ErrBadPage},
		{"trailing data", pages(`{"keys":[]} {"keys":[]}`), token, nil, portal.ErrBadPage},
		{"keys missing", pages(`{"items":[]}`), token, nil, portal.ErrBadPage},
		{"keys null", pages(`{"keys":null}`), token, nil, portal.ErrBadPage},
		{"keys not an array", pages(`{"keys":{"secret":"` + canary + `"}}`), token, nil, portal.ErrBadPage},
		{"page token not a string", pages(`{"keys":[],"next_page_token":7}`), token, nil, portal.ErrBadPage},
		{"page too large", pages(good), token, []portal.Option{portal.WithMaxPageBytes(64)}, portal.ErrBadPage},
		{"repeated page token", pages(
			pageJSON(t, marshal(t, record("fp-a")), "p1"),
			pageJSON(t, marshal(t, record("fp-b")), "p2"),
			pageJSON(t, marshal(t, record("fp-c")), "p1"),
		), token, nil, portal.ErrPaging},
		{"page token repeating itself", pages(good, pageJSON(t, []json.RawMessage{}, "p1")), token, nil, portal.ErrPaging},
		{"too many pages", func(w http.ResponseWriter, tok string) {
			_, _ = w.Write([]byte(pageJSON(t, []json.RawMessage{}, tok+"x")))
		}, token, []portal.Option{portal.WithMaxPages(5)}, portal.ErrPaging},
		{"token with a newline", pages(good), token + "\n", nil, portal.ErrInsecure},
		{"empty token", pages(good), "", nil, portal.ErrInsecure},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			srv := newServer(t, tc.answer)
			res, err := srv.clientWithToken(t, tc.token, tc.opts...).FetchAll(context.Background())
			if !errors.Is(err, tc.want) {
				t.Fatalf("FetchAll() err = %v, want %v", err, tc.want)
			}
			if len(res.Records) != 0 || len(res.Problems) != 0 {
				t.Errorf("FetchAll() returned %d records and %d problems with an error; want none", len(res.Records), len(res.Problems))
			}
			if !strings.HasPrefix(err.Error(), "portal: ") {
				t.Errorf("FetchAll() err = %q, want a portal: prefix", err)
			}
			checkClean(t, err)
		})
	}
}

func TestFetchAllShowsTheServersReason(t *testing.T) {
	t.Parallel()
	srv := newServer(t, func(w http.ResponseWriter, _ string) {
		http.Error(w, `{"error":"maintenance","token":"`+token+`"}`, http.StatusServiceUnavailable)
	})
	_, err := srv.client(t).FetchAll(context.Background())
	if err == nil || !strings.Contains(err.Error(), "503") || !strings.Contains(err.Error(), "maintenance") || !strings.Contains(err.Error(), "[REDACTED]") {
		t.Errorf("FetchAll() err = %v, want the status, the server's reason and the token redacted", err)
	}
}

func TestFetchAllMalformedRecords(t *testing.T) {
	t.Parallel()
	bad := func(fp string) json.RawMessage {
		r := record(fp)
		b := marshal(t, r)[0]
		var m map[string]any
		if err := json.Unmarshal(b, &m); err != nil {
			t.Fatal(err)
		}
		m["algorithm"] = "rot13" // invalid, yet the fingerprint is readable
		out, _ := json.Marshal(m)
		return out
	}
	page1 := append(marshal(t, record("fp-a")),
		bad("fp-bad"),
		json.RawMessage(`{"fingerprint":"fp-typo","secret":"`+canary+`","surprise":true}`),
		json.RawMessage(`{"fingerprint":42,"secret":"`+canary+`"}`),
		json.RawMessage(`"`+canary+`"`),
		json.RawMessage(`{"fingerprint":"has space","secret":"`+canary+`"}`),
	)
	page2 := append(marshal(t, record("fp-b"), record("fp-dup"), record("fp-dup")),
		json.RawMessage(`{"fingerprint":"fp-alias-echo","aliases":["`+token+`"]}`),
	)
	srv := newServer(t, pages(pageJSON(t, page1, "p1"), pageJSON(t, page2, "")))
	res, err := srv.client(t).FetchAll(context.Background())
	if err != nil {
		t.Fatalf("FetchAll() err = %v, want nil: a malformed record is not a failed listing", err)
	}
	if got, want := fingerprints(res.Records), []string{"fp-a", "fp-b"}; !slices.Equal(got, want) {
		t.Errorf("FetchAll() records = %v, want %v", got, want)
	}
	type problem struct {
		Index       int
		Fingerprint string
	}
	var got []problem
	for _, p := range res.Problems {
		got = append(got, problem{p.Index, p.Fingerprint})
		checkClean(t, p.Err)
		checkClean(t, p)
		if !errors.Is(p.Err, key.ErrInvalidRecord) && !strings.Contains(p.Err.Error(), "more than once") {
			t.Errorf("problem %v: err = %v, want ErrInvalidRecord or a duplicate", p, p.Err)
		}
	}
	want := []problem{{1, "fp-bad"}, {2, "fp-typo"}, {3, ""}, {4, ""}, {5, ""}, {8, "fp-dup"}, {9, "fp-alias-echo"}}
	if !slices.Equal(got, want) {
		t.Errorf("FetchAll() problems = %v, want %v", got, want)
	}
	if got, want := res.FailedFingerprints(), []string{"fp-bad", "fp-typo", "fp-dup", "fp-alias-echo"}; !slices.Equal(got, want) {
		t.Errorf("FailedFingerprints() = %v, want %v", got, want)
	}
}

func TestFetchAllRefusesInsecureURLs(t *testing.T) {
	t.Parallel()
	plain := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = w.Write([]byte(`{"keys":[]}`))
	}))
	t.Cleanup(plain.Close)
	loop, _ := url.Parse(plain.URL) // http://127.0.0.1:port
	for _, tc := range []struct {
		name    string
		raw     string
		opts    []portal.Option
		wantErr bool
	}{
		{"http remote", "http://portal.example.com", nil, true},
		{"http remote with AllowInsecure", "http://portal.example.com", []portal.Option{portal.AllowInsecure()}, true},
		{"http loopback without AllowInsecure", loop.String(), nil, true},
		{"http loopback with AllowInsecure", loop.String(), []portal.Option{portal.AllowInsecure()}, false},
		{"credentials in the URL", "https://user:pw@portal.example.com", nil, true},
		{"no host", "https:///v1", nil, true},
		{"ftp", "ftp://portal.example.com", nil, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			u, err := url.Parse(tc.raw)
			if err != nil {
				t.Fatal(err)
			}
			_, err = portal.NewClient(u, plain.Client(), token, tc.opts...).FetchAll(context.Background())
			if tc.wantErr && !errors.Is(err, portal.ErrInsecure) {
				t.Errorf("FetchAll(%s) err = %v, want ErrInsecure", tc.raw, err)
			}
			if !tc.wantErr && err != nil {
				t.Errorf("FetchAll(%s) err = %v, want nil", tc.raw, err)
			}
			if err != nil && strings.Contains(err.Error(), "pw") {
				t.Errorf("FetchAll(%s) err = %v leaks URL credentials", tc.raw, err)
			}
		})
	}
}

func TestFetchAllRefusesRedirects(t *testing.T) {
	t.Parallel()
	var leaked atomic.Bool
	target := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		leaked.Store(r.Header.Get("Authorization") != "")
		_, _ = w.Write([]byte(`{"keys":[]}`))
	}))
	t.Cleanup(target.Close)
	srv := newServer(t, func(w http.ResponseWriter, _ string) {
		w.Header().Set("Location", target.URL+"/v1/secret-keys")
		w.WriteHeader(http.StatusFound)
	})
	_, err := srv.client(t).FetchAll(context.Background())
	if err == nil {
		t.Fatal("FetchAll() err = nil, want a refused redirect")
	}
	if leaked.Load() {
		t.Error("the token was sent to the redirect target")
	}
	checkClean(t, err)
}

func TestFetchAllHonoursContext(t *testing.T) {
	t.Parallel()
	srv := newServer(t, pages(`{"keys":[]}`))
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err := srv.client(t).FetchAll(ctx)
	if !errors.Is(err, context.Canceled) {
		t.Errorf("FetchAll(canceled) err = %v, want context.Canceled", err)
	}
	checkClean(t, err)
}

func TestCheckToken(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		tok string
		ok  bool
	}{
		{"abc.DEF-123_~+/=", true},
		{"", false},
		{"has space", false},
		{"tab\there", false},
		{"crlf\r\nX-Evil: 1", false},
		{"naïve", false},
	} {
		err := portal.CheckToken(tc.tok)
		if (err == nil) != tc.ok {
			t.Errorf("CheckToken(%q) err = %v, want ok=%v", tc.tok, err, tc.ok)
		}
		if err != nil && tc.tok != "" && strings.Contains(err.Error(), tc.tok) {
			t.Errorf("CheckToken(%q) err = %v quotes the token", tc.tok, err)
		}
	}
}

// TestFetchAllRefusesPathFingerprints: over HTTPS from the Portal stand-in,
// a record whose fingerprint could become another key's Vault path, a path
// outside the prefix or a sub-folder is refused as a Problem whose
// fingerprint is not salvaged (it is no key's name), and never becomes a
// record; the valid records around it still count.
func TestFetchAllRefusesPathFingerprints(t *testing.T) {
	t.Parallel()
	p := portaltest.Start(t, token)
	p.SetKeys(record("fp-ok"))
	attacks := []string{"z/../victim", "../../other-app/x", "x/y"}
	for _, fp := range attacks {
		b := marshal(t, record("placeholder"))[0]
		p.AddRaw(strings.Replace(string(b), `"placeholder"`, strconv.Quote(fp), 1))
	}
	pem, err := os.ReadFile(p.CAFile)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(pem)
	hc := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}}}
	base, err := url.Parse(p.URL)
	if err != nil {
		t.Fatal(err)
	}
	res, err := portal.NewClient(base, hc, token).FetchAll(t.Context())
	if err != nil {
		t.Fatalf("FetchAll err = %v, want nil", err)
	}
	if got := fingerprints(res.Records); !slices.Equal(got, []string{"fp-ok"}) {
		t.Errorf("FetchAll records = %q, want only fp-ok", got)
	}
	if len(res.Problems) != len(attacks) {
		t.Fatalf("FetchAll problems = %v, want one per attack fingerprint", res.Problems)
	}
	for _, pr := range res.Problems {
		if pr.Fingerprint != "" || !errors.Is(pr.Err, key.ErrInvalidFingerprint) {
			t.Errorf("problem %v: fingerprint %q, err %v; want no fingerprint and ErrInvalidFingerprint", pr, pr.Fingerprint, pr.Err)
		}
		checkClean(t, pr)
	}
	if fps := res.FailedFingerprints(); len(fps) != 0 {
		t.Errorf("FailedFingerprints = %q, want none: an invalid fingerprint names no stored key", fps)
	}
}
