package audit

import (
	"bytes"
	"crypto/rand"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

func testKey(t testing.TB, fill byte) ChainKey {
	t.Helper()
	k, err := NewChainKey(bytes.Repeat([]byte{fill}, chainKeySize))
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// chainedRun writes a trail of three files as alecryptd does across two
// rotations (rename, then Reopen), with a restart (Close, Open) in the
// middle file, and returns the files' contents, oldest first, and the head.
func chainedRun(t *testing.T, key ChainKey) ([][]byte, Head) {
	t.Helper()
	dir := t.TempDir()
	path := filepath.Join(dir, "audit.jsonl")
	l, err := Open(path, nil, WithChain(key))
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	write := func(k int) {
		for range k {
			l.Write(entry(n))
			n++
		}
	}
	write(4)
	rotate := func(to string) {
		if err := os.Rename(path, to); err != nil {
			t.Fatal(err)
		}
		write(1) // still into the renamed file, before the signal
		if err := l.Reopen(); err != nil {
			t.Fatal(err)
		}
	}
	rotate(path + ".2")
	write(3)
	if err := l.Close(); err != nil { // a restart goes on in the same file
		t.Fatal(err)
	}
	if l, err = Open(path, nil, WithChain(key)); err != nil {
		t.Fatal(err)
	}
	write(2)
	rotate(path + ".1")
	write(4)
	head := l.Head()
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	var out [][]byte
	for _, p := range []string{path + ".2", path + ".1", path} {
		data, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, data)
	}
	return out, head
}

func files(contents [][]byte) []File {
	var fs []File
	for i, c := range contents {
		fs = append(fs, File{Name: "f" + string(rune('0'+i)), R: bytes.NewReader(c)})
	}
	return fs
}

// lines splits data into lines that keep their newlines.
func lines(data []byte) [][]byte {
	ls := bytes.SplitAfter(data, []byte("\n"))
	if len(ls[len(ls)-1]) == 0 {
		ls = ls[:len(ls)-1]
	}
	return ls
}

func join(ls [][]byte) []byte { return bytes.Join(ls, nil) }

// edit returns a copy of the run with file fi's lines changed by f.
func edit(run [][]byte, fi int, f func([][]byte) [][]byte) [][]byte {
	out := make([][]byte, len(run))
	copy(out, run)
	ls := lines(bytes.Clone(run[fi]))
	out[fi] = join(f(ls))
	return out
}

func TestChainVerifiesARun(t *testing.T) {
	t.Parallel()
	key := testKey(t, 1)
	run, head := chainedRun(t, key)
	sum, err := Verify([]ChainKey{key}, files(run), head)
	if err != nil {
		t.Fatalf("Verify(a real run) = %v", err)
	}
	// 15 entries, a chain_start at the start, at each reopen and at the
	// restart: 19 links.
	if sum.Lines != 19 || sum.First != 1 || !sum.Genesis || sum.Head != head || sum.Files != 3 {
		t.Fatalf("summary %+v, want 19 lines from seq 1 (genesis) to head %v", sum, head)
	}
	// Entries stay plain JSON lines that existing readers take as before.
	checkEntries := strings.Count(string(bytes.Join(run, nil)), `"procedure":`)
	if checkEntries != 15 {
		t.Fatalf("%d entries in the trail, want 15", checkEntries)
	}
	// The later files alone verify too (the head is in them), but do not
	// start from genesis.
	sum, err = Verify([]ChainKey{key}, files(run[1:]), head)
	if err != nil || sum.Genesis {
		t.Fatalf("Verify(the last two files) = %+v, %v; want ok, not genesis", sum, err)
	}
}

// TestChainDetectsEdits edits a real run in every way the trail must show.
func TestChainDetectsEdits(t *testing.T) {
	t.Parallel()
	key := testKey(t, 1)
	run, head := chainedRun(t, key)
	swap := func(i, j int) func([][]byte) [][]byte {
		return func(ls [][]byte) [][]byte { ls[i], ls[j] = ls[j], ls[i]; return ls }
	}
	remove := func(i int) func([][]byte) [][]byte {
		return func(ls [][]byte) [][]byte { return append(ls[:i:i], ls[i+1:]...) }
	}
	tests := []struct {
		name      string
		files     [][]byte
		keys      []ChainKey
		head      Head
		wantFile  string
		wantLine  int
		wantKind  BreakKind
		wantInMsg string
	}{
		{name: "changed", files: edit(run, 0, func(ls [][]byte) [][]byte {
			ls[2] = bytes.Replace(ls[2], []byte("pos-store-1x"), []byte("pos-store-2x"), 1)
			return ls
		}), wantFile: "f0", wantLine: 3, wantKind: BreakChanged},
		{name: "changed seq", files: edit(run, 0, func(ls [][]byte) [][]byte {
			ls[2] = bytes.Replace(ls[2], []byte(`"seq":3,`), []byte(`"seq":9,`), 1)
			return ls
		}), wantFile: "f0", wantLine: 3, wantKind: BreakRemoved},
		{name: "removed", files: edit(run, 0, remove(2)), wantFile: "f0", wantLine: 3, wantKind: BreakRemoved, wantInMsg: "seq 3 to 3"},
		{name: "removed first line", files: edit(run, 1, remove(0)), wantFile: "f1", wantLine: 1, wantKind: BreakRemoved},
		{name: "inserted copy", files: edit(run, 0, func(ls [][]byte) [][]byte {
			return append(ls[:3:3], append([][]byte{ls[1]}, ls[3:]...)...)
		}), wantFile: "f0", wantLine: 4, wantKind: BreakInserted},
		{name: "inserted forgery", files: edit(run, 0, func(ls [][]byte) [][]byte {
			forged := bytes.Replace(ls[2], []byte(`"seq":3,`), []byte(`"seq":3,`), 1)
			forged = bytes.Replace(forged, []byte("pos-store-1x"), []byte("pos-store-9x"), 1)
			return append(ls[:2:2], append([][]byte{forged}, ls[2:]...)...)
		}), wantFile: "f0", wantLine: 3, wantKind: BreakInserted},
		{name: "inserted foreign line", files: edit(run, 0, func(ls [][]byte) [][]byte {
			return append(ls[:2:2], append([][]byte{[]byte("{\"identity\":\"x\"}\n")}, ls[2:]...)...)
		}), wantFile: "f0", wantLine: 3, wantKind: BreakMalformed},
		{name: "reordered", files: edit(run, 0, swap(2, 3)), wantFile: "f0", wantLine: 3, wantKind: BreakReordered},
		{name: "reordered across the file", files: edit(run, 2, swap(1, 4)), wantFile: "f2", wantLine: 2, wantKind: BreakReordered},
		{name: "file missing between", files: [][]byte{run[0], run[2]}, wantFile: "f1", wantKind: BreakGap},
		{name: "files out of order", files: [][]byte{run[1], run[0], run[2]}, wantFile: "f1", wantLine: 1, wantKind: BreakRestart},
		{name: "tail of a middle file removed", files: edit(run, 1, func(ls [][]byte) [][]byte { return ls[:len(ls)-1] }), wantFile: "f2", wantKind: BreakGap},
		{name: "torn last line", files: [][]byte{run[0], run[1], run[2][:len(run[2])-10]}, wantFile: "f2", wantLine: len(lines(run[2])), wantKind: BreakMalformed},
		{name: "empty file", files: [][]byte{run[0], nil, run[1]}, wantFile: "f1", wantKind: BreakRemoved},
		{name: "wrong key", files: run, keys: []ChainKey{testKey(t, 2)}, wantFile: "f0", wantLine: 1, wantKind: BreakWrongKey},
		{name: "tail removed, seen against the published seq", files: edit(run, 2, func(ls [][]byte) [][]byte { return ls[:len(ls)-2] }),
			head: Head{Seq: head.Seq}, wantFile: "f2", wantKind: BreakTruncated, wantInMsg: "ends at seq 17"},
		{name: "tail removed and rewritten, seen against the published link", files: rewriteTail(t, key, run, 2),
			head: head, wantFile: "f2", wantLine: 5, wantKind: BreakTruncated, wantInMsg: "cut and written again"},
		{name: "published head before the files", files: run[2:], head: Head{Seq: 1}, wantFile: "f0", wantKind: BreakTruncated},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			keys := tc.keys
			if keys == nil {
				keys = []ChainKey{key}
			}
			_, err := Verify(keys, files(tc.files), tc.head)
			var be *BreakError
			if !errors.As(err, &be) {
				t.Fatalf("Verify = %v, want a %s break", err, tc.wantKind)
			}
			if be.File != tc.wantFile || be.Line != tc.wantLine || be.Kind != tc.wantKind || !strings.Contains(be.Msg, tc.wantInMsg) {
				t.Fatalf("Verify = %v; want %s:%d %s (%q)", be, tc.wantFile, tc.wantLine, tc.wantKind, tc.wantInMsg)
			}
		})
	}
}

