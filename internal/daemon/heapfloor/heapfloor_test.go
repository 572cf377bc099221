package heapfloor

import (
	"math"
	"runtime"
	"runtime/debug"
	"runtime/metrics"
	"testing"
	"time"
)

// The tests change the process's GC settings, so none runs in parallel.

// defaultGC runs a test at Go's default GC percent whatever GOGC the test
// binary was started with (off, or large enough to hide the floor).
func defaultGC(t *testing.T) int {
	t.Helper()
	old := debug.SetGCPercent(100)
	t.Cleanup(func() { debug.SetGCPercent(old) })
	return 100
}

// startKeeper is start with GOGC unset, stopped at the test's end even when
// it fails early.
func startKeeper(t *testing.T, floor uint64) *keeper {
	t.Helper()
	k := start(func(string) string { return "" }, floor)
	if k == nil {
		t.Fatal("start = nil with GOGC unset and the GC on")
	}
	t.Cleanup(k.stop)
	return k
}

func TestPercent(t *testing.T) {
	const mib = 1 << 20
	for _, tc := range []struct {
		name       string
		h          heap
		floor      uint64
		base, want int
	}{
		// Go's minimum heap, 4 MiB × GOGC/100, reaches 16 MiB at 400.
		{"small heap: the minimum heap reaches the floor", heap{2 * mib, 2 * mib}, 16 * mib, 100, 400},
		{"nothing measured yet", heap{}, 16 * mib, 100, 400},
		{"stacks and globals count toward the goal", heap{2 * mib, 4 * mib}, 16 * mib, 100, 350},
		{"rounded up, never below the floor", heap{5 * mib, 3 * mib}, 16 * mib, 100, 367},
		{"base already reaches the floor", heap{8 * mib, 8 * mib}, 16 * mib, 100, 100},
		{"live heap above the floor", heap{40 * mib, 41 * mib}, 16 * mib, 100, 100},
		{"a larger base is kept", heap{2 * mib, 2 * mib}, 16 * mib, 800, 800},
		{"a floor below Go's minimum changes nothing", heap{1 * mib, 1 * mib}, 2 * mib, 100, 100},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := percent(tc.h, tc.floor, tc.base)
			if got != tc.want {
				t.Errorf("percent(%+v, %d, %d) = %d, want %d", tc.h, tc.floor, tc.base, got, tc.want)
			}
			if g := goal(tc.h, got); g < tc.floor {
				t.Errorf("goal %d below the floor %d", g, tc.floor)
			} else if got > tc.base && goal(tc.h, got-1) >= tc.floor {
				t.Errorf("percent %d is not the smallest reaching the floor", got)
			}
		})
	}
}

func read(name string) uint64 {
	s := []metrics.Sample{{Name: name}}
	metrics.Read(s)
	return s[0].Value.Uint64()
}

// waitGC runs GC cycles until cond holds: Keep acts in a cleanup, after the
// cycle that ran it, so a few cycles may pass before it is seen.
func waitGC(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not after 10 s of GC cycles (GOGC %d, goal %d, live %d)", what,
				int(read("/gc/gogc:percent")), read("/gc/heap/goal:bytes"), read("/gc/heap/live:bytes"))
		}
		runtime.GC()
		time.Sleep(time.Millisecond)
	}
}

func TestKeepRaisesTheGoalOfASmallHeap(t *testing.T) {
	const floor = 64 << 20
	base := defaultGC(t)
	runtime.GC() // the live heap as of now, not of an earlier test's last cycle
	if live := read("/gc/heap/live:bytes"); live > floor/4 {
		t.Fatalf("live heap %d: the test needs one well below the floor", live)
	}
	k := startKeeper(t, floor)
	waitGC(t, "heap goal at the floor", func() bool { return read("/gc/heap/goal:bytes") >= floor })
	if goal := read("/gc/heap/goal:bytes"); goal > floor+floor/8 {
		t.Errorf("heap goal %d, want the floor %d, not far above it", goal, floor)
	}
	if p := int(read("/gc/gogc:percent")); p <= base {
		t.Errorf("GC percent %d, want above %d", p, base)
	}
	k.stop()
	if p := int(read("/gc/gogc:percent")); p != base {
		t.Errorf("after stop: GC percent %d, want %d restored", p, base)
	}
	// Cycles after stop change nothing.
	n := k.cycles.Load()
	for range 3 {
		runtime.GC()
		time.Sleep(time.Millisecond)
	}
	if p := int(read("/gc/gogc:percent")); p != base || k.cycles.Load() > n+1 {
		t.Errorf("cycles after stop: GC percent %d, %d cycles seen (%d at stop); want %d, no more than one in flight", p, k.cycles.Load(), n, base)
	}
}

func TestKeepLeavesALargeHeapAlone(t *testing.T) {
	// Above Go's own 4 MiB minimum, so a small heap would be raised (the
	// test above), but a third of this live heap.
	const floor = 16 << 20
	live := make([]*[1024]byte, 3*floor/1024) // 48 MiB live, with pointers to mark
	for i := range live {
		live[i] = new([1024]byte)
	}
	base := defaultGC(t)
	k := startKeeper(t, floor)
	waitGC(t, "three cycles seen", func() bool { return k.cycles.Load() >= 3 })
	if p := int(read("/gc/gogc:percent")); p != base {
		t.Errorf("GC percent %d with a live heap three times the floor, want %d", p, base)
	}
	runtime.KeepAlive(live)
}

func TestKeepObeysAnExplicitGOGC(t *testing.T) {
	defaultGC(t)
	k := start(func(name string) string {
		if name == "GOGC" {
			return "100"
		}
		return ""
	}, 64<<20)
	if k != nil {
		k.stop()
		t.Fatal("start != nil with GOGC set in the environment: an explicit GOGC must turn the floor off")
	}
}

func TestKeepObeysGOGCOff(t *testing.T) {
	old := debug.SetGCPercent(-1)
	defer debug.SetGCPercent(old)
	if k := start(func(string) string { return "" }, 64<<20); k != nil {
		k.stop()
		t.Fatal("start != nil with the GC off: it must stay off")
	}
}

// TestUnbounded: the collector off is unbounded only without a memory limit.
func TestUnbounded(t *testing.T) {
	for _, tc := range []struct {
		name    string
		percent int
		limit   int64
		want    bool
	}{
		{name: "defaults", percent: 100, limit: math.MaxInt64},
		{name: "GOGC=off", percent: -1, limit: math.MaxInt64, want: true},
		{name: "GOGC=off with GOMEMLIMIT", percent: -1, limit: 512 << 20},
		{name: "GOMEMLIMIT alone", percent: 100, limit: 512 << 20},
		{name: "GOGC=0", percent: 0, limit: math.MaxInt64},
	} {
		if got := unbounded(tc.percent, tc.limit); got != tc.want {
			t.Errorf("%s: unbounded(%d, %d) = %v, want %v", tc.name, tc.percent, tc.limit, got, tc.want)
		}
	}
	// And from the runtime's own settings.
	oldPercent := debug.SetGCPercent(-1)
	defer debug.SetGCPercent(oldPercent)
	oldLimit := debug.SetMemoryLimit(math.MaxInt64)
	defer debug.SetMemoryLimit(oldLimit)
	if !Unbounded() {
		t.Error("Unbounded() = false with the GC off and no memory limit")
	}
	debug.SetMemoryLimit(256 << 20)
	if Unbounded() {
		t.Error("Unbounded() = true with the GC off and a memory limit")
	}
}
