package audit

import (
	"bufio"
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
)

// BreakKind says how a chained trail was found broken.
type BreakKind string

// The kinds of break Verify reports.
const (
	// BreakChanged: a line's bytes are not the ones chained.
	BreakChanged BreakKind = "changed"
	// BreakRemoved: lines are missing before this one.
	BreakRemoved BreakKind = "removed"
	// BreakInserted: a line that does not belong in the chain.
	BreakInserted BreakKind = "inserted"
	// BreakReordered: a line that belongs later in the chain.
	BreakReordered BreakKind = "reordered"
	// BreakDropped: alecryptd itself skipped sequence numbers for lines it
	// could not write (the disk stayed full past its holding limit).
	BreakDropped BreakKind = "dropped"
	// BreakGap: a file does not continue from the file before it.
	BreakGap BreakKind = "gap"
	// BreakRestart: a chain starts from nothing after lines that cannot be
	// linked to it.
	BreakRestart BreakKind = "restart"
	// BreakWrongKey: the lines are chained under a key not given.
	BreakWrongKey BreakKind = "wrong-key"
	// BreakMalformed: a line that is not a chained audit line at all (torn,
	// unchained, or not JSON).
	BreakMalformed BreakKind = "malformed"
	// BreakTruncated: the trail ends before, or differs at, the head
	// alecryptd published.
	BreakTruncated BreakKind = "truncated"
)

// BreakError is the first break Verify found.
type BreakError struct {
	File string
	Line int // 1-based; 0 when the break is about a file as a whole
	Kind BreakKind
	Msg  string
}

func (e *BreakError) Error() string {
	if e.Line == 0 {
		return fmt.Sprintf("%s: %s: %s", e.File, e.Kind, e.Msg)
	}
	return fmt.Sprintf("%s:%d: %s: %s", e.File, e.Line, e.Kind, e.Msg)
}

// File is one trail file to verify, in order.
type File struct {
	Name string
	R    io.Reader
}

// Summary is what a verified trail holds.
type Summary struct {
	Files, Lines int
	// First is the seq of the first line, Head the newest line.
	First uint64
	Head  Head
	// Genesis: the first file starts the chain from nothing (prev all
	// zeros), so nothing can be missing before it.
	Genesis bool
}

// maxLine bounds a line Verify reads; entries are far smaller.
const maxLine = 4 << 20

// Verify checks that files, in order, are one unbroken chain under one of
// keys, and, if published is not zero, that the chain reaches the head
// alecryptd published with the same link. It returns the first break as a
// *BreakError.
//
// What cannot be seen: lines removed from the end of the last file (that
// is what the published head is for), and files removed from the start of
// the list, unless the first file starts the chain (Summary.Genesis).
func Verify(keys []ChainKey, files []File, published Head) (Summary, error) {
	v := verifier{keys: map[string]hash.Hash{}, published: published}
	for _, k := range keys {
		v.keys[k.ID()] = hmac.New(sha256.New, k.b.Expose())
		v.keyIDs = append(v.keyIDs, k.ID())
	}
	for i, f := range files {
		if err := v.file(f, i); err != nil {
			return Summary{}, err
		}
	}
	if v.sum.Lines == 0 {
		return Summary{}, &BreakError{File: lastName(files), Kind: BreakTruncated, Msg: "no lines"}
	}
	v.sum.Files = len(files)
	v.sum.Head = Head{Seq: v.seq, Link: hex.EncodeToString(v.link[:])}
	if published.Seq != 0 && !v.sawHead {
		switch {
		case published.Seq > v.seq:
			return Summary{}, &BreakError{File: lastName(files), Kind: BreakTruncated,
				Msg: fmt.Sprintf("the trail ends at seq %d but alecryptd published seq %d: lines after seq %d were removed (or files are missing)", v.seq, published.Seq, v.seq)}
		default:
			return Summary{}, &BreakError{File: files[0].Name, Kind: BreakTruncated,
				Msg: fmt.Sprintf("published seq %d is not in these files (they start at seq %d): give the file that holds it", published.Seq, v.sum.First)}
		}
	}
	return v.sum, nil
}

func lastName(files []File) string {
	if len(files) == 0 {
		return "(no files)"
	}
	return files[len(files)-1].Name
}

type verifier struct {
	keys      map[string]hash.Hash
	keyIDs    []string
	mac       hash.Hash // the key of the current segment
	published Head
	sawHead   bool

	started  bool // a line has been verified
	seq      uint64
	link     link
	prevFile string
	sum      Summary
}

// follows reports whether c's link is its MAC after the last good link,
// under the current key, compared in constant time.
func (v *verifier) follows(c chainLine) bool {
	var sum link
	v.mac.Reset()
	v.mac.Write(v.link[:])
	v.mac.Write(c.body)
	v.mac.Sum(sum[:0])
	return hmac.Equal(sum[:], c.link[:])
}

