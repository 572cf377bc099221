package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"os"
	"runtime"
	"strings"
	"time"

	"github.com/alecrypt/alecrypt/cmd/alebench/internal/loadgen"
)

// Row is one measurement, as reported. Durations are in microseconds and
// throughput counts items (payloads): a batch call of 100 items is 100.
type Row struct {
	Target       string  `json:"target"`
	Protocol     string  `json:"protocol"`
	Op           string  `json:"op"`
	Size         int     `json:"size_bytes"`
	Concurrency  int     `json:"concurrency"`
	BatchItems   int     `json:"batch_items,omitempty"`
	StreamWindow int     `json:"stream_window,omitempty"`
	Rate         float64 `json:"open_loop_rate,omitempty"` // calls/s; 0 means closed loop
	HalfPeak     bool    `json:"half_peak,omitempty"`      // Rate is half the series' peak
	Window       float64 `json:"window_seconds"`
	Operations   int64   `json:"operations"`
	Items        int64   `json:"items"`
	ItemsPerSec  float64 `json:"items_per_second"`
	MBPerSec     float64 `json:"mb_per_second"` // 10^6 bytes of payload
	LatencyUS    struct {
		P50  float64 `json:"p50"`
		P95  float64 `json:"p95"`
		P99  float64 `json:"p99"`
		Max  float64 `json:"max"`
		Mean float64 `json:"mean"`
	} `json:"latency_us"`
	ServerCPUPerItemUS float64 `json:"server_cpu_us_per_item,omitempty"`
	ClientCPUPerItemUS float64 `json:"client_cpu_us_per_item"`
	ServerRSS          int64   `json:"server_rss_bytes,omitempty"`
	ServerPeakRSS      int64   `json:"server_peak_rss_bytes,omitempty"`
	// Interference is the CPU, in cores, that neither server nor client
	// used during the window: other processes and the hypervisor's steal.
	Interference float64 `json:"interference_cores"`

	// Result is the measurement itself; hasServer says its server fields
	// are real.
	Result    loadgen.Result `json:"-"`
	hasServer bool
}

func newRow(s series, sp spec, res loadgen.Result) Row {
	r := Row{
		Target:       s.target(),
		Protocol:     s.protocol(),
		Op:           sp.op.name,
		Size:         sp.size,
		Concurrency:  sp.concurrency,
		Rate:         sp.rate,
		HalfPeak:     sp.halfPeak,
		Window:       res.Window.Seconds(),
		Operations:   res.Operations,
		Items:        res.Items,
		ItemsPerSec:  res.ItemsPerSecond(),
		MBPerSec:     res.ItemsPerSecond() * float64(sp.size) / 1e6,
		Interference: res.InterferenceCores(),
		Result:       res,
		hasServer:    s.pid() > 0,
	}
	switch sp.op.mode {
	case batch:
		r.BatchItems = sp.batchItems
	case stream:
		r.StreamWindow = sp.window
	case streamBatch:
		r.BatchItems, r.StreamWindow = sp.batchItems, sp.window
	}
	us := func(d time.Duration) float64 { return float64(d) / float64(time.Microsecond) }
	r.LatencyUS.P50, r.LatencyUS.P95, r.LatencyUS.P99 = us(res.Latency.P50), us(res.Latency.P95), us(res.Latency.P99)
	r.LatencyUS.Max, r.LatencyUS.Mean = us(res.Latency.Max), us(res.Latency.Mean)
	r.ClientCPUPerItemUS = us(res.ClientCPUPerItem())
	if r.hasServer {
		r.ServerCPUPerItemUS = us(res.ServerCPUPerItem())
		r.ServerRSS, r.ServerPeakRSS = res.ServerMem.RSS, res.ServerMem.PeakRSS
	}
	return r
}

func (r Row) openLoop() bool { return r.Rate > 0 }

// concLabel is the concurrency column: workers, or the open-loop rate.
func (r Row) concLabel() string {
	switch {
	case r.HalfPeak:
		return fmt.Sprintf("½peak (%s/s, pool %d)", count(r.Rate), r.Concurrency)
	case r.openLoop():
		return fmt.Sprintf("%s/s (pool %d)", count(r.Rate), r.Concurrency)
	}
	return fmt.Sprint(r.Concurrency)
}

func (r Row) opLabel() string {
	switch {
	case r.BatchItems > 0:
		return fmt.Sprintf("%s (%d/call)", r.Op, r.BatchItems)
	case r.StreamWindow > 0:
		return fmt.Sprintf("%s (window %d)", r.Op, r.StreamWindow)
	}
	return r.Op
}

// progress is the one-line summary printed while the sweep runs.
func (r Row) progress() string {
	cpu := ""
	if r.hasServer {
		cpu = fmt.Sprintf(", server %s/item", dur(r.Result.ServerCPUPerItem()))
	}
	return fmt.Sprintf("%-8s %-13s %-14s %6s c=%-24s %10s items/s  p99 %s%s; others %.2f cores",
		r.Target, r.Protocol, r.Op, sizeName(r.Size), r.concLabel(), count(r.ItemsPerSec), dur(r.Result.Latency.P99), cpu, r.Interference)
}

