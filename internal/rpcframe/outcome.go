package rpcframe

import (
	"encoding/json"
	"net/http"
	"net/url"
	"strconv"
	"strings"

	"connectrpc.com/connect"
)

// Outcome reads the Connect code and message of a finished response in
// protocol (Protocol's names): status is its HTTP status (0 if none was
// written), header its headers and trailers (trailers under
// http.TrailerPrefix), body its body or the first part of it. failed is
// false for a success. A response that carries no RPC error of its own
// (405, 415 or 505 from connect-go's routing) is mapped from its HTTP
// status as gRPC maps HTTP errors.
func Outcome(protocol string, status int, header http.Header, body []byte) (code connect.Code, msg string, failed bool) {
	switch protocol {
	case connect.ProtocolGRPC, connect.ProtocolGRPCWeb:
		grpcStatus, message := GRPCStatus(header, body)
		if grpcStatus == "" {
			return httpToCode(status)
		}
		n, err := strconv.Atoi(grpcStatus)
		if err != nil {
			return connect.CodeUnknown, "unparsable grpc-status", true
		}
		return connect.Code(n), message, n != 0
	}
	if strings.HasPrefix(header.Get("Content-Type"), "application/connect+") {
		// Connect streaming: the error is in the end-of-stream message.
		if code, msg, ok := EndStreamError(body); ok {
			return code, msg, true
		}
		return httpToCode(status)
	}
	if status == http.StatusOK || status == 0 {
		return 0, "", false
	}
	if code, msg, ok := unaryError(body); ok {
		return code, msg, true
	}
	return httpToCode(status)
}

// connectError is the JSON form of a Connect error: a unary response's
// body, or the "error" member of an end-of-stream message.
type connectError struct {
	Code    connect.Code `json:"code"`
	Message string       `json:"message"`
}

// unaryError reads a Connect unary error body; ok is false unless it holds
// a code.
func unaryError(body []byte) (code connect.Code, msg string, ok bool) {
	var e connectError
	if json.Unmarshal(body, &e) != nil || e.Code == 0 {
		return 0, "", false
	}
	return e.Code, e.Message, true
}

// EndStreamError reads the error of a Connect streaming response body: the
// first end-of-stream message among its whole envelopes that holds one. ok
// is false when there is none (a success, or a body cut short).
func EndStreamError(body []byte) (code connect.Code, msg string, ok bool) {
	var end struct {
		Error *json.RawMessage `json:"error"`
	}
	var e connectError
	for {
		flags, payload, rest, whole := Split(body)
		if !whole {
			return 0, "", false
		}
		if flags&FlagEndStream != 0 && json.Unmarshal(payload, &end) == nil && end.Error != nil {
			if json.Unmarshal(*end.Error, &e) == nil {
				return e.Code, e.Message, true
			}
		}
		body = rest
	}
}

// GRPCStatus finds grpc-status and grpc-message (percent-decoded): in the
// headers of a trailers-only response or as HTTP trailers (gRPC), or else
// in the trailer frames among the whole envelopes of body (gRPC-Web).
// status is "" when none says.
func GRPCStatus(header http.Header, body []byte) (status, message string) {
	for k, v := range header {
		switch strings.ToLower(strings.TrimPrefix(k, http.TrailerPrefix)) {
		case "grpc-status":
			status = v[0]
		case "grpc-message":
			message, _ = url.PathUnescape(v[0])
		}
	}
	if status != "" {
		return status, message
	}
	for {
		flags, payload, rest, whole := Split(body)
		if !whole {
			return status, message
		}
		if flags&FlagTrailer != 0 {
			for line := range strings.SplitSeq(string(payload), "\r\n") {
				k, v, _ := strings.Cut(line, ":")
				switch strings.ToLower(strings.TrimSpace(k)) {
				case "grpc-status":
					status = strings.TrimSpace(v)
				case "grpc-message":
					message, _ = url.PathUnescape(strings.TrimSpace(v))
				}
			}
		}
		body = rest
	}
}

// httpToCode maps an HTTP status without an RPC error as gRPC does for HTTP
// errors.
func httpToCode(status int) (connect.Code, string, bool) {
	switch status {
	case 0, http.StatusOK:
		return 0, "", false
	case http.StatusBadRequest:
		return connect.CodeInternal, http.StatusText(status), true
	case http.StatusUnauthorized:
		return connect.CodeUnauthenticated, http.StatusText(status), true
	case http.StatusForbidden:
		return connect.CodePermissionDenied, http.StatusText(status), true
	case http.StatusNotFound:
		return connect.CodeUnimplemented, http.StatusText(status), true
	case http.StatusTooManyRequests, http.StatusBadGateway, http.StatusServiceUnavailable, http.StatusGatewayTimeout:
		return connect.CodeUnavailable, http.StatusText(status), true
	}
	return connect.CodeUnknown, http.StatusText(status), true
}
