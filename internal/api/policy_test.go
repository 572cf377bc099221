package api_test

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"connectrpc.com/connect"
	"github.com/google/go-cmp/cmp"
	"google.golang.org/protobuf/testing/protocmp"

	alev1 "github.com/alecrypt/alecrypt/gen/ale/v1"
	"github.com/alecrypt/alecrypt/gen/ale/v1/alev1connect"
	"github.com/alecrypt/alecrypt/internal/api"
	"github.com/alecrypt/alecrypt/internal/authn"
	"github.com/alecrypt/alecrypt/internal/engine"
	"github.com/alecrypt/alecrypt/internal/key"
	"github.com/alecrypt/alecrypt/internal/keyring"
	"github.com/alecrypt/alecrypt/internal/policy"
)

// tenantRecords: store-1's keys, neighbours whose names start like store-1
// (store-10, store-1x, a fingerprint "store-1abc"), and store-2's keys in
// every state.
func tenantRecords() []key.Record {
	return []key.Record{
		record("fp-s1", key.AES256CTR, key.Active, t0, "store-1"),
		record("fp-s1-pos", key.AES256CTR, key.Active, t0, "store-1-pos"),
		record("fp-s1-old", key.AES256CTR, key.DecryptOnly, t0, "store-1-old"),
		record("fp-s10", key.AES256CTR, key.Active, t0, "store-10"),
		record("fp-s1x", key.AES256CTR, key.Active, t0, "store-1x"),
		record("store-1abc", key.AES256CTR, key.Active, t0, "elsewhere"),
		record("fp-s2", key.AES256CTR, key.Active, t0, "store-2"),
		record("fp-s2-retired", key.AES256CTR, key.DecryptOnly, t0, "store-2"),
		record("fp-s2-disabled", key.AES256CTR, key.Disabled, t0, "store-2"),
		record("fp-s2-old", key.AES256CTR, key.DecryptOnly, t0, "store-2-old"),
	}
}

// Tokens of the callers of tenantPolicy.
const (
	tokStore1     = "tok-store-1"      // store-1*, default alias store-1
	tokNoDefault  = "tok-no-default"   // store-1*, no default alias (the service's is store-2)
	tokFPOnly     = "tok-fp-only"      // one fingerprint of store-2
	tokAll        = "tok-all"          // "*"
	tokEncryptOne = "tok-encrypt-only" // store-1*, encrypt only
	tokGone       = "tok-gone"         // store-1 and fingerprint:fp-gone (never issued)
)

func tenantPolicy() string {
	callers := map[string]any{
		"store-1":      map[string]any{"operations": []string{"encrypt", "decrypt", "resolve", "list"}, "keys": []string{"store-1*"}, "default_alias": "store-1"},
		"no-default":   map[string]any{"operations": []string{"encrypt", "decrypt", "resolve", "list"}, "keys": []string{"store-1*"}},
		"fp-only":      map[string]any{"operations": []string{"encrypt", "decrypt", "resolve", "list"}, "keys": []string{"fingerprint:fp-s2"}},
		"all":          map[string]any{"operations": []string{"encrypt", "decrypt", "resolve", "list"}, "keys": []string{"*"}},
		"encrypt-only": map[string]any{"operations": []string{"encrypt"}, "keys": []string{"store-1*"}},
		"gone":         map[string]any{"operations": []string{"encrypt", "decrypt"}, "keys": []string{"store-1", "fingerprint:fp-gone"}},
	}
	var tokens []map[string]string
	for tok, id := range map[string]string{tokStore1: "store-1", tokNoDefault: "no-default", tokFPOnly: "fp-only", tokAll: "all", tokEncryptOne: "encrypt-only", tokGone: "gone"} {
		tokens = append(tokens, map[string]string{"identity": id, "sha256": policy.HashToken(tok)})
	}
	b, _ := json.Marshal(map[string]any{"tokens": tokens, "callers": callers})
	return string(b)
}

type bearer struct {
	token string
	next  http.RoundTripper
}

func (b bearer) RoundTrip(r *http.Request) (*http.Response, error) {
	r = r.Clone(r.Context())
	r.Header.Set("Authorization", "Bearer "+b.token)
	return b.next.RoundTrip(r)
}

