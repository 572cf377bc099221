package api_test

import (
	"bytes"
	"encoding/base64"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/alecrypt/alecrypt/internal/api"
	"github.com/alecrypt/alecrypt/internal/authn"
	"github.com/alecrypt/alecrypt/internal/barefloor"
	"github.com/alecrypt/alecrypt/internal/engine"
	"github.com/alecrypt/alecrypt/internal/key"
	"github.com/alecrypt/alecrypt/internal/keyring"
	"github.com/alecrypt/alecrypt/internal/suite"
)

// BenchmarkServeEncryptJSON is one unary Encrypt in the Connect protocol
// with JSON (what `alebench floors --paths unary` sends), handed straight to
// the HTTP handler: no network, no client, so ns/op and allocs/op are the
// server's own. "alecryptd" is the handler as alecryptd builds it (authn
// middleware, logger at info, metrics on, no policy or audit); "bare" is a
// connect-go handler doing only AES-CTR, as `alebench serve bare`. Their
// difference is what alecryptd adds per call.
func BenchmarkServeEncryptJSON(b *testing.B) {
	rec := record("bench-ctr", key.AES256CTR, key.Active, t0, "default")
	ring := keyring.New()
	_, fresh, err := ring.Replace([]key.Record{rec})
	if err != nil {
		b.Fatal(err)
	}
	if failed := keyring.Warm(b.Context(), fresh, 1); failed != 0 {
		b.Fatalf("Warm: %d keys failed", failed)
	}
	c, err := suite.Derive(rec)
	if err != nil {
		b.Fatal(err)
	}
	body := []byte(`{"plaintext":"` + base64.StdEncoding.EncodeToString(make([]byte, 1<<10)) + `"}`)
	handlers := []struct {
		name string
		h    http.Handler
	}{
		{"alecryptd", authn.Middleware(api.NewHandler(engine.New(ring), ring, api.Options{
			Logger:  slog.New(slog.NewJSONHandler(io.Discard, nil)),
			Metrics: prometheus.NewRegistry(),
		}), nil)},
		{"bare", barefloor.Handler(rec.Fingerprint, c)},
	}
	for _, h := range handlers {
		b.Run(h.name, func(b *testing.B) {
			b.ReportAllocs()
			rd := bytes.NewReader(body)
			for b.Loop() {
				rd.Reset(body)
				req := httptest.NewRequest(http.MethodPost, "/ale.v1.CryptoService/Encrypt", rd)
				req.Header.Set("Content-Type", "application/json")
				req.ContentLength = int64(len(body))
				w := &deadlineRecorder{httptest.NewRecorder()}
				h.h.ServeHTTP(w, req)
				if w.Code != http.StatusOK {
					b.Fatalf("status %d: %s", w.Code, w.Body)
				}
			}
		})
	}
}

// deadlineRecorder takes read deadlines as a connection would, so the
// guard's SetReadDeadline costs what it does in a server, not an error.
type deadlineRecorder struct{ *httptest.ResponseRecorder }

func (deadlineRecorder) SetReadDeadline(time.Time) error { return nil }
