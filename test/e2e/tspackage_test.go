package e2e

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/alecrypt/alecrypt/test/harness"
)

// TestTSPackage checks that @alecrypt/ale-client is a real npm package: it
// builds it (npm run build: ESM .js and .d.ts), packs it with npm pack,
// installs the tarball into an empty project outside the repository (its
// dependencies from the npm cache that npm ci filled, falling back to the
// registry only for what is missing), runs a consumer with plain Node
// against a real alecryptd over Connect and gRPC, and type-checks a
// TypeScript consumer against the installed declarations.
func TestTSPackage(t *testing.T) {
	node := harness.RequireTool(t, "node")
	npm := harness.RequireTool(t, "npm")
	requireNodeModules(t)
	root := harness.RepoRoot()
	pkgDir := filepath.Join(root, "clients", "ts")
	tmp := t.TempDir()

	runIn := func(dir string, env []string, name string, args ...string) string {
		t.Helper()
		cmd := exec.Command(name, args...)
		cmd.Dir = dir
		cmd.Env = append(os.Environ(), env...)
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("%s %s (in %s): %v\n%s", name, strings.Join(args, " "), dir, err, out)
		}
		return string(out)
	}

	// npm pack by hand, with no build before it: the package's prepack
	// script must build it (a tarball without dist/ has no JavaScript).
	if err := os.RemoveAll(filepath.Join(pkgDir, "dist")); err != nil {
		t.Fatal(err)
	}
	packOut := runIn(pkgDir, nil, npm, "pack", "--json", "--pack-destination", tmp)
	var packed []struct {
		Filename string `json:"filename"`
		Files    []struct {
			Path string `json:"path"`
		} `json:"files"`
		Dependencies map[string]string `json:"dependencies"`
	}
	// npm prints its JSON after any notices; it starts at the first '['.
	if i := strings.Index(packOut, "["); i < 0 || json.Unmarshal([]byte(packOut[i:]), &packed) != nil || len(packed) != 1 {
		t.Fatalf("npm pack --json output:\n%s", packOut)
	}
	var files []string
	for _, f := range packed[0].Files {
		files = append(files, f.Path)
	}
	for _, want := range []string{"package.json", "README.md", "dist/clients/ts/index.js", "dist/clients/ts/index.d.ts",
		"dist/gen/ts/ale/v1/crypto_pb.js", "dist/gen/ts/ale/v1/crypto_pb.d.ts", "dist/gen/ts/ale/v1/types_pb.js", "dist/gen/ts/ale/v1/keys_pb.js"} {
		if !slices.Contains(files, want) {
			t.Errorf("tarball lacks %s; it has %v", want, files)
		}
	}
	for _, f := range files {
		if strings.HasSuffix(f, ".ts") && !strings.HasSuffix(f, ".d.ts") {
			t.Errorf("tarball ships TypeScript source %s: plain Node cannot run it", f)
		}
	}

	// An empty project whose only dependency is the tarball.
	project := filepath.Join(tmp, "consumer")
	if err := os.MkdirAll(project, 0o755); err != nil {
		t.Fatal(err)
	}
	writeFile := func(name, content string) {
		t.Helper()
		if err := os.WriteFile(filepath.Join(project, name), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	writeFile("package.json", `{"name":"consumer","private":true,"type":"module","dependencies":{"@alecrypt/ale-client":"file:../`+packed[0].Filename+`"}}`)
	writeFile("tsconfig.json", `{"compilerOptions":{"target":"ES2022","module":"NodeNext","moduleResolution":"NodeNext","strict":true,"noEmit":true,"skipLibCheck":true,"types":[]},"include":["consumer.ts"]}`)
	for _, name := range []string{"main.mjs", "consumer.ts"} {
		data, err := os.ReadFile(filepath.Join(root, "test", "node", "package", name))
		if err != nil {
			t.Fatal(err)
		}
		writeFile(name, string(data))
	}
	// --prefer-offline: the pinned dependencies are in the cache npm ci
	// filled (same versions as package-lock.json); no install scripts run.
	runIn(project, nil, npm, "install", "--prefer-offline", "--no-audit", "--no-fund", "--ignore-scripts")

	// npm resolved the package's declared dependencies to the pinned,
	// Node 20 compatible versions.
	for name, want := range map[string]string{"@bufbuild/protobuf": "2.13.0", "@connectrpc/connect": "2.1.2", "@connectrpc/connect-node": "2.1.2"} {
		var v struct {
			Version string `json:"version"`
		}
		data, err := os.ReadFile(filepath.Join(project, "node_modules", name, "package.json"))
		if err == nil {
			err = json.Unmarshal(data, &v)
		}
		if err != nil || v.Version != want {
			t.Errorf("consumer's %s = %q (%v), want %s", name, v.Version, err, want)
		}
	}

	svc := harness.StartAlecryptd(t, harness.StartOptions{})
	cmd := exec.Command(node, "main.mjs")
	cmd.Dir = project
	cmd.Env = append(os.Environ(), "ALECRYPT_URL="+svc.URL, "NODE_OPTIONS=")
	out, err := cmd.CombinedOutput()
	t.Logf("main.mjs:\n%s", out)
	if err != nil {
		t.Fatalf("plain node main.mjs: %v", err)
	}
	m := regexp.MustCompile(`(?m)^ale-client package: (\d+) checks passed, 0 failed$`).FindSubmatch(out)
	if m == nil {
		t.Fatal("main.mjs printed no passing summary")
	}
	if n, _ := strconv.Atoi(string(m[1])); n < 11 {
		t.Fatalf("main.mjs ran %d checks, want at least 11", n)
	}

	// The declarations: the repository's pinned tsc, run in the consumer.
	tsc := filepath.Join(root, "node_modules", "typescript", "bin", "tsc")
	runIn(project, nil, node, tsc, "--noEmit", "-p", "tsconfig.json")
}
