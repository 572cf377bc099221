// Package wire owns the Enterprise Kitchen ALE protocol as it crosses the
// wire, in both directions: the envelope's encodings (IV and ciphertext in
// standard base64), the WebSocket frame {"iv","fingerprint","message"}, the
// HTTP binding (the ALE values in headers or query parameters, a sealed
// body), and the two ALE error codes and their bodies. Every other package
// that speaks ALE to a peer goes through it, so a second copy cannot drift.
//
// It parses untrusted input, so it is strict and total: every malformed input
// is an *Error carrying the ALE code a peer must receive (1 for missing,
// duplicated or unusable security fields, 2 for a payload that cannot be
// decrypted). It does no cryptography and imports neither Connect nor
// generated code; the fingerprint rule is internal/key's.
package wire

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"

	"github.com/alecrypt/alecrypt/internal/key"
)

// The ALE error codes and messages, verbatim from the EK protocol.
const (
	CodeHeaders    = 1
	MessageHeaders = "Incorrect security headers"
	CodeDecrypt    = 2
	MessageDecrypt = "Unable to decrypt payload"
)

// The ALE values' names: HTTP headers, and query parameters for clients
// that cannot set headers (browsers).
const (
	HeaderIV            = "sec-iv"
	HeaderFingerprint   = "sec-fingerprint"
	HeaderAuthorization = "authorization"
)

// MaxFingerprintSize bounds a fingerprint; the rule itself is internal/key's.
const MaxFingerprintSize = key.MaxFingerprintLen

// Error is a malformed ALE input.
type Error struct {
	// Code is CodeHeaders or CodeDecrypt.
	Code int
	// Reason says what was wrong, for logs; peers only get the ALE message.
	Reason string
}

func (e *Error) Error() string { return fmt.Sprintf("ale error %d: %s", e.Code, e.Reason) }

// clip bounds a peer's string quoted in a reason: the reason reaches logs,
// and a peer could send a member name of any length.
func clip(s string) string {
	const max = 64
	if len(s) <= max {
		return s
	}
	return strings.ToValidUTF8(s[:max], "") + "..."
}

func headersErr(reason string) error { return &Error{Code: CodeHeaders, Reason: reason} }
func decryptErr(reason string) error { return &Error{Code: CodeDecrypt, Reason: reason} }

var (
	bodyHeaders = []byte(`{"errorCode":1,"message":"` + MessageHeaders + `"}`)
	bodyDecrypt = []byte(`{"errorCode":2,"message":"` + MessageDecrypt + `"}`)
)

// ErrorBody returns {"errorCode":N,"message":"..."} for code 1 or 2; any
// other code gets the code-2 body, the safe default for "did not decrypt".
func ErrorBody(code int) []byte {
	if code == CodeHeaders {
		return bytes.Clone(bodyHeaders)
	}
	return bytes.Clone(bodyDecrypt)
}

// MessageOf is the ALE message for code 1 or 2 (code 2's for any other).
func MessageOf(code int) string {
	if code == CodeHeaders {
		return MessageHeaders
	}
	return MessageDecrypt
}

// Frame is one WebSocket message, or the three parts of an HTTP request.
type Frame struct {
	IV          []byte
	Fingerprint string
	Message     []byte
}

// ParseFrame decodes a WebSocket message, strictly:
//   - not a JSON object, trailing data, an unknown member or a member that
//     is not a string: CodeDecrypt (it is not a frame at all);
//   - a missing, null or empty iv, fingerprint or message (a message of
//     escaped line breaks only, which base64 skips, is empty), a member given
//     twice, or one whose name differs from iv/fingerprint/message only in
//     case (Go's and other decoders match those case-insensitively, so the
//     peer and we could read different values): CodeHeaders;
//   - an iv that is not base64 or a malformed fingerprint: CodeHeaders;
//   - a message that is not base64: CodeDecrypt.
//
// A frame without a message is refused rather than forwarded as an empty
// payload: the kitchen must never act on a message nobody encrypted. IV
// length is not checked here: it depends on the key's algorithm.
//
// The Frame shares no memory with data, so data may be reused at once. Its
// IV and Message may share one array, each capped at its length.
func ParseFrame(data []byte) (Frame, error) {
	// The frame every client sends is read by a scanner of its own
	// (scan.go), anything else by encoding/json, which defines the rules.
	if p, ok := scanPlainFrame(data); ok {
		return p.frame()
	}
	return parseFrameJSON(data)
}

