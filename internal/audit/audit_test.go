package audit

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// entry is a test entry of a fixed, odd length (257 bytes), numbered so
// order shows. Odd, so that no run of lines ends exactly on a page boundary
// of the tmpfs: the write that runs out of space always straddles one and
// the kernel writes part of it.
func entry(i int) Entry {
	return Entry{Time: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC), RequestID: fmt.Sprintf("%016x", i),
		Identity: "pos-store-1x", Procedure: "/ale.v1.CryptoService/Encrypt", Operation: "encrypt", Outcome: "ok",
		Fingerprints: []string{"fp-0123456789abcdef0123456789abcdef"}, BytesIn: 100, BytesOut: 200}
}

// checkWholeLines fails unless data is whole JSON lines carrying request
// ids 0..n-1 in order.
func checkWholeLines(t *testing.T, data []byte, n int) {
	t.Helper()
	if len(data) > 0 && data[len(data)-1] != '\n' {
		t.Fatalf("the trail ends in a torn line: ...%q", data[max(0, len(data)-80):])
	}
	lines := strings.Split(strings.TrimSuffix(string(data), "\n"), "\n")
	if len(data) == 0 {
		lines = nil
	}
	if len(lines) != n {
		t.Fatalf("the trail has %d lines, want %d", len(lines), n)
	}
	for i, line := range lines {
		var e Entry
		if err := json.Unmarshal([]byte(line), &e); err != nil {
			t.Fatalf("line %d is not a whole entry: %q: %v", i, line, err)
		}
		if want := fmt.Sprintf("%016x", i); e.RequestID != want {
			t.Fatalf("line %d has request id %s, want %s (order lost)", i, e.RequestID, want)
		}
	}
}

// healthLog records onChange calls.
type healthLog struct {
	mu      sync.Mutex
	changes []bool
}

func (h *healthLog) onChange(ok bool) { h.mu.Lock(); h.changes = append(h.changes, ok); h.mu.Unlock() }
func (h *healthLog) get() []bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]bool(nil), h.changes...)
}

// mountTmpfs mounts a tmpfs of size bytes on a temp dir, or skips, loudly:
// mounting needs root (or CAP_SYS_ADMIN). TestShortWriteIsCutBack and
// TestDevFull cover the same code with injected faults and /dev/full, and
// always run.
func mountTmpfs(t *testing.T, size int) string {
	t.Helper()
	dir := t.TempDir()
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", fmt.Sprintf("size=%d,mode=0700", size), "tmpfs", dir).CombinedOutput(); err != nil {
		t.Skipf("SKIPPING the real full-filesystem test: cannot mount a tmpfs here (%v: %s); TestShortWriteIsCutBack and TestDevFull still run", err, bytes.TrimSpace(out))
	}
	t.Cleanup(func() {
		if out, err := exec.Command("umount", dir).CombinedOutput(); err != nil {
			t.Errorf("umount %s: %v: %s", dir, err, out)
		}
	})
	return dir
}

// TestFullFilesystem fills a real tmpfs: the write that runs out of space
// leaves no fragment (the kernel wrote part of the line, the log cut it
// off), lines written meanwhile are held in order, and once space returns
// a probe alone (no new entry) writes them and turns the log healthy.
func TestFullFilesystem(t *testing.T) {
	if n := len(mustLine(t, entry(0))); n%2 == 0 {
		t.Fatalf("test lines are %d bytes; keep them odd so one straddles a page boundary", n)
	}
	dir := mountTmpfs(t, 64<<10)
	filler := filepath.Join(dir, "filler")
	if err := os.WriteFile(filler, make([]byte, 40<<10), 0o600); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "audit.jsonl")
	h := &healthLog{}
	l, err := Open(path, h.onChange)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	n := 0
	for ; l.Healthy(); n++ {
		if n > 10000 {
			t.Fatal("the tmpfs never filled up")
		}
		l.Write(entry(n))
	}
	written := n - 1 // the last one failed
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	checkWholeLines(t, data, written)
	if l.cuts.Load() == 0 {
		t.Fatal("the failing write left nothing to cut: the test did not produce a short write")
	}
	// More entries while the disk is full: held, in order.
	for range 5 {
		l.Write(entry(n))
		n++
	}
	l.Probe()
	if l.Healthy() || l.Failures() != 6 {
		t.Fatalf("still full: healthy %v, failures %d; want false, 6", l.Healthy(), l.Failures())
	}
	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	l.Probe()
	if !l.Healthy() {
		t.Fatal("space returned, probe made, log still unhealthy")
	}
	data, err = os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	checkWholeLines(t, data, n)
	if got := h.get(); len(got) != 2 || got[0] || !got[1] {
		t.Fatalf("health changes = %v, want [false true]", got)
	}
}

// shortWriter lets room bytes reach the file, then fails like a full disk.
type shortWriter struct {
	f    *os.File
	room int
}

func (w *shortWriter) Write(p []byte) (int, error) {
	n := min(len(p), w.room)
	n, err := w.f.Write(p[:n])
	w.room -= n
	if err == nil && n < len(p) {
		err = syscall.ENOSPC
	}
	return n, err
}

