package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
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
	"github.com/alecrypt/alecrypt/internal/engine"
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
	Keystore           string // seals the warm frames
	Holds              []int
	WarmFrames         int
	WarmSize           int
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
	// resealed: the target answers a sealed frame with one sealed under a
	// fresh IV (alegate); otherwise it passes the kitchen's echo through
	// byte for byte (the plain proxy).
	resealed bool
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
	fs.StringVar(&c.Keystore, "keystore", "", "the keystore alegate's alecryptd serves: warm frames are sealed with it locally (required with --warm-frames)")
	fs.StringVar(&holds, "hold", "1000,10000", "connections to hold open at once, one run each (comma-separated); empty holds none")
	fs.IntVar(&c.DialConcurrency, "dial-concurrency", 64, "handshakes in flight while opening the held connections")
	fs.IntVar(&c.WarmFrames, "warm-frames", 0, "sealed frames sent through each held connection, and their echoes read, once all are open and before the settle: traffic grows buffers and stacks an idle-only run never touches")
	fs.IntVar(&c.WarmSize, "warm-size", 1024, "plaintext bytes of a warm frame (a JSON order)")
	fs.DurationVar(&c.Settle, "settle", 3*time.Second, "wait after the last connection opened before reading RSS")
	fs.DurationVar(&c.Idle, "idle", 5*time.Second, "window in which the CPU of the idle, held connections is read")
	fs.IntVar(&c.StormRate, "storm-rate", 1000, "new WebSockets a second in the storm (each closed once open); 0 skips the storm")
	fs.DurationVar(&c.StormDuration, "storm-duration", 10*time.Second, "how long the storm lasts")
	fs.DurationVar(&c.HandshakeTimeout, "handshake-timeout", 10*time.Second, "a handshake, or a warm frame's round trip, slower than this counts as an error")
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
	case c.WarmFrames < 0:
		return c, usagef("conns: --warm-frames must not be negative")
	case c.WarmFrames > 0 && c.Keystore == "":
		return c, usagef("conns: --warm-frames needs --keystore (the frames are sealed locally)")
	case c.WarmSize < len(`{"order":""}`):
		return c, usagef("conns: --warm-size must be at least 12 (a JSON order)")
	}
	cpu := []int{c.GatePID}
	if c.CryptoPID > 0 {
		cpu = append(cpu, c.CryptoPID)
	}
	c.targets = []connsTarget{{name: "alegate", url: c.GateURL, resealed: true, rssPID: c.GatePID, cpuPIDs: cpu}}
	if c.ProxyURL != "" {
		c.targets = append(c.targets, connsTarget{name: "proxy", url: c.ProxyURL, rssPID: c.ProxyPID, cpuPIDs: []int{c.ProxyPID}})
	}
	return c, nil
}

