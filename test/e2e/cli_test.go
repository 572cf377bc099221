package e2e

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/alecrypt/alecrypt/test/harness"
)

var (
	alebenchOnce sync.Once
	alebenchErr  error
)

// cliBinaries returns the directory of the built binaries, with alebench
// (which the harness does not build) added.
func cliBinaries(t *testing.T) string {
	t.Helper()
	dir := harness.Binaries(t)
	alebenchOnce.Do(func() {
		cmd := exec.Command("go", "build", "-o", filepath.Join(dir, "alebench"), "./cmd/alebench")
		cmd.Dir = harness.RepoRoot()
		if out, err := cmd.CombinedOutput(); err != nil {
			alebenchErr = fmt.Errorf("%v\n%s", err, out)
		}
	})
	if alebenchErr != nil {
		t.Fatalf("building alebench: %v", alebenchErr)
	}
	return dir
}

// runCLI runs a built binary with an environment that sets none of the
// programs' variables, so defaults and required flags behave as documented.
func runCLI(t *testing.T, dir string, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	env := []string{"ALECRYPT_ADDR=", "ALECRYPT_KEYSTORE=", "ALECRYPT_LISTEN=", "ALEGATE_LISTEN=", "ALESYNC_PORTAL_URL=", "VAULT_TOKEN="}
	return harness.Run(t, "", env, filepath.Join(dir, args[0]), args[1:]...)
}

// TestCLIVersion: every binary answers --version on stdout with exit 0, in
// one form: name, version, commit, the Go version that built it, platform.
func TestCLIVersion(t *testing.T) {
	dir := cliBinaries(t)
	line := regexp.MustCompile(`^(alecryptd|alesync|alegate|alectl|alebench) (\S+) commit (\S+) (go\S+) (\S+/\S+)\n$`)
	for _, args := range [][]string{
		{"alecryptd", "--version"}, {"alesync", "--version"}, {"alegate", "--version"}, {"alebench", "--version"},
		{"alectl", "--version"}, {"alectl", "version"}, {"alecryptd", "-version"},
	} {
		t.Run(strings.Join(args, " "), func(t *testing.T) {
			out, errOut, code := runCLI(t, dir, args...)
			if code != 0 || errOut != "" {
				t.Fatalf("exit %d, stderr %q, want 0 and nothing", code, errOut)
			}
			m := line.FindStringSubmatch(out)
			if m == nil {
				t.Fatalf("stdout = %q, want %q", out, line)
			}
			if m[1] != args[0] || m[4] != runtime.Version() || m[5] != runtime.GOOS+"/"+runtime.GOARCH {
				t.Errorf("stdout = %q: want program %s built by %s for %s/%s", out, args[0], runtime.Version(), runtime.GOOS, runtime.GOARCH)
			}
		})
	}
}

