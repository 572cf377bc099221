package gateway

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strconv"
	"sync"

	"connectrpc.com/connect"

	alev1 "github.com/alecrypt/alecrypt/gen/ale/v1"
	"github.com/alecrypt/alecrypt/gen/ale/v1/alev1connect"
)

// cryptoSession is one of cryptoMux's Stream RPCs to alecryptd, kept open
// across the stream's ends: responses are matched to calls by request id.
//
// alecryptd may end a stream while alegate lives on: with Unavailable
// when it shuts down (an idle stream at once, a busy one after the message
// in hand), with ResourceExhausted when a message does not fit its in-flight
// budget or size limit. The session then opens a new stream for the next
// call, so WebSockets and requests survive a restart of alecryptd or a
// failover to another replica. A message that was in flight when its stream
// ended is sent again, once, on a new stream, but only when the end says
// alecryptd did not execute it (see streamEnd); ResourceExhausted is the
// answer of the one message alecryptd refused, which its items map like any
// too-large answer.
type cryptoSession struct {
	ctx    context.Context
	crypto alev1connect.CryptoServiceClient
	log    *slog.Logger

	mu     sync.Mutex
	cur    *stream // nil until the first call, or after close
	closed bool
}

// errSessionClosed is returned for calls after the session ended.
var errSessionClosed = errors.New("crypto stream closed")

func openSession(ctx context.Context, crypto alev1connect.CryptoServiceClient, log *slog.Logger) *cryptoSession {
	return &cryptoSession{ctx: ctx, crypto: crypto, log: log}
}

// stream is one Stream RPC of a session.
type stream struct {
	s      *connect.BidiStreamForClient[alev1.StreamRequest, alev1.StreamResponse]
	log    *slog.Logger
	sendMu sync.Mutex // Send is not safe for concurrent use; it also orders request ids
	next   uint64     // request ids, in the order messages are sent (under sendMu)

	mu      sync.Mutex
	pending map[string]*pendingCall
	ended   bool
	closing bool // the session closed it: its end is no news
	done    chan struct{}
}

type pendingCall struct {
	seq uint64
	ch  chan callResult // buffered; receives exactly one result
}

// callResult is a response, or why the stream ended without one: err is the
// stream's end, and retry says that alecryptd did not execute the item.
type callResult struct {
	res   *alev1.StreamResponse
	err   error
	retry bool
}

// stream returns the session's live stream, opening one if there is none or
// the last one ended.
func (s *cryptoSession) stream() (*stream, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil, errSessionClosed
	}
	if s.cur != nil && !s.cur.isEnded() {
		return s.cur, nil
	}
	st := &stream{s: s.crypto.Stream(s.ctx), log: s.log, pending: map[string]*pendingCall{}, done: make(chan struct{})}
	s.cur = st
	go st.receive()
	return st, nil
}

func (st *stream) isEnded() bool {
	st.mu.Lock()
	defer st.mu.Unlock()
	return st.ended
}

func (st *stream) receive() {
	defer close(st.done)
	for {
		res, err := st.s.Receive()
		if err != nil {
			st.end(err)
			return
		}
		st.mu.Lock()
		pc := st.pending[res.GetRequestId()]
		delete(st.pending, res.GetRequestId())
		st.mu.Unlock()
		if pc != nil {
			pc.ch <- callResult{res: res}
		}
	}
}

// end fails every unanswered call with the stream's end and releases the
// stream. alecryptd answers a stream's messages in order, and reads the next
// one only after answering the last, so the oldest unanswered message is the
// only one it may have looked at: a ResourceExhausted end is that message's
// answer, and every message after it was never read.
func (st *stream) end(err error) {
	code := streamEnd(err)
	st.mu.Lock()
	st.ended = true
	var oldest *pendingCall
	for _, pc := range st.pending {
		if oldest == nil || pc.seq < oldest.seq {
			oldest = pc
		}
	}
	n, closing := len(st.pending), st.closing
	for id, pc := range st.pending {
		r := callResult{err: err}
		switch code {
		case connect.CodeUnavailable:
			r.retry = true
		case connect.CodeResourceExhausted:
			r.retry = pc != oldest
		}
		pc.ch <- r
		delete(st.pending, id)
	}
	st.mu.Unlock()
	if closing {
		return
	}
	st.log.Info("crypto stream ended; the next call opens a new one", "code", code.String(), "in_flight", n, "err", err)
	st.sendMu.Lock()
	_ = st.s.CloseRequest()
	st.sendMu.Unlock()
	_ = st.s.CloseResponse()
}

