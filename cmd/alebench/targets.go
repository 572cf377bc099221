package main

import (
	"fmt"
	"slices"
	"strings"
	"time"
)

// Target is one of alecrypt's performance targets, checked against the rows
// of this run only (ratios are never taken across runs).
type Target struct {
	Name string `json:"name"`
	Want string `json:"wanted"`
	Got  string `json:"measured"`
	Met  bool   `json:"met"`
}

func (t Target) verdict() string {
	if t.Met {
		return "met"
	}
	return "**missed**"
}

const (
	cpuRatioTarget      = 10.0
	throughputTarget    = 3.0
	p99Target           = 2 * time.Millisecond
	streamMsgsTarget    = 100_000.0
	bulkMBPerSecTarget  = 500.0
	targetUnarySize     = 1 << 10
	targetStreamSize    = 1 << 10
	targetBulkSize      = 64 << 10
	targetUnaryEncrypt  = "encrypt"
	targetStreamEncrypt = "stream"
)

// targets evaluates whichever targets this run has the rows for.
func (r *report) targets() []Target {
	var out []Target
	for _, proto := range r.cfg.Protocols {
		var cpu, thr []string
		cpuMet, thrMet := true, true
		for _, row := range r.rows {
			if row.Target != targetAlecrypt || row.Protocol != proto || row.Op != targetUnaryEncrypt ||
				row.Size != targetUnarySize || row.openLoop() {
				continue
			}
			tr, ok := r.counterpart(row)
			if !ok {
				continue
			}
			x := row.ItemsPerSec / tr.ItemsPerSec
			thr = append(thr, fmt.Sprintf("c=%d %.2f×", row.Concurrency, x))
			thrMet = thrMet && x >= throughputTarget
			if row.hasServer && tr.hasServer && row.Result.ServerCPUPerItem() > 0 {
				c := float64(tr.Result.ServerCPUPerItem()) / float64(row.Result.ServerCPUPerItem())
				cpu = append(cpu, fmt.Sprintf("c=%d %.2f×", row.Concurrency, c))
				cpuMet = cpuMet && c >= cpuRatioTarget
			}
		}
		if len(cpu) > 0 {
			out = append(out, Target{Name: "Encrypt 1 KiB server CPU/op vs Transit (" + proto + ")",
				Want: fmt.Sprintf("≥ %g× less at every concurrency", cpuRatioTarget), Got: strings.Join(cpu, ", "), Met: cpuMet})
		}
		if len(thr) > 0 {
			out = append(out, Target{Name: "Encrypt 1 KiB throughput vs Transit (" + proto + ")",
				Want: fmt.Sprintf("≥ %g× at every concurrency", throughputTarget), Got: strings.Join(thr, ", "), Met: thrMet})
		}
		for _, row := range r.rows {
			if row.Target == targetAlecrypt && row.Protocol == proto && row.Op == targetUnaryEncrypt &&
				row.Size == targetUnarySize && row.HalfPeak {
				p99 := row.Result.Latency.P99
				out = append(out, Target{Name: "Encrypt 1 KiB p99 at half of peak (" + proto + ")",
					Want: "< " + dur(p99Target), Got: fmt.Sprintf("%s at %s/s", dur(p99), count(row.ItemsPerSec)), Met: p99 < p99Target})
			}
		}
	}
	if best, ok := r.best(func(row Row) bool { return row.Op == targetStreamEncrypt && row.Size == targetStreamSize },
		func(row Row) float64 { return row.ItemsPerSec }); ok {
		out = append(out, Target{Name: "bidi stream 1 KiB", Want: fmt.Sprintf("≥ %s msgs/s", count(streamMsgsTarget)),
			Got: fmt.Sprintf("%s msgs/s (%s, %d streams)", count(best.ItemsPerSec), best.Protocol, best.Concurrency), Met: best.ItemsPerSec >= streamMsgsTarget})
	}
	bulk := []string{"stream", "stream-decrypt", "batch", "batch-decrypt"}
	if best, ok := r.best(func(row Row) bool { return slices.Contains(bulk, row.Op) && row.Size == targetBulkSize },
		func(row Row) float64 { return row.MBPerSec }); ok {
		out = append(out, Target{Name: "stream or batch 64 KiB", Want: fmt.Sprintf("≥ %g MB/s", bulkMBPerSecTarget),
			Got: fmt.Sprintf("%.0f MB/s (%s, %s, concurrency %d)", best.MBPerSec, best.Op, best.Protocol, best.Concurrency), Met: best.MBPerSec >= bulkMBPerSecTarget})
	}
	return out
}

// best is alecrypt's closed-loop row with the highest value among those that
// match.
func (r *report) best(match func(Row) bool, value func(Row) float64) (Row, bool) {
	var best Row
	found := false
	for _, row := range r.rows {
		if row.Target != targetAlecrypt || row.openLoop() || !match(row) {
			continue
		}
		if !found || value(row) > value(best) {
			best, found = row, true
		}
	}
	return best, found
}