// TestCLIHelp: --help and -h on every command and subcommand print usage
// and flags to stdout (flags with two dashes) and exit 0, with nothing on
// stderr.
func TestCLIHelp(t *testing.T) {
	dir := cliBinaries(t)
	commands := []struct {
		args      []string
		wantFlags []string // flags the help must list; nil for commands without flags
	}{
		{[]string{"alecryptd"}, []string{"--listen", "--keystore", "--version"}},
		{[]string{"alesync"}, []string{"--portal-url", "--dry-run", "--version"}},
		{[]string{"alegate"}, []string{"--upstream", "--crypto", "--version"}},
		{[]string{"alebench"}, []string{"--target", "--version"}},
		{[]string{"alebench", "genkeys"}, []string{"--n", "--out"}},
		{[]string{"alebench", "startup"}, []string{"--alecryptd", "--keystore"}},
		{[]string{"alectl"}, nil},
		{[]string{"alectl", "encrypt"}, []string{"--alias", "--addr", "--data"}},
		{[]string{"alectl", "decrypt"}, []string{"--expect", "--addr"}},
		{[]string{"alectl", "resolve"}, []string{"--alias", "--fingerprint"}},
		{[]string{"alectl", "rewrap"}, []string{"--alias", "--fingerprint", "--data", "--expect", "--batch"}},
		{[]string{"alectl", "http"}, []string{"--authorization", "--header"}},
		{[]string{"alectl", "keys"}, nil},
		{[]string{"alectl", "keys", "list"}, []string{"--alias", "--addr"}},
		{[]string{"alectl", "keys", "init"}, []string{"--alias", "--keystore"}},
		{[]string{"alectl", "keys", "add"}, []string{"--alias", "--algorithm", "--keystore", "--create"}},
		{[]string{"alectl", "keys", "import"}, []string{"--replace", "--keystore"}},
		{[]string{"alectl", "keys", "state"}, []string{"--keystore"}},
		{[]string{"alectl", "completion"}, nil},
		{[]string{"alectl", "audit"}, nil},
		{[]string{"alectl", "audit", "verify"}, []string{"--key", "--head"}},
		{[]string{"alectl", "version"}, nil},
	}
	singleDash := regexp.MustCompile(`(?m)^\s+-[a-z]`)
	for _, c := range commands {
		for _, h := range []string{"--help", "-h"} {
			args := append(slices.Clone(c.args), h)
			t.Run(strings.Join(args, " "), func(t *testing.T) {
				out, errOut, code := runCLI(t, dir, args...)
				if code != 0 || errOut != "" {
					t.Fatalf("exit %d, stderr %q; want 0 and nothing on stderr", code, errOut)
				}
				if !strings.Contains(out, strings.Join(c.args, " ")) {
					t.Errorf("help does not name the command %q:\n%s", strings.Join(c.args, " "), out)
				}
				for _, f := range c.wantFlags {
					if !regexp.MustCompile(`(?m)^  ` + f + `\b`).MatchString(out) {
						t.Errorf("help lacks the flag line %q:\n%s", f, out)
					}
				}
				if singleDash.MatchString(out) {
					t.Errorf("help shows a flag with one dash:\n%s", out)
				}
			})
		}
	}
	// "alectl help keys add" is "alectl keys add --help".
	want, _, _ := runCLI(t, dir, "alectl", "keys", "add", "--help")
	if got, _, code := runCLI(t, dir, "alectl", "help", "keys", "add"); code != 0 || got != want {
		t.Errorf("alectl help keys add: exit %d, output differs from keys add --help:\n%s", code, got)
	}
}

// TestCLIRefusesStrayArguments: positional arguments a command does not
// take, and unknown flags, are usage errors (exit 2) explained on stderr,
// never silently ignored.
func TestCLIRefusesStrayArguments(t *testing.T) {
	dir := cliBinaries(t)
	for _, tc := range []struct {
		args    []string
		wantErr string
	}{
		{[]string{"alecryptd", "extra"}, "unexpected arguments"},
		{[]string{"alecryptd", "--listen", "127.0.0.1:0", "extra"}, "unexpected arguments"},
		{[]string{"alesync", "extra"}, "unexpected arguments"},
		{[]string{"alegate", "--upstream", "http://127.0.0.1:1", "extra"}, "unexpected arguments"},
		{[]string{"alebench", "extra"}, "unexpected arguments"},
		{[]string{"alebench", "genkeys", "--out", "x", "extra"}, "unexpected arguments"},
		{[]string{"alectl", "encrypt", "extra"}, "takes 0 argument(s), got 1"},
		{[]string{"alectl", "keys", "list", "extra"}, "takes 0 argument(s), got 1"},
		{[]string{"alectl", "keys", "import", "a", "b"}, "takes 1 argument(s), got 2"},
		{[]string{"alectl", "version", "extra"}, "takes no arguments"},
		{[]string{"alectl", "completion", "bash", "extra"}, "one argument"},
		{[]string{"alectl", "completion", "fish"}, "unknown shell"},
		{[]string{"alectl", "keys", "nope"}, "unknown keys subcommand"},
		{[]string{"alectl", "audit", "nope"}, "unknown audit subcommand"},
		{[]string{"alectl", "audit", "verify"}, "needs the audit files"},
		{[]string{"alectl", "audit", "verify", "--head", "0", "f"}, "--head"},
		{[]string{"alecryptd", "--no-such-flag"}, "--help"},
		{[]string{"alectl", "encrypt", "--no-such-flag"}, "--help"},
	} {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			out, errOut, code := runCLI(t, dir, tc.args...)
			if code != 2 || !strings.Contains(errOut, tc.wantErr) {
				t.Fatalf("exit %d, stderr %q; want 2 and %q", code, errOut, tc.wantErr)
			}
			if out != "" {
				t.Errorf("stdout = %q, want nothing on a usage error", out)
			}
		})
	}
}

