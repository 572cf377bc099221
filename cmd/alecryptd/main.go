// Command alecryptd is the alecrypt crypto service: the ale.v1 Connect API
// (Connect, gRPC and gRPC-Web over one h2c port), gRPC health and server
// reflection, and Prometheus metrics on a separate port, serving keys from the
// embedded keystore file or from Vault (--keystore vault).
package main

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"

	"connectrpc.com/grpchealth"
	vaultapi "github.com/hashicorp/vault/api"

	"github.com/alecrypt/alecrypt/service/api"
	"github.com/alecrypt/alecrypt/service/audit"
	"github.com/alecrypt/alecrypt/service/authn"
	"github.com/alecrypt/alecrypt/service/cli"
	"github.com/alecrypt/alecrypt/service/engine"
	"github.com/alecrypt/alecrypt/service/key"
	"github.com/alecrypt/alecrypt/service/keyring"
	"github.com/alecrypt/alecrypt/service/keyring/refresh"
	"github.com/alecrypt/alecrypt/service/keystore"
	"github.com/alecrypt/alecrypt/service/keystore/filestore"
	"github.com/alecrypt/alecrypt/service/keystore/vaultstore"
	"github.com/alecrypt/alecrypt/service/metrics"
	"github.com/alecrypt/alecrypt/service/policy"
	"github.com/alecrypt/alecrypt/service/tlsconfig"
	"github.com/alecrypt/alecrypt/service/tracing"
	"github.com/alecrypt/alecrypt/service/vaultauth"
)

// Config is everything alecryptd reads from flags and the environment.
type Config struct {
	Listen          string
	Keystore        string
	Refresh         time.Duration
	MaxRequestBytes int
	DefaultAlias    string
	LogFormat       string
	LogLevel        slog.Level
	ShutdownTimeout time.Duration
	MetricsListen   string
	Vault           VaultConfig
	TLSCert         string
	TLSKey          string
	ClientCA        string
	InsecureListen  bool
	Policy          string
	AuditLog        string
	// MaxRemovalShare and RemovalConfirmAfter configure the keystore's
	// removal guard (refresh.WithRemovalGuard).
	MaxRemovalShare     float64
	RemovalConfirmAfter time.Duration
	// MaxInflightBytes and ReadTimeout bound what requests may hold; see
	// api.Options.
	MaxInflightBytes int64
	ReadTimeout      time.Duration
}

// VaultConfig is the Vault keystore's part of Config. Address, CA, token and
// namespace come from the standard VAULT_* environment.
type VaultConfig struct {
	Mount  string
	Prefix string
	Auth   vaultauth.Config
}

// keystoreVault is the --keystore value that selects Vault.
const keystoreVault = "vault"

const usage = `alecryptd: the alecrypt crypto service (ale.v1 over Connect, gRPC and gRPC-Web; health, reflection, metrics)

  alecryptd [--listen 127.0.0.1:8080] [--keystore FILE | --keystore vault] [flags]
`

