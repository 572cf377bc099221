package api_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"connectrpc.com/connect"
	"github.com/google/go-cmp/cmp"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/testing/protocmp"

	alev1 "github.com/alecrypt/alecrypt/gen/ale/v1"
	"github.com/alecrypt/alecrypt/gen/ale/v1/alev1connect"
	"github.com/alecrypt/alecrypt/internal/api"
	"github.com/alecrypt/alecrypt/internal/engine"
	"github.com/alecrypt/alecrypt/internal/key"
	"github.com/alecrypt/alecrypt/internal/keyring"
	"github.com/alecrypt/alecrypt/internal/suite"
	"github.com/alecrypt/alecrypt/service/secret"
)

// canarySecret is planted in every key; no response, error or log line may
// ever contain it or the key derived from it.
const canarySecret = "CANARY-5ecret-9f8e7d6c"

const maxRequestBytes = 64 << 10

var t0 = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

func record(fp string, alg key.Algorithm, state key.State, created time.Time, aliases ...string) key.Record {
	r := key.Record{
		Fingerprint: fp,
		Aliases:     aliases,
		Algorithm:   alg,
		Secret:      secret.FromString(canarySecret + fp),
		KDF:         key.KDF{Name: key.KDFPBKDF2SHA256, Salt: "salt-" + fp, Iterations: key.MinIterations},
		State:       state,
		Version:     1,
		CreatedAt:   created,
		Source:      key.SourceLocal,
	}
	if alg == key.AES256CTR {
		r.CounterBits = 64
	}
	return r
}

func testRecords() []key.Record {
	return []key.Record{
		record("ctr-old", key.AES256CTR, key.Active, t0, "store-1"),
		record("ctr-new", key.AES256CTR, key.Active, t0.Add(time.Hour), "store-1"),
		record("ctr-retired", key.AES256CTR, key.DecryptOnly, t0, "store-2"),
		record("ctr-disabled", key.AES256CTR, key.Disabled, t0, "store-3"),
		record("gcm-1", key.AES256GCM, key.Active, t0, "gcm"),
	}
}

type fixture struct {
	eng   *engine.Engine
	url   string
	logs  *syncBuffer
	conns map[string]alev1connect.CryptoServiceClient
	keys  map[string]alev1connect.KeyServiceClient
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}
func (s *syncBuffer) String() string { s.mu.Lock(); defer s.mu.Unlock(); return s.b.String() }

// newFixture serves the real handler over h2c, as alecryptd does, and builds
// clients for the Connect and gRPC protocols.
func newFixture(t *testing.T) *fixture {
	t.Helper()
	ring := keyring.New()
	if _, _, err := ring.Replace(testRecords()); err != nil {
		t.Fatalf("Replace: %v", err)
	}
	eng := engine.New(ring, engine.WithDefaultAlias("store-1"))
	logs := &syncBuffer{}
	log := slog.New(slog.NewJSONHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	srv := httptest.NewUnstartedServer(api.NewHandler(eng, ring, api.Options{MaxRequestBytes: maxRequestBytes, Logger: log}))
	srv.Config.Protocols = new(http.Protocols)
	srv.Config.Protocols.SetHTTP1(true)
	srv.Config.Protocols.SetUnencryptedHTTP2(true)
	srv.Start()
	t.Cleanup(srv.Close)

	var h2c http.Protocols
	h2c.SetUnencryptedHTTP2(true)
	client := &http.Client{Transport: &http.Transport{Protocols: &h2c}}
	f := &fixture{eng: eng, url: srv.URL, logs: logs, conns: map[string]alev1connect.CryptoServiceClient{}, keys: map[string]alev1connect.KeyServiceClient{}}
	for name, opts := range map[string][]connect.ClientOption{
		"connect": nil,
		"grpc":    {connect.WithGRPC()},
	} {
		f.conns[name] = alev1connect.NewCryptoServiceClient(client, srv.URL, opts...)
		f.keys[name] = alev1connect.NewKeyServiceClient(client, srv.URL, opts...)
	}
	return f
}

func fpRef(fp string) *alev1.KeyRef {
	return &alev1.KeyRef{Ref: &alev1.KeyRef_Fingerprint{Fingerprint: fp}}
}
func aliasRef(a string) *alev1.KeyRef {
	return &alev1.KeyRef{Ref: &alev1.KeyRef_Alias{Alias: a}}
}

// forEachProtocol runs fn once over Connect and once over gRPC.
func forEachProtocol(t *testing.T, f *fixture, fn func(t *testing.T, c alev1connect.CryptoServiceClient, k alev1connect.KeyServiceClient)) {
	for _, name := range []string{"connect", "grpc"} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			fn(t, f.conns[name], f.keys[name])
		})
	}
}

