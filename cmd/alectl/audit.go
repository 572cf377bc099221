package main

import (
	"errors"
	"fmt"
	"os"
	"strings"

	"github.com/alecrypt/alecrypt/internal/audit"
	"github.com/alecrypt/alecrypt/internal/cli"
)

const auditUsage = `alectl audit: check alecryptd's audit trail

  alectl audit verify [--key FILE]... [--head SEQ[:LINK]] FILE...

alectl audit SUBCOMMAND --help shows a subcommand's flags.
`

const auditVerifySynopsis = `alectl audit verify: check that audit files, oldest first, are one unbroken chain

Reports the first line changed, removed, inserted or reordered, lines alecryptd
dropped, and a gap between files; exit status 1 on any break. Lines removed from
the end cannot be seen in the files: give the head alecryptd last published
(its log line "audit chain head", or the metric alecrypt_audit_chain_seq) with
--head, and the trail must reach it.

  alectl audit verify [--key FILE]... [--head SEQ[:LINK]] FILE...
`

// audit runs the audit subcommands.
func (e env) audit(args []string) error {
	if len(args) == 0 {
		return usageError("audit needs a subcommand: verify")
	}
	switch sub, rest := args[0], args[1:]; sub {
	case "help", "-h", "--help":
		fmt.Fprint(e.stdout, auditUsage)
		return nil
	case "verify":
		return e.auditVerify(rest)
	default:
		return usageError("unknown audit subcommand %q", sub)
	}
}

// auditVerify checks a chained audit trail with the chain key(s) and,
// optionally, against a published head.
func (e env) auditVerify(args []string) error {
	fs := e.newFlags("audit verify")
	var keyFiles []string
	defKey := e.getenv("ALECRYPT_AUDIT_CHAIN_KEY")
	if defKey == "" {
		defKey = "./alecrypt-data/audit-chain.key"
	}
	fs.Func("key", "chain key file; repeat it for a trail that spans a key change (default $ALECRYPT_AUDIT_CHAIN_KEY, else "+defKey+")", func(s string) error {
		keyFiles = append(keyFiles, s)
		return nil
	})
	headText := fs.String("head", "", "the head alecryptd published, SEQ or SEQ:LINK: the trail must reach it, with the same link")
	pos, err := cli.ParseArgs(fs, args, e.stdout, auditVerifySynopsis)
	var ue *cli.UsageError
	if errors.As(err, &ue) {
		return usageError("%s", ue.Msg)
	}
	if err != nil {
		return err
	}
	if len(pos) == 0 {
		return usageError("audit verify needs the audit files, oldest first")
	}
	var head audit.Head
	if *headText != "" {
		if head, err = audit.ParseHead(*headText); err != nil {
			return usageError("--head: %v", err)
		}
	}
	if len(keyFiles) == 0 {
		keyFiles = []string{defKey}
	}
	var keys []audit.ChainKey
	for _, p := range keyFiles {
		k, err := audit.LoadChainKey(p)
		if err != nil {
			return err
		}
		keys = append(keys, k)
	}
	var files []audit.File
	for _, p := range pos {
		f, err := os.Open(p)
		if err != nil {
			return err
		}
		defer f.Close()
		files = append(files, audit.File{Name: p, R: f})
	}
	sum, err := audit.Verify(keys, files, head)
	if err != nil {
		return err
	}
	from := fmt.Sprintf("seq %d-%d", sum.First, sum.Head.Seq)
	if sum.Genesis {
		from += " from the chain's start"
	} else {
		from += fmt.Sprintf(" (what came before seq %d is in files not given)", sum.First)
	}
	fmt.Fprintf(e.stdout, "ok: %d file(s), %d lines, %s; head %s\n", sum.Files, sum.Lines, from, sum.Head)
	if head.Seq == 0 {
		fmt.Fprintln(e.stderr, "alectl: note: no --head given: lines removed from the end of the trail cannot be seen without the head alecryptd published")
	} else {
		fmt.Fprintf(e.stdout, "reaches the published head %s\n", strings.TrimSuffix(head.String(), ":"))
	}
	return nil
}