// rewriteTail is the attack a published seq alone cannot show: remove the
// last two lines while alecryptd is down, and let it start again on the
// shortened file, which then grows back past the published seq.
func rewriteTail(t *testing.T, key ChainKey, run [][]byte, fi int) [][]byte {
	t.Helper()
	cut := edit(run, fi, func(ls [][]byte) [][]byte { return ls[:len(ls)-2] })
	path := filepath.Join(t.TempDir(), "audit.jsonl")
	if err := os.WriteFile(path, cut[fi], 0o600); err != nil {
		t.Fatal(err)
	}
	l, err := Open(path, nil, WithChain(key))
	if err != nil {
		t.Fatal(err)
	}
	l.Write(entry(100))
	l.Write(entry(101))
	_ = l.Close()
	if cut[fi], err = os.ReadFile(path); err != nil {
		t.Fatal(err)
	}
	return cut
}

// TestChainDroppedLinesShow: lines dropped because too many were held
// leave a gap that verifies as alecryptd's own: reported, never silent,
// and told apart from a removal.
func TestChainDroppedLinesShow(t *testing.T) {
	t.Parallel()
	key := testKey(t, 1)
	var buf bytes.Buffer
	w := &switchWriter{w: &buf}
	l := New(w, nil, WithChain(key))
	l.Write(entry(0))
	w.fail = true
	fit := maxPendingBytes / len(mustLine(t, entry(0)))
	for i := range fit + 3 {
		l.Write(entry(1 + i))
	}
	if l.Dropped() != 3 {
		t.Fatalf("dropped %d, want 3", l.Dropped())
	}
	w.fail = false
	l.Write(entry(9999))
	held := 2 + fit // the chain_start, entry 0, the held ones
	_, err := Verify([]ChainKey{key}, []File{{Name: "f", R: &buf}}, Head{})
	var be *BreakError
	if !errors.As(err, &be) || be.Kind != BreakDropped || be.Line != held+1 {
		t.Fatalf("Verify = %v, want a dropped break at line %d", err, held+1)
	}
	if want := "seq " + strconv.Itoa(held+1) + " to " + strconv.Itoa(held+3); !strings.Contains(be.Msg, want) {
		t.Fatalf("Verify = %v, want %q", err, want)
	}
}

