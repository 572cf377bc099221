package e2e

import (
	"encoding/base64"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"google.golang.org/protobuf/proto"

	alev1 "github.com/alecrypt/alecrypt/gen/ale/v1"
	"github.com/alecrypt/alecrypt/test/harness"
)

// protoComment returns the comment lines directly above the line of a proto
// file that matches decl, without the "// " prefixes: what reflection must
// show for that declaration.
func protoComment(t *testing.T, file, decl string) []string {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(harness.RepoRoot(), "proto", "ale", "v1", file))
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(string(data), "\n")
	for i, l := range lines {
		if !regexp.MustCompile(`^\s*` + decl).MatchString(l) {
			continue
		}
		var comment []string
		for j := i - 1; j >= 0 && strings.HasPrefix(strings.TrimSpace(lines[j]), "//"); j-- {
			comment = append([]string{strings.TrimPrefix(strings.TrimSpace(lines[j]), "// ")}, comment...)
		}
		if len(comment) == 0 {
			t.Fatalf("%s: %s has no comment", file, decl)
		}
		return comment
	}
	t.Fatalf("%s: no line matches %s", file, decl)
	return nil
}

// TestGrpcurlDescribeShowsProtoComments: reflection serves the descriptors
// with their source info, so the real grpcurl shows the comments written in
// proto/ (the descriptors compiled into Go code have none), and the health
// and reflection services still resolve.
func TestGrpcurlDescribeShowsProtoComments(t *testing.T) {
	svc := harness.StartAlecryptd(t, harness.StartOptions{})
	grpcurl := filepath.Join(harness.Binaries(t), "grpcurl")
	describe := func(symbol string) string {
		t.Helper()
		out, errOut, code := harness.Run(t, "", nil, grpcurl, "-plaintext", svc.Addr, "describe", symbol)
		if code != 0 {
			t.Fatalf("grpcurl describe %s: exit %d\n%s%s", symbol, code, out, errOut)
		}
		return out
	}
	for _, tc := range []struct{ symbol, file, decl string }{
		{"ale.v1.CryptoService.Encrypt", "crypto.proto", `rpc Encrypt\(`},
		{"ale.v1.CryptoService", "crypto.proto", `service CryptoService`},
		{"ale.v1.Envelope", "types.proto", `message Envelope`},
		{"ale.v1.KeyService.ListKeys", "keys.proto", `rpc ListKeys\(`},
	} {
		out := describe(tc.symbol)
		for _, line := range protoComment(t, tc.file, tc.decl) {
			if !strings.Contains(out, "// "+line+"\n") && !(line == "//" && strings.Contains(out, "//\n")) {
				t.Errorf("describe %s lacks the proto comment line %q:\n%s", tc.symbol, line, out)
			}
		}
	}
	for _, symbol := range []string{"grpc.health.v1.Health", "grpc.reflection.v1.ServerReflection", "grpc.reflection.v1alpha.ServerReflection"} {
		if out := describe(symbol); !strings.Contains(out, symbol+" is a service:") {
			t.Errorf("describe %s =\n%s", symbol, out)
		}
	}
}

// TestBufCurl runs docs/clients.md's buf curl commands against alecryptd over all
// three protocols, with the schema from reflection only.
func TestBufCurl(t *testing.T) {
	svc := harness.StartAlecryptd(t, harness.StartOptions{})
	root := harness.RepoRoot()
	bufCurl := func(args ...string) (string, string, error) {
		t.Helper()
		cmd := exec.Command("go", append([]string{"tool", "-modfile=tools/go.mod", "buf", "curl"}, args...)...)
		cmd.Dir = root
		var out, errOut strings.Builder
		cmd.Stdout, cmd.Stderr = &out, &errOut
		err := cmd.Run()
		return out.String(), errOut.String(), err
	}
	list, errOut, err := bufCurl("--http2-prior-knowledge", "--list-methods", svc.URL)
	if err != nil {
		t.Fatalf("buf curl --list-methods: %v\n%s", err, errOut)
	}
	for _, m := range []string{"ale.v1.CryptoService/Encrypt", "ale.v1.CryptoService/Stream", "ale.v1.KeyService/ListKeys", "grpc.health.v1.Health/Check"} {
		if !strings.Contains(list, m+"\n") {
			t.Errorf("buf curl --list-methods lacks %s:\n%s", m, list)
		}
	}
	for _, protocol := range []string{"connect", "grpc", "grpcweb"} {
		t.Run(protocol, func(t *testing.T) {
			enc, errOut, err := bufCurl("--http2-prior-knowledge", "--protocol", protocol,
				"--data", `{"plaintext":"aGVsbG8sIGtpdGNoZW4="}`, svc.URL+"/ale.v1.CryptoService/Encrypt")
			if err != nil {
				t.Fatalf("Encrypt: %v\n%s", err, errOut)
			}
			var res struct {
				Envelope json.RawMessage `json:"envelope"`
			}
			if err := json.Unmarshal([]byte(enc), &res); err != nil || len(res.Envelope) == 0 {
				t.Fatalf("Encrypt output %q: %v", enc, err)
			}
			dec, errOut, err := bufCurl("--http2-prior-knowledge", "--protocol", protocol,
				"--data", `{"envelope":`+string(res.Envelope)+`}`, svc.URL+"/ale.v1.CryptoService/Decrypt")
			if err != nil || !strings.Contains(dec, `"plaintext": "aGVsbG8sIGtpdGNoZW4="`) {
				t.Fatalf("Decrypt: %v\n%s%s", err, dec, errOut)
			}
			_, errOut, err = bufCurl("--http2-prior-knowledge", "--protocol", protocol,
				"--data", `{"envelope":{"iv":"AAAAAAAAAAAAAAAAAAAAAA==","fingerprint":"no-such-key"}}`, svc.URL+"/ale.v1.CryptoService/Decrypt")
			// buf curl prints error details undecoded: the type and the
			// message in base64 (unpadded).
			m := regexp.MustCompile(`"type": "ale.v1.ErrorDetail",\s*"value": "([A-Za-z0-9+/]+)"`).FindStringSubmatch(errOut)
			if err == nil || !strings.Contains(errOut, `"code": "not_found"`) || m == nil {
				t.Fatalf("Decrypt with an unknown key: err %v, stderr:\n%s\nwant not_found with the ALE detail", err, errOut)
			}
			raw, err := base64.RawStdEncoding.DecodeString(m[1])
			var detail alev1.ErrorDetail
			if err == nil {
				err = proto.Unmarshal(raw, &detail)
			}
			if err != nil || detail.GetErrorCode() != 2 || detail.GetMessage() != "Unable to decrypt payload" {
				t.Errorf("ErrorDetail = %v (%v), want ALE 2 Unable to decrypt payload", &detail, err)
			}
		})
	}
}
