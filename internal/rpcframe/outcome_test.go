package rpcframe

import (
	"errors"
	"net/http"
	"net/http/httptest"
	"testing"

	"connectrpc.com/connect"
)

// TestOutcomeOfConnectGo: every error connect-go writes, in every protocol
// and request encoding, reads back as its code and message.
func TestOutcomeOfConnectGo(t *testing.T) {
	t.Parallel()
	ew := connect.NewErrorWriter()
	for _, ct := range []string{
		"application/json", "application/proto",
		"application/connect+proto", "application/connect+json",
		"application/grpc", "application/grpc+json",
		"application/grpc-web", "application/grpc-web+proto",
	} {
		for _, code := range []connect.Code{connect.CodeInvalidArgument, connect.CodeResourceExhausted, connect.CodeUnauthenticated, connect.CodeInternal} {
			r := httptest.NewRequest(http.MethodPost, "/ale.v1.CryptoService/Encrypt", nil)
			r.Header.Set("Content-Type", ct)
			w := httptest.NewRecorder()
			if err := ew.Write(w, r, connect.NewError(code, errors.New("why: 100% sure"))); err != nil {
				t.Fatalf("%s: ErrorWriter: %v", ct, err)
			}
			header := w.Header().Clone()
			for k, v := range w.Result().Trailer {
				header[http.TrailerPrefix+k] = v
			}
			gotCode, gotMsg, failed := Outcome(Protocol(ct), w.Code, header, w.Body.Bytes())
			if !failed || gotCode != code || gotMsg != "why: 100% sure" {
				t.Errorf("%s, %v: Outcome = %v, %q, %v; want %v, %q, true", ct, code, gotCode, gotMsg, failed, code, "why: 100% sure")
			}
		}
	}
}

func TestOutcome(t *testing.T) {
	t.Parallel()
	connectStream := http.Header{"Content-Type": {"application/connect+proto"}}
	endStream := func(json string) []byte { return Append(nil, FlagEndStream, []byte(json)) }
	trailer := func(lines string) []byte { return Append(nil, FlagTrailer, []byte(lines)) }
	msg := Append(nil, 0, []byte("a message"))
	for _, tc := range []struct {
		name     string
		protocol string
		status   int
		header   http.Header
		body     []byte
		code     connect.Code
		msg      string
		failed   bool
	}{
		{"connect unary success", connect.ProtocolConnect, 200, nil, []byte("x"), 0, "", false},
		{"connect unary, nothing written", connect.ProtocolConnect, 0, nil, nil, 0, "", false},
		{"connect unary error", connect.ProtocolConnect, 400, nil, []byte(`{"code":"invalid_argument","message":"bad"}`), connect.CodeInvalidArgument, "bad", true},
		{"connect unary error without a code", connect.ProtocolConnect, 503, nil, []byte(`{"message":"bad"}`), connect.CodeUnavailable, "Service Unavailable", true},
		{"connect unary, body cut short", connect.ProtocolConnect, 429, nil, []byte(`{"code":"resource_exh`), connect.CodeUnavailable, "Too Many Requests", true},
		{"415 from routing", connect.ProtocolConnect, 415, nil, nil, connect.CodeUnknown, "Unsupported Media Type", true},
		{"404", connect.ProtocolConnect, 404, nil, nil, connect.CodeUnimplemented, "Not Found", true},
		{"connect stream success", connect.ProtocolConnect, 200, connectStream, append(msg, endStream(`{}`)...), 0, "", false},
		{"connect stream error after a message", connect.ProtocolConnect, 200, connectStream,
			append(msg, endStream(`{"error":{"code":"not_found","message":"no key"}}`)...), connect.CodeNotFound, "no key", true},
		{"connect stream, end cut short", connect.ProtocolConnect, 200, connectStream,
			endStream(`{"error":{"code":"not_found"}}`)[:10], 0, "", false},
		{"connect stream, error in a message without the flag", connect.ProtocolConnect, 200, connectStream,
			Append(nil, 0, []byte(`{"error":{"code":"not_found"}}`)), 0, "", false},
		{"grpc trailers-only", connect.ProtocolGRPC, 200, http.Header{"Grpc-Status": {"8"}, "Grpc-Message": {"over%20budget"}}, nil,
			connect.CodeResourceExhausted, "over budget", true},
		{"grpc trailers", connect.ProtocolGRPC, 200, http.Header{http.TrailerPrefix + "Grpc-Status": {"0"}}, msg, 0, "", false},
		{"grpc unparsable status", connect.ProtocolGRPC, 200, http.Header{"Grpc-Status": {"x"}}, nil, connect.CodeUnknown, "unparsable grpc-status", true},
		{"grpc without a status", connect.ProtocolGRPC, 505, nil, nil, connect.CodeUnknown, "HTTP Version Not Supported", true},
		{"grpc-web trailer frame", connect.ProtocolGRPCWeb, 200, nil,
			append(msg, trailer("grpc-status: 16\r\nGrpc-Message: who%3F\r\n")...), connect.CodeUnauthenticated, "who?", true},
		{"grpc-web trailer frame cut short", connect.ProtocolGRPCWeb, 200, nil, trailer("grpc-status: 16\r\n")[:8], 0, "", false},
	} {
		code, msg, failed := Outcome(tc.protocol, tc.status, tc.header, tc.body)
		if code != tc.code || msg != tc.msg || failed != tc.failed {
			t.Errorf("%s: Outcome = %v, %q, %v; want %v, %q, %v", tc.name, code, msg, failed, tc.code, tc.msg, tc.failed)
		}
	}
}

func TestProtocol(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		ct, protocol string
		enveloped    bool
	}{
		{"application/json", connect.ProtocolConnect, false},
		{"application/proto", connect.ProtocolConnect, false},
		{"application/connect+proto", connect.ProtocolConnect, true},
		{"application/grpc", connect.ProtocolGRPC, true},
		{"application/grpc+json", connect.ProtocolGRPC, true},
		{"application/grpc-web+proto", connect.ProtocolGRPCWeb, true},
		{"", connect.ProtocolConnect, false},
	} {
		if got := Protocol(tc.ct); got != tc.protocol {
			t.Errorf("Protocol(%q) = %q, want %q", tc.ct, got, tc.protocol)
		}
		if got := IsEnveloped(tc.ct); got != tc.enveloped {
			t.Errorf("IsEnveloped(%q) = %v, want %v", tc.ct, got, tc.enveloped)
		}
	}
}

// FuzzOutcome: any recorded body, in any protocol, reads without a panic,
// and a success never carries a code.
func FuzzOutcome(f *testing.F) {
	f.Add(200, []byte(nil))
	f.Add(400, []byte(`{"code":"internal","message":"x"}`))
	f.Add(200, Append(nil, FlagEndStream, []byte(`{"error":{"code":"unknown","message":"m"}}`)))
	f.Add(200, Append(nil, FlagTrailer, []byte("grpc-status: 2\r\ngrpc-message: m\r\n")))
	f.Fuzz(func(t *testing.T, status int, body []byte) {
		for _, h := range []http.Header{nil, {"Content-Type": {"application/connect+json"}}} {
			for _, protocol := range []string{connect.ProtocolConnect, connect.ProtocolGRPC, connect.ProtocolGRPCWeb} {
				code, msg, failed := Outcome(protocol, status, h, body)
				if !failed && code != 0 {
					t.Fatalf("%s %d % x: Outcome = %v, %q, %v", protocol, status, body, code, msg, failed)
				}
			}
		}
	})
}
