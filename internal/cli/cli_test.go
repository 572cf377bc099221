package cli

import (
	"bytes"
	"errors"
	"flag"
	"io"
	"runtime"
	"slices"
	"strings"
	"testing"
)

func newFS() (*flag.FlagSet, *string, *bool) {
	fs := flag.NewFlagSet("prog sub", flag.ContinueOnError)
	s := fs.String("name", "def", "a `NAME` to use")
	b := fs.Bool("json", false, "print JSON")
	fs.Duration("timeout", 0, "deadline")
	return fs, s, b
}

func TestParseArgs(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name    string
		args    []string
		wantPos []string
		wantErr string // substring of a *UsageError; "help" for flag.ErrHelp
		wantVal string
	}{
		{name: "flags after positionals", args: []string{"a", "--name", "x", "b", "--json"}, wantPos: []string{"a", "b"}, wantVal: "x"},
		{name: "double dash ends flags", args: []string{"--name=y", "--", "--json", "c"}, wantPos: []string{"--json", "c"}, wantVal: "y"},
		{name: "unknown flag", args: []string{"--nope"}, wantErr: "flag provided but not defined: -nope (see prog sub --help)"},
		{name: "missing value", args: []string{"--name"}, wantErr: "flag needs an argument"},
		{name: "help", args: []string{"a", "-h"}, wantErr: "help"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			fs, name, _ := newFS()
			var out bytes.Buffer
			pos, err := ParseArgs(fs, tc.args, &out, "usage line\n")
			switch {
			case tc.wantErr == "help":
				if !errors.Is(err, flag.ErrHelp) || !strings.HasPrefix(out.String(), "usage line\n\nFlags:\n  --json\n") {
					t.Fatalf("ParseArgs(%q) err = %v, output %q; want flag.ErrHelp and the usage", tc.args, err, out.String())
				}
			case tc.wantErr != "":
				var ue *UsageError
				if !errors.As(err, &ue) || !strings.Contains(ue.Error(), tc.wantErr) || out.Len() != 0 {
					t.Fatalf("ParseArgs(%q) err = %v, output %q; want a UsageError with %q and no output", tc.args, err, out.String(), tc.wantErr)
				}
			default:
				if err != nil || !slices.Equal(pos, tc.wantPos) || *name != tc.wantVal {
					t.Fatalf("ParseArgs(%q) = %q, %v, name %q; want %q, nil, %q", tc.args, pos, err, *name, tc.wantPos, tc.wantVal)
				}
			}
		})
	}
}

func TestParse(t *testing.T) {
	t.Parallel()
	fs, _, _ := newFS()
	if err := Parse(fs, []string{"--json", "stray"}, &bytes.Buffer{}, ""); err == nil || !strings.Contains(err.Error(), `unexpected arguments ["stray"]`) {
		t.Errorf("Parse(stray) err = %v, want unexpected arguments", err)
	}
	fs, _, _ = newFS()
	var out bytes.Buffer
	err := Parse(fs, []string{"--version"}, &out, "")
	if !errors.Is(err, ErrVersion) || !errors.Is(err, flag.ErrHelp) {
		t.Errorf("Parse(--version) err = %v, want ErrVersion, which is flag.ErrHelp", err)
	}
	if want := "prog " + Info().String() + "\n"; out.String() != want {
		t.Errorf("Parse(--version) printed %q, want %q", out.String(), want)
	}
}

func TestPrintFlags(t *testing.T) {
	t.Parallel()
	fs, _, _ := newFS()
	var out bytes.Buffer
	printFlags(&out, fs)
	want := `
Flags:
  --json
        print JSON
  --name NAME
        a NAME to use (default "def")
  --timeout duration
        deadline
`
	if out.String() != want {
		t.Errorf("printFlags =\n%s\nwant\n%s", out.String(), want)
	}
}

func TestInfoPrefersLinkerValues(t *testing.T) {
	// Not parallel: it sets the package's linker variables.
	defer func(v, c string) { version, commit = v, c }(version, commit)
	version, commit = "v1.2.3", "abc123"
	got := Info()
	if got.Version != "v1.2.3" || got.Commit != "abc123" || got.Modified || got.GoVersion != runtime.Version() {
		t.Errorf("Info() = %+v, want the stamped version and commit", got)
	}
	if s := got.String(); s != "v1.2.3 commit abc123 "+runtime.Version()+" "+runtime.GOOS+"/"+runtime.GOARCH {
		t.Errorf("String() = %q", s)
	}
	version, commit = "", ""
	if got := Info(); got.Version == "" || got.Version == "v1.2.3" {
		t.Errorf("Info() without linker values = %+v, want the build info's version", got)
	}
}

func TestFromEnv(t *testing.T) {
	t.Parallel()
	newFS := func() (*flag.FlagSet, *string, *int, *bool) {
		fs := flag.NewFlagSet("alegate", flag.ContinueOnError)
		listen := fs.String("listen", "127.0.0.1:8081", "address")
		max := fs.Int("max-body-bytes", 10, "limit")
		on := fs.Bool("encrypt-responses", false, "seal responses")
		return fs, listen, max, on
	}
	env := func(m map[string]string) func(string) string { return func(k string) string { return m[k] } }
	tests := []struct {
		name       string
		env        map[string]string
		args       []string
		wantListen string
		wantMax    int
		wantOn     bool
		wantErr    string
	}{
		{name: "defaults", wantListen: "127.0.0.1:8081", wantMax: 10},
		{name: "env sets every kind of flag",
			env:        map[string]string{"ALEGATE_LISTEN": ":9", "ALEGATE_MAX_BODY_BYTES": "42", "ALEGATE_ENCRYPT_RESPONSES": "true"},
			wantListen: ":9", wantMax: 42, wantOn: true},
		{name: "the command line wins",
			env: map[string]string{"ALEGATE_LISTEN": ":9", "ALEGATE_MAX_BODY_BYTES": "42"}, args: []string{"--max-body-bytes", "7"},
			wantListen: ":9", wantMax: 7},
		{name: "a variable that does not parse names itself",
			env: map[string]string{"ALEGATE_MAX_BODY_BYTES": "lots"}, wantErr: "ALEGATE_MAX_BODY_BYTES"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			fs, listen, max, on := newFS()
			err := FromEnv(fs, "ALEGATE", env(tc.env))
			if err == nil {
				err = Parse(fs, tc.args, io.Discard, "")
			}
			if tc.wantErr != "" {
				var ue *UsageError
				if !errors.As(err, &ue) || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want a UsageError naming %s", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if *listen != tc.wantListen || *max != tc.wantMax || *on != tc.wantOn {
				t.Errorf("flags = %q %d %v, want %q %d %v", *listen, *max, *on, tc.wantListen, tc.wantMax, tc.wantOn)
			}
		})
	}
	fs, _, _, _ := newFS()
	if err := FromEnv(fs, "ALEGATE", env(nil)); err != nil {
		t.Fatal(err)
	}
	var help strings.Builder
	_ = Parse(fs, []string{"--help"}, &help, "usage\n")
	for _, want := range []string{"(env ALEGATE_LISTEN)", "(env ALEGATE_MAX_BODY_BYTES)", "(env ALEGATE_ENCRYPT_RESPONSES)"} {
		if !strings.Contains(help.String(), want) {
			t.Errorf("help does not name %s:\n%s", want, help.String())
		}
	}
}
