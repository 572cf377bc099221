package gateway

import (
	"context"
	"log/slog"

	alev1 "github.com/alecrypt/alecrypt/gen/ale/v1"
	"github.com/alecrypt/alecrypt/gen/ale/v1/alev1connect"
)

// TestMux exposes the crypto mux to the black-box tests, with its streams
// started on demand: calls queued before Start travel as one batch message,
// which makes batching deterministic.
type TestMux struct {
	m      *cryptoMux
	crypto alev1connect.CryptoServiceClient
}

func NewTestMux(crypto alev1connect.CryptoServiceClient) *TestMux {
	return &TestMux{m: newIdleMux(), crypto: crypto}
}

// Start opens one stream.
func (t *TestMux) Start() { t.m.start(openSession(t.m.ctx, t.crypto, slog.New(slog.DiscardHandler))) }

func (t *TestMux) Decrypt(ctx context.Context, req *alev1.DecryptRequest) (*alev1.DecryptResponse, error) {
	return t.m.decrypt(ctx, req)
}

// Queued is the number of calls waiting for a stream.
func (t *TestMux) Queued() int { return len(t.m.queue) }

func (t *TestMux) Close() { t.m.close() }
