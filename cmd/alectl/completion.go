package main

import (
	"bytes"
	"fmt"
	"io"
	"slices"
	"strings"
)

// completeCmd is the hidden command the completion scripts call on every
// TAB with the words typed so far. Keeping the logic here, not in shell,
// means the scripts stay two lines per shell and the candidates always
// match the real commands and flags: they are read from each command's own
// --help output.
const completeCmd = "__complete"

// commandTree lists the subcommands of alectl and of its commands that
// have subcommands.
var commandTree = map[string][]string{
	"":           {"encrypt", "decrypt", "resolve", "rewrap", "http", "keys", "audit", "version", "completion", "help"},
	"keys":       {"list", "init", "add", "import", "state", "seal"},
	"audit":      {"verify"},
	"completion": {"bash", "zsh"},
}

const bashCompletion = `# bash completion for alectl. Load it from ~/.bashrc:
#   source <(alectl completion bash)
_alectl_complete() {
    local IFS=$'\n'
    COMPREPLY=($(compgen -W "$("${COMP_WORDS[0]}" __complete "${COMP_WORDS[@]:1:COMP_CWORD-1}" 2>/dev/null)" -- "${COMP_WORDS[COMP_CWORD]}"))
}
# -o default: file names when alectl offers nothing (FILE arguments, @FILE data).
complete -o default -F _alectl_complete alectl
`

const zshCompletion = `#compdef alectl
# zsh completion for alectl. Load it from ~/.zshrc, after compinit:
#   source <(alectl completion zsh)
# or save it as _alectl in a directory of $fpath.
_alectl() {
    local -a candidates
    candidates=(${(f)"$(${words[1]} __complete ${words[2,CURRENT-1]} 2>/dev/null)"})
    if (( ${#candidates} )); then
        compadd -a candidates
    else
        _files
    fi
}
if [[ "${funcstack[1]}" = "_alectl" ]]; then
    _alectl "$@"
else
    compdef _alectl alectl
fi
`

// completion prints the completion script for a shell.
func (e env) completion(args []string) error {
	if len(args) == 1 && (args[0] == "-h" || args[0] == "--help") {
		fmt.Fprint(e.stdout, "alectl completion: shell completion for alectl\n\n  source <(alectl completion bash)     in ~/.bashrc\n  source <(alectl completion zsh)      in ~/.zshrc, after compinit\n")
		return nil
	}
	if len(args) != 1 {
		return usageError("completion takes one argument: bash or zsh")
	}
	switch args[0] {
	case "bash":
		fmt.Fprint(e.stdout, bashCompletion)
	case "zsh":
		fmt.Fprint(e.stdout, zshCompletion)
	default:
		return usageError("completion: unknown shell %q: want bash or zsh", args[0])
	}
	return nil
}

// complete prints the candidates for the word after words, one per line:
// subcommands where a command has them, else the command's flags. It
// prints nothing after a flag that takes a value, so the shell completes a
// file name there.
func (e env) complete(words []string) {
	var path []string
	var flags map[string]bool // the current command's flags: name -> takes a value
	skipValue := false
	for _, w := range words {
		if skipValue {
			skipValue = false
			continue
		}
		if strings.HasPrefix(w, "-") {
			name, _, hasValue := strings.Cut(strings.TrimLeft(w, "-"), "=")
			if flags == nil {
				flags = e.flagsOf(path)
			}
			skipValue = flags[name] && !hasValue
			continue
		}
		if slices.Contains(commandTree[strings.Join(path, " ")], w) {
			path = append(path, w)
			flags = nil
		}
	}
	if skipValue {
		return
	}
	if subs, ok := commandTree[strings.Join(path, " ")]; ok {
		for _, s := range subs {
			fmt.Fprintln(e.stdout, s)
		}
		if len(path) > 0 {
			return
		}
	}
	if len(path) == 0 {
		fmt.Fprintln(e.stdout, "--help")
		fmt.Fprintln(e.stdout, "--version")
		return
	}
	names := make([]string, 0, len(flags))
	for name := range e.flagsOf(path) {
		names = append(names, "--"+name)
	}
	slices.Sort(names)
	for _, n := range names {
		fmt.Fprintln(e.stdout, n)
	}
}

// flagsOf runs `alectl PATH --help` in-process and reads the flags from its
// output ("  --name" or "  --name type"): whether each takes a value.
func (e env) flagsOf(path []string) map[string]bool {
	if len(path) == 0 {
		return nil
	}
	var out bytes.Buffer
	run(append(slices.Clone(path), "--help"), strings.NewReader(""), &out, io.Discard, e.getenv)
	flags := map[string]bool{"help": false}
	for _, line := range strings.Split(out.String(), "\n") {
		rest, ok := strings.CutPrefix(line, "  --")
		if !ok {
			continue
		}
		name, typ, _ := strings.Cut(rest, " ")
		flags[name] = typ != ""
	}
	return flags
}
