package api

import (
	"context"
	"slices"

	"connectrpc.com/connect"
	"google.golang.org/protobuf/proto"

	alev1 "github.com/alecrypt/alecrypt/gen/ale/v1"
	"github.com/alecrypt/alecrypt/gen/ale/v1/alev1connect"
	"github.com/alecrypt/alecrypt/internal/audit"
	"github.com/alecrypt/alecrypt/internal/authn"
	"github.com/alecrypt/alecrypt/service/aleerr"
)

// auditInterceptor writes one audit entry per operation: per unary or batch
// call, and per item of the bidirectional stream. It reads fingerprints,
// outcomes and sizes from the messages; it never copies payload bytes.
type auditInterceptor struct {
	log *audit.Log
}

var procedureOps = map[string]string{
	alev1connect.CryptoServiceEncryptProcedure:      "encrypt",
	alev1connect.CryptoServiceDecryptProcedure:      "decrypt",
	alev1connect.CryptoServiceResolveProcedure:      "resolve",
	alev1connect.CryptoServiceEncryptBatchProcedure: "encrypt",
	alev1connect.CryptoServiceDecryptBatchProcedure: "decrypt",
	alev1connect.CryptoServiceStreamProcedure:       "stream",
	alev1connect.CryptoServiceRewrapProcedure:       "rewrap",
	alev1connect.CryptoServiceRewrapBatchProcedure:  "rewrap",
	alev1connect.KeyServiceListKeysProcedure:        "list",
}

func (a auditInterceptor) base(ctx context.Context, procedure string) audit.Entry {
	e := audit.Entry{RequestID: RequestID(ctx), CallerRequestID: CallerRequestID(ctx), Identity: "anonymous", Procedure: procedure, Operation: procedureOps[procedure]}
	if c, ok := authn.FromContext(ctx); ok {
		e.Identity, e.AuthMethod = c.Identity, string(c.Method)
	}
	return e
}

func outcome(e *audit.Entry, err error) {
	e.Outcome = "ok"
	if err != nil {
		e.Outcome = connect.CodeOf(err).String()
		e.ALECode = aleerr.Code(err)
	}
}

func (a auditInterceptor) WrapUnary(next connect.UnaryFunc) connect.UnaryFunc {
	return func(ctx context.Context, req connect.AnyRequest) (connect.AnyResponse, error) {
		if req.Spec().IsClient {
			return next(ctx, req)
		}
		res, err := next(ctx, req)
		e := a.base(ctx, req.Spec().Procedure)
		var resMsg any
		if res != nil {
			resMsg = res.Any()
		}
		describe(&e, req.Any(), resMsg)
		outcome(&e, err)
		a.log.Write(e)
		return res, err
	}
}

func (a auditInterceptor) WrapStreamingClient(next connect.StreamingClientFunc) connect.StreamingClientFunc {
	return next
}

func (a auditInterceptor) WrapStreamingHandler(next connect.StreamingHandlerFunc) connect.StreamingHandlerFunc {
	return func(ctx context.Context, conn connect.StreamingHandlerConn) error {
		err := next(ctx, &auditConn{StreamingHandlerConn: conn, a: a, ctx: ctx, pending: map[string]*alev1.StreamRequest{}})
		if err != nil { // the stream itself failed: one entry for it
			e := a.base(ctx, conn.Spec().Procedure)
			outcome(&e, err)
			a.log.Write(e)
		}
		return err
	}
}

// auditConn audits each stream response against the request it answers.
// Our Stream handler receives and sends on one goroutine, so pending needs
// no lock.
type auditConn struct {
	connect.StreamingHandlerConn
	a       auditInterceptor
	ctx     context.Context
	pending map[string]*alev1.StreamRequest
}

// maxPending bounds what a stream of unanswered ids can make us hold.
const maxPending = 1024

func (c *auditConn) Receive(msg any) error {
	err := c.StreamingHandlerConn.Receive(msg)
	if r, ok := msg.(*alev1.StreamRequest); ok && err == nil && len(c.pending) < maxPending {
		c.pending[r.GetRequestId()] = r
	}
	return err
}

