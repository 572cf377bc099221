// Package posclient is the POS side of ALE: an http.RoundTripper that
// encrypts each outgoing request body through alecryptd, sets the sec-iv and
// sec-fingerprint headers, and decrypts responses that come back encrypted.
//
// Keys stay in alecryptd; this package only moves envelopes. It must never
// send a body it could not encrypt (the request fails instead) and never
// logs.
package posclient

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"

	"connectrpc.com/connect"

	alev1 "github.com/alecrypt/alecrypt/gen/ale/v1"
	"github.com/alecrypt/alecrypt/gen/ale/v1/alev1connect"
	"github.com/alecrypt/alecrypt/service/aleerr"
	"github.com/alecrypt/alecrypt/service/wire"
)

// DefaultMaxResponseBytes bounds an encrypted response read into memory.
const DefaultMaxResponseBytes = 16 << 20

// Transport encrypts requests and decrypts responses. The zero value is not
// usable: Crypto is required.
type Transport struct {
	// Base sends the encrypted request; nil means http.DefaultTransport.
	Base http.RoundTripper
	// Crypto is the alecryptd client.
	Crypto alev1connect.CryptoServiceClient
	// Key selects the key: a fingerprint, or an alias whose primary key is
	// used. Nil means the service's default key.
	Key *alev1.KeyRef
	// MaxResponseBytes bounds an encrypted response; 0 means the default.
	MaxResponseBytes int64
}

var _ http.RoundTripper = (*Transport)(nil)

// ErrResponse wraps failures to decrypt a response that claimed to be
// encrypted.
var ErrResponse = errors.New("posclient: encrypted response")

// RoundTrip implements http.RoundTripper. Every request carries the ALE
// headers, even without a body, because the gateway requires them.
func (t *Transport) RoundTrip(req *http.Request) (*http.Response, error) {
	var body []byte
	if req.Body != nil && req.Body != http.NoBody {
		b, err := io.ReadAll(req.Body)
		req.Body.Close()
		if err != nil {
			return nil, fmt.Errorf("posclient: reading the request body: %w", err)
		}
		body = b
	}
	enc, err := t.Crypto.Encrypt(req.Context(), connect.NewRequest(&alev1.EncryptRequest{Plaintext: body, Key: t.Key}))
	if err != nil {
		return nil, fmt.Errorf("posclient: encrypting the request: %w", err)
	}
	env := enc.Msg.GetEnvelope()
	sealed := wire.SealPayload(env.GetMessage())
	out := req.Clone(req.Context())
	out.Body = io.NopCloser(bytes.NewReader(sealed))
	out.GetBody = func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(sealed)), nil }
	out.ContentLength = int64(len(sealed))
	out.Header.Set("Content-Length", strconv.Itoa(len(sealed)))
	wire.SetHeaders(out.Header, env.GetIv(), env.GetFingerprint())

	base := t.Base
	if base == nil {
		base = http.DefaultTransport
	}
	res, err := base.RoundTrip(out)
	if err != nil {
		return nil, err
	}
	if err := t.decryptResponse(req.Context(), res); err != nil {
		res.Body.Close()
		return nil, err
	}
	return res, nil
}

// decryptResponse opens a sealed response in place; a plain one (an error
// from the gateway, say) is left as it is.
func (t *Transport) decryptResponse(ctx context.Context, res *http.Response) error {
	if res.Header.Get(wire.HeaderIV) == "" || res.Header.Get(wire.HeaderFingerprint) == "" {
		return nil
	}
	limit := t.MaxResponseBytes
	if limit <= 0 {
		limit = DefaultMaxResponseBytes
	}
	raw, err := io.ReadAll(io.LimitReader(res.Body, limit+1))
	res.Body.Close()
	if err != nil {
		return fmt.Errorf("%w: reading: %w", ErrResponse, err)
	}
	if int64(len(raw)) > limit {
		return fmt.Errorf("%w: over %d bytes", ErrResponse, limit)
	}
	f, _, err := wire.Sealed(res.Header, raw)
	if err != nil {
		return fmt.Errorf("%w: %w", ErrResponse, err)
	}
	dec, err := t.Crypto.Decrypt(ctx, connect.NewRequest(&alev1.DecryptRequest{
		Envelope: &alev1.Envelope{Iv: f.IV, Fingerprint: f.Fingerprint, Message: f.Message},
	}))
	if err != nil {
		// The ALE code says whether the response was sealed under a key
		// this POS may not use (or that is unknown), or is corrupt.
		return fmt.Errorf("%w: ALE %d: %w", ErrResponse, aleerr.Code(err), err)
	}
	pt := dec.Msg.GetPlaintext()
	res.Body = io.NopCloser(bytes.NewReader(pt))
	res.ContentLength = int64(len(pt))
	res.Header.Set("Content-Length", strconv.Itoa(len(pt)))
	wire.StripHeaders(res.Header)
	return nil
}