type tenantClients struct {
	crypto alev1connect.CryptoServiceClient
	keys   alev1connect.KeyServiceClient
}

// newPolicyFixture serves the real handler behind authn.Middleware with a
// policy.Store read from a file, as alecryptd does with --policy, and
// returns a gRPC client per token.
func newPolicyFixture(t *testing.T) func(token string) tenantClients {
	t.Helper()
	ring := keyring.New()
	if _, _, err := ring.Replace(tenantRecords()); err != nil {
		t.Fatalf("Replace: %v", err)
	}
	path := filepath.Join(t.TempDir(), "policy.json")
	if err := os.WriteFile(path, []byte(tenantPolicy()), 0o600); err != nil {
		t.Fatal(err)
	}
	pol, err := policy.Open(path, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	eng := engine.New(ring, engine.WithDefaultAlias("store-2"), engine.WithAuthorizer(pol))
	srv := httptest.NewUnstartedServer(authn.Middleware(api.NewHandler(eng, ring, api.Options{RequireAuth: true}), pol))
	srv.Config.Protocols = new(http.Protocols)
	srv.Config.Protocols.SetHTTP1(true)
	srv.Config.Protocols.SetUnencryptedHTTP2(true)
	srv.Start()
	t.Cleanup(srv.Close)
	var h2c http.Protocols
	h2c.SetUnencryptedHTTP2(true)
	tr := &http.Transport{Protocols: &h2c}
	t.Cleanup(tr.CloseIdleConnections)
	return func(token string) tenantClients {
		hc := &http.Client{Transport: bearer{token, tr}}
		return tenantClients{
			crypto: alev1connect.NewCryptoServiceClient(hc, srv.URL, connect.WithGRPC()),
			keys:   alev1connect.NewKeyServiceClient(hc, srv.URL, connect.WithGRPC()),
		}
	}
}

// denial is what a caller sees of a refused reference: code, message and
// details, with nothing that depends on the key.
type denial struct {
	Code    string
	Message string
	Details []*alev1.ErrorDetail
}

func denialOfErr(t *testing.T, err error) denial {
	t.Helper()
	var ce *connect.Error
	if !errors.As(err, &ce) {
		return denial{Code: "no error"}
	}
	d := denial{Code: ce.Code().String(), Message: ce.Message()}
	for _, det := range ce.Details() {
		v, err := det.Value()
		if err != nil {
			t.Fatalf("detail: %v", err)
		}
		ed, ok := v.(*alev1.ErrorDetail)
		if !ok {
			t.Fatalf("unexpected detail %T", v)
		}
		d.Details = append(d.Details, ed)
	}
	return d
}

func denialOfItem(ie *alev1.ItemError) denial {
	if ie == nil {
		return denial{Code: "no error"}
	}
	d := denial{Code: ie.GetCode(), Message: ie.GetMessage()}
	if ie.GetDetail() != nil {
		d.Details = []*alev1.ErrorDetail{ie.GetDetail()}
	}
	return d
}

// ownKey is, per caller, an active key it may encrypt and decrypt with: the
// other side of a Rewrap whose one side is the reference under test.
var ownKey = map[string]string{tokStore1: "fp-s1", tokNoDefault: "fp-s1", tokFPOnly: "fp-s2", tokAll: "fp-s1"}

// refAnswers asks about one reference through every RPC that takes a key
// reference, and returns what each answered. A fingerprint reference is
// also decrypted (an envelope names its key by fingerprint); an alias
// reference is also a ListKeys filter. Rewrap meets the reference as its
// target (own's envelope sealed under it) and, for a fingerprint, as its
// source (sealed under own).
func refAnswers(t *testing.T, c tenantClients, own string, ref *alev1.KeyRef) map[string]denial {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	out := map[string]denial{}
	enc := &alev1.EncryptRequest{Plaintext: []byte(`{"n":1}`), Key: ref}
	_, err := c.crypto.Encrypt(ctx, connect.NewRequest(enc))
	out["Encrypt"] = denialOfErr(t, err)
	_, err = c.crypto.Resolve(ctx, connect.NewRequest(&alev1.ResolveRequest{Key: ref}))
	out["Resolve"] = denialOfErr(t, err)
	eb, err := c.crypto.EncryptBatch(ctx, connect.NewRequest(&alev1.EncryptBatchRequest{Items: []*alev1.EncryptRequest{enc}}))
	if err != nil {
		t.Fatalf("EncryptBatch: %v", err)
	}
	out["EncryptBatch item"] = denialOfItem(eb.Msg.GetResults()[0].GetError())
	// (CTR opens the junk envelopes below without complaint: no expect.)
	junk := func(fp string) *alev1.Envelope {
		return &alev1.Envelope{Iv: make([]byte, 16), Fingerprint: fp, Message: []byte("x")}
	}
	rewrap := func(name string, r *alev1.RewrapRequest) {
		t.Helper()
		_, err := c.crypto.Rewrap(ctx, connect.NewRequest(r))
		out[name] = denialOfErr(t, err)
		rb, err := c.crypto.RewrapBatch(ctx, connect.NewRequest(&alev1.RewrapBatchRequest{Items: []*alev1.RewrapRequest{r}}))
		if err != nil {
			t.Fatalf("RewrapBatch: %v", err)
		}
		out[name+" batch item"] = denialOfItem(rb.Msg.GetResults()[0].GetError())
	}
	rewrap("Rewrap target", &alev1.RewrapRequest{Envelope: junk(own), Key: ref})
	if fp := ref.GetFingerprint(); fp != "" {
		rewrap("Rewrap source", &alev1.RewrapRequest{Envelope: junk(fp), Key: fpRef(own)})
	}

	s := c.crypto.Stream(ctx)
	defer func() { _ = s.CloseResponse() }()
	stream := func(name string, r *alev1.StreamRequest, itemErr func(*alev1.StreamResponse) *alev1.ItemError) {
		t.Helper()
		if err := s.Send(r); err != nil {
			t.Fatalf("Stream send: %v", err)
		}
		res, err := s.Receive()
		if err != nil {
			t.Fatalf("Stream receive: %v", err)
		}
		out[name] = denialOfItem(itemErr(res))
	}
	stream("Stream encrypt", &alev1.StreamRequest{RequestId: "e", Operation: &alev1.StreamRequest_Encrypt{Encrypt: enc}},
		(*alev1.StreamResponse).GetError)
	stream("Stream encrypt_batch", &alev1.StreamRequest{RequestId: "eb", Operation: &alev1.StreamRequest_EncryptBatch{EncryptBatch: &alev1.EncryptBatchRequest{Items: []*alev1.EncryptRequest{enc}}}},
		func(r *alev1.StreamResponse) *alev1.ItemError { return r.GetEncryptBatch().GetResults()[0].GetError() })

	if fp := ref.GetFingerprint(); fp != "" {
		dec := &alev1.DecryptRequest{Envelope: &alev1.Envelope{Iv: make([]byte, 16), Fingerprint: fp, Message: []byte("x")}}
		_, err = c.crypto.Decrypt(ctx, connect.NewRequest(dec))
		out["Decrypt"] = denialOfErr(t, err)
		db, err := c.crypto.DecryptBatch(ctx, connect.NewRequest(&alev1.DecryptBatchRequest{Items: []*alev1.DecryptRequest{dec}}))
		if err != nil {
			t.Fatalf("DecryptBatch: %v", err)
		}
		out["DecryptBatch item"] = denialOfItem(db.Msg.GetResults()[0].GetError())
		stream("Stream decrypt", &alev1.StreamRequest{RequestId: "d", Operation: &alev1.StreamRequest_Decrypt{Decrypt: dec}},
			(*alev1.StreamResponse).GetError)
		stream("Stream decrypt_batch", &alev1.StreamRequest{RequestId: "db", Operation: &alev1.StreamRequest_DecryptBatch{DecryptBatch: &alev1.DecryptBatchRequest{Items: []*alev1.DecryptRequest{dec}}}},
			func(r *alev1.StreamResponse) *alev1.ItemError { return r.GetDecryptBatch().GetResults()[0].GetError() })
	}
	if a := ref.GetAlias(); a != "" {
		_, err = c.keys.ListKeys(ctx, connect.NewRequest(&alev1.ListKeysRequest{Alias: a}))
		out["ListKeys alias filter"] = denialOfErr(t, err)
	}
	if err := s.CloseRequest(); err != nil {
		t.Fatal(err)
	}
	return out
}

// TestNoExistenceOracleAcrossTenants: a caller allowed only store-1* keys
// gets one and the same answer, PermissionDenied, for every reference it may
// not use, whether the key exists, is retired, disabled or absent, through
// every RPC; for a reference it may use, the usual answers (NotFound for its
// own unknown alias).
func TestNoExistenceOracleAcrossTenants(t *testing.T) {
	t.Parallel()
	clients := newPolicyFixture(t)
	// One answer for all: no ALE detail (a denial is about the caller's
	// onboarding, not its payload) and nothing naming the key.
	want := denial{Code: "permission_denied", Message: "permission denied"}
	denied := []struct {
		name   string
		caller string
		ref    *alev1.KeyRef
	}{
		{"active key of store-2 by fingerprint", tokStore1, fpRef("fp-s2")},
		{"retired key of store-2 by fingerprint", tokStore1, fpRef("fp-s2-retired")},
		{"disabled key of store-2 by fingerprint", tokStore1, fpRef("fp-s2-disabled")},
		{"absent fingerprint", tokStore1, fpRef("fp-never-issued")},
		{"store-2 by alias", tokStore1, aliasRef("store-2")},
		{"alias with only a retired key", tokStore1, aliasRef("store-2-old")},
		{"absent alias", tokStore1, aliasRef("store-9")},
		{"store-10 is not under store-1*", tokStore1, aliasRef("store-10")},
		{"store-1x is not under store-1*", tokStore1, aliasRef("store-1x")},
		{"store-10's key by fingerprint", tokStore1, fpRef("fp-s10")},
		{"store-1x's key by fingerprint", tokStore1, fpRef("fp-s1x")},
		{"a fingerprint spelt like store-1's aliases", tokStore1, fpRef("store-1abc")},
		{"absent fingerprint spelt like store-1's aliases", tokStore1, fpRef("store-1-nope")},
		{"default alias of the service (store-2)", tokNoDefault, nil},
		{"fingerprint selector: alias of the same key", tokFPOnly, aliasRef("store-2")},
		{"fingerprint selector: another fingerprint", tokFPOnly, fpRef("fp-s2-retired")},
		{"fingerprint selector: absent fingerprint", tokFPOnly, fpRef("fp-never-issued")},
	}
	for _, tc := range denied {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			for rpc, got := range refAnswers(t, clients(tc.caller), ownKey[tc.caller], tc.ref) {
				if diff := cmp.Diff(want, got, protocmp.Transform()); diff != "" {
					t.Errorf("%s: answer differs from the one denial (-want +got):\n%s", rpc, diff)
				}
			}
		})
	}

	allowed := []struct {
		name   string
		caller string
		ref    *alev1.KeyRef
		want   map[string]string // rpc → code; rpcs not named must succeed
	}{
		{"own unknown alias", tokStore1, aliasRef("store-1-x"), map[string]string{
			"Encrypt": "not_found", "Resolve": "not_found", "EncryptBatch item": "not_found",
			"Stream encrypt": "not_found", "Stream encrypt_batch": "not_found"}},
		{"own key", tokStore1, aliasRef("store-1"), nil},
		{"own key under a delimiter", tokStore1, aliasRef("store-1-pos"), nil},
		// (CTR decrypts the test's junk envelopes without complaint: no expect.)
		{"own key by fingerprint", tokStore1, fpRef("fp-s1-pos"), nil},
		{"own retired key", tokStore1, fpRef("fp-s1-old"), map[string]string{
			"Encrypt": "failed_precondition", "EncryptBatch item": "failed_precondition", "Stream encrypt": "failed_precondition",
			"Stream encrypt_batch": "failed_precondition"}},
		{"own alias with only a retired key", tokStore1, aliasRef("store-1-old"), map[string]string{
			"Encrypt": "failed_precondition", "Resolve": "failed_precondition", "EncryptBatch item": "failed_precondition",
			"Stream encrypt": "failed_precondition", "Stream encrypt_batch": "failed_precondition"}},
		{"own default alias", tokStore1, nil, nil},
		{"fingerprint selector: its key", tokFPOnly, fpRef("fp-s2"), nil},
		{"* sees store-2's disabled key", tokAll, fpRef("fp-s2-disabled"), map[string]string{
			"Encrypt": "failed_precondition", "EncryptBatch item": "failed_precondition", "Stream encrypt": "failed_precondition",
			"Stream encrypt_batch": "failed_precondition", "Decrypt": "failed_precondition", "DecryptBatch item": "failed_precondition",
			"Stream decrypt": "failed_precondition", "Stream decrypt_batch": "failed_precondition"}},
		{"* and an absent alias", tokAll, aliasRef("store-9"), map[string]string{
			"Encrypt": "not_found", "Resolve": "not_found", "EncryptBatch item": "not_found",
			"Stream encrypt": "not_found", "Stream encrypt_batch": "not_found"}},
	}
	for _, tc := range allowed {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			for rpc, got := range refAnswers(t, clients(tc.caller), ownKey[tc.caller], tc.ref) {
				// A Rewrap's target answers as Encrypt does, its source as
				// Decrypt does.
				asked := rpc
				switch {
				case strings.HasPrefix(rpc, "Rewrap target"):
					asked = "Encrypt"
				case strings.HasPrefix(rpc, "Rewrap source"):
					asked = "Decrypt"
				}
				want := tc.want[asked]
				if want == "" {
					want = "no error"
				}
				if got.Code != want {
					t.Errorf("%s = %+v, want %s", rpc, got, want)
				}
			}
		})
	}
}

