// Command alectl is the alecrypt CLI for POS backends and operators.
//
// Against a running alecryptd (--addr, env ALECRYPT_ADDR) it encrypts,
// decrypts, resolves and lists keys; it holds no keys itself. The keys add,
// import and state commands edit an embedded keystore file directly
// (--keystore, env ALECRYPT_KEYSTORE); alecryptd notices the change within
// its refresh interval, or at once on SIGHUP.
package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"

	"golang.org/x/term"

	"github.com/alecrypt/alecrypt/internal/cli"
)

const usage = `alectl: the alecrypt CLI

Against a running alecryptd (--addr, env ALECRYPT_ADDR, default http://127.0.0.1:8080):
  alectl encrypt  [--alias A | --fingerprint F] [--data TEXT|@FILE] [--aad TEXT] [--json]
                  plaintext from --data or stdin; prints the envelope {"iv","fingerprint","message"}
  alectl decrypt  [--data FRAME|@FILE] [--aad TEXT] [--expect json|utf8|none] [--json] [--binary]
                  reads an envelope frame; prints the plaintext
  alectl resolve  [--alias A | --fingerprint F] [--json]
  alectl rewrap   [--alias A | --fingerprint F] [--data FRAMES|@FILE] [--aad TEXT] [--expect json|utf8|none] [--json]
                  envelope frames, one per line, moved under the key's primary (plaintext never leaves alecryptd)
  alectl keys list [--alias A] [--json]
                  every key: state, primary, version, source, last used (by the replica that answers)
  alectl http METHOD URL [--alias A | --fingerprint F] [--data TEXT|@FILE] [--authorization V] [--header "K: V"]
                  an ALE request through a gateway: body encrypted, encrypted responses decrypted

On an embedded keystore file (--keystore, env ALECRYPT_KEYSTORE, default ./alecrypt-data/keystore.json,
the file alecryptd serves when started in the same directory; it must exist, except with --create):
  alectl keys init   [--alias default]     a new keystore with one fresh key, as alecryptd's first start
  alectl keys add    --alias A[,B] [--algorithm aes-256-ctr|aes-256-gcm] [--secret-file F] [--create] ...
  alectl keys import FILE [--replace] [--create]      FILE holds {"keys":[record,...]}
  alectl keys state  FINGERPRINT active|decrypt-only|disabled
  alectl keys seal   --recipient AGE-RECIPIENT [--recipient ...]   seal it with age, or re-seal to new recipients
  A sealed keystore is opened with --identity FILE (env ALECRYPT_KEYSTORE_IDENTITY), an age identity file.

Also:
  alectl audit verify FILE...    check that audit files are one unbroken chain (see alectl audit verify --help)
  alectl version                 the version, commit and Go version (also: alectl --version)
  alectl completion bash|zsh     shell completion: source <(alectl completion bash)

Every command takes --help. Exit status: 0 ok, 1 the operation failed, 2 usage error.
`

const keysUsage = `alectl keys: list the keys of a running alecryptd, or edit an embedded keystore file

  alectl keys list   [--alias A] [--json]                   (against --addr)
  alectl keys init   [--alias default]                      (a new keystore file)
  alectl keys add    --alias A[,B] [--algorithm aes-256-ctr|aes-256-gcm] [--secret-file F] [--create] ...
  alectl keys import FILE [--replace] [--create]
  alectl keys state  FINGERPRINT active|decrypt-only|disabled
  alectl keys seal   --recipient AGE-RECIPIENT [--recipient ...]
  (a sealed keystore is opened with --identity FILE, env ALECRYPT_KEYSTORE_IDENTITY)

alectl keys SUBCOMMAND --help shows a subcommand's flags.
`

