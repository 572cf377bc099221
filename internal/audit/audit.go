// Package audit owns the audit trail: one JSON line per operation, saying who
// did what with which key and how it ended, written to a file or stdout.
//
// An entry has identities, procedures, fingerprints, outcomes and sizes:
// never plaintext, ciphertext or key material (the Entry type has no field
// that could hold them).
//
// The trail is whole lines or nothing. A write that fails (ENOSPC, EIO) and
// left part of a line behind is cut back to the last whole line, so a torn
// line is never glued to the next one. The failed line is kept, in order
// with the lines after it, and written once the file takes writes again;
// until then the log reports itself unhealthy (health degrades) and Run
// re-attempts the oldest held line every tick, so health recovers by itself
// when space returns, without waiting for a call. Re-attempting a real
// pending line is the probe: it writes nothing that is not audit data
// (no test lines), and it proves the very thing that failed, which a
// statfs free-space check would not (reserved blocks, quotas, inodes,
// /dev/full and EIO all pass statfs and fail writes). Held lines are bounded
// (maxPendingBytes); beyond that new lines are dropped and counted, never
// silently. Reopen (on SIGHUP) moves to a fresh file at the same path, as
// logrotate without copytruncate needs.
//
// With a chain key (WithChain) the trail is tamper-evident: each line
// carries a sequence number and a MAC over the previous line's MAC and its
// own bytes, computed when the line reaches the file, so held lines are
// chained in the order they land. A line dropped for good still uses up its
// sequence number: the gap it leaves verifies as the writer's own, a break
// that Verify reports, never a silent one. See chain.go for the format and
// Verify for the checks.
package audit

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"hash"
	"io"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// Entry is one audited operation.
type Entry struct {
	Time         time.Time `json:"time"`
	RequestID    string    `json:"request_id,omitempty"`
	Identity     string    `json:"identity"`
	AuthMethod   string    `json:"auth_method,omitempty"`
	Procedure    string    `json:"procedure"`
	Operation    string    `json:"operation"`
	Fingerprints []string  `json:"fingerprints,omitempty"`
	// Outcome is "ok" or the Connect code name.
	Outcome string `json:"outcome"`
	ALECode int    `json:"ale_code,omitempty"`
	// Items and FailedItems count the items of a batch.
	Items       int `json:"items,omitempty"`
	FailedItems int `json:"failed_items,omitempty"`
	BytesIn     int `json:"bytes_in"`
	BytesOut    int `json:"bytes_out"`

	// RequestID above is alecryptd's own id for the call: unique, never
	// chosen by the caller, so no caller can make its entries pass for
	// another's. CallerRequestID is the X-Request-Id the caller sent, kept
	// apart for correlation with the caller's logs: the caller's word only.
	CallerRequestID string `json:"caller_request_id,omitempty"`
}

// maxPendingBytes bounds the lines held while the trail cannot be written
// (a few thousand entries); lines beyond it are dropped and counted.
const maxPendingBytes = 1 << 20

// Log writes entries. It is safe for concurrent use.
type Log struct {
	onChange func(healthy bool)
	path     string // the file Reopen reopens; "" for stdout or a caller's writer
	now      func() time.Time

	mu           sync.Mutex
	w            io.Writer
	f            *os.File // w, when the log opened it
	pending      []item   // lines not written yet, oldest first
	pendingBytes int
	// torn: part of a line is in the trail and could not be cut off (the
	// writer is not a regular file), so the next write starts a new line
	// first: the fragment stays a line of its own, never glued to an entry.
	torn bool
	buf  []byte // the line being written

	chain *chainer // nil: lines are not chained

	failures atomic.Int64
	dropped  atomic.Int64
	healthy  atomic.Bool
	cuts     atomic.Int64  // fragments cut off after short writes (for tests)
	headSeq  atomic.Uint64 // the seq of the newest chained line written
}

// item is a line waiting to be written: its JSON object without the closing
// brace, so that the chain fields can follow.
type item struct {
	body []byte
	// skip counts the lines dropped just before this one: their sequence
	// numbers are skipped, so the drop shows in the chain.
	skip uint64
	// start: a chain_start line, made when written (it names the link
	// before it); at is its time.
	start bool
	at    time.Time
}

// size is what the item counts against maxPendingBytes: its unchained
// line's length (a chain_start line counts nothing; there is at most one
// per reopen).
func (it *item) size() int {
	if it.start {
		return 0
	}
	return len(it.body) + len("}\n")
}

// chainer is the state of a chained trail, guarded by Log.mu.
type chainer struct {
	key  ChainKey
	mac  hash.Hash
	seq  uint64
	link link
	// skip counts lines dropped since the last line was queued or written.
	skip uint64
}

// Option configures a Log.
type Option func(*Log)