// TestRewrapDeniedOnEitherSide: Rewrap decides both references before it
// reports anything about either key, so a caller refused one side gets the
// one denial whatever the other side is (absent, retired, fine), and learns
// of a missing or unusable key only when it may use both names.
func TestRewrapDeniedOnEitherSide(t *testing.T) {
	t.Parallel()
	clients := newPolicyFixture(t)
	env := func(fp string) *alev1.Envelope {
		return &alev1.Envelope{Iv: make([]byte, 16), Fingerprint: fp, Message: []byte("x")}
	}
	tests := []struct {
		name   string
		caller string
		source string
		target *alev1.KeyRef
		want   string
	}{
		{"source of another tenant, target own unknown alias", tokStore1, "fp-s2", aliasRef("store-1-x"), "permission_denied"},
		{"source absent (allowed by name), target denied", tokGone, "fp-gone", aliasRef("store-2"), "permission_denied"},
		{"source absent (allowed by name), target denied and absent", tokGone, "fp-gone", aliasRef("store-9"), "permission_denied"},
		{"no decrypt operation on an own key", tokEncryptOne, "fp-s1", aliasRef("store-1"), "permission_denied"},
		{"own source, target alias of another tenant with only a retired key", tokStore1, "fp-s1", aliasRef("store-2-old"), "permission_denied"},
		{"own source, target own alias with only a retired key", tokStore1, "fp-s1", aliasRef("store-1-old"), "failed_precondition"},
		{"source absent (allowed by name), target own", tokGone, "fp-gone", aliasRef("store-1"), "not_found"},
		{"own retired source to own primary", tokStore1, "fp-s1-old", aliasRef("store-1"), "no error"},
		{"own source to the default alias", tokStore1, "fp-s1-pos", nil, "no error"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			res, err := clients(tc.caller).crypto.Rewrap(context.Background(), connect.NewRequest(&alev1.RewrapRequest{Envelope: env(tc.source), Key: tc.target}))
			got := denialOfErr(t, err)
			if got.Code != tc.want {
				t.Fatalf("Rewrap(%s → %v) = %+v, want %s", tc.source, tc.target, got, tc.want)
			}
			if tc.want == "permission_denied" {
				if diff := cmp.Diff(denial{Code: "permission_denied", Message: "permission denied"}, got, protocmp.Transform()); diff != "" {
					t.Errorf("denial differs from the one denial (-want +got):\n%s", diff)
				}
			}
			if err == nil && res.Msg.GetEnvelope().GetFingerprint() != "fp-s1" {
				t.Errorf("Rewrap sealed under %q, want store-1's primary fp-s1", res.Msg.GetEnvelope().GetFingerprint())
			}
		})
	}
}

