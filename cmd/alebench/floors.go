package main

import (
	"bytes"
	"cmp"
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"slices"
	"strings"
	"time"

	"connectrpc.com/connect"
	"github.com/coder/websocket"

	"github.com/alecrypt/alecrypt/cmd/alebench/internal/loadgen"
	alev1 "github.com/alecrypt/alecrypt/gen/ale/v1"
	"github.com/alecrypt/alecrypt/gen/ale/v1/alev1connect"
	"github.com/alecrypt/alecrypt/internal/engine"
	"github.com/alecrypt/alecrypt/internal/keyring"
	"github.com/alecrypt/alecrypt/internal/keystore/filestore"
	"github.com/alecrypt/alecrypt/internal/tlsconfig"
	"github.com/alecrypt/alecrypt/service/wire"
)

// floorsConfig is `alebench floors`: each of our paths measured next to the
// floor it is compared with, in the same run, with the ratios of server CPU
// per request and of throughput.
type floorsConfig struct {
	GateURL   string
	GatePIDs  []int // alegate and the alecryptd behind it
	ProxyURL  string
	ProxyPID  int
	CryptoURL string // alecryptd, bare configuration
	CryptoPID int
	BareURL   string
	BarePID   int
	// ProdURL is an alecryptd in the production configuration (TLS, mTLS,
	// a policy, the audit log, metrics); ProdCA/Cert/Key reach it.
	ProdURL                   string
	ProdPID                   int
	ProdCA, ProdCert, ProdKey string
	VaultAddr, VaultToken     string
	VaultPID                  int

	Keystore    string // the POS side's keys: requests are sealed locally, fresh IV each
	Fingerprint string // the key to seal under (default: the keystore's first)
	Paths       []string
	Size        int
	Concurrency int
	Duration    time.Duration
	Warmup      time.Duration
	HalfPeak    bool
	Rounds      int
	JSONOut     string
}

// The paths floors can measure; each is ours against its floor.
const (
	pathHTTP    = "http"    // POS request: alegate → alecryptd → kitchen, against a plain reverse proxy
	pathWS      = "ws"      // WebSocket frame round trip through alegate, against the plain proxy's pipe
	pathUnary   = "unary"   // Encrypt, Connect JSON over HTTP/1.1: alecryptd against the bare handler
	pathProd    = "prod"    // Encrypt on the production configuration against the bare configuration
	pathTransit = "transit" // Vault Transit encrypt against alecryptd's Encrypt
)

var floorPaths = []string{pathHTTP, pathWS, pathUnary, pathProd, pathTransit}

