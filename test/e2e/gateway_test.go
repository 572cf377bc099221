package e2e

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"connectrpc.com/connect"
	"github.com/coder/websocket"

	alev1 "github.com/alecrypt/alecrypt/gen/ale/v1"
	"github.com/alecrypt/alecrypt/internal/key"
	"github.com/alecrypt/alecrypt/internal/keystore/filestore"
	"github.com/alecrypt/alecrypt/service/posclient"
	"github.com/alecrypt/alecrypt/test/harness"
	"github.com/alecrypt/alecrypt/test/kitchentest"
)

const (
	aleHeadersBody = `{"errorCode":1,"message":"Incorrect security headers"}`
	aleDecryptBody = `{"errorCode":2,"message":"Unable to decrypt payload"}`
)

// gatewayEnv is alecryptd (keys below) + a kitchen + alegate in front of it.
type gatewayEnv struct {
	crypto  *harness.Service
	gate    *harness.Service
	kitchen *kitchentest.Kitchen
}

func gatewayKeys() []key.Record {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	off := testKey("k-off", "store-off", "gw-secret-off", t0)
	off.State = key.Disabled
	gcm := testKey("k-gcm", "store-gcm", "gw-secret-gcm", t0)
	gcm.Algorithm, gcm.CounterBits = key.AES256GCM, 0
	return []key.Record{
		testKey("k-ctr", "store-1", "gw-secret-ctr", t0),
		testKey("k-other", "store-2", "gw-secret-other", t0),
		off, gcm,
	}
}

func startGateway(t testing.TB, gateArgs ...string) *gatewayEnv {
	t.Helper()
	ks := filepath.Join(t.TempDir(), "keystore.json")
	if _, err := filestore.New(ks).Import(gatewayKeys(), false); err != nil {
		t.Fatal(err)
	}
	e := &gatewayEnv{kitchen: kitchentest.Start(t)}
	e.crypto = harness.StartAlecryptd(t, harness.StartOptions{Keystore: ks, Args: []string{"--default-alias", "store-1"}})
	e.gate = harness.StartAlegate(t, e.kitchen.URL, e.crypto.URL, append([]string{"--max-body-bytes", "65536"}, gateArgs...)...)
	return e
}

// seal encrypts through alecryptd, as a POS would.
func (e *gatewayEnv) seal(t testing.TB, fp string, plaintext []byte) *alev1.Envelope {
	t.Helper()
	res, err := newCryptoClient(e.crypto.URL).Encrypt(context.Background(), connect.NewRequest(&alev1.EncryptRequest{
		Plaintext: plaintext, Key: &alev1.KeyRef{Ref: &alev1.KeyRef_Fingerprint{Fingerprint: fp}}}))
	if err != nil {
		t.Fatalf("Encrypt under %s: %v", fp, err)
	}
	return res.Msg.GetEnvelope()
}

