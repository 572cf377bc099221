// Package authn owns caller identity: who is calling, established from a
// verified mTLS client certificate or a bearer token, carried in the request
// context for authorization and audit.
//
// It decides nothing about permissions (package policy does) and never
// stores, logs or returns a token.
package authn

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"net/http"
	"strings"
)

// Method is how a caller proved its identity.
type Method string

// The methods.
const (
	MethodMTLS  Method = "mtls"
	MethodToken Method = "token"
)

// Caller is an authenticated caller.
type Caller struct {
	Identity string
	Method   Method
}

// ErrUnauthenticated means the caller presented no usable credential, or a
// bearer token no one was issued.
var ErrUnauthenticated = errors.New("unauthenticated: present a client certificate or a bearer token")

// TokenVerifier maps a bearer token to the identity it was issued to.
// Implementations compare in constant time.
type TokenVerifier interface {
	IdentityForToken(token string) (identity string, ok bool)
}

type callerKey struct{}
type errKey struct{}

// newContext returns ctx carrying c.
func newContext(ctx context.Context, c Caller) context.Context {
	return context.WithValue(ctx, callerKey{}, c)
}

// FromContext returns the caller in ctx, if one was authenticated.
func FromContext(ctx context.Context) (Caller, bool) {
	c, ok := ctx.Value(callerKey{}).(Caller)
	return c, ok
}

// ErrorFromContext returns why authentication failed for the request of
// ctx, or nil if it did not fail (a caller may still be absent when no
// credential was presented at all).
func ErrorFromContext(ctx context.Context) error {
	err, _ := ctx.Value(errKey{}).(error)
	return err
}

// identityFromCert is a client certificate's identity: its first URI SAN
// (SPIFFE-style), else its first DNS SAN. Common names are not used.
func identityFromCert(c *x509.Certificate) string {
	if len(c.URIs) > 0 {
		return c.URIs[0].String()
	}
	if len(c.DNSNames) > 0 {
		return c.DNSNames[0]
	}
	return ""
}

// authenticate establishes the caller of one request. A verified client
// certificate wins; otherwise an "Authorization: Bearer" token is checked.
// No credential at all returns (Caller{}, false, nil); a bad one an error.
func authenticate(state *tls.ConnectionState, authorization string, tokens TokenVerifier) (Caller, bool, error) {
	if state != nil && len(state.VerifiedChains) > 0 && len(state.VerifiedChains[0]) > 0 {
		if id := identityFromCert(state.VerifiedChains[0][0]); id != "" {
			return Caller{Identity: id, Method: MethodMTLS}, true, nil
		}
		return Caller{}, false, errors.New("unauthenticated: the client certificate has no URI or DNS SAN")
	}
	if authorization == "" {
		return Caller{}, false, nil
	}
	scheme, token, ok := strings.Cut(authorization, " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") || strings.TrimSpace(token) == "" {
		return Caller{}, false, errors.New("unauthenticated: the authorization header is not a bearer token")
	}
	if tokens == nil {
		return Caller{}, false, ErrUnauthenticated
	}
	id, ok := tokens.IdentityForToken(strings.TrimSpace(token))
	if !ok {
		return Caller{}, false, ErrUnauthenticated
	}
	return Caller{Identity: id, Method: MethodToken}, true, nil
}

// Required reports whether every caller must authenticate. A policy names
// who may call; a client CA says the operator expects callers to prove who
// they are with a certificate, so a caller without one must not be served as
// if no one had asked (without a policy, no token maps to an identity, so
// only verified certificates get through). The TLS handshake itself accepts
// clients without a certificate, so probes reach health on the same port and
// callers get a proper Unauthenticated error rather than a failed handshake.
func Required(hasPolicy, hasClientCA bool) bool { return hasPolicy || hasClientCA }

// Middleware authenticates every request and records the outcome in its
// context: the caller, or the reason it failed. It rejects nothing itself,
// so each protocol can answer in its own terms (package api refuses at the
// HTTP layer, in the caller's protocol, before reading the body).
func Middleware(next http.Handler, tokens TokenVerifier) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, ok, err := authenticate(r.TLS, r.Header.Get("Authorization"), tokens)
		switch {
		case err != nil:
			r = r.WithContext(context.WithValue(r.Context(), errKey{}, err))
		case ok:
			r = r.WithContext(newContext(r.Context(), c))
		}
		next.ServeHTTP(w, r)
	})
}
