package gateway

import (
	"sync"
	"testing"
	"time"
)

// TestIdleTimer drives the idle timer with a simulated clock: real timers
// only make it look again, so the test holds however busy the machine is.
func TestIdleTimer(t *testing.T) {
	t.Parallel()
	var mu sync.Mutex
	fake := time.Unix(1000, 0)
	now := func() time.Time { mu.Lock(); defer mu.Unlock(); return fake }
	advance := func(d time.Duration) { mu.Lock(); fake = fake.Add(d); mu.Unlock() }
	const d = 5 * time.Millisecond // real time between looks
	it := &idleTimer{d: d, now: now}
	it.touch()
	fired := make(chan struct{})
	stop := it.start(func() { close(fired) })
	defer stop()
	// Activity 3/4 of d of simulated time apart, with a real pause between
	// the clock moving and the activity in which the timer looks: if
	// activity did not push the deadline, the next look would see 1.5 d
	// without any and fire.
	for i := range 8 {
		advance(3 * d / 4)
		time.Sleep(2 * d)
		select {
		case <-fired:
			t.Fatalf("fired at step %d, though activity never stopped for d of simulated time", i)
		default:
		}
		it.touch() // a message, ping or pong (wsconn.Conn.OnControl)
	}
	// No activity for d of simulated time: it fires at its next look.
	advance(d)
	select {
	case <-fired:
	case <-time.After(10 * time.Second):
		t.Fatal("did not fire after the bridge was idle for its timeout")
	}
}
