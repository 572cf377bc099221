// Package vault holds the script that builds the tests' Vault server
// (build-vault.sh) and its test, which drives the script with a stand-in for
// `go` so the minutes-long build is not needed to check what it prints.
package vault

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// fakeGo plays go for build-vault.sh: mod download names a source folder,
// mod edit does nothing, and build takes $FAKE_BUILD_SECONDS before writing
// a "vault" that answers version.
const fakeGo = `#!/usr/bin/env bash
case "$1 $2" in
  "mod download") mkdir -p "$FAKE_SRC"; printf '{\n\t"Dir": "%s",\n}\n' "$FAKE_SRC" ;;
  "mod edit") ;;
  build*) sleep "$FAKE_BUILD_SECONDS"
          while [ "$#" -gt 0 ] && [ "$1" != "-o" ]; do shift; done
          printf '#!/bin/sh\necho "Vault v1.19.0"\n' > "$2"; chmod +x "$2" ;;
  *) echo "fake go: unexpected $*" >&2; exit 1 ;;
esac
`

// TestFirstBuildPrintsProgress: a first build says what it does and how long
// it takes, keeps printing a heartbeat on stderr while it compiles, and
// prints only the binary's path on stdout; a second run prints the path and
// nothing else.
func TestFirstBuildPrintsProgress(t *testing.T) {
	dir := t.TempDir()
	fakeBin := filepath.Join(dir, "bin")
	if err := os.MkdirAll(fakeBin, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(fakeBin, "go"), []byte(fakeGo), 0o755); err != nil {
		t.Fatal(err)
	}
	cache := filepath.Join(dir, "cache")
	run := func() (stdout, stderr string) {
		t.Helper()
		cmd := exec.Command("bash", "build-vault.sh")
		cmd.Env = append(os.Environ(), "PATH="+fakeBin+":"+os.Getenv("PATH"), "ALECRYPT_CACHE="+cache,
			"ALECRYPT_HEARTBEAT=1", "FAKE_BUILD_SECONDS=3", "FAKE_SRC="+filepath.Join(dir, "src"))
		var out, errb strings.Builder
		cmd.Stdout, cmd.Stderr = &out, &errb
		if err := cmd.Run(); err != nil {
			t.Fatalf("build-vault.sh: %v\n%s", err, errb.String())
		}
		return out.String(), errb.String()
	}
	want := filepath.Join(cache, "vault-v1.19.0", "vault") + "\n"
	out, errOut := run()
	if out != want {
		t.Errorf("stdout = %q, want only the path %q", out, want)
	}
	for _, s := range []string{"several minutes the first time", "several GB", "vault build: downloading vault's dependencies and compiling",
		"vault build: still downloading vault's dependencies and compiling", "vault build: done in"} {
		if !strings.Contains(errOut, s) {
			t.Errorf("stderr lacks %q:\n%s", s, errOut)
		}
	}
	if n := strings.Count(errOut, "vault build: still"); n < 2 {
		t.Errorf("%d heartbeats during a 3 s build at one a second, want at least 2:\n%s", n, errOut)
	}
	if out, errOut := run(); out != want || errOut != "" {
		t.Errorf("cached run: stdout %q, stderr %q; want the path and silence", out, errOut)
	}
}
