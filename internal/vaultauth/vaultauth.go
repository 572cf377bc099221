// Package vaultauth owns how alecrypt's programs authenticate to Vault and
// keep their token alive: a token from the environment, AppRole or Kubernetes
// login, and renewal with the client library's lifetime watcher (logging in
// again when the token can no longer be renewed).
//
// It never logs or returns tokens or secret ids.
package vaultauth

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/hashicorp/vault/api"
	"github.com/hashicorp/vault/api/auth/approle"
	"github.com/hashicorp/vault/api/auth/kubernetes"
)

// Methods.
const (
	MethodToken      = "token"
	MethodAppRole    = "approle"
	MethodKubernetes = "kubernetes"
)

// Config says how to authenticate.
type Config struct {
	// Method is MethodToken (VAULT_TOKEN, already in the client),
	// MethodAppRole or MethodKubernetes.
	Method string
	// Mount is the auth mount path; empty means the method's default.
	Mount string
	// RoleID and SecretIDFile are AppRole's credentials.
	RoleID       string
	SecretIDFile string
	// Role and ServiceAccountTokenFile are Kubernetes auth's; an empty file
	// means the in-pod default path.
	Role                    string
	ServiceAccountTokenFile string
}

// Validate checks the config is complete for its method.
func (c Config) Validate() error {
	switch c.Method {
	case MethodToken, "":
	case MethodAppRole:
		if c.RoleID == "" || c.SecretIDFile == "" {
			return errors.New("approle auth needs a role id and a secret id file")
		}
	case MethodKubernetes:
		if c.Role == "" {
			return errors.New("kubernetes auth needs a role")
		}
	default:
		return fmt.Errorf("unknown vault auth method %q (token, approle or kubernetes)", c.Method)
	}
	return nil
}

// Login authenticates client per cfg and sets its token. For MethodToken it
// checks the token works (lookup-self) so a bad token fails at startup, not
// on the first refresh. It returns the auth secret to keep alive.
func Login(ctx context.Context, client *api.Client, cfg Config) (*api.Secret, error) {
	var (
		method api.AuthMethod
		err    error
	)
	switch cfg.Method {
	case MethodToken, "":
		if client.Token() == "" {
			return nil, errors.New("vault: no token: set VAULT_TOKEN or choose approle or kubernetes auth")
		}
		self, err := client.Auth().Token().LookupSelfWithContext(ctx)
		if err != nil {
			return nil, fmt.Errorf("vault: token lookup: %w", err)
		}
		// lookup-self describes the token in Data; the lifetime watcher
		// renews tokens described in Auth.
		renewable, _ := self.TokenIsRenewable()
		ttl, _ := self.TokenTTL()
		return &api.Secret{Auth: &api.SecretAuth{
			ClientToken:   client.Token(),
			Renewable:     renewable,
			LeaseDuration: int(ttl.Seconds()),
		}}, nil
	case MethodAppRole:
		opts := []approle.LoginOption{}
		if cfg.Mount != "" {
			opts = append(opts, approle.WithMountPath(cfg.Mount))
		}
		method, err = approle.NewAppRoleAuth(cfg.RoleID, &approle.SecretID{FromFile: cfg.SecretIDFile}, opts...)
	case MethodKubernetes:
		opts := []kubernetes.LoginOption{}
		if cfg.Mount != "" {
			opts = append(opts, kubernetes.WithMountPath(cfg.Mount))
		}
		if cfg.ServiceAccountTokenFile != "" {
			opts = append(opts, kubernetes.WithServiceAccountTokenPath(cfg.ServiceAccountTokenFile))
		}
		method, err = kubernetes.NewKubernetesAuth(cfg.Role, opts...)
	default:
		return nil, cfg.Validate()
	}
	if err != nil {
		return nil, fmt.Errorf("vault %s auth: %w", cfg.Method, err)
	}
	sec, err := client.Auth().Login(ctx, method)
	if err != nil {
		return nil, fmt.Errorf("vault %s login: %w", cfg.Method, err)
	}
	if sec == nil || sec.Auth == nil {
		return nil, fmt.Errorf("vault %s login: no auth info in the response", cfg.Method)
	}
	return sec, nil
}

// KeepAlive renews the token until ctx ends. When renewal stops (max TTL
// reached, token revoked) it logs in again with cfg, retrying with backoff;
// a token that is not renewable (a root or static token) is left alone.
func KeepAlive(ctx context.Context, client *api.Client, cfg Config, sec *api.Secret, log *slog.Logger) {
	backoff := time.Second
	for ctx.Err() == nil {
		renewable, _ := sec.TokenIsRenewable()
		ttl, _ := sec.TokenTTL()
		if !renewable || ttl <= 0 {
			log.Info("vault token is not renewable; no renewal needed", "ttl", ttl.String())
			return
		}
		w, err := client.NewLifetimeWatcher(&api.LifetimeWatcherInput{Secret: sec})
		if err != nil {
			log.Error("vault token watcher", "err", err)
			return
		}
		go w.Start()
		err = watch(ctx, w, log)
		w.Stop()
		if ctx.Err() != nil {
			return
		}
		log.Warn("vault token can no longer be renewed; logging in again", "err", err)
		for ctx.Err() == nil {
			next, lerr := Login(ctx, client, cfg)
			if lerr == nil {
				sec, backoff = next, time.Second
				break
			}
			log.Error("vault login failed; retrying", "err", lerr, "retry_in", backoff.String())
			select {
			case <-ctx.Done():
				return
			case <-time.After(backoff):
			}
			backoff = min(2*backoff, time.Minute)
		}
	}
}

func watch(ctx context.Context, w *api.LifetimeWatcher, log *slog.Logger) error {
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case err := <-w.DoneCh():
			return err
		case r := <-w.RenewCh():
			ttl := 0
			if r != nil && r.Secret != nil && r.Secret.Auth != nil {
				ttl = r.Secret.Auth.LeaseDuration
			}
			log.Debug("vault token renewed", "ttl_seconds", ttl)
		}
	}
}
