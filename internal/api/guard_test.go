package api_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"connectrpc.com/connect"
	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/protobuf/proto"

	alev1 "github.com/alecrypt/alecrypt/gen/ale/v1"
	"github.com/alecrypt/alecrypt/gen/ale/v1/alev1connect"
	"github.com/alecrypt/alecrypt/internal/api"
	"github.com/alecrypt/alecrypt/internal/audit"
	"github.com/alecrypt/alecrypt/internal/authn"
	"github.com/alecrypt/alecrypt/internal/engine"
	"github.com/alecrypt/alecrypt/internal/keyring"
	"github.com/alecrypt/alecrypt/internal/rpcframe"
)

// guarded is the real handler behind authn.Middleware, as alecryptd serves
// it, with its logs, metrics and audit trail kept for assertions.
type guarded struct {
	url    string
	reg    *prometheus.Registry
	logs   *syncBuffer
	audits *syncBuffer
	h2c    *http.Client
	conns  map[string]alev1connect.CryptoServiceClient
}

func newGuarded(t *testing.T, opts api.Options) *guarded {
	t.Helper()
	return newGuardedTokens(t, opts, nil)
}

// tokenIDs is a TokenVerifier: bearer token → identity.
type tokenIDs map[string]string

func (m tokenIDs) IdentityForToken(tok string) (string, bool) { id, ok := m[tok]; return id, ok }

// newGuardedTokens is newGuarded with bearer tokens that identify callers.
func newGuardedTokens(t *testing.T, opts api.Options, tokens authn.TokenVerifier) *guarded {
	t.Helper()
	ring := keyring.New()
	if _, _, err := ring.Replace(testRecords()); err != nil {
		t.Fatal(err)
	}
	g := &guarded{reg: prometheus.NewRegistry(), logs: &syncBuffer{}, audits: &syncBuffer{}}
	if opts.MaxRequestBytes == 0 {
		opts.MaxRequestBytes = maxRequestBytes
	}
	opts.Logger = slog.New(slog.NewJSONHandler(g.logs, &slog.HandlerOptions{Level: slog.LevelInfo}))
	opts.Metrics = g.reg
	opts.Audit = audit.New(g.audits, nil)
	eng := engine.New(ring, engine.WithDefaultAlias("store-1"))
	srv := httptest.NewUnstartedServer(authn.Middleware(api.NewHandler(eng, ring, opts), tokens))
	srv.Config.Protocols = new(http.Protocols)
	srv.Config.Protocols.SetHTTP1(true)
	srv.Config.Protocols.SetUnencryptedHTTP2(true)
	srv.Start()
	t.Cleanup(srv.Close)
	var h2c http.Protocols
	h2c.SetUnencryptedHTTP2(true)
	tr := &http.Transport{Protocols: &h2c}
	t.Cleanup(tr.CloseIdleConnections)
	g.url, g.h2c = srv.URL, &http.Client{Transport: tr}
	g.conns = map[string]alev1connect.CryptoServiceClient{
		"connect": alev1connect.NewCryptoServiceClient(g.h2c, srv.URL),
		"grpc":    alev1connect.NewCryptoServiceClient(g.h2c, srv.URL, connect.WithGRPC()),
	}
	return g
}

// metric returns a counter's or gauge's value (0 when absent).
func (g *guarded) metric(t *testing.T, name string, labels map[string]string) float64 {
	t.Helper()
	fams, err := g.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range fams {
		if f.GetName() != name {
			continue
		}
	next:
		for _, m := range f.GetMetric() {
			for _, l := range m.GetLabel() {
				if want, ok := labels[l.GetName()]; ok && want != l.GetValue() {
					continue next
				}
			}
			if m.GetCounter() != nil {
				return m.GetCounter().GetValue()
			}
			return m.GetGauge().GetValue()
		}
	}
	return 0
}

func (g *guarded) requests(t *testing.T, procedure, code string) float64 {
	t.Helper()
	return g.metric(t, "alecrypt_rpc_requests_total", map[string]string{"procedure": procedure, "code": code})
}

func (g *guarded) inflight(t *testing.T) float64 {
	t.Helper()
	return g.metric(t, "alecrypt_inflight_bytes", nil)
}