func TestEncryptDecryptRoundTrip(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	forEachProtocol(t, f, func(t *testing.T, c alev1connect.CryptoServiceClient, _ alev1connect.KeyServiceClient) {
		ctx := context.Background()
		tests := []struct {
			name    string
			ref     *alev1.KeyRef
			aad     []byte
			wantFP  string
			wantIV  int
			plain   []byte
			wantAlg alev1.Algorithm
		}{
			{"default key is store-1's primary", nil, nil, "ctr-new", 16, []byte(`{"order":1}`), alev1.Algorithm_ALGORITHM_AES_256_CTR},
			{"alias picks the newest active key", aliasRef("store-1"), nil, "ctr-new", 16, []byte("x"), alev1.Algorithm_ALGORITHM_AES_256_CTR},
			{"older key by fingerprint", fpRef("ctr-old"), nil, "ctr-old", 16, bytes.Repeat([]byte{7}, 4097), alev1.Algorithm_ALGORITHM_AES_256_CTR},
			{"empty plaintext", fpRef("ctr-old"), nil, "ctr-old", 16, nil, alev1.Algorithm_ALGORITHM_AES_256_CTR},
			{"gcm with aad", aliasRef("gcm"), []byte("order-42"), "gcm-1", 12, []byte("café"), alev1.Algorithm_ALGORITHM_AES_256_GCM},
		}
		for _, tc := range tests {
			enc, err := c.Encrypt(ctx, connect.NewRequest(&alev1.EncryptRequest{Plaintext: tc.plain, Key: tc.ref, AssociatedData: tc.aad}))
			if err != nil {
				t.Fatalf("%s: Encrypt err = %v", tc.name, err)
			}
			env := enc.Msg.GetEnvelope()
			if env.GetFingerprint() != tc.wantFP || len(env.GetIv()) != tc.wantIV || enc.Msg.GetKey().GetAlgorithm() != tc.wantAlg {
				t.Fatalf("%s: Encrypt = fp %q, iv %d bytes, alg %v; want %q, %d, %v", tc.name, env.GetFingerprint(), len(env.GetIv()), enc.Msg.GetKey().GetAlgorithm(), tc.wantFP, tc.wantIV, tc.wantAlg)
			}
			// Only a plaintext of several bytes: a ciphertext holds a given
			// 1-byte plaintext by chance once in 256 runs.
			if len(tc.plain) >= 4 && bytes.Contains(env.GetMessage(), tc.plain) {
				t.Fatalf("%s: ciphertext contains the plaintext", tc.name)
			}
			dec, err := c.Decrypt(ctx, connect.NewRequest(&alev1.DecryptRequest{Envelope: env, AssociatedData: tc.aad}))
			if err != nil {
				t.Fatalf("%s: Decrypt err = %v", tc.name, err)
			}
			if !bytes.Equal(dec.Msg.GetPlaintext(), tc.plain) || dec.Msg.GetKey().GetFingerprint() != tc.wantFP {
				t.Fatalf("%s: Decrypt = %q under %q, want %q under %q", tc.name, dec.Msg.GetPlaintext(), dec.Msg.GetKey().GetFingerprint(), tc.plain, tc.wantFP)
			}
		}
	})
}

