package gateway_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/prometheus/client_golang/prometheus"

	alev1 "github.com/alecrypt/alecrypt/gen/ale/v1"
	"github.com/alecrypt/alecrypt/gen/ale/v1/alev1connect"
	"github.com/alecrypt/alecrypt/internal/api"
	"github.com/alecrypt/alecrypt/internal/engine"
	"github.com/alecrypt/alecrypt/internal/gateway"
	"github.com/alecrypt/alecrypt/internal/h2conn"
	"github.com/alecrypt/alecrypt/internal/key"
	"github.com/alecrypt/alecrypt/internal/keyring"
	"github.com/alecrypt/alecrypt/service/client"
	"github.com/alecrypt/alecrypt/service/secret"
	"github.com/alecrypt/alecrypt/test/kitchentest"
)

const (
	ale1 = `{"errorCode":1,"message":"Incorrect security headers"}`
	ale2 = `{"errorCode":2,"message":"Unable to decrypt payload"}`
)

var t0 = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

func record(fp string, state key.State) key.Record {
	return key.Record{
		Fingerprint: fp, Aliases: []string{"alias-" + fp}, Algorithm: key.AES256CTR, CounterBits: 64,
		Secret: secret.FromString("gateway-test-secret-" + fp),
		KDF:    key.KDF{Name: key.KDFPBKDF2SHA256, Salt: "salt-" + fp, Iterations: key.MinIterations},
		State:  state, Version: 1, CreatedAt: t0, Source: key.SourceLocal,
	}
}

func gcmRecord(fp string, state key.State) key.Record {
	r := record(fp, state)
	r.Algorithm, r.CounterBits = key.AES256GCM, 0
	return r
}

// policy is the gateway identity's policy as alecryptd applies it: k-denied
// is outside it (PermissionDenied), and asking about k-broken fails inside
// alecryptd (Internal, no ALE detail).
type policy struct{}

func (policy) Authorize(_ context.Context, _ engine.Op, ref engine.Ref, k *keyring.Key) error {
	fp := ref.Fingerprint
	if k != nil {
		fp = k.Fingerprint()
	}
	switch fp {
	case "k-denied":
		return fmt.Errorf("%w: not for the gateway", engine.ErrPermissionDenied)
	case "k-broken":
		return errors.New("policy store unreachable")
	}
	return nil
}
func (policy) AuthorizeOp(context.Context, engine.Op) error { return nil }

func (policy) DefaultAlias(context.Context) string { return "" }

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}
func (s *syncBuffer) String() string { s.mu.Lock(); defer s.mu.Unlock(); return s.b.String() }

// env is the real API handler in-process, a recording kitchen, and the
// gateway in front of it, served by gateway.NewServer as alegate does.
type env struct {
	url     string // the gateway
	host    string
	kitchen *kitchentest.Kitchen
	sealer  *engine.Engine                   // seals test traffic under any key, policy or not
	crypto  alev1connect.CryptoServiceClient // the gateway's client to alecryptd
	ring    *keyring.Ring                    // alecryptd's keys, with their usage
	reg     *prometheus.Registry
	logs    *syncBuffer
}

func newEnv(t testing.TB, opts gateway.Options, readTimeout time.Duration) *env {
	t.Helper()
	return newEnvWith(t, opts, readTimeout, nil)
}

// newAPI builds a real API handler over the env's keys with the given options.
type newAPI func(api.Options) http.Handler

