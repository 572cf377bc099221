package deploy

import (
	"bufio"
	"bytes"
	"debug/buildinfo"
	"debug/elf"
	"encoding/json"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/moby/patternmatcher"
	"github.com/moby/patternmatcher/ignorefile"
)

const (
	dockerfile   = "Dockerfile"
	dockerignore = "../.dockerignore"
	repoRoot     = ".."
)

// binaries are the programs the image ships, all built by its build stage.
var binaries = []string{"alecryptd", "alesync", "alegate", "alectl"}

// instruction is one Dockerfile instruction, continuation lines joined.
type instruction struct {
	line int
	cmd  string // upper case: FROM, RUN, COPY, ...
	args string
}

type stage struct {
	image, name string
	instrs      []instruction
}

// parseDockerfile reads the instructions of a Dockerfile: comment lines are
// dropped (inside continuations too, as Docker does), lines ending in a
// backslash are joined, and the instructions are grouped by stage.
func parseDockerfile(r io.Reader) ([]stage, error) {
	var stages []stage
	sc := bufio.NewScanner(r)
	var cur strings.Builder
	start, n := 0, 0
	flush := func() error {
		text := strings.TrimSpace(cur.String())
		cur.Reset()
		if text == "" {
			return nil
		}
		cmd, args, _ := strings.Cut(text, " ")
		in := instruction{line: start, cmd: strings.ToUpper(cmd), args: strings.TrimSpace(args)}
		if in.cmd == "FROM" {
			f := slices.DeleteFunc(strings.Fields(in.args), func(s string) bool { return strings.HasPrefix(s, "--") })
			st := stage{image: f[0]}
			if len(f) == 3 && strings.EqualFold(f[1], "AS") {
				st.name = f[2]
			} else if len(f) != 1 {
				return fmt.Errorf("line %d: FROM %s", start, in.args)
			}
			stages = append(stages, st)
		}
		if len(stages) == 0 {
			if in.cmd != "ARG" {
				return fmt.Errorf("line %d: %s before the first FROM", start, in.cmd)
			}
			return nil
		}
		stages[len(stages)-1].instrs = append(stages[len(stages)-1].instrs, in)
		return nil
	}
	for sc.Scan() {
		n++
		line := sc.Text()
		trimmed := strings.TrimSpace(line)
		if strings.HasPrefix(trimmed, "#") {
			continue
		}
		if cur.Len() == 0 {
			if trimmed == "" {
				continue
			}
			start = n
		}
		if body, ok := strings.CutSuffix(strings.TrimRight(line, " \t"), `\`); ok {
			cur.WriteString(body + " ")
			continue
		}
		cur.WriteString(line)
		if err := flush(); err != nil {
			return nil, err
		}
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	if cur.Len() > 0 {
		return nil, fmt.Errorf("line %d: continuation at the end of the file", start)
	}
	return stages, flush()
}

func readStages(t *testing.T) []stage {
	t.Helper()
	f, err := os.Open(dockerfile)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	stages, err := parseDockerfile(f)
	if err != nil {
		t.Fatalf("%s: %v", dockerfile, err)
	}
	if len(stages) < 2 {
		t.Fatalf("%s has %d stages, want a build stage and a runtime stage", dockerfile, len(stages))
	}
	return stages
}

// TestDockerfile checks the image's properties from the Dockerfile's text:
// multi-stage, a static (CGO_ENABLED=0, trimmed, stripped) build of the four
// binaries, a distroless runtime stage with no shell that runs as uid 65532,
// and nothing fetched from outside the Go module proxy.
func TestDockerfile(t *testing.T) {
	t.Parallel()
	stages := readStages(t)
	build, final := stages[0], stages[len(stages)-1]

	if !strings.HasPrefix(build.image, "golang:1.26") || build.name != "build" {
		t.Errorf("first stage FROM %s AS %s, want golang:1.26 AS build", build.image, build.name)
	}
	if img, _, _ := strings.Cut(final.image, "@sha256:"); img != "gcr.io/distroless/static-debian12:nonroot" {
		t.Errorf("runtime stage FROM %s, want gcr.io/distroless/static-debian12:nonroot (optionally @sha256:...)", final.image)
	}
	for _, s := range stages {
		img, _, _ := strings.Cut(s.image, "@")
		if strings.HasSuffix(img, ":latest") || !strings.Contains(img[strings.LastIndex(img, "/")+1:], ":") {
			t.Errorf("FROM %s: want a fixed tag or digest", s.image)
		}
	}

	var goBuild string
	for _, s := range stages {
		for _, in := range s.instrs {
			switch in.cmd {
			case "ADD":
				if remote := regexp.MustCompile(`(?i)(https?|git|ssh)://|git@`); remote.MatchString(in.args) {
					t.Errorf("line %d: ADD of a remote source: %s", in.line, in.args)
				}
			case "RUN":
				if regexp.MustCompile(`\b(curl|wget)\b`).MatchString(in.args) {
					t.Errorf("line %d: RUN downloads outside the module proxy: %s", in.line, in.args)
				}
				if strings.Contains(in.args, "go build") {
					goBuild = in.args
				}
			}
		}
	}
	for _, want := range []string{"CGO_ENABLED=0", "go build", "-trimpath", `-ldflags="-s -w `,
		"-X github.com/alecrypt/alecrypt/internal/cli.version=${VERSION}", "-X github.com/alecrypt/alecrypt/internal/cli.commit=${COMMIT}"} {
		if !strings.Contains(goBuild, want) {
			t.Errorf("the build stage's go build (%q) lacks %s", goBuild, want)
		}
	}
	for _, b := range binaries {
		if !strings.Contains(goBuild, "./cmd/"+b) {
			t.Errorf("the build stage does not build ./cmd/%s", b)
		}
	}

	var user, entrypoint string
	for _, in := range final.instrs {
		switch in.cmd {
		case "RUN", "ADD", "SHELL":
			t.Errorf("line %d: %s in the runtime stage (it has no shell; build in the build stage)", in.line, in.cmd)
		case "COPY":
			if !strings.Contains(in.args, "--from=build") {
				t.Errorf("line %d: runtime stage COPY not from the build stage: %s", in.line, in.args)
			}
		case "USER":
			user = in.args
		case "ENTRYPOINT":
			entrypoint = in.args
		}
	}
	if user != "65532" && user != "65532:65532" {
		t.Errorf("runtime stage USER %q, want 65532:65532 (distroless nonroot, numeric so runAsNonRoot can verify it)", user)
	}
	var ep []string
	if err := json.Unmarshal([]byte(entrypoint), &ep); err != nil || len(ep) == 0 || ep[0] != "/usr/local/bin/alecryptd" {
		t.Errorf("ENTRYPOINT %s, want the exec form [\"/usr/local/bin/alecryptd\"] (no shell to run the shell form)", entrypoint)
	}
}

