package e2e

import (
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"

	"github.com/alecrypt/alecrypt/test/harness"
)

// TestGrpcurl runs the real grpcurl (built from the pinned tools module)
// through docs/clients.md's operator commands: reflection, describe, Encrypt with
// a JSON body, Decrypt of the WebSocket frame, Resolve, health, and an error.
func TestGrpcurl(t *testing.T) {
	svc := harness.StartAlecryptd(t, harness.StartOptions{})
	grpcurl := filepath.Join(harness.Binaries(t), "grpcurl")
	run := func(args ...string) (string, string, int) {
		t.Helper()
		return harness.Run(t, "", nil, grpcurl, append([]string{"-plaintext"}, args...)...)
	}
	must := func(args ...string) string {
		t.Helper()
		out, errOut, code := run(args...)
		if code != 0 {
			t.Fatalf("grpcurl %s: exit %d\n%s%s", strings.Join(args, " "), code, out, errOut)
		}
		return out
	}

	list := must(svc.Addr, "list")
	for _, want := range []string{"ale.v1.CryptoService", "ale.v1.KeyService", "grpc.health.v1.Health",
		"grpc.reflection.v1.ServerReflection", "grpc.reflection.v1alpha.ServerReflection"} {
		if !strings.Contains(list, want+"\n") {
			t.Errorf("grpcurl list = %q, missing %s", list, want)
		}
	}
	if d := must(svc.Addr, "describe", "ale.v1.CryptoService"); !strings.Contains(d, "rpc Decrypt ( .ale.v1.DecryptRequest ) returns ( .ale.v1.DecryptResponse )") ||
		!strings.Contains(d, "rpc Stream ( stream .ale.v1.StreamRequest ) returns ( stream .ale.v1.StreamResponse )") {
		t.Errorf("describe ale.v1.CryptoService =\n%s", d)
	}

	// "hello, kitchen" in base64, as protobuf JSON bytes.
	enc := must("-d", `{"plaintext":"aGVsbG8sIGtpdGNoZW4="}`, svc.Addr, "ale.v1.CryptoService/Encrypt")
	var encRes struct {
		Envelope json.RawMessage `json:"envelope"`
	}
	if err := json.Unmarshal([]byte(enc), &encRes); err != nil || len(encRes.Envelope) == 0 {
		t.Fatalf("Encrypt output %q: %v", enc, err)
	}
	var frame map[string]string
	if err := json.Unmarshal(encRes.Envelope, &frame); err != nil || len(frame) != 3 || frame["iv"] == "" || frame["fingerprint"] == "" || frame["message"] == "" {
		t.Fatalf("envelope %s is not the {iv, fingerprint, message} frame: %v", encRes.Envelope, err)
	}
	dec := must("-d", `{"envelope":`+string(encRes.Envelope)+`,"expect":"PLAINTEXT_FORMAT_UTF8"}`, svc.Addr, "ale.v1.CryptoService/Decrypt")
	if !strings.Contains(dec, `"plaintext": "aGVsbG8sIGtpdGNoZW4="`) {
		t.Errorf("Decrypt output = %s, want the plaintext back", dec)
	}
	if res := must("-d", `{"key":{"alias":"default"}}`, svc.Addr, "ale.v1.CryptoService/Resolve"); !strings.Contains(res, `"fingerprint": "`+frame["fingerprint"]+`"`) || strings.Contains(res, "secret") {
		t.Errorf("Resolve output = %s", res)
	}
	if h := must("-d", `{"service":"ale.v1.CryptoService"}`, svc.Addr, "grpc.health.v1.Health/Check"); !strings.Contains(h, `"status": "SERVING"`) {
		t.Errorf("health = %s, want SERVING", h)
	}
	if h := must(svc.Addr, "grpc.health.v1.Health/Check"); !strings.Contains(h, `"status": "SERVING"`) {
		t.Errorf("overall health = %s, want SERVING", h)
	}
	out, errOut, code := run("-d", `{"envelope":{"iv":"AAAAAAAAAAAAAAAAAAAAAA==","fingerprint":"no-such-key"}}`, svc.Addr, "ale.v1.CryptoService/Decrypt")
	if code == 0 || !strings.Contains(errOut, "Code: NotFound") || !strings.Contains(errOut, "unknown key") || !strings.Contains(errOut, `"errorCode": 2`) {
		t.Errorf("Decrypt with an unknown key: exit %d\n%s%s\nwant NotFound", code, out, errOut)
	}
}
