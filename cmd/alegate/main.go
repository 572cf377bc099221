// Command alegate is the Kitchen gateway: a reverse proxy and WebSocket
// bridge that terminates ALE in front of a kitchen backend, asking alecryptd
// for every cryptographic operation. It holds no keys. config.go reads the
// flags and the environment; this file wires the gateway and serves it.
package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"time"

	"connectrpc.com/connect"
	"connectrpc.com/otelconnect"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/alecrypt/alecrypt/internal/daemon"
	"github.com/alecrypt/alecrypt/internal/gateway"
	"github.com/alecrypt/alecrypt/internal/metrics"
	"github.com/alecrypt/alecrypt/internal/tracing"
	"github.com/alecrypt/alecrypt/service/client"
)

func main() {
	cfg, err := parseConfig(os.Args[1:], os.Getenv, os.Stdout)
	daemon.Main("alegate", err, cfg.Log, func(ctx context.Context, log *slog.Logger) error { return run(ctx, cfg, log) })
}

func run(ctx context.Context, cfg Config, log *slog.Logger) error {
	if limit, ok := daemon.OpenFiles(); ok {
		logOpenFiles(log, limit)
	}
	tr, err := tracing.FromEnv(ctx, os.Getenv, "alegate", os.Stdout)
	if err != nil {
		return err
	}
	defer tr.Close()
	cc, err := cryptoClient(cfg, tr, log)
	if err != nil {
		return err
	}
	errc := make(chan error, 2)
	var (
		gmetrics *gateway.Metrics
		reg      *prometheus.Registry
	)
	if cfg.MetricsListen != "" {
		reg = metrics.NewRegistry()
	}
	var registerer prometheus.Registerer // a nil *Registry would not be a nil Registerer
	if reg != nil {
		registerer = reg
	}
	replays, closeReplays, err := cfg.Replay.open(registerer)
	if err != nil {
		return err
	}
	defer closeReplays()
	replayReady := readyReplay(replays)
	if cfg.MetricsListen != "" {
		gmetrics = gateway.NewMetrics(reg)
		// Ready only while alecryptd (and the replay store, when on)
		// answers: without it every request would fail, so a balancer
		// should send traffic elsewhere.
		ready := func() bool {
			rctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			defer cancel()
			return cc.Serving(rctx) == nil && replayReady()
		}
		msrv, maddr, err := metrics.Serve(cfg.MetricsListen, reg, ready, errc)
		if err != nil {
			return fmt.Errorf("--metrics-listen: %w", err)
		}
		defer msrv.Close()
		log.Info("metrics listening", "addr", maddr.String())
	}
	opts := cfg.gatewayOptions()
	opts.TracerProvider, opts.Propagator = tr.Provider, tr.Propagator
	opts.Metrics, opts.Logger, opts.Replay = gmetrics, log, replays
	gw := gateway.New(cc.Crypto, cfg.Upstream, opts)
	defer gw.Close()
	srv := gateway.NewServer(gw, cfg.ReadTimeout, cfg.IdleTimeout)
	srv.ErrorLog = slog.NewLogLogger(log.Handler(), slog.LevelWarn)
	ln, err := daemon.Listen(srv, cfg.Listen, cfg.TLSCert, cfg.TLSKey, "", log)
	if err != nil {
		return err
	}
	log.Info("alegate listening", append([]any{"addr", ln.Addr().String(), "upstream", cfg.Upstream.String(), "crypto", cfg.Crypto,
		"require_ale", cfg.RequireALE, "encrypt_responses", cfg.EncryptResponses}, cfg.Replay.describe()...)...)
	// WebSockets are hijacked connections: Shutdown does not wait for them,
	// and they end with the process.
	return daemon.Serve(ctx, "alegate", srv, ln, errc, cfg.ShutdownTimeout, log)
}

// cryptoClient is the one client for every call to alecryptd: unary calls
// over HTTP/1.1 keep-alive connections on http:// (half the server CPU of
// h2c per call), WebSocket sessions' Stream over h2c; TLS negotiates HTTP/2.
// With tracing on, its calls carry the trace.
func cryptoClient(cfg Config, tr *tracing.Tracing, log *slog.Logger) (*client.Clients, error) {
	opts := []connect.ClientOption{gateway.ClientCodec()}
	if tr.Provider != nil {
		otel, err := otelconnect.NewInterceptor(otelconnect.WithTracerProvider(tr.Provider),
			otelconnect.WithPropagator(tr.Propagator), otelconnect.WithoutMetrics())
		if err != nil {
			return nil, err
		}
		opts = append(opts, connect.WithInterceptors(otel))
		log.Info("tracing on", "exporter", tr.Exporter)
	}
	ccfg := client.Config{URL: cfg.Crypto, HTTP1: true, CAFile: cfg.CryptoCA, CertFile: cfg.CryptoCert, KeyFile: cfg.CryptoKey}
	if cfg.CryptoTokenFile != "" {
		var err error
		if ccfg.Token, err = client.TokenFromFile(cfg.CryptoTokenFile); err != nil {
			return nil, err
		}
	}
	return client.New(ccfg, opts...)
}
