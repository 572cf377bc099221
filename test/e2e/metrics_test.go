package e2e

import (
	"context"
	"maps"
	"net/http"
	"path/filepath"
	"strings"
	"testing"

	"connectrpc.com/connect"

	alev1 "github.com/alecrypt/alecrypt/gen/ale/v1"
	"github.com/alecrypt/alecrypt/gen/ale/v1/alev1connect"
	"github.com/alecrypt/alecrypt/internal/daemon/heapfloor"
	"github.com/alecrypt/alecrypt/test/harness"
	"github.com/alecrypt/alecrypt/test/kitchentest"
)

// TestMetricsCountExactlyTheTraffic scrapes /metrics around known traffic
// and checks each counter moved by exactly that traffic.
func TestMetricsCountExactlyTheTraffic(t *testing.T) {
	svc := harness.StartAlecryptd(t, harness.StartOptions{})
	c := newCryptoClient(svc.URL)
	ctx := context.Background()
	before := series(t, svc.MetricsURL)

	var env *alev1.Envelope
	for range 3 {
		res, err := c.Encrypt(ctx, connect.NewRequest(&alev1.EncryptRequest{Plaintext: []byte("0123456789")}))
		if err != nil {
			t.Fatal(err)
		}
		env = res.Msg.GetEnvelope()
	}
	for range 2 {
		if _, err := c.Decrypt(ctx, connect.NewRequest(&alev1.DecryptRequest{Envelope: env})); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := c.Decrypt(ctx, connect.NewRequest(&alev1.DecryptRequest{Envelope: &alev1.Envelope{Iv: make([]byte, 16), Fingerprint: "nope"}})); connect.CodeOf(err) != connect.CodeNotFound {
		t.Fatalf("Decrypt(nope) = %v", err)
	}
	if _, err := c.EncryptBatch(ctx, connect.NewRequest(&alev1.EncryptBatchRequest{Items: []*alev1.EncryptRequest{{}, {}, {}}})); err != nil {
		t.Fatal(err)
	}
	after := series(t, svc.MetricsURL)

	const p = "procedure=/ale.v1.CryptoService/"
	for k, want := range map[string]float64{
		"alecrypt_rpc_requests_total{code=ok," + p + "Encrypt}":           3,
		"alecrypt_rpc_requests_total{code=ok," + p + "Decrypt}":           2,
		"alecrypt_rpc_requests_total{code=not_found," + p + "Decrypt}":    1,
		"alecrypt_rpc_requests_total{code=ok," + p + "EncryptBatch}":      1,
		"alecrypt_rpc_duration_seconds{" + p + "Encrypt}":                 3,
		"alecrypt_rpc_duration_seconds{" + p + "Decrypt}":                 3,
		"alecrypt_rpc_messages_total{direction=in," + p + "Encrypt}":      3,
		"alecrypt_rpc_messages_total{direction=out," + p + "Encrypt}":     3,
		"alecrypt_rpc_messages_total{direction=out," + p + "Decrypt}":     2,
		"alecrypt_rpc_message_bytes_total{direction=in," + p + "Encrypt}": 3 * 12, // field tag + length + 10 bytes
	} {
		if got := after[k] - before[k]; got != want {
			t.Errorf("%s moved by %v, want %v", k, got, want)
		}
	}
	if after["alecrypt_keys{state=active}"] != 1 || after["alecrypt_keystore_up{}"] != 1 {
		t.Errorf("keystore gauges: keys active %v, up %v; want 1, 1", after["alecrypt_keys{state=active}"], after["alecrypt_keystore_up{}"])
	}
}

// TestCanaryNeverLeaks runs traffic with a canary key and a canary plaintext
// through a real alecryptd at debug log level, including failures, and
// checks neither appears in its logs or metrics.
func TestCanaryNeverLeaks(t *testing.T) {
	ks := filepath.Join(t.TempDir(), "keystore.json")
	const canaryKey, canaryText = "CANARY-KEY-7d1f0c", "CANARY-PLAINTEXT-3b9e"
	addKey(t, ks, "canary-fp", "default", canaryKey, "canary-salt", 1000)
	svc := harness.StartAlecryptd(t, harness.StartOptions{Keystore: ks})
	c := newCryptoClient(svc.URL)
	ctx := context.Background()
	enc, err := c.Encrypt(ctx, connect.NewRequest(&alev1.EncryptRequest{Plaintext: []byte(canaryText)}))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Decrypt(ctx, connect.NewRequest(&alev1.DecryptRequest{Envelope: enc.Msg.GetEnvelope()})); err != nil {
		t.Fatal(err)
	}
	// Failing calls log their cause: still nothing secret.
	_, _ = c.Decrypt(ctx, connect.NewRequest(&alev1.DecryptRequest{Envelope: enc.Msg.GetEnvelope(), Expect: alev1.PlaintextFormat_PLAINTEXT_FORMAT_JSON}))
	_, _ = c.Encrypt(ctx, connect.NewRequest(&alev1.EncryptRequest{Plaintext: []byte(canaryText), AssociatedData: []byte(canaryText)}))
	m := scrape(t, svc.MetricsURL)
	logs := svc.Logs()
	if !strings.Contains(logs, "call failed") || !strings.Contains(m, "alecrypt_rpc_requests_total") {
		t.Fatal("no failure logged or no RPC metrics: the scan would prove nothing")
	}
	for _, needle := range []string{canaryKey, canaryText} {
		if strings.Contains(logs, needle) || strings.Contains(m, needle) {
			t.Fatalf("a canary appeared in the logs or metrics")
		}
	}
}

// TestTracingContinuesCallersTrace turns tracing on through the standard
// environment (console exporter), sends a call carrying a W3C traceparent,
// and checks the service's span joined that trace and recorded no payload.
func TestTracingContinuesCallersTrace(t *testing.T) {
	svc := harness.StartAlecryptd(t, harness.StartOptions{Env: []string{"OTEL_TRACES_EXPORTER=console", "OTEL_SERVICE_NAME=alecryptd-test"}})
	const traceID = "4bf92f3577b34da6a3ce929d0e0e4736"
	const canaryText = "CANARY-TRACE-PLAINTEXT-51c2"
	req := connect.NewRequest(&alev1.EncryptRequest{Plaintext: []byte(canaryText)})
	req.Header().Set("traceparent", "00-"+traceID+"-00f067aa0ba902b7-01")
	if _, err := newCryptoClient(svc.URL).Encrypt(context.Background(), req); err != nil {
		t.Fatal(err)
	}
	if err := svc.Stop(t); err != nil { // flushes the exporter
		t.Fatal(err)
	}
	logs := svc.Logs()
	if !strings.Contains(logs, `"Name":"ale.v1.CryptoService/Encrypt"`) || !strings.Contains(logs, `"TraceID":"`+traceID+`"`) {
		t.Fatalf("no Encrypt span in trace %s in the console export:\n%s", traceID, logs)
	}
	if !strings.Contains(logs, `"trace_id":"`+traceID+`"`) {
		t.Errorf("the call's log line does not name its trace")
	}
	if !strings.Contains(logs, `"Value":"alecryptd-test"`) {
		t.Errorf("the span's resource does not carry OTEL_SERVICE_NAME")
	}
	if strings.Contains(logs, canaryText) {
		t.Fatal("the plaintext appeared in a trace or log")
	}
}

// TestTracingThroughGateway: a kitchen client's W3C trace continues through
// alegate into alecryptd, so one trace shows the whole request.
func TestTracingThroughGateway(t *testing.T) {
	otel := []string{"OTEL_TRACES_EXPORTER=console"}
	ks := filepath.Join(t.TempDir(), "keystore.json")
	addKey(t, ks, "trace-fp", "default", "trace-test-secret", "trace-salt", 1000)
	svc := harness.StartAlecryptd(t, harness.StartOptions{Keystore: ks, Env: otel})
	kitchen := kitchentest.Start(t)
	gate := harness.StartAlegateEnv(t, kitchen.URL, svc.URL, otel)
	env, err := newCryptoClient(svc.URL).Encrypt(context.Background(), connect.NewRequest(&alev1.EncryptRequest{Plaintext: []byte(`{"a":1}`)}))
	if err != nil {
		t.Fatal(err)
	}
	const traceID = "0af7651916cd43dd8448eb211c80319c"
	req, _ := http.NewRequest(http.MethodPost, gate.URL+"/orders", strings.NewReader(b64(env.Msg.GetEnvelope().GetMessage())))
	req.Header = http.Header{"Authorization": {"Bearer t"}, "Sec-Iv": {b64(env.Msg.GetEnvelope().GetIv())},
		"Sec-Fingerprint": {"trace-fp"}, "Traceparent": {"00-" + traceID + "-b7ad6b7169203331-01"}}
	res, err := http.DefaultClient.Do(req)
	if err != nil || res.StatusCode != 200 {
		t.Fatalf("request through the gateway: %v %v", res, err)
	}
	res.Body.Close()
	if got := kitchen.Requests()[0].Header.Get("Traceparent"); !strings.Contains(got, traceID) {
		t.Errorf("the kitchen got traceparent %q, want trace %s", got, traceID)
	}
	_ = gate.Stop(t)
	_ = svc.Stop(t)
	for name, logs := range map[string]string{"alegate": gate.Logs(), "alecryptd": svc.Logs()} {
		if !strings.Contains(logs, `"TraceID":"`+traceID+`"`) {
			t.Errorf("%s exported no span in trace %s", name, traceID)
		}
	}
	if !strings.Contains(svc.Logs(), `"Name":"ale.v1.CryptoService/Decrypt"`) {
		t.Errorf("alecryptd exported no Decrypt span")
	}
}

// TestKeyUsageAcrossReplicas: two real replicas on one keystore each count
// only their own use of a key (Resolve's usage), and their scrapes, summed
// as Prometheus would (sum by fingerprint), give the fleet's.
func TestKeyUsageAcrossReplicas(t *testing.T) {
	ks := filepath.Join(t.TempDir(), "keystore.json")
	addKey(t, ks, "fleet-fp", "default", "fleet-secret", "fleet-salt", 1000)
	a := harness.StartAlecryptd(t, harness.StartOptions{Keystore: ks})
	b := harness.StartAlecryptd(t, harness.StartOptions{Keystore: ks})
	ctx := context.Background()
	ca, cb := newCryptoClient(a.URL), newCryptoClient(b.URL)
	var env *alev1.Envelope
	for range 3 {
		res, err := ca.Encrypt(ctx, connect.NewRequest(&alev1.EncryptRequest{Plaintext: []byte("x")}))
		if err != nil {
			t.Fatal(err)
		}
		env = res.Msg.GetEnvelope()
	}
	for range 2 {
		if _, err := cb.Decrypt(ctx, connect.NewRequest(&alev1.DecryptRequest{Envelope: env})); err != nil {
			t.Fatal(err)
		}
	}
	ref := &alev1.KeyRef{Ref: &alev1.KeyRef_Fingerprint{Fingerprint: "fleet-fp"}}
	for _, r := range []struct {
		name     string
		c        alev1connect.CryptoServiceClient
		enc, dec uint64
	}{{"a", ca, 3, 0}, {"b", cb, 0, 2}} {
		res, err := r.c.Resolve(ctx, connect.NewRequest(&alev1.ResolveRequest{Key: ref}))
		if err != nil {
			t.Fatal(err)
		}
		if u := res.Msg.GetKey().GetUsage(); u.GetEncryptCount() != r.enc || u.GetDecryptCount() != r.dec {
			t.Errorf("replica %s Resolve usage = %v, want %d encryptions, %d decryptions", r.name, u, r.enc, r.dec)
		}
	}
	fleet := map[string]float64{}
	for _, svc := range []*harness.Service{a, b} {
		for k, v := range series(t, svc.MetricsURL) {
			if strings.HasPrefix(k, "alecrypt_key_operations_total{") {
				fleet[k] += v
			}
		}
	}
	want := map[string]float64{
		"alecrypt_key_operations_total{fingerprint=fleet-fp,operation=encrypt}": 3,
		"alecrypt_key_operations_total{fingerprint=fleet-fp,operation=decrypt}": 2,
	}
	if !maps.Equal(fleet, want) {
		t.Errorf("fleet-wide key operations = %v, want %v", fleet, want)
	}
}

// TestHeapFloor: alecryptd (like every daemon, through daemon.Main) keeps the
// GC's heap goal at heapfloor.Default or more unless GOGC is set, and leaves
// an explicit GOGC alone. Calls drive GC cycles until both processes have
// collected; the floor shows in the Go collector's gauges.
func TestHeapFloor(t *testing.T) {
	t.Parallel()
	const floor = heapfloor.Default
	floored := harness.StartAlecryptd(t, harness.StartOptions{Env: []string{"GOGC="}})
	explicit := harness.StartAlecryptd(t, harness.StartOptions{Env: []string{"GOGC=100"}})
	ctx := context.Background()
	plaintext := make([]byte, 64<<10) // about 0.3 MiB of garbage per call
	// Three collections each after start-up's (before Keep, some may have
	// run): the floor is set once the first of them has ended.
	const cycles = "go_gc_duration_seconds{}"
	m0, e0 := series(t, floored.MetricsURL), series(t, explicit.MetricsURL)
	var m, e map[string]float64
	for calls := 0; m[cycles] < m0[cycles]+3 || e[cycles] < e0[cycles]+3; calls++ {
		if calls == 5000 {
			t.Fatalf("after %d calls: %v and %v collections since start-up, want 3 each", calls, m[cycles]-m0[cycles], e[cycles]-e0[cycles])
		}
		for _, svc := range []*harness.Service{floored, explicit} {
			if _, err := newCryptoClient(svc.URL).Encrypt(ctx, connect.NewRequest(&alev1.EncryptRequest{Plaintext: plaintext})); err != nil {
				t.Fatal(err)
			}
		}
		if calls%20 == 0 {
			m, e = series(t, floored.MetricsURL), series(t, explicit.MetricsURL)
		}
	}
	if got := m["go_gc_gogc_percent{}"]; got <= 100 {
		t.Errorf("GOGC with GOGC unset = %v, want it raised above 100", got)
	}
	if got := m["go_memstats_next_gc_bytes{}"]; got < floor {
		t.Errorf("heap goal with GOGC unset = %v, want at least %d", got, floor)
	}
	if got := e["go_gc_gogc_percent{}"]; got != 100 {
		t.Errorf("GOGC with GOGC=100 set = %v, want 100 (left alone)", got)
	}
	if got := e["go_memstats_next_gc_bytes{}"]; got >= floor {
		t.Errorf("heap goal with GOGC=100 set = %v, want Go's own (below %d)", got, floor)
	}
}
