package api_test

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"connectrpc.com/connect"
	"github.com/google/go-cmp/cmp"
	"google.golang.org/protobuf/encoding/protojson"

	alev1 "github.com/alecrypt/alecrypt/gen/ale/v1"
	"github.com/alecrypt/alecrypt/gen/ale/v1/alev1connect"
	"github.com/alecrypt/alecrypt/internal/api"
	"github.com/alecrypt/alecrypt/internal/audit"
	"github.com/alecrypt/alecrypt/internal/engine"
	"github.com/alecrypt/alecrypt/internal/key"
	"github.com/alecrypt/alecrypt/internal/keyring"
)

// sealedUnder seals plaintext under fp with an engine of its own over the
// test records made active, as traffic from before fp's retirement was.
func sealedUnder(t *testing.T, fp string, plaintext, aad []byte) *alev1.Envelope {
	t.Helper()
	recs := testRecords()
	for i := range recs {
		recs[i].State = key.Active
	}
	ring := keyring.New()
	if _, _, err := ring.Replace(recs); err != nil {
		t.Fatal(err)
	}
	env, _, err := engine.New(ring).Encrypt(context.Background(), engine.Ref{Fingerprint: fp}, plaintext, aad)
	if err != nil {
		t.Fatal(err)
	}
	return &alev1.Envelope{Iv: env.IV, Fingerprint: env.Fingerprint, Message: env.Message}
}

