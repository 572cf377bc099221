package aleerr_test

import (
	"context"
	"errors"
	"fmt"

	"connectrpc.com/connect"

	alev1 "github.com/alecrypt/alecrypt/gen/ale/v1"
	"github.com/alecrypt/alecrypt/gen/ale/v1/alev1connect"
	"github.com/alecrypt/alecrypt/internal/api/apitest"
	"github.com/alecrypt/alecrypt/internal/key/keytest"
	"github.com/alecrypt/alecrypt/service/aleerr"
	"github.com/alecrypt/alecrypt/service/client"
	"github.com/alecrypt/alecrypt/service/wire"
)

// A gateway that could not decrypt a request answers the ALE error
// alecryptd attached to the failed call: 1 for unusable security fields,
// 2 for a payload that does not decrypt.
func ExampleCode() {
	crypto, stop := startAlecryptd() // holds the key store-1-2026
	defer stop()
	ctx := context.Background()

	for _, env := range []*alev1.Envelope{
		{Iv: make([]byte, 16), Fingerprint: "retired-long-ago", Message: []byte("sealed")},
		{Iv: make([]byte, 3), Fingerprint: "store-1-2026", Message: []byte("sealed")},
	} {
		_, err := crypto.Decrypt(ctx, connect.NewRequest(&alev1.DecryptRequest{Envelope: env}))
		fmt.Println(connect.CodeOf(err), aleerr.Code(err), string(wire.ErrorBody(aleerr.Code(err))))
	}
	// Output:
	// not_found 2 {"errorCode":2,"message":"Unable to decrypt payload"}
	// invalid_argument 1 {"errorCode":1,"message":"Incorrect security headers"}
}

// Detail is the whole ALE detail; an error that carries none (here, one
// that never reached alecryptd) has no detail and Code 0.
func ExampleDetail() {
	crypto, stop := startAlecryptd()
	defer stop()

	_, err := crypto.Decrypt(context.Background(), connect.NewRequest(&alev1.DecryptRequest{
		Envelope: &alev1.Envelope{Iv: make([]byte, 16), Fingerprint: "retired-long-ago", Message: []byte("sealed")},
	}))
	if d, ok := aleerr.Detail(err); ok {
		fmt.Println(d.GetErrorCode(), d.GetMessage())
	}

	unreachable := errors.New("dial tcp 127.0.0.1:8443: connection refused")
	_, ok := aleerr.Detail(unreachable)
	fmt.Println(ok, aleerr.Code(unreachable))
	// Output:
	// 2 Unable to decrypt payload
	// false 0
}

// In a batch each item fails on its own; ItemCode reads an item's error as
// Code reads a whole call's.
func ExampleItemCode() {
	crypto, stop := startAlecryptd()
	defer stop()

	res, err := crypto.DecryptBatch(context.Background(), connect.NewRequest(&alev1.DecryptBatchRequest{
		Items: []*alev1.DecryptRequest{
			{Envelope: &alev1.Envelope{Iv: make([]byte, 16), Fingerprint: "retired-long-ago", Message: []byte("sealed")}},
			{Envelope: &alev1.Envelope{Iv: make([]byte, 3), Fingerprint: "store-1-2026", Message: []byte("sealed")}},
		},
	}))
	if err != nil {
		panic(err)
	}
	for i, r := range res.Msg.GetResults() {
		code, ale := aleerr.ItemCode(r.GetError())
		fmt.Println(i, code, ale)
	}
	// Output:
	// 0 not_found 2
	// 1 invalid_argument 1
}

// startAlecryptd serves alecryptd's API in process with one key,
// store-1-2026, and returns a client of its CryptoService.
func startAlecryptd() (alev1connect.CryptoServiceClient, func()) {
	srv := apitest.NewServer(keytest.Record("store-1-2026", keytest.Aliases("store-1")))
	c, err := client.New(client.Config{URL: srv.URL})
	if err != nil {
		panic(err)
	}
	return c.Crypto, srv.Close
}