func TestDockerignore(t *testing.T) {
	t.Parallel()
	pm := readDockerignore(t)
	for _, p := range []string{"node_modules/x/package.json", ".git/HEAD", "alecrypt-data/keystore.json", "bin/alecryptd", "deploy/go.mod",
		"internal/suite/testdata/webcrypto_vectors.json", "internal/key/record_test.go"} {
		if excluded, _ := pm.MatchesOrParentMatches(p); !excluded {
			t.Errorf("%s is in the build context: exclude it in .dockerignore", p)
		}
	}
	for _, p := range []string{"go.mod", "go.sum", "cmd/alecryptd/main.go", "internal/api/handler.go", "gen/ale/v1/crypto.pb.go"} {
		if excluded, _ := pm.MatchesOrParentMatches(p); excluded {
			t.Errorf("%s is excluded by .dockerignore, but the build needs it", p)
		}
	}
}

func readDockerignore(t *testing.T) *patternmatcher.PatternMatcher {
	t.Helper()
	f, err := os.Open(dockerignore)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	patterns, err := ignorefile.ReadAll(f)
	if err != nil {
		t.Fatal(err)
	}
	pm, err := patternmatcher.New(patterns)
	if err != nil {
		t.Fatal(err)
	}
	return pm
}

// buildArgs are the --build-arg values TestImageBuildStage builds with; other
// ARGs are empty.
var buildArgs = map[string]string{"VERSION": "v0.0.0-imagetest", "COMMIT": "0123456789abcdef"}