// newEnvWith is newEnv with alecryptd's side built by crypto from the real
// API handler (nil: one handler with default options).
func newEnvWith(t testing.TB, opts gateway.Options, readTimeout time.Duration, crypto func(newAPI) http.Handler) *env {
	t.Helper()
	ring := keyring.New()
	recs := []key.Record{record("k-ctr", key.Active), record("k-other", key.Active), record("k-off", key.Disabled),
		record("k-retired", key.DecryptOnly), record("k-denied", key.Active), record("k-broken", key.Active),
		gcmRecord("k-gcm", key.Active), gcmRecord("k-gcm-retired", key.DecryptOnly), gcmRecord("k-gcm-off", key.Disabled)}
	if _, _, err := ring.Replace(recs); err != nil {
		t.Fatal(err)
	}
	mk := func(o api.Options) http.Handler {
		return api.NewHandler(engine.New(ring, engine.WithAuthorizer(policy{})), ring, o)
	}
	if crypto == nil {
		crypto = func(mk newAPI) http.Handler { return mk(api.Options{}) }
	}
	cryptoSrv := httptest.NewUnstartedServer(crypto(mk))
	cryptoSrv.Config.Protocols = new(http.Protocols)
	cryptoSrv.Config.Protocols.SetHTTP1(true)
	cryptoSrv.Config.Protocols.SetUnencryptedHTTP2(true)
	cryptoSrv.Listener = h2conn.Listen(cryptoSrv.Listener) // as alecryptd serves h2c
	cryptoSrv.Start()
	t.Cleanup(cryptoSrv.Close)
	// The client alegate builds (h2c).
	clients, err := client.New(client.Config{URL: cryptoSrv.URL}, gateway.ClientCodec())
	if err != nil {
		t.Fatal(err)
	}
	cc := clients.Crypto

	// The terminals' side: the same keys, all still active there (a
	// terminal seals under a key that was retired since).
	terminals := keyring.New()
	for i := range recs {
		recs[i].State = key.Active
	}
	if _, _, err := terminals.Replace(recs); err != nil {
		t.Fatal(err)
	}
	e := &env{kitchen: kitchentest.Start(t), sealer: engine.New(terminals), crypto: cc, ring: ring, reg: prometheus.NewRegistry(), logs: &syncBuffer{}}
	opts.Metrics = gateway.NewMetrics(e.reg)
	opts.Logger = slog.New(slog.NewJSONHandler(e.logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	up, _ := url.Parse(e.kitchen.URL)
	gw := gateway.New(cc, up, opts)
	t.Cleanup(gw.Close) // before the crypto server's Close, which waits for the streams
	srv := httptest.NewUnstartedServer(gw)
	srv.Config = gateway.NewServer(gw, readTimeout, time.Minute)
	srv.Start()
	t.Cleanup(srv.Close)
	e.url = srv.URL
	e.host = strings.TrimPrefix(srv.URL, "http://")
	return e
}

func defaultOpts() gateway.Options {
	return gateway.Options{RequireALE: true, FrameFormat: gateway.DefaultFrameFormat}
}

func b64(b []byte) string { return base64.StdEncoding.EncodeToString(b) }

// seal encrypts as a POS terminal holding the key would.
func (e *env) seal(t testing.TB, fp string, plaintext string) engine.Envelope {
	t.Helper()
	env, _, err := e.sealer.Encrypt(context.Background(), engine.Ref{Fingerprint: fp}, []byte(plaintext), nil)
	if err != nil {
		t.Fatalf("seal under %s: %v", fp, err)
	}
	return env
}

func (e *env) frame(t *testing.T, fp, plaintext string) string {
	env := e.seal(t, fp, plaintext)
	return fmt.Sprintf(`{"iv":%q,"fingerprint":%q,"message":%q}`, b64(env.IV), env.Fingerprint, b64(env.Message))
}

// post sends one ALE request and returns status and body.
func (e *env) post(t *testing.T, path string, h http.Header, body string) (*http.Response, string) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, e.url+path, strings.NewReader(body))
	req.Header = h
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(res.Body)
	res.Body.Close()
	return res, string(b)
}

func aleHeader(env engine.Envelope) http.Header {
	return http.Header{"Authorization": {"Bearer pos"}, "Sec-Iv": {b64(env.IV)}, "Sec-Fingerprint": {env.Fingerprint},
		"Content-Type": {"application/json"}}
}

func wsURL(base string) string { return strings.Replace(base, "http://", "ws://", 1) }

// handshakeHeader is a native client's handshake under fp.
func (e *env) handshakeHeader(fp string) http.Header {
	return http.Header{"Authorization": {"Bearer kds"}, "Sec-Iv": {b64(make([]byte, 16))}, "Sec-Fingerprint": {fp}, "Cookie": {"session=kds"}}
}

// gcmHandshake makes h a handshake under the aes-256-gcm key fp: its IV
// is 12 bytes.
func gcmHandshake(h http.Header, fp string) {
	h.Set("Sec-Fingerprint", fp)
	h.Set("Sec-Iv", b64(make([]byte, 12)))
}

func dial(t *testing.T, ctx context.Context, u string, h http.Header) *websocket.Conn {
	t.Helper()
	c, res, err := websocket.Dial(ctx, u, &websocket.DialOptions{HTTPHeader: h})
	if err != nil {
		status := 0
		if res != nil {
			status = res.StatusCode
		}
		t.Fatalf("dial %s: %v (HTTP %d)", u, err, status)
	}
	t.Cleanup(func() { c.CloseNow() })
	return c
}

func readText(t *testing.T, ctx context.Context, c *websocket.Conn) string {
	t.Helper()
	_, b, err := c.Read(ctx)
	if err != nil {
		t.Fatalf("read: %v", err)
	}
	return string(b)
}

// open decrypts a frame the gateway sent, as the client would.
func (e *env) open(t *testing.T, frame string) string {
	t.Helper()
	var f struct{ IV, Fingerprint, Message string }
	if err := json.Unmarshal([]byte(frame), &f); err != nil {
		t.Fatalf("server frame %q: %v", frame, err)
	}
	iv, _ := base64.StdEncoding.DecodeString(f.IV)
	msg, _ := base64.StdEncoding.DecodeString(f.Message)
	pt, _, err := e.sealer.Decrypt(context.Background(), engine.Envelope{IV: iv, Fingerprint: f.Fingerprint, Message: msg}, nil, engine.FormatAny)
	if err != nil {
		t.Fatalf("server frame %q does not open: %v", frame, err)
	}
	return string(pt)
}

