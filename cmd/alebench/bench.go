package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/alecrypt/alecrypt/cmd/alebench/internal/loadgen"
)

// mode is how an operation reaches the server.
type mode int

const (
	unary       mode = iota // one call per payload
	batch                   // one call per batch of payloads
	stream                  // one message per payload on long-lived bidi streams
	streamBatch             // one message per batch of payloads on long-lived bidi streams
)

// op is a kind of operation alebench measures.
type op struct {
	name    string
	mode    mode
	decrypt bool
}

var allOps = []op{
	{"encrypt", unary, false},
	{"decrypt", unary, true},
	{"batch", batch, false},
	{"batch-decrypt", batch, true},
	{"stream", stream, false},
	{"stream-decrypt", stream, true},
	{"stream-batch", streamBatch, false},
}

func opNames() []string {
	names := make([]string, len(allOps))
	for i, o := range allOps {
		names[i] = o.name
	}
	return names
}

func opNamed(name string) op {
	for _, o := range allOps {
		if o.name == name {
			return o
		}
	}
	panic("unknown op " + name) // names are validated when flags are parsed
}

// Client protocols of alecrypt; Transit is always JSON over HTTP/1.1.
const (
	protoConnect      = "connect"
	protoGRPC         = "grpc"
	protoConnectHTTP1 = "connect-http1"
	protoTransit      = "http1-json"
)

// spec is one measurement.
type spec struct {
	op          op
	size        int
	concurrency int
	// batchItems is the number of payloads per batch call (batch ops only).
	batchItems int
	// window is the number of messages in flight per stream (stream ops).
	window int
	// rate, when positive, makes the measurement an open loop at this many
	// calls per second, with concurrency workers as the pool; halfPeak says
	// the rate is half the series' best closed-loop throughput.
	rate     float64
	halfPeak bool
}

// series is one column of the report: a target spoken to in one protocol.
type series interface {
	target() string
	protocol() string
	supports(op) bool
	// pid is the server process to measure (0: none).
	pid() int
	// prepare readies a measurement outside the clock (clients, connections,
	// ciphertexts to decrypt) and returns the workers' factory and a
	// function releasing what it opened.
	prepare(ctx context.Context, s spec, sched *loadgen.Schedule) (newWorker func(i int) (loadgen.Worker, error), release func(), err error)
}

// loop wraps a worker's operation into a closed loop, or an open one when
// the measurement has a schedule.
func loop(sched *loadgen.Schedule, o loadgen.Op) loadgen.Worker {
	if sched != nil {
		return loadgen.Open(sched, o)
	}
	return loadgen.Closed(o)
}

// batchItems is how many payloads of size bytes go in one batch call: the
// configured count, fewer when they would exceed the byte cap (alecryptd
// refuses requests over 4 MiB by default).
func batchItems(cfg Config, size int) int {
	if size == 0 {
		return cfg.BatchSize
	}
	return max(1, min(cfg.BatchSize, cfg.BatchBytes/size))
}

// runSweep runs every measurement the configuration asks for and prints the
// report.
func runSweep(ctx context.Context, cfg Config, stdout, stderr io.Writer) error {
	var all []series
	for _, t := range cfg.Targets {
		switch t {
		case targetAlecrypt:
			for _, p := range cfg.Protocols {
				s, err := newAlecryptSeries(ctx, cfg, p)
				if err != nil {
					return err
				}
				all = append(all, s)
			}
		case targetTransit:
			s, err := newTransitSeries(ctx, cfg)
			if err != nil {
				return err
			}
			all = append(all, s)
		}
	}
	rep := newReport(cfg, describeMachine())
	for _, name := range cfg.Ops {
		o := opNamed(name)
		for _, size := range cfg.Sizes {
			peak := map[series]float64{}
			for _, conc := range cfg.Concurrency {
				sp := spec{op: o, size: size, concurrency: conc, batchItems: batchItems(cfg, size), window: cfg.StreamWindow}
				for _, s := range all {
					if !s.supports(o) {
						continue
					}
					row, err := measure(ctx, cfg, s, sp, stderr)
					if err != nil {
						return err
					}
					rep.add(row)
					peak[s] = max(peak[s], row.Result.OpsPerSecond())
				}
			}
			if o.mode != unary {
				continue
			}
			// Latency under an open loop, with the largest pool of the sweep:
			// at half of each series' own peak, then at the fixed rates.
			for _, s := range all {
				var open []spec
				if cfg.HalfPeak && peak[s] > 0 {
					open = append(open, spec{op: o, size: size, concurrency: maxOf(cfg.Concurrency), rate: peak[s] / 2, halfPeak: true})
				}
				for _, rate := range cfg.Rates {
					open = append(open, spec{op: o, size: size, concurrency: maxOf(cfg.Concurrency), rate: float64(rate)})
				}
				for _, sp := range open {
					row, err := measure(ctx, cfg, s, sp, stderr)
					if err != nil {
						return err
					}
					rep.add(row)
				}
			}
		}
	}
	rep.finish(describeLoad())
	if cfg.JSONOut != "" {
		var b bytes.Buffer
		if err := rep.writeJSON(&b); err != nil {
			return err
		}
		if err := os.WriteFile(cfg.JSONOut, b.Bytes(), 0o644); err != nil {
			return err
		}
	}
	if cfg.JSON {
		return rep.writeJSON(stdout)
	}
	rep.writeTable(stdout)
	return nil
}

