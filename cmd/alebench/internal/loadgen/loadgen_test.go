package loadgen

import (
	"context"
	"encoding/binary"
	"errors"
	"os"
	"sync/atomic"
	"testing"
	"time"
)

func TestPercentile(t *testing.T) {
	t.Parallel()
	oneToHundred := make([]int64, 100)
	for i := range oneToHundred {
		oneToHundred[i] = int64(i + 1)
	}
	for _, tc := range []struct {
		name   string
		sorted []int64
		p      float64
		want   int64
	}{
		{"empty", nil, 50, 0},
		{"one value, any p", []int64{7}, 99, 7},
		{"p50 of 1..100", oneToHundred, 50, 50},
		{"p95 of 1..100", oneToHundred, 95, 95},
		{"p99 of 1..100", oneToHundred, 99, 99},
		{"p100 is the max", oneToHundred, 100, 100},
		{"tiny p is the min", oneToHundred, 0.001, 1},
		// Nearest rank of 20 values: p95 is rank 19 exactly, not 20.
		{"p95 of 20 is rank 19", []int64{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20}, 95, 19},
		// ... and p50 of an even count is the lower middle, never a mean.
		{"p50 of 4", []int64{10, 20, 30, 40}, 50, 20},
		// p99 of fewer than 100 values is the max: one slow call in 10 is
		// the p99, as it should be.
		{"p99 of 10 is the max", []int64{1, 1, 1, 1, 1, 1, 1, 1, 1, 500}, 99, 500},
		{"p90 of 10 excludes the max", []int64{1, 1, 1, 1, 1, 1, 1, 1, 1, 500}, 90, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			if got := Percentile(tc.sorted, tc.p); got != tc.want {
				t.Errorf("Percentile(%v, %v) = %d, want %d", tc.sorted, tc.p, got, tc.want)
			}
		})
	}
}

func TestSummarize(t *testing.T) {
	t.Parallel()
	got := Summarize([]int64{1000, 2000, 3000, 4000})
	want := Summary{Count: 4, Mean: 2500, P50: 2000, P95: 4000, P99: 4000, Max: 4000}
	if got != want {
		t.Errorf("Summarize = %+v, want %+v", got, want)
	}
	if got := Summarize(nil); got != (Summary{}) {
		t.Errorf("Summarize(nil) = %+v, want zero", got)
	}
}

func TestParseStatTicks(t *testing.T) {
	t.Parallel()
	// Field 14 (utime) = 1500, 15 (stime) = 250; the command names hold
	// spaces and parentheses, which a naive split would miscount.
	const tail = " S 1 1234 1234 0 -1 4194560 12093 0 3 0 1500 250 0 0 20 0 9 0 51622 1334263808 5215 18446744073709551615 1 1 0 0 0 0 0 0 2143420159 0 0 0 17 1 0 0 0 0 0\n"
	for _, tc := range []struct {
		name string
		stat string
		want int64
		ok   bool
	}{
		{"plain", "1234 (alecryptd)" + tail, 1750, true},
		{"name with spaces and parens", "1234 (my (odd) name)" + tail, 1750, true},
		{"name with a ) and digits", "1234 (x) 1 2)" + tail, 1750, true},
		{"truncated", "1234 (alecryptd) S 1 2 3", 0, false},
		{"no name", "1234 alecryptd S", 0, false},
		{"not a number", "1234 (a) S 1 1234 1234 0 -1 4194560 12093 0 3 0 x 250 0", 0, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			got, err := parseStatTicks([]byte(tc.stat))
			if (err == nil) != tc.ok || got != tc.want {
				t.Errorf("parseStatTicks(%q) = %d, %v; want %d, ok=%v", tc.stat, got, err, tc.want, tc.ok)
			}
		})
	}
}

func TestParseStatusMemory(t *testing.T) {
	t.Parallel()
	status := "Name:\talecryptd\nVmPeak:\t 1300000 kB\nVmHWM:\t   40960 kB\nVmRSS:\t   20480 kB\nThreads:\t9\n"
	rss, peak, err := parseStatusMemory([]byte(status))
	if err != nil || rss != 20<<20 || peak != 40<<20 {
		t.Errorf("parseStatusMemory = %d, %d, %v; want %d, %d, nil", rss, peak, err, 20<<20, 40<<20)
	}
	if _, _, err := parseStatusMemory([]byte("Name:\tkthreadd\nThreads:\t1\n")); err == nil {
		t.Error("parseStatusMemory(no VmRSS) err = nil, want an error")
	}
	if _, _, err := parseStatusMemory([]byte("VmHWM:\t1 MB\nVmRSS:\t1 kB\n")); err == nil {
		t.Error("parseStatusMemory(VmHWM in MB) err = nil, want an error")
	}
}

