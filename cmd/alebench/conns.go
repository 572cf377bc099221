package main

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/coder/websocket"

	"github.com/alecrypt/alecrypt/cmd/alebench/internal/loadgen"
	"github.com/alecrypt/alecrypt/service/wire"
)

// connsConfig is `alebench conns`: many WebSockets held open at once through
// alegate and through the plain proxy (RSS growth per held connection, CPU
// while they idle), and a storm of new ones (handshakes per second).
type connsConfig struct {
	GateURL, ProxyURL  string
	GatePID, CryptoPID int
	ProxyPID           int
	Fingerprint        string
	Holds              []int
	DialConcurrency    int
	Settle, Idle       time.Duration
	StormRate          int
	StormDuration      time.Duration
	HandshakeTimeout   time.Duration
	JSON               bool
	targets            []connsTarget
}

type connsTarget struct {
	name string
	url  string
	// rssPID is the process whose RSS a held connection grows (the one the
	// client connects to); cpuPIDs are the processes a handshake costs CPU in.
	rssPID  int
	cpuPIDs []int
}

func parseConns(args []string, stdout io.Writer) (connsConfig, error) {
	fs := flag.NewFlagSet("alebench conns", flag.ContinueOnError)
	fs.SetOutput(stdout)
	var c connsConfig
	var holds string
	fs.StringVar(&c.GateURL, "gate-url", "", "alegate's base URL (http://)")
	fs.IntVar(&c.GatePID, "gate-pid", 0, "alegate's process id (its RSS and CPU)")
	fs.IntVar(&c.CryptoPID, "crypto-pid", 0, "alecryptd's process id (its CPU per handshake); 0 leaves it out")
	fs.StringVar(&c.ProxyURL, "proxy-url", "", "the plain proxy's base URL (the floor); empty skips it")
	fs.IntVar(&c.ProxyPID, "proxy-pid", 0, "the plain proxy's process id")
	fs.StringVar(&c.Fingerprint, "fingerprint", "", "the key's fingerprint for the ALE handshake (required)")
	fs.StringVar(&holds, "hold", "1000,10000", "connections to hold open at once, one run each (comma-separated); empty holds none")
	fs.IntVar(&c.DialConcurrency, "dial-concurrency", 64, "handshakes in flight while opening the held connections")
	fs.DurationVar(&c.Settle, "settle", 3*time.Second, "wait after the last connection opened before reading RSS")
	fs.DurationVar(&c.Idle, "idle", 5*time.Second, "window in which the CPU of the idle, held connections is read")
	fs.IntVar(&c.StormRate, "storm-rate", 1000, "new WebSockets a second in the storm (each closed once open); 0 skips the storm")
	fs.DurationVar(&c.StormDuration, "storm-duration", 10*time.Second, "how long the storm lasts")
	fs.DurationVar(&c.HandshakeTimeout, "handshake-timeout", 10*time.Second, "a handshake slower than this counts as an error")
	fs.BoolVar(&c.JSON, "json", false, "print JSON instead of the table")
	if err := parseFlags(fs, args); err != nil {
		return c, err
	}
	if holds != "" {
		ns, err := parseInts("--hold", holds, 1)
		if err != nil {
			return c, err
		}
		c.Holds = ns
	}
	switch {
	case fs.NArg() > 0:
		return c, usagef("conns: unexpected arguments: %q", fs.Args())
	case c.GateURL == "" || c.GatePID <= 0 || c.Fingerprint == "":
		return c, usagef("conns: --gate-url, --gate-pid and --fingerprint are required")
	case c.ProxyURL != "" && c.ProxyPID <= 0:
		return c, usagef("conns: --proxy-url needs --proxy-pid")
	case c.DialConcurrency < 1 || c.Settle < 0 || c.Idle <= 0 || c.StormRate < 0 || c.StormDuration <= 0 || c.HandshakeTimeout <= 0:
		return c, usagef("conns: --dial-concurrency, --idle, --storm-duration and --handshake-timeout must be positive")
	}
	cpu := []int{c.GatePID}
	if c.CryptoPID > 0 {
		cpu = append(cpu, c.CryptoPID)
	}
	c.targets = []connsTarget{{name: "alegate", url: c.GateURL, rssPID: c.GatePID, cpuPIDs: cpu}}
	if c.ProxyURL != "" {
		c.targets = append(c.targets, connsTarget{name: "proxy", url: c.ProxyURL, rssPID: c.ProxyPID, cpuPIDs: []int{c.ProxyPID}})
	}
	return c, nil
}

