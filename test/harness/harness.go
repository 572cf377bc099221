// Package harness starts alecrypt's real programs for end-to-end tests: it
// builds the binaries once per test run, starts alecryptd on a free loopback
// port with its own keystore, finds external tools (node, grpcurl), and cleans
// everything up through t.Cleanup.
//
// A missing external tool fails the test when CI=true and skips it loudly
// otherwise, so CI can never pass by silently testing less.
package harness

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// RepoRoot is the repository's top directory.
func RepoRoot() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Clean(filepath.Join(filepath.Dir(file), "..", ".."))
}

var (
	buildOnce sync.Once
	binDir    string
	buildErr  error
)

// Binaries builds alecryptd, alectl, alesync, alegate and grpcurl (from the pinned tools
// module) into a temporary directory, once per test process, and returns it.
func Binaries(t testing.TB) string {
	t.Helper()
	buildOnce.Do(func() {
		binDir, buildErr = os.MkdirTemp("", "alecrypt-bin-")
		if buildErr != nil {
			return
		}
		root := RepoRoot()
		builds := [][]string{
			{"build", "-o", filepath.Join(binDir, "alecryptd"), "./cmd/alecryptd"},
			{"build", "-o", filepath.Join(binDir, "alectl"), "./cmd/alectl"},
			{"build", "-o", filepath.Join(binDir, "alesync"), "./cmd/alesync"},
			{"build", "-o", filepath.Join(binDir, "alegate"), "./cmd/alegate"},
			{"build", "-modfile=tools/go.mod", "-o", filepath.Join(binDir, "grpcurl"), "github.com/fullstorydev/grpcurl/cmd/grpcurl"},
		}
		for _, args := range builds {
			cmd := exec.Command("go", args...)
			cmd.Dir = root
			if out, err := cmd.CombinedOutput(); err != nil {
				buildErr = fmt.Errorf("go %s: %v\n%s", strings.Join(args, " "), err, out)
				return
			}
		}
	})
	if buildErr != nil {
		t.Fatalf("building binaries: %v", buildErr)
	}
	return binDir
}

// RequireTool returns the path of an external program. When it is missing
// the test fails under CI=true and is skipped, loudly, elsewhere.
func RequireTool(t testing.TB, name string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err == nil {
		return p
	}
	if os.Getenv("CI") == "true" {
		t.Fatalf("%s is required in CI but not found on PATH: %v", name, err)
	}
	t.Skipf("SKIPPING: %s not found on PATH (%v); CI=true would fail here", name, err)
	return ""
}

// Service is a running program of ours (alecryptd, alegate).
type Service struct {
	Addr       string // host:port
	URL        string // http://host:port
	MetricsURL string // http://host:port/metrics
	Keystore   string
	Dir        string
	cmd        *exec.Cmd
	logs       *lockedBuffer
	done       chan struct{}
	waitErr    error
}

type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// StartOptions configure StartAlecryptd.
type StartOptions struct {
	// Keystore is the keystore file to use; empty means a new one in a
	// temporary directory (created by alecryptd on first start).
	Keystore string
	// Args are extra flags.
	Args []string
	// Env are extra environment variables (VAULT_ADDR=..., for example).
	Env []string
	// ExpectExit makes StartAlecryptd return once the process exits instead
	// of failing the test: for startup failures that are the point.
	ExpectExit bool
}

// StartAlecryptd starts alecryptd on 127.0.0.1:0 and waits until it logs the
// address it listens on. The process is stopped (SIGTERM) at cleanup, and its
// log is printed if the test failed.
func StartAlecryptd(t testing.TB, opts StartOptions) *Service {
	t.Helper()
	dir := t.TempDir()
	ks := opts.Keystore
	if ks == "" {
		ks = filepath.Join(dir, "keystore.json")
	}
	args := append([]string{"--listen", "127.0.0.1:0", "--metrics-listen", "127.0.0.1:0", "--keystore", ks, "--log-level", "debug", "--refresh", "200ms"}, opts.Args...)
	env := append([]string{"ALECRYPT_LISTEN=", "ALECRYPT_KEYSTORE=", "ALECRYPT_KEYSTORE_IDENTITY=", "ALECRYPT_METRICS_LISTEN="}, opts.Env...)
	s := StartProgram(t, "alecryptd", args, env, "alecryptd listening", opts.ExpectExit)
	s.Keystore = ks
	if slices.Contains(opts.Args, "--tls-cert") && s.Addr != "" {
		s.URL = "https://" + s.Addr
	}
	return s
}

