package main

import (
	"errors"
	"fmt"
	"log/slog"

	"github.com/alecrypt/alecrypt/internal/keystore/filestore"
)

// openFileStore is the embedded keystore, sealed when --keystore-identity
// is set. The identity file is read here, once: a reload uses the parsed
// identities, so a keystore re-sealed to a recipient this process cannot
// open fails that reload and the keys already loaded stay served.
func openFileStore(cfg Config) (*filestore.Store, error) {
	if cfg.KeystoreIdentity == "" {
		return filestore.New(cfg.Keystore), nil
	}
	ids, err := filestore.ReadIdentities(cfg.KeystoreIdentity)
	if err != nil {
		return nil, fmt.Errorf("--keystore-identity: %w", err)
	}
	return filestore.New(cfg.Keystore, filestore.WithIdentities(ids...)), nil
}

// sealHint adds what to do to a sealing error at start.
func sealHint(err error) error {
	switch {
	case errors.Is(err, filestore.ErrSealed):
		return fmt.Errorf("%w: give its age identity file with --keystore-identity (env ALECRYPT_KEYSTORE_IDENTITY)", err)
	case errors.Is(err, filestore.ErrNotSealed):
		return fmt.Errorf("%w with alectl keys seal --keystore FILE --recipient AGE-RECIPIENT, or drop --keystore-identity", err)
	case errors.Is(err, filestore.ErrNoRecipients):
		return fmt.Errorf("%w; alecryptd creates a sealed keystore only when its recipients file exists: create it with alectl and seal it with alectl keys seal", err)
	}
	return err
}

// warnUnsealed says at every start that the keys are stored in plaintext,
// as Vault's dev mode does: fine for a quick start, not for production.
func warnUnsealed(log *slog.Logger, path string) {
	log.Warn("the keystore is NOT sealed: anyone who copies the file (a backup, an image layer, a support bundle) has every key; "+
		"seal it for production (alectl keys seal, then --keystore-identity)", "path", path)
}
