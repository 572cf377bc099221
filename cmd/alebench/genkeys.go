package main

import (
	"crypto/rand"
	"flag"
	"fmt"
	"io"
	"time"

	"github.com/alecrypt/alecrypt/internal/engine"
	"github.com/alecrypt/alecrypt/internal/key"
	"github.com/alecrypt/alecrypt/internal/keystore/filestore"
)

type genkeysConfig struct {
	N           int
	Out         string
	Algorithm   key.Algorithm
	Iterations  int
	AliasPrefix string
}

func parseGenkeys(args []string, stdout io.Writer) (genkeysConfig, error) {
	fs := flag.NewFlagSet("alebench genkeys", flag.ContinueOnError)
	fs.SetOutput(stdout)
	var c genkeysConfig
	var alg string
	fs.IntVar(&c.N, "n", 10_000, "number of keys")
	fs.StringVar(&c.Out, "out", "", "keystore file to create (must not exist)")
	fs.StringVar(&alg, "algorithm", string(key.AES256CTR), "aes-256-ctr or aes-256-gcm")
	fs.IntVar(&c.Iterations, "iterations", key.DefaultIterations, "PBKDF2 iterations per key (the default is what alectl keys add uses)")
	fs.StringVar(&c.AliasPrefix, "alias-prefix", "store-", "key i gets the alias PREFIX<i>; key 0 also gets the default alias")
	if err := parseFlags(fs, args); err != nil {
		return c, err
	}
	c.Algorithm = key.Algorithm(alg)
	switch {
	case fs.NArg() > 0:
		return c, usagef("genkeys: unexpected arguments: %q", fs.Args())
	case c.N < 1:
		return c, usagef("genkeys: --n must be positive")
	case c.Out == "":
		return c, usagef("genkeys: --out is required")
	case c.Algorithm != key.AES256CTR && c.Algorithm != key.AES256GCM:
		return c, usagef("genkeys: --algorithm must be %s or %s", key.AES256CTR, key.AES256GCM)
	case c.Iterations < key.MinIterations || c.Iterations > key.MaxIterations:
		return c, usagef("genkeys: --iterations must be in [%d, %d]", key.MinIterations, key.MaxIterations)
	}
	return c, nil
}

// genkeys writes a new embedded keystore of fresh keys, through the same
// filestore code alectl uses, so alecryptd loads it as it would a real one.
func genkeys(cfg genkeysConfig, stdout io.Writer) error {
	now := time.Now()
	recs := make([]key.Record, cfg.N)
	width := len(fmt.Sprint(cfg.N - 1))
	for i := range recs {
		aliases := []string{fmt.Sprintf("%s%0*d", cfg.AliasPrefix, width, i)}
		if i == 0 {
			aliases = append([]string{engine.DefaultAlias}, aliases...)
		}
		r, err := key.Generate(rand.Reader, cfg.Algorithm, aliases, now)
		if err != nil {
			return err
		}
		r.KDF.Iterations = cfg.Iterations
		if err := r.Validate(); err != nil {
			return err
		}
		recs[i] = r
	}
	err := filestore.New(cfg.Out).Update(true, func(existing []key.Record) ([]key.Record, error) {
		if existing != nil {
			return nil, fmt.Errorf("%s already exists; genkeys only creates keystores", cfg.Out)
		}
		return recs, nil
	})
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "wrote %d %s keys (%d PBKDF2 iterations each) to %s\n", cfg.N, cfg.Algorithm, cfg.Iterations, cfg.Out)
	return nil
}
