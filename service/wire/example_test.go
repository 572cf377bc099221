package wire_test

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"

	"github.com/alecrypt/alecrypt/service/wire"
)

// fixedIV is a fixed IV, so the examples print the same frames on every run;
// alecryptd draws a fresh random one for each envelope.
var fixedIV = []byte{0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15}

// A kitchen gateway reads each WebSocket message as a frame: the envelope
// alecryptd decrypts. A malformed frame is an *Error whose code is the ALE
// error the peer must receive.
func ExampleParseFrame() {
	f, err := wire.ParseFrame([]byte(`{"iv":"AAECAwQFBgcICQoLDA0ODw==","fingerprint":"store-1-2026","message":"c2VhbGVk"}`))
	if err != nil {
		panic(err)
	}
	fmt.Printf("iv %d bytes, fingerprint %s, message %q\n", len(f.IV), f.Fingerprint, f.Message)

	_, err = wire.ParseFrame([]byte(`{"iv":"AAECAwQFBgcICQoLDA0ODw==","message":"c2VhbGVk"}`))
	if e, ok := wire.AsError(err); ok {
		fmt.Println(e.Code, string(wire.ErrorBody(e.Code)))
	}
	// Output:
	// iv 16 bytes, fingerprint store-1-2026, message "sealed"
	// 1 {"errorCode":1,"message":"Incorrect security headers"}
}

// MarshalFrame writes an envelope as the WebSocket message; ParseFrame
// reads it back.
func ExampleMarshalFrame() {
	frame := wire.MarshalFrame(wire.Frame{IV: fixedIV, Fingerprint: "store-1-2026", Message: []byte("sealed")})
	fmt.Println(string(frame))
	// Output:
	// {"iv":"AAECAwQFBgcICQoLDA0ODw==","fingerprint":"store-1-2026","message":"c2VhbGVk"}
}

// ReadParams reads the ALE values of an HTTP request, from headers or,
// for browsers, from the query; Check applies the errorCode 1 rules and
// returns the IV.
func ExampleReadParams() {
	req := httptest.NewRequest(http.MethodPost, "/v1/orders", nil)
	req.Header.Set("Authorization", "Bearer pos-token")
	req.Header.Set("sec-iv", "AAECAwQFBgcICQoLDA0ODw==")
	req.Header.Set("sec-fingerprint", "store-1-2026")

	p, err := wire.ReadParams(req.Header, req.URL.Query())
	if err != nil {
		panic(err)
	}
	iv, err := p.Check()
	if err != nil {
		panic(err)
	}
	fmt.Printf("fingerprint %s, iv %d bytes\n", p.Fingerprint, len(iv))

	// Two different IVs: which one the client meant cannot be guessed.
	req.URL.RawQuery = url.Values{"sec-iv": {"Dw4NDAsKCQgHBgUEAwIBAA=="}}.Encode()
	_, err = wire.ReadParams(req.Header, req.URL.Query())
	fmt.Println(err)
	// Output:
	// fingerprint store-1-2026, iv 16 bytes
	// ale error 1: sec-iv differs between header and query
}

// The two ALE error bodies, verbatim from the Enterprise Kitchen protocol.
func ExampleErrorBody() {
	fmt.Println(string(wire.ErrorBody(wire.CodeHeaders)))
	fmt.Println(string(wire.ErrorBody(wire.CodeDecrypt)))
	// Output:
	// {"errorCode":1,"message":"Incorrect security headers"}
	// {"errorCode":2,"message":"Unable to decrypt payload"}
}

// WriteError answers a request that failed an ALE check.
func ExampleWriteError() {
	rec := httptest.NewRecorder()
	wire.WriteError(rec, wire.CodeDecrypt)
	fmt.Println(rec.Code, rec.Header().Get("Content-Type"), rec.Body.String())
	// Output:
	// 400 application/json {"errorCode":2,"message":"Unable to decrypt payload"}
}

// A sealed request or response carries the envelope's IV and fingerprint
// as headers and its ciphertext as a base64 body; Sealed reads all three
// back.
func ExampleSetHeaders() {
	h := http.Header{}
	wire.SetHeaders(h, fixedIV, "store-1-2026")
	body := wire.SealPayload([]byte("sealed"))
	fmt.Println(h.Get("sec-iv"), h.Get("sec-fingerprint"), string(body))

	f, ok, err := wire.Sealed(h, body)
	if err != nil {
		panic(err)
	}
	fmt.Printf("sealed %v: fingerprint %s, message %q\n", ok, f.Fingerprint, f.Message)
	// Output:
	// AAECAwQFBgcICQoLDA0ODw== store-1-2026 c2VhbGVk
	// sealed true: fingerprint store-1-2026, message "sealed"
}

// A gateway forwarding a decrypted request drops the ALE values, leaving
// the upstream's own query parameters byte for byte.
func ExampleStripQuery() {
	fmt.Println(wire.StripQuery("table=7&sec-iv=AAECAwQFBgcICQoLDA0ODw%3D%3D&sec-fingerprint=store-1-2026&note=a+b"))
	// Output:
	// table=7&note=a+b
}