// inflightOpen is what calls that need no credential hold of their budget.
func (g *guarded) inflightOpen(t *testing.T) float64 {
	t.Helper()
	return g.metric(t, "alecrypt_inflight_unauthenticated_bytes", nil)
}

// lines returns the JSON lines of buf whose field key equals value.
func lines(t *testing.T, buf *syncBuffer, key, value string) []map[string]any {
	t.Helper()
	var out []map[string]any
	for l := range strings.SplitSeq(strings.TrimSpace(buf.String()), "\n") {
		if l == "" {
			continue
		}
		var m map[string]any
		if err := json.Unmarshal([]byte(l), &m); err != nil {
			t.Fatalf("line %q: %v", l, err)
		}
		if m[key] == value {
			out = append(out, m)
		}
	}
	return out
}

// grpcFrame is one gRPC / Connect-streaming message on the wire.
func grpcFrame(payload []byte) []byte { return rpcframe.Append(nil, 0, payload) }

func mustMarshal(t *testing.T, m proto.Message) []byte {
	t.Helper()
	b, err := proto.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

const encryptPath = "/ale.v1.CryptoService/Encrypt"

// grpcStatus returns the grpc-status of a finished gRPC response (header or
// trailer), reading the body to its end.
func grpcStatus(t *testing.T, res *http.Response) string {
	t.Helper()
	_, _ = io.Copy(io.Discard, res.Body)
	res.Body.Close()
	if s := res.Header.Get("Grpc-Status"); s != "" {
		return s
	}
	return res.Trailer.Get("Grpc-Status")
}

// TestUnauthenticatedRefusedBeforeBody: with authentication required, a
// caller without a credential is refused before a byte of its body is read,
// in its own protocol; health stays open to probes.
func TestUnauthenticatedRefusedBeforeBody(t *testing.T) {
	t.Parallel()
	g := newGuarded(t, api.Options{RequireAuth: true})

	t.Run("connect over HTTP/1.1 with Expect: 100-continue", func(t *testing.T) {
		t.Parallel()
		// The server asks for the body (100 Continue) only when the handler
		// reads it: a refusal that reads nothing answers at once, and the
		// 4 MiB body is never sent.
		conn, err := net.Dial("tcp", strings.TrimPrefix(g.url, "http://"))
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		_ = conn.SetDeadline(time.Now().Add(10 * time.Second)) // only a hung server reaches it
		fmt.Fprintf(conn, "POST %s HTTP/1.1\r\nHost: x\r\nContent-Type: application/proto\r\nContent-Length: %d\r\nExpect: 100-continue\r\n\r\n", encryptPath, 4<<20)
		res, err := http.ReadResponse(bufio.NewReader(conn), nil)
		if err != nil {
			t.Fatalf("no response while the body was withheld: %v", err)
		}
		body, _ := io.ReadAll(res.Body)
		if res.StatusCode != http.StatusUnauthorized || !strings.Contains(string(body), `"code":"unauthenticated"`) {
			t.Fatalf("response = %d %s, want 401 with code unauthenticated (and no 100 Continue)", res.StatusCode, body)
		}
	})
	for _, tc := range []struct{ name, contentType, wantStatus string }{
		{"grpc", "application/grpc", "16"},
		{"grpc-web", "application/grpc-web+proto", "16"},
	} {
		t.Run(tc.name+" over h2c with the body withheld", func(t *testing.T) {
			t.Parallel()
			pr, pw := io.Pipe() // nothing is ever written: the server can read nothing
			defer pw.Close()
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second) // only a hung server reaches it
			defer cancel()
			req, _ := http.NewRequestWithContext(ctx, http.MethodPost, g.url+encryptPath, pr)
			req.Header.Set("Content-Type", tc.contentType)
			res, err := g.h2c.Do(req)
			if err != nil {
				t.Fatalf("no response while the body was withheld: %v", err)
			}
			if got := grpcStatus(t, res); got != tc.wantStatus {
				t.Fatalf("grpc-status = %q, want %s (unauthenticated)", got, tc.wantStatus)
			}
		})
	}
	t.Run("health stays open", func(t *testing.T) {
		t.Parallel()
		res, err := g.h2c.Post(g.url+"/grpc.health.v1.Health/Check", "application/json", strings.NewReader("{}"))
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(res.Body)
		res.Body.Close()
		if !strings.Contains(string(body), "SERVING_STATUS_SERVING") {
			t.Fatalf("health without a credential = %d %s, want SERVING", res.StatusCode, body)
		}
	})
	for _, name := range []string{"connect", "grpc"} {
		t.Run(name+" client sees unauthenticated", func(t *testing.T) {
			t.Parallel()
			_, err := g.conns[name].Encrypt(bounded(t), connect.NewRequest(&alev1.EncryptRequest{Plaintext: []byte("x")}))
			if connect.CodeOf(err) != connect.CodeUnauthenticated {
				t.Fatalf("err = %v, want unauthenticated", err)
			}
		})
	}
}