func TestCPUMath(t *testing.T) {
	t.Parallel()
	if got, want := TicksToDuration(1750, 100), 17500*time.Millisecond; got != want {
		t.Errorf("TicksToDuration(1750, 100) = %v, want %v", got, want)
	}
	if got, want := TicksToDuration(3, 1000), 3*time.Millisecond; got != want {
		t.Errorf("TicksToDuration(3, 1000) = %v, want %v", got, want)
	}
	// 2 s of server CPU over 40,000 items is 50 µs per item; throughput is
	// counted over the window, not the run.
	r := Result{Window: 4 * time.Second, Operations: 400, Items: 40_000, ServerCPU: 2 * time.Second}
	if got, want := r.ServerCPUPerItem(), 50*time.Microsecond; got != want {
		t.Errorf("ServerCPUPerItem = %v, want %v", got, want)
	}
	if got, want := r.ItemsPerSecond(), 10_000.0; got != want {
		t.Errorf("ItemsPerSecond = %v, want %v", got, want)
	}
	if got, want := r.OpsPerSecond(), 100.0; got != want {
		t.Errorf("OpsPerSecond = %v, want %v", got, want)
	}
	if got := (Result{}).ServerCPUPerItem(); got != 0 {
		t.Errorf("ServerCPUPerItem of nothing = %v, want 0", got)
	}
}

func TestParseSystemTicks(t *testing.T) {
	t.Parallel()
	stat := "cpu  335882 7 79781 1013760 2777 3 6408 151 11 0\ncpu0 1 2 3 4 5 6 7 8 9 10\n"
	busy, steal, err := parseSystemTicks([]byte(stat))
	if want := int64(335882 + 7 + 79781 + 3 + 6408); err != nil || busy != want || steal != 151 {
		t.Errorf("parseSystemTicks = %d, %d, %v; want %d, 151, nil", busy, steal, err, want)
	}
	if _, _, err := parseSystemTicks([]byte("cpu0 1 2 3 4 5 6 7 8\n")); err == nil {
		t.Error("parseSystemTicks(no aggregate line) err = nil")
	}
	// Other CPU is the machine's busy time less the two processes', and
	// interference counts steal too: 0.5 s of others and 0.1 s of steal
	// in a 2 s window is 0.3 cores.
	r := Result{Window: 2 * time.Second, OtherCPU: 500 * time.Millisecond, Steal: 100 * time.Millisecond}
	if got := r.InterferenceCores(); got < 0.2999 || got > 0.3001 {
		t.Errorf("InterferenceCores = %v, want 0.3", got)
	}
}

func TestAuxvValue(t *testing.T) {
	t.Parallel()
	auxv := make([]byte, 0, 64)
	for _, w := range []uint64{6, 4096, atClkTck, 250, 0, 0} {
		auxv = binary.NativeEndian.AppendUint64(auxv, w)
	}
	if got := auxvValue(auxv, atClkTck); got != 250 {
		t.Errorf("auxvValue(AT_CLKTCK) = %d, want 250", got)
	}
	if got := auxvValue(auxv, 99); got != 0 {
		t.Errorf("auxvValue(missing) = %d, want 0", got)
	}
	if hz := clockTicks(); hz <= 0 {
		t.Errorf("clockTicks() = %d, want > 0", hz)
	}
}

func TestProcProbeSelf(t *testing.T) {
	t.Parallel()
	if _, err := os.Stat("/proc/self/stat"); err != nil {
		t.Skip("no /proc")
	}
	st, err := ProcProbe(os.Getpid())()
	if err != nil {
		t.Fatalf("ProcProbe(self): %v", err)
	}
	if st.RSS <= 0 || st.PeakRSS < st.RSS {
		t.Errorf("ProcProbe(self) = %+v, want 0 < RSS <= PeakRSS", st)
	}
}

// TestRunCountsOnlyTheWindow runs a fake operation whose pace is known and a
// fake server probe that charges 1 ms of CPU per item, and checks the window
// arithmetic: throughput and CPU per item come from the window only.
func TestRunCountsOnlyTheWindow(t *testing.T) {
	t.Parallel()
	var items atomic.Int64
	probe := func() (ProcStat, error) {
		return ProcStat{CPU: time.Duration(items.Load()) * time.Millisecond, RSS: 1 << 20, PeakRSS: 2 << 20}, nil
	}
	op := func(ctx context.Context) (int, error) {
		time.Sleep(time.Millisecond)
		items.Add(2)
		return 2, nil
	}
	// The machine is busy with the server's time plus 0.5 of another core.
	start := time.Now()
	system := func() (SystemStat, error) {
		other := time.Since(start) / 2
		return SystemStat{Busy: time.Duration(items.Load())*time.Millisecond + other}, nil
	}
	res, err := Run(context.Background(), Config{Workers: 4, Warmup: 50 * time.Millisecond, Duration: 200 * time.Millisecond, Server: probe, System: system},
		func(int) (Worker, error) { return Closed(op), nil })
	if err != nil {
		t.Fatal(err)
	}
	// At least the 200 ms asked for; how much longer depends on how busy
	// the machine is (the window also waits for a completion inside it).
	if res.Window < 200*time.Millisecond {
		t.Errorf("Window = %v, want at least 200ms", res.Window)
	}
	if res.Items != 2*res.Operations || res.Operations == 0 {
		t.Errorf("Items = %d, Operations = %d; want 2 items per operation", res.Items, res.Operations)
	}
	// The probe is read at the edges; items completing between a probe and
	// the sample's timestamp can shift a few either way.
	if got := res.ServerCPUPerItem(); got < 900*time.Microsecond || got > 1100*time.Microsecond {
		t.Errorf("ServerCPUPerItem = %v, want about 1ms", got)
	}
	if res.Latency.P50 < time.Millisecond || res.Latency.Max < res.Latency.P99 || res.Latency.P99 < res.Latency.P50 {
		t.Errorf("Latency = %+v, want ordered and at least 1ms", res.Latency)
	}
	if got := res.InterferenceCores(); got < 0.45 || got > 0.55 {
		t.Errorf("InterferenceCores = %v, want about 0.5", got)
	}
	if res.ServerMem.RSS != 1<<20 || res.ServerMem.PeakRSS != 2<<20 {
		t.Errorf("ServerMem = %+v, want the probe's memory at the end", res.ServerMem)
	}
}

