// Command alegate is the Kitchen gateway: a reverse proxy and WebSocket
// bridge that terminates ALE in front of a kitchen backend, asking alecryptd
// for every cryptographic operation. It holds no keys.
package main

import (
	"cmp"
	"context"
	"crypto/tls"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"connectrpc.com/connect"
	"connectrpc.com/otelconnect"

	alev1 "github.com/alecrypt/alecrypt/gen/ale/v1"
	"github.com/alecrypt/alecrypt/gen/ale/v1/alev1connect"
	"github.com/alecrypt/alecrypt/service/cli"
	"github.com/alecrypt/alecrypt/service/client"
	"github.com/alecrypt/alecrypt/service/gateway"
	"github.com/alecrypt/alecrypt/service/metrics"
	"github.com/alecrypt/alecrypt/service/tlsconfig"
	"github.com/alecrypt/alecrypt/service/tracing"
)

// Config is everything alegate reads from flags and the environment.
type Config struct {
	Listen           string
	Upstream         *url.URL
	Crypto           string
	RequireALE       bool
	EncryptResponses bool
	MaxBodyBytes     int64
	MaxResponseBytes int64
	MaxFrameBytes    int64
	Origins          gateway.Origins
	FrameFormat      alev1.PlaintextFormat
	ReadTimeout      time.Duration
	IdleTimeout      time.Duration
	WSIdleTimeout    time.Duration
	MetricsListen    string
	LogFormat        string
	ShutdownTimeout  time.Duration
	TLSCert, TLSKey  string
	InsecureListen   bool
	CryptoCA         string
	CryptoCert       string
	CryptoKey        string
	CryptoTokenFile  string
}

const usage = `alegate: the Kitchen gateway (ALE reverse proxy and WebSocket bridge in front of a kitchen backend)

  alegate --upstream http://KITCHEN [--crypto http://127.0.0.1:8080] [--listen 127.0.0.1:8081] [flags]
`

