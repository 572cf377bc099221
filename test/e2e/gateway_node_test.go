package e2e

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/alecrypt/alecrypt/test/harness"
)

// The plaintexts test/node/gateway-client.mjs sends, in order: one HTTP
// order, then WebSocket messages (two on the header handshake, one on the
// query-parameter handshake, one on the Ionic seed handshake, then the close
// request).
const (
	nodeOrder = `{"order":"node-1","items":["café crème","croissant ☕"],"total":7.5}`
	nodeAuth  = "Bearer node-pos"
)

var nodeMessages = []string{
	`{"ticket":"node-1","station":"grill"}`,
	`{"ticket":"node-2","note":"sans oignons ☺"}`,
	`{"ticket":"node-3","via":"query"}`,
	`{"ticket":"node-4","via":"ionic"}`,
	`{"close":4001}`,
}

// TestGatewayNode runs test/node/gateway-client.mjs, an ALE client that
// shares no code with ours (Node WebCrypto, fetch and the ws package), against
// alegate with and without --encrypt-responses, under an aes-256-ctr key and
// an aes-256-gcm key: the protocol as written, not as our Go client happens to
// speak it. The kitchen must get exactly the plaintexts the script encrypted,
// and nothing from its bad requests/frames.
func TestGatewayNode(t *testing.T) {
	node := harness.RequireTool(t, "node")
	requireNodeModules(t)
	for _, k := range []struct {
		fingerprint, algorithm, secret string // the key in gatewayKeys
	}{
		{"k-ctr", "aes-256-ctr", "gw-secret-ctr"},
		{"k-gcm", "aes-256-gcm", "gw-secret-gcm"},
	} {
		for _, tc := range []struct {
			name      string
			args      []string
			encrypted bool
		}{
			{"plaintext responses", nil, false},
			{"encrypted responses", []string{"--encrypt-responses"}, true},
		} {
			t.Run(k.algorithm+"/"+tc.name, func(t *testing.T) {
				e := startGateway(t, tc.args...)
				keyJSON, _ := json.Marshal(map[string]any{
					"fingerprint": k.fingerprint, "algorithm": k.algorithm, "secret": k.secret,
					"salt": "salt-" + k.fingerprint, "iterations": 1000, "counter_bits": 64,
				})
				expect := ""
				if tc.encrypted {
					expect = "1"
				}
				env := []string{"ALEGATE_URL=" + e.gate.URL, "ALE_KEY=" + string(keyJSON), "ALE_AUTHORIZATION=" + nodeAuth,
					"ALE_EXPECT_ENCRYPTED_RESPONSES=" + expect}
				out, errOut := runNodeScript(t, node, "gateway-client", env)
				if strings.Contains(out+errOut, k.secret) {
					t.Fatal("the key's secret appeared in the client's output")
				}

				reqs := e.kitchen.Requests()
				if len(reqs) != 1 {
					t.Fatalf("kitchen saw %d HTTP requests, want only the good order", len(reqs))
				}
				got := reqs[0]
				if got.Method != "POST" || got.Path != "/node/orders" || got.RawQuery != "src=node" ||
					string(got.Body) != nodeOrder || got.ContentLength != int64(len(nodeOrder)) ||
					got.Header.Get("Authorization") != nodeAuth || got.Header.Get("Content-Type") != "application/json" ||
					got.Header.Get("sec-iv") != "" || got.Header.Get("sec-fingerprint") != "" {
					t.Fatalf("kitchen saw %s %s?%s %q (length %d, headers %v)", got.Method, got.Path, got.RawQuery, got.Body, got.ContentLength, got.Header)
				}
				if msgs := e.kitchen.Messages(); strings.Join(msgs, "\n") != strings.Join(nodeMessages, "\n") {
					t.Fatalf("kitchen got messages %q, want %q", msgs, nodeMessages)
				}
			})
		}
	}
}
