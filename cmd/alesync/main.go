// Command alesync copies the Portal's Secret Keys into Vault, once or on an
// interval: new and changed keys are written with check-and-set, keys the
// Portal no longer lists become decrypt-only (never deleted), and a run
// against an unchanged Portal writes nothing. See service/keysync for the
// rules and service/portal for the Portal contract.
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
	"crypto/tls"
	"crypto/x509"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/hashicorp/vault/api"

	"github.com/alecrypt/alecrypt/service/cli"
	"github.com/alecrypt/alecrypt/service/keystore/vaultstore"
	"github.com/alecrypt/alecrypt/service/keysync"
	"github.com/alecrypt/alecrypt/service/metrics"
	"github.com/alecrypt/alecrypt/service/portal"
	"github.com/alecrypt/alecrypt/service/secret"
	"github.com/alecrypt/alecrypt/service/vaultauth"
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

	Vault VaultConfig

	// Interval is zero for a single run.
	Interval         time.Duration
	DryRun           bool
	AllowEmptyPortal bool

	LogFormat string
	LogLevel  slog.Level
	// MetricsListen serves Prometheus /metrics while alesync runs (useful
	// with --interval); empty turns it off.
	MetricsListen string
}

// VaultConfig is where the keys go and how to log in, with the same flags as
// alecryptd. Address, CA, token and namespace come from the standard VAULT_*
// environment.
type VaultConfig struct {
	Mount  string
	Prefix string
	Auth   vaultauth.Config
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
	fs.StringVar(&c.Vault.Mount, "vault-mount", vaultstore.DefaultMount, "Vault KV v2 mount holding the keys")
	fs.StringVar(&c.Vault.Prefix, "vault-prefix", vaultstore.DefaultPrefix, "path under the mount: one secret per fingerprint")
	fs.StringVar(&c.Vault.Auth.Method, "vault-auth", vaultauth.MethodToken, "Vault auth: token (VAULT_TOKEN), approle or kubernetes")
	fs.StringVar(&c.Vault.Auth.Mount, "vault-auth-mount", "", "auth mount path (default: the method's name)")
	fs.StringVar(&c.Vault.Auth.RoleID, "vault-role-id", "", "AppRole role id")
	fs.StringVar(&c.Vault.Auth.SecretIDFile, "vault-secret-id-file", "", "file holding the AppRole secret id")
	fs.StringVar(&c.Vault.Auth.Role, "vault-k8s-role", "", "Kubernetes auth role")
	fs.StringVar(&c.Vault.Auth.ServiceAccountTokenFile, "vault-k8s-token-file", "", "service account token file (default: the in-pod path)")
	fs.BoolVar(&once, "once", false, "run one sync and exit (the default)")
	fs.DurationVar(&c.Interval, "interval", 0, "sync every D until SIGINT or SIGTERM, e.g. 5m")
	fs.BoolVar(&c.DryRun, "dry-run", false, "print the plan, one line per key, and write nothing")
	fs.BoolVar(&c.AllowEmptyPortal, "allow-empty-portal", false, "let a Portal that lists no keys at all retire every active key (refused by default)")
	fs.StringVar(&c.LogFormat, "log-format", "json", "log format: json or text")
	fs.TextVar(&c.LogLevel, "log-level", slog.LevelInfo, "log level: debug, info, warn or error")
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
	case c.LogFormat != "json" && c.LogFormat != "text":
		return Config{}, fmt.Errorf("--log-format must be json or text, got %q", c.LogFormat)
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
	if errors.Is(err, flag.ErrHelp) {
		return
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "alesync:", err)
		os.Exit(2)
	}
	log := newLogger(os.Stderr, cfg)
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	os.Exit(run(ctx, cfg, log, os.Stdout))
}

func newLogger(w io.Writer, cfg Config) *slog.Logger {
	opts := &slog.HandlerOptions{Level: cfg.LogLevel}
	if cfg.LogFormat == "text" {
		return slog.New(slog.NewTextHandler(w, opts))
	}
	return slog.New(slog.NewJSONHandler(w, opts))
}

// run wires the Portal and Vault and runs keysync once or on the interval;
// it returns the exit status.
func run(ctx context.Context, cfg Config, log *slog.Logger, stdout io.Writer) int {
	hc, err := portalHTTPClient(cfg.PortalCA)
	if err != nil {
		log.Error("alesync cannot start", "err", err)
		return 1
	}
	vcfg := api.DefaultConfig()
	if vcfg.Error != nil {
		log.Error("alesync cannot start", "err", fmt.Errorf("vault config: %w", vcfg.Error))
		return 1
	}
	vc, err := api.NewClient(vcfg)
	if err != nil {
		log.Error("alesync cannot start", "err", fmt.Errorf("vault client: %w", err))
		return 1
	}
	store := vaultstore.New(vc, vaultstore.WithMount(cfg.Vault.Mount), vaultstore.WithPrefix(cfg.Vault.Prefix))
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
		Login:            vaultLogin(ctx, vc, cfg.Vault.Auth, log),
		Log:              log,
		Out:              stdout,
	}
	if cfg.MetricsListen != "" {
		reg := metrics.NewRegistry()
		opts.Observer = metrics.NewSync(reg)
		msrv, addr, err := metrics.Serve(cfg.MetricsListen, reg, nil, nil)
		if err != nil {
			log.Error("alesync cannot start", "err", fmt.Errorf("--metrics-listen: %w", err))
			return 1
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
	if err != nil {
		return 1
	}
	return 0
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
// roots otherwise.
func portalHTTPClient(caFile string) (*http.Client, error) {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.TLSClientConfig = &tls.Config{MinVersion: tls.VersionTLS12}
	if caFile != "" {
		pem, err := os.ReadFile(caFile)
		if err != nil {
			return nil, fmt.Errorf("--portal-ca: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("--portal-ca %s: no PEM certificates", caFile)
		}
		tr.TLSClientConfig.RootCAs = pool
	}
	return &http.Client{Transport: tr, Timeout: portalRequestTimeout}, nil
}

// redactURL is the Portal URL for logs: scheme, host and path only.
func redactURL(u *url.URL) string {
	return (&url.URL{Scheme: u.Scheme, Host: u.Host, Path: u.Path}).String()
}

// vaultLogin returns the login step of a run: the first run that reaches
// Vault logs in (a failure fails that run; the next run tries again), and
// from then on the token is renewed, or renewed by logging in again, in the
// background until ctx ends.
func vaultLogin(ctx context.Context, client *api.Client, auth vaultauth.Config, log *slog.Logger) func(context.Context) error {
	loggedIn := false
	return func(runCtx context.Context) error {
		if loggedIn {
			return nil
		}
		sec, err := vaultauth.Login(runCtx, client, auth)
		if err != nil {
			return err
		}
		loggedIn = true
		go vaultauth.KeepAlive(ctx, client, auth, sec, log)
		return nil
	}
}
