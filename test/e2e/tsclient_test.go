package e2e

import (
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/alecrypt/alecrypt/test/harness"
)

// npmInstall is the command that installs the pinned TypeScript toolchain.
const npmInstall = "npm ci --ignore-scripts --no-audit --no-fund"

// TestTSClient runs test/node/client.test.ts, a Node program using the code
// buf generates into gen/ts, the @alecrypt/ale-client package and
// @connectrpc/connect-node, against a real alecryptd over Connect and gRPC:
// round trips, Resolve, batches with a bad item, and the ErrorDetail on
// failed calls.
func TestTSClient(t *testing.T) {
	node := harness.RequireTool(t, "node")
	requireNodeModules(t)
	svc := harness.StartAlecryptd(t, harness.StartOptions{})
	// tsx strips the types in-process; it is resolved from node_modules at
	// the repository root (the test runs in test/e2e), never fetched. The
	// condition makes the package resolve to its sources, not to a dist/ that
	// only npm pack builds (TestTSPackage tests that one).
	out, errOut, code := harness.Run(t, "", []string{"ALECRYPT_URL=" + svc.URL},
		node, "--conditions=@alecrypt/source", "--import", "tsx", filepath.Join(harness.RepoRoot(), "test", "node", "client.test.ts"))
	t.Logf("client.test.ts output:\n%s%s", out, errOut)
	if code != 0 {
		t.Fatalf("client.test.ts exit %d", code)
	}
	m := regexp.MustCompile(`(?m)^ts-client: (\d+) checks passed$`).FindStringSubmatch(out)
	if m == nil {
		t.Fatal("client.test.ts printed no summary line")
	}
	if n, _ := strconv.Atoi(m[1]); n < 10 {
		t.Fatalf("client.test.ts ran %d checks, want at least 10", n)
	}
	if strings.Contains(out, "FAIL") {
		t.Fatal("client.test.ts reported a failed check but exited 0")
	}

	// The key alecryptd generated on first start never reaches a client.
	data, err := os.ReadFile(svc.Keystore)
	if err != nil {
		t.Fatal(err)
	}
	var ks struct {
		Keys []struct {
			Secret string `json:"secret"`
		} `json:"keys"`
	}
	if err := json.Unmarshal(data, &ks); err != nil || len(ks.Keys) == 0 || ks.Keys[0].Secret == "" {
		t.Fatalf("keystore %s has no key with a secret (%v)", svc.Keystore, err)
	}
	if strings.Contains(out+errOut, ks.Keys[0].Secret) {
		t.Fatal("the key's secret appeared in the client's output")
	}
}

// TestTSClientTypecheck type-checks the client package, the generated code it
// re-exports and the Node test client with the pinned TypeScript, so a proto
// change that breaks TypeScript callers fails `make test`.
func TestTSClientTypecheck(t *testing.T) {
	node := harness.RequireTool(t, "node")
	requireNodeModules(t)
	root := harness.RepoRoot()
	tsc := filepath.Join(root, "node_modules", "typescript", "bin", "tsc")
	for _, project := range []string{"clients/ts", "test/node"} {
		out, errOut, code := harness.Run(t, "", nil, node, tsc, "--noEmit", "-p", filepath.Join(root, project))
		if code != 0 {
			t.Errorf("tsc --noEmit -p %s: exit %d\n%s%s", project, code, out, errOut)
		}
	}
}