// TestRewrap moves envelopes between keys and checks what comes back: a new
// envelope under the target's primary that decrypts to the same plaintext,
// never the plaintext itself; and the errors of each side, as Decrypt and
// Encrypt give them.
func TestRewrap(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	const secretOrder = `{"order":"PLAINTEXT-CANARY-77"}`
	forEachProtocol(t, f, func(t *testing.T, c alev1connect.CryptoServiceClient, _ alev1connect.KeyServiceClient) {
		ctx := context.Background()
		tests := []struct {
			name     string
			env      *alev1.Envelope
			target   *alev1.KeyRef
			aad      []byte
			expect   alev1.PlaintextFormat
			wantFP   string // on success
			wantCode connect.Code
			wantALE  int32
			wantMsg  string // in the error's message
		}{
			{name: "retired key to the alias's primary", env: sealedUnder(t, "ctr-retired", []byte(secretOrder), nil), target: aliasRef("store-1"), wantFP: "ctr-new"},
			{name: "older key to the default key", env: sealedUnder(t, "ctr-old", []byte(secretOrder), nil), wantFP: "ctr-new"},
			// aes-256-ctr cannot tell a wrong key: sealing its output under
			// an authenticated key needs a plaintext check.
			{name: "ctr to gcm without a check", env: sealedUnder(t, "ctr-old", []byte(secretOrder), nil), target: aliasRef("gcm"), wantCode: connect.CodeInvalidArgument, wantALE: 1, wantMsg: "set expect"},
			{name: "wrong-key ctr to gcm without a check", env: func() *alev1.Envelope {
				e := sealedUnder(t, "ctr-new", []byte(secretOrder), nil)
				e.Fingerprint = "ctr-old"
				return e
			}(), target: aliasRef("gcm"), wantCode: connect.CodeInvalidArgument, wantALE: 1, wantMsg: "set expect"},
			{name: "ctr to gcm with a JSON check", env: sealedUnder(t, "ctr-old", []byte(secretOrder), nil), target: aliasRef("gcm"), expect: alev1.PlaintextFormat_PLAINTEXT_FORMAT_JSON, wantFP: "gcm-1"},
			{name: "gcm to gcm keeps the aad", env: sealedUnder(t, "gcm-1", []byte(secretOrder), []byte("order-42")), target: fpRef("gcm-1"), aad: []byte("order-42"), wantFP: "gcm-1"},
			{name: "missing envelope", target: aliasRef("store-1"), wantCode: connect.CodeInvalidArgument, wantALE: 1},
			{name: "envelope without iv", env: &alev1.Envelope{Fingerprint: "ctr-old"}, wantCode: connect.CodeInvalidArgument, wantALE: 1},
			{name: "unknown source", env: &alev1.Envelope{Iv: make([]byte, 16), Fingerprint: "gone"}, wantCode: connect.CodeNotFound, wantALE: 2},
			{name: "disabled source", env: &alev1.Envelope{Iv: make([]byte, 16), Fingerprint: "ctr-disabled"}, wantCode: connect.CodeFailedPrecondition, wantALE: 2},
			{name: "unknown target alias", env: sealedUnder(t, "ctr-old", []byte("x"), nil), target: aliasRef("nope"), wantCode: connect.CodeNotFound, wantALE: 2},
			{name: "decrypt-only target", env: sealedUnder(t, "ctr-old", []byte("x"), nil), target: fpRef("ctr-retired"), wantCode: connect.CodeFailedPrecondition, wantALE: 2},
			{name: "an empty key reference is the default key", env: sealedUnder(t, "ctr-old", []byte("x"), nil), target: &alev1.KeyRef{}, wantFP: "ctr-new"},
			{name: "garbage fails the JSON check", env: &alev1.Envelope{Iv: make([]byte, 16), Fingerprint: "ctr-old", Message: []byte("zzzzzzzz")}, target: aliasRef("gcm"), expect: alev1.PlaintextFormat_PLAINTEXT_FORMAT_JSON, wantCode: connect.CodeInvalidArgument, wantALE: 2},
			{name: "tampered gcm source", env: func() *alev1.Envelope {
				e := sealedUnder(t, "gcm-1", []byte(secretOrder), nil)
				e.Message[0] ^= 1
				return e
			}(), target: aliasRef("store-1"), wantCode: connect.CodeInvalidArgument, wantALE: 2},
			{name: "aad with a ctr target", env: sealedUnder(t, "gcm-1", []byte(secretOrder), []byte("a")), target: aliasRef("store-1"), aad: []byte("a"), wantCode: connect.CodeInvalidArgument, wantALE: 1},
		}
		for _, tc := range tests {
			res, err := c.Rewrap(ctx, connect.NewRequest(&alev1.RewrapRequest{Envelope: tc.env, Key: tc.target, AssociatedData: tc.aad, Expect: tc.expect}))
			if tc.wantCode != 0 {
				if connect.CodeOf(err) != tc.wantCode || aleCode(t, err) != tc.wantALE {
					t.Errorf("%s: Rewrap err = %v (ALE %d), want %v with ALE %d", tc.name, err, aleCode(t, err), tc.wantCode, tc.wantALE)
				}
				if err == nil || !strings.Contains(err.Error(), tc.wantMsg) {
					t.Errorf("%s: Rewrap err = %v, want one saying %q", tc.name, err, tc.wantMsg)
				}
				continue
			}
			if err != nil {
				t.Fatalf("%s: Rewrap err = %v", tc.name, err)
			}
			for _, b := range [][]byte{mustMarshal(t, res.Msg), []byte(protojson.Format(res.Msg))} {
				if bytes.Contains(b, []byte("PLAINTEXT-CANARY")) {
					t.Fatalf("%s: Rewrap response carries the plaintext", tc.name)
				}
			}
			env := res.Msg.GetEnvelope()
			if env.GetFingerprint() != tc.wantFP || res.Msg.GetKey().GetFingerprint() != tc.wantFP {
				t.Fatalf("%s: Rewrap sealed under %q (key info %q), want %q", tc.name, env.GetFingerprint(), res.Msg.GetKey().GetFingerprint(), tc.wantFP)
			}
			if bytes.Equal(env.GetIv(), tc.env.GetIv()) {
				t.Fatalf("%s: Rewrap reused the source IV", tc.name)
			}
			dec, err := c.Decrypt(ctx, connect.NewRequest(&alev1.DecryptRequest{Envelope: env, AssociatedData: tc.aad}))
			if err != nil || !bytes.Equal(dec.Msg.GetPlaintext(), []byte(plaintextOf(t, tc.env, tc.aad))) {
				t.Fatalf("%s: Decrypt(rewrapped) = %q, %v; want the original plaintext", tc.name, dec.Msg.GetPlaintext(), err)
			}
		}
	})
	if strings.Contains(f.logs.String(), "PLAINTEXT-CANARY") {
		t.Fatal("a log line carries the plaintext")
	}
}

