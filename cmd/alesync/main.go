// Command alesync copies the Portal's Secret Keys into Vault, once or on an
// interval: new and changed keys are written with check-and-set, keys the
// Portal no longer lists become decrypt-only (never deleted), and a run
// against an unchanged Portal writes nothing. See internal/keysync for the
// rules and internal/portal for the Portal contract.
//
// A Portal failure aborts the run before anything is written; a Vault failure
// affects only the keys it touches. Each run ends with one summary line on
// stdout (and in the JSON log). Exit status: 0 every key synced, 1 the run
// had failures, 2 usage error. With --interval, alesync runs until SIGINT or
// SIGTERM and then exits 0; each run's outcome is in its summary.
//
// It never logs the Portal token, Vault credentials or key material.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/alecrypt/alecrypt/internal/cli"
	"github.com/alecrypt/alecrypt/internal/daemon"
	"github.com/alecrypt/alecrypt/internal/daemon/vaultcfg"
	"github.com/alecrypt/alecrypt/internal/keysync"
	"github.com/alecrypt/alecrypt/internal/metrics"
	"github.com/alecrypt/alecrypt/internal/portal"
	"github.com/alecrypt/alecrypt/internal/tlsconfig"
	"github.com/alecrypt/alecrypt/internal/vaultauth"
	"github.com/alecrypt/alecrypt/service/secret"
)

// portalRequestTimeout bounds one page request, body included: a 64 MiB page
// over a slow link still fits, a hung Portal does not stall the run forever.
const portalRequestTimeout = 2 * time.Minute

const usage = `alesync: copy the Portal's Secret Keys into Vault

  alesync --portal-url https://portal.example --portal-token-file F [--portal-ca CA.pem]
          [--vault-mount secret] [--vault-prefix alecrypt/keys] [--once | --interval D] [--dry-run]

Vault is configured by the standard VAULT_ADDR, VAULT_TOKEN, VAULT_CACERT and VAULT_NAMESPACE
environment, or --vault-auth approle or kubernetes. Prints one summary line per run:
  added=N updated=N retired=N unchanged=N failed=N
Exit status: 0 every key synced, 1 the run had failures, 2 usage error.
`

// Config is everything alesync reads from flags and the environment.
type Config struct {
	PortalURL       *url.URL
	PortalTokenFile string
	// PortalToken is ALESYNC_PORTAL_TOKEN; secret.Bytes keeps it out of
	// any accidental print of the Config.
	PortalToken secret.Bytes
	PortalCA    string

	Vault vaultcfg.Config

	// Interval is zero for a single run.
	Interval         time.Duration
	DryRun           bool
	AllowEmptyPortal bool

	Log daemon.Log
	// MetricsListen serves Prometheus /metrics while alesync runs (useful
	// with --interval); empty turns it off.
	MetricsListen string
	// InsecureMetricsListen allows MetricsListen beyond loopback.
	InsecureMetricsListen bool
}

func parseConfig(args []string, getenv func(string) string, stdout io.Writer) (Config, error) {
	fs := flag.NewFlagSet("alesync", flag.ContinueOnError)
	var (
		c         Config
		portalURL string
		once      bool
	)
	fs.StringVar(&portalURL, "portal-url", getenv("ALESYNC_PORTAL_URL"), "the Portal's base URL, https:// (env ALESYNC_PORTAL_URL)")
	fs.StringVar(&c.PortalTokenFile, "portal-token-file", "", "file holding the Portal's bearer token (or the token itself in env ALESYNC_PORTAL_TOKEN)")
	fs.StringVar(&c.PortalCA, "portal-ca", getenv("ALESYNC_PORTAL_CA"), "PEM file of the CA(s) to trust for the Portal instead of the system roots (env ALESYNC_PORTAL_CA)")
	fs.StringVar(&c.MetricsListen, "metrics-listen", getenv("ALESYNC_METRICS_LISTEN"), "address for Prometheus /metrics (sync results); empty turns it off (env ALESYNC_METRICS_LISTEN)")
	fs.BoolVar(&c.InsecureMetricsListen, "insecure-metrics-listen", false, "allow --metrics-listen beyond loopback: /metrics has no TLS or authentication (restrict who reaches the port)")
	c.Vault.RegisterFlags(fs)
	fs.BoolVar(&once, "once", false, "run one sync and exit (the default)")
	fs.DurationVar(&c.Interval, "interval", 0, "sync every D until SIGINT or SIGTERM, e.g. 5m")
	fs.BoolVar(&c.DryRun, "dry-run", false, "print the plan, one line per key, and write nothing")
	fs.BoolVar(&c.AllowEmptyPortal, "allow-empty-portal", false, "let a Portal that lists no keys at all retire every active key (refused by default)")
	c.Log.RegisterFlags(fs)
	// Every flag has an environment variable too (ALESYNC_ and the flag name).
	if err := cli.FromEnv(fs, "ALESYNC", getenv); err != nil {
		return Config{}, err
	}
	if err := cli.Parse(fs, args, stdout, usage); err != nil {
		return Config{}, err
	}
	envToken := getenv("ALESYNC_PORTAL_TOKEN")
	c.PortalToken = secret.FromString(envToken)
	c.Vault.Mount = strings.Trim(c.Vault.Mount, "/")
	c.Vault.Prefix = strings.Trim(c.Vault.Prefix, "/")
	switch {
	case portalURL == "":
		return Config{}, errors.New("--portal-url is required")
	case c.PortalTokenFile == "" && envToken == "":
		return Config{}, errors.New("the Portal token is required: --portal-token-file or env ALESYNC_PORTAL_TOKEN")
	case c.PortalTokenFile != "" && envToken != "":
		return Config{}, errors.New("give the Portal token once: --portal-token-file or env ALESYNC_PORTAL_TOKEN, not both")
	case once && c.Interval != 0:
		return Config{}, errors.New("--once and --interval exclude each other")
	case c.Interval < 0 || (c.Interval > 0 && c.Interval < time.Second):
		return Config{}, errors.New("--interval must be at least 1s")
	case c.Vault.Mount == "" || c.Vault.Prefix == "":
		return Config{}, errors.New("--vault-mount and --vault-prefix must not be empty")
	}
	if err := c.Log.Validate(); err != nil {
		return Config{}, err
	}
	if err := daemon.CheckMetricsListen(c.MetricsListen, c.InsecureMetricsListen); err != nil {
		return Config{}, err
	}
	if envToken != "" {
		if err := portal.CheckToken(envToken); err != nil {
			return Config{}, fmt.Errorf("env ALESYNC_PORTAL_TOKEN: %w", err)
		}
	}
	u, err := url.Parse(portalURL)
	if err != nil {
		return Config{}, errors.New("--portal-url is not a URL")
	}
	if u.Scheme != "https" || u.Host == "" || u.User != nil {
		return Config{}, errors.New("--portal-url must be https://host[/path] without credentials")
	}
	c.PortalURL = u
	if err := c.Vault.Auth.Validate(); err != nil {
		return Config{}, err
	}
	if c.Vault.Auth.Method == vaultauth.MethodToken && getenv("VAULT_TOKEN") == "" {
		return Config{}, errors.New("VAULT_TOKEN is not set: set it or choose --vault-auth approle or kubernetes")
	}
	return c, nil
}

