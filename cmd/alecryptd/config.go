package main

import (
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"github.com/alecrypt/alecrypt/internal/api"
	"github.com/alecrypt/alecrypt/internal/cli"
	"github.com/alecrypt/alecrypt/internal/daemon"
	"github.com/alecrypt/alecrypt/internal/daemon/vaultcfg"
	"github.com/alecrypt/alecrypt/internal/engine"
	"github.com/alecrypt/alecrypt/internal/keyring/refresh"
)

// Config is everything alecryptd reads from flags and the environment.
type Config struct {
	Listen   string
	Keystore string
	// KeystoreIdentity is the age identity file that opens a sealed
	// keystore file.
	KeystoreIdentity string
	Refresh          time.Duration
	MaxRequestBytes  int
	DefaultAlias     string
	Log              daemon.Log
	ShutdownTimeout  time.Duration
	MetricsListen    string
	Vault            vaultcfg.Config
	TLSCert          string
	TLSKey           string
	ClientCA         string
	InsecureListen   bool
	Policy           string
	AuditLog         string
	// AuditChainKey is the chain key file ("" when the audit trail is off
	// or unchained); AuditChainKeyDefault says it is the default one, which
	// is created when missing (a file named explicitly must exist).
	AuditChainKey        string
	AuditChainKeyDefault bool
	// AuditChainHeadEvery is how often the chain head is logged.
	AuditChainHeadEvery time.Duration

	// InsecureMetricsListen allows MetricsListen beyond loopback.
	InsecureMetricsListen bool

	// MaxRemovalShare and RemovalConfirmAfter configure the keystore's
	// removal guard (refresh.WithRemovalGuard).
	MaxRemovalShare     float64
	RemovalConfirmAfter time.Duration
	// MaxInflightBytes and ReadTimeout bound what requests may hold; see
	// api.Options.
	MaxInflightBytes int64
	ReadTimeout      time.Duration
	// MaxInflightBytesPerCaller is one caller's share of MaxInflightBytes;
	// parseConfig fills in the default.
	MaxInflightBytesPerCaller int64
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
	envOr := func(name, def string) string { return daemon.EnvOr(getenv, name, def) }
	fs.StringVar(&c.Listen, "listen", envOr("ALECRYPT_LISTEN", "127.0.0.1:8080"), "address to serve Connect, gRPC and gRPC-Web on (env ALECRYPT_LISTEN)")
	fs.StringVar(&c.Keystore, "keystore", envOr("ALECRYPT_KEYSTORE", "./alecrypt-data/keystore.json"), "embedded keystore file (created with one fresh key if missing), or \"vault\" (env ALECRYPT_KEYSTORE)")
	fs.StringVar(&c.KeystoreIdentity, "keystore-identity", envOr("ALECRYPT_KEYSTORE_IDENTITY", ""), "age identity file that opens a sealed keystore file; read once at start (env ALECRYPT_KEYSTORE_IDENTITY)")
	fs.StringVar(&c.TLSCert, "tls-cert", "", "PEM certificate for the API listener (with --tls-key); re-read when it changes")
	fs.StringVar(&c.TLSKey, "tls-key", "", "PEM private key for --tls-cert")
	fs.StringVar(&c.ClientCA, "client-ca", "", "PEM CA(s) that sign client certificates: enables mTLS caller identity (needs --tls-cert)")
	fs.BoolVar(&c.InsecureListen, "insecure-listen", false, "allow --listen beyond loopback without TLS (never in production)")
	fs.StringVar(&c.Policy, "policy", envOr("ALECRYPT_POLICY", ""), "caller policy file (JSON); once set, callers must authenticate and anything not allowed is denied (env ALECRYPT_POLICY)")
	fs.StringVar(&c.AuditLog, "audit-log", envOr("ALECRYPT_AUDIT_LOG", ""), "audit trail: a file to append to, or - for stdout; empty turns it off (env ALECRYPT_AUDIT_LOG)")
	fs.StringVar(&c.AuditChainKey, "audit-chain-key", envOr("ALECRYPT_AUDIT_CHAIN_KEY", ""), "MAC key file that chains the audit trail (64 hex digits, no access for others; keep it from the trail's readers); default audit-chain.key beside the keystore file (./alecrypt-data with Vault), created on first start; off: no chain (env ALECRYPT_AUDIT_CHAIN_KEY)")
	fs.DurationVar(&c.AuditChainHeadEvery, "audit-chain-head-every", time.Minute, "how often to log the audit chain's head (seq and link) for an external record")
	fs.StringVar(&c.MetricsListen, "metrics-listen", envOr("ALECRYPT_METRICS_LISTEN", "127.0.0.1:9090"), "address for Prometheus /metrics; empty turns it off (env ALECRYPT_METRICS_LISTEN)")
	fs.BoolVar(&c.InsecureMetricsListen, "insecure-metrics-listen", false, "allow --metrics-listen beyond loopback: /metrics has no TLS or authentication and names every key's fingerprint and last use (restrict who reaches the port)")
	c.Vault.RegisterFlags(fs)
	fs.DurationVar(&c.Refresh, "refresh", 0, "how often to check the keystore for changes (default 2s for a file, 30s for Vault; SIGHUP reloads at once)")
	fs.IntVar(&c.MaxRequestBytes, "max-request-bytes", api.DefaultMaxRequestBytes, "largest request message accepted; larger ones get ResourceExhausted")
	fs.Int64Var(&c.MaxInflightBytes, "max-inflight-bytes", inflight, "memory budget of ale.v1 calls in progress: each is charged 6x its request size, the heap it holds (per message for streams, plus 32 KiB while a stream is open), before its body is read; calls over it get ResourceExhausted at once (env ALECRYPT_MAX_INFLIGHT_BYTES)")
	fs.Int64Var(&c.MaxInflightBytesPerCaller, "max-inflight-bytes-per-caller", 0, "most of --max-inflight-bytes one caller (its identity, or its connection when anonymous) may hold; 0 means a quarter of it, at least what one --max-request-bytes request needs")
	fs.DurationVar(&c.ReadTimeout, "read-timeout", api.DefaultReadTimeout, "a unary request body, or one stream message once started, must arrive within this; idle streams may wait between messages")
	fs.StringVar(&c.DefaultAlias, "default-alias", envOr("ALECRYPT_DEFAULT_ALIAS", engine.DefaultAlias), "alias used when a request names no key (env ALECRYPT_DEFAULT_ALIAS)")
	c.Log.RegisterFlags(fs)
	fs.DurationVar(&c.ShutdownTimeout, "shutdown-timeout", 10*time.Second, "how long in-flight calls may take to finish on SIGTERM")
	fs.Float64Var(&c.MaxRemovalShare, "max-removal-share", refresh.DefaultMaxRemovalShare,
		"a reload removing more than this share (0-1) of the keys, or all of them, keeps serving them until the removal is confirmed")
	fs.DurationVar(&c.RemovalConfirmAfter, "removal-confirm-after", refresh.DefaultRemovalConfirmAfter,
		"how long keys must stay missing, over at least two reloads, before a held removal is applied")
	// Every flag has an environment variable too (ALECRYPT_ and the flag name).
	if err := cli.FromEnv(fs, "ALECRYPT", getenv); err != nil {
		return Config{}, err
	}
	if err := cli.Parse(fs, args, os.Stdout, usage); err != nil {
		return Config{}, err
	}
	if c.MaxRemovalShare < 0 || c.MaxRemovalShare > 1 {
		return Config{}, fmt.Errorf("--max-removal-share %v: want a number from 0 to 1", c.MaxRemovalShare)
	}
	if c.RemovalConfirmAfter < 0 {
		return Config{}, fmt.Errorf("--removal-confirm-after %v: want a duration of 0 or more", c.RemovalConfirmAfter)
	}
	switch {
	case c.Keystore == "":
		return Config{}, errors.New("--keystore must not be empty")
	case c.Keystore == keystoreVault && c.KeystoreIdentity != "":
		return Config{}, errors.New("--keystore-identity opens a sealed keystore file; Vault seals its own storage")
	case c.MaxRequestBytes <= 0:
		return Config{}, errors.New("--max-request-bytes must be positive")
	case c.Refresh < 0:
		return Config{}, errors.New("--refresh must not be negative")
	case c.ReadTimeout <= 0:
		return Config{}, errors.New("--read-timeout must be positive")
	}
	if err := c.Log.Validate(); err != nil {
		return Config{}, err
	}
	switch {
	case c.MaxInflightBytesPerCaller < 0:
		return Config{}, errors.New("--max-inflight-bytes-per-caller must not be negative (0 means the default)")
	case c.MaxInflightBytesPerCaller == 0:
		c.MaxInflightBytesPerCaller = api.DefaultPerCaller(c.MaxRequestBytes, c.MaxInflightBytes)
	}
	if err := api.CheckLimits(c.MaxRequestBytes, c.MaxInflightBytes, c.MaxInflightBytesPerCaller); err != nil {
		return Config{}, err
	}
	if err := c.auditChain(); err != nil {
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
	if err := daemon.CheckListen(c.Listen, c.TLSCert, c.TLSKey, c.InsecureListen); err != nil {
		return Config{}, err
	}
	if c.ClientCA != "" && c.TLSCert == "" {
		return Config{}, errors.New("--client-ca needs --tls-cert: client certificates are verified during the TLS handshake")
	}
	if err := daemon.CheckMetricsListen(c.MetricsListen, c.InsecureMetricsListen); err != nil {
		return Config{}, err
	}
	return c, nil
}

// auditChainKeyOff is the --audit-chain-key value that turns chaining off.
const auditChainKeyOff = "off"

// auditChain settles the chain key file: chaining is on whenever there is an
// audit trail, because a trail anyone who can write it can edit unseen is
// what it must not be. The default key lives with the keys (the data
// directory), not with the trail: readers of the trail must not hold it.
func (c *Config) auditChain() error {
	switch {
	case c.AuditLog == "" || c.AuditChainKey == auditChainKeyOff:
		c.AuditChainKey = ""
	case c.AuditChainKey == "":
		dir := defaultDataDir
		if c.Keystore != keystoreVault {
			dir = filepath.Dir(c.Keystore)
		}
		c.AuditChainKey, c.AuditChainKeyDefault = filepath.Join(dir, "audit-chain.key"), true
	}
	if c.AuditChainHeadEvery <= 0 {
		return errors.New("--audit-chain-head-every must be positive")
	}
	return nil
}

// defaultDataDir holds the chain key by default when the keys are in Vault.
const defaultDataDir = "./alecrypt-data"