func TestRetiredKeyStillDecrypts(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	// Seal under the retired key with the engine's own cipher, as old traffic
	// would have been, then decrypt through the API.
	ring := keyring.New()
	recs := testRecords()
	recs[2].State = key.Active
	if _, _, err := ring.Replace(recs); err != nil {
		t.Fatal(err)
	}
	env, _, err := engine.New(ring).Encrypt(context.Background(), engine.Ref{Fingerprint: "ctr-retired"}, []byte("old order"), nil)
	if err != nil {
		t.Fatal(err)
	}
	forEachProtocol(t, f, func(t *testing.T, c alev1connect.CryptoServiceClient, _ alev1connect.KeyServiceClient) {
		res, err := c.Decrypt(context.Background(), connect.NewRequest(&alev1.DecryptRequest{Envelope: &alev1.Envelope{Iv: env.IV, Fingerprint: env.Fingerprint, Message: env.Message}}))
		if err != nil || string(res.Msg.GetPlaintext()) != "old order" {
			t.Fatalf("Decrypt under decrypt-only key = %q, %v; want \"old order\"", res.Msg.GetPlaintext(), err)
		}
		if got := res.Msg.GetKey().GetState(); got != alev1.KeyState_KEY_STATE_DECRYPT_ONLY {
			t.Fatalf("Decrypt key state = %v, want DECRYPT_ONLY", got)
		}
	})
}

func TestResolve(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	forEachProtocol(t, f, func(t *testing.T, c alev1connect.CryptoServiceClient, _ alev1connect.KeyServiceClient) {
		res, err := c.Resolve(context.Background(), connect.NewRequest(&alev1.ResolveRequest{Key: aliasRef("store-1")}))
		if err != nil {
			t.Fatalf("Resolve err = %v", err)
		}
		want := &alev1.KeyInfo{
			Fingerprint: "ctr-new", Aliases: []string{"store-1"}, Algorithm: alev1.Algorithm_ALGORITHM_AES_256_CTR,
			State: alev1.KeyState_KEY_STATE_ACTIVE, Version: 1, Source: "local", Primary: true, CounterBits: 64,
			Usage: &alev1.KeyUsage{}, // never used by this test's fixture
		}
		got := proto.CloneOf(res.Msg.GetKey())
		if !got.GetCreatedAt().AsTime().Equal(t0.Add(time.Hour)) {
			t.Errorf("created_at = %v, want %v", got.GetCreatedAt().AsTime(), t0.Add(time.Hour))
		}
		got.CreatedAt = nil
		if diff := cmp.Diff(want, got, protocmp.Transform()); diff != "" {
			t.Errorf("Resolve(store-1) mismatch (-want +got):\n%s", diff)
		}
		old, err := c.Resolve(context.Background(), connect.NewRequest(&alev1.ResolveRequest{Key: fpRef("ctr-old")}))
		if err != nil || old.Msg.GetKey().GetPrimary() {
			t.Errorf("Resolve(ctr-old) = primary %v, %v; want a non-primary key", old.Msg.GetKey().GetPrimary(), err)
		}
	})
}

// aleCode extracts the ALE error code from a Connect error's details.
func aleCode(t *testing.T, err error) int32 {
	t.Helper()
	var ce *connect.Error
	if !errors.As(err, &ce) {
		t.Fatalf("err = %v, want a *connect.Error", err)
	}
	for _, d := range ce.Details() {
		v, derr := d.Value()
		if derr != nil {
			t.Fatalf("detail: %v", derr)
		}
		if ed, ok := v.(*alev1.ErrorDetail); ok {
			return ed.GetErrorCode()
		}
	}
	return 0
}

