package wsconn

import (
	"net/http"
	"net/http/httptest"
	"testing"
)

// TestCheckHandshake: section 4.2.1's rules, each broken alone.
func TestCheckHandshake(t *testing.T) {
	t.Parallel()
	good := func() *http.Request {
		r := httptest.NewRequest(http.MethodGet, "/kds", nil)
		r.Header.Set("Upgrade", "websocket")
		r.Header.Set("Connection", "keep-alive, Upgrade")
		r.Header.Set("Sec-WebSocket-Version", "13")
		r.Header.Set("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ==")
		return r
	}
	for _, tc := range []struct {
		name string
		edit func(r *http.Request)
		want int
		isHS bool
	}{
		{"good", func(*http.Request) {}, 0, true},
		{"HTTP/1.0", func(r *http.Request) { r.ProtoMajor, r.ProtoMinor = 1, 0 }, http.StatusUpgradeRequired, true},
		{"POST", func(r *http.Request) { r.Method = http.MethodPost }, http.StatusMethodNotAllowed, true},
		{"version 8", func(r *http.Request) { r.Header.Set("Sec-WebSocket-Version", "8") }, http.StatusUpgradeRequired, true},
		{"two keys", func(r *http.Request) { r.Header.Add("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ==") }, http.StatusBadRequest, true},
		{"no key", func(r *http.Request) { r.Header.Del("Sec-WebSocket-Key") }, http.StatusBadRequest, true},
		{"short key", func(r *http.Request) { r.Header.Set("Sec-WebSocket-Key", "c2hvcnQ=") }, http.StatusBadRequest, true},
		{"no upgrade token", func(r *http.Request) { r.Header.Set("Connection", "keep-alive") }, 0, false},
		{"other upgrade", func(r *http.Request) { r.Header.Set("Upgrade", "h2c") }, 0, false},
	} {
		r := good()
		tc.edit(r)
		w := httptest.NewRecorder()
		if got := IsHandshake(r); got != tc.isHS {
			t.Errorf("%s: IsHandshake = %v, want %v", tc.name, got, tc.isHS)
		}
		if !tc.isHS {
			continue
		}
		status, reason := CheckHandshake(w, r)
		if status != tc.want || (status != 0) != (reason != "") {
			t.Errorf("%s: CheckHandshake = %d %q, want %d with a reason when refused", tc.name, status, reason, tc.want)
		}
		if tc.name == "version 8" && w.Header().Get("Sec-WebSocket-Version") != "13" {
			t.Errorf("a wrong version's answer does not name 13")
		}
	}
}
