package api_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"connectrpc.com/connect"
	"github.com/prometheus/client_golang/prometheus"

	alev1 "github.com/alecrypt/alecrypt/gen/ale/v1"
	"github.com/alecrypt/alecrypt/gen/ale/v1/alev1connect"
	"github.com/alecrypt/alecrypt/internal/api"
	"github.com/alecrypt/alecrypt/internal/authn"
	"github.com/alecrypt/alecrypt/internal/engine"
	"github.com/alecrypt/alecrypt/internal/keyring"
)

// BenchmarkFairShare: 1 KiB Encrypts of well-behaved authenticated callers,
// with alecryptd's default limits (4 MiB requests, a 256 MiB budget), alone
// ("quiet") and while others hold what they can ("attacked"): an anonymous
// client holds health checks claiming 4 MiB and 64 KiB (Content-Length, body
// never sent) on connections of their own and 200 reflection streams stalled
// inside a 60 KB message on one h2c connection; one greedy authenticated
// caller holds 16 Encrypts stalled inside a 4 MiB message; then the
// anonymous client holds 64 health checks claiming 1 KiB. Reported: the
// well-behaved calls' p99 latency and success rate, and what the attackers
// hold of the budget (MiB) once everything they sent was admitted or refused.
//
//	go test -run '^$' -bench FairShare -benchtime 3000x ./internal/api
func BenchmarkFairShare(b *testing.B) {
	for _, attacked := range []bool{false, true} {
		name := "quiet"
		if attacked {
			name = "attacked"
		}
		b.Run(name, func(b *testing.B) {
			srv, reg := newFairShareServer(b)
			if attacked {
				attack(b, srv.URL, reg)
			}
			heldMain := gauge(b, reg, "alecrypt_inflight_bytes")
			heldOpen := gauge(b, reg, "alecrypt_inflight_unauthenticated_bytes")
			client := alev1connect.NewCryptoServiceClient(h2cClient(b, "tok-pos"), srv.URL, connect.WithGRPC())
			msg := &alev1.EncryptRequest{Plaintext: make([]byte, 1<<10)}
			var mu sync.Mutex
			var lat []time.Duration
			var failed int
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				var mine []time.Duration
				var bad int
				for pb.Next() {
					start := time.Now()
					if _, err := client.Encrypt(context.Background(), connect.NewRequest(msg)); err != nil {
						bad++
					}
					mine = append(mine, time.Since(start))
				}
				mu.Lock()
				lat, failed = append(lat, mine...), failed+bad
				mu.Unlock()
			})
			b.StopTimer()
			slices.Sort(lat)
			b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds()), "p99-µs")
			b.ReportMetric(100*float64(len(lat)-failed)/float64(len(lat)), "%ok")
			b.ReportMetric(heldMain/(1<<20), "held-MiB")
			b.ReportMetric(heldOpen/(1<<20), "held-open-MiB")
		})
	}
}

// fairShareTokens identifies the benchmark's callers.
type fairShareTokens struct{}

func (fairShareTokens) IdentityForToken(tok string) (string, bool) {
	switch tok {
	case "tok-pos", "tok-greedy":
		return strings.TrimPrefix(tok, "tok-"), true
	}
	return "", false
}

func newFairShareServer(b *testing.B) (*httptest.Server, *prometheus.Registry) {
	b.Helper()
	ring := keyring.New()
	if _, _, err := ring.Replace(testRecords()); err != nil {
		b.Fatal(err)
	}
	reg := prometheus.NewRegistry()
	h := api.NewHandler(engine.New(ring, engine.WithDefaultAlias("store-1")), ring, api.Options{
		RequireAuth: true, Metrics: reg, Logger: slog.New(slog.DiscardHandler),
		// Held calls stay held for the whole benchmark.
		ReadTimeout: 10 * time.Minute,
	})
	srv := httptest.NewUnstartedServer(authn.Middleware(h, fairShareTokens{}))
	srv.Config.Protocols = new(http.Protocols)
	srv.Config.Protocols.SetHTTP1(true)
	srv.Config.Protocols.SetUnencryptedHTTP2(true)
	srv.Start()
	b.Cleanup(srv.Close)
	return srv, reg
}