// TestAlectlCompletion loads `alectl completion bash|zsh` into the real
// shells and asks for candidates the way TAB does.
func TestAlectlCompletion(t *testing.T) {
	dir := cliBinaries(t)
	path := "PATH=" + dir + string(os.PathListSeparator) + os.Getenv("PATH")
	cases := []struct {
		words []string // the words before the one being completed, after "alectl"
		cur   string   // the word being completed
		want  []string // exactly these candidates, in order
	}{
		{nil, "", []string{"encrypt", "decrypt", "resolve", "rewrap", "http", "keys", "audit", "version", "completion", "help", "--help", "--version"}},
		{nil, "de", []string{"decrypt"}},
		{[]string{"keys"}, "", []string{"list", "init", "add", "import", "state", "seal"}},
		{[]string{"keys"}, "im", []string{"import"}},
		{[]string{"completion"}, "", []string{"bash", "zsh"}},
		{[]string{"keys", "add"}, "--al", []string{"--algorithm", "--alias"}},
		{[]string{"keys", "seal"}, "--re", []string{"--recipient"}},
		{[]string{"keys", "state"}, "--id", []string{"--identity"}},
		{[]string{"encrypt", "--alias", "store-1"}, "--f", []string{"--fingerprint"}},
		{[]string{"decrypt"}, "--ex", []string{"--expect"}},
		// After a flag that takes a value alectl offers nothing: the shell
		// falls back to file names.
		{[]string{"encrypt", "--data"}, "", nil},
	}

	t.Run("bash", func(t *testing.T) {
		bash := harness.RequireTool(t, "bash")
		for _, c := range cases {
			words := append(append([]string{"alectl"}, c.words...), c.cur)
			script := `source <(alectl completion bash) || exit 3
COMP_WORDS=(` + shellQuote(words) + `)
COMP_CWORD=` + strconv.Itoa(len(words)-1) + `
_alectl_complete
printf '%s\n' "${COMPREPLY[@]}"
complete -p alectl`
			out, errOut, code := harness.Run(t, "", []string{path}, bash, "-c", script)
			if code != 0 {
				t.Fatalf("bash: exit %d\n%s%s", code, out, errOut)
			}
			got, reg := splitCompletion(out)
			if !strings.Contains(reg, "-F _alectl_complete") || !strings.Contains(reg, "-o default") {
				t.Errorf("complete -p alectl = %q", reg)
			}
			if !slices.Equal(got, c.want) {
				t.Errorf("bash %q: candidates %q, want %q", words, got, c.want)
			}
		}
	})

	t.Run("zsh", func(t *testing.T) {
		zsh := harness.RequireTool(t, "zsh")
		for _, c := range cases {
			words := append(append([]string{"alectl"}, c.words...), c.cur)
			// compadd and _files are stubbed to print what they would
			// offer; compdef records the registration. zsh itself filters
			// compadd's words by the typed prefix, so the stub does too.
			script := `compdef() { print -r -- "compdef $*" }
compadd() { local w; for w in "${(@P)2}"; do [[ $w == ${PREFIX}* ]] && print -r -- $w; done; return 0 }
_files() { print -r -- "<files>" }
source <(alectl completion zsh) || exit 3
words=(` + shellQuote(words) + `)
CURRENT=` + strconv.Itoa(len(words)) + `
PREFIX=` + shellQuote([]string{c.cur}) + `
_alectl`
			out, errOut, code := harness.Run(t, "", []string{path}, zsh, "-f", "-c", script)
			if code != 0 {
				t.Fatalf("zsh: exit %d\n%s%s", code, out, errOut)
			}
			lines := strings.Split(strings.TrimSuffix(out, "\n"), "\n")
			if len(lines) == 0 || lines[0] != "compdef _alectl alectl" {
				t.Fatalf("zsh: the script did not register _alectl:\n%s%s", out, errOut)
			}
			got := lines[1:]
			want := c.want
			if want == nil {
				want = []string{"<files>"}
			}
			if !slices.Equal(got, want) {
				t.Errorf("zsh %q: candidates %q, want %q", words, got, want)
			}
		}
	})
}

