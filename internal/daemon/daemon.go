// Package daemon owns what alecrypt's long-running programs (alecryptd,
// alesync, alegate) share around their own work: the --log-format and
// --log-level flags and the logger they build, the rule that a listener
// beyond loopback needs TLS or --insecure-listen (and a metrics listener
// --insecure-metrics-listen), serving until SIGINT or
// SIGTERM with a graceful shutdown, and the main function's exit statuses,
// with the GC's heap floor (daemon/heapfloor) kept from Main on.
//
// It sits beside internal/cli, which owns the command-line conventions of
// every binary (alectl included: --version, --help, no stray arguments).
// alectl is not a daemon, and a daemon's process life is not a command-line
// convention, so they are two packages. daemon imports no Vault, keystore or
// tracing code: what only some daemons need lives with that concern
// (internal/daemon/vaultcfg, internal/tracing), so alegate links no Vault
// client. It decides nothing about what a daemon does.
package daemon

import (
	"context"
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
	"strings"
	"syscall"
	"time"

	"golang.org/x/term"

	"github.com/alecrypt/alecrypt/internal/daemon/heapfloor"
	"github.com/alecrypt/alecrypt/internal/tlsconfig"
)

// Log is the logging part of a daemon's configuration.
type Log struct {
	Format string // "auto", "json" or "text"
	Level  slog.Level
}

// RegisterFlags adds --log-format and --log-level to fs.
func (l *Log) RegisterFlags(fs *flag.FlagSet) {
	fs.StringVar(&l.Format, "log-format", "auto", "log format: json, text, or auto (text when stderr is a terminal, else json)")
	fs.TextVar(&l.Level, "log-level", slog.LevelInfo, "log level: debug, info, warn or error")
}

// Validate checks the format.
func (l Log) Validate() error {
	switch l.Format {
	case "auto", "json", "text":
		return nil
	}
	return fmt.Errorf("--log-format must be auto, json or text, got %q", l.Format)
}

// Logger returns the logger l describes, writing to w. With "auto", a
// person at a terminal reads text and a collector (a pipe, a file, a
// container runtime) gets JSON, as Vault and buf do. Durations print as
// Go writes them (10s), not as nanoseconds, in both formats.
func (l Log) Logger(w io.Writer) *slog.Logger {
	opts := &slog.HandlerOptions{Level: l.Level, ReplaceAttr: readableDuration}
	if l.Format == "text" || (l.Format == "auto" && IsTerminal(w)) {
		return slog.New(slog.NewTextHandler(w, opts))
	}
	return slog.New(slog.NewJSONHandler(w, opts))
}

func readableDuration(_ []string, a slog.Attr) slog.Attr {
	if a.Value.Kind() == slog.KindDuration {
		a.Value = slog.StringValue(a.Value.Duration().String())
	}
	return a
}

// IsTerminal reports whether w is a terminal (not merely a character
// device: /dev/null is one too).
func IsTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	return ok && term.IsTerminal(int(f.Fd()))
}

// Main is a daemon's main function once its flags are parsed into cfg (or
// failed with err): --help and --version exit 0, a usage error is printed
// and exits 2; otherwise run runs with the logger, the heap floor
// (heapfloor.Default unless GOGC is set) and a context that ends on SIGINT
// or SIGTERM, and an error from it is logged and exits 1. GOGC=off without
// GOMEMLIMIT is logged as a warning first: the process would never collect.
func Main(name string, err error, log Log, run func(ctx context.Context, log *slog.Logger) error) {
	if errors.Is(err, flag.ErrHelp) {
		return
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "%s: %v\n", name, err)
		os.Exit(2)
	}
	logger := log.Logger(os.Stderr)
	if heapfloor.Unbounded() {
		logger.Warn("GOGC=off without GOMEMLIMIT: the garbage collector never runs and memory grows with every request until the process is killed; set GOMEMLIMIT (below the memory limit) or unset GOGC")
	}
	heapfloor.Keep(os.Getenv, heapfloor.Default)
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, logger); err != nil {
		logger.Error(name+" stopped", "err", err)
		stop()
		os.Exit(1)
	}
}

// EnvOr returns the environment variable name, or def when it is unset or
// empty.
func EnvOr(getenv func(string) string, name, def string) string {
	if v := getenv(name); v != "" {
		return v
	}
	return def
}

