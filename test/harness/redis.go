package harness

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// RedisServer is a real redis-server (or valkey-server) process on a free
// loopback port, from Debian's package, with no persistence.
type RedisServer struct {
	Addr string // 127.0.0.1:port
	cmd  *exec.Cmd
	logs *lockedBuffer
	once sync.Once
	done chan struct{}
}

// StartRedis starts a Redis server for one test and stops it at cleanup.
// Without redis-server or valkey-server on PATH the test fails when CI=true
// and is skipped, loudly, elsewhere (.ci/run installs redis-server).
func StartRedis(t testing.TB) *RedisServer {
	t.Helper()
	bin := ""
	for _, name := range []string{"redis-server", "valkey-server"} {
		if p, err := exec.LookPath(name); err == nil {
			bin = p
			break
		}
	}
	if bin == "" {
		bin = RequireTool(t, "redis-server") // fails or skips
	}
	dir := t.TempDir()
	// A free port can be taken by someone else between Close and the
	// server's bind: try a few.
	for attempt := 0; attempt < 5; attempt++ {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		port := ln.Addr().(*net.TCPAddr).Port
		ln.Close()
		s := &RedisServer{Addr: "127.0.0.1:" + strconv.Itoa(port), logs: &lockedBuffer{}, done: make(chan struct{})}
		s.cmd = exec.Command(bin, "--port", strconv.Itoa(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
			"--dir", dir, "--daemonize", "no", "--protected-mode", "yes")
		s.cmd.Stdout, s.cmd.Stderr = s.logs, s.logs
		if err := s.cmd.Start(); err != nil {
			t.Fatalf("starting %s: %v", bin, err)
		}
		go func() { _ = s.cmd.Wait(); close(s.done) }()
		t.Cleanup(func() { s.Stop() })
		if s.waitReady(10 * time.Second) {
			return s
		}
		s.Stop()
		if !strings.Contains(s.logs.String(), "Address already in use") {
			t.Fatalf("%s did not start:\n%s", bin, s.logs.String())
		}
	}
	t.Fatalf("no free port for %s after 5 attempts", bin)
	return nil
}

// waitReady polls with PING until the server answers PONG.
func (s *RedisServer) waitReady(within time.Duration) bool {
	deadline := time.Now().Add(within)
	for time.Now().Before(deadline) {
		select {
		case <-s.done:
			return false
		default:
		}
		if c, err := net.DialTimeout("tcp", s.Addr, time.Second); err == nil {
			_ = c.SetDeadline(time.Now().Add(time.Second))
			_, _ = fmt.Fprint(c, "PING\r\n")
			buf := make([]byte, 7)
			n, _ := c.Read(buf)
			c.Close()
			if strings.HasPrefix(string(buf[:n]), "+PONG") {
				return true
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	return false
}

// Stop ends the server (SIGKILL: its data is of no interest) and waits.
func (s *RedisServer) Stop() {
	s.once.Do(func() {
		if s.cmd.Process != nil {
			_ = s.cmd.Process.Signal(os.Kill)
		}
		<-s.done
	})
}

// Pause stops the server with SIGSTOP: it keeps its port and its
// connections, and what clients send waits in its socket buffers, as on a
// server that stalls; Resume (SIGCONT) lets it run what waited.
func (s *RedisServer) Pause(t testing.TB) {
	t.Helper()
	if err := s.cmd.Process.Signal(syscall.SIGSTOP); err != nil {
		t.Fatalf("SIGSTOP: %v", err)
	}
}

// Resume continues a paused server.
func (s *RedisServer) Resume(t testing.TB) {
	t.Helper()
	if err := s.cmd.Process.Signal(syscall.SIGCONT); err != nil {
		t.Fatalf("SIGCONT: %v", err)
	}
}

// Logs is what the server printed.
func (s *RedisServer) Logs() string { return s.logs.String() }
