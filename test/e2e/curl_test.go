package e2e

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/alecrypt/alecrypt/test/harness"
)

// TestCurlConnectJSON runs docs/clients.md's curl commands: the Connect protocol
// is JSON over plain HTTP/1.1, so curl needs no schema and no HTTP/2.
func TestCurlConnectJSON(t *testing.T) {
	curl := harness.RequireTool(t, "curl")
	svc := harness.StartAlecryptd(t, harness.StartOptions{})
	post := func(method, body string) (string, string) {
		t.Helper()
		out, errOut, code := harness.Run(t, "", nil, curl, "-sS", "--http1.1", "-w", "\n%{http_code}",
			"-H", "content-type: application/json", "-d", body, svc.URL+"/ale.v1.CryptoService/"+method)
		if code != 0 {
			t.Fatalf("curl %s: exit %d\n%s%s", method, code, out, errOut)
		}
		resp, status, _ := strings.Cut(strings.TrimSuffix(out, "\n"), "\n")
		return resp, status
	}
	enc, status := post("Encrypt", `{"plaintext":"aGk="}`)
	var res struct {
		Envelope json.RawMessage `json:"envelope"`
	}
	if status != "200" || json.Unmarshal([]byte(enc), &res) != nil || len(res.Envelope) == 0 {
		t.Fatalf("Encrypt: HTTP %s %s", status, enc)
	}
	if dec, status := post("Decrypt", `{"envelope":`+string(res.Envelope)+`}`); status != "200" || !strings.Contains(dec, `"plaintext":"aGk="`) {
		t.Errorf("Decrypt: HTTP %s %s", status, dec)
	}
	// Connect's JSON error: code, message and the ALE detail, decoded
	// because the server knows its type ("debug").
	errBody, status := post("Decrypt", `{"envelope":{"iv":"AAAAAAAAAAAAAAAAAAAAAA==","fingerprint":"no-such-key"}}`)
	var e struct {
		Code    string `json:"code"`
		Details []struct {
			Type  string `json:"type"`
			Debug struct {
				ErrorCode int `json:"errorCode"`
			} `json:"debug"`
		} `json:"details"`
	}
	if status != "404" || json.Unmarshal([]byte(errBody), &e) != nil || e.Code != "not_found" || len(e.Details) != 1 || e.Details[0].Type != "ale.v1.ErrorDetail" || e.Details[0].Debug.ErrorCode != 2 {
		t.Fatalf("Decrypt with an unknown key: HTTP %s %s", status, errBody)
	}
	t.Logf("error body: %s", errBody)
}