func parseFloors(args []string, getenv func(string) string, stdout io.Writer) (floorsConfig, error) {
	fs := flag.NewFlagSet("alebench floors", flag.ContinueOnError)
	fs.SetOutput(stdout)
	var c floorsConfig
	var gatePIDs, paths string
	fs.StringVar(&c.GateURL, "gate-url", "", "alegate's base URL")
	fs.StringVar(&gatePIDs, "gate-pids", "", "comma-separated process ids of alegate and the alecryptd it calls (their CPU is summed)")
	fs.StringVar(&c.ProxyURL, "proxy-url", "", "the plain reverse proxy (alebench serve proxy) in front of the same kitchen")
	fs.IntVar(&c.ProxyPID, "proxy-pid", 0, "the plain proxy's process id")
	fs.StringVar(&c.CryptoURL, "alecrypt-url", "", "alecryptd (bare configuration) for the unary rows")
	fs.IntVar(&c.CryptoPID, "alecrypt-pid", 0, "its process id")
	fs.StringVar(&c.BareURL, "bare-url", "", "the bare Connect handler (alebench serve bare)")
	fs.IntVar(&c.BarePID, "bare-pid", 0, "its process id")
	fs.StringVar(&c.ProdURL, "prod-url", "", "alecryptd in the production configuration (https://)")
	fs.IntVar(&c.ProdPID, "prod-pid", 0, "its process id")
	fs.StringVar(&c.ProdCA, "prod-ca", "", "CA of --prod-url")
	fs.StringVar(&c.ProdCert, "prod-cert", "", "client certificate for --prod-url (mTLS)")
	fs.StringVar(&c.ProdKey, "prod-key", "", "its key")
	fs.StringVar(&c.VaultAddr, "vault-addr", getenv("VAULT_ADDR"), "Vault with transit key 'bench' (env VAULT_ADDR)")
	fs.StringVar(&c.VaultToken, "vault-token", "", "Vault token (env VAULT_TOKEN)") // no default shown: --help must not print a token
	fs.IntVar(&c.VaultPID, "vault-pid", 0, "Vault's process id")
	fs.StringVar(&c.Keystore, "keystore", "", "the keystore alecryptd serves: POS requests are sealed with it locally, as a terminal would")
	fs.StringVar(&c.Fingerprint, "fingerprint", "", "key to seal under (default: the keystore's first)")
	fs.StringVar(&paths, "paths", strings.Join(floorPaths, ","), "comma-separated: "+strings.Join(floorPaths, ", "))
	fs.IntVar(&c.Size, "size", 1024, "payload bytes")
	fs.IntVar(&c.Concurrency, "concurrency", 16, "clients (WebSocket connections for ws)")
	fs.DurationVar(&c.Duration, "duration", 3*time.Second, "measured window of each row")
	fs.DurationVar(&c.Warmup, "warmup", time.Second, "unmeasured warm-up before each window")
	fs.IntVar(&c.Rounds, "rounds", 3, "closed-loop rounds per pair, alternating ours and the floor (a shared machine drifts)")
	fs.BoolVar(&c.HalfPeak, "half-peak", true, "also measure p50/p99 at half of each side's peak (open loop)")
	fs.StringVar(&c.JSONOut, "json-out", "", "also write the rows as JSON to this file")
	if err := parseFlags(fs, args); err != nil {
		return c, err
	}
	if c.VaultToken == "" {
		c.VaultToken = getenv("VAULT_TOKEN")
	}
	if c.Rounds < 1 {
		return c, usagef("floors: --rounds must be at least 1")
	}
	var err error
	if c.Paths, err = parseChoices("--paths", paths, floorPaths); err != nil {
		return c, err
	}
	if gatePIDs != "" {
		if c.GatePIDs, err = parseInts("--gate-pids", gatePIDs, 1); err != nil {
			return c, err
		}
	}
	need := func(path string, ok bool, what string) error {
		if slices.Contains(c.Paths, path) && !ok {
			return usagef("floors: --paths %s needs %s", path, what)
		}
		return nil
	}
	return c, errors.Join(
		need(pathHTTP, c.GateURL != "" && c.ProxyURL != "" && c.Keystore != "", "--gate-url, --proxy-url and --keystore"),
		need(pathWS, c.GateURL != "" && c.ProxyURL != "" && c.Keystore != "", "--gate-url, --proxy-url and --keystore"),
		need(pathUnary, c.CryptoURL != "" && c.BareURL != "", "--alecrypt-url and --bare-url"),
		need(pathProd, c.CryptoURL != "" && c.ProdURL != "", "--alecrypt-url and --prod-url"),
		need(pathTransit, c.CryptoURL != "" && c.VaultAddr != "" && c.VaultToken != "", "--alecrypt-url, --vault-addr and --vault-token"),
	)
}

// floorRow is one side of a comparison.
type floorRow struct {
	Path string `json:"path"`
	Row
}

// pair is ours against its floor, measured back to back.
type pair struct {
	path        string
	ours, floor series
	op          op
}

