package e2e

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"unicode"

	"github.com/alecrypt/alecrypt/test/harness"
)

// The documents a user reads, besides every page of docs/ (userDocs adds
// them): what they name must exist.
var userReadmes = []string{"README.md", "deploy/README.md", "deploy/vault/README.md", "clients/ts/README.md",
	"clients/python/README.md", "examples/README.md"}

// userDocs are userReadmes and the pages of docs/, found rather than listed so
// that a new page is checked from the day it is written.
func userDocs(t *testing.T) []string {
	t.Helper()
	pages, err := filepath.Glob(filepath.Join(harness.RepoRoot(), "docs", "*.md"))
	if err != nil || len(pages) == 0 {
		t.Fatalf("no pages in docs/: %v", err)
	}
	docs := slices.Clone(userReadmes)
	for _, p := range pages {
		docs = append(docs, filepath.Join("docs", filepath.Base(p)))
	}
	return docs
}

// ourPrograms are the binaries whose flags the docs name, with the
// subcommands that have flags of their own.
var ourPrograms = map[string][]string{
	"alecryptd": nil,
	"alegate":   nil,
	"alesync":   nil,
	"alebench":  {"genkeys", "startup", "memory", "floors", "serve", "conns"},
	"alectl": {"encrypt", "decrypt", "resolve", "rewrap", "http", "keys list", "keys init", "keys add",
		"keys import", "keys state", "keys seal", "audit verify"},
}

// externalFlags are the flags the docs name of programs that are not ours
// (grpcurl, buf, curl, npm, go, node, kubectl, docker, kustomize, openssl);
// a flag of ours named in prose must be in some --help of ours.
var externalFlags = []string{
	"http2-prior-knowledge", "protocol", "list-methods", // buf curl
	"no-audit", "no-fund", "ignore-scripts", "pack-destination", "prefer-offline", "json", // npm
	"conditions", "import", // node
	"rm", "cert", "key", "from-file", "from-literal", // docker, kubectl
	"headless", "no-sandbox", "remote-debugging-address", "remote-debugging-port", "user-data-dir", // chromium
	"no-install-recommends", "no-print-directory", "diff", "exit-code", "template", // apt, make, buf
	"platform", "push", "now", "offline", "audience", "for", "all", "noEmit", // docker buildx, systemctl, systemd-analyze, kubectl, tsc
}

// notOurs starts command lines that name our programs as objects (a
// service account, a unit, a deployment), not as the command run.
var notOurs = regexp.MustCompile(`^\s*(?:sudo\s+)?(?:kubectl|systemctl|journalctl|docker)\b`)

var (
	flagRE       = regexp.MustCompile(`(?:^|[\s\[(/"'=])--([a-zA-Z][a-zA-Z0-9-]*)`)
	helpFlagRE   = regexp.MustCompile(`(?m)^  --([a-z][a-z0-9-]*)`)
	fenceRE      = regexp.MustCompile("(?ms)^```[a-z]*\n(.*?)^```")
	spanRE       = regexp.MustCompile("`([^`\n]+)`")
	dataFileRE   = regexp.MustCompile(`--(?:data|secret-file)[ =]@?([A-Za-z0-9_./-]+\.(?:json|jsonl|txt))\b`)
	linkRE       = regexp.MustCompile(`\]\(([^)#\s]+)(?:#[^)]*)?\)`)
	anchorLinkRE = regexp.MustCompile(`\]\(([^)#\s]*)#([^)\s]+)\)`)
	headingRE    = regexp.MustCompile(`(?m)^#{1,6} +(.+?) *$`)
	repoPathRE   = regexp.MustCompile(`^(?:\./)?((?:cmd|service|test|deploy|docs|examples|clients|internal|proto|gen|tools)/[A-Za-z0-9_./-]*[A-Za-z0-9_])`)
	ourCommandRE = regexp.MustCompile(`(?:^|[\s/($])(alecryptd|alegate|alesync|alectl|alebench)((?:\s+[^|;&#)]*)?)`)
)