// attack holds what an anonymous client and a greedy authenticated one can,
// and returns once each of their calls is held or refused.
func attack(b *testing.B, url string, reg *prometheus.Registry) {
	b.Helper()
	var admitted, refused int
	for _, claim := range []int{4 << 20, 64 << 10} {
		for range 12 {
			if holdHealth(b, url, claim) == http.StatusContinue {
				admitted++
			} else {
				refused++
			}
		}
	}
	held := func() float64 {
		return gauge(b, reg, "alecrypt_inflight_bytes") + gauge(b, reg, "alecrypt_inflight_unauthenticated_bytes")
	}
	// Each call is held once what is charged moves, or refused once it is
	// answered; a stream may be admitted and its message then refused.
	var calls []<-chan string
	hold := func(client *http.Client, path string, size, n int) {
		for range n {
			before := held()
			status := holdCall(b, client, url, path, size, 100)
			calls = append(calls, status)
			deadline := time.Now().Add(10 * time.Second)
			for len(status) == 0 && held() == before {
				if time.Now().After(deadline) {
					b.Fatalf("a held call on %s was neither charged nor refused", path)
				}
				time.Sleep(time.Millisecond)
			}
		}
	}
	hold(h2cClient(b, ""), "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo", 60000, 200)
	hold(h2cClient(b, "tok-greedy"), "/ale.v1.CryptoService/Encrypt", 4<<20-64, 16)
	// Small claims fill what is left between the large ones.
	for range 64 {
		if holdHealth(b, url, 1<<10) == http.StatusContinue {
			admitted++
		} else {
			refused++
		}
	}
	// Refusals of messages after their stream was admitted are answered
	// within moments; wait until nothing moves for a while.
	for last := -1.0; held() != last; time.Sleep(200 * time.Millisecond) {
		last = held()
	}
	for _, c := range calls {
		if len(c) == 0 {
			admitted++
		} else {
			refused++
		}
	}
	b.Logf("attack: %d calls held, %d refused; budget %.1f MiB held, unauthenticated budget %.1f MiB",
		admitted, refused, gauge(b, reg, "alecrypt_inflight_bytes")/(1<<20), gauge(b, reg, "alecrypt_inflight_unauthenticated_bytes")/(1<<20))
}

// h2cClient is a client on connections of its own, sending token ("" for
// none).
func h2cClient(tb testing.TB, token string) *http.Client {
	var h2c http.Protocols
	h2c.SetUnencryptedHTTP2(true)
	tr := &http.Transport{Protocols: &h2c}
	tb.Cleanup(tr.CloseIdleConnections)
	if token == "" {
		return &http.Client{Transport: tr}
	}
	return &http.Client{Transport: bearer{token, tr}}
}

// gauge reads a gauge of reg (0 when absent).
func gauge(tb testing.TB, reg *prometheus.Registry, name string) float64 {
	tb.Helper()
	fams, err := reg.Gather()
	if err != nil {
		tb.Fatal(err)
	}
	for _, f := range fams {
		if f.GetName() == name && len(f.GetMetric()) > 0 {
			return f.GetMetric()[0].GetGauge().GetValue()
		}
	}
	return 0
}

// holdCall starts a gRPC call of path whose body sends the first part bytes
// of a message of size bytes and then stops; it returns a channel that
// gets the call's grpc-status once the server answers.
func holdCall(tb testing.TB, client *http.Client, url, path string, size, part int) <-chan string {
	tb.Helper()
	pr, pw := io.Pipe()
	ctx, cancel := context.WithCancel(context.Background())
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, url+path, pr)
	req.Header.Set("Content-Type", "application/grpc")
	status := make(chan string, 1)
	done := make(chan struct{})
	go func() {
		defer close(done)
		res, err := client.Do(req)
		if err != nil {
			status <- "error: " + err.Error()
			return
		}
		_, _ = io.Copy(io.Discard, res.Body)
		res.Body.Close()
		s := res.Header.Get("Grpc-Status")
		if s == "" {
			s = res.Trailer.Get("Grpc-Status")
		}
		status <- s
	}()
	frame := grpcFrame(make([]byte, size))
	go func() { _, _ = pw.Write(frame[:part]) }()
	tb.Cleanup(func() {
		cancel()
		pw.CloseWithError(errors.New("abandoned"))
		<-done
	})
	return status
}

// holdHealth sends a Connect health check over HTTP/1.1 on a connection of
// its own, claiming a body of claim bytes it never sends, and asks the
// server to say whether it will read it (Expect: 100-continue). It returns
// the first status the server sends: 100 when the call is admitted and
// waits for its body, or the final status of a refusal.
func holdHealth(tb testing.TB, url string, claim int) int {
	tb.Helper()
	conn, err := net.Dial("tcp", strings.TrimPrefix(url, "http://"))
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { conn.Close() })
	_ = conn.SetReadDeadline(time.Now().Add(10 * time.Second)) // only a hung server reaches it
	fmt.Fprintf(conn, "POST /grpc.health.v1.Health/Check HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: %d\r\nExpect: 100-continue\r\n\r\n", claim)
	line, err := bufio.NewReader(conn).ReadString('\n')
	if err != nil {
		tb.Fatalf("health check claiming %d bytes: no answer: %v", claim, err)
	}
	var status int
	if _, err := fmt.Sscanf(line, "HTTP/1.1 %d", &status); err != nil {
		tb.Fatalf("health check: status line %q", line)
	}
	return status
}