// TestOrigins: the one Origin rule, on HTTP requests and WebSocket
// handshakes: app origins that no web page can send pass with default
// options (Ionic's "ionic" among them), web origins only when listed.
func TestOrigins(t *testing.T) {
	t.Parallel()
	listed, _ := gateway.ParseOrigins([]string{"https://pos.example.com", "http://localhost:8100"})
	anyOrigin, _ := gateway.ParseOrigins([]string{"*"})
	for _, cfg := range []struct {
		name    string
		origins gateway.Origins
		allowed map[string]bool // origin → allowed
	}{
		{"default", gateway.Origins{}, map[string]bool{
			"": true, "ionic": true, "ionic://localhost": true, "capacitor://localhost": true, "SAME": true,
			"https://pos.example.com": false, "http://evil.example": false, "null": false, "http://localhost:8100": false,
			"file://": false, "app://x": false,
		}},
		{"listed", listed, map[string]bool{
			"ionic": true, "https://pos.example.com": true, "https://POS.example.com:443": true, "http://localhost:8100": true,
			"http://pos.example.com": false, "https://pos.example.com.evil.example": false, "null": false,
		}},
		{"any", anyOrigin, map[string]bool{"http://evil.example": true, "null": true}},
	} {
		t.Run(cfg.name, func(t *testing.T) {
			t.Parallel()
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			opts := defaultOpts()
			opts.Origins = cfg.origins
			e := newEnv(t, opts, 0)
			refused := 0
			for origin, allowed := range cfg.allowed {
				if origin == "SAME" {
					origin = "http://" + e.host
				}
				h := e.handshakeHeader("k-ctr")
				if origin != "" {
					h.Set("Origin", origin)
				}
				c, res, err := websocket.Dial(ctx, wsURL(e.url)+"/kds", &websocket.DialOptions{HTTPHeader: h})
				if allowed != (err == nil) {
					t.Errorf("WebSocket with Origin %q: err = %v, want allowed=%v", origin, err, allowed)
				}
				if err == nil {
					c.Close(websocket.StatusNormalClosure, "")
				} else if res != nil && res.StatusCode != http.StatusForbidden {
					t.Errorf("WebSocket with Origin %q: HTTP %d, want 403", origin, res.StatusCode)
				}
				env := e.seal(t, "k-ctr", `{"order":1}`)
				hh := aleHeader(env)
				if origin != "" {
					hh.Set("Origin", origin)
				}
				res, body := e.post(t, "/orders", hh, b64(env.Message))
				if allowed != (res.StatusCode == 200) {
					t.Errorf("POST with Origin %q: %d %s, want allowed=%v", origin, res.StatusCode, body, allowed)
				}
				if !allowed {
					refused++
					if res.StatusCode != http.StatusForbidden || body != `{"error":"origin not allowed"}` {
						t.Errorf("POST with Origin %q: %d %s, want 403", origin, res.StatusCode, body)
					}
				}
			}
			if got, want := len(e.kitchen.Requests())+len(e.kitchen.Upgrades()), 2*(len(cfg.allowed)-refused); got != want {
				t.Errorf("kitchen saw %d requests and handshakes, want %d: refused origins must not reach it", got, want)
			}
		})
	}
}

// TestIonicSeedHandshake sends the Ionic web view's handshake byte for byte
// (Origin: ionic, the ALE headers, permessage-deflate offered) to a gateway
// with default options: it must upgrade, without compression.
func TestIonicSeedHandshake(t *testing.T) {
	t.Parallel()
	e := newEnv(t, defaultOpts(), 0)
	conn, err := net.Dial("tcp", e.host)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(20 * time.Second))
	seed := "GET /kds HTTP/1.1\r\n" +
		"Host: " + e.host + "\r\n" +
		"Connection: Upgrade\r\n" +
		"Upgrade: websocket\r\n" +
		"Origin: ionic\r\n" +
		"Sec-WebSocket-Version: 13\r\n" +
		"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n" +
		"Sec-WebSocket-Extensions: permessage-deflate\r\n" +
		"authorization: Bearer ionic-kds\r\n" +
		"sec-iv: " + b64(make([]byte, 16)) + "\r\n" +
		"sec-fingerprint: k-ctr\r\n\r\n"
	if _, err := io.WriteString(conn, seed); err != nil {
		t.Fatal(err)
	}
	res, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatal(err)
	}
	if res.StatusCode != http.StatusSwitchingProtocols || res.Header.Get("Sec-WebSocket-Accept") != "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=" ||
		res.Header.Get("Sec-WebSocket-Extensions") != "" {
		t.Fatalf("Ionic handshake: %s, accept %q, extensions %q; want 101 without extensions", res.Status,
			res.Header.Get("Sec-WebSocket-Accept"), res.Header.Get("Sec-WebSocket-Extensions"))
	}
}