// bounded is a context for calls that only a broken server would keep
// waiting: it turns a hang into a failure, it measures nothing.
func bounded(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// stalledCall starts a gRPC Encrypt whose body stops after the first part
// bytes of a message of size bytes, and returns a func that abandons it.
func stalledCall(t *testing.T, g *guarded, size, part int) (abandon func()) {
	t.Helper()
	pr, pw := io.Pipe()
	ctx, cancel := context.WithCancel(context.Background())
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, g.url+encryptPath, pr)
	req.Header.Set("Content-Type", "application/grpc")
	done := make(chan struct{})
	go func() {
		defer close(done)
		if res, err := g.h2c.Do(req); err == nil {
			_, _ = io.Copy(io.Discard, res.Body)
			res.Body.Close()
		}
	}()
	frame := grpcFrame(make([]byte, size))
	go func() { _, _ = pw.Write(frame[:part]) }()
	return func() {
		cancel()
		pw.CloseWithError(errors.New("abandoned"))
		<-done
	}
}

func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestInflightBudget: calls over the budget are refused at once with
// ResourceExhausted over Connect and gRPC; a stream holds budget only while
// a message is being read or answered.
func TestInflightBudget(t *testing.T) {
	t.Parallel()
	// Room for exactly one largest request.
	limit := api.MinInflightBytes(maxRequestBytes)
	g := newGuarded(t, api.Options{MaxInflightBytes: limit})
	big := &alev1.EncryptRequest{Plaintext: make([]byte, maxRequestBytes-16)}

	abandon := stalledCall(t, g, maxRequestBytes-16, 1000) // charged in full once its header is read
	waitUntil(t, "the stalled call to be charged", func() bool { return g.inflight(t) > 0 })
	for _, p := range []string{"connect", "grpc"} {
		_, err := g.conns[p].Encrypt(bounded(t), connect.NewRequest(big))
		if connect.CodeOf(err) != connect.CodeResourceExhausted {
			t.Fatalf("%s: Encrypt over the budget: err = %v, want resource_exhausted", p, err)
		}
	}
	// A stream message over the budget ends the stream with it.
	s := g.conns["grpc"].Stream(bounded(t))
	_ = s.Send(&alev1.StreamRequest{RequestId: "1", Operation: &alev1.StreamRequest_Encrypt{Encrypt: big}})
	if _, err := s.Receive(); connect.CodeOf(err) != connect.CodeResourceExhausted {
		t.Fatalf("stream message over the budget: err = %v, want resource_exhausted", err)
	}
	_ = s.CloseResponse()
	abandon()
	waitUntil(t, "the abandoned call's budget to be released", func() bool { return g.inflight(t) == 0 })

	// Budget free again: the same calls succeed, and an open stream holds
	// nothing between messages.
	for _, p := range []string{"connect", "grpc"} {
		if _, err := g.conns[p].Encrypt(bounded(t), connect.NewRequest(big)); err != nil {
			t.Fatalf("%s: Encrypt within the budget: %v", p, err)
		}
	}
	s = g.conns["grpc"].Stream(bounded(t))
	defer s.CloseResponse()
	for i := range 3 {
		if err := s.Send(&alev1.StreamRequest{RequestId: fmt.Sprint(i), Operation: &alev1.StreamRequest_Encrypt{Encrypt: big}}); err != nil {
			t.Fatal(err)
		}
		if r, err := s.Receive(); err != nil || r.GetEncrypt() == nil {
			t.Fatalf("stream message %d: %v, %v", i, r, err)
		}
	}
	waitUntil(t, "the idle stream to hold only its read-ahead", func() bool { return g.inflight(t) == api.StreamCharge })
	if got := g.requests(t, encryptPath, "resource_exhausted"); got != 2 {
		t.Errorf("alecrypt_rpc_requests_total{Encrypt,resource_exhausted} = %v, want 2", got)
	}
}