// CheckListen checks a listener's flags: addr is host:port, the TLS
// certificate and key come together, and without them addr must be a
// loopback address unless insecure (--insecure-listen) says plaintext beyond
// loopback is wanted.
func CheckListen(addr, tlsCert, tlsKey string, insecure bool) error {
	if _, _, err := net.SplitHostPort(addr); err != nil {
		return fmt.Errorf("--listen %q: %w", addr, err)
	}
	if (tlsCert == "") != (tlsKey == "") {
		return errors.New("--tls-cert and --tls-key go together")
	}
	if tlsCert == "" && !insecure && !IsLoopback(addr) {
		return fmt.Errorf("--listen %s is beyond loopback: give --tls-cert/--tls-key, or --insecure-listen to accept plaintext", addr)
	}
	return nil
}

// CheckMetricsListen checks a metrics listener's address (host:port, or
// empty for none): beyond loopback it needs insecure
// (--insecure-metrics-listen). The metrics endpoints have no TLS and no
// authentication, and alecryptd's name every key's fingerprint with when it
// was last used: whoever reaches the port reads them, so serving them to a
// network is a choice the operator states, and restricts (a NetworkPolicy,
// a firewall) who reaches it.
func CheckMetricsListen(addr string, insecure bool) error {
	if addr == "" {
		return nil
	}
	if _, _, err := net.SplitHostPort(addr); err != nil {
		return fmt.Errorf("--metrics-listen %q: %w", addr, err)
	}
	if !insecure && !IsLoopback(addr) {
		return fmt.Errorf("--metrics-listen %s is beyond loopback: its endpoints have no TLS and no authentication, and anyone who reaches them reads what they serve; give --insecure-metrics-listen to accept that (and restrict who reaches the port)", addr)
	}
	return nil
}

// IsLoopback reports whether host:port names a loopback address
// ("localhost" counts; an empty host means all interfaces and does not).
func IsLoopback(hostport string) bool {
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

// Serve serves srv on ln until ctx ends or a server of the process fails
// (srv itself, or one that reports to errc, such as the metrics listener),
// then shuts srv down: requests in flight get up to shutdownTimeout to
// finish. A clean stop logs "<name> stopped cleanly" and returns nil.
func Serve(ctx context.Context, name string, srv *http.Server, ln net.Listener, errc chan error, shutdownTimeout time.Duration, log *slog.Logger) error {
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	log.Info("shutting down: finishing in-flight calls", "timeout", shutdownTimeout)
	sctx, cancel := context.WithTimeout(context.Background(), shutdownTimeout)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		return fmt.Errorf("shutdown: %w", err)
	}
	log.Info(name + " stopped cleanly")
	return nil
}

// Listen opens addr for srv. With certFile and keyFile it serves TLS (the
// pair re-read when the files change; clientCAFile, when given, verifies
// client certificates), adding HTTP/2 to srv's protocols when it names them;
// without, it serves plaintext and warns when addr is beyond loopback, which
// CheckListen allowed only for --insecure-listen.
func Listen(srv *http.Server, addr, certFile, keyFile, clientCAFile string, log *slog.Logger) (net.Listener, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, err
	}
	if certFile != "" {
		if srv.TLSConfig, err = tlsconfig.Server(certFile, keyFile, clientCAFile); err != nil {
			ln.Close()
			return nil, err
		}
		if srv.Protocols != nil {
			srv.Protocols.SetHTTP2(true)
		}
		return tls.NewListener(ln, srv.TLSConfig), nil
	}
	if !IsLoopback(ln.Addr().String()) {
		log.Warn("listening beyond loopback without TLS (--insecure-listen); traffic and callers' tokens cross the network in the clear", "addr", ln.Addr().String())
	}
	return ln, nil
}

// OnSignal calls fn on every sig until ctx ends. signal.Notify delivers to
// every channel registered for a signal, so several callers may each watch
// the same one (SIGHUP reloads keys and reopens the audit trail).
func OnSignal(ctx context.Context, sig os.Signal, fn func()) {
	ch := make(chan os.Signal, 1)
	signal.Notify(ch, sig)
	go func() {
		defer signal.Stop(ch)
		for {
			select {
			case <-ctx.Done():
				return
			case <-ch:
				fn()
			}
		}
	}()
}
