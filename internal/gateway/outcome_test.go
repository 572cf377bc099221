package gateway_test

import (
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/alecrypt/alecrypt/internal/gateway"
)

// TestRequestOutcomes: every way an HTTP request ends is counted once, as
// its own outcome. A sealed response is forwarded only once it is sealed:
// one too large to seal, or an upstream that fails, counts as that failure
// and never also as forwarded.
func TestRequestOutcomes(t *testing.T) {
	t.Parallel()
	sealed := func(t *testing.T, e *env) *http.Request {
		env := e.seal(t, "k-ctr", `{"order":1}`)
		req, _ := http.NewRequest(http.MethodPost, e.url+"/orders", strings.NewReader(b64(env.Message)))
		req.Header = aleHeader(env)
		return req
	}
	tests := []struct {
		name       string
		opts       func(*gateway.Options)
		request    func(t *testing.T, e *env) *http.Request
		wantStatus int
		want       string
	}{
		{name: "forwarded", request: sealed, wantStatus: http.StatusOK, want: "forwarded"},
		{name: "forwarded and sealed", opts: func(o *gateway.Options) { o.EncryptResponses = true },
			request: sealed, wantStatus: http.StatusOK, want: "forwarded"},
		{name: "response too large to seal", opts: func(o *gateway.Options) { o.EncryptResponses, o.MaxResponseBytes = true, 4 },
			request: sealed, wantStatus: http.StatusBadGateway, want: "too_large"},
		{name: "upstream down", request: func(t *testing.T, e *env) *http.Request {
			e.kitchen.Close()
			return sealed(t, e)
		}, wantStatus: http.StatusBadGateway, want: "upstream_error"},
		{name: "upstream down, response to seal", opts: func(o *gateway.Options) { o.EncryptResponses = true }, request: func(t *testing.T, e *env) *http.Request {
			e.kitchen.Close()
			return sealed(t, e)
		}, wantStatus: http.StatusBadGateway, want: "upstream_error"},
		{name: "no ALE values, not required", opts: func(o *gateway.Options) { o.RequireALE = false }, request: func(t *testing.T, e *env) *http.Request {
			req, _ := http.NewRequest(http.MethodGet, e.url+"/menu", nil)
			return req
		}, wantStatus: http.StatusOK, want: "forwarded"},
		{name: "no ALE values, required", request: func(t *testing.T, e *env) *http.Request {
			req, _ := http.NewRequest(http.MethodGet, e.url+"/menu", nil)
			return req
		}, wantStatus: http.StatusBadRequest, want: "ale_1"},
		{name: "unknown key", request: func(t *testing.T, e *env) *http.Request {
			req := sealed(t, e)
			req.Header.Set("Sec-Fingerprint", "k-nope")
			return req
		}, wantStatus: http.StatusBadRequest, want: "ale_2"},
		{name: "origin refused", request: func(t *testing.T, e *env) *http.Request {
			req := sealed(t, e)
			req.Header.Set("Origin", "https://evil.example")
			return req
		}, wantStatus: http.StatusForbidden, want: "origin_refused"},
		{name: "preflight", request: func(t *testing.T, e *env) *http.Request {
			req, _ := http.NewRequest(http.MethodOptions, e.url+"/orders", nil)
			req.Header.Set("Origin", "capacitor://localhost")
			req.Header.Set("Access-Control-Request-Method", "POST")
			return req
		}, wantStatus: http.StatusNoContent, want: "preflight"},
		{name: "other upgrade", request: func(t *testing.T, e *env) *http.Request {
			req := sealed(t, e)
			req.Header.Set("Connection", "Upgrade")
			req.Header.Set("Upgrade", "h2c")
			return req
		}, wantStatus: http.StatusBadRequest, want: "bad_handshake"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			opts := defaultOpts()
			if tc.opts != nil {
				tc.opts(&opts)
			}
			e := newEnv(t, opts, 0)
			res, err := http.DefaultClient.Do(tc.request(t, e))
			if err != nil {
				t.Fatal(err)
			}
			_, _ = io.Copy(io.Discard, res.Body)
			res.Body.Close()
			if res.StatusCode != tc.wantStatus {
				t.Errorf("status = %d, want %d", res.StatusCode, tc.wantStatus)
			}
			got := requestsCounted(t, e.reg)
			want := map[string]float64{"http/" + tc.want: 1}
			if len(got) != len(want) || got["http/"+tc.want] != 1 {
				t.Errorf("alegate_requests_total = %v, want %v", got, want)
			}
		})
	}
}

// requestsCounted is alegate_requests_total's non-zero series, as
// kind/outcome to count.
func requestsCounted(t *testing.T, reg *prometheus.Registry) map[string]float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]float64{}
	for _, mf := range mfs {
		if mf.GetName() != "alegate_requests_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			var kind, outcome string
			for _, l := range m.GetLabel() {
				switch l.GetName() {
				case "kind":
					kind = l.GetValue()
				case "outcome":
					outcome = l.GetValue()
				}
			}
			if v := m.GetCounter().GetValue(); v != 0 {
				out[kind+"/"+outcome] = v
			}
		}
	}
	return out
}