func TestBadInputs(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	good, _, err := f.eng.Encrypt(context.Background(), engine.Ref{Alias: "gcm"}, []byte(`{"a":1}`), nil)
	if err != nil {
		t.Fatal(err)
	}
	tampered := bytes.Clone(good.Message)
	tampered[len(tampered)-1] ^= 1
	ctrEnv, _, err := f.eng.Encrypt(context.Background(), engine.Ref{Fingerprint: "ctr-old"}, []byte("not json"), nil)
	if err != nil {
		t.Fatal(err)
	}
	iv := func(n int) []byte { return make([]byte, n) }
	decrypt := func(env *alev1.Envelope) func(context.Context, alev1connect.CryptoServiceClient) error {
		return func(ctx context.Context, c alev1connect.CryptoServiceClient) error {
			_, err := c.Decrypt(ctx, connect.NewRequest(&alev1.DecryptRequest{Envelope: env}))
			return err
		}
	}
	encrypt := func(req *alev1.EncryptRequest) func(context.Context, alev1connect.CryptoServiceClient) error {
		return func(ctx context.Context, c alev1connect.CryptoServiceClient) error {
			_, err := c.Encrypt(ctx, connect.NewRequest(req))
			return err
		}
	}
	tests := []struct {
		name     string
		call     func(context.Context, alev1connect.CryptoServiceClient) error
		wantCode connect.Code
		wantALE  int32
	}{
		{"missing envelope", decrypt(nil), connect.CodeInvalidArgument, 1},
		{"missing fingerprint", decrypt(&alev1.Envelope{Iv: iv(16)}), connect.CodeInvalidArgument, 1},
		{"missing iv", decrypt(&alev1.Envelope{Fingerprint: "ctr-old"}), connect.CodeInvalidArgument, 1},
		{"ctr iv of 8 bytes", decrypt(&alev1.Envelope{Iv: iv(8), Fingerprint: "ctr-old"}), connect.CodeInvalidArgument, 1},
		{"ctr iv of 15 bytes", decrypt(&alev1.Envelope{Iv: iv(15), Fingerprint: "ctr-old"}), connect.CodeInvalidArgument, 1},
		{"ctr iv of 17 bytes", decrypt(&alev1.Envelope{Iv: iv(17), Fingerprint: "ctr-old"}), connect.CodeInvalidArgument, 1},
		{"gcm iv of 16 bytes", decrypt(&alev1.Envelope{Iv: iv(16), Fingerprint: "gcm-1", Message: tampered}), connect.CodeInvalidArgument, 1},
		{"unknown fingerprint", decrypt(&alev1.Envelope{Iv: iv(16), Fingerprint: "nope"}), connect.CodeNotFound, 2},
		{"disabled key decrypt", decrypt(&alev1.Envelope{Iv: iv(16), Fingerprint: "ctr-disabled"}), connect.CodeFailedPrecondition, 2},
		{"gcm tag flipped", decrypt(&alev1.Envelope{Iv: good.IV, Fingerprint: good.Fingerprint, Message: tampered}), connect.CodeInvalidArgument, 2},
		{"gcm truncated", decrypt(&alev1.Envelope{Iv: good.IV, Fingerprint: good.Fingerprint, Message: good.Message[:5]}), connect.CodeInvalidArgument, 2},
		{"expect json on non-json", func(ctx context.Context, c alev1connect.CryptoServiceClient) error {
			_, err := c.Decrypt(ctx, connect.NewRequest(&alev1.DecryptRequest{
				Envelope: &alev1.Envelope{Iv: ctrEnv.IV, Fingerprint: ctrEnv.Fingerprint, Message: ctrEnv.Message},
				Expect:   alev1.PlaintextFormat_PLAINTEXT_FORMAT_JSON,
			}))
			return err
		}, connect.CodeInvalidArgument, 2},
		{"aad with ctr", func(ctx context.Context, c alev1connect.CryptoServiceClient) error {
			_, err := c.Decrypt(ctx, connect.NewRequest(&alev1.DecryptRequest{
				Envelope:       &alev1.Envelope{Iv: ctrEnv.IV, Fingerprint: ctrEnv.Fingerprint, Message: ctrEnv.Message},
				AssociatedData: []byte("x"),
			}))
			return err
		}, connect.CodeInvalidArgument, 1},
		{"unknown alias", encrypt(&alev1.EncryptRequest{Key: aliasRef("store-9")}), connect.CodeNotFound, 2},
		{"unknown fingerprint encrypt", encrypt(&alev1.EncryptRequest{Key: fpRef("nope")}), connect.CodeNotFound, 2},
		{"disabled key encrypt", encrypt(&alev1.EncryptRequest{Key: fpRef("ctr-disabled")}), connect.CodeFailedPrecondition, 2},
		{"decrypt-only key asked to encrypt", encrypt(&alev1.EncryptRequest{Key: fpRef("ctr-retired")}), connect.CodeFailedPrecondition, 2},
		{"alias with only a retired key", encrypt(&alev1.EncryptRequest{Key: aliasRef("store-2")}), connect.CodeFailedPrecondition, 2},
		{"aad with ctr encrypt", encrypt(&alev1.EncryptRequest{Key: fpRef("ctr-old"), AssociatedData: []byte("x")}), connect.CodeInvalidArgument, 1},
		{"oversized request", encrypt(&alev1.EncryptRequest{Plaintext: make([]byte, maxRequestBytes+1)}), connect.CodeResourceExhausted, 0},
		{"unknown plaintext format", func(ctx context.Context, c alev1connect.CryptoServiceClient) error {
			_, err := c.Decrypt(ctx, connect.NewRequest(&alev1.DecryptRequest{
				Envelope: &alev1.Envelope{Iv: ctrEnv.IV, Fingerprint: ctrEnv.Fingerprint},
				Expect:   alev1.PlaintextFormat(99),
			}))
			return err
		}, connect.CodeInvalidArgument, 1},
	}
	for _, proto := range []string{"connect", "grpc"} {
		for _, tc := range tests {
			t.Run(proto+"/"+tc.name, func(t *testing.T) {
				t.Parallel()
				err := tc.call(context.Background(), f.conns[proto])
				if got := connect.CodeOf(err); err == nil || got != tc.wantCode {
					t.Fatalf("err = %v, want code %v", err, tc.wantCode)
				}
				if got := aleCode(t, err); got != tc.wantALE {
					t.Fatalf("ALE code = %d, want %d (err %v)", got, tc.wantALE, err)
				}
			})
		}
	}
	// Every decryption failure says the same thing: no oracle.
	var msgs []string
	for _, call := range []func(context.Context, alev1connect.CryptoServiceClient) error{tests[9].call, tests[10].call, tests[11].call} {
		var ce *connect.Error
		if errors.As(call(context.Background(), f.conns["connect"]), &ce) {
			msgs = append(msgs, ce.Message())
		}
	}
	if len(msgs) != 3 || msgs[0] != msgs[1] || msgs[1] != msgs[2] {
		t.Errorf("decryption failure messages differ: %q", msgs)
	}
}