func (v *verifier) file(f File, index int) error {
	sc := bufio.NewScanner(f.R)
	sc.Buffer(make([]byte, 64<<10), maxLine)
	sc.Split(scanLines)
	n := 0
	brk := func(kind BreakKind, format string, args ...any) error {
		return &BreakError{File: f.Name, Line: n, Kind: kind, Msg: fmt.Sprintf(format, args...)}
	}
	for sc.Scan() {
		n++
		raw := sc.Bytes()
		if len(raw) == 0 || raw[len(raw)-1] != '\n' {
			return brk(BreakMalformed, "the file ends in a torn line (no newline)")
		}
		c, err := parseChainLine(raw[:len(raw)-1])
		if err != nil {
			return brk(BreakMalformed, "%v: a torn, unchained or foreign line", err)
		}
		if n == 1 && !c.start {
			return brk(BreakRemoved, "the file does not begin with a chain_start line: lines were removed from its start")
		}
		if c.start {
			if err := v.segment(c, f.Name, n, index); err != nil {
				return err
			}
		}
		if !v.follows(c) {
			return v.classify(sc, c, brk)
		}
		if c.seq != v.seq+1 {
			if c.seq > v.seq+1 {
				// The MAC verifies: only the key's holder wrote this gap.
				return brk(BreakDropped, "seq %d to %d are missing, skipped by alecryptd itself: entries it dropped while the trail could not be written (see alecrypt_audit_dropped_total)", v.seq+1, c.seq-1)
			}
			return brk(BreakReordered, "seq %d after seq %d", c.seq, v.seq)
		}
		if !v.started {
			v.started, v.sum.First = true, c.seq
		}
		v.seq, v.link = c.seq, c.link
		v.sum.Lines++
		if v.published.Seq == c.seq {
			v.sawHead = true
			if v.published.Link != "" && !hmac.Equal([]byte(v.published.Link), []byte(hex.EncodeToString(c.link[:]))) {
				return brk(BreakTruncated, "seq %d has link %x here but alecryptd published %s: the trail was cut and written again from an earlier line", c.seq, c.link, v.published.Link)
			}
		}
	}
	if err := sc.Err(); err != nil {
		if errors.Is(err, bufio.ErrTooLong) {
			n++
			return brk(BreakMalformed, "a line longer than %d bytes", maxLine)
		}
		return fmt.Errorf("%s: %w", f.Name, err)
	}
	if n == 0 {
		return &BreakError{File: f.Name, Kind: BreakRemoved, Msg: "the file is empty: every file alecryptd writes starts with a chain_start line"}
	}
	v.prevFile = f.Name
	return nil
}

// segment checks a chain_start line against what came before: it must be
// under a key given and name the link before it.
func (v *verifier) segment(c chainLine, name string, n, index int) error {
	brk := func(kind BreakKind, line int, format string, args ...any) error {
		return &BreakError{File: name, Line: line, Kind: kind, Msg: fmt.Sprintf(format, args...)}
	}
	mac, ok := v.keys[c.keyID]
	if !ok {
		return brk(BreakWrongKey, n, "chained under key id %s; the key given has id %v", c.keyID, v.keyIDs)
	}
	v.mac = mac
	var zero link
	switch {
	case !v.started:
		// The first line seen: trust where it says it starts; the chain
		// from here on is checked.
		v.link, v.seq = c.prev, c.seq-1
		v.sum.Genesis = c.prev == zero && c.seq == 1
	case c.prev == zero && c.seq == 1:
		return brk(BreakRestart, n, "a new chain starts here (alecryptd started without the trail before it); the lines before cannot be linked to it")
	case c.prev != v.link && n == 1:
		return brk(BreakGap, 0, "does not continue %s: it starts after a line with link %x, seq %d; %s ends with link %x, seq %d (a file between them is missing, or the end of %s was removed)",
			v.prevFile, c.prev[:8], c.seq-1, v.prevFile, v.link[:8], v.seq, v.prevFile)
	case c.prev != v.link:
		return brk(BreakRemoved, n, "this chain_start names a link the line before does not have: lines were removed or reordered before it")
	}
	return nil
}

// classify names a line whose MAC does not follow the last good line: it
// looks ahead for the line that does follow (seq v.seq+1, chained to
// v.link) to tell an inserted or moved line from a changed one or a gap.
func (v *verifier) classify(sc *bufio.Scanner, c chainLine, brk func(BreakKind, string, ...any) error) error {
	want := v.seq + 1
	for sc.Scan() {
		raw := bytes.TrimSuffix(sc.Bytes(), []byte("\n"))
		d, err := parseChainLine(raw)
		if err != nil || d.seq != want || !v.follows(d) {
			continue
		}
		if c.seq > want {
			return brk(BreakReordered, "seq %d comes before seq %d: lines were moved", c.seq, want)
		}
		return brk(BreakInserted, "this line (seq %d) does not belong here: seq %d follows later, chained to the line before", c.seq, want)
	}
	switch {
	case c.seq == want:
		return brk(BreakChanged, "seq %d is not the line that was written (its MAC does not verify)", c.seq)
	case c.seq > want:
		return brk(BreakRemoved, "seq %d to %d are missing before this line: lines were removed", want, c.seq-1)
	default:
		return brk(BreakInserted, "seq %d again after seq %d: a line was copied or moved here", c.seq, v.seq)
	}
}

// scanLines is bufio.ScanLines keeping the newline, so a last line without
// one (torn) shows.
func scanLines(data []byte, atEOF bool) (int, []byte, error) {
	if i := bytes.IndexByte(data, '\n'); i >= 0 {
		return i + 1, data[:i+1], nil
	}
	if atEOF && len(data) > 0 {
		return len(data), data, nil
	}
	return 0, nil, nil
}