// TestDocsNameRealFlagsAndFiles: every flag the user docs give one of our
// programs on a command line is in that program's (or subcommand's)
// --help, every other flag they name of ours is in some --help, and every
// file or folder of the repository they cite or link exists. It catches a
// renamed or removed flag and a moved file the day it happens.
func TestDocsNameRealFlagsAndFiles(t *testing.T) {
	dir := cliBinaries(t)
	root := harness.RepoRoot()
	flags := map[string]map[string]bool{} // "alectl keys add" -> flags
	all := map[string]bool{}
	for prog, subs := range ourPrograms {
		for _, sub := range append([]string{""}, subs...) {
			name := strings.TrimSpace(prog + " " + sub)
			args := append(strings.Fields(name), "--help")
			out, errOut, code := runCLI(t, dir, args...)
			if code != 0 {
				t.Fatalf("%s --help: exit %d %s", name, code, errOut)
			}
			flags[name] = map[string]bool{"help": true, "version": prog != "alectl" || sub == ""}
			for _, m := range helpFlagRE.FindAllStringSubmatch(out, -1) {
				flags[name][m[1]] = true
				all[m[1]] = true
				if sub != "" { // "alectl --addr ..." names flags every subcommand has
					if flags[prog] == nil {
						flags[prog] = map[string]bool{}
					}
					flags[prog][m[1]] = true
				}
			}
		}
	}
	for _, f := range append(externalFlags, "help", "version") {
		all[f] = true
	}

	sections := map[string]map[string]bool{} // page -> its headings' anchors
	for _, doc := range userDocs(t) {
		raw, err := os.ReadFile(filepath.Join(root, doc))
		if err != nil {
			t.Fatal(err)
		}
		text := string(raw)
		var code []string // command lines: fenced lines, \ continuations joined, and inline spans
		for _, m := range fenceRE.FindAllStringSubmatch(text, -1) {
			code = append(code, strings.Split(strings.ReplaceAll(m[1], "\\\n", " "), "\n")...)
		}
		spans := spanRE.FindAllStringSubmatch(fenceRE.ReplaceAllString(text, ""), -1)
		for _, m := range spans {
			code = append(code, m[1])
		}
		for _, line := range code {
			if i := strings.Index(line, " #"); i >= 0 {
				line = line[:i]
			}
			for _, m := range ourCommandRE.FindAllStringSubmatch(line, -1) {
				if notOurs.MatchString(line) {
					break
				}
				prog, rest := m[1], m[2]
				name := commandOf(prog, strings.Fields(rest))
				for _, f := range flagRE.FindAllStringSubmatch(rest, -1) {
					if !flags[name][f[1]] {
						t.Errorf("%s: `%s` gives %s --%s, which `%s --help` does not list", doc, strings.TrimSpace(line), name, f[1], name)
					}
				}
			}
			for _, f := range flagRE.FindAllStringSubmatch(line, -1) {
				if !all[f[1]] {
					t.Errorf("%s: `%s` names --%s, which no --help of ours lists (nor is it a known external tool's)", doc, strings.TrimSpace(line), f[1])
				}
			}
		}

		// Files: relative links, and code spans that are repository paths.
		var cited []string
		for _, m := range linkRE.FindAllStringSubmatch(text, -1) {
			if !strings.Contains(m[1], "://") {
				cited = append(cited, filepath.Join(filepath.Dir(doc), m[1]))
			}
		}
		for _, line := range code {
			for _, word := range strings.Fields(line) {
				// @FILE is a file's content to alectl, curl and vault.
				word = strings.Trim(strings.TrimPrefix(word, "@"), `"'(),;:`)
				if p := repoPathRE.FindStringSubmatch(word); p != nil && !strings.ContainsAny(p[1], "*<>$") {
					cited = append(cited, p[1])
				}
			}
			for _, m := range dataFileRE.FindAllStringSubmatch(line, -1) {
				cited = append(cited, m[1])
			}
		}
		for _, c := range cited {
			// A path is the repository's, or relative to the document.
			_, err := os.Stat(filepath.Join(root, c))
			if err != nil {
				_, err = os.Stat(filepath.Join(root, filepath.Dir(doc), c))
			}
			if err != nil {
				t.Errorf("%s cites %s, which does not exist", doc, c)
			}
		}

		// Sections: a link to a section of a Markdown page names a heading
		// the page has (a section renamed or moved to another page).
		for _, m := range anchorLinkRE.FindAllStringSubmatch(fenceRE.ReplaceAllString(text, ""), -1) {
			page := doc
			if m[1] != "" {
				if strings.Contains(m[1], "://") || !strings.HasSuffix(m[1], ".md") {
					continue
				}
				page = filepath.Join(filepath.Dir(doc), m[1])
			}
			anchors, ok := sections[page]
			if !ok {
				raw, err := os.ReadFile(filepath.Join(root, page))
				if err != nil {
					continue // reported above as a missing file
				}
				anchors = headingAnchors(string(raw))
				sections[page] = anchors
			}
			if !anchors[m[2]] {
				t.Errorf("%s links to %s#%s, which has no such heading", doc, page, m[2])
			}
		}
	}
}

// headingAnchors are the anchors GitHub gives a Markdown page's headings:
// lower case, spaces as hyphens, every character but letters, digits, - and
// _ dropped, and -1, -2, ... after a repeated one.
func headingAnchors(text string) map[string]bool {
	anchors := map[string]bool{}
	seen := map[string]int{}
	for _, m := range headingRE.FindAllStringSubmatch(fenceRE.ReplaceAllString(text, ""), -1) {
		var b strings.Builder
		for _, r := range strings.ToLower(m[1]) {
			switch {
			case r == ' ':
				b.WriteRune('-')
			case r == '-' || r == '_' || unicode.IsLetter(r) || unicode.IsDigit(r):
				b.WriteRune(r)
			}
		}
		a := b.String()
		if n := seen[a]; n > 0 {
			a = fmt.Sprintf("%s-%d", a, n)
		}
		seen[b.String()]++
		anchors[a] = true
	}
	return anchors
}

// commandOf is the command a doc's command line runs: the program and its
// subcommand words (alectl keys add), as far as they name one we know.
func commandOf(prog string, words []string) string {
	name := prog
	for _, w := range words {
		next := name + " " + w
		known := false
		for _, sub := range ourPrograms[prog] {
			if prog+" "+sub == next || strings.HasPrefix(prog+" "+sub, next+" ") {
				known = true
			}
		}
		if !known {
			break
		}
		name = next
	}
	if !slices.Contains(append([]string{""}, ourPrograms[prog]...), strings.TrimPrefix(strings.TrimPrefix(name, prog), " ")) {
		return prog // a partial subcommand ("alectl keys"): any of its flags
	}
	return name
}
