// Package barefloor is the floor alecryptd's unary path is measured against:
// our generated Connect handler doing only the cipher, with no guard,
// interceptors, policy, audit, metrics or key lookup. It is what
// `alebench serve bare` serves and what internal/api's
// BenchmarkServeEncryptJSON compares alecryptd's handler with, so both
// measure against the same code. Its Stream is the same for the batches
// alegate sends: the floor of the gateway's crypto hop.
package barefloor

import (
	"context"
	"crypto/rand"
	"errors"
	"io"
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
	res, err := b.encrypt(req.Msg)
	if err != nil {
		return nil, connect.NewError(connect.CodeInternal, err)
	}
	return connect.NewResponse(res), nil
}

func (b *bareCrypto) Decrypt(_ context.Context, req *connect.Request[alev1.DecryptRequest]) (*connect.Response[alev1.DecryptResponse], error) {
	res, err := b.decrypt(req.Msg)
	if err != nil {
		return nil, connect.NewError(connect.CodeInvalidArgument, err)
	}
	return connect.NewResponse(res), nil
}

// Stream answers each message in order, batches item by item, as
// alecryptd's does, with only the cipher behind it.
func (b *bareCrypto) Stream(ctx context.Context, stream *connect.BidiStream[alev1.StreamRequest, alev1.StreamResponse]) error {
	for {
		req, err := stream.Receive()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
		res := &alev1.StreamResponse{RequestId: req.GetRequestId()}
		switch op := req.GetOperation().(type) {
		case *alev1.StreamRequest_Encrypt:
			r, err := b.encrypt(op.Encrypt)
			res.Result = &alev1.StreamResponse_Encrypt{Encrypt: r}
			if err != nil {
				res.Result = itemError(err)
			}
		case *alev1.StreamRequest_Decrypt:
			r, err := b.decrypt(op.Decrypt)
			res.Result = &alev1.StreamResponse_Decrypt{Decrypt: r}
			if err != nil {
				res.Result = itemError(err)
			}
		case *alev1.StreamRequest_EncryptBatch:
			out := &alev1.EncryptBatchResponse{Results: make([]*alev1.EncryptResult, len(op.EncryptBatch.GetItems()))}
			for i, it := range op.EncryptBatch.GetItems() {
				r, err := b.encrypt(it)
				out.Results[i] = &alev1.EncryptResult{Result: &alev1.EncryptResult_Response{Response: r}}
				if err != nil {
					out.Results[i].Result = &alev1.EncryptResult_Error{Error: &alev1.ItemError{Code: "invalid_argument", Message: err.Error()}}
				}
			}
			res.Result = &alev1.StreamResponse_EncryptBatch{EncryptBatch: out}
		case *alev1.StreamRequest_DecryptBatch:
			out := &alev1.DecryptBatchResponse{Results: make([]*alev1.DecryptResult, len(op.DecryptBatch.GetItems()))}
			for i, it := range op.DecryptBatch.GetItems() {
				r, err := b.decrypt(it)
				out.Results[i] = &alev1.DecryptResult{Result: &alev1.DecryptResult_Response{Response: r}}
				if err != nil {
					out.Results[i].Result = &alev1.DecryptResult_Error{Error: &alev1.ItemError{Code: "invalid_argument", Message: err.Error()}}
				}
			}
			res.Result = &alev1.StreamResponse_DecryptBatch{DecryptBatch: out}
		default:
			res.Result = itemError(errors.New("no operation"))
		}
		if err := stream.Send(res); err != nil {
			return err
		}
	}
}

func itemError(err error) *alev1.StreamResponse_Error {
	return &alev1.StreamResponse_Error{Error: &alev1.ItemError{Code: "invalid_argument", Message: err.Error()}}
}

func (b *bareCrypto) encrypt(req *alev1.EncryptRequest) (*alev1.EncryptResponse, error) {
	iv := make([]byte, b.c.IVSize())
	_, _ = rand.Read(iv)
	msg, err := b.c.Seal(nil, iv, req.GetPlaintext(), nil)
	if err != nil {
		return nil, err
	}
	return &alev1.EncryptResponse{Envelope: &alev1.Envelope{Iv: iv, Fingerprint: b.fingerprint, Message: msg}}, nil
}

func (b *bareCrypto) decrypt(req *alev1.DecryptRequest) (*alev1.DecryptResponse, error) {
	env := req.GetEnvelope()
	pt, err := b.c.Open(nil, env.GetIv(), env.GetMessage(), nil)
	if err != nil {
		return nil, err
	}
	return &alev1.DecryptResponse{Plaintext: pt}, nil
}