// splitCompletion separates the candidates from the final `complete -p` line.
func splitCompletion(out string) (candidates []string, registration string) {
	lines := strings.Split(strings.TrimSuffix(out, "\n"), "\n")
	registration = lines[len(lines)-1]
	for _, l := range lines[:len(lines)-1] {
		if l != "" {
			candidates = append(candidates, l)
		}
	}
	return candidates, registration
}

func shellQuote(words []string) string {
	q := make([]string, len(words))
	for i, w := range words {
		q[i] = "'" + strings.ReplaceAll(w, "'", `'\''`) + "'"
	}
	return strings.Join(q, " ")
}

// TestMakeHelp: `make help` and a bare `make` list every documented target
// (each `## target:` comment of the Makefile) and start nothing.
func TestMakeHelp(t *testing.T) {
	mk := harness.RequireTool(t, "make")
	root := harness.RepoRoot()
	data, err := os.ReadFile(filepath.Join(root, "Makefile"))
	if err != nil {
		t.Fatal(err)
	}
	targets := regexp.MustCompile(`(?m)^## ([a-z][a-z-]*): `).FindAllStringSubmatch(string(data), -1)
	if len(targets) < 10 {
		t.Fatalf("Makefile documents %d targets, want the ## target: comments", len(targets))
	}
	for _, args := range [][]string{{}, {"help"}} {
		out, errOut, code := harness.Run(t, "", nil, mk, append([]string{"--no-print-directory", "-C", root}, args...)...)
		if code != 0 || errOut != "" {
			t.Fatalf("make %v: exit %d\n%s%s", args, code, out, errOut)
		}
		for _, m := range targets {
			if !regexp.MustCompile(`(?m)^  ` + m[1] + ` +\S`).MatchString(out) {
				t.Errorf("make %v does not list %s:\n%s", args, m[1], out)
			}
		}
		// Recipes echo their commands; help's are silent, so a command
		// line in the output means a real target ran.
		if strings.Contains(out, "go vet") || strings.Contains(out, "go test") || strings.Contains(out, "npm ci") {
			t.Errorf("make %v ran a target:\n%s", args, out)
		}
	}
}

// TestMakeBuild: `make build` puts every binary of cmd/ into BIN (bin/ by
// default, the directory the README's Quick start puts on PATH), and `make
// tools` builds grpcurl and buf there from the tools module, so the README's
// bare `grpcurl` and `buf` exist for its reader. tools is checked as make
// would run it (-n): the first buf build takes minutes.
func TestMakeBuild(t *testing.T) {
	mk := harness.RequireTool(t, "make")
	root := harness.RepoRoot()
	bin := t.TempDir()
	if out, errOut, code := harness.Run(t, "", nil, mk, "--no-print-directory", "-C", root, "build", "BIN="+bin); code != 0 {
		t.Fatalf("make build: exit %d\n%s%s", code, out, errOut)
	}
	cmds, err := os.ReadDir(filepath.Join(root, "cmd"))
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range cmds {
		out, errOut, code := harness.Run(t, "", nil, filepath.Join(bin, c.Name()), "--version")
		if code != 0 || !strings.HasPrefix(out, c.Name()+" ") {
			t.Errorf("%s/%s --version: exit %d %q %q; want make build to have built it", bin, c.Name(), code, out, errOut)
		}
	}
	out, errOut, code := harness.Run(t, "", nil, mk, "--no-print-directory", "-n", "-C", root, "tools", "BIN="+bin)
	want := "go build -modfile=tools/go.mod -o " + bin + "/ github.com/fullstorydev/grpcurl/cmd/grpcurl github.com/bufbuild/buf/cmd/buf"
	if code != 0 || !strings.Contains(out, want) {
		t.Fatalf("make -n tools: exit %d\n%s%s\nwant the command %q", code, out, errOut, want)
	}
	readme, err := os.ReadFile(filepath.Join(root, "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(readme), "export PATH=$PWD/bin:$PATH") {
		t.Errorf("README's Quick start does not put bin/ on PATH")
	}
}
