package replay

import (
	"context"
	"sync"
	"time"
)

// Memory is the store for one gateway replica: a map of IDs to their owner
// and expiry, and a queue of the same IDs in claim order. The window is the
// same for every entry, so claim order is expiry order: each Claim first
// forgets the entries whose window has passed, from the front of the
// queue, in constant amortized time.
//
// Its claims land at once, under its lock, so Release has no claim in
// flight to stop: it forgets owner's entry, and nothing else.
//
// Size: an entry is 40 bytes in the map (ID, owner, expiry; plus the map's
// slot overhead) and 24 in the queue; TestMemoryBytesPerEntry measures
// about 90 bytes per entry, up to about twice that just after the map or
// the queue grew, so the default cap of 1,000,000 entries bounds the store
// at about 180 MB. The cap must hold the claims of one window (requests and
// frames per second × window); beyond it Claim returns ErrFull until entries
// expire, since forgetting an unexpired entry would let its replay through.
type Memory struct {
	window time.Duration
	max    int
	now    func() time.Time
	epoch  time.Time // monotonic origin: a wall-clock jump cannot expire entries

	mu    sync.Mutex
	seen  map[ID]holder
	queue []entry
	head  int // queue[head:] are live, or released and not yet reached
}

type holder struct {
	owner Owner
	exp   time.Duration // since epoch; tells this claim from an older, released one in the queue
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
	return &Memory{window: window, max: maxEntries, now: now, epoch: now(), seen: map[ID]holder{}}
}

// Claim implements Store. A claim its owner held already is renewed: a new
// queue entry, the old one then ends nothing.
func (m *Memory) Claim(_ context.Context, id ID, owner Owner) (again bool, err error) {
	t := m.now().Sub(m.epoch)
	m.mu.Lock()
	defer m.mu.Unlock()
	for m.head < len(m.queue) && m.queue[m.head].exp <= t {
		// A released ID may have been claimed again since, with a later
		// expiry and a queue entry of its own: only its own entry ends it.
		if e := m.queue[m.head]; m.seen[e.id].exp == e.exp {
			delete(m.seen, e.id)
		}
		m.head++
	}
	// Reuse the queue's front once half of it is dead, so it never grows
	// beyond twice the live entries.
	if m.head > 0 && m.head >= len(m.queue)/2 {
		n := copy(m.queue, m.queue[m.head:])
		m.queue, m.head = m.queue[:n], 0
	}
	h, held := m.seen[id]
	if held && h.owner != owner {
		return false, ErrReplay
	}
	// Released and renewed entries still in the queue count toward the
	// cap: the queue is what the cap bounds.
	if len(m.queue)-m.head >= m.max {
		return false, ErrFull
	}
	exp := t + m.window
	m.seen[id] = holder{owner: owner, exp: exp}
	m.queue = append(m.queue, entry{id: id, exp: exp})
	return held, nil
}

// Release implements Store.
func (m *Memory) Release(_ context.Context, id ID, owner Owner) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if h, ok := m.seen[id]; ok && h.owner == owner {
		delete(m.seen, id)
	}
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
