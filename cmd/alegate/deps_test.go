package main

import (
	"os/exec"
	"strings"
	"testing"
)

// TestLinksNoSyncCode keeps the Portal client and the sync rules out of
// alegate: a gateway holds no keys and syncs none, and what a binary links
// is what it could be made to run. A shared package (metrics, say) that
// imports them would bring them in unnoticed.
func TestLinksNoSyncCode(t *testing.T) {
	t.Parallel()
	gobin, err := exec.LookPath("go")
	if err != nil {
		t.Skip("no go command to list the dependencies with")
	}
	out, err := exec.Command(gobin, "list", "-deps", ".").Output()
	if err != nil {
		t.Fatalf("go list -deps: %v", err)
	}
	for _, pkg := range strings.Fields(string(out)) {
		for _, banned := range []string{"/service/keysync", "/service/portal", "/service/vaultstore"} {
			if strings.HasSuffix(pkg, banned) {
				t.Errorf("alegate links %s", pkg)
			}
		}
	}
}
