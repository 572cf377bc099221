package main

import (
	"bytes"
	"os"
	"strings"
	"testing"
)

// TestSampleModule runs the tool on testdata/sample (a module of its own:
// a passing package, one with every outcome, one that does not build, one
// without tests) and checks the output reads like plain go test, lists the
// skips with their reasons, ends with the summary, and keeps the exit status.
func TestSampleModule(t *testing.T) {
	t.Setenv("SAMPLE", "1")
	var out, errb bytes.Buffer
	code := run([]string{"-count=1", "./..."}, "testdata/sample", &out, &errb)
	got := out.String()
	if code != 1 {
		t.Errorf("exit status %d, want 1 (go test's)\n%s%s", code, got, errb.String())
	}
	lines := strings.Split(strings.TrimRight(got, "\n"), "\n")
	// Tests: pass: TestOne, TestTable, /a, /b = 4 passed. mixed: TestPasses,
	// Subtests/good passed; TestFails, Subtests/bad, TestSubtests failed;
	// TestSkips, Subtests/skipped skipped. broken: build failure.
	if last, want := lines[len(lines)-1], "tests: 6 passed, 4 failed, 2 skipped"; last != want {
		t.Errorf("last line %q, want %q\n%s", last, want, got)
	}
	for _, want := range []string{
		"ok  \tsample/pass\t",
		"?   \tsample/nofiles\t[no test files]",
		"--- FAIL: TestFails (",
		"context before the failure",
		"mixed_test.go:21: boom",
		"--- FAIL: TestSubtests/bad (",
		"sub boom",
		"FAIL\tsample/mixed\t",
		"broken_test.go:5", // the compiler's message
		"FAIL\tsample/broken [build failed]",
		"skipped (2):\n  sample/mixed TestSkips: SKIPPING: frobnicator not found on PATH\n  sample/mixed TestSubtests/skipped: not today\n",
		"failed (4):\n",
		"  sample/broken (build failed)\n",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("output lacks %q\n%s", want, got)
		}
	}
	for _, unwanted := range []string{"=== RUN", "--- PASS", "quiet when passing", "\nPASS\n"} {
		if strings.Contains(got, unwanted) {
			t.Errorf("output has %q, which plain go test does not print\n%s", unwanted, got)
		}
	}
}

// TestPassingRunExitsZero: all green is exit 0 with no failed list.
func TestPassingRunExitsZero(t *testing.T) {
	var out bytes.Buffer
	if code := run([]string{"-count=1", "./pass"}, "testdata/sample", &out, os.Stderr); code != 0 {
		t.Fatalf("exit %d\n%s", code, out.String())
	}
	if !strings.HasSuffix(out.String(), "\ntests: 4 passed, 0 failed, 0 skipped\n") || strings.Contains(out.String(), "failed (") {
		t.Fatalf("output:\n%s", out.String())
	}
}