func runFloors(ctx context.Context, c floorsConfig, stdout, stderr io.Writer) error {
	var seal *sealer
	if c.Keystore != "" {
		var err error
		if seal, err = newSealer(c.Keystore, c.Fingerprint); err != nil {
			return err
		}
	}
	var pairs []pair
	for _, p := range c.Paths {
		switch p {
		case pathHTTP:
			pairs = append(pairs, pair{p, &posHTTP{name: "alegate", url: c.GateURL, procs: c.GatePIDs, seal: seal},
				&posHTTP{name: "proxy", url: c.ProxyURL, procs: pidList(c.ProxyPID), seal: seal}, op{name: "pos-http", mode: unary}})
		case pathWS:
			pairs = append(pairs, pair{p, &posWS{name: "alegate", url: c.GateURL, procs: c.GatePIDs, seal: seal},
				&posWS{name: "proxy", url: c.ProxyURL, procs: pidList(c.ProxyPID), seal: seal}, op{name: "ws-frame", mode: unary}})
		case pathUnary:
			pairs = append(pairs, pair{p, &jsonEncrypt{name: "alecryptd", url: c.CryptoURL, pidv: c.CryptoPID},
				&jsonEncrypt{name: "bare", url: c.BareURL, pidv: c.BarePID}, opNamed("encrypt")})
		case pathProd:
			pairs = append(pairs, pair{p, &jsonEncrypt{name: "production", url: c.ProdURL, pidv: c.ProdPID, ca: c.ProdCA, cert: c.ProdCert, key: c.ProdKey},
				&jsonEncrypt{name: "alecryptd", url: c.CryptoURL, pidv: c.CryptoPID}, opNamed("encrypt")})
		case pathTransit:
			tr, err := newTransitSeries(ctx, Config{VaultAddr: c.VaultAddr, VaultToken: c.VaultToken, VaultPID: c.VaultPID, TransitMount: "transit", TransitKey: "bench"})
			if err != nil {
				return err
			}
			pairs = append(pairs, pair{p, tr, &jsonEncrypt{name: "alecryptd", url: c.CryptoURL, pidv: c.CryptoPID}, opNamed("encrypt")})
		}
	}
	cfg := Config{Duration: c.Duration, Warmup: c.Warmup}
	var rows []floorRow
	var lines [][]string
	for _, p := range pairs {
		// Rounds alternate ours and the floor, so both see the same
		// machine; the row shows the round with the median CPU ratio, and
		// the spread of the ratios over all rounds.
		var rounds [][2]Row
		for range c.Rounds {
			var r [2]Row
			for i, s := range []series{p.ours, p.floor} {
				row, err := measure(ctx, cfg, s, spec{op: p.op, size: c.Size, concurrency: c.Concurrency}, stderr)
				if err != nil {
					return fmt.Errorf("%s %s: %w", p.path, s.target(), err)
				}
				r[i] = row
				rows = append(rows, floorRow{p.path, row})
			}
			rounds = append(rounds, r)
		}
		cpuRatios, thrRatios := make([]float64, len(rounds)), make([]float64, len(rounds))
		for i, r := range rounds {
			cpuRatios[i] = cpuRatioValue(r[0], r[1])
			thrRatios[i] = r[0].ItemsPerSec / r[1].ItemsPerSec
		}
		closed := medianRound(rounds, cpuRatios)
		var half [2]Row
		if c.HalfPeak {
			for i, s := range []series{p.ours, p.floor} {
				sp := spec{op: p.op, size: c.Size, concurrency: c.Concurrency, rate: closed[i].ItemsPerSec / 2, halfPeak: true}
				row, err := measure(ctx, cfg, s, sp, stderr)
				if err != nil {
					return fmt.Errorf("%s %s at half of peak: %w", p.path, s.target(), err)
				}
				half[i] = row
				rows = append(rows, floorRow{p.path, row})
			}
		}
		lines = append(lines, []string{
			p.path,
			p.ours.target() + " / " + p.floor.target(),
			count(closed[0].ItemsPerSec) + " / " + count(closed[1].ItemsPerSec),
			fmt.Sprintf("%.2f×", closed[0].ItemsPerSec/closed[1].ItemsPerSec) + spread(thrRatios),
			fmt.Sprintf("%.0f / %.0f", closed[0].ServerCPUPerItemUS, closed[1].ServerCPUPerItemUS),
			cpuRatioOf(closed[0], closed[1]) + spread(cpuRatios),
			latencyPair(half[0], half[1], c.HalfPeak),
			fmt.Sprintf("%.2f", max(closed[0].Interference, closed[1].Interference)),
		})
	}
	fmt.Fprintf(stdout, "%d clients, %s payloads, %s windows after %s warm-up, %d rounds alternating ours and the floor (the median round shown, the spread of its ratios in parentheses); CPU of the server processes only (/proc), ratios from this run\n\n",
		c.Concurrency, sizeName(c.Size), c.Duration, c.Warmup, c.Rounds)
	writeMarkdown(stdout, []string{"path", "ours / floor", "req/s", "throughput ratio", "server CPU µs/req", "CPU ratio", "p50 / p99 at ½ peak (ours; floor)", "others (cores)"}, lines)
	if c.JSONOut != "" {
		b, err := json.MarshalIndent(map[string]any{"machine": describeMachine(), "rows": rows}, "", "  ")
		if err != nil {
			return err
		}
		return os.WriteFile(c.JSONOut, b, 0o644)
	}
	return nil
}