// synopses head each subcommand's --help, before its flags.
var synopses = map[string]string{
	"alectl encrypt":     "alectl encrypt: seal plaintext (from --data or stdin); prints the envelope {\"iv\",\"fingerprint\",\"message\"}\n\n  alectl encrypt [--alias A | --fingerprint F] [--data TEXT|@FILE] [--aad TEXT] [--json]\n",
	"alectl decrypt":     "alectl decrypt: open an envelope frame (from --data or stdin); prints the plaintext\n(on a terminal: text only, ending with a newline; bytes that are not UTF-8 need --binary)\n\n  alectl decrypt [--data FRAME|@FILE] [--aad TEXT] [--expect json|utf8|none] [--json] [--binary]\n",
	"alectl resolve":     "alectl resolve: the metadata of the key an alias or fingerprint names (never key material)\n\n  alectl resolve [--alias A | --fingerprint F] [--json]\n",
	"alectl rewrap":      "alectl rewrap: move envelope frames (one per line, from --data or stdin) under the primary of --alias\n(or --fingerprint, or the default key), e.g. off a retired key. Prints one frame per line; a frame that\nfailed gets an empty line, its error on stderr and exit status 1. The plaintext never leaves alecryptd;\nit is checked as JSON before it is sealed again unless --expect says otherwise (none is refused from\naes-256-ctr into aes-256-gcm: a wrong key's garbage would come out authenticated).\n\n  alectl rewrap [--alias A | --fingerprint F] [--data FRAMES|@FILE] [--aad TEXT] [--expect json|utf8|none] [--batch N] [--json]\n",
	"alectl http":        "alectl http: an ALE request through a gateway: body encrypted, encrypted responses decrypted\n\n  alectl http METHOD URL [--alias A | --fingerprint F] [--data TEXT|@FILE] [--authorization V] [--header \"K: V\"]\n",
	"alectl keys list":   "alectl keys list: the keys of a running alecryptd: state, primary, version, source, and when the replica answering last used each\n\n  alectl keys list [--alias A] [--json]\n",
	"alectl keys init":   "alectl keys init: create an embedded keystore file with one fresh aes-256-ctr key, as alecryptd does on its first start\n\n  alectl keys init [--alias default] [--keystore F]\n",
	"alectl keys add":    "alectl keys add: add a key to an existing embedded keystore file (generated, or a Portal-issued Secret Key)\n\n  alectl keys add --alias A[,B] [--algorithm aes-256-ctr|aes-256-gcm] [--secret-file F --fingerprint FP --salt S] [--create] [flags]\n",
	"alectl keys import": "alectl keys import: import {\"keys\":[record,...]} into an existing embedded keystore file, all or nothing\n\n  alectl keys import FILE [--replace] [--create]\n",
	"alectl keys state":  "alectl keys state: move a key through rotation in an embedded keystore file\n\n  alectl keys state FINGERPRINT active|decrypt-only|disabled\n",
	"alectl keys seal":   "alectl keys seal: seal an embedded keystore file with age to the given recipients (public keys), or re-seal a\nsealed one (with --identity) to new recipients, which rotates the key-encrypting key. The file is replaced\natomically and the plaintext never touches the disk. The recipients are written to KEYSTORE.recipients, and\nlater edits (keys add, import, state, with --identity) re-seal to them.\n\n  alectl keys seal --recipient AGE-RECIPIENT [--recipient ...] [--identity FILE]\n",
}

func main() {
	os.Exit(run(os.Args[1:], os.Stdin, os.Stdout, os.Stderr, os.Getenv))
}

// env holds the process's streams and environment so commands are testable.
type env struct {
	stdin          io.Reader
	stdout, stderr io.Writer
	getenv         func(string) string
	// terminal says stdout is a terminal, where decrypted bytes that are
	// not text are refused (they could be escape sequences).
	terminal bool
}

// isTerminal reports whether w is a terminal (not merely a character
// device: /dev/null is one too).
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	return ok && term.IsTerminal(int(f.Fd()))
}

func run(args []string, stdin io.Reader, stdout, stderr io.Writer, getenv func(string) string) int {
	e := env{stdin: stdin, stdout: stdout, stderr: stderr, getenv: getenv, terminal: isTerminal(stdout)}
	return e.run(args)
}

