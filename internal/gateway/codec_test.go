package gateway

import (
	"bytes"
	"testing"

	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	alev1 "github.com/alecrypt/alecrypt/gen/ale/v1"
)

// TestClientCodecDropsOnlyKeys: a Stream answer of every shape decodes as
// protobuf decodes it, with the KeyInfo of its results left out; other
// messages, unknown fields and item errors are untouched.
func TestClientCodecDropsOnlyKeys(t *testing.T) {
	t.Parallel()
	key := &alev1.KeyInfo{Fingerprint: "k-1", Aliases: []string{"store-1", "store-2"}, Version: 3,
		CreatedAt: timestamppb.New(timestamppb.Now().AsTime()), Source: "local", Primary: true}
	env := &alev1.Envelope{Iv: bytes.Repeat([]byte{1}, 16), Fingerprint: "k-1", Message: bytes.Repeat([]byte("m"), 1000)}
	enc := func() *alev1.EncryptResponse { return &alev1.EncryptResponse{Envelope: env, Key: key} }
	dec := func() *alev1.DecryptResponse {
		return &alev1.DecryptResponse{Plaintext: bytes.Repeat([]byte("p"), 300), Key: key}
	}
	itemErr := &alev1.ItemError{Code: "not_found", Message: "unknown key", Detail: &alev1.ErrorDetail{ErrorCode: 2}}
	for _, tc := range []struct {
		name string
		res  *alev1.StreamResponse
	}{
		{"encrypt", &alev1.StreamResponse{RequestId: "1", Result: &alev1.StreamResponse_Encrypt{Encrypt: enc()}}},
		{"decrypt", &alev1.StreamResponse{RequestId: "2", Result: &alev1.StreamResponse_Decrypt{Decrypt: dec()}}},
		{"error", &alev1.StreamResponse{RequestId: "3", Result: &alev1.StreamResponse_Error{Error: itemErr}}},
		{"no result", &alev1.StreamResponse{RequestId: "4"}},
		{"encrypt batch", &alev1.StreamResponse{RequestId: "5", Result: &alev1.StreamResponse_EncryptBatch{EncryptBatch: &alev1.EncryptBatchResponse{Results: []*alev1.EncryptResult{
			{Result: &alev1.EncryptResult_Response{Response: enc()}},
			{Result: &alev1.EncryptResult_Error{Error: itemErr}},
			{Result: &alev1.EncryptResult_Response{Response: &alev1.EncryptResponse{}}},
		}}}}},
		{"decrypt batch", &alev1.StreamResponse{RequestId: "6", Result: &alev1.StreamResponse_DecryptBatch{DecryptBatch: &alev1.DecryptBatchResponse{Results: []*alev1.DecryptResult{
			{Result: &alev1.DecryptResult_Error{Error: itemErr}},
			{Result: &alev1.DecryptResult_Response{Response: dec()}},
			{},
		}}}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			data, err := streamCodec{}.Marshal(tc.res)
			if err != nil {
				t.Fatal(err)
			}
			// A field from a newer alecryptd.
			data = protowire.AppendVarint(protowire.AppendTag(data, 99, protowire.VarintType), 7)
			var got alev1.StreamResponse
			if err := (streamCodec{}).Unmarshal(data, &got); err != nil {
				t.Fatal(err)
			}
			var want alev1.StreamResponse
			if err := proto.Unmarshal(data, &want); err != nil {
				t.Fatal(err)
			}
			clearKeys(&want)
			if !proto.Equal(&got, &want) {
				t.Errorf("decoded %v\nwant %v", &got, &want)
			}
			if len(got.ProtoReflect().GetUnknown()) == 0 {
				t.Error("an unknown field was dropped")
			}
			if tc.res.GetEncrypt() != nil && got.GetEncrypt().GetKey() != nil {
				t.Error("the result's key was decoded")
			}
		})
	}
}

func clearKeys(res *alev1.StreamResponse) {
	if r := res.GetEncrypt(); r != nil {
		r.Key = nil
	}
	if r := res.GetDecrypt(); r != nil {
		r.Key = nil
	}
	for _, it := range res.GetEncryptBatch().GetResults() {
		if r := it.GetResponse(); r != nil {
			r.Key = nil
		}
	}
	for _, it := range res.GetDecryptBatch().GetResults() {
		if r := it.GetResponse(); r != nil {
			r.Key = nil
		}
	}
}

// TestClientCodecOtherMessages: anything but a Stream answer decodes in
// full (a Resolve answer is its KeyInfo), and bad input fails as protobuf
// fails.
func TestClientCodecOtherMessages(t *testing.T) {
	t.Parallel()
	in := &alev1.ResolveResponse{Key: &alev1.KeyInfo{Fingerprint: "k-1", Aliases: []string{"a"}}}
	data, err := proto.Marshal(in)
	if err != nil {
		t.Fatal(err)
	}
	var got alev1.ResolveResponse
	if err := (streamCodec{}).Unmarshal(data, &got); err != nil || !proto.Equal(&got, in) {
		t.Errorf("ResolveResponse decoded as %v, %v; want %v", &got, err, in)
	}
	for _, bad := range [][]byte{{0x12, 0x05, 0x0a}, {0xff}, {0x2a, 0x02, 0x0a, 0x09}} {
		if err := (streamCodec{}).Unmarshal(bad, &alev1.StreamResponse{}); err == nil {
			t.Errorf("Unmarshal(%x) = nil, want an error", bad)
		}
	}
}

// BenchmarkStreamAnswer decodes an answer of five 1 KiB decrypt results,
// as the gateway's codec and as plain protobuf.
func BenchmarkStreamAnswer(b *testing.B) {
	key := &alev1.KeyInfo{Fingerprint: "k-1", Aliases: []string{"store-1"}, Version: 3,
		CreatedAt: timestamppb.New(timestamppb.Now().AsTime()), Source: "local", Primary: true}
	res := &alev1.DecryptBatchResponse{}
	for range 5 {
		res.Results = append(res.Results, &alev1.DecryptResult{Result: &alev1.DecryptResult_Response{
			Response: &alev1.DecryptResponse{Plaintext: bytes.Repeat([]byte("p"), 1024), Key: key}}})
	}
	data, err := proto.Marshal(&alev1.StreamResponse{RequestId: "a1", Result: &alev1.StreamResponse_DecryptBatch{DecryptBatch: res}})
	if err != nil {
		b.Fatal(err)
	}
	for _, c := range []struct {
		name      string
		unmarshal func([]byte, any) error
	}{
		{"codec", streamCodec{}.Unmarshal},
		{"proto", func(d []byte, m any) error { return proto.Unmarshal(d, m.(proto.Message)) }},
	} {
		b.Run(c.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				var got alev1.StreamResponse
				if err := c.unmarshal(data, &got); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