// TestShortWriteIsCutBack injects the partial write of a full disk into a
// real file: the fragment is cut off and the line is written whole later.
func TestShortWriteIsCutBack(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		room int // bytes the disk takes of the second line
	}{
		{"nothing fits", 0},
		{"one byte fits", 1},
		{"all but the newline fits", len(mustLine(t, entry(1))) - 1},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			path := filepath.Join(t.TempDir(), "audit.jsonl")
			l, err := Open(path, nil)
			if err != nil {
				t.Fatal(err)
			}
			defer l.Close()
			l.Write(entry(0))
			l.mu.Lock()
			l.w = &shortWriter{f: l.f, room: tc.room}
			l.mu.Unlock()
			l.Write(entry(1))
			l.Write(entry(2))
			if l.Healthy() {
				t.Fatal("healthy after a failed write")
			}
			data, _ := os.ReadFile(path)
			checkWholeLines(t, data, 1)
			l.mu.Lock()
			l.w = l.f // space is back
			l.mu.Unlock()
			l.Probe()
			if !l.Healthy() {
				t.Fatal("unhealthy after space returned and a probe")
			}
			data, _ = os.ReadFile(path)
			checkWholeLines(t, data, 3)
		})
	}
}

func mustLine(t testing.TB, e Entry) []byte {
	t.Helper()
	b, err := json.Marshal(e)
	if err != nil {
		t.Fatal(err)
	}
	return append(b, '\n')
}

// TestTornWriterKeepsLinesApart: a writer that cannot be cut back (a pipe,
// stdout) gets a newline before the next entry, so the fragment stays a
// line of its own and the entry after it is whole.
func TestTornWriterKeepsLinesApart(t *testing.T) {
	t.Parallel()
	var buf bytes.Buffer
	w := &flakyWriter{buf: &buf, failNext: 10}
	l := New(w, nil)
	l.Write(entry(0))
	l.Probe()
	if !l.Healthy() {
		t.Fatal("unhealthy after the held line was written")
	}
	l.Write(entry(1))
	lines := strings.Split(strings.TrimSuffix(buf.String(), "\n"), "\n")
	if len(lines) != 3 || !json.Valid([]byte(lines[1])) || !json.Valid([]byte(lines[2])) || json.Valid([]byte(lines[0])) {
		t.Fatalf("trail = %q, want a fragment, then two whole lines", buf.String())
	}
}

// flakyWriter writes failNext bytes of the next write, then fails once.
type flakyWriter struct {
	buf      *bytes.Buffer
	failNext int
}

func (w *flakyWriter) Write(p []byte) (int, error) {
	if w.failNext > 0 {
		n := min(len(p), w.failNext)
		w.failNext = 0
		w.buf.Write(p[:n])
		return n, errors.New("injected EIO")
	}
	return w.buf.Write(p)
}

// TestDevFull: every write to /dev/full fails with ENOSPC. The log stays
// unhealthy through probes, holds lines up to maxPendingBytes and counts
// the ones beyond as dropped.
func TestDevFull(t *testing.T) {
	t.Parallel()
	if _, err := os.Stat("/dev/full"); err != nil {
		t.Fatalf("no /dev/full: %v", err)
	}
	h := &healthLog{}
	l, err := Open("/dev/full", h.onChange)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	perLine := len(mustLine(t, entry(0)))
	fit := maxPendingBytes / perLine
	for i := range fit + 3 {
		l.Write(entry(i))
	}
	l.Probe()
	if l.Healthy() {
		t.Fatal("healthy while every write fails")
	}
	if l.Failures() != int64(fit+3) || l.Dropped() != 3 {
		t.Fatalf("failures %d, dropped %d; want %d, 3", l.Failures(), l.Dropped(), fit+3)
	}
	if got := h.get(); len(got) != 1 || got[0] {
		t.Fatalf("health changes = %v, want [false]", got)
	}
}

// TestReopen: after the trail is renamed (logrotate without copytruncate),
// Reopen starts a fresh file at the path, mode 0600.
func TestReopen(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	path := filepath.Join(dir, "audit.jsonl")
	l, err := Open(path, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	l.Write(entry(0))
	if err := os.Rename(path, path+".1"); err != nil {
		t.Fatal(err)
	}
	l.Write(entry(1)) // still to the renamed file, as logrotate expects until the signal
	if err := l.Reopen(); err != nil {
		t.Fatal(err)
	}
	l.Write(entry(0))
	old, _ := os.ReadFile(path + ".1")
	checkWholeLines(t, old[:len(old)/2], 1)
	if got := strings.Count(string(old), "\n"); got != 2 {
		t.Fatalf("rotated file has %d lines, want 2", got)
	}
	cur, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	checkWholeLines(t, cur, 1)
	if fi, _ := os.Stat(path); fi.Mode().Perm() != 0o600 {
		t.Fatalf("reopened file mode %v, want 0600", fi.Mode().Perm())
	}
	// A path that cannot be opened leaves the current file in use.
	if err := os.Rename(dir, dir+".gone"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.Rename(dir+".gone", dir) })
	if err := l.Reopen(); err == nil {
		t.Fatal("Reopen into a missing directory succeeded")
	}
	l.Write(entry(1))
	if !l.Healthy() {
		t.Fatal("a failed reopen broke the log")
	}
}
