package client_test

import (
	"context"
	"fmt"
	"net/http/httptest"
	"os"
	"path/filepath"

	"connectrpc.com/connect"

	alev1 "github.com/alecrypt/alecrypt/gen/ale/v1"
	"github.com/alecrypt/alecrypt/internal/api/apitest"
	"github.com/alecrypt/alecrypt/internal/key/keytest"
	"github.com/alecrypt/alecrypt/service/client"
)

// A Go program encrypts and decrypts through alecryptd; the key never
// leaves it.
func ExampleNew() {
	alecryptd := startAlecryptd() // holds the key store-1-2026, alias store-1
	defer alecryptd.Close()

	c, err := client.New(client.Config{URL: alecryptd.URL})
	if err != nil {
		panic(err)
	}
	ctx := context.Background()
	enc, err := c.Crypto.Encrypt(ctx, connect.NewRequest(&alev1.EncryptRequest{
		Plaintext: []byte(`{"order":42}`),
		Key:       &alev1.KeyRef{Ref: &alev1.KeyRef_Alias{Alias: "store-1"}},
	}))
	if err != nil {
		panic(err)
	}
	env := enc.Msg.GetEnvelope()
	fmt.Println("sealed under", env.GetFingerprint())

	dec, err := c.Crypto.Decrypt(ctx, connect.NewRequest(&alev1.DecryptRequest{Envelope: env}))
	if err != nil {
		panic(err)
	}
	fmt.Println(string(dec.Msg.GetPlaintext()))
	// Output:
	// sealed under store-1-2026
	// {"order":42}
}

// Any call over gRPC instead of the Connect protocol, here listing the
// keys; an https:// URL would add TLS (CAFile, and CertFile and KeyFile for
// mTLS).
func ExampleNew_gRPC() {
	alecryptd := startAlecryptd()
	defer alecryptd.Close()

	c, err := client.New(client.Config{URL: alecryptd.URL, GRPC: true})
	if err != nil {
		panic(err)
	}
	keys, err := c.Keys.ListKeys(context.Background(), connect.NewRequest(&alev1.ListKeysRequest{}))
	if err != nil {
		panic(err)
	}
	for _, k := range keys.Msg.GetKeys() {
		fmt.Println(k.GetFingerprint(), k.GetAliases())
	}
	// Output:
	// store-1-2026 [store-1]
}

// A readiness probe of a program that depends on alecryptd.
func ExampleClients_Serving() {
	alecryptd := startAlecryptd()
	defer alecryptd.Close()

	c, err := client.New(client.Config{URL: alecryptd.URL})
	if err != nil {
		panic(err)
	}
	fmt.Println("serving:", c.Serving(context.Background()) == nil)
	// Output:
	// serving: true
}

// The bearer token comes from a file (a mounted Kubernetes secret, say)
// and rides on every call; it never prints.
func ExampleTokenFromFile() {
	alecryptd := startAlecryptd()
	defer alecryptd.Close()
	path, remove := tokenFile() // holds "pos-token-7\n"
	defer remove()

	tok, err := client.TokenFromFile(path)
	if err != nil {
		panic(err)
	}
	fmt.Println("token:", tok)
	c, err := client.New(client.Config{URL: alecryptd.URL, Token: tok})
	if err != nil {
		panic(err)
	}
	fmt.Println("serving:", c.Serving(context.Background()) == nil)
	// Output:
	// token: [REDACTED]
	// serving: true
}

// startAlecryptd serves alecryptd's API in process with one key,
// store-1-2026, alias store-1.
func startAlecryptd() *httptest.Server {
	return apitest.NewServer(keytest.Record("store-1-2026", keytest.Aliases("store-1")))
}

// tokenFile writes a token file for ExampleTokenFromFile in a directory
// that remove deletes.
func tokenFile() (path string, remove func()) {
	dir, err := os.MkdirTemp("", "alecrypt-example")
	if err != nil {
		panic(err)
	}
	path = filepath.Join(dir, "token")
	if err := os.WriteFile(path, []byte("pos-token-7\n"), 0o600); err != nil {
		panic(err)
	}
	return path, func() { _ = os.RemoveAll(dir) }
}
