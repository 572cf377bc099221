// Command alebench measures alecryptd, and Vault Transit beside it, under
// load: unary Encrypt and Decrypt, batches and the bidirectional stream, over
// a sweep of payload sizes and concurrency. It reports throughput, latency
// percentiles, and the server process's CPU per operation and memory, read
// from /proc so that the load generator's own CPU (it shares the machine) is
// never counted.
//
//	alebench [flags]                          run the sweep (see -h)
//	alebench genkeys --n 10000 --out FILE     write an embedded keystore of N fresh keys
//	alebench startup --alecryptd BIN --keystore FILE
//	                                          time alecryptd's start on a keystore and read its RSS
//	alebench floors [flags]                   our paths next to their floors (plain proxy, bare handler), ratios
//	alebench serve kitchen|proxy|bare         the floors' processes (run.sh --floors starts them)
//	alebench memory --alecrypt-pid PID [--token T]
//	                                          500 concurrent 4 MiB Encrypts: alecryptd's RSS and health
//
// test/bench/run.sh starts both servers and runs the sweep with one command;
// BENCHMARKS.md explains the method and the results.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/alecrypt/alecrypt/internal/cli"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Getenv, os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// run is main without the process: it returns the exit code (0 ok, 1 the
// measurement failed, 2 usage).
func run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) int {
	var err error
	switch {
	case len(args) > 0 && args[0] == "genkeys":
		var cfg genkeysConfig
		if cfg, err = parseGenkeys(args[1:], stdout); err == nil {
			err = genkeys(cfg, stdout)
		}
	case len(args) > 0 && args[0] == "memory":
		var cfg memoryConfig
		if cfg, err = parseMemory(args[1:], getenv, stdout); err == nil {
			err = measureMemory(ctx, cfg, stdout)
		}
	case len(args) > 0 && args[0] == "floors":
		var cfg floorsConfig
		if cfg, err = parseFloors(args[1:], getenv, stdout); err == nil {
			err = runFloors(ctx, cfg, stdout, stderr)
		}
	case len(args) > 0 && args[0] == "serve":
		var cfg serveConfig
		if cfg, err = parseServe(args[1:], stdout); err == nil {
			err = serve(ctx, cfg, stderr)
		}
	case len(args) > 0 && args[0] == "conns":
		var cfg connsConfig
		if cfg, err = parseConns(args[1:], stdout); err == nil {
			err = runConns(ctx, cfg, stdout, stderr)
		}
	case len(args) > 0 && args[0] == "startup":
		var cfg startupConfig
		if cfg, err = parseStartup(args[1:], stdout); err == nil {
			err = measureStartup(ctx, cfg, stdout, stderr)
		}
	default:
		var cfg Config
		if cfg, err = parseConfig(args, getenv, stdout); err == nil {
			err = runSweep(ctx, cfg, stdout, stderr)
		}
	}
	var usage *usageError
	switch {
	case err == nil:
		return 0
	case errors.Is(err, flag.ErrHelp):
		return 0
	case errors.As(err, &usage):
		fmt.Fprintln(stderr, "alebench:", err)
		return 2
	default:
		fmt.Fprintln(stderr, "alebench:", err)
		return 1
	}
}

// usageError is a bad command line (exit 2); anything else failing is exit 1.
type usageError struct{ err error }

func (e *usageError) Error() string { return e.err.Error() }
func (e *usageError) Unwrap() error { return e.err }

// usages head each command's --help, before its flags.
var usages = map[string]string{
	"alebench": `alebench: load alecryptd (and Vault Transit) and report throughput, latency, CPU per operation

  alebench [flags]
  alebench genkeys --help      a keystore of N fresh keys
  alebench startup --help      alecryptd's start on a large keystore
  alebench memory --help       alecryptd's memory under large concurrent calls and floods
  alebench floors --help       alegate and alecryptd next to their bare floors
  alebench serve --help        a bare handler or proxy for floors
  alebench conns --help        many WebSockets held through alegate, and a handshake storm
`,
	"alebench genkeys": `alebench genkeys: write a keystore of N keys for startup measurements

  alebench genkeys --out FILE [--n 10000] [flags]
`,
	"alebench floors": `alebench floors: alegate next to a plain reverse proxy, alecryptd next to a bare Connect handler

  alebench floors --gate-url URL --gate-pids PID,PID --proxy-url URL --proxy-pid PID --keystore FILE
                  --alecrypt-url URL --alecrypt-pid PID --bare-url URL --bare-pid PID [flags]
`,
	"alebench memory": `alebench memory: many large Encrypts at once against a running alecryptd, sampling its RSS
(test/bench/memory.sh runs it with and without a token)

  alebench memory --alecrypt-pid PID [--alecrypt-url URL] [--token T] [flags]
`,
	"alebench serve": usagesServe,
	"alebench conns": `alebench conns: many WebSockets held open at once through alegate and the plain proxy
(RSS per held connection, CPU while idle) and a storm of new ones (handshakes per second);
test/bench/conns.sh starts the processes and runs it

  alebench conns --gate-url URL --gate-pid PID --fingerprint FP [--crypto-pid PID] [--proxy-url URL --proxy-pid PID]
                 [--warm-frames K --keystore FILE] [flags]
`,
	"alebench startup": `alebench startup: start alecryptd on a large keystore and measure when every key is ready

  alebench startup --alecryptd BIN --keystore FILE [flags]
`,
}