// measure runs one measurement of one series and reports progress.
func measure(ctx context.Context, cfg Config, s series, sp spec, stderr io.Writer) (Row, error) {
	var sched *loadgen.Schedule
	if sp.rate > 0 {
		var err error
		if sched, err = loadgen.NewSchedule(sp.rate); err != nil {
			return Row{}, err
		}
	}
	newWorker, release, err := s.prepare(ctx, sp, sched)
	if err != nil {
		return Row{}, fmt.Errorf("%s %s: %w", s.target(), sp.op.name, err)
	}
	defer release()
	lc := loadgen.Config{Workers: sp.concurrency, Warmup: cfg.Warmup, Duration: cfg.Duration,
		Client: loadgen.ProcProbe(os.Getpid()), System: loadgen.ReadSystem}
	// A series whose server is several processes (alegate and alecryptd)
	// is charged their summed CPU.
	pids := pidList(s.pid())
	if m, ok := s.(multiPID); ok {
		pids = m.pids()
	}
	if len(pids) > 0 {
		lc.Server = sumProbe(pids)
	}
	before := readCPUs(pids)
	res, err := loadgen.Run(ctx, lc, newWorker)
	if err != nil {
		return Row{}, fmt.Errorf("%s/%s %s %s c=%d: %w", s.target(), s.protocol(), sp.op.name, sizeName(sp.size), sp.concurrency, err)
	}
	row := newRow(s, sp, res)
	fmt.Fprintln(stderr, row.progress()+cpuShares(pids, before, readCPUs(pids)))
	return row, nil
}

func maxOf(xs []int) int {
	m := xs[0]
	for _, x := range xs[1:] {
		m = max(m, x)
	}
	return m
}

func sizeName(n int) string {
	switch {
	case n >= 1<<20 && n%(1<<20) == 0:
		return fmt.Sprintf("%dMiB", n>>20)
	case n >= 1<<10 && n%(1<<10) == 0:
		return fmt.Sprintf("%dKiB", n>>10)
	default:
		return fmt.Sprintf("%dB", n)
	}
}

// payload is size bytes of printable, incompressible-looking text: JSON-safe
// for the alecrypt checks and representative of order events.
func payload(size int) []byte {
	p := make([]byte, size)
	x := uint32(2463534242)
	for i := range p {
		x ^= x << 13
		x ^= x >> 17
		x ^= x << 5
		p[i] = 'a' + byte(x%26)
	}
	return p
}

// setupTimeout bounds set-up calls (round-trip checks, sealing messages to
// decrypt).
const setupTimeout = 30 * time.Second

// decryptPool is how many distinct messages a decrypt measurement cycles
// through.
const decryptPool = 16

// sealPool seals decryptPool distinct payloads of size bytes with seal: the
// messages a decrypt measurement cycles through.
func sealPool[T any](ctx context.Context, size int, seal func(context.Context, []byte) (T, error)) ([]T, error) {
	ctx, cancel := context.WithTimeout(ctx, setupTimeout)
	defer cancel()
	out := make([]T, decryptPool)
	for i := range out {
		pt := payload(size)
		if len(pt) > 0 {
			pt[0] = byte('a' + i)
		}
		v, err := seal(ctx, pt)
		if err != nil {
			return nil, fmt.Errorf("sealing messages to decrypt: %w", err)
		}
		out[i] = v
	}
	return out, nil
}