// TestImageBuildStage runs the Dockerfile's build stage without a container
// engine: the context is the repository trimmed by .dockerignore, its COPY
// instructions copy from that context into a scratch directory standing for
// the stage's /, and its RUN commands run there with sh, /out mapped into the
// scratch directory. Then it checks what the runtime stage copies: four
// static, stripped, trimmed binaries whose flags are the ones the manifests,
// the systemd unit and its environment file use.
func TestImageBuildStage(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the four binaries (about a minute with a cold cache)")
	}
	if _, err := exec.LookPath("sh"); err != nil {
		t.Skip("no sh")
	}
	stages := readStages(t)
	pm := readDockerignore(t)
	root := t.TempDir() // the build stage's "/"
	workdir := root
	var argNames []string
	for _, in := range stages[0].instrs {
		switch in.cmd {
		case "FROM":
		case "ARG":
			for _, a := range strings.Fields(in.args) {
				name, _, _ := strings.Cut(a, "=")
				argNames = append(argNames, name)
			}
		case "WORKDIR":
			workdir = filepath.Join(root, in.args)
			if err := os.MkdirAll(workdir, 0o755); err != nil {
				t.Fatal(err)
			}
		case "COPY":
			f := strings.Fields(in.args)
			if strings.HasPrefix(f[0], "--") {
				t.Fatalf("line %d: COPY %s: teach this test about its flags", in.line, in.args)
			}
			dst := filepath.Join(workdir, f[len(f)-1])
			if strings.HasPrefix(f[len(f)-1], "/") {
				dst = filepath.Join(root, f[len(f)-1])
			}
			for _, src := range f[:len(f)-1] {
				if n := copyFromContext(t, pm, src, dst, strings.HasSuffix(f[len(f)-1], "/") || len(f) > 2); n == 0 {
					t.Fatalf("line %d: COPY %s copies nothing from the context (.dockerignore?)", in.line, src)
				}
			}
		case "RUN":
			script := in.args
			for strings.HasPrefix(script, "--") {
				_, script, _ = strings.Cut(script, " ")
				script = strings.TrimSpace(script)
			}
			script = regexp.MustCompile(`(^|[\s=])/out\b`).ReplaceAllString(script, "${1}"+root+"/out")
			cmd := exec.Command("sh", "-c", script)
			cmd.Dir = workdir
			cmd.Env = os.Environ()
			for _, a := range argNames {
				cmd.Env = append(cmd.Env, a+"="+buildArgs[a])
			}
			if out, err := cmd.CombinedOutput(); err != nil {
				t.Fatalf("line %d: RUN %s: %v\n%s", in.line, script, err, out)
			}
		default:
			t.Fatalf("line %d: %s in the build stage: teach this test about it", in.line, in.cmd)
		}
	}

	binDir := filepath.Join(root, "out", "bin")
	for _, in := range stages[len(stages)-1].instrs {
		if in.cmd != "COPY" {
			continue
		}
		f := slices.DeleteFunc(strings.Fields(in.args), func(s string) bool { return strings.HasPrefix(s, "--") })
		if _, err := os.Stat(filepath.Join(root, f[0])); err != nil {
			t.Errorf("line %d: the runtime stage copies %s, which the build stage did not make", in.line, f[0])
		}
	}
	entries, err := os.ReadDir(binDir)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, e := range entries {
		got = append(got, e.Name())
	}
	if want := slices.Sorted(slices.Values(binaries)); !slices.Equal(got, want) {
		t.Fatalf("the build stage made %q, want %q", got, want)
	}

	flags := map[string]map[string]bool{}
	usages := map[string][]byte{}
	for _, b := range binaries {
		p := filepath.Join(binDir, b)
		checkStaticBinary(t, p)
		// The stamped build arguments reach --version.
		if out, err := exec.Command(p, "--version").Output(); err != nil ||
			!strings.HasPrefix(string(out), b+" "+buildArgs["VERSION"]+" commit "+buildArgs["COMMIT"]+" go") {
			t.Errorf("%s --version = %q (%v), want the stamped VERSION and COMMIT", b, out, err)
		}
		if b != "alectl" { // alectl's flags belong to its subcommands
			usages[b] = programUsage(t, p)
			flags[b] = usageFlags(t, b, usages[b])
		}
	}
	checkFlagsUsed(t, flags)
	// Each env file's variables of its program (ALECRYPT_*, ALEGATE_*) are
	// ones the program reads (its usage names each as "env NAME").
	for _, su := range systemdUnits {
		for _, l := range readEnvExample(t, su.env) {
			name, _, _ := strings.Cut(l.text, "=")
			if strings.HasPrefix(name, su.prefix) && name != su.argsVar && !bytes.Contains(usages[su.program], []byte("env "+name+")")) {
				t.Errorf("%s:%d: %s reads no %s", su.env, l.n, su.program, name)
			}
		}
	}
}