// TestReadTimeouts: a unary body that stops arriving is dropped after the
// read timeout, over HTTP/1.1 and HTTP/2; a stream may idle between messages
// for longer, but not stall inside one.
func TestReadTimeouts(t *testing.T) {
	t.Parallel()
	const timeout = 100 * time.Millisecond
	g := newGuarded(t, api.Options{ReadTimeout: timeout})

	t.Run("connect over HTTP/1.1", func(t *testing.T) {
		t.Parallel()
		conn, err := net.Dial("tcp", strings.TrimPrefix(g.url, "http://"))
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		_ = conn.SetDeadline(time.Now().Add(10 * time.Second)) // only a server that never drops it reaches this
		fmt.Fprintf(conn, "POST %s HTTP/1.1\r\nHost: x\r\nContent-Type: application/proto\r\nContent-Length: 1000\r\n\r\n0123456789", encryptPath)
		res, err := http.ReadResponse(bufio.NewReader(conn), nil)
		if err != nil {
			t.Fatalf("half-sent body was not dropped: %v", err)
		}
		body, _ := io.ReadAll(res.Body)
		if !strings.Contains(string(body), `"code":"deadline_exceeded"`) {
			t.Fatalf("response = %d %s, want deadline_exceeded", res.StatusCode, body)
		}
	})
	t.Run("grpc over h2c", func(t *testing.T) {
		t.Parallel()
		pr, pw := io.Pipe()
		defer pw.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		req, _ := http.NewRequestWithContext(ctx, http.MethodPost, g.url+encryptPath, pr)
		req.Header.Set("Content-Type", "application/grpc")
		go func() { _, _ = pw.Write(grpcFrame(make([]byte, 1000))[:100]) }()
		res, err := g.h2c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		if got := grpcStatus(t, res); got != "4" {
			t.Fatalf("grpc-status = %q, want 4 (deadline_exceeded)", got)
		}
	})
	t.Run("stream idles, but a stalled message is dropped", func(t *testing.T) {
		t.Parallel()
		s := g.conns["grpc"].Stream(bounded(t))
		defer s.CloseResponse()
		// Idle well past the read timeout: a gateway's stream waits for its
		// next frame as long as the WebSocket lives.
		time.Sleep(5 * timeout)
		if err := s.Send(&alev1.StreamRequest{RequestId: "1", Operation: &alev1.StreamRequest_Encrypt{Encrypt: &alev1.EncryptRequest{Plaintext: []byte("x")}}}); err != nil {
			t.Fatal(err)
		}
		if r, err := s.Receive(); err != nil || r.GetEncrypt() == nil {
			t.Fatalf("after idling: %v, %v", r, err)
		}

		pr, pw := io.Pipe()
		defer pw.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		req, _ := http.NewRequestWithContext(ctx, http.MethodPost, g.url+"/ale.v1.CryptoService/Stream", pr)
		req.Header.Set("Content-Type", "application/grpc")
		go func() { _, _ = pw.Write(grpcFrame(make([]byte, 1000))[:100]) }()
		res, err := g.h2c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		if got := grpcStatus(t, res); got != "4" {
			t.Fatalf("stalled stream message: grpc-status = %q, want 4 (deadline_exceeded)", got)
		}
	})
}

