package main

import (
	"cmp"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/url"
	"strings"
	"time"

	alev1 "github.com/alecrypt/alecrypt/gen/ale/v1"
	"github.com/alecrypt/alecrypt/internal/cli"
	"github.com/alecrypt/alecrypt/internal/daemon"
	"github.com/alecrypt/alecrypt/internal/gateway"
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
	Log              daemon.Log
	ShutdownTimeout  time.Duration
	TLSCert, TLSKey  string
	InsecureListen   bool
	CryptoCA         string
	CryptoCert       string
	CryptoKey        string
	CryptoTokenFile  string
	Replay           replayConfig

	// InsecureMetricsListen allows MetricsListen beyond loopback.
	InsecureMetricsListen bool
}

const usage = `alegate: the Kitchen gateway (ALE reverse proxy and WebSocket bridge in front of a kitchen backend)

  alegate --upstream http://KITCHEN [--crypto http://127.0.0.1:8080] [--listen 127.0.0.1:8081] [flags]
`

func parseConfig(args []string, getenv func(string) string, stdout io.Writer) (Config, error) {
	fs := flag.NewFlagSet("alegate", flag.ContinueOnError)
	var c Config
	allowOrigins := getenv("ALEGATE_ALLOW_ORIGINS")
	var upstream, wsOrigins, frameFormat string
	fs.StringVar(&c.Listen, "listen", daemon.EnvOr(getenv, "ALEGATE_LISTEN", "127.0.0.1:8081"), "address to serve kitchen clients on (env ALEGATE_LISTEN)")
	fs.StringVar(&upstream, "upstream", "", "kitchen backend base URL, http(s); WebSockets go to the same host as ws(s) (required)")
	fs.StringVar(&c.Crypto, "crypto", "http://127.0.0.1:8080", "alecryptd base URL")
	fs.BoolVar(&c.RequireALE, "require-ale", true, "refuse requests without ALE headers (errorCode 1)")
	fs.BoolVar(&c.EncryptResponses, "encrypt-responses", false, "encrypt upstream response bodies under the request's key")
	fs.Int64Var(&c.MaxBodyBytes, "max-body-bytes", gateway.DefaultMaxBodyBytes, "largest encrypted request body (413 beyond)")
	fs.Int64Var(&c.MaxResponseBytes, "max-response-bytes", gateway.DefaultMaxResponseBytes, "largest upstream response to encrypt (502 beyond)")
	fs.Int64Var(&c.MaxFrameBytes, "max-frame-bytes", gateway.DefaultMaxFrameBytes, "largest WebSocket message")
	fs.StringVar(&frameFormat, "ws-expect", "json", "check each WebSocket frame's plaintext before forwarding: json, utf8 or none (frames under a wrong key decrypt to garbage; docs/gateway.md, Frame check)")
	fs.StringVar(&allowOrigins, "allow-origins", allowOrigins, "comma-separated exact origins (scheme://host[:port], null) or * allowed for WebSockets and CORS, beyond same origin and the app origins ionic, ionic://, capacitor:// (env ALEGATE_ALLOW_ORIGINS)")
	fs.StringVar(&wsOrigins, "ws-origins", "", "deprecated alias of --allow-origins (a bare host H means http://H and https://H)")
	fs.DurationVar(&c.ReadTimeout, "read-timeout", gateway.DefaultReadTimeout, "cut a client whose request headers, or whose body, stop arriving for this long")
	fs.DurationVar(&c.IdleTimeout, "idle-timeout", gateway.DefaultIdleTimeout, "close keep-alive connections idle this long")
	fs.DurationVar(&c.WSIdleTimeout, "ws-idle-timeout", gateway.DefaultWebSocketIdleTimeout, "close WebSockets on which no message, ping or pong passed either way for this long; 0 turns it off")
	fs.StringVar(&c.MetricsListen, "metrics-listen", daemon.EnvOr(getenv, "ALEGATE_METRICS_LISTEN", "127.0.0.1:9091"), "address for Prometheus /metrics, /healthz and /readyz; --metrics-listen= turns it off (env ALEGATE_METRICS_LISTEN)")
	fs.BoolVar(&c.InsecureMetricsListen, "insecure-metrics-listen", false, "allow --metrics-listen beyond loopback: its endpoints have no TLS or authentication (restrict who reaches the port)")
	fs.StringVar(&c.TLSCert, "tls-cert", "", "PEM certificate for the listener (with --tls-key)")
	fs.StringVar(&c.TLSKey, "tls-key", "", "PEM key for --tls-cert")
	fs.BoolVar(&c.InsecureListen, "insecure-listen", false, "allow --listen beyond loopback without TLS")
	fs.StringVar(&c.CryptoCA, "crypto-ca", "", "PEM CA to trust for an https:// --crypto")
	fs.StringVar(&c.CryptoCert, "crypto-cert", "", "client certificate presented to alecryptd (mTLS)")
	fs.StringVar(&c.CryptoKey, "crypto-key", "", "key for --crypto-cert")
	fs.StringVar(&c.CryptoTokenFile, "crypto-token-file", "", "file holding a bearer token for alecryptd")
	c.Log.RegisterFlags(fs)
	fs.DurationVar(&c.ShutdownTimeout, "shutdown-timeout", 10*time.Second, "grace period for in-flight requests on SIGTERM")
	c.Replay.flags(fs)
	// Every flag has an environment variable too (ALEGATE_ and the flag name).
	if err := cli.FromEnv(fs, "ALEGATE", getenv); err != nil {
		return Config{}, err
	}
	if err := cli.Parse(fs, args, stdout, usage); err != nil {
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
	if err := daemon.CheckListen(c.Listen, c.TLSCert, c.TLSKey, c.InsecureListen); err != nil {
		return Config{}, err
	}
	if err := daemon.CheckMetricsListen(c.MetricsListen, c.InsecureMetricsListen); err != nil {
		return Config{}, err
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
	if err := c.Log.Validate(); err != nil {
		return Config{}, err
	}
	if err := c.Replay.validate(); err != nil {
		return Config{}, err
	}
	return c, nil
}

// gatewayOptions are the gateway's options that come from flags; run adds
// what it builds (tracing, metrics, logger, replay store).
func (c Config) gatewayOptions() gateway.Options {
	return gateway.Options{
		RequireALE:       c.RequireALE,
		EncryptResponses: c.EncryptResponses,
		MaxBodyBytes:     c.MaxBodyBytes,
		MaxResponseBytes: c.MaxResponseBytes,
		MaxFrameBytes:    c.MaxFrameBytes,
		Origins:          c.Origins,
		FrameFormat:      c.FrameFormat,
		BodyReadTimeout:  c.ReadTimeout,
		// 0 is the flag's "off"; the option's off is negative.
		WebSocketIdleTimeout: cmp.Or(c.WSIdleTimeout, -1),
	}
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