// parseFlags parses args into fs; --help and --version print to fs's output
// (stdout, set by run) and are flag.ErrHelp, a bad command line is a usage
// error.
func parseFlags(fs *flag.FlagSet, args []string) error {
	err := cli.Parse(fs, args, fs.Output(), usages[fs.Name()])
	var ue *cli.UsageError
	if errors.As(err, &ue) {
		return &usageError{err}
	}
	return err
}

func usagef(format string, args ...any) error {
	return &usageError{fmt.Errorf(format, args...)}
}

// Targets.
const (
	targetAlecrypt = "alecrypt"
	targetTransit  = "transit"
	targetBoth     = "both"
)

// Config is the sweep, from flags and the environment.
type Config struct {
	Targets []string // alecrypt and/or transit, in run order

	AlecryptURL   string
	AlecryptPID   int
	AlecryptAlias string
	Protocols     []string
	Conns         int

	VaultAddr    string
	VaultToken   string
	VaultPID     int
	TransitMount string
	TransitKey   string

	Ops          []string
	Sizes        []int
	Concurrency  []int
	Duration     time.Duration
	Warmup       time.Duration
	BatchSize    int
	BatchBytes   int
	StreamWindow int
	HalfPeak     bool
	Rates        []int
	JSON         bool
	JSONOut      string
}