// TestStoppingEndsIdleStreams: once the server stops, an idle stream ends
// with Unavailable, and new streams are refused.
func TestStoppingEndsIdleStreams(t *testing.T) {
	t.Parallel()
	stopping, stop := context.WithCancel(context.Background())
	g := newGuarded(t, api.Options{Stopping: stopping})
	s := g.conns["grpc"].Stream(bounded(t))
	defer s.CloseResponse()
	if err := s.Send(&alev1.StreamRequest{RequestId: "1", Operation: &alev1.StreamRequest_Encrypt{Encrypt: &alev1.EncryptRequest{Plaintext: []byte("x")}}}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Receive(); err != nil {
		t.Fatal(err)
	}
	stop()
	if _, err := s.Receive(); connect.CodeOf(err) != connect.CodeUnavailable {
		t.Fatalf("idle stream after stop: err = %v, want unavailable", err)
	}
	s2 := g.conns["grpc"].Stream(bounded(t))
	defer s2.CloseResponse()
	_ = s2.Send(&alev1.StreamRequest{RequestId: "1"})
	if _, err := s2.Receive(); connect.CodeOf(err) != connect.CodeUnavailable {
		t.Fatalf("new stream after stop: err = %v, want unavailable", err)
	}
}

// TestEveryFailedCallIsSeen: calls refused before any interceptor runs
// (connect-go's unmarshal, size and compression checks; the guard's own
// refusals) are logged, counted and audited exactly once, like any other.
func TestEveryFailedCallIsSeen(t *testing.T) {
	t.Parallel()
	limit := api.MinInflightBytes(maxRequestBytes)
	g := newGuarded(t, api.Options{MaxInflightBytes: limit})
	var gz bytes.Buffer
	gz.Write([]byte{0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 0xff}) // a gzip header: the service accepts no compression
	type request struct {
		contentType string
		header      map[string]string
		body        []byte
	}
	connectProto := func(body []byte, h ...string) request {
		r := request{contentType: "application/proto", body: body, header: map[string]string{}}
		for i := 0; i+1 < len(h); i += 2 {
			r.header[h[i]] = h[i+1]
		}
		return r
	}
	grpc := func(body []byte, h ...string) request {
		r := connectProto(body, h...)
		r.contentType = "application/grpc"
		return r
	}
	garbage := []byte{0xff, 0xff, 0xff, 0xff, 0x0f}
	over := mustMarshal(t, &alev1.EncryptRequest{Plaintext: make([]byte, maxRequestBytes)})
	tests := []struct {
		name     string
		req      request
		wantCode string
	}{
		{"connect: malformed protobuf", connectProto(garbage), "invalid_argument"},
		{"connect: malformed JSON", request{contentType: "application/json", body: []byte(`{"plaintext": "CANARY-PLAINTEXT`)}, "invalid_argument"},
		{"connect: oversized", connectProto(over), "resource_exhausted"},
		{"connect: gzip-compressed", connectProto(gz.Bytes(), "Content-Encoding", "gzip"), "unimplemented"},
		{"grpc: malformed protobuf", grpc(grpcFrame(garbage)), "invalid_argument"},
		{"grpc: malformed JSON", request{contentType: "application/grpc+json", body: grpcFrame([]byte(`{"plaintext": "CANARY-PLAINTEXT`))}, "invalid_argument"},
		{"grpc: oversized", grpc(grpcFrame(over)), "resource_exhausted"},
		{"grpc: gzip-compressed", grpc(append([]byte{1, 0, 0, 0, byte(gz.Len())}, gz.Bytes()...), "Grpc-Encoding", "gzip"), "unimplemented"},
		{"grpc: compressed message over the limit", grpc(append([]byte{1, 0, 0x10, 0, 0}, make([]byte, 1<<20)...), "Grpc-Encoding", "gzip"), "resource_exhausted"},
		{"connect: bad credential", connectProto(nil, "Authorization", "Basic eA=="), "unauthenticated"},
		{"grpc: bad credential", grpc(nil, "Authorization", "Basic eA=="), "unauthenticated"},
		{"connect: no such key (reaches the handler)", connectProto(mustMarshal(t, &alev1.EncryptRequest{Key: fpRef("nope")})), "not_found"},
		{"grpc: no such key (reaches the handler)", grpc(grpcFrame(mustMarshal(t, &alev1.EncryptRequest{Key: fpRef("nope")}))), "not_found"},
	}
	for i, tc := range tests {
		// Sequential: each case checks that the counters moved by one.
		t.Run(tc.name, func(t *testing.T) {
			callerID := fmt.Sprintf("seen-%d", i)
			before := g.requests(t, encryptPath, tc.wantCode)
			req, _ := http.NewRequest(http.MethodPost, g.url+encryptPath, bytes.NewReader(tc.req.body))
			req.Header.Set("Content-Type", tc.req.contentType)
			req.Header.Set(api.RequestIDHeader, callerID)
			for k, v := range tc.req.header {
				req.Header.Set(k, v)
			}
			res, err := g.h2c.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			_, _ = io.Copy(io.Discard, res.Body)
			res.Body.Close()
			// The id is ours even for calls refused before any handler;
			// the caller's is recorded apart.
			id := res.Header.Get(api.RequestIDHeader)
			if id == "" || id == callerID {
				t.Errorf("response X-Request-Id = %q, want an id of ours", id)
			}
			if got := g.requests(t, encryptPath, tc.wantCode) - before; got != 1 {
				t.Errorf("alecrypt_rpc_requests_total{Encrypt,%s} moved by %v, want 1", tc.wantCode, got)
			}
			logged := lines(t, g.logs, "request_id", id)
			if len(logged) != 1 || logged[0]["msg"] != "call failed" || logged[0]["code"] != tc.wantCode || logged[0]["procedure"] != encryptPath ||
				logged[0]["caller_request_id"] != callerID {
				t.Errorf("log lines for %s = %v, want one call failed with code %s", id, logged, tc.wantCode)
			}
			audited := lines(t, g.audits, "request_id", id)
			if len(audited) != 1 || audited[0]["outcome"] != tc.wantCode || audited[0]["operation"] != "encrypt" ||
				audited[0]["caller_request_id"] != callerID {
				t.Errorf("audit entries for %s = %v, want one with outcome %s", id, audited, tc.wantCode)
			}
		})
	}
	for _, s := range []string{g.logs.String(), g.audits.String()} {
		if strings.Contains(s, "CANARY-PLAINTEXT") {
			t.Fatalf("a request's content reached the log or the audit trail:\n%s", s)
		}
	}
}

// rawStream starts a call of path over h2c with Content-Type ct and writes
// first; it returns the writer of the rest of the body and a func that waits
// for the response (which a server may send only once the call ends).
func rawStream(t *testing.T, g *guarded, path, ct string, first []byte) (pw *io.PipeWriter, response func() *http.Response) {
	t.Helper()
	pr, pw := io.Pipe()
	t.Cleanup(func() { pw.Close() })
	req, _ := http.NewRequestWithContext(bounded(t), http.MethodPost, g.url+path, pr)
	req.Header.Set("Content-Type", ct)
	go func() { _, _ = pw.Write(first) }()
	type result struct {
		res *http.Response
		err error
	}
	done := make(chan result, 1)
	go func() {
		res, err := g.h2c.Do(req)
		done <- result{res, err}
	}()
	return pw, func() *http.Response {
		t.Helper()
		r := <-done
		if r.err != nil {
			t.Fatal(r.err)
		}
		t.Cleanup(func() { r.res.Body.Close() })
		return r.res
	}
}

// TestContentTypeCaseDoesNotBypassGuard: connect-go picks the protocol from
// the canonical (lower-case) content type, so "Application/grpc" is served
// as gRPC; the guard must see it as enveloped too, or a stream escapes the
// budget, the per-message read deadline and draining on stop.
func TestContentTypeCaseDoesNotBypassGuard(t *testing.T) {
	t.Parallel()
	// The stalled message is charged until the read timeout drops it, and
	// the test must see that charge: a timeout the test goroutine could
	// sleep through on a loaded machine (100 ms did once) fails it.
	const timeout = 2 * time.Second
	const size = 60000
	streamPath := "/ale.v1.CryptoService/Stream"
	reflectPath := "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo"
	hello := grpcFrame(mustMarshal(t, &alev1.StreamRequest{RequestId: "1", Operation: &alev1.StreamRequest_Encrypt{Encrypt: &alev1.EncryptRequest{Plaintext: []byte("x")}}}))
	stalled := grpcFrame(make([]byte, size))[:1000]
	for _, ct := range []string{"application/grpc", "Application/grpc", "APPLICATION/GRPC+PROTO"} {
		t.Run(ct, func(t *testing.T) {
			t.Parallel()
			for _, path := range []string{streamPath, reflectPath} {
				t.Run("stalled message on "+path, func(t *testing.T) {
					t.Parallel()
					g := newGuarded(t, api.Options{ReadTimeout: timeout})
					// Reflection is served without a credential: it is
					// charged to the budget of its own.
					held := g.inflight
					if path == reflectPath {
						held = g.inflightOpen
					}
					_, res := rawStream(t, g, path, ct, stalled)
					waitUntil(t, "the stalled message to be charged", func() bool { return held(t) == size*api.MemoryPerRequestByte+api.StreamCharge })
					if got := grpcStatus(t, res()); got != "4" {
						t.Fatalf("stalled message: grpc-status = %q, want 4 (deadline_exceeded)", got)
					}
					waitUntil(t, "the dropped stream's budget to be released", func() bool { return held(t) == 0 })
				})
			}
			t.Run("unary charged by its message header", func(t *testing.T) {
				t.Parallel()
				g := newGuarded(t, api.Options{ReadTimeout: timeout})
				_, res := rawStream(t, g, encryptPath, ct, stalled)
				waitUntil(t, "the stalled message to be charged", func() bool { return g.inflight(t) == size*api.MemoryPerRequestByte })
				if got := grpcStatus(t, res()); got != "4" {
					t.Fatalf("stalled unary: grpc-status = %q, want 4 (deadline_exceeded)", got)
				}
			})
			t.Run("stream ends on stop", func(t *testing.T) {
				stopping, stop := context.WithCancel(context.Background())
				defer stop()
				g := newGuarded(t, api.Options{Stopping: stopping})
				_, response := rawStream(t, g, streamPath, ct, hello)
				res := response()
				if _, err := io.ReadFull(res.Body, make([]byte, envelopeHeader)); err != nil {
					t.Fatalf("no answer to the first message: %v", err)
				}
				stop()
				// An undrained stream never ends: give up well before bounded does.
				timer := time.AfterFunc(5*time.Second, func() { res.Body.Close() })
				defer timer.Stop()
				if got := grpcStatus(t, res); got != "14" {
					t.Fatalf("idle stream after stop: grpc-status = %q, want 14 (unavailable)", got)
				}
			})
		})
	}
}

const envelopeHeader = 5

// TestStreamNeedsEnvelopedContentType: a streaming procedure is refused
// with 415 before its body is read unless its content type is one whose
// messages the guard can charge one by one.
func TestStreamNeedsEnvelopedContentType(t *testing.T) {
	t.Parallel()
	g := newGuarded(t, api.Options{})
	for _, path := range []string{"/ale.v1.CryptoService/Stream", "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo", "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo"} {
		for _, ct := range []string{"", "application/proto", "Application/JSON", "text/plain", "application/grpc;;"} {
			t.Run(path+" "+ct, func(t *testing.T) {
				t.Parallel()
				// The body never arrives: only a refusal before reading answers.
				pr, pw := io.Pipe()
				defer pw.Close()
				req, _ := http.NewRequestWithContext(bounded(t), http.MethodPost, g.url+path, pr)
				req.Header.Set("Content-Type", ct)
				res, err := g.h2c.Do(req)
				if err != nil {
					t.Fatal(err)
				}
				res.Body.Close()
				if res.StatusCode != http.StatusUnsupportedMediaType {
					t.Fatalf("status = %d, want 415", res.StatusCode)
				}
			})
		}
	}
	if got := g.inflight(t); got != 0 {
		t.Errorf("inflight after refusals = %v, want 0", got)
	}
}

// TestStreamResponsesNotHeldForLaterRequests: a stream that has its next
// request already read may hold a response's flush, but never past the
// point where it waits for its caller. Two whole requests and half of a
// third are sent at once: both responses must arrive while the third stays
// incomplete, and the third's once it is complete (with no request after it).
func TestStreamResponsesNotHeldForLaterRequests(t *testing.T) {
	t.Parallel()
	g := newGuarded(t, api.Options{})
	for _, ct := range []string{"application/grpc", "application/connect+proto"} {
		t.Run(ct, func(t *testing.T) {
			t.Parallel()
			frame := func(id string) []byte {
				return grpcFrame(mustMarshal(t, &alev1.StreamRequest{RequestId: id,
					Operation: &alev1.StreamRequest_Encrypt{Encrypt: &alev1.EncryptRequest{Plaintext: []byte("payload " + id)}}}))
			}
			third := frame("3")
			first := append(append(frame("1"), frame("2")...), third[:len(third)/2]...)
			pw, response := rawStream(t, g, "/ale.v1.CryptoService/Stream", ct, first)
			res := response()
			if res.StatusCode != http.StatusOK {
				t.Fatalf("status %d", res.StatusCode)
			}
			next := func() string {
				t.Helper()
				var hdr rpcframe.Prefix
				if _, err := io.ReadFull(res.Body, hdr[:]); err != nil {
					t.Fatalf("reading a response: %v", err)
				}
				msg := make([]byte, hdr.Size())
				if _, err := io.ReadFull(res.Body, msg); err != nil {
					t.Fatalf("reading a response: %v", err)
				}
				var r alev1.StreamResponse
				if err := proto.Unmarshal(msg, &r); err != nil || r.GetEncrypt() == nil {
					t.Fatalf("response %v, %v; want an encrypt result", &r, err)
				}
				return r.GetRequestId()
			}
			for _, want := range []string{"1", "2"} {
				if got := next(); got != want {
					t.Fatalf("response for request %q, want %q", got, want)
				}
			}
			if _, err := pw.Write(third[len(third)/2:]); err != nil {
				t.Fatal(err)
			}
			if got := next(); got != "3" {
				t.Fatalf("response for request %q, want 3", got)
			}
			pw.Close()
			_, _ = io.Copy(io.Discard, res.Body)
		})
	}
}

// writeCounter is a ResponseWriter that keeps each Write apart.
type writeCounter struct {
	header http.Header
	writes [][]byte
}

func (w *writeCounter) Header() http.Header { return w.header }
func (w *writeCounter) WriteHeader(int)     {}
func (w *writeCounter) Flush()              {}
func (w *writeCounter) Write(p []byte) (int, error) {
	w.writes = append(w.writes, bytes.Clone(p))
	return len(p), nil
}

// TestStreamMessagesWrittenWhole: each message of a stream's response
// reaches the server's ResponseWriter in one Write, prefix and data
// together. Go's HTTP/2 server sends a message of 4 KiB or more written as
// two writes as two DATA frames.
func TestStreamMessagesWrittenWhole(t *testing.T) {
	t.Parallel()
	ring := keyring.New()
	if _, _, err := ring.Replace(testRecords()); err != nil {
		t.Fatal(err)
	}
	h := api.NewHandler(engine.New(ring, engine.WithDefaultAlias("store-1")), ring, api.Options{})
	for _, ct := range []string{"application/grpc", "application/connect+proto"} {
		t.Run(ct, func(t *testing.T) {
			t.Parallel()
			var body []byte
			for i, size := range []int{6 << 10, 0, 100, 70 << 10} {
				body = append(body, grpcFrame(mustMarshal(t, &alev1.StreamRequest{RequestId: fmt.Sprint(i),
					Operation: &alev1.StreamRequest_Encrypt{Encrypt: &alev1.EncryptRequest{Plaintext: bytes.Repeat([]byte("p"), size)}}}))...)
			}
			r := httptest.NewRequest(http.MethodPost, "/ale.v1.CryptoService/Stream", bytes.NewReader(body))
			r.Header.Set("Content-Type", ct)
			r.ProtoMajor, r.ProtoMinor = 2, 0
			w := &writeCounter{header: http.Header{}}
			h.ServeHTTP(w, r)
			var ids []string
			for i := 0; i < len(w.writes); i++ {
				p := w.writes[i]
				if len(p) < rpcframe.PrefixLen {
					t.Fatalf("write %d of %d bytes is not one whole message", i, len(p))
				}
				hdr := rpcframe.Prefix(p[:rpcframe.PrefixLen])
				if len(p) == rpcframe.PrefixLen && hdr.Size() > 64<<10 && i+1 < len(w.writes) && len(w.writes[i+1]) == int(hdr.Size()) {
					i++ // over 64 KiB, a message may go as its prefix and its data
					continue
				}
				if len(p) != rpcframe.PrefixLen+int(hdr.Size()) {
					t.Fatalf("write %d of %d bytes is not one whole message", i, len(p))
				}
				var res alev1.StreamResponse
				if hdr.Flags() == 0 && proto.Unmarshal(p[rpcframe.PrefixLen:], &res) == nil {
					ids = append(ids, res.GetRequestId())
				}
			}
			if got := strings.Join(ids, ","); got != "0,1,2" {
				t.Errorf("whole responses for requests %q, want 0,1,2 (the 70 KiB one may be split)", got)
			}
		})
	}
}
