// Command alecryptd is the alecrypt crypto service: the ale.v1 Connect API
// (Connect, gRPC and gRPC-Web over one h2c port), gRPC health and server
// reflection, and Prometheus metrics on a separate port, serving keys from the
// embedded keystore file or from Vault (--keystore vault).
package main

import (
	"context"
	"crypto/rand"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"syscall"
	"time"

	"connectrpc.com/grpchealth"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/alecrypt/alecrypt/internal/api"
	"github.com/alecrypt/alecrypt/internal/audit"
	"github.com/alecrypt/alecrypt/internal/authn"
	"github.com/alecrypt/alecrypt/internal/daemon"
	"github.com/alecrypt/alecrypt/internal/daemon/vaultcfg"
	"github.com/alecrypt/alecrypt/internal/engine"
	"github.com/alecrypt/alecrypt/internal/h2conn"
	"github.com/alecrypt/alecrypt/internal/key"
	"github.com/alecrypt/alecrypt/internal/keyring"
	"github.com/alecrypt/alecrypt/internal/keyring/refresh"
	"github.com/alecrypt/alecrypt/internal/keystore"
	"github.com/alecrypt/alecrypt/internal/metrics"
	"github.com/alecrypt/alecrypt/internal/policy"
	"github.com/alecrypt/alecrypt/internal/tracing"
)

func main() {
	cfg, err := parseConfig(os.Args[1:], os.Getenv)
	daemon.Main("alecryptd", err, cfg.Log, func(ctx context.Context, log *slog.Logger) error { return run(ctx, cfg, log) })
}

// run starts alecryptd's parts in order (keys, policy, audit, tracing, the
// API handler, listeners) and serves until ctx ends.
func run(ctx context.Context, cfg Config, log *slog.Logger) error {
	ring, refresher, err := startKeys(ctx, cfg, log)
	if err != nil {
		return err
	}
	var pol *policy.Store
	if cfg.Policy != "" {
		if pol, err = policy.Open(cfg.Policy, log); err != nil {
			return err
		}
		go pol.Run(ctx, 2*time.Second)
	}
	health := api.NewHealth()
	auditLog, err := startAudit(ctx, cfg, health, log)
	if err != nil {
		return err
	}
	if auditLog != nil {
		defer func() {
			// The last head, after the last call: what the external record
			// must find at the end of the trail.
			logChainHead(log, auditLog, "audit chain head at shutdown")
			_ = auditLog.Close()
		}()
	}
	tr, err := tracing.FromEnv(ctx, os.Getenv, "alecryptd", os.Stdout)
	if err != nil {
		return err
	}
	defer tr.Close()
	if tr.Provider != nil {
		log.Info("tracing on", "exporter", tr.Exporter)
	}
	reg := metrics.NewRegistry()
	metrics.RegisterKeystore(reg, ring, refresher, time.Now)
	metrics.RegisterKeyUsage(reg, ring)
	if auditLog != nil {
		metrics.RegisterAudit(reg, auditLog)
	}
	handler := newHandler(ctx, cfg, ring, pol, auditLog, health, reg, tr, log)
	srv := newServer(handler, log)
	ln, err := daemon.Listen(srv, cfg.Listen, cfg.TLSCert, cfg.TLSKey, cfg.ClientCA, log)
	if err != nil {
		return err
	}
	if cfg.TLSCert == "" {
		// h2c: Go's HTTP/2 server reads each frame in two system calls
		// and sends each window update in a write of its own (see h2conn).
		ln = h2conn.Listen(ln)
	}
	switch {
	case pol == nil && cfg.ClientCA != "":
		log.Warn("no --policy: every caller with a client certificate from --client-ca may use every key")
	case pol == nil:
		log.Warn("no --policy: every caller that can reach this port may use every key")
	}
	errc := make(chan error, 2)
	if cfg.MetricsListen != "" {
		ready := func() bool {
			res, err := health.Check(context.Background(), &grpchealth.CheckRequest{})
			return err == nil && res.Status == grpchealth.StatusServing
		}
		msrv, maddr, err := metrics.Serve(cfg.MetricsListen, reg, ready, errc, metrics.WithReadyDetail(refresher.Problems))
		if err != nil {
			ln.Close()
			return fmt.Errorf("--metrics-listen: %w", err)
		}
		defer msrv.Close()
		log.Info("metrics listening", "addr", maddr.String())
	}
	log.Info("alecryptd listening", "addr", ln.Addr().String(), "keystore", cfg.Keystore, "keys", len(ring.Keys()))
	return daemon.Serve(ctx, "alecryptd", srv, ln, errc, cfg.ShutdownTimeout, log)
}