func parseConfig(args []string, getenv func(string) string) (Config, error) {
	fs := flag.NewFlagSet("alecryptd", flag.ContinueOnError)
	var c Config
	inflight := int64(api.DefaultMaxInflightBytes)
	if v := getenv("ALECRYPT_MAX_INFLIGHT_BYTES"); v != "" {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil {
			return Config{}, fmt.Errorf("ALECRYPT_MAX_INFLIGHT_BYTES=%q is not a number of bytes", v)
		}
		inflight = n
	}
	fs.StringVar(&c.Listen, "listen", envOr(getenv, "ALECRYPT_LISTEN", "127.0.0.1:8080"), "address to serve Connect, gRPC and gRPC-Web on (env ALECRYPT_LISTEN)")
	fs.StringVar(&c.Keystore, "keystore", envOr(getenv, "ALECRYPT_KEYSTORE", "./alecrypt-data/keystore.json"), "embedded keystore file (created with one fresh key if missing), or \"vault\" (env ALECRYPT_KEYSTORE)")
	fs.StringVar(&c.TLSCert, "tls-cert", "", "PEM certificate for the API listener (with --tls-key); re-read when it changes")
	fs.StringVar(&c.TLSKey, "tls-key", "", "PEM private key for --tls-cert")
	fs.StringVar(&c.ClientCA, "client-ca", "", "PEM CA(s) that sign client certificates: enables mTLS caller identity (needs --tls-cert)")
	fs.BoolVar(&c.InsecureListen, "insecure-listen", false, "allow --listen beyond loopback without TLS (never in production)")
	fs.StringVar(&c.Policy, "policy", envOr(getenv, "ALECRYPT_POLICY", ""), "caller policy file (JSON); once set, callers must authenticate and anything not allowed is denied (env ALECRYPT_POLICY)")
	fs.StringVar(&c.AuditLog, "audit-log", envOr(getenv, "ALECRYPT_AUDIT_LOG", ""), "audit trail: a file to append to, or - for stdout; empty turns it off (env ALECRYPT_AUDIT_LOG)")
	fs.StringVar(&c.MetricsListen, "metrics-listen", envOr(getenv, "ALECRYPT_METRICS_LISTEN", "127.0.0.1:9090"), "address for Prometheus /metrics; empty turns it off (env ALECRYPT_METRICS_LISTEN)")
	fs.StringVar(&c.Vault.Mount, "vault-mount", vaultstore.DefaultMount, "Vault KV v2 mount holding the keys")
	fs.StringVar(&c.Vault.Prefix, "vault-prefix", vaultstore.DefaultPrefix, "path under the mount: one secret per fingerprint")
	fs.StringVar(&c.Vault.Auth.Method, "vault-auth", vaultauth.MethodToken, "Vault auth: token (VAULT_TOKEN), approle or kubernetes")
	fs.StringVar(&c.Vault.Auth.Mount, "vault-auth-mount", "", "auth mount path (default: the method's name)")
	fs.StringVar(&c.Vault.Auth.RoleID, "vault-role-id", "", "AppRole role id")
	fs.StringVar(&c.Vault.Auth.SecretIDFile, "vault-secret-id-file", "", "file holding the AppRole secret id")
	fs.StringVar(&c.Vault.Auth.Role, "vault-k8s-role", "", "Kubernetes auth role")
	fs.StringVar(&c.Vault.Auth.ServiceAccountTokenFile, "vault-k8s-token-file", "", "service account token file (default: the in-pod path)")
	fs.DurationVar(&c.Refresh, "refresh", 0, "how often to reload the keystore; 0 means 2s for a file, 30s for Vault (SIGHUP reloads at once)")
	fs.IntVar(&c.MaxRequestBytes, "max-request-bytes", api.DefaultMaxRequestBytes, "largest request message accepted; larger ones get ResourceExhausted")
	fs.Int64Var(&c.MaxInflightBytes, "max-inflight-bytes", inflight, "memory budget of calls in progress: each is charged 6x its request size, the heap it holds (per message for streams), before its body is read; calls over it get ResourceExhausted at once (env ALECRYPT_MAX_INFLIGHT_BYTES)")
	fs.DurationVar(&c.ReadTimeout, "read-timeout", api.DefaultReadTimeout, "a unary request body, or one stream message once started, must arrive within this; idle streams may wait between messages")
	fs.StringVar(&c.DefaultAlias, "default-alias", envOr(getenv, "ALECRYPT_DEFAULT_ALIAS", engine.DefaultAlias), "alias used when a request names no key (env ALECRYPT_DEFAULT_ALIAS)")
	fs.StringVar(&c.LogFormat, "log-format", "json", "log format: json or text")
	fs.TextVar(&c.LogLevel, "log-level", slog.LevelInfo, "log level: debug, info, warn or error")
	fs.DurationVar(&c.ShutdownTimeout, "shutdown-timeout", 10*time.Second, "how long in-flight calls may take to finish on SIGTERM")
	share := fs.String("max-removal-share", envOr(getenv, "ALECRYPT_MAX_REMOVAL_SHARE", strconv.FormatFloat(refresh.DefaultMaxRemovalShare, 'g', -1, 64)),
		"a reload removing more than this share (0-1) of the keys, or all of them, keeps serving them until the removal is confirmed (env ALECRYPT_MAX_REMOVAL_SHARE)")
	confirm := fs.String("removal-confirm-after", envOr(getenv, "ALECRYPT_REMOVAL_CONFIRM_AFTER", refresh.DefaultRemovalConfirmAfter.String()),
		"how long keys must stay missing, over at least two reloads, before a held removal is applied (env ALECRYPT_REMOVAL_CONFIRM_AFTER)")
	if err := cli.Parse(fs, args, os.Stdout, usage); err != nil {
		return Config{}, err
	}
	var err error
	if c.MaxRemovalShare, err = strconv.ParseFloat(*share, 64); err != nil || c.MaxRemovalShare < 0 || c.MaxRemovalShare > 1 {
		return Config{}, fmt.Errorf("--max-removal-share %q: want a number from 0 to 1", *share)
	}
	if c.RemovalConfirmAfter, err = time.ParseDuration(*confirm); err != nil || c.RemovalConfirmAfter < 0 {
		return Config{}, fmt.Errorf("--removal-confirm-after %q: want a duration of 0 or more", *confirm)
	}
	if fs.NArg() > 0 {
		return Config{}, fmt.Errorf("unexpected arguments: %q", fs.Args())
	}
	switch {
	case c.Keystore == "":
		return Config{}, errors.New("--keystore must not be empty")
	case c.MaxRequestBytes <= 0:
		return Config{}, errors.New("--max-request-bytes must be positive")
	case c.LogFormat != "json" && c.LogFormat != "text":
		return Config{}, fmt.Errorf("--log-format must be json or text, got %q", c.LogFormat)
	case c.Refresh < 0:
		return Config{}, errors.New("--refresh must not be negative")
	case c.ReadTimeout <= 0:
		return Config{}, errors.New("--read-timeout must be positive")
	}
	if err := api.CheckLimits(c.MaxRequestBytes, c.MaxInflightBytes); err != nil {
		return Config{}, err
	}
	if c.Refresh == 0 {
		c.Refresh = 2 * time.Second
		if c.Keystore == keystoreVault {
			c.Refresh = 30 * time.Second
		}
	}
	if c.Keystore == keystoreVault {
		if err := c.Vault.Auth.Validate(); err != nil {
			return Config{}, err
		}
	}
	if _, _, err := net.SplitHostPort(c.Listen); err != nil {
		return Config{}, fmt.Errorf("--listen %q: %w", c.Listen, err)
	}
	if (c.TLSCert == "") != (c.TLSKey == "") {
		return Config{}, errors.New("--tls-cert and --tls-key go together")
	}
	if c.ClientCA != "" && c.TLSCert == "" {
		return Config{}, errors.New("--client-ca needs --tls-cert: client certificates are verified during the TLS handshake")
	}
	if c.TLSCert == "" && !c.InsecureListen && !isLoopbackHost(c.Listen) {
		return Config{}, fmt.Errorf("--listen %s is beyond loopback: give --tls-cert/--tls-key, or --insecure-listen to accept plaintext", c.Listen)
	}
	if c.MetricsListen != "" {
		if _, _, err := net.SplitHostPort(c.MetricsListen); err != nil {
			return Config{}, fmt.Errorf("--metrics-listen %q: %w", c.MetricsListen, err)
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

func main() {
	cfg, err := parseConfig(os.Args[1:], os.Getenv)
	if errors.Is(err, flag.ErrHelp) {
		return
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "alecryptd:", err)
		os.Exit(2)
	}
	log := newLogger(os.Stderr, cfg)
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, cfg, log); err != nil {
		log.Error("alecryptd stopped", "err", err)
		os.Exit(1)
	}
}

func newLogger(w io.Writer, cfg Config) *slog.Logger {
	opts := &slog.HandlerOptions{Level: cfg.LogLevel}
	if cfg.LogFormat == "text" {
		return slog.New(slog.NewTextHandler(w, opts))
	}
	return slog.New(slog.NewJSONHandler(w, opts))
}

func run(ctx context.Context, cfg Config, log *slog.Logger) error {
	store, err := openKeystore(ctx, cfg, log)
	if err != nil {
		return err
	}
	ring := keyring.New()
	refresher := refresh.New(store, ring, log, cfg.Refresh,
		refresh.WithRemovalGuard(cfg.MaxRemovalShare, cfg.RemovalConfirmAfter))
	if err := refresher.Reload(ctx); err != nil {
		// With no keys yet there is nothing to serve: fail clearly.
		return fmt.Errorf("loading keys from %s: %w", cfg.Keystore, err)
	}
	go refresher.Run(ctx)
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	go func() {
		for range hup {
			log.Info("SIGHUP: reloading keystore")
			refresher.Trigger() // a full load: never skipped on the file's stat
		}
	}()

	engOpts := []engine.Option{engine.WithDefaultAlias(cfg.DefaultAlias)}
	var pol *policy.Store
	if cfg.Policy != "" {
		if pol, err = policy.Open(cfg.Policy, log); err != nil {
			return err
		}
		go pol.Run(ctx, 2*time.Second)
		engOpts = append(engOpts, engine.WithAuthorizer(pol))
	}
	eng := engine.New(ring, engOpts...)
	health := api.NewHealth()
	var auditLog *audit.Log
	if cfg.AuditLog != "" {
		auditLog, err = audit.Open(cfg.AuditLog, func(ok bool) {
			// An audit trail that cannot be written is a reason to take
			// this replica out of rotation, not to go on unaudited.
			api.SetServing(health, ok)
			if !ok {
				log.Error("audit log write failed; entries are held and health is NOT_SERVING until they are written")
			} else {
				log.Info("audit log writable again, held entries written; health is SERVING")
			}
		})
		if err != nil {
			return err
		}
		defer auditLog.Close()
		// Health recovers by itself once the trail takes writes again,
		// without waiting for a call to write (see package audit).
		go auditLog.Run(ctx, time.Second)
		// SIGHUP also reopens the trail, for logrotate without copytruncate.
		// signal.Notify delivers to every channel registered for a signal,
		// so the keystore's SIGHUP handler above is unaffected.
		auditHup := make(chan os.Signal, 1)
		signal.Notify(auditHup, syscall.SIGHUP)
		defer signal.Stop(auditHup)
		go func() {
			for range auditHup {
				if err := auditLog.Reopen(); err != nil {
					log.Error("SIGHUP: reopening the audit log failed; still writing to the old file", "err", err)
					continue
				}
				log.Info("SIGHUP: audit log reopened", "path", cfg.AuditLog)
			}
		}()
	}
	reg := metrics.NewRegistry()
	metrics.RegisterKeystore(reg, ring, refresher, time.Now)
	tr, err := tracing.FromEnv(ctx, os.Getenv, "alecryptd", os.Stdout)
	if err != nil {
		return err
	}
	defer func() {
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = tr.Shutdown(sctx)
	}()
	if tr.Provider != nil {
		log.Info("tracing on", "exporter", tr.Exporter)
	}
	handler := api.NewHandler(eng, ring, api.Options{MaxRequestBytes: cfg.MaxRequestBytes, Logger: log, Metrics: reg,
		TracerProvider: tr.Provider, Propagator: tr.Propagator,
		RequireAuth: authn.Required(pol != nil, cfg.ClientCA != ""), Audit: auditLog, Health: health,
		MaxInflightBytes: cfg.MaxInflightBytes, ReadTimeout: cfg.ReadTimeout,
		// SIGTERM ends idle streams, so Shutdown is not kept waiting on them.
		Stopping: ctx})
	if auditLog != nil {
		metrics.RegisterAudit(reg, auditLog)
	}
	var tokens authn.TokenVerifier
	if pol != nil {
		tokens = pol
	}
	handler = authn.Middleware(handler, tokens)
	ln, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		return err
	}
	srv := newServer(handler, log)
	if cfg.TLSCert != "" {
		if srv.TLSConfig, err = tlsconfig.Server(cfg.TLSCert, cfg.TLSKey, cfg.ClientCA); err != nil {
			return err
		}
		srv.Protocols.SetHTTP2(true)
		ln = tls.NewListener(ln, srv.TLSConfig)
	} else if !isLoopback(ln.Addr()) {
		log.Warn("listening beyond loopback without TLS (--insecure-listen); traffic and callers' tokens cross the network in the clear", "addr", ln.Addr().String())
	}
	switch {
	case pol == nil && cfg.ClientCA != "":
		log.Warn("no --policy: every caller with a client certificate from --client-ca may use every key")
	case pol == nil:
		log.Warn("no --policy: every caller that can reach this port may use every key")
	}
	errc := make(chan error, 2)
	go func() { errc <- srv.Serve(ln) }()
	if cfg.MetricsListen != "" {
		ready := func() bool {
			res, err := health.Check(context.Background(), &grpchealth.CheckRequest{})
			return err == nil && res.Status == grpchealth.StatusServing
		}
		msrv, maddr, err := metrics.Serve(cfg.MetricsListen, reg, ready, errc, metrics.WithReadyDetail(refresher.Problems))
		if err != nil {
			return fmt.Errorf("--metrics-listen: %w", err)
		}
		defer msrv.Close()
		log.Info("metrics listening", "addr", maddr.String())
	}
	log.Info("alecryptd listening", "addr", ln.Addr().String(), "keystore", cfg.Keystore, "keys", len(ring.Keys()))

	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	log.Info("shutting down: finishing in-flight calls", "timeout", cfg.ShutdownTimeout)
	sctx, cancel := context.WithTimeout(context.Background(), cfg.ShutdownTimeout)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		return fmt.Errorf("shutdown: %w", err)
	}
	log.Info("alecryptd stopped cleanly")
	return nil
}