// HoldResult is one target holding N connections.
type HoldResult struct {
	Target    string  `json:"target"`
	Want      int     `json:"connections"`
	Held      int     `json:"held"`
	Errors    int     `json:"errors"`
	FirstErr  string  `json:"first_error,omitempty"`
	BaseRSS   int64   `json:"rss_before_bytes"`
	HeldRSS   int64   `json:"rss_held_bytes"`
	PerConn   float64 `json:"rss_per_connection_bytes"`
	IdleCPUMs float64 `json:"idle_cpu_ms_per_s"`
}

// StormResult is one target's handshake storm.
type StormResult struct {
	Target        string  `json:"target"`
	Rate          int     `json:"rate_per_s"`
	Seconds       float64 `json:"seconds"`
	Started       int     `json:"started"`
	Done          int     `json:"done"`
	Errors        int     `json:"errors"`
	FirstErr      string  `json:"first_error,omitempty"`
	PerSecond     float64 `json:"handshakes_per_s"`
	P50, P99, Max string
	CPUPerHS      string  `json:"cpu_per_handshake"`
	CPUPerHSus    float64 `json:"cpu_per_handshake_us"`
	MaxInFlight   int64   `json:"max_in_flight"`
	PeakRSSGrowth int64   `json:"rss_growth_bytes"`
}

func runConns(ctx context.Context, c connsConfig, stdout, stderr io.Writer) error {
	var holds []HoldResult
	var storms []StormResult
	for _, n := range c.Holds {
		for _, t := range c.targets {
			fmt.Fprintf(stderr, "== %s: holding %d WebSockets\n", t.name, n)
			r, err := hold(ctx, c, t, n)
			if err != nil {
				return err
			}
			holds = append(holds, r)
		}
	}
	if c.StormRate > 0 {
		for _, t := range c.targets {
			fmt.Fprintf(stderr, "== %s: storm of %d new WebSockets a second for %s\n", t.name, c.StormRate, c.StormDuration)
			r, err := storm(ctx, c, t)
			if err != nil {
				return err
			}
			storms = append(storms, r)
		}
	}
	if c.JSON {
		b, err := json.MarshalIndent(map[string]any{"machine": describeMachine(), "held": holds, "storm": storms}, "", "  ")
		if err != nil {
			return err
		}
		_, err = fmt.Fprintln(stdout, string(b))
		return err
	}
	fmt.Fprintf(stdout, "held WebSockets (RSS growth of the process the clients connect to ÷ connections, read %s after the last opened; CPU while they idle over %s)\n\n", c.Settle, c.Idle)
	fmt.Fprintln(stdout, "| target | connections | held | errors | RSS before | RSS held | per connection | idle CPU |")
	fmt.Fprintln(stdout, "|---|---|---|---|---|---|---|---|")
	for _, r := range holds {
		fmt.Fprintf(stdout, "| %s | %d | %d | %d | %.0f MiB | %.0f MiB | %.1f KiB | %.1f ms/s |\n", r.Target, r.Want, r.Held, r.Errors,
			float64(r.BaseRSS)/(1<<20), float64(r.HeldRSS)/(1<<20), r.PerConn/1024, r.IdleCPUMs)
	}
	for _, r := range holds {
		if r.FirstErr != "" {
			fmt.Fprintf(stdout, "\n%s at %d: first error: %s\n", r.Target, r.Want, r.FirstErr)
		}
	}
	if len(storms) > 0 {
		fmt.Fprintf(stdout, "\nhandshake storm (each connection closed once open; CPU of the server processes per handshake)\n\n")
		fmt.Fprintln(stdout, "| target | rate | done | errors | handshakes/s | p50 | p99 | max | most in flight | CPU per handshake |")
		fmt.Fprintln(stdout, "|---|---|---|---|---|---|---|---|---|---|")
		for _, r := range storms {
			fmt.Fprintf(stdout, "| %s | %d/s | %d | %d | %.0f | %s | %s | %s | %d | %s |\n", r.Target, r.Rate, r.Done, r.Errors,
				r.PerSecond, r.P50, r.P99, r.Max, r.MaxInFlight, r.CPUPerHS)
		}
		for _, r := range storms {
			if r.FirstErr != "" {
				fmt.Fprintf(stdout, "\n%s storm: first error: %s\n", r.Target, r.FirstErr)
			}
		}
	}
	return nil
}