func TestRunStopsOnWorkerError(t *testing.T) {
	t.Parallel()
	boom := errors.New("boom")
	_, err := Run(context.Background(), Config{Workers: 2, Warmup: 10 * time.Millisecond, Duration: 10 * time.Second},
		func(i int) (Worker, error) {
			return Closed(func(ctx context.Context) (int, error) {
				if i == 1 {
					return 0, boom
				}
				time.Sleep(time.Millisecond)
				return 1, nil
			}), nil
		})
	if !errors.Is(err, boom) {
		t.Fatalf("Run err = %v, want boom", err)
	}
}

// TestWindowWaitsForACompletion runs operations far slower than the window:
// the window stays open until one completed inside it, so the result always
// measured something, however busy the machine.
func TestWindowWaitsForACompletion(t *testing.T) {
	t.Parallel()
	op := func(ctx context.Context) (int, error) {
		if !sleep(ctx, 30*time.Millisecond) {
			return 0, ctx.Err()
		}
		return 1, nil
	}
	res, err := Run(context.Background(), Config{Workers: 2, Duration: time.Millisecond},
		func(int) (Worker, error) { return Closed(op), nil })
	if err != nil {
		t.Fatal(err)
	}
	if res.Operations == 0 || res.Latency.P50 <= 0 {
		t.Fatalf("Run = %d operations, p50 %v; want at least one completed inside the window", res.Operations, res.Latency.P50)
	}
}

// TestOpenLoopMeasuresFromDueTime runs an open loop whose only worker is
// always busy: operations queue behind it, and latency measured from the due
// time must grow far beyond the 5 ms service time.
func TestOpenLoopMeasuresFromDueTime(t *testing.T) {
	t.Parallel()
	s, err := NewSchedule(1000) // due every 1 ms, served in 5 ms: overloaded
	if err != nil {
		t.Fatal(err)
	}
	res, err := Run(context.Background(), Config{Workers: 1, Warmup: 20 * time.Millisecond, Duration: 100 * time.Millisecond},
		func(int) (Worker, error) {
			return Open(s, func(context.Context) (int, error) { time.Sleep(5 * time.Millisecond); return 1, nil }), nil
		})
	if err != nil {
		t.Fatal(err)
	}
	if res.Latency.P99 < 20*time.Millisecond {
		t.Errorf("open-loop p99 = %v, want the queueing delay (well over 20ms)", res.Latency.P99)
	}
	if _, err := NewSchedule(0); err == nil {
		t.Error("NewSchedule(0) err = nil, want an error")
	}
}

// TestOpenLoopIgnoresTimerLateness runs an open loop of instant operations
// on a clock whose timers always wake late: the lateness is the load
// generator's, and must not count as latency. The clock is simulated, so the
// test does not depend on how busy the machine is.
func TestOpenLoopIgnoresTimerLateness(t *testing.T) {
	t.Parallel()
	const lateness = 200 * time.Microsecond // less than the 500 µs interval: no queueing
	base := time.Now()
	var fake time.Duration // guarded by being used from one goroutine only
	clock := &Clock{
		base: base,
		now:  func() time.Time { return base.Add(fake) },
		sleep: func(_ context.Context, d time.Duration) bool {
			fake += d + lateness
			return true
		},
	}
	s, err := NewSchedule(2000)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	const ops = 50
	calls := 0
	rec := &Recorder{clock: clock}
	err = Open(s, func(context.Context) (int, error) {
		if calls++; calls == ops {
			cancel()
		}
		return 1, nil
	})(ctx, rec)
	if err != nil {
		t.Fatal(err)
	}
	if len(rec.samples) < ops-1 {
		t.Fatalf("recorded %d operations, want at least %d", len(rec.samples), ops-1)
	}
	// The first operation is due at the clock's base and needs no sleep;
	// every later one waited and woke late.
	for i, smp := range rec.samples {
		if smp.latency != 0 {
			t.Fatalf("operation %d latency = %v, want 0 (an instant operation; the timer's lateness left out)", i, time.Duration(smp.latency))
		}
	}
	if fake < (ops-1)*lateness {
		t.Fatalf("fake clock advanced %v; the test did not exercise late wake-ups", fake)
	}
}
