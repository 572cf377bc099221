// Package portal is the one place that knows the Portal's API: it fetches
// every Secret Key the Portal lists and turns them into key records. A
// different Portal shape is a change to this file and nothing else.
//
// # The contract we consume
//
// The Portal's API is not public; this is the contract alecrypt defines and
// consumes:
//
//	GET {portal}/v1/secret-keys[?page_token=T]
//	Authorization: Bearer <token>
//	Accept: application/json
//
//	200 {"keys": [record, ...], "next_page_token": "T2"}
//
// The first request carries no page_token; each following request carries
// the previous page's next_page_token; an empty or missing next_page_token
// ends the listing. "keys" must be present (an empty array is a valid page).
// Other top-level fields are ignored. Each record has exactly the fields of
// the keystore record as key.MarshalRecord writes them (fingerprint, aliases,
// algorithm, secret, kdf{name,salt,iterations}, counter_bits, state, version,
// created_at, not_after, source) and is decoded strictly with
// key.UnmarshalRecord; its fingerprint must pass key.ValidateFingerprint (it
// becomes a Vault path segment), else the record is a Problem with no
// salvaged fingerprint. Any status other than 200 is an error (401 and 403 are
// ErrUnauthorized).
//
// # What it guarantees
//
//   - All or nothing at the page level: a network failure, a non-200 answer,
//     a page that is not the JSON above, a page larger than the size limit, a
//     repeated page token or too many pages fail the whole fetch. A caller
//     therefore never mistakes a truncated listing for keys the Portal
//     stopped listing.
//   - Record by record within a page: a malformed record is reported as a
//     Problem (with its fingerprint when that much is readable) and the other
//     records still count. A fingerprint listed more than once is a Problem
//     too, since nothing says which copy is right.
//   - The token travels only over HTTPS (plain HTTP only for a loopback host
//     with AllowInsecure), is never sent on a redirect (redirects are
//     refused), and never appears in an error, even if the server echoes it.
//     Errors never contain key material.
package portal

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"unicode"

	"github.com/alecrypt/alecrypt/internal/key"
)

// Limits. A page of 64 MiB holds well over 100,000 records; 10,000 pages is
// far beyond any real listing and stops a Portal that pages forever.
const (
	DefaultMaxPages     = 10_000
	DefaultMaxPageBytes = 64 << 20
)

// ListPath is the listing endpoint, relative to the Portal's base URL.
const ListPath = "v1/secret-keys"

var (
	// ErrUnauthorized means the Portal refused the token (401 or 403).
	ErrUnauthorized = errors.New("token refused")
	// ErrStatus means the Portal answered with another non-200 status.
	ErrStatus = errors.New("unexpected status")
	// ErrBadPage means a page is not the contract's JSON or is too large.
	ErrBadPage = errors.New("malformed page")
	// ErrPaging means the Portal repeated a page token or never stopped.
	ErrPaging = errors.New("paging does not terminate")
	// ErrInsecure means the base URL or the token cannot be used safely.
	ErrInsecure = errors.New("refusing insecure configuration")
)

// Client reads the Portal's key listing.
type Client struct {
	base          *url.URL
	hc            *http.Client
	token         string
	allowInsecure bool
	maxPages      int
	maxPageBytes  int64
}

// Option configures a Client.
type Option func(*Client)

// AllowInsecure permits plain http:// when the base URL's host is loopback
// (localhost, 127.0.0.0/8, ::1). Any other host still requires HTTPS.
func AllowInsecure() Option { return func(c *Client) { c.allowInsecure = true } }

// WithMaxPages bounds how many pages one fetch may read.
// Values below 1 keep the default.
func WithMaxPages(n int) Option {
	return func(c *Client) {
		if n > 0 {
			c.maxPages = n
		}
	}
}

// WithMaxPageBytes bounds the size of one page's body. Values below 1 keep
// the default.
func WithMaxPageBytes(n int64) Option {
	return func(c *Client) {
		if n > 0 {
			c.maxPageBytes = n
		}
	}
}

// NewClient returns a client for the Portal at baseURL, sending token as a
// bearer token through hc (whose transport holds the TLS configuration, e.g.
// a custom CA). hc itself is not modified: the client uses a copy that
// refuses redirects. Configuration problems surface from FetchAll.
func NewClient(baseURL *url.URL, hc *http.Client, token string, opts ...Option) *Client {
	if hc == nil {
		hc = http.DefaultClient
	}
	cp := *hc
	cp.CheckRedirect = func(*http.Request, []*http.Request) error {
		// Go keeps Authorization on a same-host redirect even from https
		// to http; the contract has no redirects, so follow none.
		return errors.New("redirect refused")
	}
	c := &Client{
		hc:           &cp,
		token:        token,
		maxPages:     DefaultMaxPages,
		maxPageBytes: DefaultMaxPageBytes,
	}
	if baseURL != nil {
		u := *baseURL
		c.base = &u
	}
	for _, o := range opts {
		o(c)
	}
	return c
}

