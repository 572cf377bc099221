// Package wire owns the Enterprise Kitchen ALE wire format: the WebSocket
// frame {"iv","fingerprint","message"}, the encodings of IVs and ciphertext
// in headers and bodies, and the two ALE error bodies.
//
// It parses untrusted input, so it is strict and total: every malformed input
// is an *Error carrying the ALE code a peer must receive (1 for missing or
// unusable security fields, 2 for a payload that cannot be decrypted). It does
// no cryptography.
package wire

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
)

// The ALE error codes and messages, verbatim.
const (
	CodeHeaders        = 1
	MessageHeaders     = "Incorrect security headers"
	CodeDecrypt        = 2
	MessageDecrypt     = "Unable to decrypt payload"
	HeaderIV           = "sec-iv"
	HeaderFingerprint  = "sec-fingerprint"
	MaxFingerprintSize = 256
)

// Error is a malformed ALE input.
type Error struct {
	// Code is CodeHeaders or CodeDecrypt.
	Code int
	// Reason says what was wrong, for logs; peers only get the ALE message.
	Reason string
}

func (e *Error) Error() string { return fmt.Sprintf("ale error %d: %s", e.Code, e.Reason) }

// Body is the exact ALE error body for e's code.
func (e *Error) Body() []byte { return ErrorBody(e.Code) }

// ErrorBody returns {"errorCode":N,"message":"..."} for code 1 or 2; any
// other code gets the code-2 body, the safe default for "did not decrypt".
func ErrorBody(code int) []byte {
	if code == CodeHeaders {
		return []byte(`{"errorCode":1,"message":"Incorrect security headers"}`)
	}
	return []byte(`{"errorCode":2,"message":"Unable to decrypt payload"}`)
}

// Frame is one WebSocket message, or the three parts of an HTTP request.
type Frame struct {
	IV          []byte
	Fingerprint string
	Message     []byte
}

// frameJSON uses pointers to tell a missing field from an empty one.
type frameJSON struct {
	IV          *string `json:"iv"`
	Fingerprint *string `json:"fingerprint"`
	Message     *string `json:"message"`
}

// ParseFrame decodes a WebSocket message. Non-JSON, a JSON value that is not
// an object, or unknown or mistyped members are CodeDecrypt; a missing or empty
// iv or fingerprint, or an iv that is not base64, is CodeHeaders; a message
// that is not base64 is CodeDecrypt. An absent message is an empty payload.
// IV length is not checked here: it depends on the key's algorithm.
func ParseFrame(data []byte) (Frame, error) {
	var raw map[string]json.RawMessage
	if err := json.Unmarshal(data, &raw); err != nil || raw == nil {
		return Frame{}, &Error{Code: CodeDecrypt, Reason: "frame is not a JSON object"}
	}
	var fj frameJSON
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&fj); err != nil {
		return Frame{}, &Error{Code: CodeDecrypt, Reason: "frame has unknown or mistyped members"}
	}
	if dec.More() {
		return Frame{}, &Error{Code: CodeDecrypt, Reason: "trailing data after the frame"}
	}
	if fj.IV == nil || *fj.IV == "" {
		return Frame{}, &Error{Code: CodeHeaders, Reason: "frame has no iv"}
	}
	if fj.Fingerprint == nil || *fj.Fingerprint == "" {
		return Frame{}, &Error{Code: CodeHeaders, Reason: "frame has no fingerprint"}
	}
	f := Frame{Fingerprint: *fj.Fingerprint}
	if err := CheckFingerprint(f.Fingerprint); err != nil {
		return Frame{}, err
	}
	iv, err := DecodeIV(*fj.IV)
	if err != nil {
		return Frame{}, err
	}
	f.IV = iv
	if fj.Message != nil {
		if f.Message, err = DecodePayload([]byte(*fj.Message)); err != nil {
			return Frame{}, err
		}
	}
	return f, nil
}

// MarshalFrame encodes a frame as the EK WebSocket message.
func MarshalFrame(f Frame) []byte {
	b, _ := json.Marshal(struct {
		IV          string `json:"iv"`
		Fingerprint string `json:"fingerprint"`
		Message     string `json:"message"`
	}{base64.StdEncoding.EncodeToString(f.IV), f.Fingerprint, base64.StdEncoding.EncodeToString(f.Message)})
	return b
}

// DecodeIV decodes a sec-iv header or frame iv: standard base64 with padding
// (RFC 4648 §4). Anything else is CodeHeaders.
func DecodeIV(s string) ([]byte, error) {
	iv, err := base64.StdEncoding.Strict().DecodeString(s)
	if err != nil || len(iv) == 0 {
		return nil, &Error{Code: CodeHeaders, Reason: "iv is not standard base64"}
	}
	return iv, nil
}

// DecodePayload decodes an encrypted body or frame message: standard base64.
// Anything else is CodeDecrypt.
func DecodePayload(b []byte) ([]byte, error) {
	out := make([]byte, base64.StdEncoding.DecodedLen(len(b)))
	n, err := base64.StdEncoding.Strict().Decode(out, b)
	if err != nil {
		return nil, &Error{Code: CodeDecrypt, Reason: "payload is not standard base64"}
	}
	return out[:n], nil
}

// CheckFingerprint checks a sec-fingerprint value: 1 to MaxFingerprintSize
// printable ASCII characters.
func CheckFingerprint(fp string) error {
	if fp == "" || len(fp) > MaxFingerprintSize {
		return &Error{Code: CodeHeaders, Reason: "fingerprint is empty or too long"}
	}
	for i := 0; i < len(fp); i++ {
		if fp[i] < 0x21 || fp[i] > 0x7e {
			return &Error{Code: CodeHeaders, Reason: "fingerprint has characters outside printable ASCII"}
		}
	}
	return nil
}

// AsError returns err's *Error, if it is one.
func AsError(err error) (*Error, bool) {
	var e *Error
	ok := errors.As(err, &e)
	return e, ok
}