// TestGatewayHTTPBadRequests: each bad request gets the exact status and
// body, and the kitchen sees nothing.
func TestGatewayHTTPBadRequests(t *testing.T) {
	e := startGateway(t)
	order := []byte(`{"order":42,"items":["café"]}`)
	good := e.seal(t, "k-ctr", order)
	other := e.seal(t, "k-other", order)
	gcm := e.seal(t, "k-gcm", order)
	iv := func(n int) string { return b64(make([]byte, n)) }
	hdr := func(kv ...string) http.Header {
		h := http.Header{"Content-Type": {"application/json"}}
		for i := 0; i < len(kv); i += 2 {
			h.Set(kv[i], kv[i+1])
		}
		return h
	}
	full := func(ivs, fp string) http.Header {
		return hdr("Authorization", "Bearer pos-1", "sec-iv", ivs, "sec-fingerprint", fp)
	}
	tests := []struct {
		name       string
		header     http.Header
		body       string
		wantStatus int
		wantBody   string
	}{
		{"no authorization", hdr("sec-iv", b64(good.Iv), "sec-fingerprint", "k-ctr"), b64(good.Message), 400, aleHeadersBody},
		{"no sec-iv", hdr("Authorization", "Bearer pos-1", "sec-fingerprint", "k-ctr"), b64(good.Message), 400, aleHeadersBody},
		{"no sec-fingerprint", hdr("Authorization", "Bearer pos-1", "sec-iv", b64(good.Iv)), b64(good.Message), 400, aleHeadersBody},
		{"empty authorization", full(b64(good.Iv), "k-ctr").Clone(), b64(good.Message), 400, aleHeadersBody},
		{"empty sec-iv", full("", "k-ctr"), b64(good.Message), 400, aleHeadersBody},
		{"empty sec-fingerprint", full(b64(good.Iv), ""), b64(good.Message), 400, aleHeadersBody},
		{"iv of 8 bytes", full(iv(8), "k-ctr"), b64(good.Message), 400, aleHeadersBody},
		{"iv of 15 bytes", full(iv(15), "k-ctr"), b64(good.Message), 400, aleHeadersBody},
		{"iv of 17 bytes", full(iv(17), "k-ctr"), b64(good.Message), 400, aleHeadersBody},
		{"iv of 32 bytes", full(iv(32), "k-ctr"), b64(good.Message), 400, aleHeadersBody},
		{"iv not base64", full("not*base64!", "k-ctr"), b64(good.Message), 400, aleHeadersBody},
		{"unknown fingerprint", full(b64(good.Iv), "k-nope"), b64(good.Message), 400, aleDecryptBody},
		{"body not base64", full(b64(good.Iv), "k-ctr"), "this is not base64!", 400, aleDecryptBody},
		{"truncated body", full(b64(good.Iv), "k-ctr"), b64(good.Message[:len(good.Message)-5]), 400, aleDecryptBody},
		{"wrong key's ciphertext", full(b64(other.Iv), "k-ctr"), b64(other.Message), 400, aleDecryptBody},
		{"gcm tag flipped", full(b64(gcm.Iv), "k-gcm"), b64(append(bytes.Clone(gcm.Message[:len(gcm.Message)-1]), gcm.Message[len(gcm.Message)-1]^1)), 400, aleDecryptBody},
		{"disabled key", full(b64(good.Iv), "k-off"), b64(good.Message), 400, aleDecryptBody},
		{"oversized body", full(b64(good.Iv), "k-ctr"), strings.Repeat("A", 65537), 413, `{"error":"request body over 65536 bytes"}`},
	}
	tests[3].header.Set("Authorization", "")
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			req, _ := http.NewRequest(http.MethodPost, e.gate.URL+"/orders?store=1", strings.NewReader(tc.body))
			req.Header = tc.header
			res, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(res.Body)
			res.Body.Close()
			if res.StatusCode != tc.wantStatus || string(body) != tc.wantBody || res.Header.Get("Content-Type") != "application/json" {
				t.Fatalf("got %d %s (%s), want %d %s (application/json)", res.StatusCode, body, res.Header.Get("Content-Type"), tc.wantStatus, tc.wantBody)
			}
		})
	}
	if n := e.kitchen.Seen(); n != 0 {
		t.Fatalf("the kitchen saw %d requests; bad requests must never reach it", n)
	}
}

