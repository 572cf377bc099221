// Package cli owns the command-line conventions every alecrypt binary shares:
// --version from the build information, --help and -h printed to stdout with
// exit status 0, flags shown with two dashes, and no stray positional
// arguments. It decides nothing about what a command does; main packages
// keep their own flags and usage text.
package cli

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"runtime"
	"runtime/debug"
	"strings"
)

// Set by the image build (deploy/Dockerfile) with
// -ldflags "-X github.com/alecrypt/alecrypt/internal/cli.version=v1.2.3 -X ...cli.commit=abc".
// Builds without them (go build, go run, go test) fall back to the build
// information Go records: the module version and the VCS revision.
var (
	version string
	commit  string
)

// BuildInfo says which build a binary is.
type BuildInfo struct {
	Version   string // e.g. v1.2.3, or "(devel)" for a build from a checkout
	Commit    string // VCS revision, "" when unknown
	Modified  bool   // the checkout had uncommitted changes
	GoVersion string // the Go toolchain that built it
	Platform  string // GOOS/GOARCH
}

// Info returns the running binary's build information.
func Info() BuildInfo {
	b := BuildInfo{Version: "(devel)", GoVersion: runtime.Version(), Platform: runtime.GOOS + "/" + runtime.GOARCH}
	if bi, ok := debug.ReadBuildInfo(); ok {
		if v := bi.Main.Version; v != "" {
			b.Version = v
		}
		for _, s := range bi.Settings {
			switch s.Key {
			case "vcs.revision":
				b.Commit = s.Value
			case "vcs.modified":
				b.Modified = s.Value == "true"
			}
		}
	}
	// Values stamped by the linker win: an image is built from a source
	// copy without .git, where Go records no revision.
	if version != "" {
		b.Version = version
	}
	if commit != "" {
		b.Commit, b.Modified = commit, false
	}
	return b
}

// String is the one-line form --version prints after the program name.
func (b BuildInfo) String() string {
	c := b.Commit
	if c == "" {
		c = "unknown"
	}
	if b.Modified {
		c += "-modified"
	}
	return fmt.Sprintf("%s commit %s %s %s", b.Version, c, b.GoVersion, b.Platform)
}

// VersionLine is what `PROGRAM --version` prints.
func VersionLine(program string) string { return program + " " + Info().String() }

// ErrVersion is returned by Parse after it printed the version. It wraps
// flag.ErrHelp on purpose: every main already ends with exit status 0 on
// flag.ErrHelp, and --version is the same kind of request.
var ErrVersion = fmt.Errorf("version printed: %w", flag.ErrHelp)

// UsageError is a bad command line: callers print it and exit with 2.
type UsageError struct {
	Msg     string // what is wrong, one line
	Command string // the command whose --help explains it ("alectl encrypt"); "" for none
}

// Error is the message with where to look next, in one line: daemons print
// it as it is; alectl puts the pointer on a line of its own, as git does.
func (e *UsageError) Error() string {
	if e.Command == "" {
		return e.Msg
	}
	return fmt.Sprintf("%s (see %s --help)", e.Msg, e.Command)
}

// Parse parses args into fs for a command that takes no positional
// arguments, adding --version. On --help or -h it prints usage, then the
// flags, to stdout and returns flag.ErrHelp; on --version it prints the
// version to stdout and returns ErrVersion. Bad flags and stray arguments
// are a *UsageError naming the help flag; nothing is printed for them, so
// callers decide where errors go (stderr).
func Parse(fs *flag.FlagSet, args []string, stdout io.Writer, usage string) error {
	showVersion := fs.Bool("version", false, "print the version and exit")
	pos, err := ParseArgs(fs, args, stdout, usage)
	if err != nil {
		return err
	}
	if *showVersion {
		fmt.Fprintln(stdout, VersionLine(programName(fs)))
		return ErrVersion
	}
	if len(pos) > 0 {
		return &UsageError{fmt.Sprintf("unexpected arguments %q", pos), fs.Name()}
	}
	return nil
}

