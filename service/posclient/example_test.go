package posclient_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"

	"connectrpc.com/connect"

	alev1 "github.com/alecrypt/alecrypt/gen/ale/v1"
	"github.com/alecrypt/alecrypt/gen/ale/v1/alev1connect"
	"github.com/alecrypt/alecrypt/internal/api/apitest"
	"github.com/alecrypt/alecrypt/internal/key/keytest"
	"github.com/alecrypt/alecrypt/service/client"
	"github.com/alecrypt/alecrypt/service/posclient"
	"github.com/alecrypt/alecrypt/service/wire"
)

// A POS backend posts an order to the kitchen with an ordinary
// http.Client: the Transport has alecryptd encrypt the body under the
// store's key, and opens the kitchen's encrypted answer.
func ExampleTransport() {
	alecryptd := startAlecryptd() // holds the key store-1-2026, alias store-1
	defer alecryptd.Close()
	kitchen := startKitchen(alecryptd.URL) // decrypts each order, encrypts its answer
	defer kitchen.Close()

	c, err := client.New(client.Config{URL: alecryptd.URL})
	if err != nil {
		panic(err)
	}
	pos := &http.Client{Transport: &posclient.Transport{
		Crypto: c.Crypto,
		Key:    &alev1.KeyRef{Ref: &alev1.KeyRef_Alias{Alias: "store-1"}},
	}}
	res, err := pos.Post(kitchen.URL+"/v1/orders", "application/json", strings.NewReader(`{"order":42}`))
	if err != nil {
		panic(err)
	}
	defer res.Body.Close()
	answer, err := io.ReadAll(res.Body)
	if err != nil {
		panic(err)
	}
	fmt.Println("POS got:", res.Status, string(answer))
	// Output:
	// kitchen got: store-1-2026 {"order":42}
	// POS got: 201 Created {"status":"accepted"}
}

// startAlecryptd serves alecryptd's API in process with one key,
// store-1-2026, alias store-1.
func startAlecryptd() *httptest.Server {
	return apitest.NewServer(keytest.Record("store-1-2026", keytest.Aliases("store-1")))
}

// startKitchen is the kitchen's side, here in one handler: it opens each
// sealed request through alecryptd, prints it, and seals its answer under
// the request's key, as a kitchen gateway does.
func startKitchen(alecryptdURL string) *httptest.Server {
	c, err := client.New(client.Config{URL: alecryptdURL})
	if err != nil {
		panic(err)
	}
	return httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(r.Body)
		if err != nil {
			return
		}
		f, ok, err := wire.Sealed(r.Header, body)
		if !ok || err != nil {
			wire.WriteError(w, wire.CodeHeaders)
			return
		}
		order, err := c.Crypto.Decrypt(r.Context(), connect.NewRequest(&alev1.DecryptRequest{
			Envelope: &alev1.Envelope{Iv: f.IV, Fingerprint: f.Fingerprint, Message: f.Message},
		}))
		if err != nil {
			wire.WriteError(w, wire.CodeDecrypt)
			return
		}
		fmt.Println("kitchen got:", f.Fingerprint, string(order.Msg.GetPlaintext()))
		seal(r.Context(), w, c.Crypto, f.Fingerprint, http.StatusCreated, `{"status":"accepted"}`)
	}))
}

// seal answers status with body encrypted under the key fingerprint.
func seal(ctx context.Context, w http.ResponseWriter, crypto alev1connect.CryptoServiceClient, fingerprint string, status int, body string) {
	enc, err := crypto.Encrypt(ctx, connect.NewRequest(&alev1.EncryptRequest{
		Plaintext: []byte(body),
		Key:       &alev1.KeyRef{Ref: &alev1.KeyRef_Fingerprint{Fingerprint: fingerprint}},
	}))
	if err != nil {
		wire.WriteError(w, wire.CodeDecrypt)
		return
	}
	env := enc.Msg.GetEnvelope()
	wire.SetHeaders(w.Header(), env.GetIv(), env.GetFingerprint())
	w.WriteHeader(status)
	_, _ = w.Write(wire.SealPayload(env.GetMessage()))
}
