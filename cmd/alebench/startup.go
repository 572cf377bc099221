package main

import (
	"bufio"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"os/exec"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"connectrpc.com/connect"

	"github.com/alecrypt/alecrypt/cmd/alebench/internal/loadgen"
	alev1 "github.com/alecrypt/alecrypt/gen/ale/v1"
	"github.com/alecrypt/alecrypt/gen/ale/v1/alev1connect"
	"github.com/alecrypt/alecrypt/internal/keystore/filestore"
)

type startupConfig struct {
	Alecryptd string
	Keystore  string
	Timeout   time.Duration
	Samples   int
	JSON      bool
}

func parseStartup(args []string, stdout io.Writer) (startupConfig, error) {
	fs := flag.NewFlagSet("alebench startup", flag.ContinueOnError)
	fs.SetOutput(stdout)
	var c startupConfig
	fs.StringVar(&c.Alecryptd, "alecryptd", "", "alecryptd binary to start (required)")
	fs.StringVar(&c.Keystore, "keystore", "", "embedded keystore to start it on, e.g. from alebench genkeys (required)")
	fs.DurationVar(&c.Timeout, "timeout", 10*time.Minute, "how long to wait for every key to be derived")
	fs.IntVar(&c.Samples, "samples", 2000, "Encrypt calls on random keys once every key is derived")
	fs.BoolVar(&c.JSON, "json", false, "print JSON instead of the table")
	if err := parseFlags(fs, args); err != nil {
		return c, err
	}
	switch {
	case fs.NArg() > 0:
		return c, usagef("startup: unexpected arguments: %q", fs.Args())
	case c.Alecryptd == "" || c.Keystore == "":
		return c, usagef("startup: --alecryptd and --keystore are required")
	case c.Timeout <= 0 || c.Samples < 1:
		return c, usagef("startup: --timeout and --samples must be positive")
	}
	return c, nil
}

// StartupResult is what one start of alecryptd on a large keystore showed.
// Times are seconds from the process's start.
type StartupResult struct {
	Keys          int     `json:"keys"`
	KeystoreBytes int64   `json:"keystore_bytes"`
	Listening     float64 `json:"listening_seconds"`
	Serving       float64 `json:"first_encrypt_ok_seconds"`
	// ColdFirst is the first Encrypt with a random key's fingerprint: that
	// key is usually not derived yet, so the call pays its PBKDF2.
	ColdFirstMS    float64 `json:"first_cold_key_encrypt_ms"`
	Derived        float64 `json:"all_keys_derived_seconds"`
	DeriveCPU      float64 `json:"cpu_seconds_until_derived"`
	RSSServing     int64   `json:"rss_serving_bytes"`
	RSSDerived     int64   `json:"rss_after_derivation_bytes"`
	PeakRSS        int64   `json:"peak_rss_bytes"`
	DuringDerive   Latency `json:"encrypt_random_key_while_deriving_us"`
	AfterDerive    Latency `json:"encrypt_random_key_after_us"`
	AfterDeriveRPS float64 `json:"encrypt_random_key_after_sequential_per_second"`
}

// Latency is a latency summary in microseconds.
type Latency struct {
	N   int     `json:"n"`
	P50 float64 `json:"p50"`
	P99 float64 `json:"p99"`
	Max float64 `json:"max"`
}

func latencyOf(samples []int64) Latency {
	slices.Sort(samples)
	s := loadgen.Summarize(samples)
	us := func(d time.Duration) float64 { return float64(d) / float64(time.Microsecond) }
	return Latency{N: s.Count, P50: us(s.P50), P99: us(s.P99), Max: us(s.Max)}
}

