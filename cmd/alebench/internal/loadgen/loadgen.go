// Package loadgen is alebench's measurement core. It runs workers against a
// service for a fixed window, after a warm-up that is not counted, records
// the latency of every operation completed in the window, and reads the
// server process's CPU time and memory from /proc at the window's edges, so
// that cost per operation is the server's alone even when the load generator
// shares its cores.
//
// It knows nothing about what the operations are: alebench builds the
// workers (unary calls, batches, pipelined streams; alecrypt or Vault).
package loadgen

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// Config is one measurement.
type Config struct {
	// Workers is how many workers run at once: concurrent callers in a
	// closed loop, the pool bounding in-flight calls in an open loop.
	Workers int
	// Warmup runs before the window and is not counted: connections open,
	// pools fill and the server's heap grows to its working size there.
	Warmup time.Duration
	// Duration is the measured window. It stays open past Duration until
	// at least one operation completed inside it (for at most
	// MaxWindowExtension more): on a machine so busy that nothing finished
	// in time, a window that measured nothing would report nothing.
	Duration time.Duration
	// Server, when non-nil, is read at both edges of the window.
	Server Probe
	// Client, when non-nil, is read at both edges too (the load generator's
	// own cost, for context).
	Client Probe
	// System, when non-nil, reads the whole machine's CPU time, so that what
	// neither the server nor the client used (other processes on a shared
	// machine, the hypervisor's steal) shows as interference.
	System func() (SystemStat, error)
}

// Probe reads a process's counters.
type Probe func() (ProcStat, error)

// A Worker runs operations until ctx ends and reports each one to rec. It
// returns nil when ctx ends; any other error aborts the measurement.
type Worker func(ctx context.Context, rec *Recorder) error

// Recorder collects one worker's samples. It is not safe for concurrent use
// except through Clock; a worker with helper goroutines records from one of
// them only.
type Recorder struct {
	clock   *Clock
	samples []sample
}

type sample struct {
	end     int64 // ns since the clock's base
	latency int64 // ns
	items   int32
}

// Clock is the monotonic time base of a measurement. Its readings are
// nanoseconds since the run began.
type Clock struct {
	base time.Time
	// now and sleep are time.Now and a timer unless a test replaces them,
	// so that what the workers measure can be checked without depending on
	// how busy the machine is.
	now   func() time.Time
	sleep func(ctx context.Context, d time.Duration) bool
	// completed counts operations recorded by every worker, for the window
	// to know when one finished inside it.
	completed atomic.Int64
}

func newClock() *Clock { return &Clock{base: time.Now(), now: time.Now, sleep: sleep} }

// Now is the time since the run began, in nanoseconds.
func (c *Clock) Now() int64 { return int64(c.now().Sub(c.base)) }

// At converts a reading back to wall time (for sleeping until a schedule).
func (c *Clock) At(ns int64) time.Time { return c.base.Add(time.Duration(ns)) }

// Clock returns the run's clock, for workers that timestamp sends on one
// goroutine and completions on another.
func (r *Recorder) Clock() *Clock { return r.clock }

// Done records an operation that began at start (a Clock reading: when it was
// sent or, in an open loop, when it was due) and completed now, having
// processed items payloads (1 for a unary call, the batch size for a batch).
func (r *Recorder) Done(start int64, items int) {
	end := r.clock.Now()
	r.samples = append(r.samples, sample{end: end, latency: end - start, items: int32(items)})
	r.clock.completed.Add(1)
}

// Result is what one measurement found. Operations count completions inside
// the window; an operation is a call or a stream message, and each carries
// one or more items (payloads).
type Result struct {
	Window     time.Duration
	Operations int64
	Items      int64
	Latency    Summary
	// Server and Client are the probes' differences over the window
	// (CPU) and the server's memory at the window's end. Zero without probes.
	ServerCPU time.Duration
	ClientCPU time.Duration
	ServerMem ProcStat
	// OtherCPU is the machine's busy time in the window that neither the
	// server nor the client accounts for, and Steal the time the hypervisor
	// took; zero without a System probe.
	OtherCPU time.Duration
	Steal    time.Duration
}