func TestBatch(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	forEachProtocol(t, f, func(t *testing.T, c alev1connect.CryptoServiceClient, _ alev1connect.KeyServiceClient) {
		ctx := context.Background()
		enc, err := c.EncryptBatch(ctx, connect.NewRequest(&alev1.EncryptBatchRequest{Items: []*alev1.EncryptRequest{
			{Plaintext: []byte("one"), Key: aliasRef("store-1")},
			{Plaintext: []byte("two"), Key: fpRef("ctr-disabled")}, // the bad one
			{Plaintext: []byte("three"), Key: aliasRef("gcm")},
		}}))
		if err != nil {
			t.Fatalf("EncryptBatch err = %v", err)
		}
		rs := enc.Msg.GetResults()
		if len(rs) != 3 || rs[0].GetResponse() == nil || rs[2].GetResponse() == nil {
			t.Fatalf("EncryptBatch results = %v, want items 0 and 2 to succeed", rs)
		}
		if e := rs[1].GetError(); e.GetCode() != "failed_precondition" || e.GetDetail().GetErrorCode() != 2 || e.GetDetail().GetMessage() != "Unable to decrypt payload" {
			t.Fatalf("EncryptBatch item 1 error = %v, want failed_precondition with ALE 2", e)
		}
		items := []*alev1.DecryptRequest{
			{Envelope: rs[0].GetResponse().GetEnvelope()},
			{Envelope: &alev1.Envelope{Iv: make([]byte, 3), Fingerprint: "ctr-old"}}, // bad IV
			{Envelope: rs[2].GetResponse().GetEnvelope()},
			{Envelope: &alev1.Envelope{Iv: make([]byte, 16), Fingerprint: "gone"}}, // unknown key
		}
		dec, err := c.DecryptBatch(ctx, connect.NewRequest(&alev1.DecryptBatchRequest{Items: items}))
		if err != nil {
			t.Fatalf("DecryptBatch err = %v", err)
		}
		ds := dec.Msg.GetResults()
		if len(ds) != 4 || string(ds[0].GetResponse().GetPlaintext()) != "one" || string(ds[2].GetResponse().GetPlaintext()) != "three" {
			t.Fatalf("DecryptBatch results = %v, want one and three", ds)
		}
		if e := ds[1].GetError(); e.GetCode() != "invalid_argument" || e.GetDetail().GetErrorCode() != 1 {
			t.Fatalf("DecryptBatch item 1 error = %v, want invalid_argument with ALE 1", e)
		}
		if e := ds[3].GetError(); e.GetCode() != "not_found" || e.GetDetail().GetErrorCode() != 2 {
			t.Fatalf("DecryptBatch item 3 error = %v, want not_found with ALE 2", e)
		}
		_, err = c.EncryptBatch(ctx, connect.NewRequest(&alev1.EncryptBatchRequest{Items: make([]*alev1.EncryptRequest, api.MaxBatchItems+1)}))
		if connect.CodeOf(err) != connect.CodeResourceExhausted {
			t.Fatalf("EncryptBatch of %d items err = %v, want resource_exhausted", api.MaxBatchItems+1, err)
		}
	})
}