func (e env) run(args []string) int {
	if len(args) == 0 {
		fmt.Fprint(e.stderr, usage)
		return 2
	}
	var err error
	// helpCmd is the command whose --help explains a usage error.
	helpCmd := "alectl"
	switch cmd, rest := args[0], args[1:]; cmd {
	case "version", "--version", "-version":
		helpCmd = "alectl version"
		if len(rest) == 1 && (rest[0] == "-h" || rest[0] == "--help") {
			fmt.Fprint(e.stdout, "alectl version: print alectl's version, commit, Go version and platform\n\n  alectl version\n")
			break
		}
		if len(rest) > 0 {
			err = usageError("%s takes no arguments", cmd)
			break
		}
		fmt.Fprintln(e.stdout, cli.VersionLine("alectl"))
	case "completion":
		helpCmd = "alectl completion"
		err = e.completion(rest)
	case completeCmd:
		e.complete(rest)
	case "encrypt", "decrypt", "resolve", "rewrap", "http":
		helpCmd = "alectl " + cmd
		err = map[string]func([]string) error{
			"encrypt": e.encrypt, "decrypt": e.decrypt, "resolve": e.resolve, "rewrap": e.rewrap, "http": e.httpCmd,
		}[cmd](rest)
	case "keys":
		helpCmd = "alectl keys"
		if len(rest) == 0 {
			err = usageError("keys needs a subcommand: list, init, add, import, state or seal")
			break
		}
		sub, subRest := rest[0], rest[1:]
		cmds := map[string]func([]string) error{
			"list": e.keysList, "init": e.keysInit, "add": e.keysAdd, "import": e.keysImport, "state": e.keysState, "seal": e.keysSeal,
		}
		switch run, ok := cmds[sub]; {
		case sub == "help" || sub == "-h" || sub == "--help":
			fmt.Fprint(e.stdout, keysUsage)
		case ok:
			helpCmd += " " + sub
			err = run(subRest)
		default:
			err = usageError("unknown keys subcommand %q", sub)
		}
	case "audit":
		helpCmd = "alectl audit"
		if len(rest) > 0 && rest[0] == "verify" {
			helpCmd += " verify"
		}
		err = e.audit(rest)
	case "help", "-h", "--help":
		if len(rest) > 0 {
			// "alectl help keys add" is "alectl keys add --help".
			return e.run(append(rest, "--help"))
		}
		fmt.Fprint(e.stdout, usage)
		return 0
	default:
		err = usageError("unknown command %q", cmd)
	}
	var ue *usageErr
	switch {
	case err == nil:
		return 0
	case errors.Is(err, flag.ErrHelp):
		return 0
	case errors.As(err, &ue):
		// One line and where to look, as git and kubectl do: the whole
		// usage would bury the line that says what was wrong.
		fmt.Fprintf(e.stderr, "alectl: %v\nsee '%s --help'\n", err, helpCmd)
		return 2
	default:
		fmt.Fprintf(e.stderr, "alectl: %v\n", err)
		return 1
	}
}

type usageErr struct{ msg string }

func (u *usageErr) Error() string { return u.msg }

func usageError(format string, args ...any) error {
	return &usageErr{fmt.Sprintf(format, args...)}
}

// newFlags makes a subcommand's flag set. Its output is stdout, where
// --help goes; parse errors are returned as usage errors instead.
func (e env) newFlags(name string) *flag.FlagSet {
	fs := flag.NewFlagSet("alectl "+name, flag.ContinueOnError)
	fs.SetOutput(e.stdout)
	return fs
}

// parse parses flags that may come before or after the positional
// arguments ("keys import FILE --replace") and returns the positional ones,
// of which there must be exactly want.
func parse(fs *flag.FlagSet, args []string, want int) ([]string, error) {
	pos, err := cli.ParseArgs(fs, args, fs.Output(), synopses[fs.Name()])
	var ue *cli.UsageError
	if errors.As(err, &ue) {
		return nil, usageError("%s", ue.Msg)
	}
	if err != nil {
		return nil, err
	}
	if len(pos) != want {
		return nil, usageError("%s takes %d argument(s), got %d", fs.Name(), want, len(pos))
	}
	return pos, nil
}

// readData returns --data's value: literal text, @FILE for a file's
// content, or stdin when empty or "-".
func (e env) readData(data string) ([]byte, error) {
	switch {
	case data == "" || data == "-":
		return io.ReadAll(io.LimitReader(e.stdin, maxInput))
	case strings.HasPrefix(data, "@"):
		b, err := os.ReadFile(data[1:])
		if err != nil {
			return nil, err
		}
		return b, nil
	default:
		return []byte(data), nil
	}
}

// maxInput bounds what alectl reads from stdin; the service's default request
// limit is 4 MiB, so more could never succeed anyway.
const maxInput = 64 << 20
