package harness

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	vaultapi "github.com/hashicorp/vault/api"
)

// VaultRootToken is the dev server's root token; tests hand narrower tokens
// to the programs under test.
const VaultRootToken = "root"

var (
	vaultOnce sync.Once
	vaultBin  string
	vaultErr  error
)

// VaultBinary returns the real Vault server binary, building it with
// test/vault/build-vault.sh the first time on a machine (several minutes) and
// reusing the cached build afterwards. .ci/run builds it before the tests so
// the build stays out of the tests' hot path.
func VaultBinary(t testing.TB) string {
	t.Helper()
	vaultOnce.Do(func() {
		if p := os.Getenv("ALECRYPT_VAULT_BIN"); p != "" {
			vaultBin = p
			return
		}
		cmd := exec.Command("bash", filepath.Join(RepoRoot(), "test", "vault", "build-vault.sh"))
		cmd.Stderr = os.Stderr
		out, err := cmd.Output()
		if err != nil {
			vaultErr = fmt.Errorf("build-vault.sh: %v", err)
			return
		}
		vaultBin = strings.TrimSpace(string(out))
	})
	if vaultErr != nil {
		if os.Getenv("CI") != "true" && os.Getenv("ALECRYPT_REQUIRE_VAULT") == "" {
			t.Skipf("SKIPPING: cannot build the Vault server (%v); CI=true would fail here", vaultErr)
		}
		t.Fatalf("Vault server: %v", vaultErr)
	}
	return vaultBin
}

// Vault is a running Vault dev server on a loopback port.
type Vault struct {
	Addr string // http://127.0.0.1:PORT
	port int
	bin  string
	cmd  *exec.Cmd
	done chan struct{}
	logs *lockedBuffer
}

// StartVault starts `vault server -dev` on a free loopback port, with KV v2
// at secret/ and the root token VaultRootToken, and stops it at cleanup.
func StartVault(t testing.TB) *Vault {
	t.Helper()
	v := &Vault{bin: VaultBinary(t), port: freePort(t), logs: &lockedBuffer{}}
	v.Addr = fmt.Sprintf("http://127.0.0.1:%d", v.port)
	v.Start(t)
	t.Cleanup(func() {
		v.Stop(t)
		if t.Failed() {
			t.Logf("vault log (tail):\n%s", tail(v.logs.String(), 4000))
		}
	})
	return v
}

// Start (re)starts the server on its port. A dev server keeps everything in
// memory, so a restarted Vault is empty, as after losing its storage.
func (v *Vault) Start(t testing.TB) {
	t.Helper()
	v.cmd = exec.Command(v.bin, "server", "-dev", "-dev-root-token-id="+VaultRootToken,
		fmt.Sprintf("-dev-listen-address=127.0.0.1:%d", v.port), "-dev-no-store-token")
	v.cmd.Env = append(os.Environ(), "VAULT_ADDR=", "VAULT_TOKEN=", "HOME="+t.TempDir())
	v.cmd.Stdout, v.cmd.Stderr = v.logs, v.logs
	v.done = make(chan struct{})
	if err := v.cmd.Start(); err != nil {
		t.Fatalf("starting vault: %v", err)
	}
	cmd, done := v.cmd, v.done
	go func() { _ = cmd.Wait(); close(done) }()
	deadline := time.Now().Add(60 * time.Second)
	for {
		res, err := http.Get(v.Addr + "/v1/sys/health")
		if err == nil {
			res.Body.Close()
			if res.StatusCode == http.StatusOK {
				break
			}
		}
		select {
		case <-done:
			t.Fatalf("vault exited during startup:\n%s", tail(v.logs.String(), 4000))
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("vault not healthy within 60s:\n%s", tail(v.logs.String(), 4000))
		}
		time.Sleep(100 * time.Millisecond)
	}
	// KV v2 at secret/ comes up a moment after health in dev mode.
	c := v.Client(t, VaultRootToken)
	deadline = time.Now().Add(30 * time.Second)
	for {
		if _, err := c.KVv2("secret").Put(context.Background(), "alecrypt-harness/ready", map[string]any{"ok": true}); err == nil {
			_ = c.KVv2("secret").DeleteMetadata(context.Background(), "alecrypt-harness/ready")
			return
		} else if time.Now().After(deadline) {
			t.Fatalf("vault KV v2 not ready: %v", err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// Restart stops the server and starts a fresh one on the same port. A dev
// server keeps everything in memory, so Vault comes back empty (only the
// fixed root token survives): the fault of a restarted dev server or a lost
// storage backend, which a reader must not take as "delete every key".
func (v *Vault) Restart(t testing.TB) {
	t.Helper()
	v.Stop(t)
	v.Start(t)
}

// Stop terminates the server (SIGTERM, then SIGKILL) and waits for it.
func (v *Vault) Stop(t testing.TB) {
	t.Helper()
	select {
	case <-v.done:
		return
	default:
	}
	_ = v.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-v.done:
	case <-time.After(15 * time.Second):
		_ = v.cmd.Process.Kill()
		<-v.done
	}
}

// PID is the server's process id (for reading its CPU time and memory).
func (v *Vault) PID() int { return v.cmd.Process.Pid }

// Client returns a Vault API client for the server with the given token.
func (v *Vault) Client(t testing.TB, token string) *vaultapi.Client {
	t.Helper()
	cfg := vaultapi.DefaultConfig()
	cfg.Address = v.Addr
	cfg.MaxRetries = 0
	c, err := vaultapi.NewClient(cfg)
	if err != nil {
		t.Fatal(err)
	}
	c.SetToken(token)
	return c
}

// Env is the VAULT_* environment for a program to reach this server with
// token.
func (v *Vault) Env(token string) []string {
	return []string{"VAULT_ADDR=" + v.Addr, "VAULT_TOKEN=" + token, "VAULT_CACERT=", "VAULT_NAMESPACE="}
}

func freePort(t testing.TB) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

func tail(s string, n int) string {
	if len(s) > n {
		return "..." + s[len(s)-n:]
	}
	return s
}
