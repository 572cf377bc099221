package api

import (
	"context"
	"errors"
	"fmt"
	"io"

	"connectrpc.com/connect"

	alev1 "github.com/alecrypt/alecrypt/gen/ale/v1"
	"github.com/alecrypt/alecrypt/gen/ale/v1/alev1connect"
	"github.com/alecrypt/alecrypt/internal/engine"
)

// MaxBatchItems bounds one EncryptBatch or DecryptBatch call; the request
// size limit alone would allow millions of empty items.
const MaxBatchItems = 10_000

// cryptoServer implements ale.v1.CryptoService over an engine.
type cryptoServer struct {
	eng  *engine.Engine
	keys *keyInfos
}

var _ alev1connect.CryptoServiceHandler = (*cryptoServer)(nil)

// encryptItem and decryptItem hold the messages of one item's answer, so
// that a batch allocates those of all its items at once (one allocation per
// batch, not three or four per item) and a single call its response and
// envelope together.
type encryptItem struct {
	result alev1.EncryptResult
	ok     alev1.EncryptResult_Response
	res    alev1.EncryptResponse
	env    alev1.Envelope
}

type decryptItem struct {
	result alev1.DecryptResult
	ok     alev1.DecryptResult_Response
	res    alev1.DecryptResponse
}

func (s *cryptoServer) encrypt(ctx context.Context, req *alev1.EncryptRequest) (*alev1.EncryptResponse, error) {
	m := new(struct {
		res alev1.EncryptResponse
		env alev1.Envelope
	})
	if err := s.encryptInto(ctx, req, &m.res, &m.env); err != nil {
		return nil, err
	}
	return &m.res, nil
}

// encryptInto fills res, with env as its envelope.
func (s *cryptoServer) encryptInto(ctx context.Context, req *alev1.EncryptRequest, res *alev1.EncryptResponse, env *alev1.Envelope) error {
	e, k, err := s.eng.Encrypt(ctx, refFromProto(req.GetKey()), req.GetPlaintext(), req.GetAssociatedData())
	if err != nil {
		return err
	}
	env.Iv, env.Fingerprint, env.Message = e.IV, e.Fingerprint, e.Message
	res.Envelope, res.Key = env, s.keys.get(k)
	return nil
}

func (s *cryptoServer) decrypt(ctx context.Context, req *alev1.DecryptRequest) (*alev1.DecryptResponse, error) {
	res := new(alev1.DecryptResponse)
	if err := s.decryptInto(ctx, req, res); err != nil {
		return nil, err
	}
	return res, nil
}

func (s *cryptoServer) decryptInto(ctx context.Context, req *alev1.DecryptRequest, res *alev1.DecryptResponse) error {
	if req.GetEnvelope() == nil {
		return &engine.FieldError{Field: "envelope", Reason: "missing"}
	}
	expect, err := formatFromProto(req.GetExpect())
	if err != nil {
		return err
	}
	pt, k, err := s.eng.Decrypt(ctx, envelopeFromProto(req.GetEnvelope()), req.GetAssociatedData(), expect)
	if err != nil {
		return err
	}
	res.Plaintext, res.Key = pt, s.keys.get(k)
	return nil
}

func (s *cryptoServer) rewrap(ctx context.Context, req *alev1.RewrapRequest) (*alev1.RewrapResponse, error) {
	if req.GetEnvelope() == nil {
		return nil, &engine.FieldError{Field: "envelope", Reason: "missing"}
	}
	expect, err := formatFromProto(req.GetExpect())
	if err != nil {
		return nil, err
	}
	env, _, k, err := s.eng.Rewrap(ctx, envelopeFromProto(req.GetEnvelope()), refFromProto(req.GetKey()), req.GetAssociatedData(), expect)
	if err != nil {
		return nil, err
	}
	return &alev1.RewrapResponse{Envelope: envelopeToProto(env), Key: s.keys.get(k)}, nil
}

func (s *cryptoServer) Encrypt(ctx context.Context, req *connect.Request[alev1.EncryptRequest]) (*connect.Response[alev1.EncryptResponse], error) {
	res, err := s.encrypt(ctx, req.Msg)
	if err != nil {
		return nil, toConnectError(err)
	}
	return connect.NewResponse(res), nil
}

func (s *cryptoServer) Decrypt(ctx context.Context, req *connect.Request[alev1.DecryptRequest]) (*connect.Response[alev1.DecryptResponse], error) {
	res, err := s.decrypt(ctx, req.Msg)
	if err != nil {
		return nil, toConnectError(err)
	}
	return connect.NewResponse(res), nil
}

func (s *cryptoServer) Rewrap(ctx context.Context, req *connect.Request[alev1.RewrapRequest]) (*connect.Response[alev1.RewrapResponse], error) {
	res, err := s.rewrap(ctx, req.Msg)
	if err != nil {
		return nil, toConnectError(err)
	}
	return connect.NewResponse(res), nil
}

func (s *cryptoServer) RewrapBatch(ctx context.Context, req *connect.Request[alev1.RewrapBatchRequest]) (*connect.Response[alev1.RewrapBatchResponse], error) {
	if err := checkBatch(len(req.Msg.GetItems())); err != nil {
		return nil, err
	}
	out := &alev1.RewrapBatchResponse{Results: make([]*alev1.RewrapResult, len(req.Msg.GetItems()))}
	for i, item := range req.Msg.GetItems() {
		if res, err := s.rewrap(ctx, item); err != nil {
			out.Results[i] = &alev1.RewrapResult{Result: &alev1.RewrapResult_Error{Error: toItemError(err)}}
		} else {
			out.Results[i] = &alev1.RewrapResult{Result: &alev1.RewrapResult_Response{Response: res}}
		}
	}
	return connect.NewResponse(out), nil
}

