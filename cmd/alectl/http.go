package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"

	"github.com/alecrypt/alecrypt/service/posclient"
	"github.com/alecrypt/alecrypt/service/wire"
)

// httpCmd sends one ALE request through a gateway, as a POS terminal would:
// the body is encrypted through alecryptd, the response decrypted if it
// comes back encrypted. The status goes to stderr, the body to stdout.
func (e env) httpCmd(args []string) error {
	fs := e.newFlags("http")
	r := e.remoteFlags(fs, true)
	data := fs.String("data", "", "request body: TEXT, @FILE, or - for stdin (empty: no body)")
	auth := fs.String("authorization", "", "Authorization header value (required by gateways)")
	var headers headerList
	fs.Var(&headers, "header", `extra header "Name: value" (repeatable)`)
	pos, err := parse(fs, args, 2)
	if err != nil {
		return err
	}
	ref, err := r.keyRef()
	if err != nil {
		return err
	}
	var body io.Reader
	if *data != "" {
		b, err := e.readData(*data)
		if err != nil {
			return err
		}
		body = strings.NewReader(string(b))
	}
	ctx, cancel := r.ctx()
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, strings.ToUpper(pos[0]), pos[1], body)
	if err != nil {
		return usageError("%v", err)
	}
	if *auth != "" {
		req.Header.Set("Authorization", *auth)
	}
	for _, h := range headers {
		name, value, ok := strings.Cut(h, ":")
		if !ok {
			return usageError("--header %q: want \"Name: value\"", h)
		}
		req.Header.Add(strings.TrimSpace(name), strings.TrimSpace(value))
	}
	crypto, err := r.crypto()
	if err != nil {
		return err
	}
	sent := &sentHeaders{base: http.DefaultTransport}
	client := &http.Client{Transport: &posclient.Transport{Base: sent, Crypto: crypto, Key: ref}}
	res, err := client.Do(req)
	if err != nil {
		if sent.header == nil {
			// Nothing reached the gateway: sealing the body through
			// alecryptd failed.
			return r.callError(opEncrypt, ref, "", err)
		}
		return err
	}
	defer res.Body.Close()
	fmt.Fprintln(e.stderr, res.Status)
	// The body is read whole (posclient already bounds an encrypted one)
	// so that an ALE error body can be explained after it is printed.
	resBody, err := io.ReadAll(io.LimitReader(res.Body, maxInput))
	if err != nil {
		return err
	}
	if _, err := e.stdout.Write(resBody); err != nil {
		return err
	}
	if res.StatusCode >= 400 {
		msg := fmt.Sprintf("%s %s: %s", req.Method, req.URL.Redacted(), res.Status)
		if hint := aleErrorHint(res.StatusCode, resBody, sent.header); hint != "" {
			msg += ": " + hint
		}
		return errors.New(msg)
	}
	return nil
}

// aleErrorHint explains a gateway's ALE error body. errorCode 1 means an
// ALE header is missing or unusable, and the gateway does not say which (its
// log does): alectl knows what it sent, so it names what it did not.
func aleErrorHint(status int, body []byte, sent http.Header) string {
	var ale struct {
		ErrorCode *int `json:"errorCode"`
	}
	if status != http.StatusBadRequest || json.Unmarshal(body, &ale) != nil || ale.ErrorCode == nil {
		return ""
	}
	switch *ale.ErrorCode {
	case wire.CodeHeaders:
		var missing []string
		for _, h := range []string{wire.HeaderIV, wire.HeaderFingerprint, wire.HeaderAuthorization} {
			if sent.Get(h) == "" {
				missing = append(missing, h)
			}
		}
		if len(missing) == 0 {
			return "the gateway refused the ALE headers (errorCode 1): alectl sent sec-iv, sec-fingerprint and authorization, so one is unusable there (its log says which)"
		}
		hint := "the gateway wants the ALE headers (errorCode 1) and alectl sent no " + strings.Join(missing, ", ")
		if slices.Contains(missing, wire.HeaderAuthorization) {
			hint += `: give --authorization "Bearer TOKEN"`
		}
		return hint
	case wire.CodeDecrypt:
		return "the gateway could not decrypt the request (errorCode 2): the key is unknown there, disabled or refused, " +
			"or the plaintext failed its check (a JSON Content-Type needs a JSON body)"
	}
	return ""
}

// sentHeaders records the headers of the request that went out, after
// posclient sealed it.
type sentHeaders struct {
	base   http.RoundTripper
	header http.Header
}

func (s *sentHeaders) RoundTrip(req *http.Request) (*http.Response, error) {
	s.header = req.Header.Clone()
	return s.base.RoundTrip(req)
}

type headerList []string

func (h *headerList) String() string     { return strings.Join(*h, ", ") }
func (h *headerList) Set(v string) error { *h = append(*h, v); return nil }