// Machine describes where the run happened.
type Machine struct {
	CPU   string `json:"cpu"`
	Cores int    `json:"cores"`
	// LoadGenCPUs is how many of them the load generator may use (fewer
	// when it is pinned with taskset), and GOMAXPROCS its Go setting.
	LoadGenCPUs int     `json:"loadgen_cpus"`
	GOMAXPROCS  int     `json:"gomaxprocs"`
	Kernel      string  `json:"kernel"`
	Go          string  `json:"go"`
	Start       string  `json:"start"`
	LoadStart   string  `json:"loadavg_start"`
	LoadEnd     string  `json:"loadavg_end,omitempty"`
	Seconds     float64 `json:"elapsed_seconds,omitempty"`
}

func describeMachine() Machine {
	cpu, cores := cpuInfo()
	m := Machine{
		CPU:         cpu,
		Cores:       cores,
		LoadGenCPUs: runtime.NumCPU(),
		GOMAXPROCS:  runtime.GOMAXPROCS(0),
		Kernel:      firstLine("/proc/sys/kernel/osrelease"),
		Go:          runtime.Version(),
		Start:       time.Now().UTC().Format(time.RFC3339),
		LoadStart:   describeLoad(),
	}
	return m
}

// describeLoad is the 1, 5 and 15 minute load averages: on a shared machine,
// the context every number needs.
func describeLoad() string {
	f := strings.Fields(firstLine("/proc/loadavg"))
	if len(f) < 3 {
		return ""
	}
	return strings.Join(f[:3], " ")
}

// cpuInfo is the CPU model and the number of CPUs in /proc/cpuinfo: the
// machine's, unlike runtime.NumCPU, which counts only the CPUs this process
// may run on.
func cpuInfo() (model string, cpus int) {
	data, err := os.ReadFile("/proc/cpuinfo")
	if err != nil {
		return runtime.GOARCH, runtime.NumCPU()
	}
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		name, value, ok := strings.Cut(sc.Text(), ":")
		switch name = strings.TrimSpace(name); {
		case !ok:
		case name == "processor":
			cpus++
		case name == "model name" && model == "":
			model = strings.TrimSpace(value)
		}
	}
	if model == "" {
		model = runtime.GOARCH
	}
	return model, max(cpus, 1)
}

func firstLine(path string) string {
	data, _ := os.ReadFile(path)
	line, _, _ := strings.Cut(string(data), "\n")
	return strings.TrimSpace(line)
}

// report collects the rows of a sweep.
type report struct {
	cfg     Config
	machine Machine
	start   time.Time
	rows    []Row
}

func newReport(cfg Config, m Machine) *report {
	return &report{cfg: cfg, machine: m, start: time.Now()}
}

func (r *report) add(row Row) { r.rows = append(r.rows, row) }

func (r *report) finish(loadEnd string) {
	r.machine.LoadEnd = loadEnd
	r.machine.Seconds = time.Since(r.start).Round(time.Second).Seconds()
}

func (r *report) writeJSON(w io.Writer) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(struct {
		Machine Machine  `json:"machine"`
		Config  any      `json:"config"`
		Rows    []Row    `json:"results"`
		Targets []Target `json:"targets"`
	}{r.machine, r.configSummary(), r.rows, r.targets()})
}

func (r *report) configSummary() map[string]any {
	return map[string]any{
		"duration_seconds": r.cfg.Duration.Seconds(),
		"warmup_seconds":   r.cfg.Warmup.Seconds(),
		"conns":            r.cfg.Conns,
		"alecrypt_url":     r.cfg.AlecryptURL,
		"vault_addr":       r.cfg.VaultAddr,
	}
}