// copyFromContext copies src (a file or a directory of the repository) to
// dst as Docker's COPY would, skipping what .dockerignore excludes; it
// returns how many files it copied.
func copyFromContext(t *testing.T, pm *patternmatcher.PatternMatcher, src, dst string, dstIsDir bool) int {
	t.Helper()
	n := 0
	base := filepath.Join(repoRoot, src)
	err := filepath.WalkDir(base, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(repoRoot, p)
		if excluded, err := pm.MatchesOrParentMatches(filepath.ToSlash(rel)); err != nil || excluded || d.IsDir() {
			return err
		}
		target := dst
		if p == base {
			if dstIsDir {
				target = filepath.Join(dst, filepath.Base(p))
			}
		} else {
			inner, _ := filepath.Rel(base, p)
			target = filepath.Join(dst, inner)
		}
		data, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		if err := os.MkdirAll(filepath.Dir(target), 0o755); err != nil {
			return err
		}
		n++
		return os.WriteFile(target, data, 0o644)
	})
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// checkStaticBinary: no dynamic loader or shared libraries (distroless/static
// has no libc), no symbols or DWARF (-s -w), and CGO_ENABLED=0 and -trimpath
// as recorded in the binary's build info.
func checkStaticBinary(t *testing.T, p string) {
	t.Helper()
	f, err := elf.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	for _, prog := range f.Progs {
		if prog.Type == elf.PT_INTERP || prog.Type == elf.PT_DYNAMIC {
			t.Errorf("%s is dynamically linked", filepath.Base(p))
		}
	}
	for _, s := range []string{".symtab", ".debug_info"} {
		if f.Section(s) != nil {
			t.Errorf("%s has a %s section: not stripped", filepath.Base(p), s)
		}
	}
	bi, err := buildinfo.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	settings := map[string]string{}
	for _, s := range bi.Settings {
		settings[s.Key] = s.Value
	}
	// -ldflags is not recorded with -trimpath (go.dev/issue/52372): the
	// missing sections above are what -s -w leaves.
	for k, want := range map[string]string{"CGO_ENABLED": "0", "-trimpath": "true"} {
		if settings[k] != want {
			t.Errorf("%s built with %s=%q, want %q", filepath.Base(p), k, settings[k], want)
		}
	}
	if bi.Path != "github.com/alecrypt/alecrypt/cmd/"+filepath.Base(p) {
		t.Errorf("%s: main package %s", filepath.Base(p), bi.Path)
	}
}

// programUsage runs a program with -h: Go's flag package prints the usage.
func programUsage(t *testing.T, p string) []byte {
	t.Helper()
	out, _ := exec.Command(p, "-h").CombinedOutput()
	return out
}

// usageFlags collects the flag names a usage lists ("  -name type").
func usageFlags(t *testing.T, program string, usage []byte) map[string]bool {
	t.Helper()
	flags := map[string]bool{}
	for _, m := range regexp.MustCompile(`(?m)^\s+--?([a-z0-9][a-z0-9-]*)`).FindAllSubmatch(usage, -1) {
		flags[string(m[1])] = true
	}
	if len(flags) == 0 {
		t.Fatalf("%s -h lists no flags:\n%s", program, usage)
	}
	return flags
}

// checkFlagsUsed: every flag given to a program in deploy/ exists in it.
func checkFlagsUsed(t *testing.T, flags map[string]map[string]bool) {
	t.Helper()
	check := func(where, program string, args []string) {
		known, ok := flags[program]
		if !ok {
			t.Errorf("%s runs %s, which the image does not ship", where, program)
			return
		}
		for _, name := range flagNames(args) {
			if !known[name] {
				t.Errorf("%s: %s has no flag --%s", where, program, name)
			}
		}
	}
	for _, dir := range kustomizeDirs() {
		r := rendered{all: kustomizeBuild(t, dir)}
		for _, w := range r.workloads() {
			for _, c := range w.spec.Containers {
				check(dir+": "+w.kind+" "+w.name, binaryOf(c), slices.Concat(c.Command[min(1, len(c.Command)):], c.Args))
			}
		}
	}
	for _, su := range systemdUnits {
		execStart := strings.Fields(readUnit(t, su.file).get("Service", "ExecStart"))
		check(su.file+" ExecStart", filepath.Base(execStart[0]), execStart[1:])
		for _, line := range readEnvExample(t, su.env) {
			if v, ok := strings.CutPrefix(line.text, su.argsVar+"="); ok {
				check(fmt.Sprintf("%s:%d", su.env, line.n), su.program, strings.Fields(v))
			}
		}
	}
}

func TestParseDockerfile(t *testing.T) {
	t.Parallel()
	const df = "ARG V=1\nFROM golang:1.26 AS build\n# comment\nRUN a \\\n  # inside\n  b \\\n  c\nFROM scratch\nCOPY --from=build /x /y\n"
	stages, err := parseDockerfile(bytes.NewReader([]byte(df)))
	if err != nil {
		t.Fatal(err)
	}
	if len(stages) != 2 || stages[0].name != "build" || stages[1].image != "scratch" {
		t.Fatalf("parseDockerfile stages = %+v", stages)
	}
	if run := stages[0].instrs[1]; run.cmd != "RUN" || strings.Join(strings.Fields(run.args), " ") != "a b c" || run.line != 4 {
		t.Errorf("RUN = %+v, want the joined command a b c from line 4", run)
	}
}
