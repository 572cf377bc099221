// Command testsummary runs `go test -json` with the given arguments and
// prints what plain `go test` prints (each package's ok/FAIL line, the output
// of failing tests, build errors), then the skipped tests with their reasons,
// the failed ones, and, as its last line, one summary:
//
//	tests: 812 passed, 0 failed, 3 skipped
//
// It exits with go test's exit status, so `make test` fails exactly when go
// test does. Skips are listed because plain go test hides them: a test that
// skipped for want of a tool (node, chromium, promtool) looks like a pass.
//
//	go run ./internal/testsummary -race -count=1 -timeout 20m ./...
package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"os"
	"os/exec"
	"slices"
	"strings"
)

func main() {
	os.Exit(run(os.Args[1:], "", os.Stdout, os.Stderr))
}

// run runs go test -json args in dir (the current directory when empty) and
// returns the exit status.
func run(args []string, dir string, stdout, stderr io.Writer) int {
	cmd := exec.Command("go", append([]string{"test", "-json"}, args...)...)
	cmd.Dir, cmd.Stdin, cmd.Stderr = dir, os.Stdin, stderr
	out, err := cmd.StdoutPipe()
	if err == nil {
		err = cmd.Start()
	}
	if err != nil {
		fmt.Fprintln(stderr, "testsummary:", err)
		return 2
	}
	s := newSummary(stdout)
	s.read(out)
	err = cmd.Wait()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		fmt.Fprintln(stderr, "testsummary:", err)
		code = 2
	}
	return s.finish(code)
}

// event is one line of `go test -json` (cmd/test2json).
type event struct {
	Action     string
	Package    string
	Test       string
	Output     string
	ImportPath string // build-output and build-fail events
}

// summary turns the event stream back into go test's plain output and
// counts the outcomes.
type summary struct {
	w io.Writer
	// out holds each running test's output (framing lines dropped) until
	// it ends: printed if it fails, a skip's reason if it skips.
	out                     map[string][]string
	passed, failed, skipped int
	skips, fails            []string
	// testFailed marks packages with a failed test, so a package that
	// fails without one (a panic in TestMain, a timeout) still counts.
	testFailed map[string]bool
	// buildFailed marks packages whose test binary did not build.
	buildFailed map[string]bool
}

func newSummary(w io.Writer) *summary {
	return &summary{w: w, out: map[string][]string{}, testFailed: map[string]bool{}, buildFailed: map[string]bool{}}
}

func (s *summary) read(r io.Reader) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 1<<20), 64<<20)
	for sc.Scan() {
		var e event
		if err := json.Unmarshal(sc.Bytes(), &e); err != nil || e.Action == "" {
			// Not an event (a tool writing to stdout directly): pass it on.
			fmt.Fprintln(s.w, sc.Text())
			continue
		}
		s.handle(e)
	}
}

func (s *summary) handle(e event) {
	id := e.Package + " " + e.Test
	switch {
	case e.Action == "build-output":
		fmt.Fprint(s.w, e.Output)
	case e.Action == "build-fail":
		// Counted with the package's own fail event that follows.
		s.buildFailed[strings.Fields(e.ImportPath)[0]] = true
	case e.Test == "":
		s.packageEvent(e)
	case e.Action == "output":
		if !framing(e.Output) {
			s.out[id] = append(s.out[id], e.Output)
		}
	case e.Action == "pass":
		s.passed++
		delete(s.out, id)
	case e.Action == "skip":
		s.skipped++
		s.skips = append(s.skips, fmt.Sprintf("%s %s: %s", e.Package, e.Test, reason(s.out[id])))
		delete(s.out, id)
	case e.Action == "fail":
		s.failed++
		s.testFailed[e.Package] = true
		s.fails = append(s.fails, e.Package+" "+e.Test)
		s.flush(id)
	}
}

func (s *summary) packageEvent(e event) {
	switch e.Action {
	case "output":
		// go test prints PASS only with -v; the "ok pkg 1.2s" line follows.
		if e.Output != "PASS\n" {
			fmt.Fprint(s.w, e.Output)
		}
	case "fail":
		// Tests still running when the package died (a timeout, a panic)
		// never got their own event: show what they printed.
		for _, id := range slices.Sorted(maps.Keys(s.out)) {
			if strings.HasPrefix(id, e.Package+" ") {
				s.flush(id)
			}
		}
		if !s.testFailed[e.Package] {
			why := "(package failed)"
			if s.buildFailed[e.Package] {
				why = "(build failed)"
			}
			s.failed++
			s.fails = append(s.fails, e.Package+" "+why)
		}
	}
}

// flush prints a test's output as plain go test does: its "--- FAIL" line
// first (the verbose stream has it last), then what the test printed.
func (s *summary) flush(id string) {
	lines := s.out[id]
	head := slices.IndexFunc(lines, func(l string) bool { return strings.HasPrefix(strings.TrimLeft(l, " "), "--- FAIL: ") })
	if head > 0 {
		lines = slices.Concat(lines[head:head+1], lines[:head], lines[head+1:])
	}
	for _, line := range lines {
		fmt.Fprint(s.w, line)
	}
	delete(s.out, id)
}

// finish prints the skipped and failed tests and the summary line, and
// returns the exit status: go test's, or 1 if it exited 0 although a test
// failed (it cannot, but the summary must never say failed and exit 0).
func (s *summary) finish(code int) int {
	for _, id := range slices.Sorted(maps.Keys(s.out)) {
		s.flush(id) // the stream ended mid-test
	}
	if code == 0 && s.failed > 0 {
		code = 1
	}
	if code != 0 && s.failed == 0 {
		s.failed++
		s.fails = append(s.fails, fmt.Sprintf("go test exited %d", code))
	}
	if len(s.skips) > 0 {
		fmt.Fprintf(s.w, "\nskipped (%d):\n", len(s.skips))
		for _, l := range s.skips {
			fmt.Fprintln(s.w, "  "+l)
		}
	}
	if len(s.fails) > 0 {
		fmt.Fprintf(s.w, "\nfailed (%d):\n", len(s.fails))
		for _, l := range s.fails {
			fmt.Fprintln(s.w, "  "+l)
		}
	}
	fmt.Fprintf(s.w, "\ntests: %d passed, %d failed, %d skipped\n", s.passed, s.failed, s.skipped)
	return code
}

// framing reports whether a line is test2json's verbose framing, which plain
// go test does not print: === RUN/PAUSE/CONT/NAME and --- PASS.
func framing(line string) bool {
	l := strings.TrimLeft(line, " ")
	return strings.HasPrefix(l, "=== ") || strings.HasPrefix(l, "--- PASS: ")
}

// reason is a skip's message: what the test printed, without the
// "--- SKIP" line and the file:line prefix.
func reason(lines []string) string {
	var parts []string
	for _, l := range lines {
		l = strings.TrimSpace(l)
		if l == "" || strings.HasPrefix(l, "--- SKIP: ") {
			continue
		}
		if i := strings.Index(l, ": "); i > 0 && strings.Contains(l[:i], ".go:") {
			l = l[i+2:]
		}
		parts = append(parts, l)
	}
	if len(parts) == 0 {
		return "(no reason given)"
	}
	return strings.Join(parts, " / ")
}
