package api

import (
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/alecrypt/alecrypt/internal/rpcframe"
)

// Defaults of the HTTP layer's limits.
const (
	// DefaultMaxInflightBytes bounds the memory that calls in progress may
	// hold (see MemoryPerRequestByte).
	DefaultMaxInflightBytes = 256 << 20
	// DefaultReadTimeout bounds how long a unary request body, or one stream
	// message once its first byte arrived, may take to arrive.
	DefaultReadTimeout = 30 * time.Second
)

// MemoryPerRequestByte is what a call is charged against the in-flight
// budget per byte of its request message: the heap a 4 MiB Encrypt was
// measured to hold, about 5.3 times its size (about 21 MiB of live heap per
// call after GC, with GODEBUG=gctrace=1 and test/bench/memory.sh), rounded
// up. connect-go's read buffer (grown by doubling, then pooled), the
// decoded message, the result and the marshalled response (pooled too) each
// hold about the request's size or twice it while the call runs. The budget
// is then the live heap of calls; with GOGC=100 the process's RSS stays
// within about twice it.
const MemoryPerRequestByte = 6

// StreamCharge is what an open stream is charged for as long as it lives,
// on top of its messages: what an idle stream was measured to hold (about
// 30 KiB of live heap and stack with 4,096 idle Streams open: the 16 KiB
// read-ahead, connect-go's and HTTP/2's per-stream state, the handler's
// goroutine), rounded up. Charged for the stream's life rather than given
// back while it idles, so the streams one caller keeps open, idle or not,
// are bounded by its share of the budget, and a stream's next message costs
// no extra read of the connection (see aheadBuf).
const StreamCharge = 32 << 10

// Limits of the procedures served without a credential (health and
// reflection): their requests are a service or symbol name, read at most
// probeMaxMessage, and they are charged against a budget of their own, so no
// unauthenticated call can take any of --max-inflight-bytes.
const (
	probeMaxMessage = 64 << 10
	// probeInflightBytes admits about ten calls of the largest size a probe
	// reads at once, and thousands of real health checks (a few bytes each).
	probeInflightBytes = 4 << 20
	// probeCallCharge is charged to every unauthenticated call on top of
	// its message, for the goroutine and buffers it holds even when it
	// claims an empty body: it bounds the calls, not only their bytes.
	probeCallCharge = 4 << 10
)

// callerShareDivisor sets the default share of the budget one caller may
// hold: a quarter, so no single caller can hold more than that.
const callerShareDivisor = 4

// maxCallers bounds the callers tracked at once per budget. Callers are
// identities, or connections for anonymous ones, with a call in progress,
// so the operating system's limit on connections bounds them long before
// this; it is a backstop against a bug, not a limit anyone should meet.
const maxCallers = 1 << 16

// MinInflightBytes is the least budget (and the least share of a caller)
// that admits a stream carrying one request of maxRequest bytes, and so
// any one request.
func MinInflightBytes(maxRequest int) int64 {
	return int64(maxRequest+rpcframe.PrefixLen)*MemoryPerRequestByte + StreamCharge
}

// DefaultPerCaller is the share of a budget of maxInflight bytes that one
// caller may hold by default: a quarter, but never less than one request of
// maxRequest bytes needs, nor more than the budget.
func DefaultPerCaller(maxRequest int, maxInflight int64) int64 {
	return min(max(maxInflight/callerShareDivisor, MinInflightBytes(maxRequest)), maxInflight)
}

// CheckLimits reports whether a budget of maxInflight bytes, of which one
// caller may hold perCaller, admits a request of maxRequest bytes at all.
func CheckLimits(maxRequest int, maxInflight, perCaller int64) error {
	need := MinInflightBytes(maxRequest)
	switch {
	case maxInflight < need:
		return fmt.Errorf("--max-inflight-bytes %d cannot admit one request of --max-request-bytes %d: each request byte is charged %d bytes, and a stream %d more, so it must be at least %d",
			maxInflight, maxRequest, MemoryPerRequestByte, StreamCharge, need)
	case perCaller < need:
		return fmt.Errorf("--max-inflight-bytes-per-caller %d cannot admit one request of --max-request-bytes %d: each request byte is charged %d bytes, and a stream %d more, so it must be at least %d",
			perCaller, maxRequest, MemoryPerRequestByte, StreamCharge, need)
	case perCaller > maxInflight:
		return fmt.Errorf("--max-inflight-bytes-per-caller %d is more than --max-inflight-bytes %d: a caller's share is part of the budget", perCaller, maxInflight)
	}
	return nil
}

// lane is a budget of bytes charged by calls in progress, of which no one
// caller may hold more than perCaller, and the largest message its calls may
// send.
type lane struct {
	max, perCaller int64
	maxMessage     int64
	callCharge     int64 // charged to every unary call on top of its message
	errFull        error // why a call that does not fit the budget is refused

	mu sync.Mutex
	// used is written under mu and read by the gauge without it.
	used atomic.Int64
	// callers holds what each caller with a call in progress holds; an
	// entry goes when the caller's last call ends. By value, so a caller's
	// first call allocates nothing.
	callers map[callerKey]callerShare
}

// callerKey is who a call is charged to: the authenticated identity, or
// for an anonymous call its connection (remote address).
type callerKey struct {
	id   string
	conn bool
}

// callerShare is what one caller holds of a lane, and how many of its
// calls are in progress (its entry goes when the last one ends).
type callerShare struct {
	held  int64
	calls int
}

func newLane(max, perCaller, maxMessage, callCharge int64, errFull error) lane {
	return lane{max: max, perCaller: perCaller, maxMessage: maxMessage, callCharge: callCharge, errFull: errFull,
		callers: map[callerKey]callerShare{}}
}

// join starts a call of caller k charged n bytes, if they fit, without
// waiting: a refused call holds nothing, where a queued one would hold its
// connection and buffers.
func (l *lane) join(k callerKey, n int64) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	s, ok := l.callers[k]
	if !ok && len(l.callers) >= maxCallers {
		return l.errFull
	}
	if err := l.fits(s, n); err != nil {
		return err
	}
	s.held += n
	s.calls++
	l.callers[k] = s
	l.used.Add(n)
	return nil
}

// fits says why n more bytes for a caller holding s do not fit, or nil.
// The caller's share is checked first: a caller over its share is told so
// even when the budget is full too.
func (l *lane) fits(s callerShare, n int64) error {
	switch {
	case s.held+n > l.perCaller:
		return errOverShare
	case l.used.Load()+n > l.max:
		return l.errFull
	}
	return nil
}

// acquire charges n more bytes to caller k, which has a call in progress.
func (l *lane) acquire(k callerKey, n int64) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	s := l.callers[k]
	if err := l.fits(s, n); err != nil {
		return err
	}
	s.held += n
	l.callers[k] = s
	l.used.Add(n)
	return nil
}

// release returns n bytes of caller k; leave also ends one of its calls.
func (l *lane) release(k callerKey, n int64, leave bool) {
	if n == 0 && !leave {
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	s := l.callers[k]
	s.held -= n
	l.used.Add(-n)
	if leave {
		s.calls--
	}
	if s.calls == 0 {
		delete(l.callers, k)
		return
	}
	l.callers[k] = s
}
