package api

import (
	"errors"
	"strconv"
	"sync/atomic"
	"testing"
)

// TestLane: a lane admits what fits both the budget and the caller's
// share, says which one refused, and forgets a caller once its last call
// ends, so its map holds only callers with calls in progress.
func TestLane(t *testing.T) {
	t.Parallel()
	a, b := callerKey{id: "a"}, callerKey{id: "127.0.0.1:1", conn: true}
	type step struct {
		op      string // join, acquire, release, leave
		k       callerKey
		n       int64
		wantErr error
	}
	for _, tc := range []struct {
		name        string
		steps       []step
		wantUsed    int64
		wantCallers int
	}{
		{name: "within share and budget", steps: []step{{"join", a, 40, nil}, {"acquire", a, 10, nil}, {"join", b, 50, nil}}, wantUsed: 100, wantCallers: 2},
		{name: "over the share", steps: []step{{"join", a, 40, nil}, {"acquire", a, 11, errOverShare}, {"join", a, 11, errOverShare}}, wantUsed: 40, wantCallers: 1},
		{name: "over the budget", steps: []step{{"join", a, 50, nil}, {"join", b, 50, nil}, {"join", callerKey{id: "c"}, 1, errOverBudget}}, wantUsed: 100, wantCallers: 2},
		{name: "a share is per caller, not per call", steps: []step{{"join", a, 30, nil}, {"join", a, 20, nil}, {"join", a, 1, errOverShare}}, wantUsed: 50, wantCallers: 1},
		{name: "refused join adds no caller", steps: []step{{"join", a, 51, errOverShare}}, wantUsed: 0, wantCallers: 0},
		{name: "entry goes with the last call", steps: []step{{"join", a, 30, nil}, {"join", a, 20, nil}, {"leave", a, 30, nil}, {"leave", a, 20, nil}}, wantUsed: 0, wantCallers: 0},
		{name: "an idle call keeps its caller", steps: []step{{"join", a, 0, nil}, {"acquire", a, 20, nil}, {"release", a, 20, nil}}, wantUsed: 0, wantCallers: 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			l := newLane(100, 50, 10, 0, errOverBudget)
			for i, s := range tc.steps {
				var err error
				switch s.op {
				case "join":
					err = l.join(s.k, s.n)
				case "acquire":
					err = l.acquire(s.k, s.n)
				case "release", "leave":
					l.release(s.k, s.n, s.op == "leave")
				}
				if !errors.Is(err, s.wantErr) {
					t.Fatalf("step %d %s(%v, %d) err = %v, want %v", i, s.op, s.k, s.n, err, s.wantErr)
				}
			}
			if got := l.used.Load(); got != tc.wantUsed {
				t.Errorf("used = %d, want %d", got, tc.wantUsed)
			}
			if got := len(l.callers); got != tc.wantCallers {
				t.Errorf("callers tracked = %d, want %d", got, tc.wantCallers)
			}
		})
	}
}

// TestLaneBoundsCallers: a lane tracks at most maxCallers callers; a new
// one beyond is refused as busy, one it already tracks is still admitted.
func TestLaneBoundsCallers(t *testing.T) {
	t.Parallel()
	l := newLane(1<<40, 1<<20, 10, 0, errOverBudget)
	for i := range maxCallers {
		if err := l.join(callerKey{id: strconv.Itoa(i), conn: true}, 1); err != nil {
			t.Fatalf("caller %d: %v", i, err)
		}
	}
	if err := l.join(callerKey{id: "one too many"}, 1); !errors.Is(err, errOverBudget) {
		t.Fatalf("caller %d: err = %v, want errOverBudget", maxCallers+1, err)
	}
	if err := l.join(callerKey{id: "0", conn: true}, 1); err != nil {
		t.Fatalf("a tracked caller's next call: %v", err)
	}
}

// BenchmarkLane is what a unary call pays the lane: join with its charge,
// then leave. "parallel" has callers on every core, each its own identity.
func BenchmarkLane(b *testing.B) {
	l := newLane(1<<40, 1<<40, 10, 0, errOverBudget)
	b.Run("one caller", func(b *testing.B) {
		k := callerKey{id: "spiffe://alecrypt/pos/store-1"}
		b.ReportAllocs()
		for b.Loop() {
			if err := l.join(k, 8<<10); err != nil {
				b.Fatal(err)
			}
			l.release(k, 8<<10, true)
		}
	})
	b.Run("parallel", func(b *testing.B) {
		b.ReportAllocs()
		var n atomic.Int64
		b.RunParallel(func(pb *testing.PB) {
			k := callerKey{id: "192.0.2.1:" + strconv.Itoa(int(n.Add(1))), conn: true}
			for pb.Next() {
				if err := l.join(k, 8<<10); err != nil {
					b.Error(err)
					return
				}
				l.release(k, 8<<10, true)
			}
		})
	})
}
