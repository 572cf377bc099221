package gateway

import (
	"context"

	"connectrpc.com/connect"
	"go.opentelemetry.io/otel/trace"

	alev1 "github.com/alecrypt/alecrypt/gen/ale/v1"
)

// probeEncrypt asks alecryptd to seal nothing under the fingerprint: the one
// honest answer to "can this key encrypt now" (state, expiry and the
// gateway's own policy are alecryptd's to judge). Sealing nothing is no use
// of the key: it does not count in the key's usage.
func (g *Gateway) probeEncrypt(ctx context.Context, fingerprint string) error {
	_, err := g.encrypt(ctx, &alev1.EncryptRequest{Key: byFingerprint(fingerprint)})
	return err
}

// decrypt and encrypt ask alecryptd: a payload that fits goes on the shared
// streams (cryptoMux), a large one, and every call of a traced request, is a
// unary call of its own (a trace follows a call, not a stream). Errors are
// the unary call's in either case.
func (g *Gateway) decrypt(ctx context.Context, req *alev1.DecryptRequest) (*alev1.DecryptResponse, error) {
	if g.mux != nil && fits(len(req.GetEnvelope().GetMessage())) && !traced(ctx) {
		return g.mux.decrypt(ctx, req)
	}
	res, err := g.crypto.Decrypt(ctx, connect.NewRequest(req))
	if err != nil {
		return nil, err
	}
	return res.Msg, nil
}

func (g *Gateway) encrypt(ctx context.Context, req *alev1.EncryptRequest) (*alev1.EncryptResponse, error) {
	if g.mux != nil && fits(len(req.GetPlaintext())) && !traced(ctx) {
		return g.mux.encrypt(ctx, req)
	}
	res, err := g.crypto.Encrypt(ctx, connect.NewRequest(req))
	if err != nil {
		return nil, err
	}
	return res.Msg, nil
}

// traced says whether ctx belongs to a sampled trace.
func traced(ctx context.Context) bool { return trace.SpanContextFromContext(ctx).IsSampled() }

func byFingerprint(fp string) *alev1.KeyRef {
	return &alev1.KeyRef{Ref: &alev1.KeyRef_Fingerprint{Fingerprint: fp}}
}