// dialer opens WebSockets to one target, each on a connection of its own
// (a held WebSocket owns its TCP connection).
type dialer struct {
	url     string
	fp      string
	timeout time.Duration
	client  *http.Client
}

// loopbackSources spreads the load generator's connections to a loopback
// target over several source addresses: tens of thousands of connections
// opened and closed in a minute (each leaving a TIME_WAIT) would otherwise
// run one source address out of ephemeral ports, and the kernel's search
// for a free one shows up as the server's CPU.
const loopbackSources = 16

func newDialer(c connsConfig, t connsTarget) *dialer {
	var next atomic.Uint32
	dialContext := func(ctx context.Context, network, addr string) (net.Conn, error) {
		d := net.Dialer{Timeout: c.HandshakeTimeout}
		if host, _, err := net.SplitHostPort(addr); err == nil && host == "127.0.0.1" {
			d.LocalAddr = &net.TCPAddr{IP: net.IPv4(127, 0, 1, byte(1+next.Add(1)%loopbackSources))}
		}
		return d.DialContext(ctx, network, addr)
	}
	tr := &http.Transport{
		DialContext:       dialContext,
		DisableKeepAlives: true,
	}
	u := strings.Replace(strings.Replace(t.url, "https://", "wss://", 1), "http://", "ws://", 1) + "/kds"
	return &dialer{url: u, fp: c.Fingerprint, timeout: c.HandshakeTimeout, client: &http.Client{Transport: tr}}
}

func (d *dialer) dial(ctx context.Context) (*websocket.Conn, error) {
	h := http.Header{"Authorization": {"Bearer kds-1"}}
	// The plain proxy ignores the ALE headers; sending them to both keeps
	// the requests the same size.
	iv := make([]byte, 16)
	_, _ = rand.Read(iv)
	wire.SetHeaders(h, iv, d.fp)
	dctx, cancel := context.WithTimeout(ctx, d.timeout)
	defer cancel()
	c, res, err := websocket.Dial(dctx, d.url, &websocket.DialOptions{HTTPHeader: h, HTTPClient: d.client})
	if err != nil {
		if res != nil && res.Body != nil {
			res.Body.Close()
		}
		return nil, err
	}
	return c, nil
}