// InterferenceCores is how many cores' worth of CPU other processes and the
// hypervisor took during the window: on a shared machine, the measure of how
// much to trust the others.
func (r Result) InterferenceCores() float64 {
	if r.Window <= 0 {
		return 0
	}
	return (r.OtherCPU + r.Steal).Seconds() / r.Window.Seconds()
}

// ItemsPerSecond is the throughput in payloads.
func (r Result) ItemsPerSecond() float64 { return perSecond(float64(r.Items), r.Window) }

// OpsPerSecond is the throughput in calls or stream messages.
func (r Result) OpsPerSecond() float64 { return perSecond(float64(r.Operations), r.Window) }

// ServerCPUPerItem is the server's CPU time divided by the items it
// processed in the window; zero without a server probe.
func (r Result) ServerCPUPerItem() time.Duration { return perItem(r.ServerCPU, r.Items) }

// ClientCPUPerItem is the load generator's CPU per item.
func (r Result) ClientCPUPerItem() time.Duration { return perItem(r.ClientCPU, r.Items) }

func perSecond(n float64, d time.Duration) float64 {
	if d <= 0 {
		return 0
	}
	return n / d.Seconds()
}

func perItem(cpu time.Duration, items int64) time.Duration {
	if items <= 0 {
		return 0
	}
	return cpu / time.Duration(items)
}

// Run runs cfg.Workers copies of the worker made by newWorker (one call per
// worker, before the clock starts, so set-up is never measured) through the
// warm-up and the window, then stops them and summarizes. The first worker
// error cancels the run and is returned.
func Run(ctx context.Context, cfg Config, newWorker func(i int) (Worker, error)) (Result, error) {
	if cfg.Workers <= 0 || cfg.Duration <= 0 || cfg.Warmup < 0 {
		return Result{}, fmt.Errorf("loadgen: need workers > 0 and duration > 0, got %d and %v", cfg.Workers, cfg.Duration)
	}
	workers := make([]Worker, cfg.Workers)
	for i := range workers {
		w, err := newWorker(i)
		if err != nil {
			return Result{}, err
		}
		workers[i] = w
	}
	clock := newClock()
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	recs := make([]*Recorder, len(workers))
	var wg sync.WaitGroup
	var failed atomic.Bool
	for i, w := range workers {
		recs[i] = &Recorder{clock: clock}
		wg.Go(func() {
			if err := w(ctx, recs[i]); err != nil && ctx.Err() == nil {
				failed.Store(true)
				cancel(err)
			}
		})
	}
	var before, after window
	var err error
	if sleep(ctx, cfg.Warmup) {
		opened := clock.completed.Load()
		before, err = cfg.read(clock)
		if err == nil && sleep(ctx, cfg.Duration) && awaitCompletion(ctx, clock, opened, len(workers)) {
			after, err = cfg.read(clock)
		}
	}
	cancel(errStopped)
	wg.Wait()
	if cause := context.Cause(ctx); failed.Load() || !errors.Is(cause, errStopped) {
		return Result{}, cause
	}
	if err != nil {
		return Result{}, err
	}
	return summarize(recs, before, after), nil
}

var errStopped = errors.New("measurement over")

// MaxWindowExtension bounds how long a window waits past its Duration for
// its first completed operation.
const MaxWindowExtension = time.Minute

// awaitCompletion waits until an operation has completed inside the window
// opened when the count of completions was opened. Each worker may have
// recorded one operation that ended before the window opened but was counted
// after, so workers+1 completions since then guarantee one inside it. It
// reports false only when ctx ended.
func awaitCompletion(ctx context.Context, clock *Clock, opened int64, workers int) bool {
	deadline := time.Now().Add(MaxWindowExtension)
	for clock.completed.Load()-opened <= int64(workers) && time.Now().Before(deadline) {
		if !sleep(ctx, time.Millisecond) {
			return false
		}
	}
	return ctx.Err() == nil
}

// window is one edge of the measured window.
type window struct {
	at     int64
	server ProcStat
	client ProcStat
	system SystemStat
}

