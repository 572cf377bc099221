package wire

import (
	"bytes"
	"mime"
	"net/http"
	"net/url"
	"strconv"
	"strings"
)

// Params are a request's ALE values: authorization, sec-iv and
// sec-fingerprint, from headers or, for clients that cannot set them
// (browsers: the Fetch standard forbids page scripts any Sec-* header, and
// the WebSocket API sets no headers at all), from query parameters.
type Params struct {
	Authorization, IV, Fingerprint string
	// AuthorizationFromQuery says authorization came only from the query,
	// so whoever forwards the request must put it in a header.
	AuthorizationFromQuery bool
}

// Present reports whether the request carries sec-iv or sec-fingerprint at
// all (a request with neither may pass when ALE is optional).
func (p Params) Present() bool { return p.IV != "" || p.Fingerprint != "" }

// ReadParams reads the ALE values from a request's headers and query. A value
// that is given twice (two headers, two query parameters, a comma-joined
// header, or a header and a query parameter that differ) is CodeHeaders: a
// request is decrypted under one IV and key, and which of two the client
// meant cannot be guessed. The same value in header and query is fine.
func ReadParams(h http.Header, q url.Values) (Params, error) {
	var p Params
	var err error
	if p.Authorization, p.AuthorizationFromQuery, err = one(h, q, HeaderAuthorization); err != nil {
		return Params{}, err
	}
	if p.IV, _, err = one(h, q, HeaderIV); err != nil {
		return Params{}, err
	}
	if p.Fingerprint, _, err = one(h, q, HeaderFingerprint); err != nil {
		return Params{}, err
	}
	return p, nil
}

func one(h http.Header, q url.Values, name string) (v string, fromQuery bool, err error) {
	hv := h.Values(name)
	qv := q[name]
	if len(hv) > 1 || len(qv) > 1 {
		return "", false, headersErr(name + " given more than once")
	}
	if name == HeaderIV && len(qv) == 1 {
		// A browser that builds the URL by concatenation leaves base64's
		// "+" unescaped, and query decoding turns it into a space; no
		// base64 IV contains a space, so put the "+" back.
		qv = []string{strings.ReplaceAll(qv[0], " ", "+")}
	}
	switch {
	case len(hv) == 1 && len(qv) == 1 && hv[0] != qv[0]:
		return "", false, headersErr(name + " differs between header and query")
	case len(hv) == 1:
		v = hv[0]
	case len(qv) == 1:
		v, fromQuery = qv[0], true
	}
	if name != HeaderAuthorization && strings.Contains(v, ",") {
		// Two headers joined by a proxy into one: still two values.
		return "", false, headersErr(name + " holds a list")
	}
	return v, fromQuery, nil
}

// ContentType reads the Content-Type of a request carrying an ALE body. It
// decides the check applied to the plaintext (JSON for application/json),
// the only way to notice a wrong key under aes-256-ctr, so it must be one
// value: given twice (two headers, or a list in one that does not parse as
// one media type) it is CodeHeaders like any other duplicated ALE value,
// or a client could send text/plain beside application/json and have a
// wrong-key body forwarded unchecked by whichever the reader picked.
func ContentType(h http.Header) (string, error) {
	vs := h.Values("Content-Type")
	switch {
	case len(vs) == 0:
		return "", nil
	case len(vs) > 1:
		return "", headersErr("content-type given more than once")
	}
	if strings.Contains(vs[0], ",") {
		// A comma may sit in a quoted parameter (a multipart boundary);
		// outside one it joins two types.
		if _, _, err := mime.ParseMediaType(vs[0]); err != nil {
			return "", headersErr("content-type holds a list")
		}
	}
	return vs[0], nil
}

// Check applies the errorCode 1 rules (all three present, the IV base64,
// the fingerprint well formed) and returns the IV. The IV's length is
// checked by alecryptd, which knows the key's algorithm.
func (p Params) Check() ([]byte, error) {
	if strings.TrimSpace(p.Authorization) == "" {
		return nil, headersErr("missing authorization")
	}
	if p.IV == "" {
		return nil, headersErr("missing sec-iv")
	}
	if err := CheckFingerprint(p.Fingerprint); err != nil {
		return nil, err
	}
	return DecodeIV(p.IV)
}

// StripQuery returns rawQuery without the ALE parameters, leaving every
// other parameter byte for byte as the client sent it, so the upstream never
// sees the values and its own parameters are untouched.
func StripQuery(rawQuery string) string {
	if rawQuery == "" {
		return ""
	}
	kept := make([]string, 0, 4)
	for _, part := range strings.Split(rawQuery, "&") {
		name, _, _ := strings.Cut(part, "=")
		if n, err := url.QueryUnescape(name); err == nil {
			name = n
		}
		switch strings.ToLower(name) {
		case HeaderIV, HeaderFingerprint, HeaderAuthorization:
			continue
		}
		kept = append(kept, part)
	}
	return strings.Join(kept, "&")
}

// StripHeaders removes the ALE headers from a request about to be forwarded
// in plaintext.
func StripHeaders(h http.Header) {
	h.Del(HeaderIV)
	h.Del(HeaderFingerprint)
}

// SetHeaders writes an envelope's IV and fingerprint as sec-iv and
// sec-fingerprint (a sealed request or response).
func SetHeaders(h http.Header, iv []byte, fingerprint string) {
	h.Set(HeaderIV, EncodeIV(iv))
	h.Set(HeaderFingerprint, fingerprint)
}

// Sealed reads the envelope of a sealed response: sec-iv, sec-fingerprint
// and the base64 body. ok is false when the response carries no sec-iv and
// sec-fingerprint (a plain response, an error from a gateway, say).
func Sealed(h http.Header, body []byte) (f Frame, ok bool, err error) {
	iv, fp := h.Get(HeaderIV), h.Get(HeaderFingerprint)
	if iv == "" || fp == "" {
		return Frame{}, false, nil
	}
	p := Params{Authorization: "-", IV: iv, Fingerprint: fp}
	if f.IV, err = p.Check(); err != nil {
		return Frame{}, true, err
	}
	f.Fingerprint = fp
	if f.Message, err = OpenBody(body); err != nil {
		return Frame{}, true, err
	}
	return f, true, nil
}

// OpenBody decodes a sealed body: base64 around the ciphertext, surrounding
// whitespace tolerated (clients add a trailing newline).
func OpenBody(body []byte) ([]byte, error) { return DecodePayload(bytes.TrimSpace(body)) }

// WriteError answers an ALE error: 400 with the exact EK body.
func WriteError(w http.ResponseWriter, code int) {
	body := ErrorBody(code)
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Content-Length", strconv.Itoa(len(body)))
	w.WriteHeader(http.StatusBadRequest)
	_, _ = w.Write(body)
}