// TestHandshakeRefusedBeforeDial: a handshake that is refused for any
// reason must not have opened a kitchen WebSocket carrying the client's
// Authorization and Cookie.
func TestHandshakeRefusedBeforeDial(t *testing.T) {
	t.Parallel()
	e := newEnv(t, defaultOpts(), 0)
	for _, tc := range []struct {
		name       string
		method     string
		mutate     func(h http.Header)
		wantStatus int
		wantBody   string
	}{
		{"web origin", "GET", func(h http.Header) { h.Set("Origin", "https://evil.example") }, 403, `{"error":"origin not allowed"}`},
		{"null origin", "GET", func(h http.Header) { h.Set("Origin", "null") }, 403, `{"error":"origin not allowed"}`},
		{"version 8", "GET", func(h http.Header) { h.Set("Sec-WebSocket-Version", "8") }, 426, ""},
		{"no key", "GET", func(h http.Header) { h.Del("Sec-WebSocket-Key") }, 400, ""},
		{"short key", "GET", func(h http.Header) { h.Set("Sec-WebSocket-Key", "c2hvcnQ=") }, 400, ""},
		{"two keys", "GET", func(h http.Header) { h.Add("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ==") }, 400, ""},
		{"POST", "POST", func(http.Header) {}, 405, ""},
		{"no sec-iv", "GET", func(h http.Header) { h.Del("Sec-Iv") }, 400, ale1},
		{"two sec-fingerprint", "GET", func(h http.Header) { h.Add("Sec-Fingerprint", "k-other") }, 400, ale1},
		{"unknown key", "GET", func(h http.Header) { h.Set("Sec-Fingerprint", "k-nope") }, 400, ale2},
		{"disabled key", "GET", func(h http.Header) { h.Set("Sec-Fingerprint", "k-off") }, 400, ale2},
		// The kitchen's messages to the client are sealed under the
		// handshake's key: a key that can only decrypt cannot carry them.
		{"decrypt-only key", "GET", func(h http.Header) { h.Set("Sec-Fingerprint", "k-retired") }, 400, ale2},
		{"key outside the gateway's policy", "GET", func(h http.Header) { h.Set("Sec-Fingerprint", "k-denied") }, 400, ale2},
		{"gcm: 16-byte IV", "GET", func(h http.Header) { h.Set("Sec-Fingerprint", "k-gcm") }, 400, ale1},
		{"gcm: decrypt-only key", "GET", func(h http.Header) { gcmHandshake(h, "k-gcm-retired") }, 400, ale2},
		{"gcm: disabled key", "GET", func(h http.Header) { gcmHandshake(h, "k-gcm-off") }, 400, ale2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := e.handshakeHeader("k-ctr")
			h.Set("Connection", "Upgrade")
			h.Set("Upgrade", "websocket")
			h.Set("Sec-WebSocket-Version", "13")
			h.Set("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ==")
			tc.mutate(h)
			req, _ := http.NewRequest(tc.method, e.url+"/kds", nil)
			req.Header = h
			res, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			if res.StatusCode == http.StatusSwitchingProtocols {
				res.Body.Close() // the upgraded connection: nothing to read
				t.Fatalf("handshake upgraded, want %d %s", tc.wantStatus, tc.wantBody)
			}
			body, _ := io.ReadAll(res.Body)
			res.Body.Close()
			if res.StatusCode != tc.wantStatus || (tc.wantBody != "" && string(body) != tc.wantBody) {
				t.Fatalf("handshake got %d %s, want %d %s", res.StatusCode, body, tc.wantStatus, tc.wantBody)
			}
		})
	}
	if ups := e.kitchen.Upgrades(); len(ups) != 0 {
		t.Fatalf("refused handshakes opened %d kitchen WebSockets (first carried Authorization %q, Cookie %q)",
			len(ups), ups[0].Header.Get("Authorization"), ups[0].Header.Get("Cookie"))
	}
}

// TestEncryptResponsesDecidedBeforeForwarding: with sealed responses, a
// request under a key that cannot encrypt is refused before the kitchen
// executes it (before: executed, then 502, then retried by the client).
func TestEncryptResponsesDecidedBeforeForwarding(t *testing.T) {
	t.Parallel()
	opts := defaultOpts()
	opts.EncryptResponses = true
	e := newEnv(t, opts, 0)
	retired := e.seal(t, "k-retired", `{"order":"twice?"}`) // sealed while it was active
	res, body := e.post(t, "/orders", aleHeader(retired), b64(retired.Message))
	if res.StatusCode != 400 || body != ale2 {
		t.Fatalf("order under a decrypt-only key: %d %s, want 400 %s", res.StatusCode, body, ale2)
	}
	if n := len(e.kitchen.Requests()); n != 0 {
		t.Fatalf("the kitchen executed %d requests whose response could not be sealed", n)
	}
	good := e.seal(t, "k-ctr", `{"order":"once"}`)
	res, body = e.post(t, "/orders", aleHeader(good), b64(good.Message))
	if res.StatusCode != 200 || res.Header.Get("Sec-Fingerprint") != "k-ctr" || strings.Contains(body, "once") {
		t.Fatalf("good order: %d %q (sec-fingerprint %q), want a sealed 200", res.StatusCode, body, res.Header.Get("Sec-Fingerprint"))
	}
	iv, _ := base64.StdEncoding.DecodeString(res.Header.Get("Sec-Iv"))
	msg, _ := base64.StdEncoding.DecodeString(body)
	if pt, _, err := e.sealer.Decrypt(context.Background(), engine.Envelope{IV: iv, Fingerprint: "k-ctr", Message: msg}, nil, engine.FormatJSON); err != nil || string(pt) != `{"order":"once"}` {
		t.Fatalf("sealed response opens to %q, %v", pt, err)
	}
}

