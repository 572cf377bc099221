// Package heapfloor keeps the garbage collector's heap goal at or above a
// floor, as if Go's own 4 MiB minimum heap were larger, and tells whether
// the collector runs at all (Unbounded).
//
// Go sets the heap goal to the live heap plus GOGC percent of it (and of the
// stacks and globals), but never below 4 MiB. alecryptd and alegate hold 1–2
// MiB of live heap (protobuf descriptors, compiled regexps, metric series) and
// allocate 15–30 KiB per call, so at that minimum they collect every 100–150
// calls, each cycle marking all of that live heap again: at Go's defaults the
// GC was about 8 µs of the 20 µs of CPU that alecryptd's unary Encrypt cost
// over a bare Connect handler whose live heap is 0.6 MiB (gctrace of both
// under the same load). A floor of 12 MiB makes those cycles four to six
// times rarer, costs at most that much memory in a small deployment, and
// changes little once the live heap is large (at 10,000 keys, 6–11 MiB live,
// GOGC's own goal is 13–22 MiB): it only ever raises GOGC while the goal GOGC
// gives is below the floor.
//
// Go has no setting for this (golang/go#23044 proposes one), so Keep re-reads
// the live heap after every cycle (a cleanup re-armed each cycle) and sets
// the GC percent that puts the goal at the floor. An explicit GOGC in the
// environment is the operator's choice and turns Keep off, as does
// GOGC=off; GOMEMLIMIT still caps the heap, whatever GOGC says. deploy/'s
// alecryptd and alegate Deployments set GOGC=400, whose own minimum heap is
// already 16 MiB; its alesync CronJob and the systemd unit keep the floor.
//
// The percent lags one cycle: the runtime sets a cycle's goal at its mark
// termination, with the percent of the cycle before, and the cleanup that
// lowers it again runs after sweeping. When the live heap jumps, that one
// goal is (1+p/100)× the new live heap instead of (1+base/100)×. The jump is
// bounded by the goal it came through (about the floor), so the overshoot is
// once, at most (p−base)/100 × ~floor: 24 MiB at the 12 MiB default, measured
// as 3 MiB more peak RSS while alecryptd loads 10,000 keys.
// Under a burst of large calls it happens on the first cycle of the burst,
// not at the in-flight budget's scale.
package heapfloor

import (
	"math"
	"runtime"
	"runtime/debug"
	"runtime/metrics"
	"sync"
	"sync/atomic"
)

// Default is the floor alecrypt's daemons keep: Go's minimum heap at
// GOGC=300. 16 MiB (GOGC=400's) put the peak RSS of alecryptd starting on
// 10,000 keys at 64.7 MiB, over the 64 MiB it is meant to fit in, against
// 58.5 MiB without a floor and 61.6 MiB with this one.
const Default = 12 << 20

// goMinimumHeap is Go's minimum heap goal at GOGC=100. The runtime scales it
// with GOGC (the goal is never below goMinimumHeap × GOGC/100), which is why
// GOGC=400 alone gives a small heap a goal of 16 MiB. (A toolchain built with
// GOEXPERIMENT=heapminimum512kib has a smaller one; ours is not.)
const goMinimumHeap = 4 << 20

// Keep holds the heap goal at floor bytes or more from the first GC cycle
// that ends after the next one (see the lag above), unless getenv("GOGC") is
// set; stop (for tests) ends it and restores the GC
// percent it found.
func Keep(getenv func(string) string, floor uint64) (stop func()) {
	if k := start(getenv, floor); k != nil {
		return k.stop
	}
	return func() {}
}

func start(getenv func(string) string, floor uint64) *keeper {
	if getenv("GOGC") != "" || floor == 0 {
		return nil
	}
	base := readGOGC()
	if base < 0 {
		return nil
	}
	k := &keeper{floor: floor, base: base, current: base}
	k.arm()
	return k
}

type keeper struct {
	floor   uint64
	base    int // the GC percent found at Keep
	stopped atomic.Bool
	cycles  atomic.Int64 // cycles seen, for tests

	mu      sync.Mutex // orders cycle's SetGCPercent with stop's restore
	current int
}

// sentinel is what each cycle's cleanup hangs on. It holds a pointer so it is
// never one of the tiny allocator's blocks, which can stay reachable through
// a neighbour and so never be cleaned up.
type sentinel struct {
	_ *byte
	_ [8]byte
}

// arm allocates a sentinel nothing keeps alive: the next GC cycle finds it
// unreachable and runs cycle, which arms the next one.
func (k *keeper) arm() {
	runtime.AddCleanup(new(sentinel), (*keeper).cycle, k)
}

func (k *keeper) cycle() {
	if k.stopped.Load() {
		return
	}
	k.adjust(readHeap())
	k.cycles.Add(1)
	k.arm()
}

// adjust sets the GC percent for the heap the last cycle measured.
func (k *keeper) adjust(h heap) {
	p := percent(h, k.floor, k.base)
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.stopped.Load() || p == k.current {
		return
	}
	debug.SetGCPercent(p)
	k.current = p
}

func (k *keeper) stop() {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.stopped.Swap(true) {
		return
	}
	if k.current != k.base {
		debug.SetGCPercent(k.base)
		k.current = k.base
	}
}

// heap is what the runtime's goal is computed from: the goal is the larger
// of goMinimumHeap × GOGC/100 and Live + Scan × GOGC/100, Scan being the live
// heap plus the goroutine stacks and globals the last cycle scanned (the GC
// guide's model since Go 1.18).
type heap struct{ Live, Scan uint64 }

// goal is the runtime's heap goal for h at GC percent p.
func goal(h heap, p int) uint64 {
	return max(goMinimumHeap*uint64(p)/100, h.Live+h.Scan*uint64(p)/100)
}

// percent is the smallest GC percent, and at least base, whose heap goal
// for h is floor or more.
func percent(h heap, floor uint64, base int) int {
	if goal(h, base) >= floor {
		return base
	}
	// Either term of goal can reach the floor; the smaller percent wins.
	p := ceilDiv(floor*100, goMinimumHeap)
	if h.Live < floor && h.Scan > 0 {
		p = min(p, ceilDiv((floor-h.Live)*100, h.Scan))
	}
	return max(base, int(p))
}

func ceilDiv(a, b uint64) uint64 { return (a + b - 1) / b }

// Unbounded reports whether the process runs with the collector off and no
// memory limit (GOGC=off without GOMEMLIMIT, or with GOMEMLIMIT=off): then
// nothing is ever collected and every request's garbage stays until the
// process is killed (alecryptd grew past 600 MiB in a short burst). A memory
// limit makes GOGC=off a valid setting: the collector runs only near it.
func Unbounded() bool { return unbounded(readGOGC(), debug.SetMemoryLimit(-1)) }

func unbounded(percent int, memoryLimit int64) bool {
	return percent < 0 && memoryLimit == math.MaxInt64
}

func readGOGC() int {
	s := []metrics.Sample{{Name: "/gc/gogc:percent"}}
	metrics.Read(s)
	return int(s[0].Value.Uint64())
}

func readHeap() heap {
	s := []metrics.Sample{{Name: "/gc/heap/live:bytes"}, {Name: "/gc/scan/stack:bytes"}, {Name: "/gc/scan/globals:bytes"}}
	metrics.Read(s)
	live := s[0].Value.Uint64()
	return heap{Live: live, Scan: live + s[1].Value.Uint64() + s[2].Value.Uint64()}
}
