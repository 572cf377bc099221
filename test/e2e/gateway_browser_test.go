package e2e

import (
	"encoding/json"
	"net"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"

	"github.com/alecrypt/alecrypt/test/harness"
)

// TestGatewayBrowser: a real headless Chromium loads a page from another
// origin than alegate's (test/node/browser-page.html); with WebCrypto only,
// the page POSTs an ALE order with fetch() (a CORS preflight, the ALE values
// in the query, the sealed response's headers exposed) and exchanges frames
// over a WebSocket, under an aes-256-ctr key and under an aes-256-gcm key.
// The same page from an origin alegate does not allow gets nothing through. test/node/browser-client.mjs drives Chromium over the
// DevTools protocol.
func TestGatewayBrowser(t *testing.T) {
	node := harness.RequireTool(t, "node")
	requireNodeModules(t)
	cdp := harness.StartChromium(t)

	// The page's own server: one port, reached as 127.0.0.1 (allowed) and
	// as localhost (another origin, not allowed).
	pages := httptest.NewServer(http.FileServer(http.Dir(filepath.Join(harness.RepoRoot(), "test", "node"))))
	t.Cleanup(pages.Close)

	for _, k := range []struct {
		fingerprint, algorithm, secret string // the key in gatewayKeys
	}{
		{"k-ctr", "aes-256-ctr", "gw-secret-ctr"},
		{"k-gcm", "aes-256-gcm", "gw-secret-gcm"},
	} {
		// One after the other: the subtests share the browser's page.
		t.Run(k.algorithm, func(t *testing.T) {
			testGatewayBrowser(t, node, cdp, pages.URL, k.fingerprint, k.algorithm, k.secret)
		})
	}
}

func testGatewayBrowser(t *testing.T, node, cdp, pagesURL, fingerprint, algorithm, secret string) {
	_, port, _ := net.SplitHostPort(strings.TrimPrefix(pagesURL, "http://"))
	allowed := "http://127.0.0.1:" + port
	e := startGateway(t, "--encrypt-responses", "--allow-origins", allowed)
	const (
		order  = `{"order":"browser-1","items":["tarte tatin"]}`
		ticket = `{"ticket":"browser-1","station":"pastry"}`
		auth   = "Bearer browser-pos"
	)
	cfg, _ := json.Marshal(map[string]any{
		"gateway": e.gate.URL, "fingerprint": fingerprint, "algorithm": algorithm, "secret": secret, "salt": "salt-" + fingerprint,
		"iterations": 1000, "authorization": auth, "order": order, "ticket": ticket, "encryptedResponses": true,
	})
	out, errOut := runNodeScript(t, node, "browser-client", []string{
		"CDP_URL=" + cdp,
		"PAGE_URL=" + allowed + "/browser-page.html",
		"REFUSED_PAGE_URL=http://localhost:" + port + "/browser-page.html",
		"ALE_CONFIG=" + string(cfg),
	})
	if strings.Contains(out+errOut, secret) {
		t.Fatal("the key's secret appeared in the client's output")
	}

	reqs := e.kitchen.Requests()
	if len(reqs) != 1 {
		t.Fatalf("kitchen saw %d HTTP requests, want only the good order (preflights and refusals stop at the gateway)", len(reqs))
	}
	got := reqs[0]
	if got.Method != "POST" || got.Path != "/browser/orders" || got.RawQuery != "src=browser" || string(got.Body) != order ||
		got.Header.Get("Authorization") != auth || got.Header.Get("sec-iv") != "" {
		t.Fatalf("kitchen saw %s %s?%s %q (headers %v)", got.Method, got.Path, got.RawQuery, got.Body, got.Header)
	}
	ups := e.kitchen.Upgrades()
	if len(ups) != 1 || ups[0].RawQuery != "screen=grill" || ups[0].Header.Get("Authorization") != auth {
		t.Fatalf("kitchen WebSocket handshakes: %+v, want one, with screen=grill only and the page's authorization", ups)
	}
	if msgs := e.kitchen.Messages(); strings.Join(msgs, "|") != ticket+`|{"close":4001}` {
		t.Fatalf("kitchen got messages %q", msgs)
	}
}