// writeTable prints a Markdown table per operation, alecrypt and Transit side
// by side when both ran, then the targets.
func (r *report) writeTable(w io.Writer) {
	m := r.machine
	fmt.Fprintf(w, "alebench %s: %s, %d cores (the load generator may use %d, GOMAXPROCS %d), Linux %s, %s; load average %s at start, %s at end; %gs\n",
		m.Start, m.CPU, m.Cores, m.LoadGenCPUs, m.GOMAXPROCS, m.Kernel, m.Go, m.LoadStart, m.LoadEnd, m.Seconds)
	fmt.Fprintf(w, "each row: %s warm-up, then a %s window; items/s and MB/s (10^6 B) count payloads; cpu/item is the server process's CPU (utime+stime) per payload; RSS at the window's end; others' CPU is what other processes and the hypervisor took during the window, in cores (the larger of the row's two measurements)\n",
		r.cfg.Warmup, r.cfg.Duration)
	both := len(r.cfg.Targets) == 2
	for _, name := range r.cfg.Ops {
		var primary []Row // one table line each
		for _, row := range r.rows {
			if row.Op == name && (row.Target == r.cfg.Targets[0]) {
				primary = append(primary, row)
			}
		}
		if len(primary) == 0 {
			continue
		}
		fmt.Fprintf(w, "\n### %s\n\n", primary[0].opLabel())
		header := []string{"size", "concurrency", "protocol"}
		for _, t := range r.cfg.Targets {
			header = append(header, t+" items/s", "MB/s", "p50", "p95", "p99", "cpu/item", "RSS MiB")
		}
		if both {
			header = append(header, "throughput ×", "CPU ÷")
		}
		header = append(header, "others' CPU")
		var lines [][]string
		for _, row := range primary {
			line := []string{sizeName(row.Size), row.concLabel(), row.Protocol}
			line = append(line, metricCells(row)...)
			interference := row.Interference
			if both {
				other, ok := r.counterpart(row)
				if ok {
					line = append(line, metricCells(other)...)
					line = append(line, ratio(row.ItemsPerSec, other.ItemsPerSec), cpuRatio(row, other))
					interference = max(interference, other.Interference)
				} else {
					line = append(line, "n/a", "", "", "", "", "", "", "", "")
				}
			}
			lines = append(lines, append(line, fmt.Sprintf("%.2f", interference)))
		}
		writeMarkdown(w, header, lines)
	}
	if ts := r.targets(); len(ts) > 0 {
		fmt.Fprintf(w, "\n### targets\n\n")
		var lines [][]string
		for _, t := range ts {
			lines = append(lines, []string{t.Name, t.Want, t.Got, t.verdict()})
		}
		writeMarkdown(w, []string{"target", "wanted", "measured", ""}, lines)
	}
}

// counterpart finds the Transit row measured under the same conditions as an
// alecrypt row: same operation and size, and the same concurrency, the same
// fixed rate, or (at half of each one's peak) Transit's own half-peak row.
func (r *report) counterpart(row Row) (Row, bool) {
	for _, o := range r.rows {
		if o.Target == row.Target || o.Op != row.Op || o.Size != row.Size || o.HalfPeak != row.HalfPeak {
			continue
		}
		switch {
		case row.HalfPeak:
		case row.openLoop():
			if o.Rate != row.Rate {
				continue
			}
		case o.openLoop() || o.Concurrency != row.Concurrency:
			continue
		}
		return o, true
	}
	return Row{}, false
}

func metricCells(r Row) []string {
	cells := []string{count(r.ItemsPerSec), fmt.Sprintf("%.1f", r.MBPerSec),
		dur(r.Result.Latency.P50), dur(r.Result.Latency.P95), dur(r.Result.Latency.P99), "", ""}
	if r.hasServer {
		cells[5] = dur(r.Result.ServerCPUPerItem())
		cells[6] = fmt.Sprintf("%.1f", float64(r.ServerRSS)/(1<<20))
	}
	return cells
}

func ratio(a, b float64) string {
	if b == 0 || a == 0 {
		return ""
	}
	return fmt.Sprintf("%.2f×", a/b)
}

// cpuRatio is how many times less server CPU per item the first row used.
func cpuRatio(a, b Row) string {
	if !a.hasServer || !b.hasServer {
		return ""
	}
	return ratio(float64(b.Result.ServerCPUPerItem()), float64(a.Result.ServerCPUPerItem()))
}

func writeMarkdown(w io.Writer, header []string, lines [][]string) {
	widths := make([]int, len(header))
	for i, h := range header {
		widths[i] = len([]rune(h))
	}
	for _, l := range lines {
		for i, c := range l {
			widths[i] = max(widths[i], len([]rune(c)))
		}
	}
	writeLine := func(cells []string) {
		var b strings.Builder
		b.WriteString("|")
		for i, c := range cells {
			pad := strings.Repeat(" ", widths[i]-len([]rune(c)))
			if i < 3 {
				b.WriteString(" " + c + pad + " |") // labels left
			} else {
				b.WriteString(" " + pad + c + " |") // numbers right
			}
		}
		fmt.Fprintln(w, b.String())
	}
	writeLine(header)
	sep := make([]string, len(header))
	for i := range sep {
		if i < 3 {
			sep[i] = strings.Repeat("-", widths[i])
		} else {
			sep[i] = strings.Repeat("-", widths[i]-1) + ":"
		}
	}
	writeLine(sep)
	for _, l := range lines {
		writeLine(l)
	}
}

// count formats a rate with thousands separators.
func count(x float64) string {
	n := int64(math.Round(x))
	s := fmt.Sprint(n)
	var out []byte
	for i := range len(s) {
		if i > 0 && (len(s)-i)%3 == 0 {
			out = append(out, ',')
		}
		out = append(out, s[i])
	}
	return string(out)
}

// dur formats a duration with three significant digits in µs or ms.
func dur(d time.Duration) string {
	us := float64(d) / float64(time.Microsecond)
	switch {
	case d <= 0:
		return "0"
	case us < 10:
		return fmt.Sprintf("%.2fµs", us)
	case us < 1000:
		return fmt.Sprintf("%.1fµs", us)
	case us < 10_000:
		return fmt.Sprintf("%.2fms", us/1000)
	default:
		return fmt.Sprintf("%.1fms", us/1000)
	}
}