// TestHTTPAmbiguousValues: a value given twice is errorCode 1 and nothing
// reaches the kitchen.
func TestHTTPAmbiguousValues(t *testing.T) {
	t.Parallel()
	e := newEnv(t, defaultOpts(), 0)
	env := e.seal(t, "k-ctr", `{"order":1}`)
	other := e.seal(t, "k-ctr", `{"order":2}`)
	for _, tc := range []struct {
		name   string
		mutate func(h http.Header) string // returns the query
	}{
		{"two sec-iv headers", func(h http.Header) string { h.Add("Sec-Iv", b64(other.IV)); return "" }},
		{"same sec-iv twice", func(h http.Header) string { h.Add("sec-iv", b64(env.IV)); return "" }},
		{"two sec-fingerprint headers", func(h http.Header) string { h.Add("Sec-Fingerprint", "k-other"); return "" }},
		{"header and query iv differ", func(h http.Header) string { return "sec-iv=" + url.QueryEscape(b64(other.IV)) }},
		{"header and query fingerprint differ", func(h http.Header) string { return "sec-fingerprint=k-other" }},
		{"two query fingerprints", func(h http.Header) string {
			h.Del("Sec-Fingerprint")
			return "sec-fingerprint=k-ctr&sec-fingerprint=k-ctr"
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := aleHeader(env)
			q := tc.mutate(h)
			res, body := e.post(t, "/orders?"+q, h, b64(env.Message))
			if res.StatusCode != 400 || body != ale1 {
				t.Fatalf("got %d %s, want 400 %s", res.StatusCode, body, ale1)
			}
		})
	}
	if n := e.kitchen.Seen(); n != 0 {
		t.Fatalf("kitchen saw %d requests", n)
	}
}

// TestErrorMapping: an alecryptd answer maps the same way on HTTP and on a
// WebSocket frame: a key outside the gateway's policy (PermissionDenied, no
// ALE detail) is an unknown key, errorCode 2, logged below ERROR; a failure
// inside alecryptd without an ALE detail is the gateway's 502, or closes the
// WebSocket with 1011, never the client's errorCode 2.
func TestErrorMapping(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		fp         string
		wantStatus int
		wantBody   string
		wantClose  websocket.StatusCode // 0: an error frame wantBody
	}{
		{"k-nope", 400, ale2, 0},
		{"k-off", 400, ale2, 0},
		{"k-denied", 400, ale2, 0},
		{"k-broken", 502, `{"error":"crypto service unavailable"}`, websocket.StatusInternalError},
	} {
		t.Run(tc.fp, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t, defaultOpts(), 0)
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			env := e.seal(t, "k-ctr", `{"order":1}`)
			env.Fingerprint = tc.fp
			res, body := e.post(t, "/orders", aleHeader(env), b64(env.Message))
			if res.StatusCode != tc.wantStatus || body != tc.wantBody {
				t.Errorf("HTTP: %d %s, want %d %s", res.StatusCode, body, tc.wantStatus, tc.wantBody)
			}
			c := dial(t, ctx, wsURL(e.url)+"/kds", e.handshakeHeader("k-ctr"))
			frame := strings.Replace(e.frame(t, "k-ctr", `{"ticket":1}`), `"k-ctr"`, fmt.Sprintf("%q", tc.fp), 1)
			if err := c.Write(ctx, websocket.MessageText, []byte(frame)); err != nil {
				t.Fatal(err)
			}
			_, got, err := c.Read(ctx)
			switch {
			case tc.wantClose != 0 && websocket.CloseStatus(err) != tc.wantClose:
				t.Errorf("WebSocket: read %q, %v; want close %d", got, err, tc.wantClose)
			case tc.wantClose == 0 && (err != nil || string(got) != tc.wantBody):
				t.Errorf("WebSocket: read %q, %v; want %s", got, err, tc.wantBody)
			}
			if tc.wantStatus == 400 && strings.Contains(e.logs.String(), `"level":"ERROR"`) {
				t.Errorf("a client's bad key was logged at ERROR:\n%s", e.logs.String())
			}
			if n := len(e.kitchen.Requests()) + len(e.kitchen.Messages()); n != 0 {
				t.Errorf("kitchen got %d requests/messages", n)
			}
		})
	}
}

