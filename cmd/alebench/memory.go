package main

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"connectrpc.com/connect"
	"google.golang.org/protobuf/proto"

	"github.com/alecrypt/alecrypt/cmd/alebench/internal/loadgen"
	alev1 "github.com/alecrypt/alecrypt/gen/ale/v1"
)

// memoryConfig is `alebench memory`: many large Encrypts at once against a
// running alecryptd, while its RSS is sampled from /proc and its health is
// checked on a connection of its own.
type memoryConfig struct {
	URL         string
	PID         int
	Protocol    string
	Concurrency int
	Size        int
	Duration    time.Duration
	Conns       int
	Token       string
	Backoff     time.Duration
	JSON        bool
}

func parseMemory(args []string, getenv func(string) string, stderr io.Writer) (memoryConfig, error) {
	fs := flag.NewFlagSet("alebench memory", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var c memoryConfig
	fs.StringVar(&c.URL, "alecrypt-url", envOr(getenv, "ALECRYPT_ADDR", "http://127.0.0.1:8080"), "alecryptd base URL, http:// (h2c)")
	fs.IntVar(&c.PID, "alecrypt-pid", 0, "alecryptd's process id, for its RSS (required)")
	fs.StringVar(&c.Protocol, "protocol", protoGRPC, "grpc (no Content-Length: sized from the message header) or connect (Content-Length)")
	fs.IntVar(&c.Concurrency, "concurrency", 500, "calls in flight at all times")
	fs.IntVar(&c.Size, "size", 4<<20-64, "plaintext bytes per Encrypt (the default request is just under 4 MiB)")
	fs.DurationVar(&c.Duration, "duration", 20*time.Second, "how long to keep the calls coming")
	fs.IntVar(&c.Conns, "conns", 8, "HTTP/2 connections the calls share")
	fs.StringVar(&c.Token, "token", "", "bearer token to send; empty sends none (the unauthenticated case)")
	fs.DurationVar(&c.Backoff, "backoff", 100*time.Millisecond, "after ResourceExhausted or Unavailable, a worker waits this long (jittered) before its next call, as a well-behaved client does; 0 retries at once")
	fs.BoolVar(&c.JSON, "json", false, "print JSON instead of the summary")
	if err := parseFlags(fs, args); err != nil {
		return c, err
	}
	switch {
	case fs.NArg() > 0:
		return c, usagef("memory: unexpected arguments: %q", fs.Args())
	case c.PID <= 0:
		return c, usagef("memory: --alecrypt-pid is required")
	case c.Protocol != protoGRPC && c.Protocol != protoConnect:
		return c, usagef("memory: --protocol must be grpc or connect")
	case c.Concurrency < 1 || c.Size < 0 || c.Duration <= 0 || c.Conns < 1 || c.Backoff < 0:
		return c, usagef("memory: --concurrency, --duration and --conns must be positive")
	}
	return c, nil
}

// MemoryResult is one run of `alebench memory`.
type MemoryResult struct {
	Protocol    string           `json:"protocol"`
	Concurrency int              `json:"concurrency"`
	Backoff     string           `json:"backoff"`
	RequestSize int              `json:"request_bytes"`
	Seconds     float64          `json:"seconds"`
	Outcomes    map[string]int64 `json:"outcomes"`
	BaseRSS     int64            `json:"rss_before_bytes"`
	MaxRSS      int64            `json:"rss_max_sampled_bytes"`
	PeakRSS     int64            `json:"vmhwm_after_bytes"`
	HealthOK    int              `json:"health_serving"`
	HealthBad   int              `json:"health_failed"`
}

func measureMemory(ctx context.Context, c memoryConfig, stdout io.Writer) error {
	probe := loadgen.ProcProbe(c.PID)
	before, err := probe()
	if err != nil {
		return fmt.Errorf("reading alecryptd's /proc: %w", err)
	}
	// One request body for every call: the load generator shares the
	// machine, and 500 copies of 4 MiB would be its memory, not the server's.
	msg, err := proto.Marshal(&alev1.EncryptRequest{Plaintext: make([]byte, c.Size)})
	if err != nil {
		return err
	}
	body, ctype := msg, "application/proto"
	if c.Protocol == protoGRPC {
		body = make([]byte, 5+len(msg))
		binary.BigEndian.PutUint32(body[1:5], uint32(len(msg)))
		copy(body[5:], msg)
		ctype = "application/grpc"
	}
	var transports []*http.Transport
	for range c.Conns {
		var p http.Protocols
		p.SetUnencryptedHTTP2(true)
		tr := &http.Transport{Protocols: &p}
		transports = append(transports, tr)
		defer tr.CloseIdleConnections()
	}
	runCtx, cancel := context.WithTimeout(ctx, c.Duration)
	defer cancel()
	var (
		mu       sync.Mutex
		outcomes = map[string]int64{}
		maxRSS   atomic.Int64
		wg       sync.WaitGroup
	)
	count := func(k string) { mu.Lock(); outcomes[k]++; mu.Unlock() }
	url := strings.TrimSuffix(c.URL, "/") + "/ale.v1.CryptoService/Encrypt"
	for i := range c.Concurrency {
		client := &http.Client{Transport: transports[i%c.Conns]}
		wg.Go(func() {
			for runCtx.Err() == nil {
				out := memoryCall(runCtx, client, url, ctype, c.Token, body, c.Protocol)
				count(out)
				if c.Backoff > 0 && (out == connect.CodeResourceExhausted.String() || out == connect.CodeUnavailable.String()) {
					select {
					case <-runCtx.Done():
					case <-time.After(c.Backoff/2 + rand.N(c.Backoff)):
					}
				}
			}
		})
	}
	var health struct{ ok, bad int }
	wg.Go(func() {
		var p http.Protocols
		p.SetHTTP1(true)
		hc := &http.Client{Transport: &http.Transport{Protocols: &p}, Timeout: 2 * time.Second}
		tick := time.NewTicker(100 * time.Millisecond)
		defer tick.Stop()
		for {
			if st, err := probe(); err == nil && st.RSS > maxRSS.Load() {
				maxRSS.Store(st.RSS)
			}
			if serving(hc, c.URL) {
				health.ok++
			} else {
				health.bad++
			}
			select {
			case <-runCtx.Done():
				return
			case <-tick.C:
			}
		}
	})
	start := time.Now()
	wg.Wait()
	after, err := probe()
	if err != nil {
		return err
	}
	if ctx.Err() != nil {
		return ctx.Err()
	}
	res := MemoryResult{Protocol: c.Protocol, Concurrency: c.Concurrency, Backoff: c.Backoff.String(), RequestSize: len(body), Seconds: time.Since(start).Seconds(),
		Outcomes: outcomes, BaseRSS: before.RSS, MaxRSS: max(maxRSS.Load(), after.RSS), PeakRSS: after.PeakRSS, HealthOK: health.ok, HealthBad: health.bad}
	if c.JSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(res)
	}
	const mib = 1 << 20
	fmt.Fprintf(stdout, "%s, %d concurrent Encrypts of %.1f MiB, %s, backoff %s, %.0f s\n", res.Protocol, res.Concurrency, float64(res.RequestSize)/mib,
		map[bool]string{true: "with a token", false: "unauthenticated"}[c.Token != ""], res.Backoff, res.Seconds)
	keys := make([]string, 0, len(outcomes))
	for k := range outcomes {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		fmt.Fprintf(stdout, "  %-22s %8d (%.1f/s)\n", k, outcomes[k], float64(outcomes[k])/res.Seconds)
	}
	fmt.Fprintf(stdout, "  RSS before %6.1f MiB   max sampled %6.1f MiB   VmHWM %6.1f MiB\n", float64(res.BaseRSS)/mib, float64(res.MaxRSS)/mib, float64(res.PeakRSS)/mib)
	fmt.Fprintf(stdout, "  health checks during the run: %d SERVING, %d failed or not serving\n", res.HealthOK, res.HealthBad)
	return nil
}

