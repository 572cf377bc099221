package gateway

import (
	"fmt"
	"net/http"
	"net/url"
	"strings"
)

// Origins is the rule for the Origin header, on WebSocket handshakes and as
// CORS on HTTP requests alike (one list governs both):
//   - no Origin (native apps, servers) and the gateway's own origin pass;
//   - app origins that no web page can send pass: "ionic", "ionic://…",
//     "capacitor://…" (Ionic and Capacitor web views on iOS). A page can
//     only ever send its own http(s) origin or "null", so allowing these
//     lets no website in;
//   - any other origin (http(s) pages, "null" from sandboxed frames and
//     file: pages) passes only when listed, or when the list holds "*".
//
// Capacitor on Android serves its web view from http://localhost, which
// any page on the device's localhost could also send: list it explicitly.
type Origins struct {
	any   bool
	exact map[string]bool
}

// ParseOrigins builds the rule from a list of exact origins
// ("https://pos.example.com", "http://localhost:8100", "null") or "*".
func ParseOrigins(list []string) (Origins, error) {
	o := Origins{exact: map[string]bool{}}
	for _, raw := range list {
		e := strings.TrimSpace(raw)
		switch {
		case e == "":
			continue
		case e == "*":
			o.any = true
			continue
		case e == "null":
			o.exact["null"] = true
			continue
		}
		n, ok := normalizeOrigin(e)
		if !ok {
			return Origins{}, fmt.Errorf("origin %q: want scheme://host[:port] (no path, no wildcard), null, or *", e)
		}
		o.exact[n] = true
	}
	return o, nil
}

// normalizeOrigin lowercases an origin and drops a default port, as a
// browser serializes it.
func normalizeOrigin(s string) (string, bool) {
	u, err := url.Parse(s)
	if err != nil || u.Scheme == "" || u.Host == "" || u.User != nil || (u.Path != "" && u.Path != "/") ||
		u.RawQuery != "" || u.Fragment != "" || strings.Contains(s, "*") {
		return "", false
	}
	scheme, host := strings.ToLower(u.Scheme), strings.ToLower(u.Host)
	if (scheme == "http" && strings.HasSuffix(host, ":80")) || (scheme == "https" && strings.HasSuffix(host, ":443")) {
		host = host[:strings.LastIndexByte(host, ':')]
	}
	return scheme + "://" + host, true
}

// Allow reports whether a request with this Origin header, sent to host (the
// request's Host), may proceed.
func (o Origins) Allow(origin, host string) bool {
	if origin == "" || o.any {
		return true
	}
	lo := strings.ToLower(origin)
	if lo == "ionic" || strings.HasPrefix(lo, "ionic://") || strings.HasPrefix(lo, "capacitor://") {
		return true
	}
	if lo == "null" {
		return o.exact["null"]
	}
	n, ok := normalizeOrigin(origin)
	if !ok {
		return false
	}
	if o.exact[n] {
		return true
	}
	// Same origin: the page was served by this very host (the scheme is
	// not compared: behind a TLS-terminating balancer the gateway cannot
	// know it, and a host match already pins the site).
	u, _ := url.Parse(n)
	return (u.Scheme == "http" || u.Scheme == "https") && strings.EqualFold(u.Host, host)
}

// The CORS answer. Methods are those a kitchen API uses; headers are what an
// ALE browser client sets itself (sec-iv and sec-fingerprint travel in the
// query, since page scripts cannot send Sec-* headers); sec-iv and
// sec-fingerprint are exposed so a page can open an encrypted response.
const (
	corsAllowMethods  = "GET, POST, PUT, PATCH, DELETE"
	corsAllowHeaders  = "authorization, content-type"
	corsExposeHeaders = "sec-iv, sec-fingerprint"
	corsMaxAge        = "600"
)

func isPreflight(r *http.Request) bool {
	return r.Method == http.MethodOptions && r.Header.Get("Origin") != "" && r.Header.Get("Access-Control-Request-Method") != ""
}

// setCORS adds the headers that let the page at origin read the response.
func setCORS(h http.Header, origin string) {
	h.Set("Access-Control-Allow-Origin", origin)
	h.Add("Vary", "Origin")
	h.Set("Access-Control-Expose-Headers", corsExposeHeaders)
}

// answerPreflight answers a CORS preflight itself: it carries no ALE values
// (browsers send no credentials or custom headers on it), so it is answered
// before any ALE check and never reaches the kitchen.
func answerPreflight(w http.ResponseWriter) {
	h := w.Header()
	h.Set("Access-Control-Allow-Methods", corsAllowMethods)
	h.Set("Access-Control-Allow-Headers", corsAllowHeaders)
	h.Set("Access-Control-Max-Age", corsMaxAge)
	w.WriteHeader(http.StatusNoContent)
}

// dropUpstreamCORS removes CORS headers from an upstream response: the
// gateway answers CORS itself, and a second Access-Control-Allow-Origin
// makes browsers refuse the response.
func dropUpstreamCORS(h http.Header) {
	for k := range h {
		if strings.HasPrefix(k, "Access-Control-") {
			delete(h, k)
		}
	}
}
