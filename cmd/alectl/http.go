package main

import (
	"fmt"
	"io"
	"net/http"
	"strings"

	"github.com/alecrypt/alecrypt/service/posclient"
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
	client := &http.Client{Transport: &posclient.Transport{Crypto: crypto, Key: ref}}
	res, err := client.Do(req)
	if err != nil {
		return callError(err)
	}
	defer res.Body.Close()
	fmt.Fprintln(e.stderr, res.Status)
	if _, err := io.Copy(e.stdout, res.Body); err != nil {
		return err
	}
	if res.StatusCode >= 400 {
		return fmt.Errorf("%s %s: %s", req.Method, req.URL.Redacted(), res.Status)
	}
	return nil
}

type headerList []string

func (h *headerList) String() string     { return strings.Join(*h, ", ") }
func (h *headerList) Set(v string) error { *h = append(*h, v); return nil }
