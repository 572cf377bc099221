package main

import (
	"os/exec"
	"path"
	"strings"
	"testing"
)

// TestLinksNoKeysOrSync keeps what holds, serves or syncs keys out of
// alegate: a gateway holds no keys (every operation is a call to
// alecryptd), and what a binary links is what it could be made to run. A
// shared package (metrics, say) that imports one of them would bring it in
// unnoticed.
func TestLinksNoKeysOrSync(t *testing.T) {
	t.Parallel()
	gobin, err := exec.LookPath("go")
	if err != nil {
		t.Skip("no go command to list the dependencies with")
	}
	out, err := exec.Command(gobin, "list", "-deps", ".").Output()
	if err != nil {
		t.Fatalf("go list -deps: %v", err)
	}
	banned := map[string]bool{"keysync": true, "portal": true, "keystore": true, "vaultstore": true,
		"filestore": true, "keyring": true, "engine": true, "suite": true}
	for _, pkg := range strings.Fields(string(out)) {
		if strings.HasPrefix(pkg, "github.com/alecrypt/alecrypt/") && banned[path.Base(pkg)] {
			t.Errorf("alegate links %s", pkg)
		}
	}
}