// parseFrameJSON is ParseFrame on encoding/json, for any input: the
// reference the fast path is held to (FuzzParseFrame).
func parseFrameJSON(data []byte) (Frame, error) {
	dec := json.NewDecoder(bytes.NewReader(data))
	if tok, err := dec.Token(); err != nil || tok != json.Delim('{') {
		return Frame{}, decryptErr("frame is not a JSON object")
	}
	var iv, fp, msg *string
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return Frame{}, decryptErr("frame is not a JSON object")
		}
		name, _ := tok.(string)
		var dst **string
		switch name {
		case "iv":
			dst = &iv
		case "fingerprint":
			dst = &fp
		case "message":
			dst = &msg
		default:
			for _, known := range []string{"iv", "fingerprint", "message"} {
				if strings.EqualFold(name, known) {
					return Frame{}, headersErr("frame member " + known + " is ambiguous (case)")
				}
			}
			return Frame{}, decryptErr(fmt.Sprintf("frame has an unknown member %q (a frame has only iv, fingerprint and message)", clip(name)))
		}
		var v *string
		if err := dec.Decode(&v); err != nil {
			return Frame{}, decryptErr("frame member " + name + " is not a string")
		}
		if *dst != nil {
			return Frame{}, headersErr("frame member " + name + " appears twice")
		}
		if v == nil {
			v = new(string) // null is as missing as absent
		}
		*dst = v
	}
	if tok, err := dec.Token(); err != nil || tok != json.Delim('}') {
		return Frame{}, decryptErr("frame is not a JSON object")
	}
	if _, err := dec.Token(); err != io.EOF {
		return Frame{}, decryptErr("trailing data after the frame")
	}
	switch {
	case iv == nil || *iv == "":
		return Frame{}, headersErr("frame has no iv")
	case fp == nil || *fp == "":
		return Frame{}, headersErr("frame has no fingerprint")
	case msg == nil || *msg == "":
		return Frame{}, headersErr("frame has no message")
	}
	f := Frame{Fingerprint: *fp}
	if err := CheckFingerprint(f.Fingerprint); err != nil {
		return Frame{}, err
	}
	var err error
	if f.IV, err = DecodeIV(*iv); err != nil {
		return Frame{}, err
	}
	if f.Message, err = DecodePayload([]byte(*msg)); err != nil {
		return Frame{}, err
	}
	if len(f.Message) == 0 {
		// "\n" is not an empty string, but base64 skips line breaks.
		return Frame{}, headersErr("frame has no message")
	}
	return f, nil
}

// frame checks a plain frame's values as parseFrameJSON checks the strings
// it decoded, in the same order, with the same errors. IV and Message are
// decoded into one allocation; each is capped, so appending to one never
// writes into the other.
func (p plainFrame) frame() (Frame, error) {
	switch {
	case len(p.iv) == 0:
		return Frame{}, headersErr("frame has no iv")
	case len(p.fingerprint) == 0:
		return Frame{}, headersErr("frame has no fingerprint")
	case len(p.message) == 0:
		return Frame{}, headersErr("frame has no message")
	}
	f := Frame{Fingerprint: string(p.fingerprint)}
	if err := CheckFingerprint(f.Fingerprint); err != nil {
		return Frame{}, err
	}
	ivLen := strictStd.DecodedLen(len(p.iv))
	buf := make([]byte, ivLen+strictStd.DecodedLen(len(p.message)))
	var err error
	if f.IV, err = decodeIV(buf[:ivLen:ivLen], p.iv); err != nil {
		return Frame{}, err
	}
	if f.Message, err = decodePayload(buf[ivLen:], p.message); err != nil {
		return Frame{}, err
	}
	if len(f.Message) == 0 {
		// "\n" is not an empty string, but base64 skips line breaks.
		return Frame{}, headersErr("frame has no message")
	}
	return f, nil
}

// MarshalFrame encodes a frame as the EK WebSocket message.
func MarshalFrame(f Frame) []byte {
	return AppendFrame(make([]byte, 0, frameLen(f)), f)
}

