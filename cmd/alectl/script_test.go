package main

import (
	"bufio"
	"encoding/json"
	"errors"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"filippo.io/age"
	"github.com/rogpeppe/go-internal/testscript"

	"github.com/alecrypt/alecrypt/test/harness"
	"github.com/alecrypt/alecrypt/test/kitchentest"
)

// TestMain makes this test binary alectl itself when a script runs
// "alectl": the scripts test the code of this package, not a binary built
// from another checkout.
func TestMain(m *testing.M) {
	testscript.Main(m, map[string]func(){"alectl": main})
}

// TestAlectlScripts runs testdata/script/*.txt: every alectl command as a
// user types it, with its exact output and exit status (age's
// cmd/age/testdata is the model). The scripts run in a work directory with
// examples/ linked in, against a real alecryptd and alegate (the binaries
// the harness builds) started on free ports with the commands below.
//
//	start-alecryptd [flags]    alecryptd in $WORK (its default ./alecrypt-data/keystore.json),
//	                           then ADDR (its URL, also ALECRYPT_ADDR) and METRICS (its metrics URL)
//	start-alegate UPSTREAM     alegate in front of UPSTREAM, calling $ADDR; then GATE (its URL)
//	start-kitchen              an echoing kitchen backend (test/kitchentest); then KITCHEN (its URL)
//	closed-port                CLOSED: the URL of a loopback port nothing listens on
//	status N PROG [ARGS...]    runs PROG like exec and wants exit status N exactly
//	wait-key [--alias A]       until $ADDR resolves the key (a keystore edit takes up to --refresh)
//	age-identity FILE          a fresh age X25519 identity in FILE; then RECIPIENT (its public
//	                           key) and IDENTITY (the private key itself, to check it is never echoed)
func TestAlectlScripts(t *testing.T) {
	bin := harness.Binaries(t)
	root := harness.RepoRoot()
	testscript.Run(t, testscript.Params{
		Dir:                 filepath.Join("testdata", "script"),
		RequireExplicitExec: true,
		Setup: func(env *testscript.Env) error {
			// None of the programs' settings leak in from the caller.
			for _, k := range []string{"ALECRYPT_ADDR", "ALECRYPT_KEYSTORE", "ALECRYPT_KEYSTORE_IDENTITY", "ALECRYPT_TOKEN",
				"ALECRYPT_CA", "ALECRYPT_CERT", "ALECRYPT_KEY", "ALECRYPT_AUDIT_CHAIN_KEY"} {
				env.Setenv(k, "")
			}
			return os.Symlink(filepath.Join(root, "examples"), filepath.Join(env.WorkDir, "examples"))
		},
		Cmds: map[string]func(ts *testscript.TestScript, neg bool, args []string){
			"start-alecryptd": func(ts *testscript.TestScript, neg bool, args []string) {
				args = append([]string{"--listen", "127.0.0.1:0", "--metrics-listen", "127.0.0.1:0", "--refresh", "100ms"}, args...)
				addrs := startScriptProgram(ts, filepath.Join(bin, "alecryptd"), args, "alecryptd listening")
				ts.Setenv("ADDR", "http://"+addrs["alecryptd listening"])
				ts.Setenv("ALECRYPT_ADDR", "http://"+addrs["alecryptd listening"])
				ts.Setenv("METRICS", "http://"+addrs["metrics listening"])
			},
			"start-alegate": func(ts *testscript.TestScript, neg bool, args []string) {
				if len(args) != 1 {
					ts.Fatalf("usage: start-alegate UPSTREAM")
				}
				addrs := startScriptProgram(ts, filepath.Join(bin, "alegate"), []string{"--listen", "127.0.0.1:0",
					"--metrics-listen", "127.0.0.1:0", "--upstream", args[0], "--crypto", ts.Getenv("ADDR")}, "alegate listening")
				ts.Setenv("GATE", "http://"+addrs["alegate listening"])
			},
			"start-kitchen": func(ts *testscript.TestScript, neg bool, args []string) {
				k := kitchentest.Start(t)
				ts.Defer(k.Close)
				ts.Setenv("KITCHEN", k.URL)
			},
			"closed-port": func(ts *testscript.TestScript, neg bool, args []string) {
				// A port the kernel just handed out and that is closed again:
				// nothing listens there for the instant the script needs.
				l, err := net.Listen("tcp", "127.0.0.1:0")
				ts.Check(err)
				ts.Setenv("CLOSED", "http://"+l.Addr().String())
				ts.Check(l.Close())
			},
			"status": func(ts *testscript.TestScript, neg bool, args []string) {
				if neg || len(args) < 2 {
					ts.Fatalf("usage: status N PROG [ARGS...]")
				}
				want, err := strconv.Atoi(args[0])
				ts.Check(err)
				got := 0
				if err := ts.Exec(args[1], args[2:]...); err != nil {
					var ee *exec.ExitError
					if !errors.As(err, &ee) {
						ts.Fatalf("%s: %v", args[1], err)
					}
					got = ee.ExitCode()
				}
				if got != want {
					ts.Fatalf("%s exited %d, want %d", args[1], got, want)
				}
			},
			"wait-key": func(ts *testscript.TestScript, neg bool, args []string) {
				deadline := time.Now().Add(10 * time.Second)
				getenv := func(string) string { return "" }
				for {
					if run(append([]string{"resolve", "--addr", ts.Getenv("ADDR")}, args...), nil, io.Discard, io.Discard, getenv) == 0 {
						return
					}
					if time.Now().After(deadline) {
						ts.Fatalf("alectl resolve %s: no such key within 10s", strings.Join(args, " "))
					}
					time.Sleep(50 * time.Millisecond)
				}
			},
			"age-identity": func(ts *testscript.TestScript, neg bool, args []string) {
				if len(args) != 1 {
					ts.Fatalf("usage: age-identity FILE")
				}
				id, err := age.GenerateX25519Identity()
				ts.Check(err)
				ts.Check(os.WriteFile(ts.MkAbs(args[0]), []byte(id.String()+"\n"), 0o600))
				ts.Setenv("RECIPIENT", id.Recipient().String())
				ts.Setenv("IDENTITY", id.String())
			},
		},
	})
}