func parseConfig(args []string, getenv func(string) string) (Config, error) {
	fs := flag.NewFlagSet("alegate", flag.ContinueOnError)
	var c Config
	listen := getenv("ALEGATE_LISTEN")
	if listen == "" {
		listen = "127.0.0.1:8081"
	}
	allowOrigins := getenv("ALEGATE_ALLOW_ORIGINS")
	metricsListen := getenv("ALEGATE_METRICS_LISTEN")
	if metricsListen == "" {
		metricsListen = "127.0.0.1:9091"
	}
	var upstream, wsOrigins, frameFormat string
	fs.StringVar(&c.Listen, "listen", listen, "address to serve kitchen clients on (env ALEGATE_LISTEN)")
	fs.StringVar(&upstream, "upstream", "", "kitchen backend base URL, http(s); WebSockets go to the same host as ws(s) (required)")
	fs.StringVar(&c.Crypto, "crypto", "http://127.0.0.1:8080", "alecryptd base URL")
	fs.BoolVar(&c.RequireALE, "require-ale", true, "refuse requests without ALE headers (errorCode 1)")
	fs.BoolVar(&c.EncryptResponses, "encrypt-responses", false, "encrypt upstream response bodies under the request's key")
	fs.Int64Var(&c.MaxBodyBytes, "max-body-bytes", gateway.DefaultMaxBodyBytes, "largest encrypted request body (413 beyond)")
	fs.Int64Var(&c.MaxResponseBytes, "max-response-bytes", gateway.DefaultMaxResponseBytes, "largest upstream response to encrypt (502 beyond)")
	fs.Int64Var(&c.MaxFrameBytes, "max-frame-bytes", gateway.DefaultMaxFrameBytes, "largest WebSocket message")
	fs.StringVar(&frameFormat, "ws-expect", "json", "check each WebSocket frame's plaintext before forwarding: json, utf8 or none (frames under a wrong key decrypt to garbage; README, Frame check)")
	fs.StringVar(&allowOrigins, "allow-origins", allowOrigins, "comma-separated exact origins (scheme://host[:port], null) or * allowed for WebSockets and CORS, beyond same origin and the app origins ionic, ionic://, capacitor:// (env ALEGATE_ALLOW_ORIGINS)")
	fs.StringVar(&wsOrigins, "ws-origins", "", "deprecated alias of --allow-origins (a bare host H means http://H and https://H)")
	fs.DurationVar(&c.ReadTimeout, "read-timeout", gateway.DefaultReadTimeout, "cut a client whose request headers, or whose body, stop arriving for this long")
	fs.DurationVar(&c.IdleTimeout, "idle-timeout", gateway.DefaultIdleTimeout, "close keep-alive connections idle this long")
	fs.DurationVar(&c.WSIdleTimeout, "ws-idle-timeout", gateway.DefaultWebSocketIdleTimeout, "close WebSockets on which no message, ping or pong passed either way for this long; 0 turns it off")
	fs.StringVar(&c.MetricsListen, "metrics-listen", metricsListen, "address for Prometheus /metrics, /healthz and /readyz; --metrics-listen= turns it off (env ALEGATE_METRICS_LISTEN)")
	fs.StringVar(&c.TLSCert, "tls-cert", "", "PEM certificate for the listener (with --tls-key)")
	fs.StringVar(&c.TLSKey, "tls-key", "", "PEM key for --tls-cert")
	fs.BoolVar(&c.InsecureListen, "insecure-listen", false, "allow --listen beyond loopback without TLS")
	fs.StringVar(&c.CryptoCA, "crypto-ca", "", "PEM CA to trust for an https:// --crypto")
	fs.StringVar(&c.CryptoCert, "crypto-cert", "", "client certificate presented to alecryptd (mTLS)")
	fs.StringVar(&c.CryptoKey, "crypto-key", "", "key for --crypto-cert")
	fs.StringVar(&c.CryptoTokenFile, "crypto-token-file", "", "file holding a bearer token for alecryptd")
	fs.StringVar(&c.LogFormat, "log-format", "json", "json or text")
	fs.DurationVar(&c.ShutdownTimeout, "shutdown-timeout", 10*time.Second, "grace period for in-flight requests on SIGTERM")
	if err := cli.Parse(fs, args, os.Stdout, usage); err != nil {
		return Config{}, err
	}
	if upstream == "" {
		return Config{}, errors.New("--upstream is required")
	}
	u, err := url.Parse(upstream)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return Config{}, fmt.Errorf("--upstream %q must be an http(s) URL", upstream)
	}
	c.Upstream = u
	switch frameFormat {
	case "json":
		c.FrameFormat = alev1.PlaintextFormat_PLAINTEXT_FORMAT_JSON
	case "utf8":
		c.FrameFormat = alev1.PlaintextFormat_PLAINTEXT_FORMAT_UTF8
	case "none":
	default:
		return Config{}, fmt.Errorf("--ws-expect must be json, utf8 or none, got %q", frameFormat)
	}
	host, _, err := net.SplitHostPort(c.Listen)
	if err != nil {
		return Config{}, fmt.Errorf("--listen: %w", err)
	}
	if (c.TLSCert == "") != (c.TLSKey == "") {
		return Config{}, errors.New("--tls-cert and --tls-key go together")
	}
	if ip := net.ParseIP(host); c.TLSCert == "" && !c.InsecureListen && host != "localhost" && (ip == nil || !ip.IsLoopback()) {
		return Config{}, fmt.Errorf("--listen %s is beyond loopback: give --tls-cert/--tls-key, or --insecure-listen", c.Listen)
	}
	list := splitList(allowOrigins)
	for _, o := range splitList(wsOrigins) {
		// --ws-origins took host patterns; a bare host keeps working as
		// the two origins it meant, wildcards other than * do not.
		if o != "*" && !strings.Contains(o, "://") && o != "null" {
			list = append(list, "http://"+o, "https://"+o)
			continue
		}
		list = append(list, o)
	}
	if c.Origins, err = gateway.ParseOrigins(list); err != nil {
		return Config{}, fmt.Errorf("--allow-origins: %w", err)
	}
	if c.WSIdleTimeout < 0 {
		return Config{}, errors.New("--ws-idle-timeout must not be negative (0 turns it off)")
	}
	if c.LogFormat != "json" && c.LogFormat != "text" {
		return Config{}, fmt.Errorf("--log-format must be json or text")
	}
	return c, nil
}

func splitList(s string) []string {
	var out []string
	for _, o := range strings.Split(s, ",") {
		if o = strings.TrimSpace(o); o != "" {
			out = append(out, o)
		}
	}
	return out
}

