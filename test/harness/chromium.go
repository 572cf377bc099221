package harness

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// StartChromium starts Debian's headless Chromium with the DevTools protocol
// on a free loopback port and a fresh profile, and returns the DevTools HTTP
// endpoint (http://127.0.0.1:PORT). It is stopped, with every process it
// started, when the test ends. Without Chromium the test is skipped, or
// fails with CI=true (CI installs it in .ci/run).
func StartChromium(t testing.TB) string {
	t.Helper()
	bin := "/usr/bin/chromium"
	if _, err := os.Stat(bin); err != nil {
		bin = RequireTool(t, "chromium")
	}
	profile := t.TempDir()
	// Port 0: Chromium picks a free port and writes it to
	// DevToolsActivePort in the profile, so no port is guessed.
	cmd := exec.Command(bin, "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
		"--disable-background-networking", "--disable-component-update", "--disable-sync",
		"--remote-debugging-address=127.0.0.1", "--remote-debugging-port=0", "--user-data-dir="+profile, "about:blank")
	var logs bytes.Buffer
	cmd.Stdout, cmd.Stderr = &logs, &logs
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true} // its renderers die with it
	if err := cmd.Start(); err != nil {
		t.Fatalf("starting chromium: %v", err)
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	t.Cleanup(func() {
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		<-done
	})
	deadline := time.Now().Add(60 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case <-done:
			t.Fatalf("chromium exited before serving DevTools:\n%s", logs.String())
		default:
		}
		if b, err := os.ReadFile(filepath.Join(profile, "DevToolsActivePort")); err == nil {
			if port, _, ok := strings.Cut(string(b), "\n"); ok && port != "" {
				return "http://127.0.0.1:" + port
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("chromium did not serve DevTools within 60s:\n%s", logs.String())
	return ""
}
