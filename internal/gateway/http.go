package gateway

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"os"
	"strings"
	"time"

	alev1 "github.com/alecrypt/alecrypt/gen/ale/v1"
	"github.com/alecrypt/alecrypt/service/wire"
)

// serveHTTP is the HTTP path: check the ALE values, read and open the body,
// claim the (fingerprint, IV) pair, and forward the plaintext request. A
// request without ALE values goes as it is when they are not required.
func (q *request) serveHTTP() {
	g, r := q.g, q.r
	p, err := wire.ReadParams(r.Header, r.URL.Query())
	if err != nil {
		q.refuse(err)
		return
	}
	if !g.opts.RequireALE && !p.Present() {
		q.forward(r)
		return
	}
	iv, err := p.Check()
	if err != nil {
		q.refuse(err)
		return
	}
	contentType, err := wire.ContentType(r.Header)
	if err != nil {
		q.refuse(err)
		return
	}
	body, err := g.readBody(q.w, r)
	var tooBig *http.MaxBytesError
	switch {
	case errors.As(err, &tooBig):
		q.fail(outcomeTooLarge, http.StatusRequestEntityTooLarge, fmt.Sprintf("request body over %d bytes", g.opts.MaxBodyBytes))
		return
	case errors.Is(err, os.ErrDeadlineExceeded):
		g.log.Info("request body stalled; dropped", "method", r.Method, "path", r.URL.Path, "after", g.opts.BodyReadTimeout)
		q.w.Header().Set("Connection", "close")
		q.fail(outcomeTimeout, http.StatusRequestTimeout, "request body timed out")
		return
	case err != nil:
		q.refuse(&wire.Error{Code: wire.CodeDecrypt, Reason: "reading the body: " + err.Error()})
		return
	}
	msg, err := wire.OpenBody(body)
	if err != nil {
		q.refuse(err)
		return
	}
	// With sealed responses, ask whether the key can encrypt at the same
	// time as decrypting: a key that can only decrypt (retired during a
	// rotation) would let the kitchen execute the order and then leave
	// the gateway unable to answer, and the client would retry it.
	var canSeal chan error
	if g.opts.EncryptResponses {
		canSeal = make(chan error, 1)
		go func() { canSeal <- g.probeEncrypt(r.Context(), p.Fingerprint) }()
	}
	res, err := g.decrypt(r.Context(), &alev1.DecryptRequest{
		Envelope: &alev1.Envelope{Iv: iv, Fingerprint: p.Fingerprint, Message: msg},
		Expect:   expectFor(contentType),
	})
	if canSeal != nil {
		if serr := <-canSeal; err == nil {
			err = serr
		}
	}
	if err != nil {
		q.cryptoFailed(err)
		return
	}
	if !q.claim(p.Fingerprint, iv, msg) {
		return
	}
	pt := res.GetPlaintext()
	if g.opts.EncryptResponses {
		q.seal = p.Fingerprint
	}
	q.opened, q.params = true, p
	// A shallow copy: the reverse proxy makes the one deep copy (its
	// outgoing request), which strip then edits in the proxy's Rewrite.
	out := *r
	out.Body = io.NopCloser(bytes.NewReader(pt))
	out.ContentLength = int64(len(pt))
	// The plaintext goes with its Content-Length, however the client sent
	// the sealed body: a chunked upload's Transfer-Encoding (and trailers,
	// which only chunked framing carries) would otherwise be copied to the
	// kitchen's request and win over the length.
	out.TransferEncoding, out.Trailer = nil, nil
	q.forward(&out)
}

// readBody reads an encrypted body within MaxBodyBytes, giving each read
// BodyReadTimeout to make progress: a client that stops sending mid-body
// is cut instead of holding a connection and a goroutine for ever.
func (g *Gateway) readBody(w http.ResponseWriter, r *http.Request) ([]byte, error) {
	rc := http.NewResponseController(w)
	// The deadline must not outlive the body: the server's background
	// read, which notices a client going away while the upstream works,
	// would take it for a dead connection.
	defer func() { _ = rc.SetReadDeadline(time.Time{}) }()
	src := &progressReader{r: http.MaxBytesReader(w, r.Body, g.opts.MaxBodyBytes), rc: rc, d: g.opts.BodyReadTimeout}
	// A body that says its length is read into one buffer of that size
	// (io.ReadAll would grow one from 512 bytes, copying as it goes).
	if n := r.ContentLength; n > 0 && n <= g.opts.MaxBodyBytes {
		return readAll(make([]byte, 0, n+1), src)
	}
	return io.ReadAll(src)
}

// readAll is io.ReadAll appending to buf.
func readAll(buf []byte, r io.Reader) ([]byte, error) {
	for {
		if len(buf) == cap(buf) {
			buf = append(buf, 0)[:len(buf)]
		}
		n, err := r.Read(buf[len(buf):cap(buf)])
		buf = buf[:len(buf)+n]
		if err == io.EOF {
			return buf, nil
		}
		if err != nil {
			return buf, err
		}
	}
}

// progressReader gives each read of a body d to make progress.
type progressReader struct {
	r  io.Reader
	rc *http.ResponseController
	d  time.Duration
}

func (p *progressReader) Read(b []byte) (int, error) {
	if err := p.rc.SetReadDeadline(time.Now().Add(p.d)); err != nil && !errors.Is(err, http.ErrNotSupported) {
		return 0, err
	}
	return p.r.Read(b)
}

// expectFor asks alecryptd to check JSON bodies: AES-CTR cannot tell a wrong
// key from a right one, but garbage is rarely valid JSON.
func expectFor(contentType string) alev1.PlaintextFormat {
	mt, _, err := mime.ParseMediaType(contentType)
	if err == nil && (mt == "application/json" || strings.HasSuffix(mt, "+json")) {
		return alev1.PlaintextFormat_PLAINTEXT_FORMAT_JSON
	}
	return alev1.PlaintextFormat_PLAINTEXT_FORMAT_UNSPECIFIED
}
