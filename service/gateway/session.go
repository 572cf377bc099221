package gateway

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"

	"connectrpc.com/connect"

	alev1 "github.com/alecrypt/alecrypt/gen/ale/v1"
	"github.com/alecrypt/alecrypt/gen/ale/v1/alev1connect"
)

// cryptoSession carries one WebSocket connection's crypto calls on one
// bidirectional Stream RPC instead of a unary call per frame: a long-lived
// connection then costs alecryptd one HTTP/2 stream, not one per message.
// Calls from both directions share it; responses are matched by request id.
type cryptoSession struct {
	stream *connect.BidiStreamForClient[alev1.StreamRequest, alev1.StreamResponse]
	sendMu sync.Mutex // Send is not safe for concurrent use

	mu      sync.Mutex
	pending map[string]chan *alev1.StreamResponse
	next    uint64
	err     error // set once the stream has failed
	done    chan struct{}
}

// errSessionClosed is returned for calls after the session ended.
var errSessionClosed = errors.New("crypto stream closed")

func openSession(ctx context.Context, crypto alev1connect.CryptoServiceClient) *cryptoSession {
	s := &cryptoSession{stream: crypto.Stream(ctx), pending: map[string]chan *alev1.StreamResponse{}, done: make(chan struct{})}
	go s.receive()
	return s
}

func (s *cryptoSession) receive() {
	defer close(s.done)
	for {
		res, err := s.stream.Receive()
		if err != nil {
			s.fail(fmt.Errorf("crypto stream: %w", err))
			return
		}
		s.mu.Lock()
		ch := s.pending[res.GetRequestId()]
		delete(s.pending, res.GetRequestId())
		s.mu.Unlock()
		if ch != nil {
			ch <- res
		}
	}
}

func (s *cryptoSession) fail(err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.err == nil {
		s.err = err
	}
	for id, ch := range s.pending {
		close(ch)
		delete(s.pending, id)
	}
}

// call sends one operation and waits for its response.
func (s *cryptoSession) call(ctx context.Context, req *alev1.StreamRequest) (*alev1.StreamResponse, error) {
	ch := make(chan *alev1.StreamResponse, 1)
	s.mu.Lock()
	if s.err != nil {
		err := s.err
		s.mu.Unlock()
		return nil, err
	}
	s.next++
	req.RequestId = strconv.FormatUint(s.next, 36)
	s.pending[req.RequestId] = ch
	s.mu.Unlock()

	s.sendMu.Lock()
	err := s.stream.Send(req)
	s.sendMu.Unlock()
	if err != nil {
		s.fail(fmt.Errorf("crypto stream: %w", err))
		return nil, err
	}
	select {
	case res, ok := <-ch:
		if !ok {
			return nil, s.failure()
		}
		return res, nil
	case <-ctx.Done():
		s.mu.Lock()
		delete(s.pending, req.RequestId)
		s.mu.Unlock()
		return nil, ctx.Err()
	}
}

func (s *cryptoSession) failure() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.err != nil {
		return s.err
	}
	return errSessionClosed
}

// decrypt returns the plaintext, or the per-item failure alecryptd
// answered, or a transport error.
func (s *cryptoSession) decrypt(ctx context.Context, req *alev1.DecryptRequest) ([]byte, *alev1.ItemError, error) {
	res, err := s.call(ctx, &alev1.StreamRequest{Operation: &alev1.StreamRequest_Decrypt{Decrypt: req}})
	if err != nil {
		return nil, nil, err
	}
	if ie := res.GetError(); ie != nil {
		return nil, ie, nil
	}
	return res.GetDecrypt().GetPlaintext(), nil, nil
}

// encrypt returns the envelope, or an error for any failure.
func (s *cryptoSession) encrypt(ctx context.Context, req *alev1.EncryptRequest) (*alev1.Envelope, error) {
	res, err := s.call(ctx, &alev1.StreamRequest{Operation: &alev1.StreamRequest_Encrypt{Encrypt: req}})
	if err != nil {
		return nil, err
	}
	if ie := res.GetError(); ie != nil {
		return nil, fmt.Errorf("encrypt: %s: %s", ie.GetCode(), ie.GetMessage())
	}
	return res.GetEncrypt().GetEnvelope(), nil
}

// close ends the stream and waits for the receiver.
func (s *cryptoSession) close() {
	s.sendMu.Lock()
	_ = s.stream.CloseRequest()
	s.sendMu.Unlock()
	_ = s.stream.CloseResponse()
	<-s.done
}