func cpuRatioValue(ours, floor Row) float64 {
	if floor.ServerCPUPerItemUS <= 0 {
		return 0
	}
	return ours.ServerCPUPerItemUS / floor.ServerCPUPerItemUS
}

// medianRound is the round whose ratio is the median (the lower one of an
// even count).
func medianRound(rounds [][2]Row, ratios []float64) [2]Row {
	idx := make([]int, len(rounds))
	for i := range idx {
		idx[i] = i
	}
	slices.SortFunc(idx, func(a, b int) int { return cmp.Compare(ratios[a], ratios[b]) })
	return rounds[idx[(len(idx)-1)/2]]
}

// spread is " (min–max)" of more than one ratio.
func spread(ratios []float64) string {
	if len(ratios) < 2 {
		return ""
	}
	return fmt.Sprintf(" (%.2f–%.2f)", slices.Min(ratios), slices.Max(ratios))
}

func cpuRatioOf(ours, floor Row) string {
	if floor.ServerCPUPerItemUS <= 0 || ours.ServerCPUPerItemUS <= 0 {
		return "—"
	}
	return fmt.Sprintf("%.2f×", ours.ServerCPUPerItemUS/floor.ServerCPUPerItemUS)
}

func latencyPair(ours, floor Row, measured bool) string {
	if !measured {
		return "—"
	}
	return fmt.Sprintf("%s / %s; %s / %s", dur(ours.Result.Latency.P50), dur(ours.Result.Latency.P99),
		dur(floor.Result.Latency.P50), dur(floor.Result.Latency.P99))
}

func pidList(pid int) []int {
	if pid > 0 {
		return []int{pid}
	}
	return nil
}

// multiPID is a series whose server is several processes (alegate and
// alecryptd): their CPU is summed.
type multiPID interface{ pids() []int }

// cpuShares is each process's share of a multi-process server's CPU,
// read around the whole run (warm-up included), for the progress line:
// what the sum is made of. Empty for a server of one process.
func cpuShares(pids []int, before, after []time.Duration) string {
	if len(pids) < 2 || before == nil || after == nil {
		return ""
	}
	var total time.Duration
	for i := range pids {
		total += after[i] - before[i]
	}
	var parts []string
	for i, pid := range pids {
		if total > 0 {
			parts = append(parts, fmt.Sprintf("pid %d %.0f%%", pid, 100*float64(after[i]-before[i])/float64(total)))
		}
	}
	return " (" + strings.Join(parts, ", ") + ")"
}

func readCPUs(pids []int) []time.Duration {
	out := make([]time.Duration, len(pids))
	for i, p := range pids {
		st, err := loadgen.ProcProbe(p)()
		if err != nil {
			return nil
		}
		out[i] = st.CPU
	}
	return out
}

