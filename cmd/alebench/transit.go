package main

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	vaultapi "github.com/hashicorp/vault/api"

	"github.com/alecrypt/alecrypt/cmd/alebench/internal/loadgen"
)

// transitSeries drives Vault Transit's encrypt and decrypt endpoints (JSON
// over HTTP/1.1) through Vault's Go client, the way a Vault user would.
type transitSeries struct {
	cfg     Config
	version string
	// ciphertexts holds, by payload size, Transit ciphertexts to decrypt.
	ciphertexts map[int][]string
}

func newTransitSeries(ctx context.Context, cfg Config) (*transitSeries, error) {
	t := &transitSeries{cfg: cfg, ciphertexts: map[int][]string{}}
	c, release, err := t.client(1)
	if err != nil {
		return nil, err
	}
	defer release()
	ctx, cancel := context.WithTimeout(ctx, setupTimeout)
	defer cancel()
	if st, err := c.Sys().SealStatusWithContext(ctx); err == nil {
		t.version = st.Version
	}
	key, err := c.Logical().ReadWithContext(ctx, cfg.TransitMount+"/keys/"+cfg.TransitKey)
	if err != nil {
		return nil, fmt.Errorf("vault at %s: reading transit key %q: %w", cfg.VaultAddr, cfg.TransitKey, err)
	}
	if key == nil {
		return nil, fmt.Errorf("vault at %s: no transit key %q at %s/ (vault write -f %s/keys/%s type=aes256-gcm96)",
			cfg.VaultAddr, cfg.TransitKey, cfg.TransitMount, cfg.TransitMount, cfg.TransitKey)
	}
	// A round trip, so a wrong token or policy fails here.
	want := []byte(`{"alebench":"round trip"}`)
	ct, err := t.encrypt(ctx, c, base64.StdEncoding.EncodeToString(want))
	if err != nil {
		return nil, fmt.Errorf("vault at %s: %w", cfg.VaultAddr, err)
	}
	got, err := t.decrypt(ctx, c, ct)
	if err != nil {
		return nil, fmt.Errorf("vault at %s: %w", cfg.VaultAddr, err)
	}
	if got != base64.StdEncoding.EncodeToString(want) {
		return nil, fmt.Errorf("vault at %s: round trip returned %q", cfg.VaultAddr, got)
	}
	return t, nil
}

func (t *transitSeries) target() string     { return targetTransit }
func (t *transitSeries) protocol() string   { return protoTransit }
func (t *transitSeries) pid() int           { return t.cfg.VaultPID }
func (t *transitSeries) supports(o op) bool { return o.mode != stream && o.mode != streamBatch } // Transit has no streams

// client returns a Vault client whose connection pool keeps one connection
// per worker: the default pool keeps only GOMAXPROCS+1 idle, so a larger
// concurrency would measure connection setup instead of Transit.
func (t *transitSeries) client(workers int) (*vaultapi.Client, func(), error) {
	cfg := vaultapi.DefaultConfig()
	if cfg.Error != nil {
		return nil, nil, cfg.Error
	}
	cfg.Address = t.cfg.VaultAddr
	cfg.MaxRetries = 0 // a failure is a result, not something to hide
	cfg.Timeout = 30 * time.Second
	tr, ok := cfg.HttpClient.Transport.(*http.Transport)
	if !ok {
		return nil, nil, fmt.Errorf("vault client transport is %T, want *http.Transport", cfg.HttpClient.Transport)
	}
	tr.MaxIdleConnsPerHost = workers
	tr.MaxIdleConns = workers
	c, err := vaultapi.NewClient(cfg)
	if err != nil {
		return nil, nil, err
	}
	c.SetToken(t.cfg.VaultToken)
	return c, tr.CloseIdleConnections, nil
}

func (t *transitSeries) path(action string) string {
	return t.cfg.TransitMount + "/" + action + "/" + t.cfg.TransitKey
}

func (t *transitSeries) encrypt(ctx context.Context, c *vaultapi.Client, b64 string) (string, error) {
	sec, err := c.Logical().WriteWithContext(ctx, t.path("encrypt"), map[string]any{"plaintext": b64})
	if err != nil {
		return "", err
	}
	return stringField(sec, "ciphertext")
}

func (t *transitSeries) decrypt(ctx context.Context, c *vaultapi.Client, ct string) (string, error) {
	sec, err := c.Logical().WriteWithContext(ctx, t.path("decrypt"), map[string]any{"ciphertext": ct})
	if err != nil {
		return "", err
	}
	return stringField(sec, "plaintext")
}