// measureStartup starts alecryptd on the keystore and watches it: when it
// listens, when it first encrypts, how requests for random keys fare while
// keys are derived in the background and after, and its RSS throughout.
func measureStartup(ctx context.Context, cfg startupConfig, stdout, stderr io.Writer) error {
	snap, err := filestore.New(cfg.Keystore).Load(ctx)
	if err != nil {
		return err
	}
	fi, err := os.Stat(cfg.Keystore)
	if err != nil {
		return err
	}
	fps := make([]string, len(snap.Records))
	for i, r := range snap.Records {
		fps[i] = r.Fingerprint
	}
	res := StartupResult{Keys: len(fps), KeystoreBytes: fi.Size()}

	// Debug logs are needed for the "keys derived" line; the few calls made
	// here add a line each, which costs nothing measurable.
	cmd := exec.Command(cfg.Alecryptd, "--listen", "127.0.0.1:0", "--metrics-listen", "", "--keystore", cfg.Keystore,
		"--log-level", "debug", "--log-format", "json")
	logs, logw := io.Pipe()
	cmd.Stderr = logw
	ev := watchLog(logs)
	start := time.Now()
	if err := cmd.Start(); err != nil {
		logw.Close()
		return err
	}
	exited := make(chan struct{})
	go func() {
		_ = cmd.Wait()
		logw.Close()
		close(exited)
	}()
	defer stopProcess(cmd, exited)
	since := func() float64 { return time.Since(start).Seconds() }
	probe := loadgen.ProcProbe(cmd.Process.Pid)

	var addr string
	select {
	case addr = <-ev.listening:
		res.Listening = since()
	case <-exited:
		return fmt.Errorf("alecryptd exited during startup:\n%s", ev.tail())
	case <-time.After(2 * time.Minute):
		return fmt.Errorf("alecryptd did not listen within 2 minutes:\n%s", ev.tail())
	case <-ctx.Done():
		return ctx.Err()
	}
	var h1 http.Protocols
	h1.SetHTTP1(true)
	client := alev1connect.NewCryptoServiceClient(&http.Client{Transport: &http.Transport{Protocols: &h1}}, "http://"+addr)
	encrypt := func(ref *alev1.KeyRef) (time.Duration, error) {
		t := time.Now()
		_, err := client.Encrypt(ctx, connect.NewRequest(&alev1.EncryptRequest{Plaintext: []byte(`{"order":1}`), Key: ref}))
		return time.Since(t), err
	}
	randomKey := func() *alev1.KeyRef {
		return &alev1.KeyRef{Ref: &alev1.KeyRef_Fingerprint{Fingerprint: fps[rand.IntN(len(fps))]}}
	}
	for {
		if _, err := encrypt(nil); err == nil {
			res.Serving = since()
			break
		} else if time.Since(start) > 2*time.Minute {
			return fmt.Errorf("no successful Encrypt within 2 minutes: %w", err)
		}
		time.Sleep(time.Millisecond)
	}
	if st, err := probe(); err == nil {
		res.RSSServing = st.RSS
	}
	d, err := encrypt(randomKey())
	if err != nil {
		return fmt.Errorf("encrypt with a random key: %w", err)
	}
	res.ColdFirstMS = float64(d) / float64(time.Millisecond)

	// While keys are derived, sample random keys a few times a second: the
	// latency a caller sees for a key that is not derived yet.
	fmt.Fprintf(stderr, "alecryptd serving %d keys after %.2fs; waiting for every key to be derived\n", len(fps), res.Serving)
	var during []int64
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	deadline := time.After(cfg.Timeout)
wait:
	for {
		select {
		case <-ev.derived:
			res.Derived = since()
			break wait
		case <-tick.C:
			d, err := encrypt(randomKey())
			if err != nil {
				return fmt.Errorf("encrypt with a random key while deriving: %w", err)
			}
			during = append(during, int64(d))
		case <-exited:
			return fmt.Errorf("alecryptd exited:\n%s", ev.tail())
		case <-deadline:
			return fmt.Errorf("keys not all derived within %v", cfg.Timeout)
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	st, err := probe()
	if err != nil {
		return err
	}
	res.DeriveCPU = st.CPU.Seconds()
	res.DuringDerive = latencyOf(during)

	after := make([]int64, 0, cfg.Samples)
	t0 := time.Now()
	for range cfg.Samples {
		d, err := encrypt(randomKey())
		if err != nil {
			return fmt.Errorf("encrypt with a random key: %w", err)
		}
		after = append(after, int64(d))
	}
	res.AfterDeriveRPS = float64(cfg.Samples) / time.Since(t0).Seconds()
	res.AfterDerive = latencyOf(after)
	if st, err = probe(); err != nil {
		return err
	}
	res.RSSDerived, res.PeakRSS = st.RSS, st.PeakRSS

	if cfg.JSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(res)
	}
	writeStartup(stdout, res)
	return nil
}

func writeStartup(w io.Writer, r StartupResult) {
	mib := func(b int64) string { return fmt.Sprintf("%.1f MiB", float64(b)/(1<<20)) }
	lat := func(l Latency) string {
		if l.N == 0 {
			return "none: derivation finished before the first sample"
		}
		return fmt.Sprintf("p50 %s, p99 %s, max %s (%d calls)", dur(time.Duration(l.P50*1e3)), dur(time.Duration(l.P99*1e3)), dur(time.Duration(l.Max*1e3)), l.N)
	}
	lines := [][]string{
		{"keys", fmt.Sprintf("%s (keystore %.1f MB)", count(float64(r.Keys)), float64(r.KeystoreBytes)/1e6)},
		{"start → listening", fmt.Sprintf("%.2f s", r.Listening)},
		{"start → first Encrypt OK (default alias)", fmt.Sprintf("%.2f s", r.Serving)},
		{"first Encrypt with a random key (pays its PBKDF2)", fmt.Sprintf("%.1f ms", r.ColdFirstMS)},
		{"Encrypt with random keys while deriving", lat(r.DuringDerive)},
		{"start → every key derived", fmt.Sprintf("%.1f s (alecryptd CPU so far %.1f s)", r.Derived, r.DeriveCPU)},
		{"Encrypt with random keys after (sequential)", lat(r.AfterDerive) + fmt.Sprintf(", %s/s", count(r.AfterDeriveRPS))},
		{"RSS when first serving", mib(r.RSSServing)},
		{"RSS after every key is derived", mib(r.RSSDerived)},
		{"peak RSS (VmHWM)", mib(r.PeakRSS)},
	}
	writeTwoColumns(w, lines)
}

func writeTwoColumns(w io.Writer, lines [][]string) {
	width := 0
	for _, l := range lines {
		width = max(width, len([]rune(l[0])))
	}
	fmt.Fprintf(w, "| %-*s | %s |\n| %s | --- |\n", width, "alecryptd startup", "", strings.Repeat("-", width))
	for _, l := range lines {
		fmt.Fprintf(w, "| %s%s | %s |\n", l[0], strings.Repeat(" ", width-len([]rune(l[0]))), l[1])
	}
}

// logEvents are the alecryptd log lines startup waits for.
type logEvents struct {
	listening chan string // the address
	derived   chan struct{}
	mu        sync.Mutex
	last      []string
}

func (e *logEvents) tail() string {
	e.mu.Lock()
	defer e.mu.Unlock()
	return strings.Join(e.last, "\n")
}

// watchLog reads alecryptd's JSON log lines until r is closed.
func watchLog(r io.Reader) *logEvents {
	e := &logEvents{listening: make(chan string, 1), derived: make(chan struct{}, 1)}
	go func() {
		sc := bufio.NewScanner(r)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			line := sc.Text()
			e.mu.Lock()
			e.last = append(e.last, line)
			if len(e.last) > 20 {
				e.last = e.last[1:]
			}
			e.mu.Unlock()
			var l struct {
				Msg  string `json:"msg"`
				Addr string `json:"addr"`
			}
			if json.Unmarshal([]byte(line), &l) != nil {
				continue
			}
			// Never block: alecryptd would block on its next log line.
			switch l.Msg {
			case "alecryptd listening":
				select {
				case e.listening <- l.Addr:
				default:
				}
			case "keys derived":
				select {
				case e.derived <- struct{}{}:
				default:
				}
			}
		}
	}()
	return e
}

// stopProcess asks the process to stop and kills it if it has not within
// 15 s.
func stopProcess(cmd *exec.Cmd, exited <-chan struct{}) {
	_ = cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-exited:
	case <-time.After(15 * time.Second):
		_ = cmd.Process.Kill()
		<-exited
	}
}
