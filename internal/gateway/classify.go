package gateway

import (
	"connectrpc.com/connect"

	"github.com/alecrypt/alecrypt/service/wire"
)

// failure is what an alecryptd error means for the client.
type failure int

const (
	failHeaders  failure = iota + 1 // ALE 1
	failDecrypt                     // ALE 2
	failTooLarge                    // 413, or the same body as a frame on a WebSocket
	failCrypto                      // alecryptd is unusable: 502, or close 1011
)

// classify is the one mapping from alecryptd's answer to the client's, for
// unary calls and stream items alike (aleerr reads both), so HTTP and
// WebSocket cannot disagree. An ALE detail decides when present.
// PermissionDenied carries none (alecryptd keeps policy out of the ALE
// codes) but is the client's doing: a key outside the gateway's policy is,
// to the client, a key that does not exist, so it gets what an unknown
// fingerprint gets. Anything else without a detail is alecryptd failing,
// never the client's payload.
func classify(code connect.Code, ale int) failure {
	switch {
	case ale == wire.CodeHeaders:
		return failHeaders
	case ale == wire.CodeDecrypt, code == connect.CodePermissionDenied:
		return failDecrypt
	case code == connect.CodeResourceExhausted:
		return failTooLarge
	default:
		return failCrypto
	}
}

// msgTooLarge is the gateway's answer when alecryptd refuses a payload as
// too large or too much for its memory budget (ResourceExhausted).
const msgTooLarge = "payload too large"

// aleOutcome is the metrics outcome of an ALE error code.
func aleOutcome(code int) string {
	if code == wire.CodeHeaders {
		return outcomeALE1
	}
	return outcomeALE2
}

// reasonOf is alecryptd's message in a Connect error, for logs.
func reasonOf(err error) string {
	if ce, ok := asConnectError(err); ok {
		return ce.Message()
	}
	return err.Error()
}