// TestListKeysShowsOnlyAllowedKeys: listing returns exactly the keys a
// caller may use, never a neighbour whose name starts the same way, and a
// caller without the list operation is refused outright.
func TestListKeysShowsOnlyAllowedKeys(t *testing.T) {
	t.Parallel()
	clients := newPolicyFixture(t)
	tests := []struct {
		name  string
		token string
		alias string
		want  []string
		code  connect.Code
	}{
		{"store-1*", tokStore1, "", []string{"fp-s1", "fp-s1-old", "fp-s1-pos"}, 0},
		{"store-1* filtered to its alias", tokStore1, "store-1-pos", []string{"fp-s1-pos"}, 0},
		{"store-1* filtered to its unknown alias", tokStore1, "store-1-none", nil, 0},
		{"fingerprint selector", tokFPOnly, "", []string{"fp-s2"}, 0},
		{"*", tokAll, "", []string{"fp-s1", "fp-s1-old", "fp-s1-pos", "fp-s10", "fp-s1x", "fp-s2", "fp-s2-disabled", "fp-s2-old", "fp-s2-retired", "store-1abc"}, 0},
		{"no list operation", tokEncryptOne, "", nil, connect.CodePermissionDenied},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			var got []string
			token := ""
			for {
				res, err := clients(tc.token).keys.ListKeys(context.Background(), connect.NewRequest(&alev1.ListKeysRequest{Alias: tc.alias, PageSize: 2, PageToken: token}))
				if tc.code != 0 {
					if connect.CodeOf(err) != tc.code {
						t.Fatalf("ListKeys err = %v, want %v", err, tc.code)
					}
					return
				}
				if err != nil {
					t.Fatalf("ListKeys: %v", err)
				}
				for _, k := range res.Msg.GetKeys() {
					got = append(got, k.GetFingerprint())
				}
				if token = res.Msg.GetNextPageToken(); token == "" {
					break
				}
			}
			slices.Sort(got)
			if !slices.Equal(got, tc.want) {
				t.Errorf("ListKeys = %q, want %q", got, tc.want)
			}
		})
	}
}

