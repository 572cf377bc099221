package loadgen

import (
	"math"
	"time"
)

// Summary describes a latency distribution.
type Summary struct {
	Count              int
	Mean               time.Duration
	P50, P95, P99, Max time.Duration
}

// Summarize describes sorted latencies (nanoseconds, ascending).
func Summarize(sorted []int64) Summary {
	if len(sorted) == 0 {
		return Summary{}
	}
	var sum float64
	for _, v := range sorted {
		sum += float64(v)
	}
	return Summary{
		Count: len(sorted),
		Mean:  time.Duration(sum / float64(len(sorted))),
		P50:   time.Duration(Percentile(sorted, 50)),
		P95:   time.Duration(Percentile(sorted, 95)),
		P99:   time.Duration(Percentile(sorted, 99)),
		Max:   time.Duration(sorted[len(sorted)-1]),
	}
}

// Percentile is the nearest-rank percentile p (0 < p <= 100) of sorted
// values: the smallest value that at least p% of the values do not exceed.
// It is always one of the values, never an interpolation, so "p99 = 1.9 ms"
// means some call really took 1.9 ms and 99% took no longer. Zero for no
// values.
func Percentile(sorted []int64, p float64) int64 {
	n := len(sorted)
	if n == 0 {
		return 0
	}
	// The small epsilon keeps a product that should be whole (p = 95 of 20
	// values: rank 19) from rounding up to the next rank.
	rank := int(math.Ceil(p*float64(n)/100 - 1e-9))
	rank = min(max(rank, 1), n)
	return sorted[rank-1]
}