// sealed returns the Transit ciphertexts a decrypt measurement of
// size-byte payloads cycles through, sealing them on first use.
func (t *transitSeries) sealed(ctx context.Context, c *vaultapi.Client, size int) ([]string, error) {
	if cts, ok := t.ciphertexts[size]; ok {
		return cts, nil
	}
	cts, err := sealPool(ctx, size, func(ctx context.Context, pt []byte) (string, error) {
		return t.encrypt(ctx, c, base64.StdEncoding.EncodeToString(pt))
	})
	if err != nil {
		return nil, err
	}
	t.ciphertexts[size] = cts
	return cts, nil
}

func (t *transitSeries) prepare(ctx context.Context, sp spec, sched *loadgen.Schedule) (func(int) (loadgen.Worker, error), func(), error) {
	c, release, err := t.client(sp.concurrency)
	if err != nil {
		return nil, nil, err
	}
	var cts []string
	if sp.op.decrypt {
		if cts, err = t.sealed(ctx, c, sp.size); err != nil {
			release()
			return nil, nil, err
		}
	}
	b64 := base64.StdEncoding.EncodeToString(payload(sp.size))
	wantLen := len(b64)
	newWorker := func(i int) (loadgen.Worker, error) {
		next := i
		nextCiphertext := func() string {
			next++
			return cts[next%len(cts)]
		}
		switch sp.op.mode {
		case unary:
			if sp.op.decrypt {
				return loop(sched, func(ctx context.Context) (int, error) {
					pt, err := t.decrypt(ctx, c, nextCiphertext())
					if err != nil {
						return 0, err
					}
					return 1, checkLen("plaintext", pt, wantLen)
				}), nil
			}
			return loop(sched, func(ctx context.Context) (int, error) {
				ct, err := t.encrypt(ctx, c, b64)
				if err != nil {
					return 0, err
				}
				return 1, checkCiphertext(ct)
			}), nil
		case batch:
			items := make([]map[string]any, sp.batchItems)
			for j := range items {
				if sp.op.decrypt {
					items[j] = map[string]any{"ciphertext": nextCiphertext()}
				} else {
					items[j] = map[string]any{"plaintext": b64}
				}
			}
			action, field := "encrypt", "ciphertext"
			if sp.op.decrypt {
				action, field = "decrypt", "plaintext"
			}
			data := map[string]any{"batch_input": items}
			return loop(sched, func(ctx context.Context) (int, error) {
				sec, err := c.Logical().WriteWithContext(ctx, t.path(action), data)
				if err != nil {
					return 0, err
				}
				return checkBatchResults(sec, field, len(items))
			}), nil
		default:
			return nil, errors.New("transit has no streams")
		}
	}
	return newWorker, release, nil
}

func stringField(sec *vaultapi.Secret, name string) (string, error) {
	if sec == nil {
		return "", fmt.Errorf("empty response, want %q", name)
	}
	v, _ := sec.Data[name].(string)
	if v == "" {
		return "", fmt.Errorf("response without %q", name)
	}
	return v, nil
}

func checkCiphertext(ct string) error {
	if !strings.HasPrefix(ct, "vault:v") {
		return fmt.Errorf("ciphertext %.20q... is not a Transit ciphertext", ct)
	}
	return nil
}

func checkLen(what, s string, want int) error {
	if len(s) != want {
		return fmt.Errorf("%s of %d characters, want %d", what, len(s), want)
	}
	return nil
}

// checkBatchResults checks that every item of a Transit batch succeeded:
// Transit reports item failures inside a 200 response.
func checkBatchResults(sec *vaultapi.Secret, field string, n int) (int, error) {
	if sec == nil {
		return 0, errors.New("empty batch response")
	}
	results, _ := sec.Data["batch_results"].([]any)
	if len(results) != n {
		return 0, fmt.Errorf("batch answered %d items, want %d", len(results), n)
	}
	for i, r := range results {
		item, _ := r.(map[string]any)
		if e, _ := item["error"].(string); e != "" {
			return 0, fmt.Errorf("batch item %d: %s", i, e)
		}
		if v, _ := item[field].(string); v == "" {
			return 0, fmt.Errorf("batch item %d without %q", i, field)
		}
	}
	return n, nil
}