// memoryCall makes one Encrypt and names its outcome: ok or the code.
func memoryCall(ctx context.Context, client *http.Client, url, ctype, token string, body []byte, protocol string) string {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, nil)
	if err != nil {
		return "client error"
	}
	req.Body = io.NopCloser(bytesReader(body))
	req.ContentLength = -1 // gRPC: as grpc-go and connect-go's gRPC client send it
	if protocol == protoConnect {
		req.ContentLength = int64(len(body))
	}
	req.Header.Set("Content-Type", ctype)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	res, err := client.Do(req)
	if err != nil {
		if ctx.Err() != nil {
			return "cut by the run's end"
		}
		return "transport error"
	}
	defer res.Body.Close()
	if protocol == protoGRPC {
		_, _ = io.Copy(io.Discard, res.Body)
		st := res.Trailer.Get("Grpc-Status")
		if st == "" {
			st = res.Header.Get("Grpc-Status")
		}
		var n uint32
		if _, err := fmt.Sscan(st, &n); err != nil {
			return "no grpc-status (reset)"
		}
		if n == 0 {
			return "ok"
		}
		return connect.Code(n).String()
	}
	if res.StatusCode == http.StatusOK {
		_, _ = io.Copy(io.Discard, res.Body)
		return "ok"
	}
	var wire struct{ Code string }
	if json.NewDecoder(io.LimitReader(res.Body, 4096)).Decode(&wire) == nil && wire.Code != "" {
		return wire.Code
	}
	return "http " + res.Status
}

func bytesReader(b []byte) io.Reader { return &sliceReader{b: b} }

// sliceReader reads a shared slice without copying it first.
type sliceReader struct{ b []byte }

func (r *sliceReader) Read(p []byte) (int, error) {
	if len(r.b) == 0 {
		return 0, io.EOF
	}
	n := copy(p, r.b)
	r.b = r.b[n:]
	return n, nil
}

func serving(hc *http.Client, base string) bool {
	res, err := hc.Post(strings.TrimSuffix(base, "/")+"/grpc.health.v1.Health/Check", "application/json", strings.NewReader("{}"))
	if err != nil {
		return false
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	return res.StatusCode == http.StatusOK && strings.Contains(string(b), "SERVING_STATUS_SERVING")
}