// plaintextOf opens env with the engine of sealedUnder (all keys active).
func plaintextOf(t *testing.T, env *alev1.Envelope, aad []byte) string {
	t.Helper()
	recs := testRecords()
	ring := keyring.New()
	if _, _, err := ring.Replace(recs); err != nil {
		t.Fatal(err)
	}
	pt, _, err := engine.New(ring).Decrypt(context.Background(), engine.Envelope{IV: env.GetIv(), Fingerprint: env.GetFingerprint(), Message: env.GetMessage()}, aad, engine.FormatAny)
	if err != nil {
		t.Fatal(err)
	}
	return string(pt)
}

// TestRewrapBatch: one result per item, in order; a bad item fails alone;
// more items than MaxBatchItems fail the call.
func TestRewrapBatch(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	forEachProtocol(t, f, func(t *testing.T, c alev1connect.CryptoServiceClient, _ alev1connect.KeyServiceClient) {
		ctx := context.Background()
		items := []*alev1.RewrapRequest{
			{Envelope: sealedUnder(t, "ctr-retired", []byte("one"), nil), Key: aliasRef("store-1")},
			{Envelope: &alev1.Envelope{Iv: make([]byte, 16), Fingerprint: "gone"}, Key: aliasRef("store-1")},
			{Envelope: sealedUnder(t, "ctr-old", []byte("three"), nil), Key: aliasRef("gcm"), Expect: alev1.PlaintextFormat_PLAINTEXT_FORMAT_UTF8},
			{Envelope: sealedUnder(t, "ctr-old", []byte("four"), nil), Key: aliasRef("gcm")},
		}
		res, err := c.RewrapBatch(ctx, connect.NewRequest(&alev1.RewrapBatchRequest{Items: items}))
		if err != nil {
			t.Fatalf("RewrapBatch err = %v", err)
		}
		rs := res.Msg.GetResults()
		if len(rs) != 4 {
			t.Fatalf("RewrapBatch gave %d results, want 4", len(rs))
		}
		if e := rs[1].GetError(); e.GetCode() != "not_found" || e.GetDetail().GetErrorCode() != 2 {
			t.Fatalf("RewrapBatch item 1 error = %v, want not_found with ALE 2", e)
		}
		if e := rs[3].GetError(); e.GetCode() != "invalid_argument" || e.GetDetail().GetErrorCode() != 1 || !strings.Contains(e.GetMessage(), "set expect") {
			t.Fatalf("RewrapBatch item 3 (ctr to gcm, no check) error = %v, want invalid_argument with ALE 1 saying to set expect", e)
		}
		for i, want := range map[int]string{0: "one", 2: "three"} {
			env := rs[i].GetResponse().GetEnvelope()
			dec, err := c.Decrypt(ctx, connect.NewRequest(&alev1.DecryptRequest{Envelope: env}))
			if err != nil || string(dec.Msg.GetPlaintext()) != want {
				t.Fatalf("RewrapBatch item %d decrypts to %q, %v; want %q", i, dec.Msg.GetPlaintext(), err, want)
			}
		}
		_, err = c.RewrapBatch(ctx, connect.NewRequest(&alev1.RewrapBatchRequest{Items: make([]*alev1.RewrapRequest, api.MaxBatchItems+1)}))
		if connect.CodeOf(err) != connect.CodeResourceExhausted {
			t.Fatalf("RewrapBatch of %d items err = %v, want resource_exhausted", api.MaxBatchItems+1, err)
		}
	})
}