// StartAlegate starts alegate on 127.0.0.1:0 in front of upstream, calling
// the alecryptd at cryptoURL.
func StartAlegate(t testing.TB, upstream, cryptoURL string, args ...string) *Service {
	t.Helper()
	return StartAlegateEnv(t, upstream, cryptoURL, nil, args...)
}

// StartAlegateEnv is StartAlegate with extra environment variables.
func StartAlegateEnv(t testing.TB, upstream, cryptoURL string, env []string, args ...string) *Service {
	t.Helper()
	args = append([]string{"--listen", "127.0.0.1:0", "--metrics-listen", "127.0.0.1:0", "--upstream", upstream, "--crypto", cryptoURL}, args...)
	return StartProgram(t, "alegate", args, append([]string{"ALEGATE_LISTEN="}, env...), "alegate listening", false)
}

// StartProgram starts one of our binaries in a temporary directory and waits
// for its JSON log line whose msg is ready (it must carry "addr"). With
// expectExit, a process that exits first is returned instead of failing.
func StartProgram(t testing.TB, name string, args, env []string, ready string, expectExit bool) *Service {
	t.Helper()
	bin := Binaries(t)
	dir := t.TempDir()
	cmd := exec.Command(filepath.Join(bin, name), args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), env...)
	pr, pw := io.Pipe()
	s := &Service{Dir: dir, cmd: cmd, logs: &lockedBuffer{}, done: make(chan struct{})}
	cmd.Stderr = io.MultiWriter(s.logs, pw)
	cmd.Stdout = s.logs
	if err := cmd.Start(); err != nil {
		t.Fatalf("starting %s: %v", name, err)
	}
	go func() {
		s.waitErr = cmd.Wait()
		pw.Close()
		close(s.done)
	}()
	t.Cleanup(func() {
		s.Stop(t)
		if t.Failed() {
			t.Logf("%s log:\n%s", name, s.logs.String())
		}
	})
	addr := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(pr)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			var line struct {
				Msg  string `json:"msg"`
				Addr string `json:"addr"`
			}
			if json.Unmarshal(sc.Bytes(), &line) != nil {
				continue
			}
			if line.Msg == "metrics listening" {
				s.MetricsURL = "http://" + line.Addr + "/metrics"
			}
			if line.Msg == ready {
				addr <- line.Addr
				break
			}
		}
		_, _ = io.Copy(io.Discard, pr)
	}()
	select {
	case a := <-addr:
		s.Addr, s.URL = a, "http://"+a
	case <-s.done:
		if expectExit {
			return s
		}
		t.Fatalf("%s exited before listening: %v\n%s", name, s.waitErr, s.logs.String())
	case <-time.After(30 * time.Second):
		t.Fatalf("%s did not start within 30s:\n%s", name, s.logs.String())
	}
	return s
}

// Exited reports whether the process has exited, and its exit error.
func (s *Service) Exited() (bool, error) {
	select {
	case <-s.done:
		return true, s.waitErr
	default:
		return false, nil
	}
}

// Logs returns everything the process has written so far.
func (s *Service) Logs() string { return s.logs.String() }

// PID is the process id (for reading its CPU time and memory in /proc).
func (s *Service) PID() int { return s.cmd.Process.Pid }

// Signal sends sig to the process.
func (s *Service) Signal(t testing.TB, sig syscall.Signal) {
	t.Helper()
	if err := s.cmd.Process.Signal(sig); err != nil {
		t.Fatalf("signal %v: %v", sig, err)
	}
}

// Stop sends SIGTERM and waits for the process to exit; it returns the exit
// error (nil for a clean exit).
func (s *Service) Stop(t testing.TB) error {
	t.Helper()
	select {
	case <-s.done:
		return s.waitErr
	default:
	}
	_ = s.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-s.done:
	case <-time.After(15 * time.Second):
		_ = s.cmd.Process.Kill()
		<-s.done
		t.Errorf("process did not stop within 15s of SIGTERM")
	}
	return s.waitErr
}

// Run executes a program with a deadline and returns its stdout, stderr and
// exit code; it fails the test only if the program cannot be started.
func Run(t testing.TB, stdin string, env []string, name string, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Env = append(os.Environ(), env...)
	cmd.Stdin = strings.NewReader(stdin)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	if err != nil {
		if ee, ok := err.(*exec.ExitError); ok {
			return out.String(), errb.String(), ee.ExitCode()
		}
		t.Fatalf("running %s: %v", name, err)
	}
	return out.String(), errb.String(), 0
}