// WithChain chains every line under key (see the package doc).
func WithChain(key ChainKey) Option {
	return func(l *Log) {
		l.chain = &chainer{key: key, mac: hmac.New(sha256.New, key.b.Expose())}
	}
}

// New writes entries to w. onChange, if set, is called when writes start
// failing (false) and when they work again (true); it is called with the
// log's lock held, in order, and must not call back into the Log. A chained
// log starts a new chain (nothing before it is known).
func New(w io.Writer, onChange func(healthy bool), opts ...Option) *Log {
	l := newLog(w, onChange, opts)
	l.startChain()
	return l
}

func newLog(w io.Writer, onChange func(healthy bool), opts []Option) *Log {
	l := &Log{w: w, onChange: onChange, now: time.Now}
	l.healthy.Store(true)
	for _, o := range opts {
		o(l)
	}
	return l
}

// Open writes entries to path, appending, mode 0600; "-" means stdout. A
// chained log goes on from the last line already in the file, if it is a
// chained one.
func Open(path string, onChange func(healthy bool), opts ...Option) (*Log, error) {
	if path == "-" {
		return New(os.Stdout, onChange, opts...), nil
	}
	l := newLog(nil, onChange, opts)
	// A chained log reads its file's last line to go on from it.
	f, err := openFile(path, l.chain != nil)
	if err != nil {
		return nil, err
	}
	l.w = f
	l.f, l.path = f, path
	if l.chain != nil {
		seq, last, found, torn, err := readChainHead(f)
		if err != nil {
			_ = f.Close()
			return nil, err
		}
		if found {
			l.chain.seq, l.chain.link = seq, last
			l.headSeq.Store(seq)
		}
		l.torn = torn
	}
	l.startChain()
	return l, nil
}

// startChain queues a chain_start line and writes it, for a chained log.
func (l *Log) startChain() {
	if l.chain == nil {
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	l.pending = append([]item{{start: true, at: l.now().UTC()}}, l.pending...)
	l.setHealthyLocked(l.flushLocked() == nil)
}

func openFile(path string, read bool) (*os.File, error) {
	mode := os.O_WRONLY
	if read {
		mode = os.O_RDWR
	}
	f, err := os.OpenFile(path, mode|os.O_APPEND|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("audit log: %w", err)
	}
	return f, nil
}

// Close closes the file, if Open opened one. Lines still held are lost;
// they were counted as failures when their write failed.
func (l *Log) Close() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.f == nil {
		return nil
	}
	return l.f.Close()
}

// Reopen closes the file and opens path again, creating it: after logrotate
// renamed the trail, new lines go to a fresh file at the configured path,
// which a chained log starts with a chain_start line naming the last link
// of the file before. Held lines follow into the new file. If the path
// cannot be opened, the log keeps writing to the file it has and returns
// the error. For stdout or a writer given to New it does nothing.
func (l *Log) Reopen() error {
	if l.path == "" {
		return nil
	}
	f, err := openFile(l.path, false)
	if err != nil {
		return err
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	old := l.f
	l.f, l.w, l.torn = f, f, false
	// Closing the old descriptor frees the space of a rotated file that
	// was deleted meanwhile, so held lines may fit now.
	_ = old.Close()
	if l.chain != nil {
		l.pending = append([]item{{start: true, at: l.now().UTC()}}, l.pending...)
	}
	if len(l.pending) > 0 {
		l.setHealthyLocked(l.flushLocked() == nil)
	}
	return nil
}

// Write appends one entry as one line. If the line cannot be written it is
// held (see the package doc), counted, and the log turns unhealthy until
// the held lines are written.
func (l *Log) Write(e Entry) {
	if e.Time.IsZero() {
		e.Time = time.Now().UTC()
	}
	line, err := json.Marshal(e)
	if err != nil {
		// Entry has only strings, ints and a time: cannot happen.
		l.failures.Add(1)
		return
	}
	it := item{body: line[:len(line)-1]} // without the closing brace
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.chain != nil {
		it.skip, l.chain.skip = l.chain.skip, 0
	}
	// Held lines go first, so the trail keeps the order of events.
	if len(l.pending) == 0 || l.flushLocked() == nil {
		if l.writeLocked(&it) == nil {
			l.setHealthyLocked(true)
			return
		}
	}
	l.failures.Add(1)
	if l.pendingBytes+it.size() > maxPendingBytes {
		l.dropped.Add(1)
		if l.chain != nil {
			l.chain.skip = it.skip + 1
		}
	} else {
		l.pending = append(l.pending, it)
		l.pendingBytes += it.size()
	}
	l.setHealthyLocked(false)
}

// Probe re-attempts the held lines, oldest first, and turns the log healthy
// once they are all written. It writes nothing else.
func (l *Log) Probe() {
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.pending) > 0 && l.flushLocked() == nil {
		l.setHealthyLocked(true)
	}
}