// TestRewrapAudit: a rewrap is one audit entry, operation "rewrap", naming
// the source and the target key; a batch names every key it touched.
func TestRewrapAudit(t *testing.T) {
	t.Parallel()
	ring := keyring.New()
	if _, _, err := ring.Replace(testRecords()); err != nil {
		t.Fatal(err)
	}
	trail := &syncBuffer{}
	srv := httptest.NewServer(api.NewHandler(engine.New(ring, engine.WithDefaultAlias("store-1")), ring,
		api.Options{Logger: slog.New(slog.DiscardHandler), Audit: audit.New(trail, nil)}))
	t.Cleanup(srv.Close)
	c := alev1connect.NewCryptoServiceClient(srv.Client(), srv.URL)
	ctx := context.Background()
	entries := func() []audit.Entry {
		var out []audit.Entry
		for _, l := range strings.Split(strings.TrimSpace(trail.String()), "\n") {
			var e audit.Entry
			if err := json.Unmarshal([]byte(l), &e); err != nil {
				t.Fatalf("audit line %q: %v", l, err)
			}
			out = append(out, e)
		}
		return out
	}
	if _, err := c.Rewrap(ctx, connect.NewRequest(&alev1.RewrapRequest{Envelope: sealedUnder(t, "ctr-retired", []byte("x"), nil), Key: aliasRef("store-1")})); err != nil {
		t.Fatal(err)
	}
	_, err := c.RewrapBatch(ctx, connect.NewRequest(&alev1.RewrapBatchRequest{Items: []*alev1.RewrapRequest{
		{Envelope: sealedUnder(t, "ctr-old", []byte("y"), nil), Key: aliasRef("gcm"), Expect: alev1.PlaintextFormat_PLAINTEXT_FORMAT_UTF8},
		{Envelope: &alev1.Envelope{Iv: make([]byte, 16), Fingerprint: "ctr-disabled"}},
	}}))
	if err != nil {
		t.Fatal(err)
	}
	got := entries()
	if len(got) != 2 {
		t.Fatalf("%d audit entries, want 2 (one per call):\n%s", len(got), trail.String())
	}
	type summary struct {
		Procedure, Operation, Outcome string
		Fingerprints                  []string
		Items, FailedItems            int
	}
	want := []summary{
		{alev1connect.CryptoServiceRewrapProcedure, "rewrap", "ok", []string{"ctr-retired", "ctr-new"}, 0, 0},
		{alev1connect.CryptoServiceRewrapBatchProcedure, "rewrap", "ok", []string{"ctr-old", "ctr-disabled", "gcm-1"}, 2, 1},
	}
	var sums []summary
	for _, e := range got {
		sums = append(sums, summary{e.Procedure, e.Operation, e.Outcome, e.Fingerprints, e.Items, e.FailedItems})
	}
	if diff := cmp.Diff(want, sums); diff != "" {
		t.Errorf("audit entries (-want +got):\n%s", diff)
	}
	if got[0].BytesIn == 0 || got[0].BytesOut == 0 {
		t.Errorf("audit entry of a rewrap has no sizes: %+v", got[0])
	}
}

// TestKeyUsageInResolveAndListKeys: Resolve and ListKeys report how much
// this replica used each key; the crypto RPCs' key info leaves usage out.
func TestKeyUsageInResolveAndListKeys(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	ctx := context.Background()
	c, k := f.conns["grpc"], f.keys["grpc"]
	before := time.Now().Add(-time.Second)
	var env *alev1.Envelope
	for range 2 {
		res, err := c.Encrypt(ctx, connect.NewRequest(&alev1.EncryptRequest{Plaintext: []byte("x"), Key: aliasRef("gcm")}))
		if err != nil {
			t.Fatal(err)
		}
		if res.Msg.GetKey().GetUsage() != nil {
			t.Errorf("Encrypt's key info carries usage: %v", res.Msg.GetKey().GetUsage())
		}
		env = res.Msg.GetEnvelope()
	}
	if _, err := c.Decrypt(ctx, connect.NewRequest(&alev1.DecryptRequest{Envelope: env})); err != nil {
		t.Fatal(err)
	}
	res, err := c.Resolve(ctx, connect.NewRequest(&alev1.ResolveRequest{Key: aliasRef("gcm")}))
	if err != nil {
		t.Fatal(err)
	}
	u := res.Msg.GetKey().GetUsage()
	if u.GetEncryptCount() != 2 || u.GetDecryptCount() != 1 {
		t.Fatalf("Resolve usage = %v, want 2 encryptions and 1 decryption", u)
	}
	for _, ts := range []time.Time{u.GetLastEncryptTime().AsTime(), u.GetLastDecryptTime().AsTime()} {
		if ts.Before(before) || ts.After(time.Now()) {
			t.Errorf("Resolve last use = %v, want between %v and now", ts, before)
		}
	}
	list, err := k.ListKeys(ctx, connect.NewRequest(&alev1.ListKeysRequest{}))
	if err != nil {
		t.Fatal(err)
	}
	for _, ki := range list.Msg.GetKeys() {
		want := uint64(0)
		if ki.GetFingerprint() == "gcm-1" {
			want = 2
		}
		if ki.GetUsage() == nil || ki.GetUsage().GetEncryptCount() != want {
			t.Errorf("ListKeys %s usage = %v, want %d encryptions", ki.GetFingerprint(), ki.GetUsage(), want)
		}
		if want == 0 && ki.GetUsage().GetLastEncryptTime() != nil {
			t.Errorf("ListKeys %s: a key never used has a last use", ki.GetFingerprint())
		}
	}
}

