// Package portaltest is a stand-in for the Portal, the one part of the
// system we do not own and cannot run: a real HTTPS server (httptest's TLS
// server) speaking the contract alesync consumes,
//
//	GET /v1/secret-keys?page_token=T
//	Authorization: Bearer <token>
//	→ {"keys":[record,...],"next_page_token":"..."}
//
// with bearer auth, paging, and switches for the failures a sync must survive.
package portaltest

import (
	"crypto/subtle"
	"encoding/json"
	"encoding/pem"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"testing"

	"github.com/alecrypt/alecrypt/internal/key"
)

// Portal is a running HTTPS Portal.
type Portal struct {
	URL   string
	Token string
	// CAFile holds the server certificate's PEM, for --portal-ca.
	CAFile string

	mu       sync.Mutex
	records  []key.Record
	raw      []json.RawMessage // extra raw records, e.g. malformed ones
	pageSize int
	failWith int // HTTP status to answer every request with; 0 = serve
	requests int
}

// Start serves a Portal with the given bearer token until the test ends.
func Start(t testing.TB, token string) *Portal {
	t.Helper()
	p := &Portal{Token: token, pageSize: 2}
	srv := httptest.NewTLSServer(http.HandlerFunc(p.serve))
	t.Cleanup(srv.Close)
	p.URL = srv.URL
	p.CAFile = filepath.Join(t.TempDir(), "portal-ca.pem")
	pemBytes := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw})
	if err := os.WriteFile(p.CAFile, pemBytes, 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// SetKeys replaces what the Portal lists, raw records included.
func (p *Portal) SetKeys(recs ...key.Record) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.records = append([]key.Record(nil), recs...)
	p.raw = nil
}

// AddRaw appends a raw JSON record (valid or not) to the listing.
func (p *Portal) AddRaw(raw string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.raw = append(p.raw, json.RawMessage(raw))
}

// FailWith makes every request answer status (0 restores service).
func (p *Portal) FailWith(status int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.failWith = status
}

// Requests counts the requests served so far.
func (p *Portal) Requests() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.requests
}

func (p *Portal) serve(w http.ResponseWriter, r *http.Request) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.requests++
	if r.Method != http.MethodGet || r.URL.Path != "/v1/secret-keys" {
		http.NotFound(w, r)
		return
	}
	want := "Bearer " + p.Token
	if got := r.Header.Get("Authorization"); subtle.ConstantTimeCompare([]byte(got), []byte(want)) != 1 {
		http.Error(w, `{"error":"unauthorized"}`, http.StatusUnauthorized)
		return
	}
	if p.failWith != 0 {
		http.Error(w, `{"error":"portal failure"}`, p.failWith)
		return
	}
	all := make([]json.RawMessage, 0, len(p.records)+len(p.raw))
	for _, rec := range p.records {
		b, err := key.MarshalRecord(rec)
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		all = append(all, b)
	}
	all = append(all, p.raw...)
	start := 0
	if tok := r.URL.Query().Get("page_token"); tok != "" {
		n, err := strconv.Atoi(tok)
		if err != nil || n < 0 || n > len(all) {
			http.Error(w, `{"error":"bad page token"}`, http.StatusBadRequest)
			return
		}
		start = n
	}
	end := min(start+p.pageSize, len(all))
	page := struct {
		Keys          []json.RawMessage `json:"keys"`
		NextPageToken string            `json:"next_page_token,omitempty"`
	}{Keys: all[start:end]}
	if end < len(all) {
		page.NextPageToken = strconv.Itoa(end)
	}
	if page.Keys == nil {
		page.Keys = []json.RawMessage{}
	}
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(page)
}
