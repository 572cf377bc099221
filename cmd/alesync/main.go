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
	"github.com/alecrypt/alecrypt/service/key"
	"github.com/alecrypt/alecrypt/service/keystore"
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

// run wires the Portal and Vault and runs once or on the interval; it
// returns the exit status.
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
	s := &syncer{
		fetch: func(ctx context.Context) (portal.Result, error) {
			token, err := portalToken(cfg)
			if err != nil {
				return portal.Result{}, err
			}
			return portal.NewClient(cfg.PortalURL, hc, token).FetchAll(ctx)
		},
		target: store,
		login:  vaultLogin(ctx, vc, cfg.Vault.Auth, log),
		dryRun: cfg.DryRun,
		// An empty Portal that is not a failure is still far more likely a
		// misconfigured Portal than a real wish to stop encrypting.
		allowEmpty: cfg.AllowEmptyPortal,
		log:        log,
		out:        stdout,
	}
	if cfg.MetricsListen != "" {
		reg := metrics.NewRegistry()
		s.metrics = metrics.NewSync(reg)
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
	if cfg.Interval == 0 {
		if !s.runAndReport(ctx) {
			return 1
		}
		return 0
	}
	for {
		s.runAndReport(ctx)
		select {
		case <-ctx.Done():
			log.Info("alesync stopping")
			return 0
		case <-time.After(cfg.Interval):
		}
	}
}

// syncer is one sync run's steps, with the Portal and Vault behind functions
// and an interface so the run's logic is testable without either.
type syncer struct {
	fetch      func(ctx context.Context) (portal.Result, error)
	target     keystore.CASStore
	login      func(ctx context.Context) error
	dryRun     bool
	allowEmpty bool
	log        *slog.Logger
	out        io.Writer
	metrics    *metrics.Sync // nil when --metrics-listen is off
}

// errEmptyPortal refuses a run that would retire every key because the
// Portal listed nothing at all.
var errEmptyPortal = errors.New("the Portal listed no keys at all; refusing to retire every active key (pass --allow-empty-portal if that is intended)")

// runAndReport runs one sync, prints its summary line and logs it; it
// reports whether the run was clean.
func (s *syncer) runAndReport(ctx context.Context) bool {
	start := time.Now()
	sum, err := s.runOnce(ctx)
	ok := err == nil && sum.OK()
	fmt.Fprintln(s.out, sum.String())
	attrs := []any{
		"added", sum.Added, "updated", sum.Updated, "retired", sum.Retired,
		"unchanged", sum.Unchanged, "failed", sum.Failed,
		"dry_run", s.dryRun, "ok", ok, "duration", time.Since(start).String(),
	}
	if s.metrics != nil {
		outcome := metrics.SyncOK
		switch {
		case err != nil:
			outcome = metrics.SyncAborted
		case !ok:
			outcome = metrics.SyncFailed
		}
		s.metrics.Observe(metrics.SyncCounts{Added: sum.Added, Updated: sum.Updated, Retired: sum.Retired,
			Unchanged: sum.Unchanged, Failed: sum.Failed}, outcome, time.Now())
	}
	switch {
	case err != nil:
		s.log.Error("sync run aborted; nothing was written", append(attrs, "err", err)...)
	case !ok:
		s.log.Error("sync run had failures", attrs...)
	default:
		s.log.Info("sync run", attrs...)
	}
	return ok
}

// runOnce fetches the whole listing before it reads or writes Vault, so a
// Portal failure changes nothing.
func (s *syncer) runOnce(ctx context.Context) (keysync.Summary, error) {
	res, err := s.fetch(ctx)
	if err != nil {
		return keysync.Summary{}, err
	}
	unreadable := 0
	for _, p := range res.Problems {
		if p.Fingerprint == "" {
			unreadable++
		}
		s.log.Warn("skipping a Portal record", "index", p.Index, "fingerprint", p.Fingerprint, "err", p.Err)
	}
	if s.login != nil {
		if err := s.login(ctx); err != nil {
			return keysync.Summary{}, err
		}
	}
	current, err := s.target.Entries(ctx)
	if err != nil {
		return keysync.Summary{}, err
	}
	if len(res.Records) == 0 && len(res.Problems) == 0 && !s.allowEmpty && anyActive(current) {
		return keysync.Summary{}, errEmptyPortal
	}
	actions := keysync.Plan(res.Records, res.FailedFingerprints(), current)
	if unreadable > 0 {
		actions = keysync.HoldRetirements(actions, "the Portal sent a record whose fingerprint is unreadable; it may be this key")
	}
	if s.dryRun {
		for _, a := range actions {
			fmt.Fprintln(s.out, a.String())
		}
	}
	sum := keysync.Apply(ctx, s.target, actions, s.dryRun)
	// A record whose fingerprint is unreadable has no action, but it is a
	// failure all the same.
	sum.Failed += unreadable
	for _, o := range sum.Outcomes {
		a := o.Action
		switch {
		case o.Failed():
			s.log.Error("key not synced", "fingerprint", a.Fingerprint, "action", string(a.Kind), "retried", o.Retried, "err", o.Err)
		case a.Kind == keysync.Unchanged || s.dryRun:
			s.log.Debug("key planned", "fingerprint", a.Fingerprint, "action", string(a.Kind))
		default:
			s.log.Info("key written", "fingerprint", a.Fingerprint, "action", string(a.Kind),
				"state", string(a.Record.State), "key_version", a.Record.Version, "kv_version", o.Version, "retried", o.Retried)
		}
	}
	return sum, nil
}

func anyActive(entries map[string]keystore.Entry) bool {
	for _, e := range entries {
		if e.Err == nil && e.Record.State == key.Active {
			return true
		}
	}
	return false
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