// TestFrames: bad frames get their ALE error frame, never reach the
// kitchen, and leave the connection up; close codes pass through.
func TestFrames(t *testing.T) {
	t.Parallel()
	e := newEnv(t, defaultOpts(), 0)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	c := dial(t, ctx, wsURL(e.url)+"/kds", e.handshakeHeader("k-ctr"))
	good := e.frame(t, "k-ctr", `{"ticket":1}`)
	var f map[string]string
	_ = json.Unmarshal([]byte(good), &f)
	wrongKey := e.seal(t, "k-other", `{"ticket":"under another key"}`)
	for _, tc := range []struct{ name, frame, want string }{
		{"good", good, "echo:" + `{"ticket":1}`},
		{"no message", fmt.Sprintf(`{"iv":%q,"fingerprint":"k-ctr"}`, f["iv"]), ale1},
		{"empty message", fmt.Sprintf(`{"iv":%q,"fingerprint":"k-ctr","message":""}`, f["iv"]), ale1},
		{"duplicate iv", fmt.Sprintf(`{"iv":%q,"iv":%q,"fingerprint":"k-ctr","message":%q}`, f["iv"], b64(make([]byte, 16)), f["message"]), ale1},
		{"case-variant fingerprint", fmt.Sprintf(`{"iv":%q,"fingerprint":"k-ctr","Fingerprint":"k-other","message":%q}`, f["iv"], f["message"]), ale1},
		{"wrong key", fmt.Sprintf(`{"iv":%q,"fingerprint":"k-ctr","message":%q}`, b64(wrongKey.IV), b64(wrongKey.Message)), ale2},
		{"not JSON", "ticket please", ale2},
		{"good again", e.frame(t, "k-ctr", `{"ticket":2}`), "echo:" + `{"ticket":2}`},
	} {
		if err := c.Write(ctx, websocket.MessageText, []byte(tc.frame)); err != nil {
			t.Fatal(err)
		}
		got := readText(t, ctx, c)
		if strings.HasPrefix(tc.want, "echo:") {
			got = e.open(t, got)
		}
		if got != tc.want {
			t.Errorf("%s: got %s, want %s", tc.name, got, tc.want)
		}
	}
	if msgs := strings.Join(e.kitchen.Messages(), "|"); msgs != `{"ticket":1}|{"ticket":2}` {
		t.Errorf("kitchen got %q; bad frames must not reach it", msgs)
	}
	if err := c.Write(ctx, websocket.MessageText, []byte(e.frame(t, "k-ctr", `{"close":4001}`))); err != nil {
		t.Fatal(err)
	}
	if _, _, err := c.Read(ctx); websocket.CloseStatus(err) != 4001 {
		t.Fatalf("close = %v, want 4001 from the kitchen", err)
	}
}

// TestWrongKeyFrames: 300 four-byte frames that were not sealed under the
// key they name (AES-CTR "decrypts" them to random bytes). The default
// check (JSON) stops every one; the UTF-8 check lets some through, which
// is why it is not the default. Inputs are fixed, so the counts are too.
func TestWrongKeyFrames(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name       string
		format     alev1.PlaintextFormat
		wantPassed func(n int) bool
	}{
		{"default (json)", gateway.DefaultFrameFormat, func(n int) bool { return n == 0 }},
		{"utf8", alev1.PlaintextFormat_PLAINTEXT_FORMAT_UTF8, func(n int) bool { return n > 0 }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			opts := defaultOpts()
			opts.FrameFormat = tc.format
			e := newEnv(t, opts, 0)
			ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
			defer cancel()
			c := dial(t, ctx, wsURL(e.url)+"/kds", e.handshakeHeader("k-ctr"))
			rng := rand.New(rand.NewPCG(11, 300))
			passed := 0
			for range 300 {
				iv, msg := make([]byte, 16), make([]byte, 4)
				for j := range iv {
					iv[j] = byte(rng.Uint32())
				}
				for j := range msg {
					msg[j] = byte(rng.Uint32())
				}
				frame := fmt.Sprintf(`{"iv":%q,"fingerprint":"k-ctr","message":%q}`, b64(iv), b64(msg))
				if err := c.Write(ctx, websocket.MessageText, []byte(frame)); err != nil {
					t.Fatal(err)
				}
				if got := readText(t, ctx, c); got != ale2 {
					passed++
				}
			}
			if !tc.wantPassed(passed) {
				t.Fatalf("%d of 300 wrong-key frames passed the %s check", passed, tc.name)
			}
			if n := len(e.kitchen.Messages()); n != passed {
				t.Fatalf("kitchen got %d messages, %d frames passed", n, passed)
			}
			t.Logf("%d of 300 wrong-key four-byte frames passed the %s check", passed, tc.name)
		})
	}
}