// Result is one complete listing.
type Result struct {
	// Records are the valid records in listing order: one per fingerprint,
	// and none for a fingerprint that also has a Problem.
	Records []key.Record
	// Problems are the records that could not be used.
	Problems []Problem
	// Pages is how many pages were read.
	Pages int
}

// Problem is one unusable record.
type Problem struct {
	// Index is the record's position in the whole listing, from 0.
	Index int
	// Fingerprint is the record's fingerprint if it could be read, else "".
	Fingerprint string
	// Err says what is wrong; it never holds the secret.
	Err error
}

func (p Problem) Error() string {
	if p.Fingerprint == "" {
		return fmt.Sprintf("portal record #%d: %v", p.Index, p.Err)
	}
	return fmt.Sprintf("portal record #%d (%s): %v", p.Index, p.Fingerprint, p.Err)
}

// FailedFingerprints lists the readable fingerprints of unusable records:
// keys the Portal still lists even though this fetch cannot use them.
func (r Result) FailedFingerprints() []string {
	var fps []string
	for _, p := range r.Problems {
		if p.Fingerprint != "" {
			fps = append(fps, p.Fingerprint)
		}
	}
	return fps
}

// page is the contract's page. Keys is a pointer so a page without "keys"
// (an error page, a different API) is told apart from an empty listing.
type page struct {
	Keys          *[]json.RawMessage `json:"keys"`
	NextPageToken string             `json:"next_page_token"`
}

// FetchAll reads every page. It returns an error, and no records, if any
// page fails; see the package doc for what counts as a failure.
func (c *Client) FetchAll(ctx context.Context) (Result, error) {
	res, err := c.fetchAll(ctx)
	if err != nil {
		return Result{}, c.redact(err)
	}
	return res, nil
}

func (c *Client) fetchAll(ctx context.Context) (Result, error) {
	if err := c.check(); err != nil {
		return Result{}, err
	}
	var (
		res   Result
		index int
		token string
		seen  = map[string]bool{} // page tokens
		valid = map[string]bool{} // fingerprints of valid records so far
	)
	for {
		if res.Pages == c.maxPages {
			return Result{}, fmt.Errorf("%w: more than %d pages", ErrPaging, c.maxPages)
		}
		keys, next, err := c.fetchPage(ctx, token)
		if err != nil {
			return Result{}, fmt.Errorf("page %d: %w", res.Pages+1, err)
		}
		res.Pages++
		for _, raw := range keys {
			c.addRecord(&res, valid, index, raw)
			clear(raw)
			index++
		}
		if next == "" {
			break
		}
		if seen[next] {
			return Result{}, fmt.Errorf("%w: page %d repeats an earlier page token", ErrPaging, res.Pages)
		}
		seen[next] = true
		token = next
	}
	// A fingerprint with any problem (a malformed copy, a second copy) has
	// no trustworthy record: drop its valid copy too, keeping listing order.
	failed := map[string]bool{}
	for _, p := range res.Problems {
		failed[p.Fingerprint] = true
	}
	res.Records = slices.DeleteFunc(res.Records, func(r key.Record) bool { return failed[r.Fingerprint] })
	return res, nil
}

func (c *Client) addRecord(res *Result, valid map[string]bool, index int, raw json.RawMessage) {
	rec, err := key.UnmarshalRecord(raw)
	if err != nil {
		// The codec never quotes the secret, but it does quote aliases and
		// names, where a confused server might have put the token.
		err = &redactedError{msg: c.redactString(err.Error()), err: err}
		res.Problems = append(res.Problems, Problem{Index: index, Fingerprint: readFingerprint(raw), Err: err})
		return
	}
	if valid[rec.Fingerprint] {
		res.Problems = append(res.Problems, Problem{Index: index, Fingerprint: rec.Fingerprint, Err: errors.New("fingerprint listed more than once")})
		return
	}
	valid[rec.Fingerprint] = true
	res.Records = append(res.Records, rec)
}

// readFingerprint salvages the fingerprint of a record key.UnmarshalRecord
// rejected, so the caller can tell which key the Portal still lists. Only a
// well-formed fingerprint counts.
func readFingerprint(raw json.RawMessage) string {
	var v struct {
		Fingerprint any `json:"fingerprint"`
	}
	if json.Unmarshal(raw, &v) != nil {
		return ""
	}
	fp, ok := v.Fingerprint.(string)
	if !ok || key.ValidateFingerprint(fp) != nil {
		return ""
	}
	return fp
}

