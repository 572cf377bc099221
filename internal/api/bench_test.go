package api_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"runtime/pprof"
	"testing"

	"connectrpc.com/connect"
	"github.com/prometheus/client_golang/prometheus"

	alev1 "github.com/alecrypt/alecrypt/gen/ale/v1"
	"github.com/alecrypt/alecrypt/gen/ale/v1/alev1connect"
	"github.com/alecrypt/alecrypt/internal/api"
	"github.com/alecrypt/alecrypt/internal/authn"
	"github.com/alecrypt/alecrypt/internal/engine"
	"github.com/alecrypt/alecrypt/internal/key"
	"github.com/alecrypt/alecrypt/internal/keyring"
)

// The handler benchmarks measure the whole service path in one process:
// HTTP server (h2c or HTTP/1.1), Connect or gRPC framing, protobuf, the
// authentication middleware and interceptors alecryptd installs (no policy,
// no audit log), the engine and the cipher. Set against suite.BenchmarkSeal
// they show what the service adds to raw AES. Client and server share the
// process, so ns/op is the cost of both ends together. Every server goroutine
// carries the pprof label side=server, so a CPU profile separates the ends:
//
//	go test -run '^$' -bench 'HandlerEncrypt$/grpc/1KiB' -cpuprofile cpu.out ./internal/api
//	go tool pprof -tagfocus side=server -top api.test cpu.out

// benchProtocols are the client set-ups compared: the Connect protocol over
// HTTP/2 without TLS and over HTTP/1.1, and gRPC (HTTP/2 only).
var benchProtocols = []struct {
	name  string
	http1 bool
	opts  []connect.ClientOption
}{
	{"connect", false, nil},
	{"grpc", false, []connect.ClientOption{connect.WithGRPC()}},
	{"connect-http1", true, nil},
}

var benchSizes = []int{64, 1 << 10, 64 << 10}

func sizeName(n int) string {
	if n >= 1<<10 && n%(1<<10) == 0 {
		return fmt.Sprintf("%dKiB", n>>10)
	}
	return fmt.Sprintf("%dB", n)
}

// newBenchServer serves the handler configured as alecryptd configures it
// (logger at info, RPC metrics on) unless bare, which leaves the metrics
// out, to measure what they cost.
func newBenchServer(b *testing.B, bare bool) *httptest.Server {
	b.Helper()
	ring := keyring.New()
	_, fresh, err := ring.Replace([]key.Record{
		record("bench-ctr", key.AES256CTR, key.Active, t0, "default"),
		record("bench-gcm", key.AES256GCM, key.Active, t0, "gcm"),
	})
	if err != nil {
		b.Fatal(err)
	}
	if failed := keyring.Warm(b.Context(), fresh, 1); failed != 0 {
		b.Fatalf("Warm: %d keys failed", failed)
	}
	opts := api.Options{Logger: slog.New(slog.NewJSONHandler(io.Discard, nil))}
	if !bare {
		opts.Metrics = prometheus.NewRegistry()
	}
	srv := httptest.NewUnstartedServer(authn.Middleware(api.NewHandler(engine.New(ring), ring, opts), nil))
	srv.Config.Protocols = new(http.Protocols)
	srv.Config.Protocols.SetHTTP1(true)
	srv.Config.Protocols.SetUnencryptedHTTP2(true)
	// Goroutines inherit labels from the goroutine that starts them: the
	// accept loop started here, its connections' goroutines, and the
	// handlers they start are all labeled.
	pprof.Do(context.Background(), pprof.Labels("side", "server"), func(context.Context) { srv.Start() })
	b.Cleanup(srv.Close)
	return srv
}

func benchClient(b *testing.B, url string, http1 bool, opts []connect.ClientOption) alev1connect.CryptoServiceClient {
	b.Helper()
	var p http.Protocols
	if http1 {
		p.SetHTTP1(true)
	} else {
		p.SetUnencryptedHTTP2(true)
	}
	tr := &http.Transport{Protocols: &p, MaxIdleConnsPerHost: 256}
	b.Cleanup(tr.CloseIdleConnections)
	return alev1connect.NewCryptoServiceClient(&http.Client{Transport: tr}, url, opts...)
}