// AppendFrame appends MarshalFrame(f) to dst and returns the extended
// buffer, so a caller can reuse one buffer for every frame.
func AppendFrame(dst []byte, f Frame) []byte {
	if !plainFingerprint(f.Fingerprint) {
		// Whatever a fingerprint holds, the frame is what encoding/json
		// writes (escapes, U+FFFD for invalid UTF-8); alecryptd's
		// fingerprints never get here.
		b, _ := json.Marshal(jsonFrame{EncodeIV(f.IV), f.Fingerprint, base64.StdEncoding.EncodeToString(f.Message)})
		return append(dst, b...)
	}
	dst = slices.Grow(dst, frameLen(f))
	dst = append(dst, frameIV...)
	dst = base64.StdEncoding.AppendEncode(dst, f.IV)
	dst = append(dst, frameFingerprint...)
	dst = append(dst, f.Fingerprint...)
	dst = append(dst, frameMessage...)
	dst = base64.StdEncoding.AppendEncode(dst, f.Message)
	return append(dst, frameEnd...)
}

// jsonFrame is the frame as encoding/json writes it: the member order and
// names MarshalFrame writes by hand.
type jsonFrame struct {
	IV          string `json:"iv"`
	Fingerprint string `json:"fingerprint"`
	Message     string `json:"message"`
}

const (
	frameIV          = `{"iv":"`
	frameFingerprint = `","fingerprint":"`
	frameMessage     = `","message":"`
	frameEnd         = `"}`
)

// frameLen is the length of MarshalFrame(f) when f's fingerprint is plain.
func frameLen(f Frame) int {
	return len(frameIV) + base64.StdEncoding.EncodedLen(len(f.IV)) + len(frameFingerprint) + len(f.Fingerprint) +
		len(frameMessage) + base64.StdEncoding.EncodedLen(len(f.Message)) + len(frameEnd)
}

// plainFingerprint reports whether encoding/json writes fp as it is:
// printable ASCII without '"', '\' and the characters it escapes for HTML.
func plainFingerprint(fp string) bool {
	for i := 0; i < len(fp); i++ {
		switch c := fp[i]; {
		case c < 0x20 || c > 0x7e, c == '"', c == '\\', c == '<', c == '>', c == '&':
			return false
		}
	}
	return true
}

// strictStd is standard base64 that refuses non-zero padding bits, built
// once rather than per call (Strict copies the encoding's tables).
var strictStd = base64.StdEncoding.Strict()

// EncodeIV is the sec-iv or frame iv of iv.
func EncodeIV(iv []byte) string { return base64.StdEncoding.EncodeToString(iv) }

// DecodeIV decodes a sec-iv header or frame iv: standard base64 with padding
// (RFC 4648 §4). Anything else is CodeHeaders.
func DecodeIV(s string) ([]byte, error) {
	return decodeIV(make([]byte, strictStd.DecodedLen(len(s))), []byte(s))
}

// decodeIV is DecodeIV of s into dst, which has room for it.
func decodeIV(dst, s []byte) ([]byte, error) {
	n, err := strictStd.Decode(dst, s)
	if err != nil || n == 0 {
		return nil, headersErr("iv is not standard base64")
	}
	return dst[:n:n], nil
}

// SealPayload is the body or frame message carrying ciphertext: standard
// base64.
func SealPayload(ciphertext []byte) []byte {
	out := make([]byte, base64.StdEncoding.EncodedLen(len(ciphertext)))
	base64.StdEncoding.Encode(out, ciphertext)
	return out
}

// DecodePayload decodes an encrypted body or frame message: standard base64.
// Anything else is CodeDecrypt.
func DecodePayload(b []byte) ([]byte, error) {
	return decodePayload(make([]byte, strictStd.DecodedLen(len(b))), b)
}

// decodePayload is DecodePayload of b into dst, which has room for it.
func decodePayload(dst, b []byte) ([]byte, error) {
	n, err := strictStd.Decode(dst, b)
	if err != nil {
		return nil, decryptErr("payload is not standard base64")
	}
	return dst[:n:n], nil
}

// CheckFingerprint checks a sec-fingerprint value with internal/key's rule
// (the one fingerprint rule), as CodeHeaders.
func CheckFingerprint(fp string) error {
	if err := key.ValidateFingerprint(fp); err != nil {
		return headersErr("fingerprint is malformed")
	}
	return nil
}

// AsError returns err's *Error, if it is one.
func AsError(err error) (*Error, bool) {
	var e *Error
	ok := errors.As(err, &e)
	return e, ok
}