func (s *cryptoServer) Resolve(ctx context.Context, req *connect.Request[alev1.ResolveRequest]) (*connect.Response[alev1.ResolveResponse], error) {
	k, err := s.eng.Resolve(ctx, refFromProto(req.Msg.GetKey()))
	if err != nil {
		return nil, toConnectError(err)
	}
	return connect.NewResponse(&alev1.ResolveResponse{Key: keyInfoWithUsage(k)}), nil
}

func (s *cryptoServer) EncryptBatch(ctx context.Context, req *connect.Request[alev1.EncryptBatchRequest]) (*connect.Response[alev1.EncryptBatchResponse], error) {
	out, err := s.encryptBatch(ctx, req.Msg)
	if err != nil {
		return nil, err
	}
	return connect.NewResponse(out), nil
}

func (s *cryptoServer) DecryptBatch(ctx context.Context, req *connect.Request[alev1.DecryptBatchRequest]) (*connect.Response[alev1.DecryptBatchResponse], error) {
	out, err := s.decryptBatch(ctx, req.Msg)
	if err != nil {
		return nil, err
	}
	return connect.NewResponse(out), nil
}

// encryptBatch and decryptBatch serve the batch RPCs and batch stream
// messages alike; they fail only for a batch over MaxBatchItems.
func (s *cryptoServer) encryptBatch(ctx context.Context, req *alev1.EncryptBatchRequest) (*alev1.EncryptBatchResponse, error) {
	if err := checkBatch(len(req.GetItems())); err != nil {
		return nil, err
	}
	out := &alev1.EncryptBatchResponse{Results: make([]*alev1.EncryptResult, len(req.GetItems()))}
	items := make([]encryptItem, len(req.GetItems()))
	for i, item := range req.GetItems() {
		out.Results[i] = s.encryptResult(ctx, item, &items[i])
	}
	return out, nil
}

func (s *cryptoServer) decryptBatch(ctx context.Context, req *alev1.DecryptBatchRequest) (*alev1.DecryptBatchResponse, error) {
	if err := checkBatch(len(req.GetItems())); err != nil {
		return nil, err
	}
	out := &alev1.DecryptBatchResponse{Results: make([]*alev1.DecryptResult, len(req.GetItems()))}
	items := make([]decryptItem, len(req.GetItems()))
	for i, item := range req.GetItems() {
		out.Results[i] = s.decryptResult(ctx, item, &items[i])
	}
	return out, nil
}

func checkBatch(n int) error {
	if n > MaxBatchItems {
		return connect.NewError(connect.CodeResourceExhausted, fmt.Errorf("batch of %d items is over the limit of %d", n, MaxBatchItems))
	}
	return nil
}

func (s *cryptoServer) encryptResult(ctx context.Context, item *alev1.EncryptRequest, m *encryptItem) *alev1.EncryptResult {
	if err := s.encryptInto(ctx, item, &m.res, &m.env); err != nil {
		m.result.Result = &alev1.EncryptResult_Error{Error: toItemError(err)}
		return &m.result
	}
	m.ok.Response = &m.res
	m.result.Result = &m.ok
	return &m.result
}

func (s *cryptoServer) decryptResult(ctx context.Context, item *alev1.DecryptRequest, m *decryptItem) *alev1.DecryptResult {
	if err := s.decryptInto(ctx, item, &m.res); err != nil {
		m.result.Result = &alev1.DecryptResult_Error{Error: toItemError(err)}
		return &m.result
	}
	m.ok.Response = &m.res
	m.result.Result = &m.ok
	return &m.result
}

// Stream answers each request in order on the same stream. A failed item gets
// an error response and the stream carries on; only transport failures and
// the client closing its side end it.
func (s *cryptoServer) Stream(ctx context.Context, stream *connect.BidiStream[alev1.StreamRequest, alev1.StreamResponse]) error {
	for {
		req, err := stream.Receive()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
		res := &alev1.StreamResponse{RequestId: req.GetRequestId()}
		var opErr error
		switch op := req.GetOperation().(type) {
		case *alev1.StreamRequest_Encrypt:
			var r *alev1.EncryptResponse
			if r, opErr = s.encrypt(ctx, op.Encrypt); opErr == nil {
				res.Result = &alev1.StreamResponse_Encrypt{Encrypt: r}
			}
		case *alev1.StreamRequest_Decrypt:
			var r *alev1.DecryptResponse
			if r, opErr = s.decrypt(ctx, op.Decrypt); opErr == nil {
				res.Result = &alev1.StreamResponse_Decrypt{Decrypt: r}
			}
		case *alev1.StreamRequest_EncryptBatch:
			var r *alev1.EncryptBatchResponse
			if r, opErr = s.encryptBatch(ctx, op.EncryptBatch); opErr == nil {
				res.Result = &alev1.StreamResponse_EncryptBatch{EncryptBatch: r}
			}
		case *alev1.StreamRequest_DecryptBatch:
			var r *alev1.DecryptBatchResponse
			if r, opErr = s.decryptBatch(ctx, op.DecryptBatch); opErr == nil {
				res.Result = &alev1.StreamResponse_DecryptBatch{DecryptBatch: r}
			}
		default:
			opErr = &engine.FieldError{Field: "operation", Reason: "missing: set encrypt, decrypt, encrypt_batch or decrypt_batch"}
		}
		if opErr != nil {
			res.Result = &alev1.StreamResponse_Error{Error: toItemError(opErr)}
		}
		if err := stream.Send(res); err != nil {
			return err
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
	}
}