// TestSlowClients: request bodies that stop arriving are dropped after the
// read timeout (the kitchen sees none of them), while a slow body that keeps
// moving is served.
func TestSlowClients(t *testing.T) {
	t.Parallel()
	opts := defaultOpts()
	const readTimeout = time.Second
	opts.BodyReadTimeout = readTimeout
	e := newEnv(t, opts, readTimeout)
	env := e.seal(t, "k-ctr", `{"order":"slow"}`)
	body := b64(env.Message)
	head := "POST /orders HTTP/1.1\r\nHost: " + e.host + "\r\nAuthorization: Bearer pos\r\nSec-Iv: " + b64(env.IV) +
		"\r\nSec-Fingerprint: k-ctr\r\nContent-Type: application/json\r\nContent-Length: " + fmt.Sprint(len(body)) + "\r\n\r\n"

	const stalled = 20
	var wg sync.WaitGroup
	errs := make(chan error, stalled)
	for range stalled {
		wg.Add(1)
		go func() {
			defer wg.Done()
			conn, err := net.Dial("tcp", e.host)
			if err != nil {
				errs <- err
				return
			}
			defer conn.Close()
			// The bound only fails the test; a working gateway answers
			// after readTimeout.
			_ = conn.SetDeadline(time.Now().Add(15 * time.Second))
			if _, err := io.WriteString(conn, head+body[:5]); err != nil {
				errs <- err
				return
			}
			res, err := http.ReadResponse(bufio.NewReader(conn), nil)
			if err != nil {
				errs <- fmt.Errorf("stalled body: no answer: %w", err)
				return
			}
			if res.StatusCode != http.StatusRequestTimeout {
				errs <- fmt.Errorf("stalled body: %s, want 408", res.Status)
			}
		}()
	}
	// A body that trickles in, each piece well inside the read timeout.
	conn, err := net.Dial("tcp", e.host)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(15 * time.Second))
	_, _ = io.WriteString(conn, head)
	for i := 0; i < len(body); i += 8 {
		_, _ = io.WriteString(conn, body[i:min(i+8, len(body))])
		time.Sleep(readTimeout / 10)
	}
	res, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil || res.StatusCode != 200 {
		t.Fatalf("slow but moving body: %v, %v; want 200", res, err)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if n := len(e.kitchen.Requests()); n != 1 {
		t.Fatalf("kitchen saw %d requests, want only the complete one", n)
	}
}

// TestBrowser: what a browser page on another origin does. The preflight is
// answered before any ALE check; the request carries the ALE values in the
// query (page scripts cannot send Sec-* headers), which the kitchen never
// sees; the response lets the page read the sealed response's headers.
func TestBrowser(t *testing.T) {
	t.Parallel()
	const page = "https://pos.example.com"
	opts := defaultOpts()
	opts.EncryptResponses = true
	opts.Origins, _ = gateway.ParseOrigins([]string{page})
	e := newEnv(t, opts, 0)

	preflight := func(origin string) *http.Response {
		req, _ := http.NewRequest(http.MethodOptions, e.url+"/orders?x=1", nil)
		req.Header.Set("Origin", origin)
		req.Header.Set("Access-Control-Request-Method", "POST")
		req.Header.Set("Access-Control-Request-Headers", "authorization,content-type")
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		return res
	}
	res := preflight(page)
	if res.StatusCode != 204 || res.Header.Get("Access-Control-Allow-Origin") != page ||
		!strings.Contains(res.Header.Get("Access-Control-Allow-Headers"), "authorization") ||
		!strings.Contains(res.Header.Get("Access-Control-Allow-Methods"), "POST") {
		t.Fatalf("preflight from %s: %d %v", page, res.StatusCode, res.Header)
	}
	if res := preflight("https://evil.example"); res.StatusCode != 403 || res.Header.Get("Access-Control-Allow-Origin") != "" {
		t.Fatalf("preflight from another origin: %d %v", res.StatusCode, res.Header)
	}

	env := e.seal(t, "k-ctr", `{"order":"browser"}`)
	q := url.Values{"sec-iv": {b64(env.IV)}, "sec-fingerprint": {"k-ctr"}, "authorization": {"Bearer page"}}
	h := http.Header{"Origin": {page}, "Content-Type": {"application/json"}}
	res, body := e.post(t, "/orders?store=1&"+q.Encode(), h, b64(env.Message))
	if res.StatusCode != 200 || res.Header.Get("Access-Control-Allow-Origin") != page ||
		!strings.Contains(res.Header.Get("Access-Control-Expose-Headers"), "sec-iv") || res.Header.Get("Sec-Iv") == "" {
		t.Fatalf("browser POST: %d %s %v", res.StatusCode, body, res.Header)
	}
	// An ALE refusal is readable by the page too.
	res, body = e.post(t, "/orders?sec-fingerprint=k-ctr", h, b64(env.Message))
	if res.StatusCode != 400 || body != ale1 || res.Header.Get("Access-Control-Allow-Origin") != page {
		t.Fatalf("browser POST without sec-iv: %d %s %v", res.StatusCode, body, res.Header)
	}
	reqs := e.kitchen.Requests()
	if len(reqs) != 1 || reqs[0].RawQuery != "store=1" || reqs[0].Header.Get("Authorization") != "Bearer page" ||
		string(reqs[0].Body) != `{"order":"browser"}` {
		t.Fatalf("kitchen saw %+v", reqs)
	}
}