// Run probes every tick while the log is unhealthy, until ctx ends.
func (l *Log) Run(ctx context.Context, every time.Duration) {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			if !l.healthy.Load() {
				l.Probe()
			}
		}
	}
}

// PublishHead calls publish every tick in which the chain head moved, until
// ctx ends: the periodic record of the head an operator keeps apart from the
// trail.
func (l *Log) PublishHead(ctx context.Context, every time.Duration, publish func()) {
	t := time.NewTicker(every)
	defer t.Stop()
	last := l.HeadSeq()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			if seq := l.HeadSeq(); seq != last {
				last = seq
				publish()
			}
		}
	}
}

// Chained reports whether lines are chained.
func (l *Log) Chained() bool { return l.chain != nil }

// KeyID is the chain key's id, or "" if lines are not chained.
func (l *Log) KeyID() string {
	if l.chain == nil {
		return ""
	}
	return l.chain.key.ID()
}

// HeadSeq is the seq of the newest chained line written (0 before any).
func (l *Log) HeadSeq() uint64 { return l.headSeq.Load() }

// Head is the newest chained line written: its seq and link.
func (l *Log) Head() Head {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.chain == nil || l.chain.seq == 0 {
		return Head{}
	}
	return Head{Seq: l.chain.seq, Link: hex.EncodeToString(l.chain.link[:])}
}

// flushLocked writes the held lines, oldest first, and stops at the first
// that fails, which stays held.
func (l *Log) flushLocked() error {
	for len(l.pending) > 0 {
		if err := l.writeLocked(&l.pending[0]); err != nil {
			return err
		}
		l.pendingBytes -= l.pending[0].size()
		l.pending[0] = item{}
		l.pending = l.pending[1:]
	}
	l.pending = nil // let the backing array go
	return nil
}

// writeLocked writes one whole line or, as far as the file allows, nothing:
// a failed write that left n bytes behind is cut back by n. A chained line
// is linked to the newest line written, and the chain moves on only once
// the line is in the file.
func (l *Log) writeLocked(it *item) error {
	if l.torn {
		if _, err := l.w.Write([]byte{'\n'}); err != nil {
			return err
		}
		l.torn = false
	}
	line, seq, next := l.lineLocked(it)
	n, err := l.w.Write(line)
	if err == nil {
		if l.chain != nil {
			l.chain.seq, l.chain.link = seq, next
			l.headSeq.Store(seq)
		}
		return nil
	}
	if n > 0 && !l.cutLocked(int64(n)) {
		l.torn = true
	}
	return err
}

// lineLocked renders it as a whole line in l.buf, with its seq and link
// if chained.
func (l *Log) lineLocked(it *item) ([]byte, uint64, link) {
	b := l.buf[:0]
	c := l.chain
	if c == nil {
		b = append(append(b, it.body...), "}\n"...)
		l.buf = b
		return b, 0, link{}
	}
	seq := c.seq + 1 + it.skip
	if it.start {
		head, _ := json.Marshal(chainStart{Time: it.at.Format(time.RFC3339Nano), Event: eventChainStart,
			KeyID: c.key.ID(), Prev: hex.EncodeToString(c.link[:])})
		b = append(b, head[:len(head)-1]...)
	} else {
		b = append(b, it.body...)
	}
	b = append(b, `,"seq":`...)
	b = strconv.AppendUint(b, seq, 10)
	c.mac.Reset()
	c.mac.Write(c.link[:])
	c.mac.Write(b)
	var next link
	c.mac.Sum(next[:0])
	b = append(b, chainSuffix...)
	b = hex.AppendEncode(b, next[:])
	b = append(b, "\"}\n"...)
	l.buf = b
	return b, seq, next
}

// cutLocked removes the last n bytes of the file. Shrinking a file needs no
// space, so it works on the full disk that caused the short write. With
// O_APPEND every write lands at the end, and only this Log writes the file,
// so the last n bytes are the fragment.
func (l *Log) cutLocked(n int64) bool {
	if l.f == nil {
		return false
	}
	fi, err := l.f.Stat()
	if err != nil || !fi.Mode().IsRegular() || fi.Size() < n {
		return false
	}
	if l.f.Truncate(fi.Size()-n) != nil {
		return false
	}
	l.cuts.Add(1)
	return true
}

func (l *Log) setHealthyLocked(ok bool) {
	if l.healthy.Swap(ok) != ok && l.onChange != nil {
		l.onChange(ok)
	}
}

// Failures counts entries whose write failed when they happened (held for
// a retry, or dropped) since start.
func (l *Log) Failures() int64 { return l.failures.Load() }

// Dropped counts entries lost because maxPendingBytes of lines were
// already held.
func (l *Log) Dropped() int64 { return l.dropped.Load() }

// Healthy reports whether every entry so far is written (none is held).
func (l *Log) Healthy() bool { return l.healthy.Load() }
