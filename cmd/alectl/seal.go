package main

import (
	"errors"
	"flag"
	"fmt"
	"strings"

	"filippo.io/age"

	"github.com/alecrypt/alecrypt/internal/keystore/filestore"
)

// identityFlag registers --identity, the age identity file that opens a
// sealed keystore, on a key command that edits one.
func (e env) identityFlag(fs interface {
	StringVar(*string, string, string, string)
}) {
	fs.StringVar(new(string), "identity", e.getenv("ALECRYPT_KEYSTORE_IDENTITY"),
		"age identity file that opens a sealed keystore (env ALECRYPT_KEYSTORE_IDENTITY)")
}

// storeOptions opens the keystore sealed when the command's --identity is
// set. A sealed keystore opened without one fails with filestore.ErrSealed,
// which sealHint turns into what to give.
func storeOptions(fs *flag.FlagSet) ([]filestore.Option, error) {
	var idFile string
	if f := fs.Lookup("identity"); f != nil {
		idFile = f.Value.String()
	}
	if idFile == "" {
		return nil, nil
	}
	ids, err := filestore.ReadIdentities(idFile)
	if err != nil {
		return nil, fmt.Errorf("--identity: %w", err)
	}
	return []filestore.Option{filestore.WithIdentities(ids...)}, nil
}

// sealHint says what to give when a keystore turns out sealed.
func sealHint(err error) error {
	if errors.Is(err, filestore.ErrSealed) {
		return fmt.Errorf("%w: give its age identity file with --identity (env ALECRYPT_KEYSTORE_IDENTITY)", err)
	}
	return err
}

// recipientsFlag collects repeated --recipient values. They are parsed
// after the flags, not in Set: the flag package would quote a refused value
// in its error, and an identity pasted there by mistake must not be echoed.
type recipientsFlag []string

func (r *recipientsFlag) String() string { return strings.Join(*r, ",") }

func (r *recipientsFlag) Set(s string) error {
	*r = append(*r, s)
	return nil
}

// keysSeal seals a keystore to age recipients: it converts a plaintext
// keystore, or re-seals a sealed one (with --identity) to new recipients,
// which rotates the key-encrypting key. The recipients are kept in
// KEYSTORE.recipients for later edits.
func (e env) keysSeal(args []string) error {
	fs := e.newFlags("keys seal")
	ks := e.keystoreFlag(fs)
	var recipients recipientsFlag
	fs.Var(&recipients, "recipient", "age recipient (age1..., a public key) to seal to; repeat for several (required)")
	if _, err := parse(fs, args, 0); err != nil {
		return err
	}
	if len(recipients) == 0 {
		return usageError("keys seal needs --recipient (an age public key, age1...; age-keygen prints one)")
	}
	parsed := make([]age.Recipient, 0, len(recipients))
	for i, s := range recipients {
		r, err := filestore.ParseRecipient(s)
		if err != nil {
			return usageError("--recipient #%d: %v", i+1, err)
		}
		parsed = append(parsed, r)
	}
	store, abs, err := openKeystore(fs, *ks, false)
	if err != nil {
		return err
	}
	n, err := store.Seal(parsed)
	if err != nil {
		return sealHint(err)
	}
	_, err = fmt.Fprintf(e.stdout, "sealed %s (%d keys) to %d recipient(s), listed in %s\n", abs, n, len(recipients), store.RecipientsPath())
	return err
}