// benchParallelism keeps enough calls in flight that neither end waits on
// the other: 8 goroutines per GOMAXPROCS.
const benchParallelism = 8

// BenchmarkHandlerEncrypt is unary Encrypt with the default (CTR) key, by
// protocol and payload size, as alecryptd is configured.
func BenchmarkHandlerEncrypt(b *testing.B) {
	srv := newBenchServer(b, false)
	for _, p := range benchProtocols {
		for _, n := range benchSizes {
			b.Run(p.name+"/"+sizeName(n), func(b *testing.B) {
				benchUnaryEncrypt(b, benchClient(b, srv.URL, p.http1, p.opts), n)
			})
		}
	}
}

// BenchmarkHandlerEncryptBare is BenchmarkHandlerEncrypt at 1 KiB without
// the RPC metrics interceptor: the difference is what the metrics cost.
func BenchmarkHandlerEncryptBare(b *testing.B) {
	srv := newBenchServer(b, true)
	for _, p := range benchProtocols {
		b.Run(p.name+"/1KiB", func(b *testing.B) {
			benchUnaryEncrypt(b, benchClient(b, srv.URL, p.http1, p.opts), 1<<10)
		})
	}
}

func benchUnaryEncrypt(b *testing.B, c alev1connect.CryptoServiceClient, n int) {
	pt := make([]byte, n)
	b.SetBytes(int64(n))
	b.ReportAllocs()
	b.SetParallelism(benchParallelism)
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := c.Encrypt(context.Background(), connect.NewRequest(&alev1.EncryptRequest{Plaintext: pt})); err != nil {
				b.Error(err)
				return
			}
		}
	})
}

// BenchmarkHandlerStream is the bidi Stream with encrypt requests: each
// parallel goroutine owns one stream and keeps up to streamWindow requests
// in flight, so the figure is throughput, not round trips.
func BenchmarkHandlerStream(b *testing.B) {
	const streamWindow = 32
	srv := newBenchServer(b, false)
	for _, p := range benchProtocols {
		if p.http1 {
			continue // bidi streams need HTTP/2
		}
		for _, n := range benchSizes {
			b.Run(p.name+"/"+sizeName(n), func(b *testing.B) {
				c := benchClient(b, srv.URL, p.http1, p.opts)
				req := &alev1.StreamRequest{Operation: &alev1.StreamRequest_Encrypt{Encrypt: &alev1.EncryptRequest{Plaintext: make([]byte, n)}}}
				b.SetBytes(int64(n))
				b.ReportAllocs()
				b.RunParallel(func(pb *testing.PB) {
					if err := pipeline(c, req, pb, streamWindow); err != nil {
						b.Error(err)
					}
				})
			})
		}
	}
}

// pipeline sends one request per pb.Next on a fresh stream, with at most
// window unanswered, and reads every response.
func pipeline(c alev1connect.CryptoServiceClient, req *alev1.StreamRequest, pb *testing.PB, window int) error {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	s := c.Stream(ctx)
	tokens := make(chan struct{}, window)
	recvErr := make(chan error, 1)
	go func() {
		for {
			res, err := s.Receive()
			if errors.Is(err, io.EOF) {
				recvErr <- nil
				return
			}
			if err != nil {
				recvErr <- err
				return
			}
			if res.GetError() != nil {
				recvErr <- fmt.Errorf("item error: %v", res.GetError())
				return
			}
			<-tokens
		}
	}()
	for pb.Next() {
		tokens <- struct{}{}
		if err := s.Send(req); err != nil {
			return err
		}
	}
	if err := s.CloseRequest(); err != nil {
		return err
	}
	err := <-recvErr
	_ = s.CloseResponse()
	return err
}