func sumProbe(pids []int) loadgen.Probe {
	probes := make([]loadgen.Probe, len(pids))
	for i, p := range pids {
		probes[i] = loadgen.ProcProbe(p)
	}
	return func() (loadgen.ProcStat, error) {
		var sum loadgen.ProcStat
		for _, p := range probes {
			st, err := p()
			if err != nil {
				return sum, err
			}
			sum.CPU += st.CPU
			sum.RSS += st.RSS
			sum.PeakRSS += st.PeakRSS
		}
		return sum, nil
	}
}

// sealer seals POS traffic locally, as a terminal holding the key does: a
// fresh IV for every request, so nothing is ever replayed.
type sealer struct {
	eng *engine.Engine
	fp  string
}

func newSealer(keystore, fp string) (*sealer, error) {
	snap, err := filestore.New(keystore).Load(context.Background())
	if err != nil {
		return nil, err
	}
	if len(snap.Records) == 0 {
		return nil, errors.New("floors: the keystore has no key")
	}
	if fp == "" {
		fp = snap.Records[0].Fingerprint
	}
	ring := keyring.New()
	if _, _, err := ring.Replace(snap.Records); err != nil {
		return nil, err
	}
	return &sealer{eng: engine.New(ring), fp: fp}, nil
}

func (s *sealer) seal(pt []byte) (engine.Envelope, error) {
	env, _, err := s.eng.Encrypt(context.Background(), engine.Ref{Fingerprint: s.fp}, pt, nil)
	return env, err
}

// posHTTP is a POS terminal's request: POST of a sealed JSON order with the
// ALE headers, over HTTP/1.1 keep-alive connections.
type posHTTP struct {
	name  string
	url   string
	procs []int
	seal  *sealer
}

func (p *posHTTP) target() string   { return p.name }
func (p *posHTTP) protocol() string { return "http1-json" }
func (p *posHTTP) supports(op) bool { return true }
func (p *posHTTP) pid() int         { return firstPID(p.procs) }
func (p *posHTTP) pids() []int      { return p.procs }

func firstPID(pids []int) int {
	if len(pids) == 0 {
		return 0
	}
	return pids[0]
}

func (p *posHTTP) prepare(ctx context.Context, sp spec, sched *loadgen.Schedule) (func(int) (loadgen.Worker, error), func(), error) {
	tr := &http.Transport{Protocols: new(http.Protocols), MaxIdleConnsPerHost: sp.concurrency, MaxIdleConns: sp.concurrency}
	tr.Protocols.SetHTTP1(true)
	hc := &http.Client{Transport: tr}
	order := jsonPayload(sp.size)
	newWorker := func(int) (loadgen.Worker, error) {
		return loop(sched, func(ctx context.Context) (int, error) {
			env, err := p.seal.seal(order)
			if err != nil {
				return 0, err
			}
			req, err := http.NewRequestWithContext(ctx, http.MethodPost, p.url+"/orders", bytes.NewReader(wire.SealPayload(env.Message)))
			if err != nil {
				return 0, err
			}
			req.Header.Set("Authorization", "Bearer pos-1")
			req.Header.Set("Content-Type", "application/json")
			wire.SetHeaders(req.Header, env.IV, env.Fingerprint)
			res, err := hc.Do(req)
			if err != nil {
				return 0, err
			}
			body, err := io.ReadAll(res.Body)
			res.Body.Close()
			if err != nil {
				return 0, err
			}
			if res.StatusCode != http.StatusOK {
				return 0, fmt.Errorf("HTTP %d: %.200s", res.StatusCode, body)
			}
			return 1, nil
		}), nil
	}
	return newWorker, tr.CloseIdleConnections, nil
}

// posWS is a kitchen display's WebSocket: one connection per worker, one
// sealed frame at a time, each echoed back by the kitchen (sealed again by
// alegate; as it is by the plain proxy).
type posWS struct {
	name  string
	url   string
	procs []int
	seal  *sealer
}

func (p *posWS) target() string   { return p.name }
func (p *posWS) protocol() string { return "websocket" }
func (p *posWS) supports(op) bool { return true }
func (p *posWS) pid() int         { return firstPID(p.procs) }
func (p *posWS) pids() []int      { return p.procs }