// startScriptProgram starts one of our daemons in the script's work
// directory and returns the addresses its JSON log announces, once it logs
// ready. It is stopped when the script ends.
func startScriptProgram(ts *testscript.TestScript, path string, args []string, ready string) map[string]string {
	cmd := exec.Command(path, args...)
	cmd.Dir = ts.Getenv("WORK")
	cmd.Env = append(os.Environ(), "ALECRYPT_KEYSTORE=", "ALECRYPT_LISTEN=", "ALEGATE_LISTEN=")
	stderr, err := cmd.StderrPipe()
	ts.Check(err)
	ts.Check(cmd.Start())
	ts.Defer(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	})
	addrs := make(chan map[string]string, 1)
	var log strings.Builder
	go func() {
		got := map[string]string{}
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			log.WriteString(sc.Text() + "\n")
			var line struct{ Msg, Addr string }
			if json.Unmarshal(sc.Bytes(), &line) == nil && line.Addr != "" {
				got[line.Msg] = line.Addr
				if line.Msg == ready {
					addrs <- got
					break
				}
			}
		}
		close(addrs)
		_, _ = io.Copy(io.Discard, stderr)
	}()
	select {
	case a, ok := <-addrs:
		if !ok {
			ts.Fatalf("%s exited before %q:\n%s", filepath.Base(path), ready, log.String())
		}
		return a
	case <-time.After(30 * time.Second):
		ts.Fatalf("%s did not log %q within 30s", filepath.Base(path), ready)
	}
	return nil
}