// switchWriter fails every write while fail is set, writing nothing.
type switchWriter struct {
	w    io.Writer
	fail bool
}

func (s *switchWriter) Write(p []byte) (int, error) {
	if s.fail {
		return 0, errors.New("injected ENOSPC")
	}
	return s.w.Write(p)
}

// TestChainHeldLinesKeepTheChain: lines held through a failure are chained
// when they land, in order, and the trail verifies; a fragment left in a
// writer that cannot be cut back shows as a break.
func TestChainHeldLinesKeepTheChain(t *testing.T) {
	t.Parallel()
	key := testKey(t, 1)
	path := filepath.Join(t.TempDir(), "audit.jsonl")
	l, err := Open(path, nil, WithChain(key))
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	l.Write(entry(0))
	l.mu.Lock()
	l.w = &shortWriter{f: l.f, room: 7}
	l.mu.Unlock()
	l.Write(entry(1))
	l.Write(entry(2))
	l.mu.Lock()
	l.w = l.f
	l.mu.Unlock()
	l.Probe()
	l.Write(entry(3))
	data, _ := os.ReadFile(path)
	sum, err := Verify([]ChainKey{key}, []File{{Name: path, R: bytes.NewReader(data)}}, l.Head())
	if err != nil || sum.Lines != 5 {
		t.Fatalf("Verify = %+v, %v; want 5 lines", sum, err)
	}

	var buf bytes.Buffer
	torn := New(&flakyWriter{buf: &buf}, nil, WithChain(key))
	torn.mu.Lock()
	torn.w = &flakyWriter{buf: &buf, failNext: 10}
	torn.mu.Unlock()
	torn.Write(entry(0))
	torn.Probe()
	_, err = Verify([]ChainKey{key}, []File{{Name: "stdout", R: &buf}}, Head{})
	var be *BreakError
	if !errors.As(err, &be) || be.Kind != BreakMalformed || be.Line != 2 {
		t.Fatalf("Verify(a trail with a fragment) = %v, want malformed at line 2", err)
	}
}