func (c *auditConn) Send(msg any) error {
	err := c.StreamingHandlerConn.Send(msg)
	res, ok := msg.(*alev1.StreamResponse)
	if !ok {
		return err
	}
	req := c.pending[res.GetRequestId()]
	delete(c.pending, res.GetRequestId())
	e := c.a.base(c.ctx, c.Spec().Procedure)
	e.Outcome = "ok"
	switch {
	case req.GetEncrypt() != nil:
		e.Operation = "encrypt"
		describe(&e, req.GetEncrypt(), res.GetEncrypt())
	case req.GetDecrypt() != nil:
		e.Operation = "decrypt"
		describe(&e, req.GetDecrypt(), res.GetDecrypt())
	case req.GetEncryptBatch() != nil:
		e.Operation = "encrypt"
		describe(&e, req.GetEncryptBatch(), res.GetEncryptBatch())
	case req.GetDecryptBatch() != nil:
		e.Operation = "decrypt"
		describe(&e, req.GetDecryptBatch(), res.GetDecryptBatch())
	}
	if ie := res.GetError(); ie != nil {
		e.Outcome, e.ALECode = ie.GetCode(), int(ie.GetDetail().GetErrorCode())
	}
	if err != nil {
		e.Outcome = connect.CodeOf(err).String()
	}
	c.a.log.Write(e)
	return err
}

// describe fills fingerprints, item counts and sizes from a request and its
// response (either may be nil).
func describe(e *audit.Entry, req, res any) {
	seen := fingerprintSet{list: &e.Fingerprints}
	add := seen.add
	if m, ok := req.(proto.Message); ok && m != nil {
		e.BytesIn = proto.Size(m)
	}
	if m, ok := res.(proto.Message); ok && res != nil {
		e.BytesOut = proto.Size(m)
	}
	switch r := req.(type) {
	case *alev1.EncryptRequest:
		add(r.GetKey().GetFingerprint())
	case *alev1.DecryptRequest:
		add(r.GetEnvelope().GetFingerprint())
	case *alev1.ResolveRequest:
		add(r.GetKey().GetFingerprint())
	case *alev1.RewrapRequest:
		// Both keys of a rewrap: the source first, then the target
		// (below, from the response, or as the request named it).
		add(r.GetEnvelope().GetFingerprint())
		add(r.GetKey().GetFingerprint())
	case *alev1.RewrapBatchRequest:
		e.Items = len(r.GetItems())
		for _, it := range r.GetItems() {
			add(it.GetEnvelope().GetFingerprint())
			add(it.GetKey().GetFingerprint())
		}
	case *alev1.EncryptBatchRequest:
		e.Items = len(r.GetItems())
	case *alev1.DecryptBatchRequest:
		e.Items = len(r.GetItems())
		for _, it := range r.GetItems() {
			add(it.GetEnvelope().GetFingerprint())
		}
	}
	switch r := res.(type) {
	case *alev1.EncryptResponse:
		add(r.GetKey().GetFingerprint())
	case *alev1.DecryptResponse:
		add(r.GetKey().GetFingerprint())
	case *alev1.ResolveResponse:
		add(r.GetKey().GetFingerprint())
	case *alev1.RewrapResponse:
		add(r.GetKey().GetFingerprint())
	case *alev1.RewrapBatchResponse:
		for _, it := range r.GetResults() {
			if it.GetError() != nil {
				e.FailedItems++
			}
			add(it.GetResponse().GetKey().GetFingerprint())
		}
	case *alev1.EncryptBatchResponse:
		for _, it := range r.GetResults() {
			if it.GetError() != nil {
				e.FailedItems++
			}
			add(it.GetResponse().GetKey().GetFingerprint())
		}
	case *alev1.DecryptBatchResponse:
		for _, it := range r.GetResults() {
			if it.GetError() != nil {
				e.FailedItems++
			}
		}
	case *alev1.ListKeysResponse:
		e.Items = len(r.GetKeys())
	}
}

// fingerprintSet appends fingerprints to list once each, in first-seen
// order. A batch names up to two keys per item (20,000 for a full
// RewrapBatch): looking each up in the list would make auditing it
// quadratic, seconds for a call that takes a tenth of one. Small lists, every unary
// call's, are scanned; past smallSet the set indexes them in a map.
type fingerprintSet struct {
	list *[]string
	seen map[string]struct{}
}

// smallSet is the length up to which a scan beats building a map.
const smallSet = 16

func (s *fingerprintSet) add(fp string) {
	if fp == "" {
		return
	}
	if s.seen == nil {
		if slices.Contains(*s.list, fp) {
			return
		}
		*s.list = append(*s.list, fp)
		if len(*s.list) > smallSet {
			s.seen = make(map[string]struct{}, 2*len(*s.list))
			for _, v := range *s.list {
				s.seen[v] = struct{}{}
			}
		}
		return
	}
	if _, ok := s.seen[fp]; ok {
		return
	}
	s.seen[fp] = struct{}{}
	*s.list = append(*s.list, fp)
}