func parseConfig(args []string, getenv func(string) string, stdout io.Writer) (Config, error) {
	fs := flag.NewFlagSet("alebench", flag.ContinueOnError)
	fs.SetOutput(stdout)
	fs.Usage = func() {
		fmt.Fprint(stdout, "usage: alebench [flags]\n       alebench genkeys -h\n       alebench startup -h\n       alebench memory -h\n\nflags:\n")
		fs.PrintDefaults()
	}
	var c Config
	var target, protocols, ops, sizes, conc, rates string
	fs.StringVar(&target, "target", targetAlecrypt, "what to load: alecrypt, transit or both (side by side, with ratios)")
	fs.StringVar(&c.AlecryptURL, "alecrypt-url", envOr(getenv, "ALECRYPT_ADDR", "http://127.0.0.1:8080"), "alecryptd base URL (env ALECRYPT_ADDR)")
	fs.IntVar(&c.AlecryptPID, "alecrypt-pid", 0, "alecryptd's process id, for its CPU per operation and RSS (0: not measured)")
	fs.StringVar(&c.AlecryptAlias, "alecrypt-alias", "", "key alias to encrypt with (empty: the service's default alias)")
	fs.StringVar(&protocols, "protocol", protoConnect, "comma-separated: connect (Connect over h2c), grpc (h2c), connect-http1 (Connect over HTTP/1.1; no stream)")
	fs.IntVar(&c.Conns, "conns", 0, "HTTP/2 connections to alecryptd per measurement, shared by the workers (0: one per worker, as HTTP/1.1 needs)")
	fs.StringVar(&c.VaultAddr, "vault-addr", getenv("VAULT_ADDR"), "Vault address (env VAULT_ADDR)")
	fs.StringVar(&c.VaultToken, "vault-token", "", "Vault token allowed to use the transit key (env VAULT_TOKEN)") // no default shown: --help must not print a token
	fs.IntVar(&c.VaultPID, "vault-pid", 0, "Vault's process id, for its CPU per operation and RSS (0: not measured)")
	fs.StringVar(&c.TransitMount, "transit-mount", "transit", "Vault Transit mount")
	fs.StringVar(&c.TransitKey, "transit-key", "bench", "Transit key (create it with type=aes256-gcm96)")
	fs.StringVar(&ops, "ops", "encrypt,decrypt,batch,stream", "comma-separated operations: "+strings.Join(opNames(), ", "))
	fs.StringVar(&sizes, "sizes", "64,1024,65536", "comma-separated payload sizes in bytes")
	fs.StringVar(&conc, "concurrency", "1,4,16,64", "comma-separated concurrency levels (workers; for stream, streams)")
	fs.DurationVar(&c.Duration, "duration", 2*time.Second, "measured window of each measurement")
	fs.DurationVar(&c.Warmup, "warmup", 500*time.Millisecond, "unmeasured warm-up before each window")
	fs.IntVar(&c.BatchSize, "batch-size", 100, "items per batch call")
	fs.IntVar(&c.BatchBytes, "batch-bytes", 1<<20, "cap on a batch's payload bytes: large payloads get fewer items per call")
	fs.IntVar(&c.StreamWindow, "stream-window", 16, "messages in flight per stream")
	fs.BoolVar(&c.HalfPeak, "half-peak", true, "after each unary sweep, measure latency at half the peak throughput (open loop)")
	fs.StringVar(&rates, "rates", "", "comma-separated open-loop rates (calls/s) at which to measure unary latency too")
	fs.BoolVar(&c.JSON, "json", false, "print JSON instead of the table")
	fs.StringVar(&c.JSONOut, "json-out", "", "also write the JSON report to this file")
	if err := parseFlags(fs, args); err != nil {
		return Config{}, err
	}
	if c.VaultToken == "" {
		c.VaultToken = getenv("VAULT_TOKEN")
	}
	if fs.NArg() > 0 {
		return Config{}, usagef("unexpected arguments: %q", fs.Args())
	}
	var err error
	switch target {
	case targetAlecrypt, targetTransit:
		c.Targets = []string{target}
	case targetBoth:
		c.Targets = []string{targetAlecrypt, targetTransit}
	default:
		return Config{}, usagef("--target must be alecrypt, transit or both, got %q", target)
	}
	if c.Protocols, err = parseChoices("--protocol", protocols, []string{protoConnect, protoGRPC, protoConnectHTTP1}); err != nil {
		return Config{}, err
	}
	if c.Ops, err = parseChoices("--ops", ops, opNames()); err != nil {
		return Config{}, err
	}
	if c.Sizes, err = parseInts("--sizes", sizes, 0); err != nil {
		return Config{}, err
	}
	if c.Concurrency, err = parseInts("--concurrency", conc, 1); err != nil {
		return Config{}, err
	}
	if rates != "" {
		if c.Rates, err = parseInts("--rates", rates, 1); err != nil {
			return Config{}, err
		}
	}
	switch {
	case c.Duration <= 0:
		return Config{}, usagef("--duration must be positive")
	case c.Warmup < 0:
		return Config{}, usagef("--warmup must not be negative")
	case c.BatchSize < 1 || c.BatchBytes < 1:
		return Config{}, usagef("--batch-size and --batch-bytes must be positive")
	case c.StreamWindow < 1:
		return Config{}, usagef("--stream-window must be positive")
	case c.Conns < 0:
		return Config{}, usagef("--conns must not be negative")
	case c.AlecryptPID < 0 || c.VaultPID < 0:
		return Config{}, usagef("process ids must not be negative")
	}
	if slices.Contains(c.Targets, targetTransit) {
		if c.VaultAddr == "" || c.VaultToken == "" {
			return Config{}, usagef("--target %s needs --vault-addr and --vault-token (or VAULT_ADDR and VAULT_TOKEN)", target)
		}
	}
	return c, nil
}

func envOr(getenv func(string) string, name, def string) string {
	if v := getenv(name); v != "" {
		return v
	}
	return def
}

// parseChoices splits a comma-separated list, each item one of allowed,
// without repeats, in the order given.
func parseChoices(flagName, s string, allowed []string) ([]string, error) {
	var out []string
	for item := range strings.SplitSeq(s, ",") {
		item = strings.TrimSpace(item)
		if !slices.Contains(allowed, item) {
			return nil, usagef("%s: %q is not one of %s", flagName, item, strings.Join(allowed, ", "))
		}
		if slices.Contains(out, item) {
			return nil, usagef("%s: %q given twice", flagName, item)
		}
		out = append(out, item)
	}
	return out, nil
}

// parseInts splits a comma-separated list of integers, each at least lo.
func parseInts(flagName, s string, lo int) ([]int, error) {
	var out []int
	for item := range strings.SplitSeq(s, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(item))
		if err != nil || n < lo {
			return nil, usagef("%s: %q is not an integer of at least %d", flagName, item, lo)
		}
		out = append(out, n)
	}
	return out, nil
}