func (cfg Config) read(clock *Clock) (window, error) {
	w := window{at: clock.Now()}
	var err error
	if cfg.Server != nil {
		if w.server, err = cfg.Server(); err != nil {
			return window{}, fmt.Errorf("reading the server process: %w", err)
		}
	}
	if cfg.Client != nil {
		if w.client, err = cfg.Client(); err != nil {
			return window{}, fmt.Errorf("reading the client process: %w", err)
		}
	}
	if cfg.System != nil {
		if w.system, err = cfg.System(); err != nil {
			return window{}, fmt.Errorf("reading the machine's CPU time: %w", err)
		}
	}
	return w, nil
}

// summarize keeps the samples that completed inside the window.
func summarize(recs []*Recorder, before, after window) Result {
	res := Result{
		Window:    time.Duration(after.at - before.at),
		ServerCPU: after.server.CPU - before.server.CPU,
		ClientCPU: after.client.CPU - before.client.CPU,
		ServerMem: ProcStat{RSS: after.server.RSS, PeakRSS: after.server.PeakRSS},
		Steal:     after.system.Steal - before.system.Steal,
	}
	if busy := after.system.Busy - before.system.Busy; busy > 0 {
		// Tick rounding can make the processes' share exceed the total.
		res.OtherCPU = max(0, busy-res.ServerCPU-res.ClientCPU)
	}
	var lat []int64
	for _, r := range recs {
		for _, s := range r.samples {
			if s.end < before.at || s.end > after.at {
				continue
			}
			res.Operations++
			res.Items += int64(s.items)
			lat = append(lat, s.latency)
		}
	}
	slices.Sort(lat)
	res.Latency = Summarize(lat)
	return res
}

// sleep waits d or until ctx ends, and reports whether d passed.
func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

// Op is one operation of a closed or open loop; it reports how many items it
// processed.
type Op func(ctx context.Context) (items int, err error)

// Closed is a closed-loop worker: it calls op again as soon as the previous
// call returns, so latency is service time under this concurrency.
func Closed(op Op) Worker {
	return func(ctx context.Context, rec *Recorder) error {
		for ctx.Err() == nil {
			start := rec.clock.Now()
			n, err := op(ctx)
			if err != nil {
				return ignoreCancel(ctx, err)
			}
			rec.Done(start, n)
		}
		return nil
	}
}

// Schedule hands out the due times of an open loop at a fixed rate. The
// workers sharing it form the pool: when all are busy, due times slip into
// the past and the wait shows up in latency, which is then measured from the
// due time, not the send (no coordinated omission).
type Schedule struct {
	interval int64 // ns between arrivals
	next     atomic.Int64
}

// NewSchedule returns a schedule of rate operations per second.
func NewSchedule(rate float64) (*Schedule, error) {
	if rate <= 0 {
		return nil, fmt.Errorf("loadgen: rate must be positive, got %v", rate)
	}
	return &Schedule{interval: max(1, int64(float64(time.Second)/rate))}, nil
}

// due returns the next arrival's due time, the first one at the clock's base.
func (s *Schedule) due() int64 { return (s.next.Add(1) - 1) * s.interval }

// Open is an open-loop worker: it takes the next due time from s, waits for
// it, and calls op. A call that is late because every worker was busy is
// measured from its due time. A call the worker had to wait for is measured
// from when the worker woke: timers wake up to a millisecond late on the
// machines this runs on, and that lateness is the load generator's, not the
// service's.
func Open(s *Schedule, op Op) Worker {
	return func(ctx context.Context, rec *Recorder) error {
		for {
			start := s.due()
			if wait := rec.clock.At(start).Sub(rec.clock.now()); wait > 0 {
				if !rec.clock.sleep(ctx, wait) {
					return nil
				}
				start = rec.clock.Now()
			}
			if ctx.Err() != nil {
				return nil
			}
			n, err := op(ctx)
			if err != nil {
				return ignoreCancel(ctx, err)
			}
			rec.Done(start, n)
		}
	}
}

// ignoreCancel drops the error of a call cut short by the end of the run.
func ignoreCancel(ctx context.Context, err error) error {
	if ctx.Err() != nil {
		return nil
	}
	return err
}