// streamEnd is what the end of a stream says about the messages it had not
// answered. Unavailable is alecryptd stopping before it read them (shutdown)
// or the transport failing before alecryptd answered at all (no connection,
// a refused HTTP/2 stream); an end without error is alecryptd closing the
// stream deliberately. Anything else may have happened after alecryptd
// executed an item, so the item is not repeated.
func streamEnd(err error) connect.Code {
	if errors.Is(err, io.EOF) {
		return connect.CodeUnavailable
	}
	return connect.CodeOf(err)
}

// send registers the call and sends req; the id is assigned under sendMu so
// that ids grow in the order alecryptd receives the messages.
func (st *stream) send(req *alev1.StreamRequest) (*pendingCall, error) {
	pc := &pendingCall{ch: make(chan callResult, 1)}
	st.sendMu.Lock()
	defer st.sendMu.Unlock()
	st.mu.Lock()
	if st.ended {
		st.mu.Unlock()
		return nil, errStreamEnded
	}
	st.next++
	pc.seq = st.next
	req.RequestId = strconv.FormatUint(st.next, 36)
	st.pending[req.RequestId] = pc
	st.mu.Unlock()
	// A failed Send means the stream is ending; the receiver learns why
	// and answers the pending call, so the caller just waits for it.
	_ = st.s.Send(req)
	return pc, nil
}

// errStreamEnded says a call reached a stream that had already ended: it was
// not sent, so it goes to a new stream.
var errStreamEnded = errors.New("crypto stream ended")

func (st *stream) forget(id string) {
	st.mu.Lock()
	delete(st.pending, id)
	st.mu.Unlock()
}

// call sends one operation and waits for its response, on a new stream when
// the current one has ended; an item alecryptd did not execute is sent once
// more on a new stream.
func (s *cryptoSession) call(ctx context.Context, req *alev1.StreamRequest) (*alev1.StreamResponse, error) {
	retried := false
	for {
		st, err := s.stream()
		if err != nil {
			return nil, err
		}
		pc, err := st.send(req)
		if errors.Is(err, errStreamEnded) {
			continue // never sent: not a retry
		}
		var r callResult
		select {
		case r = <-pc.ch:
		case <-ctx.Done():
			st.forget(req.RequestId)
			return nil, ctx.Err()
		}
		if r.err == nil {
			return r.res, nil
		}
		if !r.retry || retried || ctx.Err() != nil {
			return nil, fmt.Errorf("crypto stream: %w", r.err)
		}
		retried = true
		s.log.Info("crypto stream ended before answering an item alecryptd did not execute; sending it again on a new stream")
	}
}

// refusedItem turns a stream's ResourceExhausted end into the item error
// alecryptd would have answered had it kept the stream open.
func refusedItem(err error) *alev1.ItemError {
	if connect.CodeOf(err) != connect.CodeResourceExhausted {
		return nil
	}
	msg := err.Error()
	var ce *connect.Error
	if errors.As(err, &ce) {
		msg = ce.Message()
	}
	return &alev1.ItemError{Code: connect.CodeResourceExhausted.String(), Message: msg}
}

// close ends the current stream and waits for its receiver.
func (s *cryptoSession) close() {
	s.mu.Lock()
	s.closed = true
	st := s.cur
	s.cur = nil
	s.mu.Unlock()
	if st == nil {
		return
	}
	st.mu.Lock()
	st.closing = true
	st.mu.Unlock()
	st.sendMu.Lock()
	_ = st.s.CloseRequest()
	st.sendMu.Unlock()
	_ = st.s.CloseResponse()
	<-st.done
}