// newServer serves HTTP/1.1 and HTTP/2 without TLS (h2c) on one port, which
// is what lets Connect, gRPC and gRPC-Web clients share it.
func newServer(h http.Handler, log *slog.Logger) *http.Server {
	var protocols http.Protocols
	protocols.SetHTTP1(true)
	protocols.SetUnencryptedHTTP2(true)
	return &http.Server{
		Handler:           h,
		Protocols:         &protocols,
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       5 * time.Minute,
		MaxHeaderBytes:    64 << 10,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
}

// openKeystore opens the configured keystore. The embedded file is created
// with one fresh key on first start; Vault is logged in to, and its token
// kept alive in the background.
func openKeystore(ctx context.Context, cfg Config, log *slog.Logger) (keystore.Reader, error) {
	if cfg.Keystore == keystoreVault {
		client, err := vaultapi.NewClient(vaultapi.DefaultConfig())
		if err != nil {
			return nil, fmt.Errorf("vault client: %w", err)
		}
		sec, err := vaultauth.Login(ctx, client, cfg.Vault.Auth)
		if err != nil {
			return nil, err
		}
		go vaultauth.KeepAlive(ctx, client, cfg.Vault.Auth, sec, log)
		store := vaultstore.New(client, vaultstore.WithMount(cfg.Vault.Mount), vaultstore.WithPrefix(cfg.Vault.Prefix))
		log.Info("using the vault keystore", "vault_addr", client.Address(), "path", store.Location())
		return store, nil
	}
	store := filestore.New(cfg.Keystore)
	var fresh key.Record
	created, err := store.Init(func() (key.Record, error) {
		var err error
		fresh, err = key.Generate(rand.Reader, key.AES256CTR, []string{cfg.DefaultAlias}, time.Now())
		return fresh, err
	})
	if err != nil {
		return nil, fmt.Errorf("initializing keystore: %w", err)
	}
	if created {
		// The fingerprint is public; the secret is never logged.
		log.Info("created keystore with a fresh key", "path", cfg.Keystore, "fingerprint", fresh.Fingerprint, "alias", cfg.DefaultAlias)
	}
	return store, nil
}

func isLoopback(a net.Addr) bool { return isLoopbackHost(a.String()) }

// isLoopbackHost reports whether host:port names a loopback address
// ("localhost" counts; an empty host means all interfaces and does not).
func isLoopbackHost(hostport string) bool {
	host, _, err := net.SplitHostPort(hostport)
	if err != nil {
		return false
	}
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(strings.Trim(host, "[]"))
	return ip != nil && ip.IsLoopback()
}