func main() {
	cfg, err := parseConfig(os.Args[1:], os.Getenv)
	if errors.Is(err, flag.ErrHelp) {
		return
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "alegate:", err)
		os.Exit(2)
	}
	var h slog.Handler = slog.NewJSONHandler(os.Stderr, nil)
	if cfg.LogFormat == "text" {
		h = slog.NewTextHandler(os.Stderr, nil)
	}
	log := slog.New(h)
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, cfg, log); err != nil {
		log.Error("alegate stopped", "err", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, cfg Config, log *slog.Logger) error {
	tr, err := tracing.FromEnv(ctx, os.Getenv, "alegate", os.Stdout)
	if err != nil {
		return err
	}
	defer func() {
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = tr.Shutdown(sctx)
	}()
	var clientOpts []connect.ClientOption
	if tr.Provider != nil {
		otel, err := otelconnect.NewInterceptor(otelconnect.WithTracerProvider(tr.Provider),
			otelconnect.WithPropagator(tr.Propagator), otelconnect.WithoutMetrics())
		if err != nil {
			return err
		}
		clientOpts = append(clientOpts, connect.WithInterceptors(otel))
		log.Info("tracing on", "exporter", tr.Exporter)
	}
	// One client for every call to alecryptd: unary calls over HTTP/1.1
	// keep-alive connections on http:// (half the server CPU of h2c per
	// call), WebSocket sessions' Stream over h2c; TLS negotiates HTTP/2.
	ccfg := client.Config{URL: cfg.Crypto, HTTP1: true, CAFile: cfg.CryptoCA, CertFile: cfg.CryptoCert, KeyFile: cfg.CryptoKey}
	if cfg.CryptoTokenFile != "" {
		if ccfg.Token, err = client.TokenFromFile(cfg.CryptoTokenFile); err != nil {
			return err
		}
	}
	cc, err := client.New(ccfg)
	if err != nil {
		return err
	}
	crypto := alev1connect.NewCryptoServiceClient(cc.HTTP, cc.URL, clientOpts...)
	errc := make(chan error, 2)
	var gmetrics *gateway.Metrics
	if cfg.MetricsListen != "" {
		reg := metrics.NewRegistry()
		gmetrics = gateway.NewMetrics(reg)
		// Ready only while alecryptd answers: without it every request
		// would fail, so a balancer should send traffic elsewhere.
		ready := func() bool {
			rctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			defer cancel()
			return cc.Serving(rctx) == nil
		}
		msrv, maddr, err := metrics.Serve(cfg.MetricsListen, reg, ready, errc)
		if err != nil {
			return fmt.Errorf("--metrics-listen: %w", err)
		}
		defer msrv.Close()
		log.Info("metrics listening", "addr", maddr.String())
	}
	gw := gateway.New(crypto, cfg.Upstream, gateway.Options{
		TracerProvider:   tr.Provider,
		Propagator:       tr.Propagator,
		RequireALE:       cfg.RequireALE,
		EncryptResponses: cfg.EncryptResponses,
		MaxBodyBytes:     cfg.MaxBodyBytes,
		MaxResponseBytes: cfg.MaxResponseBytes,
		MaxFrameBytes:    cfg.MaxFrameBytes,
		Origins:          cfg.Origins,
		FrameFormat:      cfg.FrameFormat,
		BodyReadTimeout:  cfg.ReadTimeout,
		// 0 is the flag's "off"; the option's off is negative.
		WebSocketIdleTimeout: cmp.Or(cfg.WSIdleTimeout, -1),
		Metrics:              gmetrics,
		Logger:               log,
	})
	defer gw.Close()
	ln, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		return err
	}
	srv := gateway.NewServer(gw, cfg.ReadTimeout, cfg.IdleTimeout)
	srv.ErrorLog = slog.NewLogLogger(log.Handler(), slog.LevelWarn)
	if cfg.TLSCert != "" {
		if srv.TLSConfig, err = tlsconfig.Server(cfg.TLSCert, cfg.TLSKey, ""); err != nil {
			return err
		}
		ln = tls.NewListener(ln, srv.TLSConfig)
	}
	go func() { errc <- srv.Serve(ln) }()
	log.Info("alegate listening", "addr", ln.Addr().String(), "upstream", cfg.Upstream.String(), "crypto", cfg.Crypto,
		"require_ale", cfg.RequireALE, "encrypt_responses", cfg.EncryptResponses)
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), cfg.ShutdownTimeout)
	defer cancel()
	// WebSockets are hijacked connections: Shutdown does not wait for them,
	// and they end with the process.
	if err := srv.Shutdown(sctx); err != nil {
		return fmt.Errorf("shutdown: %w", err)
	}
	log.Info("alegate stopped cleanly")
	return nil
}