// TestKeyUsageIgnoresEmptyMessages: a Decrypt of an envelope with no
// message succeeds for an aes-256-ctr key (there is nothing to open) but is
// no use of the key: anyone who knows a fingerprint can send one, and a
// retired key must not look used for ever. Through every RPC that decrypts,
// usage stays as it was; a GCM envelope whose empty plaintext was sealed
// (its tag verified) counts.
func TestKeyUsageIgnoresEmptyMessages(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	ctx := context.Background()
	c := f.conns["connect"]
	empty := &alev1.Envelope{Iv: make([]byte, 16), Fingerprint: "ctr-retired"}
	if _, err := c.Decrypt(ctx, connect.NewRequest(&alev1.DecryptRequest{Envelope: empty})); err != nil {
		t.Fatalf("Decrypt(empty message) err = %v, want nil", err)
	}
	batch, err := c.DecryptBatch(ctx, connect.NewRequest(&alev1.DecryptBatchRequest{Items: []*alev1.DecryptRequest{{Envelope: empty}, {Envelope: empty}}}))
	if err != nil {
		t.Fatal(err)
	}
	for i, r := range batch.Msg.GetResults() {
		if r.GetError() != nil {
			t.Fatalf("DecryptBatch item %d: %v", i, r.GetError())
		}
	}
	stream := c.Stream(ctx)
	if err := stream.Send(&alev1.StreamRequest{RequestId: "1", Operation: &alev1.StreamRequest_Decrypt{Decrypt: &alev1.DecryptRequest{Envelope: empty}}}); err != nil {
		t.Fatal(err)
	}
	if res, err := stream.Receive(); err != nil || res.GetError() != nil {
		t.Fatalf("Stream decrypt of an empty message: %v %v", err, res.GetError())
	}
	if err := stream.CloseRequest(); err != nil {
		t.Fatal(err)
	}
	if err := stream.CloseResponse(); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Rewrap(ctx, connect.NewRequest(&alev1.RewrapRequest{Envelope: empty, Key: fpRef("ctr-new")})); err != nil {
		t.Fatalf("Rewrap(empty message) err = %v, want nil", err)
	}
	for _, fp := range []string{"ctr-retired", "ctr-new"} {
		res, err := c.Resolve(ctx, connect.NewRequest(&alev1.ResolveRequest{Key: fpRef(fp)}))
		if err != nil {
			t.Fatal(err)
		}
		if u := res.Msg.GetKey().GetUsage(); u.GetDecryptCount() != 0 || u.GetEncryptCount() != 0 || u.GetLastDecryptTime() != nil || u.GetLastEncryptTime() != nil {
			t.Errorf("usage of %s after empty messages = %v, want none (no count, no last use)", fp, u)
		}
	}

	// A GCM message always carries its tag: opening a sealed empty
	// plaintext is real use.
	sealed, err := c.Encrypt(ctx, connect.NewRequest(&alev1.EncryptRequest{Key: fpRef("gcm-1")}))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Decrypt(ctx, connect.NewRequest(&alev1.DecryptRequest{Envelope: sealed.Msg.GetEnvelope()})); err != nil {
		t.Fatal(err)
	}
	res, err := c.Resolve(ctx, connect.NewRequest(&alev1.ResolveRequest{Key: fpRef("gcm-1")}))
	if err != nil {
		t.Fatal(err)
	}
	if u := res.Msg.GetKey().GetUsage(); u.GetDecryptCount() != 1 || u.GetLastDecryptTime() == nil || u.GetEncryptCount() != 0 || u.GetLastEncryptTime() != nil {
		t.Errorf("usage of gcm-1 = %v, want one decryption (the tag it verified) and no encryption (nothing was sealed)", u)
	}
}
