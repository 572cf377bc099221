// Package barefloor is the floor alecryptd's unary path is measured against:
// our generated Connect handler doing only the cipher, with no guard,
// interceptors, policy, audit, metrics or key lookup. It is what
// `alebench serve bare` serves and what internal/api's
// BenchmarkServeEncryptJSON compares alecryptd's handler with, so both
// measure against the same code.
package barefloor

import (
	"context"
	"crypto/rand"
	"net/http"

	"connectrpc.com/connect"

	alev1 "github.com/alecrypt/alecrypt/gen/ale/v1"
	"github.com/alecrypt/alecrypt/gen/ale/v1/alev1connect"
	"github.com/alecrypt/alecrypt/internal/suite"
)

// Handler serves Encrypt and Decrypt under c, naming fingerprint in the
// envelopes it seals. Without gzip, as alecryptd: ciphertext does not
// compress.
func Handler(fingerprint string, c suite.Cipher) http.Handler {
	mux := http.NewServeMux()
	mux.Handle(alev1connect.NewCryptoServiceHandler(&bareCrypto{fingerprint: fingerprint, c: c}, connect.WithCompression("gzip", nil, nil)))
	return mux
}

// bareCrypto is Encrypt and Decrypt with nothing around them.
type bareCrypto struct {
	alev1connect.UnimplementedCryptoServiceHandler
	fingerprint string
	c           suite.Cipher
}

func (b *bareCrypto) Encrypt(_ context.Context, req *connect.Request[alev1.EncryptRequest]) (*connect.Response[alev1.EncryptResponse], error) {
	iv := make([]byte, b.c.IVSize())
	_, _ = rand.Read(iv)
	msg, err := b.c.Seal(nil, iv, req.Msg.GetPlaintext(), nil)
	if err != nil {
		return nil, connect.NewError(connect.CodeInternal, err)
	}
	return connect.NewResponse(&alev1.EncryptResponse{Envelope: &alev1.Envelope{Iv: iv, Fingerprint: b.fingerprint, Message: msg}}), nil
}

func (b *bareCrypto) Decrypt(_ context.Context, req *connect.Request[alev1.DecryptRequest]) (*connect.Response[alev1.DecryptResponse], error) {
	env := req.Msg.GetEnvelope()
	pt, err := b.c.Open(nil, env.GetIv(), env.GetMessage(), nil)
	if err != nil {
		return nil, connect.NewError(connect.CodeInvalidArgument, err)
	}
	return connect.NewResponse(&alev1.DecryptResponse{Plaintext: pt}), nil
}