// TestListKeysPageTokenOnlyBeforeVisibleKeys: a page token is issued only
// when a key the caller may list follows; other tenants' keys sorting after
// its last one (fp-s10, fp-s1x, fp-s2...) must not earn it a token, or an
// empty last page, that tells it they exist.
func TestListKeysPageTokenOnlyBeforeVisibleKeys(t *testing.T) {
	t.Parallel()
	clients := newPolicyFixture(t)
	want := []string{"fp-s1", "fp-s1-old", "fp-s1-pos"}
	for _, size := range []int32{1, 2, 3, 4} {
		t.Run("page size "+strconv.Itoa(int(size)), func(t *testing.T) {
			t.Parallel()
			var got []string
			token := ""
			for page := 0; ; page++ {
				res, err := clients(tokStore1).keys.ListKeys(context.Background(), connect.NewRequest(&alev1.ListKeysRequest{PageSize: size, PageToken: token}))
				if err != nil {
					t.Fatalf("ListKeys: %v", err)
				}
				if len(res.Msg.GetKeys()) == 0 && page > 0 {
					t.Fatalf("page %d is empty: the previous page's token revealed keys beyond the caller's", page)
				}
				for _, k := range res.Msg.GetKeys() {
					got = append(got, k.GetFingerprint())
				}
				if token = res.Msg.GetNextPageToken(); token == "" {
					break
				}
			}
			if !slices.Equal(got, want) {
				t.Errorf("ListKeys = %q, want %q", got, want)
			}
		})
	}
}