func TestStream(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	forEachProtocol(t, f, func(t *testing.T, c alev1connect.CryptoServiceClient, _ alev1connect.KeyServiceClient) {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		s := c.Stream(ctx)
		send := func(r *alev1.StreamRequest) {
			t.Helper()
			if err := s.Send(r); err != nil {
				t.Fatalf("Send: %v", err)
			}
		}
		recv := func() *alev1.StreamResponse {
			t.Helper()
			r, err := s.Receive()
			if err != nil {
				t.Fatalf("Receive: %v", err)
			}
			return r
		}
		send(&alev1.StreamRequest{RequestId: "e1", Operation: &alev1.StreamRequest_Encrypt{Encrypt: &alev1.EncryptRequest{Plaintext: []byte("frame-1")}}})
		r := recv()
		if r.GetRequestId() != "e1" || r.GetEncrypt().GetEnvelope() == nil {
			t.Fatalf("response to e1 = %v", r)
		}
		send(&alev1.StreamRequest{RequestId: "bad", Operation: &alev1.StreamRequest_Decrypt{Decrypt: &alev1.DecryptRequest{Envelope: &alev1.Envelope{Iv: make([]byte, 16), Fingerprint: "nope"}}}})
		if r := recv(); r.GetRequestId() != "bad" || r.GetError().GetCode() != "not_found" || r.GetError().GetDetail().GetErrorCode() != 2 {
			t.Fatalf("response to bad = %v, want not_found ALE 2", r)
		}
		send(&alev1.StreamRequest{RequestId: "empty"})
		if r := recv(); r.GetRequestId() != "empty" || r.GetError().GetDetail().GetErrorCode() != 1 {
			t.Fatalf("response to empty = %v, want ALE 1", r)
		}
		// A batch rides one stream message; its bad item fails alone.
		send(&alev1.StreamRequest{RequestId: "b1", Operation: &alev1.StreamRequest_DecryptBatch{DecryptBatch: &alev1.DecryptBatchRequest{Items: []*alev1.DecryptRequest{
			{Envelope: r.GetEncrypt().GetEnvelope()},
			{Envelope: &alev1.Envelope{Iv: make([]byte, 16), Fingerprint: "nope"}},
		}}}})
		if b := recv(); b.GetRequestId() != "b1" || len(b.GetDecryptBatch().GetResults()) != 2 ||
			string(b.GetDecryptBatch().GetResults()[0].GetResponse().GetPlaintext()) != "frame-1" ||
			b.GetDecryptBatch().GetResults()[1].GetError().GetCode() != "not_found" {
			t.Fatalf("response to batch b1 = %v", b)
		}
		send(&alev1.StreamRequest{RequestId: "b2", Operation: &alev1.StreamRequest_EncryptBatch{EncryptBatch: &alev1.EncryptBatchRequest{Items: make([]*alev1.EncryptRequest, api.MaxBatchItems+1)}}})
		if b := recv(); b.GetRequestId() != "b2" || b.GetError().GetCode() != "resource_exhausted" {
			t.Fatalf("response to an oversized batch = %v, want resource_exhausted", b)
		}
		// The stream survived the bad items.
		send(&alev1.StreamRequest{RequestId: "d1", Operation: &alev1.StreamRequest_Decrypt{Decrypt: &alev1.DecryptRequest{Envelope: r.GetEncrypt().GetEnvelope()}}})
		if r := recv(); r.GetRequestId() != "d1" || string(r.GetDecrypt().GetPlaintext()) != "frame-1" {
			t.Fatalf("response to d1 = %v, want frame-1", r)
		}
		if err := s.CloseRequest(); err != nil {
			t.Fatal(err)
		}
		if _, err := s.Receive(); !errors.Is(err, io.EOF) {
			t.Fatalf("Receive after close = %v, want io.EOF", err)
		}
		if err := s.CloseResponse(); err != nil {
			t.Fatal(err)
		}
	})
}

