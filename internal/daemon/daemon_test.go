package daemon

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"io"
	"log/slog"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/alecrypt/alecrypt/test/harness"
)

func TestLogFlags(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		args    []string
		wantErr string
		debug   bool
		text    bool
	}{
		{},
		{args: []string{"--log-level", "debug", "--log-format", "text"}, debug: true, text: true},
		{args: []string{"--log-format", "json"}},
		{args: []string{"--log-format", "xml"}, wantErr: "auto, json or text"},
	} {
		var l Log
		fs := flag.NewFlagSet("d", flag.ContinueOnError)
		l.RegisterFlags(fs)
		if err := fs.Parse(tc.args); err != nil {
			t.Fatal(err)
		}
		if err := l.Validate(); (err != nil) != (tc.wantErr != "") || (err != nil && !strings.Contains(err.Error(), tc.wantErr)) {
			t.Errorf("%q: Validate() = %v, want %q", tc.args, err, tc.wantErr)
			continue
		}
		if tc.wantErr != "" {
			continue
		}
		var buf bytes.Buffer
		log := l.Logger(&buf)
		log.Debug("d")
		log.Info("i")
		out := buf.String()
		if strings.Contains(out, "msg=d") || strings.Contains(out, `"msg":"d"`) {
			if !tc.debug {
				t.Errorf("%q: debug line logged at level info:\n%s", tc.args, out)
			}
		} else if tc.debug {
			t.Errorf("%q: no debug line:\n%s", tc.args, out)
		}
		if isJSON := strings.HasPrefix(out, "{"); isJSON == tc.text {
			t.Errorf("%q: output %q, want text %v", tc.args, out, tc.text)
		}
	}
}

func TestCheckListen(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		addr, cert, key string
		insecure        bool
		wantErr         string
	}{
		{addr: "127.0.0.1:8080"},
		{addr: "[::1]:8080"},
		{addr: "localhost:8080"},
		{addr: "0.0.0.0:8080", wantErr: "beyond loopback"},
		{addr: ":8080", wantErr: "beyond loopback"},
		{addr: "10.0.0.1:8080", insecure: true},
		{addr: "0.0.0.0:8443", cert: "c.pem", key: "k.pem"},
		{addr: "127.0.0.1:8443", cert: "c.pem", wantErr: "go together"},
		{addr: "8080", wantErr: "--listen"},
	} {
		err := CheckListen(tc.addr, tc.cert, tc.key, tc.insecure)
		if (err != nil) != (tc.wantErr != "") || (err != nil && !strings.Contains(err.Error(), tc.wantErr)) {
			t.Errorf("CheckListen(%q, %q, %q, %v) = %v, want %q", tc.addr, tc.cert, tc.key, tc.insecure, err, tc.wantErr)
		}
	}
}

// TestCheckMetricsListen: a metrics listener beyond loopback is refused
// unless --insecure-metrics-listen says so; empty turns it off.
func TestCheckMetricsListen(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		addr     string
		insecure bool
		wantErr  string
	}{
		{addr: ""},
		{addr: "127.0.0.1:9090"},
		{addr: "[::1]:9090"},
		{addr: "localhost:9090"},
		{addr: "127.0.0.1:0"},
		{addr: "0.0.0.0:9090", wantErr: "--metrics-listen 0.0.0.0:9090 is beyond loopback"},
		{addr: ":9090", wantErr: "give --insecure-metrics-listen"},
		{addr: "[::]:9090", wantErr: "beyond loopback"},
		{addr: "10.0.0.7:9090", wantErr: "beyond loopback"},
		{addr: "0.0.0.0:9090", insecure: true},
		{addr: ":9090", insecure: true},
		{addr: "9090", wantErr: "--metrics-listen"},
		{addr: "9090", insecure: true, wantErr: "--metrics-listen"},
	} {
		err := CheckMetricsListen(tc.addr, tc.insecure)
		if (err != nil) != (tc.wantErr != "") || (err != nil && !strings.Contains(err.Error(), tc.wantErr)) {
			t.Errorf("CheckMetricsListen(%q, %v) = %v, want %q", tc.addr, tc.insecure, err, tc.wantErr)
		}
	}
}

func TestEnvOr(t *testing.T) {
	t.Parallel()
	env := map[string]string{"SET": "v", "EMPTY": ""}
	getenv := func(k string) string { return env[k] }
	if got := EnvOr(getenv, "SET", "d"); got != "v" {
		t.Errorf("EnvOr(SET) = %q", got)
	}
	if got := EnvOr(getenv, "EMPTY", "d"); got != "d" {
		t.Errorf("EnvOr(EMPTY) = %q, want the default", got)
	}
}

