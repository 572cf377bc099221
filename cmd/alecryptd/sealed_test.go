package main

import (
	"bytes"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"filippo.io/age"

	"github.com/alecrypt/alecrypt/internal/key"
	"github.com/alecrypt/alecrypt/internal/key/keytest"
	"github.com/alecrypt/alecrypt/internal/keystore/filestore"
)

func TestParseConfigKeystoreIdentity(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name    string
		args    []string
		env     map[string]string
		want    string
		wantErr string
	}{
		{name: "unset", want: ""},
		{name: "flag", args: []string{"--keystore-identity", "/run/credentials/alecryptd.internal/keystore-identity"}, want: "/run/credentials/alecryptd.internal/keystore-identity"},
		{name: "env", env: map[string]string{"ALECRYPT_KEYSTORE_IDENTITY": "/etc/alecrypt/id"}, want: "/etc/alecrypt/id"},
		{name: "with vault", args: []string{"--keystore", "vault", "--keystore-identity", "/x"}, wantErr: "Vault seals its own storage"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			c, err := parseConfig(tc.args, func(k string) string { return tc.env[k] })
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("parseConfig err = %v, want one containing %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("parseConfig err = %v, want nil", err)
			}
			if c.KeystoreIdentity != tc.want {
				t.Errorf("KeystoreIdentity = %q, want %q", c.KeystoreIdentity, tc.want)
			}
		})
	}
}

// TestOpenKeystoreSealed: alecryptd opens a sealed keystore with its
// identity, warns at start about an unsealed one, and refuses with a clear
// error a sealed keystore it has no identity for, or a wrong one.
func TestOpenKeystoreSealed(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	id, err := age.GenerateX25519Identity()
	if err != nil {
		t.Fatal(err)
	}
	other, err := age.GenerateX25519Identity()
	if err != nil {
		t.Fatal(err)
	}
	writeFile := func(name, content string, mode os.FileMode) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), mode); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(p, mode); err != nil {
			t.Fatal(err)
		}
		return p
	}
	idFile := writeFile("identity", "# created by age-keygen\n"+id.String()+"\n", 0o600)
	otherFile := writeFile("other", other.String()+"\n", 0o600)
	badFile := writeFile("bad", "hunter2-not-an-identity\n", 0o600)
	openFile := writeFile("exposed", id.String()+"\n", 0o644)
	sealedPath := filepath.Join(dir, "sealed.json")
	writeFile("sealed.json.recipients", id.Recipient().String()+"\n", 0o600)
	sealed := filestore.New(sealedPath, filestore.WithIdentities(id))
	if err := sealed.Update(true, func([]key.Record) ([]key.Record, error) { return []key.Record{keytest.Record("fp-1")}, nil }); err != nil {
		t.Fatal(err)
	}
	writeFile("new.json.recipients", "# one recipient\n"+id.Recipient().String()+"\n", 0o600)
	plainPath := filepath.Join(dir, "plain.json")
	if err := filestore.New(plainPath).Update(true, func([]key.Record) ([]key.Record, error) { return []key.Record{keytest.Record("fp-1")}, nil }); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, keystore, identity string
		wantErr                  string
		wantIs                   error
		wantWarn                 bool
	}{
		{name: "sealed with its identity", keystore: sealedPath, identity: idFile},
		{name: "unsealed warns", keystore: plainPath, wantWarn: true},
		{name: "sealed without identity", keystore: sealedPath, wantIs: filestore.ErrSealed, wantErr: "--keystore-identity"},
		{name: "sealed, wrong identity", keystore: sealedPath, identity: otherFile, wantIs: filestore.ErrWrongIdentity},
		{name: "identity file not an identity", keystore: sealedPath, identity: badFile, wantErr: "not an age identity file"},
		{name: "identity file readable by all", keystore: sealedPath, identity: openFile, wantErr: "lets every user read it"},
		{name: "identity file missing", keystore: sealedPath, identity: filepath.Join(dir, "missing"), wantErr: "no such file"},
		{name: "plaintext with an identity", keystore: plainPath, identity: idFile, wantIs: filestore.ErrNotSealed, wantErr: "alectl keys seal"},
		{name: "created sealed to the recipients file", keystore: filepath.Join(dir, "new.json"), identity: idFile},
		{name: "missing, no recipients file", keystore: filepath.Join(dir, "none.json"), identity: idFile, wantIs: filestore.ErrNoRecipients, wantErr: "alecryptd creates a sealed keystore only when"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			var logs bytes.Buffer
			log := slog.New(slog.NewTextHandler(&logs, nil))
			cfg := Config{Keystore: tc.keystore, KeystoreIdentity: tc.identity, DefaultAlias: "default"}
			store, err := openKeystore(t.Context(), cfg, log)
			if tc.wantErr != "" || tc.wantIs != nil {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) || (tc.wantIs != nil && !errors.Is(err, tc.wantIs)) {
					t.Fatalf("openKeystore err = %v, want %v containing %q", err, tc.wantIs, tc.wantErr)
				}
				for _, secret := range []string{"AGE-SECRET-KEY", "hunter2", keytest.Canary} {
					if strings.Contains(strings.ToUpper(err.Error()+logs.String()), strings.ToUpper(secret)) {
						t.Errorf("error or logs show %q: %v\n%s", secret, err, logs.String())
					}
				}
				return
			}
			if err != nil {
				t.Fatalf("openKeystore err = %v, want nil", err)
			}
			snap, err := store.Load(t.Context())
			if err != nil || len(snap.Records) != 1 {
				t.Fatalf("Load = %d records, %v; want 1, nil", len(snap.Records), err)
			}
			if warned := strings.Contains(logs.String(), "level=WARN") && strings.Contains(logs.String(), "NOT sealed"); warned != tc.wantWarn {
				t.Errorf("start logged the unsealed warning = %v, want %v; logs:\n%s", warned, tc.wantWarn, logs.String())
			}
			if data, _ := os.ReadFile(tc.keystore); !filestore.IsSealed(data) && tc.identity != "" {
				t.Errorf("the keystore alecryptd serves with an identity is not sealed")
			}
			if strings.Contains(strings.ToUpper(logs.String()), "AGE-SECRET-KEY") {
				t.Errorf("logs show the identity:\n%s", logs.String())
			}
		})
	}
}