func TestListKeysPages(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	forEachProtocol(t, f, func(t *testing.T, _ alev1connect.CryptoServiceClient, k alev1connect.KeyServiceClient) {
		var got []string
		token := ""
		for pages := 0; ; pages++ {
			if pages > 5 {
				t.Fatal("paging does not end")
			}
			res, err := k.ListKeys(context.Background(), connect.NewRequest(&alev1.ListKeysRequest{PageSize: 2, PageToken: token}))
			if err != nil {
				t.Fatalf("ListKeys err = %v", err)
			}
			if len(res.Msg.GetKeys()) > 2 {
				t.Fatalf("page of %d keys, want at most 2", len(res.Msg.GetKeys()))
			}
			for _, ki := range res.Msg.GetKeys() {
				got = append(got, ki.GetFingerprint())
			}
			if token = res.Msg.GetNextPageToken(); token == "" {
				break
			}
		}
		want := []string{"ctr-disabled", "ctr-new", "ctr-old", "ctr-retired", "gcm-1"}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("ListKeys fingerprints (-want +got):\n%s", diff)
		}
		res, err := k.ListKeys(context.Background(), connect.NewRequest(&alev1.ListKeysRequest{Alias: "store-1"}))
		if err != nil || len(res.Msg.GetKeys()) != 2 {
			t.Errorf("ListKeys(alias store-1) = %v, %v; want 2 keys", res.Msg.GetKeys(), err)
		}
		if _, err := k.ListKeys(context.Background(), connect.NewRequest(&alev1.ListKeysRequest{PageToken: "%%"})); connect.CodeOf(err) != connect.CodeInvalidArgument {
			t.Errorf("ListKeys(bad token) err = %v, want invalid_argument", err)
		}
	})
}