// startKeys opens the keystore, loads it into a ring and keeps the ring
// current: on every --refresh tick and on SIGHUP (a full load, never skipped
// on the file's stat).
func startKeys(ctx context.Context, cfg Config, log *slog.Logger) (*keyring.Ring, *refresh.Refresher, error) {
	store, err := openKeystore(ctx, cfg, log)
	if err != nil {
		return nil, nil, err
	}
	ring := keyring.New()
	refresher := refresh.New(store, ring, log, cfg.Refresh,
		refresh.WithRemovalGuard(cfg.MaxRemovalShare, cfg.RemovalConfirmAfter))
	if err := refresher.Reload(ctx); err != nil {
		// With no keys yet there is nothing to serve: fail clearly.
		return nil, nil, fmt.Errorf("loading keys from %s: %w", cfg.Keystore, err)
	}
	go refresher.Run(ctx)
	daemon.OnSignal(ctx, syscall.SIGHUP, func() {
		log.Info("SIGHUP: reloading keystore")
		refresher.Trigger()
	})
	return ring, refresher, nil
}

// startAudit opens the audit trail, if one is configured. An audit trail
// that cannot be written is a reason to take this replica out of rotation,
// not to go on unaudited: health follows it, and recovers by itself once the
// trail takes writes again, without waiting for a call to write (see package
// audit). SIGHUP reopens the trail, for logrotate without copytruncate.
func startAudit(ctx context.Context, cfg Config, health *grpchealth.StaticChecker, log *slog.Logger) (*audit.Log, error) {
	if cfg.AuditLog == "" {
		return nil, nil
	}
	var opts []audit.Option
	if cfg.AuditChainKey != "" {
		key, err := loadChainKey(cfg, log)
		if err != nil {
			return nil, err
		}
		opts = append(opts, audit.WithChain(key))
		if sameDir(cfg.AuditChainKey, cfg.AuditLog) {
			log.Warn("the audit chain key is in the audit trail's directory: whoever can read it can rewrite the trail unseen; keep it where the trail's readers cannot", "key", cfg.AuditChainKey)
		}
	} else {
		log.Warn("the audit trail is not chained (--audit-chain-key off): lines can be edited or removed unseen")
	}
	auditLog, err := audit.Open(cfg.AuditLog, func(ok bool) {
		api.SetServing(health, ok)
		if !ok {
			log.Error("audit log write failed; entries are held and health is NOT_SERVING until they are written")
		} else {
			log.Info("audit log writable again, held entries written; health is SERVING")
		}
	}, opts...)
	if err != nil {
		return nil, err
	}
	go auditLog.Run(ctx, time.Second)
	daemon.OnSignal(ctx, syscall.SIGHUP, func() {
		if err := auditLog.Reopen(); err != nil {
			log.Error("SIGHUP: reopening the audit log failed; still writing to the old file", "err", err)
			return
		}
		log.Info("SIGHUP: audit log reopened", "path", cfg.AuditLog)
		logChainHead(log, auditLog, "audit chain head")
	})
	if auditLog.Chained() {
		logChainHead(log, auditLog, "audit chain head at start")
		go auditLog.PublishHead(ctx, cfg.AuditChainHeadEvery, func() {
			logChainHead(log, auditLog, "audit chain head")
		})
	}
	return auditLog, nil
}

