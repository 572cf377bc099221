// Package vaultcfg owns the Vault part of a daemon's command line, the same
// for alecryptd (reads keys) and alesync (writes them): where the keys live
// (--vault-mount, --vault-prefix), how to log in (--vault-auth and its
// credentials' flags), the client built from the standard VAULT_* environment,
// and a login that happens once and is then kept alive.
//
// It is a package of its own so that daemons without Vault (alegate) link no
// Vault client. It never logs tokens or secret ids.
package vaultcfg

import (
	"context"
	"flag"
	"fmt"
	"log/slog"

	"github.com/hashicorp/vault/api"

	"github.com/alecrypt/alecrypt/internal/keystore/vaultstore"
	"github.com/alecrypt/alecrypt/internal/vaultauth"
)

// Config is where the keys are and how to log in. Address, CA, token and
// namespace come from the standard VAULT_* environment.
type Config struct {
	Mount  string
	Prefix string
	Auth   vaultauth.Config
}

// RegisterFlags adds the Vault flags to fs.
func (c *Config) RegisterFlags(fs *flag.FlagSet) {
	fs.StringVar(&c.Mount, "vault-mount", vaultstore.DefaultMount, "Vault KV v2 mount holding the keys")
	fs.StringVar(&c.Prefix, "vault-prefix", vaultstore.DefaultPrefix, "path under the mount: one secret per fingerprint")
	fs.StringVar(&c.Auth.Method, "vault-auth", vaultauth.MethodToken, "Vault auth: token (VAULT_TOKEN), approle or kubernetes")
	fs.StringVar(&c.Auth.Mount, "vault-auth-mount", "", "auth mount path (default: the method's name)")
	fs.StringVar(&c.Auth.RoleID, "vault-role-id", "", "AppRole role id")
	fs.StringVar(&c.Auth.SecretIDFile, "vault-secret-id-file", "", "file holding the AppRole secret id")
	fs.StringVar(&c.Auth.Role, "vault-k8s-role", "", "Kubernetes auth role")
	fs.StringVar(&c.Auth.ServiceAccountTokenFile, "vault-k8s-token-file", "", "service account token file (default: the in-pod path)")
}

// NewClient builds a Vault client from the standard VAULT_* environment.
func NewClient() (*api.Client, error) {
	cfg := api.DefaultConfig()
	if cfg.Error != nil {
		return nil, fmt.Errorf("vault config: %w", cfg.Error)
	}
	client, err := api.NewClient(cfg)
	if err != nil {
		return nil, fmt.Errorf("vault client: %w", err)
	}
	return client, nil
}

// Store is the key store at c's mount and prefix over client.
func (c Config) Store(client *api.Client) *vaultstore.Store {
	return vaultstore.New(client, vaultstore.WithMount(c.Mount), vaultstore.WithPrefix(c.Prefix))
}

// LoginOnce returns a login step: its first successful call logs client in
// per auth, and from then on the token is renewed, or renewed by logging in
// again, in the background until ctx ends; later calls do nothing. A failed
// call leaves the next one to try again. It is not safe for concurrent use.
func LoginOnce(ctx context.Context, client *api.Client, auth vaultauth.Config, log *slog.Logger) func(context.Context) error {
	loggedIn := false
	return func(callCtx context.Context) error {
		if loggedIn {
			return nil
		}
		sec, err := vaultauth.Login(callCtx, client, auth)
		if err != nil {
			return err
		}
		loggedIn = true
		go vaultauth.KeepAlive(ctx, client, auth, sec, log)
		return nil
	}
}