// TestNoKeyMaterialLeaks drives every RPC, good and bad, and scans every
// response, error and log line for the canary secret and the keys derived
// from it, in raw, hex and base64 form.
func TestNoKeyMaterialLeaks(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	var needles []string
	for _, r := range testRecords() {
		needles = append(needles, string(r.Secret.Expose()), base64.StdEncoding.EncodeToString(r.Secret.Expose()))
		dk, err := suite.DeriveKey(r)
		if err != nil {
			t.Fatal(err)
		}
		needles = append(needles, string(dk), hex.EncodeToString(dk), base64.StdEncoding.EncodeToString(dk), base64.RawStdEncoding.EncodeToString(dk))
	}
	needles = append(needles, canarySecret)
	var seen strings.Builder
	record := func(m proto.Message, err error) {
		if m != nil {
			b, _ := protojson.Marshal(m)
			seen.Write(b)
			b, _ = proto.Marshal(m)
			seen.Write(b)
		}
		if err != nil {
			seen.WriteString(err.Error())
			var ce *connect.Error
			if errors.As(err, &ce) {
				for _, d := range ce.Details() {
					seen.Write(d.Bytes())
				}
				for k, v := range ce.Meta() {
					seen.WriteString(k + strings.Join(v, ","))
				}
			}
		}
	}
	ctx := context.Background()
	for _, c := range f.conns {
		for _, ref := range []*alev1.KeyRef{nil, aliasRef("gcm"), fpRef("ctr-old"), fpRef("ctr-disabled"), fpRef("ctr-retired"), fpRef("nope")} {
			enc, err := c.Encrypt(ctx, connect.NewRequest(&alev1.EncryptRequest{Plaintext: []byte("p"), Key: ref}))
			if enc != nil {
				record(enc.Msg, err)
				dec, err := c.Decrypt(ctx, connect.NewRequest(&alev1.DecryptRequest{Envelope: enc.Msg.GetEnvelope(), Expect: alev1.PlaintextFormat_PLAINTEXT_FORMAT_JSON}))
				record(msgOf(dec), err)
			} else {
				record(nil, err)
			}
			res, err := c.Resolve(ctx, connect.NewRequest(&alev1.ResolveRequest{Key: ref}))
			record(msgOf(res), err)
			if enc != nil {
				rw, err := c.Rewrap(ctx, connect.NewRequest(&alev1.RewrapRequest{Envelope: enc.Msg.GetEnvelope(), Key: ref}))
				record(msgOf(rw), err)
			}
		}
		for _, fp := range []string{"ctr-old", "gcm-1", "ctr-disabled"} {
			dec, err := c.Decrypt(ctx, connect.NewRequest(&alev1.DecryptRequest{Envelope: &alev1.Envelope{Iv: make([]byte, 16), Fingerprint: fp, Message: []byte("xxxxxxxxxxxxxxxxxxxxx")}}))
			record(msgOf(dec), err)
		}
	}
	for _, k := range f.keys {
		res, err := k.ListKeys(ctx, connect.NewRequest(&alev1.ListKeysRequest{}))
		record(msgOf(res), err)
	}
	if !strings.Contains(f.logs.String(), "call failed") {
		t.Fatal("no failure was logged; the scan would prove nothing")
	}
	for _, haystack := range map[string]string{"responses and errors": seen.String(), "logs": f.logs.String()} {
		for _, n := range needles {
			if strings.Contains(haystack, n) {
				t.Fatalf("key material found in output")
			}
		}
	}
}

func msgOf[T any](r *connect.Response[T]) proto.Message {
	if r == nil {
		return nil
	}
	m, _ := any(r.Msg).(proto.Message)
	return m
}
