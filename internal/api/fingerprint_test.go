package api_test

import (
	"context"
	"strings"
	"testing"

	"connectrpc.com/connect"

	alev1 "github.com/alecrypt/alecrypt/gen/ale/v1"
	"github.com/alecrypt/alecrypt/gen/ale/v1/alev1connect"
)

// TestInvalidFingerprintIsUnusableHeader: a request naming a fingerprint no
// key can have (one shaped like a path) is InvalidArgument with ALE 1, the
// unusable-header answer, on every operation and both protocols; never the
// NotFound of an unknown key, and the value is not echoed.
func TestInvalidFingerprintIsUnusableHeader(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	ctx := context.Background()
	good, err := f.conns["connect"].Encrypt(ctx, connect.NewRequest(&alev1.EncryptRequest{Key: fpRef("ctr-old"), Plaintext: []byte("x")}))
	if err != nil {
		t.Fatal(err)
	}
	iv := good.Msg.GetEnvelope().GetIv()
	for _, fp := range []string{"z/../victim", "../../other-app/x", "x/y", "..", "fp 1"} {
		forEachProtocol(t, f, func(t *testing.T, c alev1connect.CryptoServiceClient, _ alev1connect.KeyServiceClient) {
			env := &alev1.Envelope{Iv: iv, Fingerprint: fp, Message: []byte("x")}
			for _, call := range []struct {
				name string
				do   func() error
			}{
				{"Encrypt", func() error {
					_, err := c.Encrypt(ctx, connect.NewRequest(&alev1.EncryptRequest{Key: fpRef(fp), Plaintext: []byte("x")}))
					return err
				}},
				{"Decrypt", func() error {
					_, err := c.Decrypt(ctx, connect.NewRequest(&alev1.DecryptRequest{Envelope: env}))
					return err
				}},
				{"Resolve", func() error {
					_, err := c.Resolve(ctx, connect.NewRequest(&alev1.ResolveRequest{Key: fpRef(fp)}))
					return err
				}},
			} {
				err := call.do()
				if connect.CodeOf(err) != connect.CodeInvalidArgument || aleCode(t, err) != 1 {
					t.Errorf("%s(%q) err = %v, want InvalidArgument with ALE 1", call.name, fp, err)
				}
				// ".." is part of the stated rule; the longer values must not appear.
				if err != nil && len(fp) > 2 && strings.Contains(err.Error(), fp) {
					t.Errorf("%s(%q) error echoes the fingerprint: %v", call.name, fp, err)
				}
			}
			res, err := c.DecryptBatch(ctx, connect.NewRequest(&alev1.DecryptBatchRequest{Items: []*alev1.DecryptRequest{{Envelope: env}}}))
			if err != nil {
				t.Fatal(err)
			}
			if item := res.Msg.GetResults()[0].GetError(); item.GetCode() != connect.CodeInvalidArgument.String() || item.GetDetail().GetErrorCode() != 1 {
				t.Errorf("DecryptBatch(%q) item error = %v, want invalid_argument with ALE 1", fp, item)
			}
		})
	}
}
