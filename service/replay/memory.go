package replay

import (
	"context"
	"sync"
	"time"
)

// Memory is the store for one gateway replica: a set of IDs with their
// expiry, and a queue of the same IDs in claim order. The window is the
// same for every entry, so claim order is expiry order: each Claim first
// forgets the entries whose window has passed, from the front of the
// queue, in constant amortized time.
//
// Size: an entry is 16 bytes in the set (plus the map's slot overhead) and
// 24 in the queue; TestMemoryBytesPerEntry measures about 55 bytes per
// entry, up to about twice that just after the map or the queue grew, so the
// default cap of 1,000,000 entries bounds the store at about 110 MB. The cap must hold the claims of one
// window (requests and frames per second × window); beyond it Claim returns
// ErrFull until entries expire, since forgetting an unexpired entry would
// let its replay through.
type Memory struct {
	window time.Duration
	max    int
	now    func() time.Time
	epoch  time.Time // monotonic origin: a wall-clock jump cannot expire entries

	mu    sync.Mutex
	seen  map[ID]struct{}
	queue []entry
	head  int // queue[head:] are live
}

type entry struct {
	id  ID
	exp time.Duration // since epoch
}

// DefaultMaxEntries is the memory store's default cap.
const DefaultMaxEntries = 1_000_000

// NewMemory returns a store that remembers at most maxEntries IDs for
// window each. now is the clock (time.Now outside tests).
func NewMemory(window time.Duration, maxEntries int, now func() time.Time) *Memory {
	return &Memory{window: window, max: maxEntries, now: now, epoch: now(), seen: map[ID]struct{}{}}
}

// Claim implements Store.
func (m *Memory) Claim(_ context.Context, id ID) error {
	t := m.now().Sub(m.epoch)
	m.mu.Lock()
	defer m.mu.Unlock()
	for m.head < len(m.queue) && m.queue[m.head].exp <= t {
		delete(m.seen, m.queue[m.head].id)
		m.head++
	}
	// Reuse the queue's front once half of it is dead, so it never grows
	// beyond twice the live entries.
	if m.head > 0 && m.head >= len(m.queue)/2 {
		n := copy(m.queue, m.queue[m.head:])
		m.queue, m.head = m.queue[:n], 0
	}
	if _, ok := m.seen[id]; ok {
		return ErrReplay
	}
	if len(m.seen) >= m.max {
		return ErrFull
	}
	m.seen[id] = struct{}{}
	m.queue = append(m.queue, entry{id: id, exp: t + m.window})
	return nil
}

// Len is the number of IDs remembered now (expired ones may linger until
// the next Claim).
func (m *Memory) Len() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return len(m.seen)
}

// Ready implements Store: memory is always ready.
func (m *Memory) Ready(context.Context) error { return nil }

var _ Store = (*Memory)(nil)