// TestGatewayHTTPRoundTripper sends real traffic through the POS-side
// RoundTripper: the kitchen gets the plaintext with headers and query
// intact and sec-* gone, and the encrypted response decrypts.
func TestGatewayHTTPRoundTripper(t *testing.T) {
	e := startGateway(t, "--encrypt-responses")
	e.kitchen.SetReply([]byte(`{"status":"cooking"}`))
	var h2c http.Protocols
	h2c.SetUnencryptedHTTP2(true)
	crypto := newCryptoClient(e.crypto.URL)
	pos := &http.Client{Transport: &posclient.Transport{Crypto: crypto, Key: &alev1.KeyRef{Ref: &alev1.KeyRef_Alias{Alias: "store-1"}}}}
	order := `{"order":42,"note":"sans gluten ☺"}`
	req, _ := http.NewRequest(http.MethodPut, e.gate.URL+"/v1/orders/42?store=1&rush=true", strings.NewReader(order))
	req.Header.Set("Authorization", "Bearer pos-terminal-7")
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("X-Terminal", "T7")
	res, err := pos.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(res.Body)
	res.Body.Close()
	if res.StatusCode != 200 || string(body) != `{"status":"cooking"}` || res.Header.Get("X-Kitchen") != "yes" {
		t.Fatalf("response = %d %q (X-Kitchen %q)", res.StatusCode, body, res.Header.Get("X-Kitchen"))
	}
	reqs := e.kitchen.Requests()
	if len(reqs) != 1 {
		t.Fatalf("kitchen saw %d requests, want 1", len(reqs))
	}
	got := reqs[0]
	if got.Method != http.MethodPut || got.Path != "/v1/orders/42" || got.RawQuery != "store=1&rush=true" ||
		string(got.Body) != order || got.ContentLength != int64(len(order)) ||
		got.Header.Get("Authorization") != "Bearer pos-terminal-7" || got.Header.Get("X-Terminal") != "T7" ||
		got.Header.Get("sec-iv") != "" || got.Header.Get("sec-fingerprint") != "" {
		t.Fatalf("kitchen saw %+v", got)
	}

	// The raw response really was encrypted on the wire.
	env := e.seal(t, "k-ctr", []byte(order))
	raw, _ := http.NewRequest(http.MethodPost, e.gate.URL+"/v1/orders", strings.NewReader(b64(env.Message)))
	raw.Header = http.Header{"Authorization": {"Bearer x"}, "Sec-Iv": {b64(env.Iv)}, "Sec-Fingerprint": {"k-ctr"}, "Content-Type": {"application/json"}}
	rawRes, err := http.DefaultClient.Do(raw)
	if err != nil {
		t.Fatal(err)
	}
	rawBody, _ := io.ReadAll(rawRes.Body)
	rawRes.Body.Close()
	if rawRes.Header.Get("sec-fingerprint") != "k-ctr" || rawRes.Header.Get("sec-iv") == "" || rawRes.Header.Get("sec-iv") == b64(env.Iv) ||
		strings.Contains(string(rawBody), "cooking") {
		t.Fatalf("response on the wire: sec-iv %q, sec-fingerprint %q, body %q; want a fresh IV and ciphertext",
			rawRes.Header.Get("sec-iv"), rawRes.Header.Get("sec-fingerprint"), rawBody)
	}

	// Upstream down: 502 with a JSON error.
	e.kitchen.Close()
	req, _ = http.NewRequest(http.MethodPost, e.gate.URL+"/v1/orders", strings.NewReader(order))
	req.Header.Set("Authorization", "Bearer pos-terminal-7")
	res, err = pos.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ = io.ReadAll(res.Body)
	res.Body.Close()
	if res.StatusCode != http.StatusBadGateway || string(body) != `{"error":"upstream unavailable"}` {
		t.Fatalf("upstream down: %d %s, want 502 JSON", res.StatusCode, body)
	}
}

