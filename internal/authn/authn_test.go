package authn

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
)

// tokens maps one token to an identity.
type tokens map[string]string

func (t tokens) IdentityForToken(tok string) (string, bool) { id, ok := t[tok]; return id, ok }

func verified(c *x509.Certificate) *tls.ConnectionState {
	return &tls.ConnectionState{VerifiedChains: [][]*x509.Certificate{{c}}}
}

func TestAuthenticate(t *testing.T) {
	t.Parallel()
	spiffe, _ := url.Parse("spiffe://alecrypt/pos/store-1")
	ts := tokens{"tok-1": "pos-store-2"}
	for _, tc := range []struct {
		name    string
		state   *tls.ConnectionState
		auth    string
		tokens  TokenVerifier
		want    Caller
		wantOK  bool
		wantErr error // nil: no error; errAny: some error
	}{
		{name: "nothing", tokens: ts},
		{name: "URI SAN", state: verified(&x509.Certificate{URIs: []*url.URL{spiffe}, DNSNames: []string{"pos.example"}}),
			want: Caller{Identity: "spiffe://alecrypt/pos/store-1", Method: MethodMTLS}, wantOK: true},
		{name: "DNS SAN", state: verified(&x509.Certificate{DNSNames: []string{"pos.example", "b"}}),
			want: Caller{Identity: "pos.example", Method: MethodMTLS}, wantOK: true},
		{name: "certificate wins over a token", state: verified(&x509.Certificate{DNSNames: []string{"pos.example"}}), auth: "Bearer tok-1", tokens: ts,
			want: Caller{Identity: "pos.example", Method: MethodMTLS}, wantOK: true},
		{name: "certificate without SAN", state: verified(&x509.Certificate{}), wantErr: errAny},
		{name: "unverified certificate is no credential", state: &tls.ConnectionState{PeerCertificates: []*x509.Certificate{{DNSNames: []string{"x"}}}}},
		{name: "token", auth: "Bearer tok-1", tokens: ts, want: Caller{Identity: "pos-store-2", Method: MethodToken}, wantOK: true},
		{name: "token scheme in any case, spaces trimmed", auth: "bearer  tok-1 ", tokens: ts, want: Caller{Identity: "pos-store-2", Method: MethodToken}, wantOK: true},
		{name: "unknown token", auth: "Bearer tok-2", tokens: ts, wantErr: ErrUnauthenticated},
		{name: "token without a verifier", auth: "Bearer tok-1", wantErr: ErrUnauthenticated},
		{name: "basic auth", auth: "Basic dXNlcjpwdw==", tokens: ts, wantErr: errAny},
		{name: "empty bearer", auth: "Bearer ", tokens: ts, wantErr: errAny},
		{name: "no scheme", auth: "tok-1", tokens: ts, wantErr: errAny},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			got, ok, err := authenticate(tc.state, tc.auth, tc.tokens)
			switch {
			case tc.wantErr == nil && err != nil,
				tc.wantErr == errAny && err == nil,
				tc.wantErr != nil && tc.wantErr != errAny && !errors.Is(err, tc.wantErr):
				t.Fatalf("authenticate() err = %v, want %v", err, tc.wantErr)
			}
			if got != tc.want || ok != tc.wantOK {
				t.Errorf("authenticate() = %+v, %v; want %+v, %v", got, ok, tc.want, tc.wantOK)
			}
			if err != nil && strings.Contains(err.Error(), "tok-") {
				t.Errorf("authenticate() err = %v shows the token", err)
			}
		})
	}
}

// errAny stands for any non-nil error in the table above.
var errAny = errors.New("any error")

// TestMiddleware: the middleware refuses nothing; it records the caller or
// the reason in the request's context for the next handler.
func TestMiddleware(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name         string
		auth         string
		wantIdentity string
		wantErr      bool
	}{
		{name: "anonymous"},
		{name: "token", auth: "Bearer tok-1", wantIdentity: "pos-store-2"},
		{name: "bad token", auth: "Bearer nope", wantErr: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			var (
				caller Caller
				found  bool
				err    error
				called bool
			)
			h := Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				called = true
				caller, found = FromContext(r.Context())
				err = ErrorFromContext(r.Context())
			}), tokens{"tok-1": "pos-store-2"})
			req := httptest.NewRequest(http.MethodPost, "/ale.v1.CryptoService/Encrypt", nil)
			if tc.auth != "" {
				req.Header.Set("Authorization", tc.auth)
			}
			h.ServeHTTP(httptest.NewRecorder(), req)
			if !called {
				t.Fatal("Middleware did not call the next handler")
			}
			if caller.Identity != tc.wantIdentity || found != (tc.wantIdentity != "") {
				t.Errorf("FromContext() = %+v, %v; want identity %q", caller, found, tc.wantIdentity)
			}
			if (err != nil) != tc.wantErr {
				t.Errorf("ErrorFromContext() = %v, want an error: %v", err, tc.wantErr)
			}
		})
	}
}

func TestRequired(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ policy, ca, want bool }{
		{false, false, false}, {true, false, true}, {false, true, true}, {true, true, true},
	} {
		if got := Required(tc.policy, tc.ca); got != tc.want {
			t.Errorf("Required(policy %v, client CA %v) = %v, want %v", tc.policy, tc.ca, got, tc.want)
		}
	}
}