func (c *Client) fetchPage(ctx context.Context, token string) ([]json.RawMessage, string, error) {
	u := c.base.JoinPath(ListPath)
	q := url.Values{}
	if token != "" {
		q.Set("page_token", token)
	}
	u.RawQuery = q.Encode()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return nil, "", err
	}
	req.Header.Set("Authorization", "Bearer "+c.token)
	req.Header.Set("Accept", "application/json")
	resp, err := c.hc.Do(req)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err // drop the URL: its query holds the page token
		}
		return nil, "", fmt.Errorf("GET %s: %w", u.Path, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		snippet := c.snippet(resp.Body)
		sentinel := ErrStatus
		if resp.StatusCode == http.StatusUnauthorized || resp.StatusCode == http.StatusForbidden {
			sentinel = ErrUnauthorized
		}
		if snippet != "" {
			return nil, "", fmt.Errorf("%w: %s: %s", sentinel, resp.Status, snippet)
		}
		return nil, "", fmt.Errorf("%w: %s", sentinel, resp.Status)
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, c.maxPageBytes+1))
	defer clear(body) // it holds secrets
	if err != nil {
		return nil, "", fmt.Errorf("reading the body: %w", err)
	}
	if int64(len(body)) > c.maxPageBytes {
		return nil, "", fmt.Errorf("%w: larger than %d bytes", ErrBadPage, c.maxPageBytes)
	}
	var p page
	if err := json.Unmarshal(body, &p); err != nil {
		return nil, "", fmt.Errorf("%w: %s", ErrBadPage, describeJSONError(err))
	}
	if p.Keys == nil {
		return nil, "", fmt.Errorf("%w: no \"keys\" array", ErrBadPage)
	}
	return *p.Keys, p.NextPageToken, nil
}

// describeJSONError says what is wrong with a page without quoting it: the
// page holds secrets.
func describeJSONError(err error) string {
	var se *json.SyntaxError
	var te *json.UnmarshalTypeError
	switch {
	case errors.As(err, &se):
		return "not JSON (error at byte " + strconv.FormatInt(se.Offset, 10) + ")"
	case errors.As(err, &te) && te.Field == "":
		return "not a JSON object"
	case errors.As(err, &te):
		return fmt.Sprintf("field %q has the wrong type", te.Field)
	default:
		return "not the expected JSON"
	}
}

// snippet returns the start of an error body for the error message, made
// printable and with the token removed, so an operator sees what the Portal
// said (e.g. {"error":"unauthorized"}).
func (c *Client) snippet(body io.Reader) string {
	const readMax, showMax = 4 << 10, 200
	b, _ := io.ReadAll(io.LimitReader(body, readMax))
	defer clear(b)
	s := c.redactString(string(b))
	s = strings.Map(func(r rune) rune {
		if unicode.IsPrint(r) {
			return r
		}
		return ' '
	}, s)
	s = strings.TrimSpace(s)
	if len(s) > showMax {
		s = s[:showMax] + "..."
	}
	return s
}

// check refuses a configuration that would send the token unprotected.
func (c *Client) check() error {
	switch {
	case c.base == nil:
		return fmt.Errorf("%w: no base URL", ErrInsecure)
	case c.base.User != nil:
		return fmt.Errorf("%w: the base URL must not carry credentials", ErrInsecure)
	case c.base.Host == "":
		return fmt.Errorf("%w: the base URL has no host", ErrInsecure)
	case c.base.Scheme == "https":
	case c.base.Scheme == "http" && c.allowInsecure && isLoopback(c.base.Hostname()):
	default:
		return fmt.Errorf("%w: the Portal URL must be https:// (plain http only for a loopback host with AllowInsecure)", ErrInsecure)
	}
	if err := CheckToken(c.token); err != nil {
		return err
	}
	return nil
}

// CheckToken reports whether token can be sent as a bearer token: non-empty
// printable ASCII without spaces. The error never includes the token.
func CheckToken(token string) error {
	if token == "" {
		return fmt.Errorf("%w: empty token", ErrInsecure)
	}
	for i := 0; i < len(token); i++ {
		if token[i] < 0x21 || token[i] > 0x7e {
			return fmt.Errorf("%w: the token holds a space, control or non-ASCII character at byte %d", ErrInsecure, i)
		}
	}
	return nil
}

func isLoopback(host string) bool {
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

func (c *Client) redactString(s string) string {
	if c.token == "" {
		return s
	}
	return strings.ReplaceAll(s, c.token, "[REDACTED]")
}

// redact is the last line of defence: whatever produced err, its message
// leaves this package without the token. errors.Is still sees the cause.
func (c *Client) redact(err error) error {
	return &redactedError{msg: "portal: " + c.redactString(err.Error()), err: err}
}

type redactedError struct {
	msg string
	err error
}

func (e *redactedError) Error() string { return e.msg }
func (e *redactedError) Unwrap() error { return e.err }