// ParseArgs is Parse for commands with positional arguments, which it
// returns; flags may come before or after them ("keys import FILE
// --replace"), and "--" ends the flags. It adds no --version.
func ParseArgs(fs *flag.FlagSet, args []string, stdout io.Writer, usage string) ([]string, error) {
	// The flag package prints errors and calls Usage itself; both are
	// silenced so that help alone goes to stdout and errors are returned.
	fs.SetOutput(io.Discard)
	fs.Usage = func() {}
	var pos []string
	for {
		err := fs.Parse(args)
		if errors.Is(err, flag.ErrHelp) {
			fmt.Fprint(stdout, usage)
			printFlags(stdout, fs)
			return nil, flag.ErrHelp
		}
		if err != nil {
			return nil, &UsageError{err.Error(), fs.Name()}
		}
		rest := fs.Args()
		if len(rest) == 0 {
			return pos, nil
		}
		// flag stops at "--" or the first non-flag: "--" ends the flags for
		// good, anything else is a positional argument with flags after it.
		if len(args) > len(rest) && args[len(args)-len(rest)-1] == "--" {
			return append(pos, rest...), nil
		}
		pos = append(pos, rest[0])
		args = rest[1:]
	}
}

// printFlags writes fs's flags in the form users type them, with two
// dashes, sorted by name, each with its description and non-zero default.
func printFlags(w io.Writer, fs *flag.FlagSet) {
	n := 0
	fs.VisitAll(func(*flag.Flag) { n++ })
	if n == 0 {
		return
	}
	fmt.Fprintln(w, "\nFlags:")
	fs.VisitAll(func(f *flag.Flag) {
		arg, usage := flag.UnquoteUsage(f)
		line := "  --" + f.Name
		if arg != "" {
			line += " " + arg
		}
		usage = strings.ReplaceAll(usage, "\n", "\n        ")
		if def := f.DefValue; !isZero(def) {
			if g, ok := f.Value.(flag.Getter); ok {
				if _, isString := g.Get().(string); isString {
					def = fmt.Sprintf("%q", def)
				}
			}
			usage += " (default " + def + ")"
		}
		fmt.Fprintf(w, "%s\n        %s\n", line, usage)
	})
}

func isZero(def string) bool {
	switch def {
	case "", "0", "false", "0s", "[]":
		return true
	}
	return false
}

// programName is the first word of a flag set's name ("alectl keys add" is
// alectl's).
func programName(fs *flag.FlagSet) string {
	name, _, _ := strings.Cut(fs.Name(), " ")
	return name
}

// EnvName is the environment variable that sets flag name for a program
// whose variables start with prefix: ALEGATE + read-timeout is
// ALEGATE_READ_TIMEOUT.
func EnvName(prefix, name string) string {
	return prefix + "_" + strings.ToUpper(strings.ReplaceAll(name, "-", "_"))
}

// FromEnv gives every flag of fs an environment variable, named by EnvName,
// so that a daemon is configured the same way from a command line, a
// systemd unit or a Kubernetes manifest. Call it after defining the flags
// and before Parse: a set variable becomes the flag's value, and a flag on
// the command line still wins. Each flag's help names its variable. A
// variable that does not parse is a *UsageError naming it.
func FromEnv(fs *flag.FlagSet, prefix string, getenv func(string) string) error {
	var err error
	fs.VisitAll(func(f *flag.Flag) {
		env := EnvName(prefix, f.Name)
		if !strings.Contains(f.Usage, "(env ") {
			f.Usage += " (env " + env + ")"
		}
		v := getenv(env)
		if v == "" || err != nil {
			return
		}
		if serr := fs.Set(f.Name, v); serr != nil {
			// The value itself is not repeated: string flags, the ones that
			// can hold a credential, never fail to parse.
			err = &UsageError{fmt.Sprintf("%s: %v", env, serr), fs.Name()}
		}
	})
	return err
}