// TestMetrics: outcomes are counted by kind and outcome; no label carries a
// fingerprint.
func TestMetrics(t *testing.T) {
	t.Parallel()
	e := newEnv(t, defaultOpts(), 0)
	env := e.seal(t, "k-ctr", `{"order":1}`)
	e.post(t, "/orders", aleHeader(env), b64(env.Message))
	e.post(t, "/orders", http.Header{}, "x")
	env.Fingerprint = "k-nope"
	e.post(t, "/orders", aleHeader(env), b64(env.Message))
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	c := dial(t, ctx, wsURL(e.url)+"/kds", e.handshakeHeader("k-ctr"))
	_ = c.Write(ctx, websocket.MessageText, []byte(e.frame(t, "k-ctr", `{"t":1}`)))
	readText(t, ctx, c)
	_ = c.Write(ctx, websocket.MessageText, []byte(`nope`))
	readText(t, ctx, c)

	want := map[string]float64{
		`alegate_requests_total{kind="http",outcome="forwarded"}`:      1,
		`alegate_requests_total{kind="http",outcome="ale_1"}`:          1,
		`alegate_requests_total{kind="http",outcome="ale_2"}`:          1,
		`alegate_requests_total{kind="websocket",outcome="forwarded"}`: 1,
		`alegate_frames_total{direction="client",outcome="forwarded"}`: 1,
		`alegate_frames_total{direction="client",outcome="ale_2"}`:     1,
		`alegate_upstream_responses_total{class="2xx"}`:                1,
		`alegate_websockets_open`:                                      1,
	}
	got := map[string]float64{}
	mfs, err := e.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			var labels []string
			for _, l := range m.GetLabel() {
				if strings.Contains(l.GetValue(), "k-") {
					t.Errorf("metric %s has a fingerprint in a label: %v", mf.GetName(), l)
				}
				labels = append(labels, fmt.Sprintf("%s=%q", l.GetName(), l.GetValue()))
			}
			name := mf.GetName()
			if len(labels) > 0 {
				name += "{" + strings.Join(labels, ",") + "}"
			}
			got[name] = m.GetCounter().GetValue() + m.GetGauge().GetValue()
			if h := m.GetHistogram(); h != nil {
				got[name+"_count"], got[name+"_sum"] = float64(h.GetSampleCount()), h.GetSampleSum()
			}
		}
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s = %v, want %v", k, got[k], v)
		}
	}
	// Two requests and a frame were decrypted on the shared stream, in as
	// many messages or fewer.
	if n, items := got["alegate_crypto_batch_items_count"], got["alegate_crypto_batch_items_sum"]; items < 3 || n < 1 || n > items {
		t.Errorf("alegate_crypto_batch_items: %v messages for %v calls, want at least 3 calls in at most as many messages", n, items)
	}
}

// TestNonWebSocketUpgradeRefused: an upgrade to anything but WebSocket is
// refused before the kitchen sees it, ALE values or not: forwarded, a
// kitchen answering 101 would open a raw tunnel past every ALE check.
func TestNonWebSocketUpgradeRefused(t *testing.T) {
	t.Parallel()
	opts := defaultOpts()
	opts.RequireALE = false // pass-through requests too
	e := newEnv(t, opts, 0)
	order := e.seal(t, "k-ctr", `{"order":1}`)
	for _, tc := range []struct {
		name string
		h    http.Header
		body string
	}{
		{"sealed request", aleHeader(order), b64(order.Message)},
		{"pass-through request", http.Header{}, `{"order":1}`},
	} {
		for _, up := range []string{"tcp", "h2c", "TLS/1.2, foo"} {
			h := tc.h.Clone()
			h.Set("Connection", "keep-alive, Upgrade")
			h.Set("Upgrade", up)
			res, body := e.post(t, "/orders", h, tc.body)
			if res.StatusCode != http.StatusBadRequest || body != `{"error":"only websocket upgrades are supported"}` {
				t.Errorf("%s with Upgrade: %s: %d %s, want 400 only websocket upgrades", tc.name, up, res.StatusCode, body)
			}
		}
	}
	if n := e.kitchen.Seen(); n != 0 {
		t.Fatalf("the kitchen saw %d requests, want none", n)
	}
	// Without Connection: upgrade the header is hop-by-hop and dropped; the
	// request goes through as a plain one.
	h := aleHeader(order)
	h.Set("Upgrade", "tcp")
	if res, body := e.post(t, "/orders", h, b64(order.Message)); res.StatusCode != http.StatusOK {
		t.Fatalf("Upgrade without Connection: upgrade: %d %s, want 200", res.StatusCode, body)
	}
}
