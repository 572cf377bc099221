package api_test

import (
	"fmt"
	"net/http"
	"testing"

	"connectrpc.com/connect"

	alev1 "github.com/alecrypt/alecrypt/gen/ale/v1"
	"github.com/alecrypt/alecrypt/gen/ale/v1/alev1connect"
	"github.com/alecrypt/alecrypt/internal/api"
)

// as returns an h2c client of g that authenticates with token ("" for none)
// on connections of its own.
func (g *guarded) as(t *testing.T, token string) *http.Client { return h2cClient(t, token) }

// encryptMax is an Encrypt of the largest request the server of g takes.
func encryptMax(t *testing.T, client *http.Client, url string, maxRequest int) error {
	t.Helper()
	c := alev1connect.NewCryptoServiceClient(client, url, connect.WithGRPC())
	_, err := c.Encrypt(bounded(t), connect.NewRequest(&alev1.EncryptRequest{Plaintext: make([]byte, maxRequest-16)}))
	return err
}

// TestOpenCallsCannotTakeTheBudget: calls that need no credential (health,
// reflection) are charged at most what they may read, against a budget of
// their own: held ones, however large the size they claim, leave an
// authenticated caller's largest request admitted.
func TestOpenCallsCannotTakeTheBudget(t *testing.T) {
	t.Parallel()
	const maxRequest = 1 << 20 // above the 64 KiB that health and reflection read
	g := newGuardedTokens(t, api.Options{RequireAuth: true, MaxRequestBytes: maxRequest,
		MaxInflightBytes: api.MinInflightBytes(maxRequest)}, tokenIDs{"tok-pos": "pos"})

	// A claim over what a probe reads is refused before anything is
	// charged; one within it is held, against the probes' budget.
	for i := range 4 {
		if got := holdHealth(t, g.url, maxRequest); got != http.StatusTooManyRequests {
			t.Fatalf("health check %d claiming %d bytes: status %d, want 429 at once", i, maxRequest, got)
		}
	}
	for i := range 8 {
		if got := holdHealth(t, g.url, 64<<10); got != http.StatusContinue {
			t.Fatalf("health check %d claiming 64 KiB: status %d, want 100 (admitted, waiting for its body)", i, got)
		}
	}
	// Reflection streams on one connection, each stalled inside a message
	// as large as a probe reads: the connection gets its share, no more.
	anon := g.as(t, "")
	reflect := "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo"
	statuses := make([]<-chan string, 8)
	for i := range statuses {
		before := g.inflightOpen(t)
		statuses[i] = holdCall(t, anon, g.url, reflect, 60000, 100)
		waitUntil(t, fmt.Sprintf("reflection stream %d to be charged or refused", i), func() bool {
			return len(statuses[i]) > 0 || g.inflightOpen(t) != before
		})
	}
	// A stream may be admitted and its message refused a moment later: wait
	// for a refusal, which eight messages of 60000 bytes on one connection
	// (six times that charged) must meet.
	waitUntil(t, "a reflection stream to be refused", func() bool {
		for _, st := range statuses {
			if len(st) > 0 {
				return true
			}
		}
		return false
	})
	for i, st := range statuses {
		select {
		case got := <-st:
			if got != "8" {
				t.Fatalf("reflection stream %d: grpc-status %q, want held or 8 (resource_exhausted)", i, got)
			}
		default:
		}
	}
	if got := g.inflight(t); got != 0 {
		t.Fatalf("alecrypt_inflight_bytes = %v with only unauthenticated calls held, want 0", got)
	}
	if got := g.inflightOpen(t); got > 4<<20 {
		t.Errorf("alecrypt_inflight_unauthenticated_bytes = %v, want at most its 4 MiB budget", got)
	}
	if err := encryptMax(t, g.as(t, "tok-pos"), g.url, maxRequest); err != nil {
		t.Fatalf("authenticated Encrypt of %d bytes while unauthenticated calls are held: %v, want admitted", maxRequest, err)
	}
}

// TestCallerShare: one caller cannot hold more than its share of the
// budget while another is still admitted; a caller is its identity, or its
// connection when it has none.
func TestCallerShare(t *testing.T) {
	t.Parallel()
	need := api.MinInflightBytes(maxRequestBytes)
	for _, tc := range []struct {
		name                  string
		greedy, second, other string // tokens; "" is anonymous, each client on connections of its own
	}{
		{name: "identities", greedy: "tok-greedy", second: "tok-greedy", other: "tok-other"},
		{name: "anonymous connections", greedy: "", other: ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			// Room for four largest requests, a quarter (one) per caller.
			g := newGuardedTokens(t, api.Options{MaxInflightBytes: 4 * need}, tokenIDs{"tok-greedy": "greedy", "tok-other": "other"})
			greedy := g.as(t, tc.greedy)
			holdCall(t, greedy, g.url, encryptPath, maxRequestBytes-16, 1000)
			waitUntil(t, "the greedy caller's call to be charged", func() bool { return g.inflight(t) > 0 })
			// The same caller again: on the same identity from another
			// connection, or on the same connection when anonymous.
			again := greedy
			if tc.second != "" {
				again = g.as(t, tc.second)
			}
			if err := encryptMax(t, again, g.url, maxRequestBytes); connect.CodeOf(err) != connect.CodeResourceExhausted {
				t.Fatalf("greedy caller's second largest request: err = %v, want resource_exhausted (over its share)", err)
			}
			if err := encryptMax(t, g.as(t, tc.other), g.url, maxRequestBytes); err != nil {
				t.Fatalf("another caller's largest request while the greedy one holds its share: %v, want admitted", err)
			}
		})
	}
}

// TestIdleStreamsCharged: an open Stream is charged its read-ahead for as
// long as it lives, so the streams one caller keeps open, idle or not, are
// bounded by its share.
func TestIdleStreamsCharged(t *testing.T) {
	t.Parallel()
	need := api.MinInflightBytes(maxRequestBytes)
	g := newGuardedTokens(t, api.Options{MaxInflightBytes: 4 * need}, tokenIDs{"tok-a": "a", "tok-b": "b"})
	c := alev1connect.NewCryptoServiceClient(g.as(t, "tok-a"), g.url, connect.WithGRPC())
	// The share is one largest request (need); each stream's one small
	// message is charged a few hundred bytes while it is answered.
	fits := int((need - 1<<10) / api.StreamCharge)
	for i := range fits + 1 {
		s := c.Stream(bounded(t))
		t.Cleanup(func() { _ = s.CloseResponse() })
		_ = s.Send(&alev1.StreamRequest{RequestId: "1", Operation: &alev1.StreamRequest_Encrypt{Encrypt: &alev1.EncryptRequest{Plaintext: []byte("x")}}})
		_, err := s.Receive()
		switch {
		case i < fits && err != nil:
			t.Fatalf("stream %d of %d within the caller's share: %v", i+1, fits, err)
		case i == fits && connect.CodeOf(err) != connect.CodeResourceExhausted:
			t.Fatalf("stream %d, over the caller's share: err = %v, want resource_exhausted", i+1, err)
		}
		if i < fits {
			// Answered, so idle: it holds its read-ahead and nothing else.
			want := float64(i+1) * api.StreamCharge
			waitUntil(t, fmt.Sprintf("%d idle streams to hold %v bytes", i+1, want), func() bool { return g.inflight(t) == want })
		}
	}
	if err := encryptMax(t, g.as(t, "tok-b"), g.url, maxRequestBytes); err != nil {
		t.Fatalf("another caller while one holds its share in idle streams: %v, want admitted", err)
	}
}