// loadChainKey reads the chain key, creating the default one on first
// start. Its id is logged; the key never is.
func loadChainKey(cfg Config, log *slog.Logger) (audit.ChainKey, error) {
	if !cfg.AuditChainKeyDefault {
		return audit.LoadChainKey(cfg.AuditChainKey)
	}
	key, created, err := audit.LoadOrCreateChainKey(cfg.AuditChainKey, rand.Reader)
	if err != nil {
		return audit.ChainKey{}, err
	}
	if created {
		log.Info("created the audit chain key; keep it from the audit trail's readers and back it up apart from the trail", "path", cfg.AuditChainKey, "key_id", key.ID())
	}
	return key, nil
}

// sameDir reports whether two paths are in the same directory.
func sameDir(a, b string) bool {
	da, err1 := filepath.Abs(filepath.Dir(a))
	db, err2 := filepath.Abs(filepath.Dir(b))
	return err1 == nil && err2 == nil && da == db
}

// logChainHead logs the chain head to the process log (stderr), which an
// operator ships to a log system apart from the audit trail: the record a
// trail cut short is compared with (alectl audit verify --head).
func logChainHead(log *slog.Logger, l *audit.Log, msg string) {
	if !l.Chained() {
		return
	}
	h := l.Head()
	log.Info(msg, "seq", h.Seq, "link", h.Link, "key_id", l.KeyID())
}

// newHandler is the API behind authentication: the engine over the ring
// (with the policy deciding who may use which key), metrics, tracing, audit
// and health.
func newHandler(ctx context.Context, cfg Config, ring *keyring.Ring, pol *policy.Store, auditLog *audit.Log,
	health *grpchealth.StaticChecker, reg *prometheus.Registry, tr *tracing.Tracing, log *slog.Logger) http.Handler {
	engOpts := []engine.Option{engine.WithDefaultAlias(cfg.DefaultAlias)}
	var tokens authn.TokenVerifier
	if pol != nil {
		engOpts = append(engOpts, engine.WithAuthorizer(pol))
		tokens = pol
	}
	handler := api.NewHandler(engine.New(ring, engOpts...), ring, api.Options{MaxRequestBytes: cfg.MaxRequestBytes, Logger: log, Metrics: reg,
		TracerProvider: tr.Provider, Propagator: tr.Propagator,
		RequireAuth: authn.Required(pol != nil, cfg.ClientCA != ""), Audit: auditLog, Health: health,
		MaxInflightBytes: cfg.MaxInflightBytes, MaxInflightBytesPerCaller: cfg.MaxInflightBytesPerCaller, ReadTimeout: cfg.ReadTimeout,
		// SIGTERM ends idle streams, so Shutdown is not kept waiting on them.
		Stopping: ctx})
	return authn.Middleware(handler, tokens)
}

// newServer serves HTTP/1.1 and HTTP/2 without TLS (h2c) on one port, which
// is what lets Connect, gRPC and gRPC-Web clients share it; with TLS,
// daemon.Listen adds HTTP/2 by ALPN.
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
		client, err := vaultcfg.NewClient()
		if err != nil {
			return nil, err
		}
		if err := vaultcfg.LoginOnce(ctx, client, cfg.Vault.Auth, log)(ctx); err != nil {
			return nil, err
		}
		store := cfg.Vault.Store(client)
		log.Info("using the vault keystore", "vault_addr", client.Address(), "path", store.Location())
		return store, nil
	}
	store, err := openFileStore(cfg)
	if err != nil {
		return nil, err
	}
	var fresh key.Record
	created, err := store.Init(func() (key.Record, error) {
		var err error
		fresh, err = key.Generate(rand.Reader, key.AES256CTR, []string{cfg.DefaultAlias}, time.Now())
		return fresh, err
	})
	if err != nil {
		return nil, fmt.Errorf("initializing keystore: %w", sealHint(err))
	}
	if !store.Sealed() {
		warnUnsealed(log, cfg.Keystore)
	}
	if created {
		// The fingerprint is public; the secret is never logged.
		log.Info("created keystore with a fresh key", "path", cfg.Keystore, "fingerprint", fresh.Fingerprint, "alias", cfg.DefaultAlias)
	}
	return store, nil
}
