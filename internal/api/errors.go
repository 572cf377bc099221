package api

import (
	"context"
	"errors"

	"connectrpc.com/connect"

	alev1 "github.com/alecrypt/alecrypt/gen/ale/v1"
	"github.com/alecrypt/alecrypt/internal/engine"
	"github.com/alecrypt/alecrypt/service/aleerr"
	"github.com/alecrypt/alecrypt/service/wire"
)

// The ALE error codes and their messages: service/wire's, the one
// definition of the protocol.
const (
	ALEHeaders        = wire.CodeHeaders
	ALEHeadersMessage = wire.MessageHeaders
	ALEDecrypt        = wire.CodeDecrypt
	ALEDecryptMessage = wire.MessageDecrypt
)

// Refusals of the HTTP layer (guard.go, budget.go, body.go), before connect-go reads a body.
var (
	errOverBudget   = errors.New("request bytes in flight would exceed --max-inflight-bytes")
	errOverShare    = errors.New("the caller's request bytes in flight would exceed --max-inflight-bytes-per-caller")
	errProbesBusy   = errors.New("unauthenticated request bytes in flight would exceed their budget")
	errTooLarge     = errors.New("request message over --max-request-bytes")
	errReadTimeout  = errors.New("request body read timed out")
	errShuttingDown = errors.New("shutting down")
	errMediaType    = errors.New("streaming procedure without an enveloped content type")
)

// authFailure is a caller that did not authenticate: its cause is authn's
// error, whose message is safe to show (it names no credential).
type authFailure struct{ cause error }

func (a authFailure) Error() string { return a.cause.Error() }
func (a authFailure) Unwrap() error { return a.cause }

// toConnectError is the one place where domain errors become wire errors.
// The client gets a fixed message per case plus the ALE ErrorDetail; the
// full error (which may name fingerprints and fields, never keys or
// plaintext) stays as the cause for the server's log.
func toConnectError(err error) *connect.Error {
	var (
		code    connect.Code
		msg     string
		aleCode int32
		fe      *engine.FieldError
		ce      *connect.Error
		af      authFailure
	)
	switch {
	case errors.As(err, &ce):
		return ce
	case errors.As(err, &af):
		// The authn messages say what to present and carry no credential.
		return connect.NewError(connect.CodeUnauthenticated, errPublic{af.cause.Error(), err})
	case errors.Is(err, errOverBudget), errors.Is(err, errProbesBusy):
		return connect.NewError(connect.CodeResourceExhausted, errPublic{"server busy: too many request bytes in flight; retry later", err})
	case errors.Is(err, errOverShare):
		return connect.NewError(connect.CodeResourceExhausted, errPublic{"server busy: this caller has too many request bytes in flight; retry later", err})
	case errors.Is(err, errTooLarge):
		return connect.NewError(connect.CodeResourceExhausted, errPublic{"request message is larger than the server's limit", err})
	case errors.Is(err, errReadTimeout):
		return connect.NewError(connect.CodeDeadlineExceeded, errPublic{"request body did not arrive within the server's read timeout", err})
	case errors.Is(err, errShuttingDown):
		return connect.NewError(connect.CodeUnavailable, errPublic{"server shutting down; reconnect", err})
	case errors.As(err, &fe):
		// Field errors name the field and what is wrong with it: useful
		// to the caller and free of secrets.
		code, msg, aleCode = connect.CodeInvalidArgument, "invalid "+fe.Error(), ALEHeaders
	case errors.Is(err, engine.ErrUnknownKey):
		code, msg, aleCode = connect.CodeNotFound, "unknown key", ALEDecrypt
	case errors.Is(err, engine.ErrKeyDisabled):
		code, msg, aleCode = connect.CodeFailedPrecondition, "key is disabled", ALEDecrypt
	case errors.Is(err, engine.ErrKeyNotActive):
		code, msg, aleCode = connect.CodeFailedPrecondition, "key cannot encrypt: it is decrypt-only, disabled or expired", ALEDecrypt
	case errors.Is(err, engine.ErrDecrypt):
		// One message for every decryption failure: no oracle.
		code, msg, aleCode = connect.CodeInvalidArgument, "unable to decrypt payload", ALEDecrypt
	case errors.Is(err, engine.ErrPermissionDenied):
		// No ALE detail: not the client's payload's fault but its
		// onboarding's. One message for every refused reference, present
		// or not (engine asks the policy first): no existence oracle.
		return connect.NewError(connect.CodePermissionDenied, errPublic{"permission denied", err})
	case errors.Is(err, engine.ErrKeyUnusable):
		code, msg, aleCode = connect.CodeInternal, "key is unusable", ALEDecrypt
	case errors.Is(err, context.Canceled):
		return connect.NewError(connect.CodeCanceled, errPublic{"request canceled", err})
	case errors.Is(err, context.DeadlineExceeded):
		return connect.NewError(connect.CodeDeadlineExceeded, errPublic{"deadline exceeded", err})
	default:
		return connect.NewError(connect.CodeInternal, errPublic{"internal error", err})
	}
	cerr := connect.NewError(code, errPublic{msg, err})
	if d, derr := connect.NewErrorDetail(aleDetail(aleCode)); derr == nil {
		cerr.AddDetail(d)
	}
	return cerr
}

func aleDetail(code int32) *alev1.ErrorDetail {
	if code == ALEHeaders {
		return &alev1.ErrorDetail{ErrorCode: ALEHeaders, Message: ALEHeadersMessage}
	}
	return &alev1.ErrorDetail{ErrorCode: ALEDecrypt, Message: ALEDecryptMessage}
}

// toItemError is toConnectError for one item of a batch or stream.
func toItemError(err error) *alev1.ItemError {
	cerr := toConnectError(err)
	item := &alev1.ItemError{Code: cerr.Code().String(), Message: cerr.Message()}
	item.Detail, _ = aleerr.Detail(cerr)
	return item
}

// errPublic is the error a client sees (msg) wrapping the cause the server
// logs.
type errPublic struct {
	msg   string
	cause error
}

func (e errPublic) Error() string { return e.msg }
func (e errPublic) Unwrap() error { return e.cause }

// Cause returns the server-side cause of an error built by toConnectError,
// for logging; for any other error it returns err.
func Cause(err error) error {
	var p errPublic
	if errors.As(err, &p) {
		return p.cause
	}
	return err
}