// TestChainOpenAfterCrash: a file that ends in a fragment (a crash in the
// middle of a write) gets the next line on a line of its own, chained to
// the last whole line.
func TestChainOpenAfterCrash(t *testing.T) {
	t.Parallel()
	key := testKey(t, 1)
	path := filepath.Join(t.TempDir(), "audit.jsonl")
	l, err := Open(path, nil, WithChain(key))
	if err != nil {
		t.Fatal(err)
	}
	l.Write(entry(0))
	head := l.Head()
	_ = l.Close()
	f, _ := os.OpenFile(path, os.O_WRONLY|os.O_APPEND, 0)
	_, _ = f.WriteString(`{"time":"2026`)
	_ = f.Close()
	if l, err = Open(path, nil, WithChain(key)); err != nil {
		t.Fatal(err)
	}
	l.Write(entry(1))
	_ = l.Close()
	data, _ := os.ReadFile(path)
	ls := lines(data)
	if len(ls) != 5 || string(ls[2]) != "{\"time\":\"2026\n" {
		t.Fatalf("trail %q, want the fragment on a line of its own", data)
	}
	if !bytes.Contains(ls[3], []byte(`"prev":"`+head.Link+`"`)) {
		t.Fatalf("chain_start after the crash %q does not name the head %s", ls[3], head.Link)
	}
	if _, err := Verify([]ChainKey{key}, []File{{Name: "f", R: bytes.NewReader(data)}}, Head{}); err == nil || err.(*BreakError).Line != 3 {
		t.Fatalf("Verify = %v, want a break at the fragment, line 3", err)
	}
}

func TestChainKeyFile(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	path := filepath.Join(dir, "data", "audit-chain.key")
	k, created, err := LoadOrCreateChainKey(path, rand.Reader)
	if err != nil || !created {
		t.Fatalf("LoadOrCreateChainKey = %v, %v; want a new key", created, err)
	}
	fi, err := os.Stat(path)
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("key file mode %v, %v; want 0600", fi.Mode().Perm(), err)
	}
	again, created, err := LoadOrCreateChainKey(path, rand.Reader)
	if err != nil || created || again.ID() != k.ID() || len(k.ID()) != 16 {
		t.Fatalf("second LoadOrCreateChainKey = %v (id %s), %v; want the same key (id %s)", created, again.ID(), err, k.ID())
	}
	raw, _ := os.ReadFile(path)
	tests := []struct {
		name    string
		content string
		mode    os.FileMode
		wantErr string
	}{
		{"readable by others", string(raw), 0o604, "chmod 600"},
		{"group readable (a Secret mounted for fsGroup)", string(raw), 0o440, ""},
		{"short", "abcd\n", 0o600, "want 64 hex digits"},
		{"not hex", strings.Repeat("zz", 32), 0o600, "want 64 hex digits"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			p := filepath.Join(t.TempDir(), "k")
			if err := os.WriteFile(p, []byte(tc.content), tc.mode); err != nil {
				t.Fatal(err)
			}
			_ = os.Chmod(p, tc.mode)
			got, err := LoadChainKey(p)
			if tc.wantErr == "" {
				if err != nil || got.ID() != k.ID() {
					t.Fatalf("LoadChainKey = %v, want the key", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("LoadChainKey = %v, want %q", err, tc.wantErr)
			}
			if strings.Contains(err.Error(), strings.TrimSpace(tc.content)) {
				t.Fatalf("the error %q quotes the key file", err)
			}
		})
	}
}

