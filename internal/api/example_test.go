package api_test

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"time"

	"connectrpc.com/connect"

	alev1 "github.com/alecrypt/alecrypt/gen/ale/v1"
	"github.com/alecrypt/alecrypt/gen/ale/v1/alev1connect"
	"github.com/alecrypt/alecrypt/internal/api"
	"github.com/alecrypt/alecrypt/internal/engine"
	"github.com/alecrypt/alecrypt/internal/key"
	"github.com/alecrypt/alecrypt/internal/keyring"
	"github.com/alecrypt/alecrypt/service/secret"
)

// A POS backend encrypts an order with a store's key and a kitchen gateway
// decrypts it, both through the Connect API; neither ever sees the key.
func ExampleNewHandler() {
	ring := keyring.New()
	_, _, err := ring.Replace([]key.Record{{
		Fingerprint: "store-1-2026",
		Aliases:     []string{"store-1"},
		Algorithm:   key.AES256CTR,
		Secret:      secret.FromString("example secret, issued by the Portal"),
		KDF:         key.KDF{Name: key.KDFPBKDF2SHA256, Salt: "example salt", Iterations: 100_000},
		State:       key.Active,
		CreatedAt:   time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC),
		Source:      key.SourcePortal,
	}})
	if err != nil {
		panic(err)
	}
	srv := httptest.NewServer(api.NewHandler(engine.New(ring), ring, api.Options{}))
	defer srv.Close()
	client := alev1connect.NewCryptoServiceClient(http.DefaultClient, srv.URL)
	ctx := context.Background()

	enc, err := client.Encrypt(ctx, connect.NewRequest(&alev1.EncryptRequest{
		Plaintext: []byte(`{"order":42}`),
		Key:       &alev1.KeyRef{Ref: &alev1.KeyRef_Alias{Alias: "store-1"}},
	}))
	if err != nil {
		panic(err)
	}
	env := enc.Msg.GetEnvelope()
	fmt.Println("fingerprint:", env.GetFingerprint(), "iv bytes:", len(env.GetIv()))

	dec, err := client.Decrypt(ctx, connect.NewRequest(&alev1.DecryptRequest{
		Envelope: env,
		Expect:   alev1.PlaintextFormat_PLAINTEXT_FORMAT_JSON,
	}))
	if err != nil {
		panic(err)
	}
	fmt.Println("plaintext:", string(dec.Msg.GetPlaintext()))

	_, err = client.Decrypt(ctx, connect.NewRequest(&alev1.DecryptRequest{
		Envelope: &alev1.Envelope{Iv: env.GetIv(), Fingerprint: "retired-long-ago", Message: env.GetMessage()},
	}))
	fmt.Println("unknown key:", connect.CodeOf(err))
	// Output:
	// fingerprint: store-1-2026 iv bytes: 16
	// plaintext: {"order":42}
	// unknown key: not_found
}
