package client

import (
	"errors"
	"io"
	"net/http"

	"github.com/alecrypt/alecrypt/internal/rpcframe"
)

// envelopeBodies gives the HTTP/2 transport a stream's messages whole.
// connect-go writes each message of a stream (or a gRPC call) to the request
// body pipe in two writes, its 5-byte envelope prefix and then its data, and
// the HTTP/2 transport sends every read of the body as a DATA frame of its
// own and flushes it: two frames, two write syscalls, two hand-offs to the
// transport's writer goroutine and two wake-ups of alecryptd's reader per
// message. Read as whole messages, each goes out as one frame and one write.
// The bytes sent are the same.
type envelopeBodies struct {
	next http.RoundTripper
}

func (e envelopeBodies) RoundTrip(r *http.Request) (*http.Response, error) {
	if r.Body == nil || r.Body == http.NoBody || !rpcframe.IsEnveloped(r.Header.Get("Content-Type")) {
		return e.next.RoundTrip(r)
	}
	// A shallow copy: a RoundTripper must not modify the caller's request.
	r2 := r.WithContext(r.Context())
	r2.Body = &wholeMessages{ReadCloser: r.Body}
	return e.next.RoundTrip(r2)
}

// wholeMessages reads an enveloped body so that a Read returns a message's
// prefix together with its data (as much of the data as fits in the
// caller's buffer; the rest comes in the next Reads). It only waits for
// bytes the writer is already writing: connect-go writes a message's data
// right after its prefix.
type wholeMessages struct {
	io.ReadCloser
	left int  // bytes of the current message's data not read yet
	raw  bool // a buffer too small for a prefix was passed: plain reads from then on
}

func (w *wholeMessages) Read(p []byte) (int, error) {
	switch {
	case w.raw || len(p) == 0:
		return w.ReadCloser.Read(p)
	case w.left > 0:
		n, err := io.ReadFull(w.ReadCloser, p[:min(len(p), w.left)])
		w.left -= n
		return n, endOf(err)
	case len(p) < rpcframe.PrefixLen:
		w.raw = true
		return w.ReadCloser.Read(p)
	}
	n, err := io.ReadFull(w.ReadCloser, p[:rpcframe.PrefixLen])
	if err != nil {
		return n, endOf(err)
	}
	size := int(rpcframe.Prefix(p[:rpcframe.PrefixLen]).Size())
	m, err := io.ReadFull(w.ReadCloser, p[rpcframe.PrefixLen:rpcframe.PrefixLen+min(size, len(p)-rpcframe.PrefixLen)])
	w.left = size - m
	return n + m, endOf(err)
}

// endOf keeps the body's own end: a body that ends inside a message ends
// with io.EOF after what it had, as the plain reads would have.
func endOf(err error) error {
	if errors.Is(err, io.ErrUnexpectedEOF) {
		return io.EOF
	}
	return err
}

// CloseIdleConnections passes http.Client's CloseIdleConnections on to the
// transport, as if the wrapper were not there.
func (e envelopeBodies) CloseIdleConnections() {
	if c, ok := e.next.(interface{ CloseIdleConnections() }); ok {
		c.CloseIdleConnections()
	}
}
