package main

import (
	"errors"
	"fmt"
	"net"
	"strings"
	"syscall"

	"connectrpc.com/connect"

	alev1 "github.com/alecrypt/alecrypt/gen/ale/v1"
	"github.com/alecrypt/alecrypt/service/aleerr"
	"github.com/alecrypt/alecrypt/service/wire"
)

// op says which way a call went, so an error speaks of what the user did:
// an encryption that failed names no decryption (the ALE text of code 2 is
// "Unable to decrypt payload", which is what a gateway sends a kitchen
// client, not what went wrong for an encrypt).
type op int

const (
	opEncrypt op = iota
	opDecrypt
	opOther // resolve, list, rewrap: no ALE text, as encrypt
)

// requestIDHeader is set by alecryptd on every answer, errors included: an
// error without it came from something else listening at --addr.
const requestIDHeader = "X-Request-Id"

// callError turns a failed call to alecryptd into a message that names the
// problem and the next step. ref is the key the call named (nil: the
// default key); fingerprint is the envelope's, for a decryption.
func (r *remote) callError(kind op, ref *alev1.KeyRef, fingerprint string, err error) error {
	if msg, ok := r.unreachable(err); ok {
		return errors.New(msg)
	}
	var ce *connect.Error
	if !errors.As(err, &ce) {
		return err
	}
	if r.grpc && (ce.Code() == connect.CodeUnavailable && strings.Contains(ce.Message(), "http2:") ||
		errors.Is(err, syscall.EPIPE) || errors.Is(err, syscall.ECONNRESET)) {
		// --grpc speaks HTTP/2 without TLS; a plain HTTP/1.1 server (the
		// metrics port) answers in a form HTTP/2 cannot read, or, as
		// often as the scheduler decides, has already closed the
		// connection on the HTTP/2 preface while alectl still writes.
		return fmt.Errorf("%s is not an alecryptd API port: it does not speak HTTP/2 without TLS (h2c), as alecryptd's does "+
			"(is it the metrics port, default 9090?); point --addr or ALECRYPT_ADDR at alecryptd's --listen address (default http://127.0.0.1:8080)", r.addr)
	}
	detail, hasALE := aleerr.Detail(err)
	if !hasALE {
		if msg, ok := r.notAlecryptd(ce); ok {
			return errors.New(msg)
		}
		return fmt.Errorf("%s: %s", ce.Code(), ce.Message())
	}
	ale := fmt.Sprintf("ALE %d", detail.GetErrorCode())
	if kind == opDecrypt {
		ale += ": " + detail.GetMessage()
	}
	if ce.Code() == connect.CodeNotFound {
		what := "the default key"
		switch {
		case kind == opDecrypt && fingerprint != "":
			what = fmt.Sprintf("fingerprint %q (the envelope's)", fingerprint)
		case ref.GetAlias() != "":
			what = fmt.Sprintf("alias %q", ref.GetAlias())
		case ref.GetFingerprint() != "":
			what = fmt.Sprintf("fingerprint %q", ref.GetFingerprint())
		}
		return fmt.Errorf("alecryptd at %s has no key for %s (%s, %s): 'alectl keys list' shows its keys", r.addr, what, ce.Code(), ale)
	}
	return fmt.Errorf("%s: %s (%s)", ce.Code(), ce.Message(), ale)
}

// unreachable says which address was tried when nothing answered there.
func (r *remote) unreachable(err error) (string, bool) {
	if errors.Is(err, syscall.ECONNREFUSED) {
		return fmt.Sprintf("cannot reach alecryptd at %s: connection refused; is alecryptd running? "+
			"(start it with 'alecryptd', or point --addr or ALECRYPT_ADDR at it)", r.addr), true
	}
	var oe *net.OpError
	if errors.As(err, &oe) && oe.Op == "dial" {
		return fmt.Sprintf("cannot reach alecryptd at %s: %v (check --addr or ALECRYPT_ADDR)", r.addr, oe.Err), true
	}
	var de *net.DNSError
	if errors.As(err, &de) {
		return fmt.Sprintf("cannot reach alecryptd at %s: %v (check --addr or ALECRYPT_ADDR)", r.addr, de), true
	}
	return "", false
}

// notAlecryptd recognizes an answer from another server than alecryptd's
// API port: its metrics port (404), alegate (an ALE error body instead of
// a Connect error) or any other HTTP server. alecryptd answers every call
// it routes with a request id and every crypto failure with an ALE detail.
func (r *remote) notAlecryptd(ce *connect.Error) (string, bool) {
	if ce.Meta().Get(requestIDHeader) != "" {
		return "", false
	}
	switch {
	case ce.Message() == wire.MessageHeaders || ce.Message() == wire.MessageDecrypt:
		return fmt.Sprintf("%s is not an alecryptd API port: it answered with an ALE error body (%q), as alegate, the Kitchen gateway, does; "+
			"point --addr or ALECRYPT_ADDR at alecryptd (default http://127.0.0.1:8080); requests through alegate are 'alectl http'", r.addr, ce.Message()), true
	case ce.Code() == connect.CodeUnimplemented, ce.Code() == connect.CodeInternal, ce.Code() == connect.CodeUnknown:
		return fmt.Sprintf("%s is not an alecryptd API port (it answered %s: %s; alecryptd's metrics port, default 9090, answers so); "+
			"point --addr or ALECRYPT_ADDR at alecryptd's --listen address (default http://127.0.0.1:8080)", r.addr, ce.Code(), ce.Message()), true
	}
	return "", false
}