// HoldResult is one target holding N connections.
type HoldResult struct {
	Target   string `json:"target"`
	Want     int    `json:"connections"`
	Held     int    `json:"held"`
	Errors   int    `json:"errors"`
	FirstErr string `json:"first_error,omitempty"`
	// Warm frames: WarmFrames sent through each held connection, of which
	// WarmEchoed came back as sent (alegate: sealed again, opening to the
	// same plaintext); WarmErrors connections failed one, and sent no more.
	WarmFrames   int     `json:"warm_frames_per_connection"`
	WarmSize     int     `json:"warm_frame_bytes,omitempty"`
	WarmEchoed   int     `json:"warm_frames_echoed"`
	WarmErrors   int     `json:"warm_errors"`
	WarmFirstErr string  `json:"warm_first_error,omitempty"`
	WarmSeconds  float64 `json:"warm_seconds"`
	BaseRSS      int64   `json:"rss_before_bytes"`
	HeldRSS      int64   `json:"rss_held_bytes"`
	PerConn      float64 `json:"rss_per_connection_bytes"`
	IdleCPUMs    float64 `json:"idle_cpu_ms_per_s"`
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
	var seal *sealer
	if c.WarmFrames > 0 && len(c.Holds) > 0 {
		var err error
		if seal, err = newSealer(c.Keystore, c.Fingerprint); err != nil {
			return err
		}
	}
	for _, n := range c.Holds {
		for _, t := range c.targets {
			fmt.Fprintf(stderr, "== %s: holding %d WebSockets\n", t.name, n)
			r, err := hold(ctx, c, t, n, seal)
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
	if len(holds) > 0 {
		warmed := "no frame passed (idle from the handshake on)"
		if c.WarmFrames > 0 {
			warmed = fmt.Sprintf("once all were open each carried %d sealed frame(s) of %d plaintext bytes, echoed by the kitchen", c.WarmFrames, c.WarmSize)
		}
		fmt.Fprintf(stdout, "held WebSockets (RSS growth of the process the clients connect to ÷ connections, read %s after the last opened and warmed; CPU while they idle over %s); %s\n\n", c.Settle, c.Idle, warmed)
		fmt.Fprintln(stdout, "| target | connections | held | errors | frames echoed | frame errors | RSS before | RSS held | per connection | idle CPU |")
		fmt.Fprintln(stdout, "|---|---|---|---|---|---|---|---|---|---|")
		for _, r := range holds {
			echoed, warmErrs := "—", "—"
			if r.WarmFrames > 0 {
				echoed, warmErrs = fmt.Sprintf("%d of %d (%.1fs)", r.WarmEchoed, r.WarmFrames*r.Held, r.WarmSeconds), fmt.Sprint(r.WarmErrors)
			}
			fmt.Fprintf(stdout, "| %s | %d | %d | %d | %s | %s | %.0f MiB | %.0f MiB | %.1f KiB | %.1f ms/s |\n", r.Target, r.Want, r.Held, r.Errors,
				echoed, warmErrs,
				float64(r.BaseRSS)/(1<<20), float64(r.HeldRSS)/(1<<20), r.PerConn/1024, r.IdleCPUMs)
		}
		for _, r := range holds {
			if r.FirstErr != "" {
				fmt.Fprintf(stdout, "\n%s at %d: first error: %s\n", r.Target, r.Want, r.FirstErr)
			}
			if r.WarmFirstErr != "" {
				fmt.Fprintf(stdout, "\n%s at %d: first frame error: %s\n", r.Target, r.Want, r.WarmFirstErr)
			}
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

func hold(ctx context.Context, c connsConfig, t connsTarget, n int, seal *sealer) (HoldResult, error) {
	r := HoldResult{Target: t.name, Want: n, WarmFrames: c.WarmFrames}
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
	if c.WarmFrames > 0 {
		r.WarmSize = c.WarmSize
		w := warmer{seal: seal, order: jsonPayload(c.WarmSize), frames: c.WarmFrames, timeout: c.HandshakeTimeout, resealed: t.resealed}
		t0 := time.Now()
		r.WarmEchoed, r.WarmErrors, r.WarmFirstErr = w.run(ctx, slices.DeleteFunc(slices.Clone(conns), func(c *websocket.Conn) bool { return c == nil }), c.DialConcurrency)
		r.WarmSeconds = time.Since(t0).Seconds()
		if err := ctx.Err(); err != nil {
			return r, err
		}
	}
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

// warmer sends sealed frames through held connections and checks each
// echo, so a held connection has carried traffic before it is measured:
// stacks and buffers that grow on the first message (the read and write
// paths, the bridge's frame buffers) count in the per-connection figure,
// as they would for a kitchen display that has shown one order.
type warmer struct {
	seal    *sealer
	order   []byte // the plaintext of every frame
	frames  int    // per connection, one at a time
	timeout time.Duration
	// resealed: the echo is sealed again under a fresh IV (alegate) and
	// must open to order; otherwise it must be the sent bytes (a proxy).
	resealed bool
}

// run warms conns with at most workers connections in flight at once. It
// returns the frames echoed, the connections on which a frame failed (each
// sends no more) and the first failure.
func (w warmer) run(ctx context.Context, conns []*websocket.Conn, workers int) (echoed, errs int, firstErr string) {
	var next atomic.Int64
	var mu sync.Mutex
	var wg sync.WaitGroup
	for range min(workers, len(conns)) {
		wg.Go(func() {
			for {
				i := int(next.Add(1) - 1)
				if i >= len(conns) || ctx.Err() != nil {
					return
				}
				n, err := w.conn(ctx, conns[i])
				mu.Lock()
				echoed += n
				if err != nil {
					errs++
					if firstErr == "" {
						firstErr = err.Error()
					}
				}
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	return echoed, errs, firstErr
}

// conn sends w.frames frames through c, one round trip at a time, and
// returns how many came back as they should before the first that did not.
func (w warmer) conn(ctx context.Context, c *websocket.Conn) (int, error) {
	for i := range w.frames {
		if err := w.roundTrip(ctx, c); err != nil {
			return i, fmt.Errorf("frame %d: %w", i+1, err)
		}
	}
	return w.frames, nil
}

func (w warmer) roundTrip(ctx context.Context, c *websocket.Conn) error {
	env, err := w.seal.seal(w.order)
	if err != nil {
		return err
	}
	sent := wire.MarshalFrame(wire.Frame{IV: env.IV, Fingerprint: env.Fingerprint, Message: env.Message})
	ctx, cancel := context.WithTimeout(ctx, w.timeout)
	defer cancel()
	if err := c.Write(ctx, websocket.MessageText, sent); err != nil {
		return err
	}
	_, got, err := c.Read(ctx)
	if err != nil {
		return err
	}
	if !w.resealed {
		if !bytes.Equal(got, sent) {
			return fmt.Errorf("echo differs from the frame sent: %.200s", got)
		}
		return nil
	}
	f, err := wire.ParseFrame(got)
	if err != nil {
		return fmt.Errorf("echo is not a sealed frame (%v): %.200s", err, got)
	}
	if bytes.Equal(f.IV, env.IV) {
		// The kitchen's echo passed through as it was: nothing sealed it again.
		return errors.New("echo carries the sent frame's IV: not sealed again")
	}
	pt, _, err := w.seal.eng.Decrypt(ctx, engine.Envelope{IV: f.IV, Fingerprint: f.Fingerprint, Message: f.Message}, nil, engine.FormatAny)
	if err != nil {
		return fmt.Errorf("echo does not open: %w", err)
	}
	if !bytes.Equal(pt, w.order) {
		return fmt.Errorf("echo opens to other plaintext: %.200s", pt)
	}
	return nil
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
