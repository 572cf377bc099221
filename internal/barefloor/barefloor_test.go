package barefloor_test

import (
	"bytes"
	"fmt"
	"net/http/httptest"
	"testing"

	alev1 "github.com/alecrypt/alecrypt/gen/ale/v1"
	"github.com/alecrypt/alecrypt/gen/ale/v1/alev1connect"
	"github.com/alecrypt/alecrypt/internal/barefloor"
	"github.com/alecrypt/alecrypt/internal/key/keytest"
	"github.com/alecrypt/alecrypt/internal/suite"
)

// TestStream: the bare Stream answers each message in order, a batch item
// by item, so that alegate can run on it as on alecryptd: what it seals
// opens again, and an item that does not open is that item's error alone.
func TestStream(t *testing.T) {
	t.Parallel()
	rec := keytest.Record("fp-bare")
	c, err := suite.Derive(rec)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewUnstartedServer(barefloor.Handler(rec.Fingerprint, c))
	srv.EnableHTTP2 = true
	srv.StartTLS()
	defer srv.Close()
	client := alev1connect.NewCryptoServiceClient(srv.Client(), srv.URL)
	stream := client.Stream(t.Context())
	defer stream.CloseResponse()

	send := func(req *alev1.StreamRequest) *alev1.StreamResponse {
		t.Helper()
		if err := stream.Send(req); err != nil {
			t.Fatal(err)
		}
		res, err := stream.Receive()
		if err != nil {
			t.Fatal(err)
		}
		if res.GetRequestId() != req.GetRequestId() {
			t.Fatalf("answer to %q names %q", req.GetRequestId(), res.GetRequestId())
		}
		return res
	}
	var sealed []*alev1.Envelope
	res := send(&alev1.StreamRequest{RequestId: "1", Operation: &alev1.StreamRequest_EncryptBatch{EncryptBatch: &alev1.EncryptBatchRequest{
		Items: []*alev1.EncryptRequest{{Plaintext: []byte("a")}, {Plaintext: []byte("bc")}},
	}}})
	for i, r := range res.GetEncryptBatch().GetResults() {
		env := r.GetResponse().GetEnvelope()
		if env.GetFingerprint() != "fp-bare" || len(env.GetIv()) != c.IVSize() {
			t.Fatalf("item %d sealed as %v", i, env)
		}
		sealed = append(sealed, env)
	}
	if len(sealed) != 2 {
		t.Fatalf("%d results for 2 items", len(sealed))
	}
	bad := &alev1.Envelope{Iv: []byte("short"), Fingerprint: "fp-bare", Message: []byte("x")}
	res = send(&alev1.StreamRequest{RequestId: "2", Operation: &alev1.StreamRequest_DecryptBatch{DecryptBatch: &alev1.DecryptBatchRequest{
		Items: []*alev1.DecryptRequest{{Envelope: sealed[1]}, {Envelope: bad}, {Envelope: sealed[0]}},
	}}})
	var got []string
	for _, r := range res.GetDecryptBatch().GetResults() {
		if e := r.GetError(); e != nil {
			got = append(got, "error")
			continue
		}
		got = append(got, string(r.GetResponse().GetPlaintext()))
	}
	if fmt.Sprint(got) != "[bc error a]" {
		t.Errorf("decrypted batch = %v, want [bc error a]", got)
	}
	res = send(&alev1.StreamRequest{RequestId: "3", Operation: &alev1.StreamRequest_Encrypt{Encrypt: &alev1.EncryptRequest{Plaintext: []byte("one")}}})
	res = send(&alev1.StreamRequest{RequestId: "4", Operation: &alev1.StreamRequest_Decrypt{Decrypt: &alev1.DecryptRequest{Envelope: res.GetEncrypt().GetEnvelope()}}})
	if !bytes.Equal(res.GetDecrypt().GetPlaintext(), []byte("one")) {
		t.Errorf("single decrypt = %q, want one", res.GetDecrypt().GetPlaintext())
	}
	if res := send(&alev1.StreamRequest{RequestId: "5"}); res.GetError() == nil {
		t.Errorf("a message without an operation got %v, want an item error", res)
	}
}
