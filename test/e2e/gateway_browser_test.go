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
// over a WebSocket. The same page from an origin alegate does not allow gets
// nothing through. test/node/browser-client.mjs drives Chromium over the
// DevTools protocol.
func TestGatewayBrowser(t *testing.T) {
	node := harness.RequireTool(t, "node")
	requireNodeModules(t)
	cdp := harness.StartChromium(t)

	// The page's own server: one port, reached as 127.0.0.1 (allowed) and
	// as localhost (another origin, not allowed).
	pages := httptest.NewServer(http.FileServer(http.Dir(filepath.Join(harness.RepoRoot(), "test", "node"))))
	t.Cleanup(pages.Close)
	_, port, _ := net.SplitHostPort(strings.TrimPrefix(pages.URL, "http://"))
	allowed := "http://127.0.0.1:" + port

	e := startGateway(t, "--encrypt-responses", "--allow-origins", allowed)
	const (
		order  = `{"order":"browser-1","items":["tarte tatin"]}`
		ticket = `{"ticket":"browser-1","station":"pastry"}`
		auth   = "Bearer browser-pos"
		secret = "gw-secret-ctr" // store-1's key in gatewayKeys
	)
	cfg, _ := json.Marshal(map[string]any{
		"gateway": e.gate.URL, "fingerprint": "k-ctr", "secret": secret, "salt": "salt-k-ctr", "iterations": 1000,
		"authorization": auth, "order": order, "ticket": ticket, "encryptedResponses": true,
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