func (p *posWS) prepare(ctx context.Context, sp spec, sched *loadgen.Schedule) (func(int) (loadgen.Worker, error), func(), error) {
	order := jsonPayload(sp.size)
	var conns []*websocket.Conn
	release := func() {
		for _, c := range conns {
			c.Close(websocket.StatusNormalClosure, "")
		}
	}
	u := strings.Replace(strings.Replace(p.url, "https://", "wss://", 1), "http://", "ws://", 1) + "/kds"
	for range sp.concurrency {
		iv := make([]byte, 16)
		_, _ = rand.Read(iv)
		h := http.Header{"Authorization": {"Bearer kds-1"}}
		wire.SetHeaders(h, iv, p.seal.fp)
		dctx, cancel := context.WithTimeout(ctx, setupTimeout)
		c, _, err := websocket.Dial(dctx, u, &websocket.DialOptions{HTTPHeader: h})
		cancel()
		if err != nil {
			release()
			return nil, nil, fmt.Errorf("websocket handshake: %w", err)
		}
		c.SetReadLimit(16 << 20)
		conns = append(conns, c)
	}
	newWorker := func(i int) (loadgen.Worker, error) {
		c := conns[i]
		return loop(sched, func(ctx context.Context) (int, error) {
			env, err := p.seal.seal(order)
			if err != nil {
				return 0, err
			}
			frame := wire.MarshalFrame(wire.Frame{IV: env.IV, Fingerprint: env.Fingerprint, Message: env.Message})
			if err := c.Write(ctx, websocket.MessageText, frame); err != nil {
				return 0, err
			}
			_, got, err := c.Read(ctx)
			if err != nil {
				return 0, err
			}
			if bytes.Contains(got, []byte(`"errorCode"`)) || bytes.HasPrefix(got, []byte(`{"error"`)) {
				return 0, fmt.Errorf("error frame: %.200s", got)
			}
			return 1, nil
		}), nil
	}
	return newWorker, release, nil
}

// jsonEncrypt is unary Encrypt in Connect's JSON over HTTP/1.1 (TLS with a
// client certificate for https://), the unary row.
type jsonEncrypt struct {
	name          string
	url           string
	pidv          int
	ca, cert, key string
}

func (j *jsonEncrypt) target() string   { return j.name }
func (j *jsonEncrypt) protocol() string { return "connect-json-http1" }
func (j *jsonEncrypt) supports(op) bool { return true }
func (j *jsonEncrypt) pid() int         { return j.pidv }

func (j *jsonEncrypt) prepare(ctx context.Context, sp spec, sched *loadgen.Schedule) (func(int) (loadgen.Worker, error), func(), error) {
	tr := &http.Transport{Protocols: new(http.Protocols), MaxIdleConnsPerHost: sp.concurrency, MaxIdleConns: sp.concurrency}
	tr.Protocols.SetHTTP1(true)
	if strings.HasPrefix(j.url, "https://") {
		var err error
		if tr.TLSClientConfig, err = tlsconfig.Client(j.ca, j.cert, j.key); err != nil {
			return nil, nil, err
		}
		tr.TLSClientConfig.NextProtos = []string{"http/1.1"}
	}
	c := alev1connect.NewCryptoServiceClient(&http.Client{Transport: tr}, j.url, connect.WithProtoJSON())
	pt := jsonPayload(sp.size)
	newWorker := func(int) (loadgen.Worker, error) {
		return loop(sched, func(ctx context.Context) (int, error) {
			res, err := c.Encrypt(ctx, connect.NewRequest(&alev1.EncryptRequest{Plaintext: pt}))
			if err != nil {
				return 0, err
			}
			return 1, checkEnvelope(res.Msg.GetEnvelope(), sp.size)
		}), nil
	}
	return newWorker, tr.CloseIdleConnections, nil
}

// jsonPayload is a JSON order of exactly size bytes (at least 12).
func jsonPayload(size int) []byte {
	const head, tail = `{"order":"`, `"}`
	n := max(0, size-len(head)-len(tail))
	return []byte(head + string(payload(n)) + tail)
}