func TestParseHead(t *testing.T) {
	t.Parallel()
	link := strings.Repeat("ab", 32)
	tests := []struct {
		in   string
		want Head
		ok   bool
	}{
		{"17", Head{Seq: 17}, true},
		{"17:" + link, Head{Seq: 17, Link: link}, true},
		{"17:" + strings.ToUpper(link), Head{Seq: 17, Link: link}, true},
		{"0", Head{}, false},
		{"x", Head{}, false},
		{"17:abc", Head{}, false},
	}
	for _, tc := range tests {
		got, err := ParseHead(tc.in)
		if (err == nil) != tc.ok || got != tc.want {
			t.Errorf("ParseHead(%q) = %v, %v; want %v, ok %v", tc.in, got, err, tc.want, tc.ok)
		}
	}
}

// BenchmarkWrite measures one audited call's cost in the trail, chained
// and not, to a writer that takes every line (the file system's cost is
// the same either way).
func BenchmarkWrite(b *testing.B) {
	key := testKey(b, 1)
	for _, bc := range []struct {
		name string
		opts []Option
	}{
		{"unchained", nil},
		{"chained", []Option{WithChain(key)}},
	} {
		b.Run(bc.name, func(b *testing.B) {
			l := New(io.Discard, nil, bc.opts...)
			e := entry(1)
			e.Time = time.Now()
			b.ReportAllocs()
			for b.Loop() {
				l.Write(e)
			}
		})
	}
}

// BenchmarkLine isolates what chaining adds to a line (seq, HMAC, hex),
// without the JSON encoding both share.
func BenchmarkLine(b *testing.B) {
	key := testKey(b, 1)
	line := mustLine(b, entry(1))
	for _, bc := range []struct {
		name string
		opts []Option
	}{
		{"unchained", nil},
		{"chained", []Option{WithChain(key)}},
	} {
		b.Run(bc.name, func(b *testing.B) {
			l := newLog(io.Discard, nil, bc.opts)
			it := item{body: line[:len(line)-2]}
			b.ReportAllocs()
			for b.Loop() {
				l.lineLocked(&it)
			}
		})
	}
}

// TestChainKeyChange: a restart with a new key goes on from the last line
// made under the old one; both keys verify the trail, one alone does not.
func TestChainKeyChange(t *testing.T) {
	t.Parallel()
	oldKey, newKey := testKey(t, 1), testKey(t, 2)
	path := filepath.Join(t.TempDir(), "audit.jsonl")
	for _, k := range []ChainKey{oldKey, newKey} {
		l, err := Open(path, nil, WithChain(k))
		if err != nil {
			t.Fatal(err)
		}
		l.Write(entry(0))
		_ = l.Close()
	}
	data, _ := os.ReadFile(path)
	tests := []struct {
		name     string
		keys     []ChainKey
		wantLine int // 0: verifies
	}{
		{"both keys", []ChainKey{oldKey, newKey}, 0},
		{"the new key only", []ChainKey{newKey}, 1},
		{"the old key only", []ChainKey{oldKey}, 3},
	}
	for _, tc := range tests {
		_, err := Verify(tc.keys, []File{{Name: "f", R: bytes.NewReader(data)}}, Head{})
		var be *BreakError
		switch {
		case tc.wantLine == 0 && err != nil:
			t.Errorf("%s: Verify = %v, want ok", tc.name, err)
		case tc.wantLine != 0 && (!errors.As(err, &be) || be.Kind != BreakWrongKey || be.Line != tc.wantLine):
			t.Errorf("%s: Verify = %v, want wrong-key at line %d", tc.name, err, tc.wantLine)
		}
	}
}

// FuzzVerify: any file is judged without a panic, and a file that passes
// holds only lines chained under the key.
func FuzzVerify(f *testing.F) {
	key := testKey(f, 1)
	var buf bytes.Buffer
	l := New(&buf, nil, WithChain(key))
	l.Write(entry(0))
	l.Write(entry(1))
	f.Add(buf.Bytes())
	f.Add([]byte("{}\n"))
	f.Add([]byte(`{"event":"chain_start","prev":"00","seq":1,"chain":"` + strings.Repeat("0", 64) + `"}` + "\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		sum, err := Verify([]ChainKey{key}, []File{{Name: "f", R: bytes.NewReader(data)}}, Head{})
		if err == nil && sum.Lines != bytes.Count(data, []byte("\n")) {
			t.Fatalf("verified %d lines of a file with %d", sum.Lines, bytes.Count(data, []byte("\n")))
		}
	})
}