// TestServe: a server runs until its context ends, then shuts down and
// says so; a failure reported on errc ends it with that error.
func TestServe(t *testing.T) {
	t.Parallel()
	var logs bytes.Buffer
	log := slog.New(slog.NewJSONHandler(&logs, nil))
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { _, _ = io.WriteString(w, "ok") })}
	ln, err := Listen(srv, "127.0.0.1:0", "", "", "", log)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- Serve(ctx, "testd", srv, ln, make(chan error, 1), time.Second, log) }()
	res, err := http.Get("http://" + ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	cancel()
	if err := <-done; err != nil {
		t.Errorf("Serve() after cancel = %v, want nil", err)
	}
	if !strings.Contains(logs.String(), "testd stopped cleanly") {
		t.Errorf("log has no clean stop:\n%s", logs.String())
	}

	boom := errors.New("metrics listener failed")
	errc := make(chan error, 2)
	errc <- boom
	srv2 := &http.Server{}
	ln2, err := Listen(srv2, "127.0.0.1:0", "", "", "", log)
	if err != nil {
		t.Fatal(err)
	}
	defer srv2.Close()
	if err := Serve(context.Background(), "testd", srv2, ln2, errc, time.Second, log); !errors.Is(err, boom) {
		t.Errorf("Serve() with a failed server = %v, want %v", err, boom)
	}
}

// TestListen: TLS when given a pair (HTTP/2 added to explicit protocols),
// and a warning for plaintext beyond loopback.
func TestListen(t *testing.T) {
	t.Parallel()
	pki := harness.NewPKI(t)
	cert, key := pki.Server(t, "server")
	var protocols http.Protocols
	protocols.SetHTTP1(true)
	srv := &http.Server{Protocols: &protocols}
	ln, err := Listen(srv, "127.0.0.1:0", cert, key, pki.CAFile, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	ln.Close()
	if srv.TLSConfig == nil || srv.TLSConfig.ClientCAs == nil || !srv.Protocols.HTTP2() {
		t.Errorf("Listen with TLS: config %v, HTTP/2 %v; want TLS with client CAs and HTTP/2", srv.TLSConfig, srv.Protocols.HTTP2())
	}
	if _, err := Listen(&http.Server{}, "127.0.0.1:0", cert, "missing.pem", "", slog.New(slog.DiscardHandler)); err == nil {
		t.Error("Listen with a missing key: err = nil")
	}
	var logs bytes.Buffer
	ln, err = Listen(&http.Server{}, "0.0.0.0:0", "", "", "", slog.New(slog.NewJSONHandler(&logs, nil)))
	if err != nil {
		t.Fatal(err)
	}
	ln.Close()
	if !strings.Contains(logs.String(), "beyond loopback without TLS") {
		t.Errorf("no warning for plaintext beyond loopback:\n%s", logs.String())
	}
}

// TestMainWarnsWithoutCollection: a daemon started with GOGC=off and no
// GOMEMLIMIT never collects; Main says so at start, in a child process that
// has exactly that environment (the GC settings are the process's own).
func TestMainWarnsWithoutCollection(t *testing.T) {
	if os.Getenv("DAEMON_TEST_MAIN") == "1" {
		Main("testd", nil, Log{Format: "json"}, func(context.Context, *slog.Logger) error { return nil })
		return
	}
	t.Parallel()
	const warning = "GOGC=off without GOMEMLIMIT"
	for _, tc := range []struct {
		name string
		env  []string
		warn bool
	}{
		{name: "GOGC=off", env: []string{"GOGC=off"}, warn: true},
		{name: "GOGC=off, GOMEMLIMIT=off", env: []string{"GOGC=off", "GOMEMLIMIT=off"}, warn: true},
		{name: "GOGC=off with GOMEMLIMIT", env: []string{"GOGC=off", "GOMEMLIMIT=256MiB"}},
		{name: "GOGC=400", env: []string{"GOGC=400"}},
		{name: "defaults"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			cmd := exec.Command(os.Args[0], "-test.run=^TestMainWarnsWithoutCollection$")
			for _, kv := range os.Environ() {
				if !strings.HasPrefix(kv, "GOGC=") && !strings.HasPrefix(kv, "GOMEMLIMIT=") {
					cmd.Env = append(cmd.Env, kv)
				}
			}
			cmd.Env = append(append(cmd.Env, "DAEMON_TEST_MAIN=1"), tc.env...)
			var stderr bytes.Buffer
			cmd.Stderr = &stderr
			if err := cmd.Run(); err != nil {
				t.Fatalf("child: %v\n%s", err, stderr.String())
			}
			if got := strings.Contains(stderr.String(), warning); got != tc.warn {
				t.Errorf("env %q: warning logged = %v, want %v; stderr:\n%s", tc.env, got, tc.warn, stderr.String())
			}
		})
	}
}

// TestLogFormats: auto is JSON for anything but a terminal (a pipe, a file,
// /dev/null), and durations read as Go writes them in both formats.
func TestLogFormats(t *testing.T) {
	t.Parallel()
	devnull, err := os.Open(os.DevNull)
	if err != nil {
		t.Fatal(err)
	}
	defer devnull.Close()
	if IsTerminal(devnull) {
		t.Errorf("IsTerminal(%s) = true, want false: a character device is not a terminal", os.DevNull)
	}
	for _, tc := range []struct {
		format, want string
	}{
		{"auto", `"timeout":"10s"`},
		{"json", `"timeout":"10s"`},
		{"text", `timeout=10s`},
	} {
		var buf bytes.Buffer
		Log{Format: tc.format}.Logger(&buf).Info("shutting down", "timeout", 10*time.Second)
		if !strings.Contains(buf.String(), tc.want) {
			t.Errorf("--log-format %s: %q, want %s", tc.format, buf.String(), tc.want)
		}
	}
}
