// Package client builds connections to alecryptd for Go programs (alectl,
// alegate, POS backends): the HTTP client for the URL's scheme (h2c for
// http://, TLS with HTTP/2 for https://, with a private CA and a client
// certificate for mTLS), a bearer token on every call, and the generated
// Connect clients over it.
//
// It holds no key and does no cryptography: every operation is a call to
// alecryptd. It must never log, print or return the token (Config holds it
// as a secret.Bytes, which redacts itself; it leaves only as the
// Authorization header), and it reads no flags or environment: the caller
// says everything in Config.
package client

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strings"
	"time"

	"connectrpc.com/connect"

	"github.com/alecrypt/alecrypt/gen/ale/v1/alev1connect"
	"github.com/alecrypt/alecrypt/internal/tlsconfig"
	"github.com/alecrypt/alecrypt/service/secret"
)

// Config says how to reach alecryptd.
type Config struct {
	// URL is alecryptd's base URL, http:// or https://.
	URL string
	// GRPC selects the gRPC protocol (Connect otherwise).
	GRPC bool
	// HTTP1 sends unary Connect calls to a plain http:// URL over HTTP/1.1
	// keep-alive connections, and only the bidi Stream over h2c. Go's
	// HTTP/2 server costs about twice the CPU of HTTP/1.1 per small unary
	// call (48 against 26 µs for a 1 KiB Encrypt, mostly its scheduler
	// hand-offs between connection reader, serve loop, handler and frame
	// writer), so this is the cheaper choice for unary-heavy callers.
	// Ignored for gRPC, which needs HTTP/2 throughout.
	HTTP1 bool
	// CAFile, CertFile and KeyFile configure TLS for https:// URLs. They
	// are re-read when they change: each new connection uses the files on
	// disk (connections already open keep their handshake).
	CAFile, CertFile, KeyFile string
	// Token is sent as "Authorization: Bearer <token>" when set.
	Token secret.Bytes
}

// Clients are the generated clients over one HTTP client.
type Clients struct {
	HTTP *http.Client
	// URL is alecryptd's base URL, without a trailing slash.
	URL    string
	Crypto alev1connect.CryptoServiceClient
	Keys   alev1connect.KeyServiceClient
}

// New builds the clients for cfg. opts apply to both generated clients, after
// the protocol Config selects (interceptors for tracing, say).
func New(cfg Config, opts ...connect.ClientOption) (*Clients, error) {
	u, err := url.Parse(cfg.URL)
	if err != nil || u.Host == "" {
		return nil, fmt.Errorf("alecryptd URL %q: want http://host:port or https://host:port", cfg.URL)
	}
	tr := &http.Transport{Protocols: new(http.Protocols), ForceAttemptHTTP2: true}
	var rt http.RoundTripper = tr
	switch u.Scheme {
	case "http":
		// gRPC and streams need HTTP/2; without TLS that is h2c with prior
		// knowledge.
		tr.Protocols.SetUnencryptedHTTP2(true)
		if cfg.HTTP1 && !cfg.GRPC {
			h1 := &http.Transport{Protocols: new(http.Protocols), MaxIdleConnsPerHost: 256, IdleConnTimeout: 90 * time.Second}
			h1.Protocols.SetHTTP1(true)
			rt = streamsOverH2C{h1: h1, h2c: tr}
		}
	case "https":
		protos := []string{"h2", "http/1.1"}
		if cfg.GRPC {
			protos = protos[:1]
		}
		// Each connection re-reads the CA and client certificate files when
		// they changed, so short-lived certificates rotate under a running
		// client (alegate's) without a restart.
		d, err := tlsconfig.NewDialer(cfg.CAFile, cfg.CertFile, cfg.KeyFile, protos...)
		if err != nil {
			return nil, err
		}
		tr.DialTLSContext = d.DialTLSContext
		tr.Protocols.SetHTTP2(true)
		tr.Protocols.SetHTTP1(!cfg.GRPC)
	default:
		return nil, fmt.Errorf("alecryptd URL %q: scheme must be http or https", cfg.URL)
	}
	rt = envelopeBodies{next: rt}
	if !cfg.Token.IsZero() {
		rt = bearer{next: rt, value: "Bearer " + string(cfg.Token.Expose())}
	}
	hc := &http.Client{Transport: rt}
	if cfg.GRPC {
		opts = append([]connect.ClientOption{connect.WithGRPC()}, opts...)
	}
	base := strings.TrimRight(cfg.URL, "/")
	return &Clients{
		HTTP:   hc,
		URL:    base,
		Crypto: alev1connect.NewCryptoServiceClient(hc, base, opts...),
		Keys:   alev1connect.NewKeyServiceClient(hc, base, opts...),
	}, nil
}

// Serving asks alecryptd's gRPC health service (open to every caller, and
// spoken here in the Connect protocol's JSON so no generated code is needed)
// whether it serves; nil means it answered SERVING. Readiness probes of
// programs that depend on alecryptd (alegate's /readyz) use it.
func (c *Clients) Serving(ctx context.Context) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.URL+"/grpc.health.v1.Health/Check", strings.NewReader("{}"))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	res, err := c.HTTP.Do(req)
	if err != nil {
		return fmt.Errorf("alecryptd health: %w", err)
	}
	defer res.Body.Close()
	var body struct {
		Status json.RawMessage `json:"status"`
	}
	if err := json.NewDecoder(io.LimitReader(res.Body, 4096)).Decode(&body); err != nil || res.StatusCode != http.StatusOK {
		return fmt.Errorf("alecryptd health: HTTP %d", res.StatusCode)
	}
	// The enum in protojson: its name as connect-go's health service
	// spells it, the short gRPC name, or its number (SERVING is 1).
	switch string(body.Status) {
	case `"SERVING_STATUS_SERVING"`, `"SERVING"`, `1`:
		return nil
	}
	return fmt.Errorf("alecryptd health: %s", body.Status)
}

// TokenFromFile reads a bearer token file (surrounding whitespace trimmed).
func TokenFromFile(path string) (secret.Bytes, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return secret.Bytes{}, fmt.Errorf("token file: %w", err)
	}
	defer clear(b)
	tok := strings.TrimSpace(string(b))
	if tok == "" {
		return secret.Bytes{}, fmt.Errorf("token file %s is empty", path)
	}
	return secret.FromString(tok), nil
}

// streamsOverH2C sends the bidi Stream RPC over h2c and every other call
// over HTTP/1.1.
type streamsOverH2C struct {
	h1, h2c http.RoundTripper
}

func (s streamsOverH2C) RoundTrip(r *http.Request) (*http.Response, error) {
	if r.URL.Path == alev1connect.CryptoServiceStreamProcedure || strings.HasSuffix(r.URL.Path, alev1connect.CryptoServiceStreamProcedure) {
		return s.h2c.RoundTrip(r)
	}
	return s.h1.RoundTrip(r)
}

type bearer struct {
	next  http.RoundTripper
	value string
}

func (b bearer) RoundTrip(r *http.Request) (*http.Response, error) {
	r = r.Clone(r.Context())
	r.Header.Set("Authorization", b.value)
	return b.next.RoundTrip(r)
}
