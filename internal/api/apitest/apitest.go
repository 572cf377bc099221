// Package apitest serves alecryptd's API in process, for the tests and
// runnable examples of packages that call it (the client, the POS
// transport, the ALE error reader), so each does not build its own server.
//
// It serves exactly what api.NewHandler serves, with default options and no
// authentication; it must never grow behaviour of its own that a test could
// mistake for alecryptd's. It is for tests only.
package apitest

import (
	"net/http"
	"net/http/httptest"

	"github.com/alecrypt/alecrypt/internal/api"
	"github.com/alecrypt/alecrypt/internal/engine"
	"github.com/alecrypt/alecrypt/internal/key"
	"github.com/alecrypt/alecrypt/internal/keyring"
)

// NewServer starts the API over a keyring holding records, on HTTP/1.1 and
// h2c as alecryptd serves plain http:// (client.New speaks h2c to it). It
// panics on records the keyring refuses: callers are examples, which have
// no testing.TB. The caller closes the server.
func NewServer(records ...key.Record) *httptest.Server {
	ring := keyring.New()
	if _, _, err := ring.Replace(records); err != nil {
		panic(err)
	}
	srv := httptest.NewUnstartedServer(api.NewHandler(engine.New(ring), ring, api.Options{}))
	srv.Config.Protocols = new(http.Protocols)
	srv.Config.Protocols.SetHTTP1(true)
	srv.Config.Protocols.SetUnencryptedHTTP2(true)
	srv.Start()
	return srv
}
