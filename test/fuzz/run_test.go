// Package fuzz holds the script that runs the fuzz targets (run.sh) and its
// test. The test drives run.sh with a stand-in for `go` that plays back the
// outcomes seen on this machine, since the real failure (golang/go#75804)
// cannot be produced on demand.
package fuzz

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// fakeGo fails or succeeds per attempt as told by $FAKE_PLAN (one word per
// attempt: ok, deadline, crash, other), counting attempts in $FAKE_COUNT.
const fakeGo = `#!/usr/bin/env bash
n=$(( $(cat "$FAKE_COUNT" 2>/dev/null || echo 0) + 1 ))
echo "$n" > "$FAKE_COUNT"
read -ra plan <<< "$FAKE_PLAN"
case "${plan[$((n-1))]}" in
  ok) echo "PASS"; exit 0 ;;
  deadline) echo "--- FAIL: FuzzX"; echo "    context deadline exceeded"; exit 1 ;;
  crash) mkdir -p "$FAKE_PKG/testdata/fuzz/FuzzX"; echo "go test fuzz v1" > "$FAKE_PKG/testdata/fuzz/FuzzX/abc$n"
         echo "--- FAIL: FuzzX"; echo "    context deadline exceeded"; exit 1 ;;
  *) echo "--- FAIL: FuzzX"; echo "    panic: index out of range"; exit 1 ;;
esac
`

func TestRunRetriesOnlyTheCoordinatorBug(t *testing.T) {
	t.Parallel()
	script, err := filepath.Abs("run.sh")
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name         string
		plan         string
		wantOK       bool
		wantAttempts string
	}{
		{name: "passes first time", plan: "ok", wantOK: true, wantAttempts: "1"},
		{name: "deadline without crasher is retried once", plan: "deadline ok", wantOK: true, wantAttempts: "2"},
		{name: "deadline twice fails", plan: "deadline deadline ok", wantOK: false, wantAttempts: "2"},
		{name: "a new crasher is never retried", plan: "crash ok", wantOK: false, wantAttempts: "1"},
		{name: "any other failure is never retried", plan: "other ok", wantOK: false, wantAttempts: "1"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()
			goBin := filepath.Join(dir, "go")
			if err := os.WriteFile(goBin, []byte(fakeGo), 0o755); err != nil {
				t.Fatal(err)
			}
			pkg := filepath.Join(dir, "pkg")
			if err := os.MkdirAll(filepath.Join(pkg, "testdata", "fuzz", "FuzzX"), 0o755); err != nil {
				t.Fatal(err)
			}
			count := filepath.Join(dir, "count")
			cmd := exec.Command("bash", script, "1000x", pkg+":FuzzX")
			cmd.Env = append(os.Environ(), "GO="+goBin, "FAKE_PLAN="+tc.plan, "FAKE_COUNT="+count, "FAKE_PKG="+pkg)
			out, err := cmd.CombinedOutput()
			if gotOK := err == nil; gotOK != tc.wantOK {
				t.Fatalf("run.sh ok = %v, want %v; output:\n%s", gotOK, tc.wantOK, out)
			}
			attempts, _ := os.ReadFile(count)
			if got := strings.TrimSpace(string(attempts)); got != tc.wantAttempts {
				t.Errorf("attempts = %s, want %s; output:\n%s", got, tc.wantAttempts, out)
			}
		})
	}
}