func hold(ctx context.Context, c connsConfig, t connsTarget, n int) (HoldResult, error) {
	r := HoldResult{Target: t.name, Want: n}
	probe := loadgen.ProcProbe(t.rssPID)
	cpuProbe := sumProbe([]int{t.rssPID})
	before, err := probe()
	if err != nil {
		return r, err
	}
	r.BaseRSS = before.RSS
	d := newDialer(c, t)
	conns := make([]*websocket.Conn, n)
	var next atomic.Int64
	var mu sync.Mutex
	var wg sync.WaitGroup
	for range min(c.DialConcurrency, n) {
		wg.Go(func() {
			for {
				i := int(next.Add(1) - 1)
				if i >= n || ctx.Err() != nil {
					return
				}
				conn, err := d.dial(ctx)
				mu.Lock()
				if err != nil {
					r.Errors++
					if r.FirstErr == "" {
						r.FirstErr = err.Error()
					}
				} else {
					conns[i] = conn
					r.Held++
				}
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	defer func() {
		for _, conn := range conns {
			if conn != nil {
				conn.CloseNow()
			}
		}
		// Give the servers time to tear the connections down before the
		// next run reads its baseline.
		time.Sleep(c.Settle)
	}()
	select {
	case <-time.After(c.Settle):
	case <-ctx.Done():
		return r, ctx.Err()
	}
	cpu0, err := cpuProbe()
	if err != nil {
		return r, err
	}
	t0 := time.Now()
	select {
	case <-time.After(c.Idle):
	case <-ctx.Done():
		return r, ctx.Err()
	}
	cpu1, err := cpuProbe()
	if err != nil {
		return r, err
	}
	r.IdleCPUMs = float64((cpu1.CPU - cpu0.CPU).Milliseconds()) / time.Since(t0).Seconds()
	after, err := probe()
	if err != nil {
		return r, err
	}
	r.HeldRSS = after.RSS
	if r.Held > 0 {
		r.PerConn = float64(after.RSS-before.RSS) / float64(r.Held)
	}
	runtime.KeepAlive(conns)
	return r, nil
}

func storm(ctx context.Context, c connsConfig, t connsTarget) (StormResult, error) {
	r := StormResult{Target: t.name, Rate: c.StormRate}
	d := newDialer(c, t)
	cpuProbe := sumProbe(t.cpuPIDs)
	rssProbe := loadgen.ProcProbe(t.rssPID)
	before, err := rssProbe()
	if err != nil {
		return r, err
	}
	cpu0, err := cpuProbe()
	if err != nil {
		return r, err
	}
	var (
		mu       sync.Mutex
		lat      []time.Duration
		inFlight atomic.Int64
		maxIn    atomic.Int64
		wg       sync.WaitGroup
		peakRSS  = before.RSS
	)
	interval := time.Second / time.Duration(c.StormRate)
	total := int(c.StormDuration / interval)
	start := time.Now()
	for i := range total {
		// Paced from the start, not from the previous dial: a slow
		// handshake does not slow the storm down.
		if wait := time.Until(start.Add(time.Duration(i) * interval)); wait > 0 {
			select {
			case <-time.After(wait):
			case <-ctx.Done():
				return r, ctx.Err()
			}
		}
		r.Started++
		wg.Go(func() {
			now := inFlight.Add(1)
			for {
				m := maxIn.Load()
				if now <= m || maxIn.CompareAndSwap(m, now) {
					break
				}
			}
			t0 := time.Now()
			conn, err := d.dial(ctx)
			took := time.Since(t0)
			inFlight.Add(-1)
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				r.Errors++
				if r.FirstErr == "" {
					r.FirstErr = err.Error()
				}
				return
			}
			lat = append(lat, took)
			conn.CloseNow()
		})
		if i%c.StormRate == 0 {
			if st, err := rssProbe(); err == nil && st.RSS > peakRSS {
				peakRSS = st.RSS
			}
		}
	}
	wg.Wait()
	elapsed := time.Since(start)
	cpu1, err := cpuProbe()
	if err != nil {
		return r, err
	}
	r.Seconds = elapsed.Seconds()
	r.Done = len(lat)
	r.PerSecond = float64(r.Done) / elapsed.Seconds()
	r.PeakRSSGrowth = peakRSS - before.RSS
	r.MaxInFlight = maxIn.Load()
	if r.Done > 0 {
		slices.Sort(lat)
		q := func(p float64) string { return fmtDur(lat[min(len(lat)-1, int(p*float64(len(lat))))]) }
		r.P50, r.P99, r.Max = q(0.50), q(0.99), fmtDur(lat[len(lat)-1])
		per := (cpu1.CPU - cpu0.CPU) / time.Duration(r.Done)
		r.CPUPerHS = fmtDur(per)
		r.CPUPerHSus = float64(per) / float64(time.Microsecond)
	}
	return r, nil
}

func fmtDur(d time.Duration) string {
	switch {
	case d >= time.Second:
		return fmt.Sprintf("%.2fs", d.Seconds())
	case d >= time.Millisecond:
		return fmt.Sprintf("%.1fms", float64(d)/float64(time.Millisecond))
	default:
		return fmt.Sprintf("%.0fµs", float64(d)/float64(time.Microsecond))
	}
}