// TestGatewayWebSocket: bad handshakes are refused with the ALE body before
// any upgrade; a good connection bridges frames both ways, answers bad
// frames with an error frame and stays up, and passes close codes through.
func TestGatewayWebSocket(t *testing.T) {
	e := startGateway(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	hs := e.seal(t, "k-ctr", nil)
	goodHdr := func() http.Header {
		return http.Header{"Authorization": {"Bearer kds-1"}, "Sec-Iv": {b64(hs.Iv)}, "Sec-Fingerprint": {"k-ctr"}}
	}
	bad := []struct {
		name   string
		mutate func(h http.Header)
		want   string
	}{
		{"no authorization", func(h http.Header) { h.Del("Authorization") }, aleHeadersBody},
		{"no sec-iv", func(h http.Header) { h.Del("Sec-Iv") }, aleHeadersBody},
		{"no sec-fingerprint", func(h http.Header) { h.Del("Sec-Fingerprint") }, aleHeadersBody},
		{"iv of 8 bytes", func(h http.Header) { h.Set("Sec-Iv", b64(make([]byte, 8))) }, aleHeadersBody},
		{"iv not base64", func(h http.Header) { h.Set("Sec-Iv", "%%%") }, aleHeadersBody},
		{"unknown fingerprint", func(h http.Header) { h.Set("Sec-Fingerprint", "k-nope") }, aleDecryptBody},
		{"disabled key", func(h http.Header) { h.Set("Sec-Fingerprint", "k-off") }, aleDecryptBody},
	}
	for _, tc := range bad {
		h := goodHdr()
		tc.mutate(h)
		_, res, err := websocket.Dial(ctx, wsURL(e.gate.URL, "/kds", nil), &websocket.DialOptions{HTTPHeader: h})
		if err == nil || res == nil {
			t.Fatalf("%s: handshake succeeded", tc.name)
		}
		body, _ := io.ReadAll(res.Body)
		res.Body.Close()
		if res.StatusCode != 400 || string(body) != tc.want {
			t.Fatalf("%s: handshake got %d %s, want 400 %s", tc.name, res.StatusCode, body, tc.want)
		}
	}
	if n := e.kitchen.Seen(); n != 0 {
		t.Fatalf("refused handshakes reached the kitchen (%d)", n)
	}

	// A browser passes the values as query parameters; one that does not
	// URL-encode them sends base64's "+" raw, which must still work.
	rawQuery := "sec-iv=" + strings.ReplaceAll(b64(append([]byte{0xfb, 0xef}, hs.Iv[2:]...)), "=", "%3D") + "&sec-fingerprint=k-ctr&authorization=Bearer%20kds-1"
	if !strings.Contains(rawQuery, "+") {
		t.Fatalf("test IV has no '+': %s", rawQuery)
	}
	if c, _, err := websocket.Dial(ctx, wsURL(e.gate.URL, "/kds", nil)+"?"+rawQuery, nil); err != nil {
		t.Fatalf("handshake with an unescaped '+' in the IV: %v", err)
	} else {
		c.Close(websocket.StatusNormalClosure, "")
	}
	q := url.Values{"sec-iv": {b64(hs.Iv)}, "sec-fingerprint": {"k-ctr"}, "authorization": {"Bearer kds-1"}, "screen": {"grill"}}
	c, _, err := websocket.Dial(ctx, wsURL(e.gate.URL, "/kds", q), nil)
	if err != nil {
		t.Fatalf("good handshake: %v", err)
	}
	defer c.CloseNow()
	crypto := newCryptoClient(e.crypto.URL)
	send := func(s string) {
		t.Helper()
		if err := c.Write(ctx, websocket.MessageText, []byte(s)); err != nil {
			t.Fatal(err)
		}
	}
	readFrame := func() string {
		t.Helper()
		_, data, err := c.Read(ctx)
		if err != nil {
			t.Fatal(err)
		}
		return string(data)
	}
	frame := func(plaintext string) string {
		env := e.seal(t, "k-ctr", []byte(plaintext))
		b, _ := json.Marshal(map[string]string{"iv": b64(env.Iv), "fingerprint": env.Fingerprint, "message": b64(env.Message)})
		return string(b)
	}
	open := func(f string) string {
		t.Helper()
		var env struct{ IV, Fingerprint, Message string }
		if err := json.Unmarshal([]byte(f), &env); err != nil || env.Fingerprint != "k-ctr" {
			t.Fatalf("server frame %q: %v", f, err)
		}
		iv, _ := base64.StdEncoding.DecodeString(env.IV)
		msg, _ := base64.StdEncoding.DecodeString(env.Message)
		res, err := crypto.Decrypt(ctx, connect.NewRequest(&alev1.DecryptRequest{Envelope: &alev1.Envelope{Iv: iv, Fingerprint: env.Fingerprint, Message: msg}}))
		if err != nil {
			t.Fatal(err)
		}
		return string(res.Msg.GetPlaintext())
	}

	send(frame(`{"ticket":1}`))
	if got := open(readFrame()); got != `echo:{"ticket":1}` {
		t.Fatalf("echo = %q", got)
	}
	unknownKey := strings.Replace(frame("x"), `"k-ctr"`, `"k-nope"`, 1)
	// Sealed under k-other but labelled k-ctr: AES-CTR "decrypts" it to
	// random bytes, which the gateway's UTF-8 check stops.
	otherEnv := e.seal(t, "k-other", []byte(`{"ticket":"sealed under another key"}`))
	wrongKey, _ := json.Marshal(map[string]string{"iv": b64(otherEnv.Iv), "fingerprint": "k-ctr", "message": b64(otherEnv.Message)})
	for _, tc := range []struct{ name, frame, want string }{
		{"undecryptable frame", unknownKey, aleDecryptBody},
		{"wrong key's frame", string(wrongKey), aleDecryptBody},
		{"missing fields", `{"message":"aGk="}`, aleHeadersBody},
		{"not JSON", `ticket 2 please`, aleDecryptBody},
	} {
		send(tc.frame)
		if got := readFrame(); got != tc.want {
			t.Fatalf("%s: got %s, want %s", tc.name, got, tc.want)
		}
	}
	send(frame(`{"ticket":3}`)) // the connection is still good
	if got := open(readFrame()); got != `echo:{"ticket":3}` {
		t.Fatalf("after bad frames, echo = %q", got)
	}
	if msgs := e.kitchen.Messages(); strings.Join(msgs, "|") != `{"ticket":1}|{"ticket":3}` {
		t.Fatalf("kitchen got %q; bad frames must not reach it", msgs)
	}
	// A close from the kitchen passes through with its code.
	send(frame(`{"close":4001}`))
	_, _, err = c.Read(ctx)
	if websocket.CloseStatus(err) != 4001 {
		t.Fatalf("close status = %v (%v), want 4001", websocket.CloseStatus(err), err)
	}
}

// TestAlectlHTTP: an operator's ALE request through the gateway with alectl,
// built on the POS RoundTripper.
func TestAlectlHTTP(t *testing.T) {
	e := startGateway(t, "--encrypt-responses")
	alectl := filepath.Join(harness.Binaries(t), "alectl")
	env := []string{"ALECRYPT_ADDR=" + e.crypto.URL}
	out, errOut, code := harness.Run(t, "", env, alectl, "http", "POST", e.gate.URL+"/v1/orders?src=alectl",
		"--alias", "store-1", "--authorization", "Bearer ops", "--header", "Content-Type: application/json", "--data", `{"order":"from alectl"}`)
	if code != 0 || out != `{"order":"from alectl"}` || !strings.Contains(errOut, "200 OK") {
		t.Fatalf("alectl http: exit %d, stdout %q, stderr %q", code, out, errOut)
	}
	reqs := e.kitchen.Requests()
	if len(reqs) != 1 || string(reqs[0].Body) != `{"order":"from alectl"}` || reqs[0].RawQuery != "src=alectl" {
		t.Fatalf("kitchen saw %+v", reqs)
	}
	// A refused request: the gateway's ALE error is printed and the exit is 1.
	_, errOut, code = harness.Run(t, "", env, alectl, "http", "POST", e.gate.URL+"/v1/orders", "--alias", "store-1", "--data", "x")
	if code != 1 || !strings.Contains(errOut, "400 Bad Request") {
		t.Fatalf("alectl http without authorization: exit %d, stderr %q; want exit 1 and the 400", code, errOut)
	}
}

// TestGatewayHealth: alegate's own metrics port serves Prometheus metrics
// with the alegate_ prefix, /healthz, and /readyz that follows alecryptd.
func TestGatewayHealth(t *testing.T) {
	e := startGateway(t)
	base := strings.TrimSuffix(e.gate.MetricsURL, "/metrics")
	if base == "" {
		t.Fatal("alegate logged no metrics address")
	}
	get := func(path string) (int, string) {
		t.Helper()
		res, err := http.Get(base + path)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(res.Body)
		res.Body.Close()
		return res.StatusCode, string(b)
	}
	env := e.seal(t, "k-ctr", []byte(`{"order":1}`))
	req, _ := http.NewRequest(http.MethodPost, e.gate.URL+"/orders", strings.NewReader(b64(env.Message)))
	req.Header = http.Header{"Authorization": {"Bearer x"}, "Sec-Iv": {b64(env.Iv)}, "Sec-Fingerprint": {"k-ctr"}}
	if res, err := http.DefaultClient.Do(req); err != nil {
		t.Fatal(err)
	} else {
		res.Body.Close()
	}
	if code, body := get("/metrics"); code != 200 || !strings.Contains(body, `alegate_requests_total{kind="http",outcome="forwarded"} 1`) ||
		strings.Contains(body, "k-ctr") {
		t.Fatalf("/metrics: %d\n%s", code, body)
	}
	if code, _ := get("/healthz"); code != 200 {
		t.Fatalf("/healthz = %d", code)
	}
	if code, body := get("/readyz"); code != 200 {
		t.Fatalf("/readyz with alecryptd up = %d %s", code, body)
	}
	_ = e.crypto.Stop(t)
	if code, _ := get("/readyz"); code != http.StatusServiceUnavailable {
		t.Fatalf("/readyz with alecryptd down = %d, want 503", code)
	}
	if code, _ := get("/healthz"); code != 200 {
		t.Fatalf("/healthz with alecryptd down = %d, want 200 (alegate itself is alive)", code)
	}
}