func main() {
	cfg, err := parseConfig(os.Args[1:], os.Getenv, os.Stdout)
	daemon.Main("alesync", err, cfg.Log, func(ctx context.Context, log *slog.Logger) error { return run(ctx, cfg, log, os.Stdout) })
}

// run wires the Portal and Vault into keysync.Run, once or on the interval.
// Its error is the exit status: a single run that was not clean is one.
func run(ctx context.Context, cfg Config, log *slog.Logger, stdout io.Writer) error {
	hc, err := portalHTTPClient(cfg.PortalCA)
	if err != nil {
		return err
	}
	vc, err := vaultcfg.NewClient()
	if err != nil {
		return err
	}
	store := cfg.Vault.Store(vc)
	fetch := func(ctx context.Context) (portal.Result, error) {
		token, err := portalToken(cfg)
		if err != nil {
			return portal.Result{}, err
		}
		return portal.NewClient(cfg.PortalURL, hc, token).FetchAll(ctx)
	}
	opts := keysync.Options{
		Interval:         cfg.Interval,
		DryRun:           cfg.DryRun,
		AllowEmptyPortal: cfg.AllowEmptyPortal,
		// The first run that reaches Vault logs in (a failure fails that
		// run; the next one tries again); the token is kept alive after.
		Login: vaultcfg.LoginOnce(ctx, vc, cfg.Vault.Auth, log),
		Log:   log,
		Out:   stdout,
	}
	if cfg.MetricsListen != "" {
		reg := metrics.NewRegistry()
		opts.Observer = keysync.NewMetrics(reg)
		msrv, addr, err := metrics.Serve(cfg.MetricsListen, reg, nil, nil)
		if err != nil {
			return fmt.Errorf("--metrics-listen: %w", err)
		}
		defer msrv.Close()
		log.Info("metrics listening", "addr", addr.String())
	}
	log.Info("alesync starting", "portal", redactURL(cfg.PortalURL), "vault", vc.Address(), "location", store.Location(),
		"vault_auth", cfg.Vault.Auth.Method, "interval", cfg.Interval.String(), "dry_run", cfg.DryRun)
	err = keysync.Run(ctx, fetch, store, opts)
	if cfg.Interval > 0 {
		log.Info("alesync stopping")
	}
	return err
}

// portalToken reads the token for this run: re-reading the file every run
// picks up a rotated Kubernetes secret without a restart.
func portalToken(cfg Config) (string, error) {
	if cfg.PortalTokenFile == "" {
		return string(cfg.PortalToken.Expose()), nil
	}
	b, err := os.ReadFile(cfg.PortalTokenFile)
	if err != nil {
		return "", fmt.Errorf("portal token: %w", err)
	}
	token := strings.TrimSpace(string(b))
	clear(b)
	if err := portal.CheckToken(token); err != nil {
		return "", fmt.Errorf("portal token file %s: %w", cfg.PortalTokenFile, err)
	}
	return token, nil
}

// portalHTTPClient trusts caFile's certificates only when given, the system
// roots otherwise (TLS 1.2 or later either way).
func portalHTTPClient(caFile string) (*http.Client, error) {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	var err error
	if tr.TLSClientConfig, err = tlsconfig.Client(caFile, "", ""); err != nil {
		return nil, fmt.Errorf("--portal-ca: %w", err)
	}
	return &http.Client{Transport: tr, Timeout: portalRequestTimeout}, nil
}

// redactURL is the Portal URL for logs: scheme, host and path only.
func redactURL(u *url.URL) string {
	return (&url.URL{Scheme: u.Scheme, Host: u.Host, Path: u.Path}).String()
}
