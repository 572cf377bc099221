package api

import (
	"errors"
	"io"
	"net/http"
	"os"
	"sync"
	"time"

	"github.com/alecrypt/alecrypt/internal/rpcframe"
)

// bodyReader is a request body as the guard lets connect-go read it: it
// charges the budget per message (enveloped protocols) or up front, applies
// the read deadlines, caps the size, and turns its own refusals into Connect
// errors, which connect-go passes on to the caller unchanged.
type bodyReader struct {
	g         *guard
	lane      *lane
	key       callerKey
	src       io.ReadCloser
	rc        http.ResponseController // by value: no allocation of its own
	c         *call                   // nil outside ale.v1
	stream    bool
	enveloped bool
	prepaid   bool  // the whole body was charged up front
	fixed     int64 // budget charged for the call's life (StreamCharge, callCharge)
	held      int64 // budget charged for messages and not yet released
	read      int64 // body bytes read

	hdr    rpcframe.Prefix
	hdrOut int   // bytes of hdr handed to the reader (rpcframe.PrefixLen: all)
	left   int64 // payload bytes of the current message still to come

	mu       sync.Mutex
	idle     bool // waiting for a stream's next message
	draining bool

	// ahead is a stream's read-ahead buffer (nil for other calls); timed
	// is set while a read deadline runs for the current message.
	ahead *aheadBuf
	timed bool
}

// aheadBuf holds what a stream's body had ready beyond the message being
// read. Reading the HTTP/2 body in large pieces costs one hand-off to the
// connection's goroutine per piece rather than about three per message
// (header byte, rest of header, payload); and a stream with requests ready
// may hold its responses' flushes until it has to wait for the caller
// (recorder.Flush), so that several responses leave in one DATA frame and
// one write instead of one each.
//
// Both rely on the handler receiving and sending on one goroutine, as our
// Stream does: a response is flushed before any read that may wait for the
// caller, so no response ever waits for a later request.
type aheadBuf struct {
	buf       [aheadSize]byte
	r, w      int   // buf[r:w] is read and not yet consumed
	err       error // what the body returned after buf[:w], once it is consumed
	holdFlush bool  // a flush was held while buf had data
}

// aheadSize bounds what a stream reads before its messages are charged: a
// constant per open stream, like connect-go's own read buffer.
const aheadSize = 16 << 10

var aheadPool = sync.Pool{New: func() any { return new(aheadBuf) }}

func (b *bodyReader) endAhead() {
	b.c.rec.release()
	b.flushHeld()
	a := b.ahead
	b.ahead = nil
	*a = aheadBuf{}
	aheadPool.Put(a)
}

// buffered is how many bytes a stream has read ahead.
func (b *bodyReader) buffered() int {
	if b.ahead == nil {
		return 0
	}
	return b.ahead.w - b.ahead.r
}

// holdFlush reports whether a response's flush may wait, because the next
// request has begun to arrive and will be read without waiting; the flush is
// then done before the stream next reads from the connection.
func (b *bodyReader) holdFlush() bool {
	if b.buffered() == 0 {
		return false
	}
	b.ahead.holdFlush = true
	return true
}

func (b *bodyReader) flushHeld() {
	if b.ahead != nil && b.ahead.holdFlush {
		b.ahead.holdFlush = false
		b.c.rec.flush()
	}
}

// readSrc reads the body: through the read-ahead buffer for streams.
func (b *bodyReader) readSrc(p []byte) (int, error) {
	a := b.ahead
	if a == nil {
		return b.src.Read(p)
	}
	if a.r == a.w {
		if a.err != nil {
			return 0, a.err
		}
		b.flushHeld() // the read may wait for the caller
		n, err := b.src.Read(a.buf[:])
		a.r, a.w = 0, n
		if n == 0 {
			return 0, err
		}
		a.err = err
	}
	n := copy(p, a.buf[a.r:a.w])
	a.r += n
	return n, nil
}

// setTimed starts or stops the read deadline of a stream's current message.
func (b *bodyReader) setTimed(on bool) {
	if on == b.timed {
		return
	}
	b.timed = on
	if on {
		_ = b.rc.SetReadDeadline(time.Now().Add(b.g.readTimeout))
	} else {
		_ = b.rc.SetReadDeadline(time.Time{})
	}
}

func (b *bodyReader) charge(n int64) error {
	n *= MemoryPerRequestByte
	if err := b.lane.acquire(b.key, n); err != nil {
		return err
	}
	b.held += n
	return nil
}

// releaseAll returns what the messages read so far hold; end also returns
// the call's fixed charge and ends its share of the lane.
func (b *bodyReader) releaseAll(end bool) {
	n := b.held
	if end {
		n += b.fixed
		b.fixed = 0
	}
	b.lane.release(b.key, n, end)
	b.held = 0
}

func (b *bodyReader) Close() error { return b.src.Close() }

func (b *bodyReader) Read(p []byte) (int, error) {
	if b.enveloped {
		return b.readEnveloped(p)
	}
	// Connect unary: the body is the message. connect-go reads one byte over
	// the limit to detect an oversized message and then discards the rest,
	// which for an endless body would be for ever; stop there instead.
	allowed := b.lane.maxMessage + 1 - b.read
	if allowed <= 0 {
		return 0, b.fail(errTooLarge)
	}
	if int64(len(p)) > allowed {
		p = p[:allowed]
	}
	n, err := b.src.Read(p)
	b.read += int64(n)
	if err == io.EOF {
		// All here: clear the deadline so it cannot fire on the server's
		// background read of an HTTP/1.1 connection while the call runs.
		_ = b.rc.SetReadDeadline(time.Time{})
	}
	return n, b.wrap(err)
}

func (b *bodyReader) readEnveloped(p []byte) (int, error) {
	if b.hdrOut < rpcframe.PrefixLen { // the rest of a header read by nextMessage
		n := copy(p, b.hdr[b.hdrOut:])
		b.hdrOut += n
		return n, nil
	}
	if b.left > 0 {
		if int64(len(p)) > b.left {
			p = p[:b.left]
		}
		n, err := b.readSrc(p)
		b.read += int64(n)
		b.left -= int64(n)
		if b.left == 0 && b.stream {
			b.setTimed(false) // the message is here: idle waits are allowed again
		}
		return n, b.wrap(err)
	}
	if err := b.nextMessage(); err != nil {
		return 0, err
	}
	n := copy(p, b.hdr[:])
	b.hdrOut = n
	return n, nil
}

// nextMessage reads the next message's header and charges its size.
func (b *bodyReader) nextMessage() error {
	if b.stream {
		// connect-go reads on only when the handler asks for the next
		// message, so the previous one has been answered: its budget is free.
		b.releaseAll(false)
	}
	b.mu.Lock()
	if b.draining {
		b.mu.Unlock()
		return b.fail(errShuttingDown)
	}
	b.idle = b.stream
	b.mu.Unlock()
	_, err := io.ReadFull(srcReader{b}, b.hdr[:1])
	b.mu.Lock()
	b.idle = false
	draining := b.draining
	b.mu.Unlock()
	switch {
	case err == io.EOF:
		return io.EOF // the caller closed its side between messages
	case err != nil && draining:
		return b.fail(errShuttingDown)
	case err != nil:
		return b.wrap(err)
	}
	if b.stream && b.buffered() < rpcframe.PrefixLen-1 {
		b.setTimed(true) // a message, once started, must arrive in time
	}
	if _, err := io.ReadFull(srcReader{b}, b.hdr[1:]); err != nil {
		if err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		return b.wrap(err)
	}
	b.read += rpcframe.PrefixLen
	size := int64(b.hdr.Size())
	if size > b.lane.maxMessage {
		return b.fail(errTooLarge)
	}
	if !b.prepaid {
		if err := b.charge(size); err != nil {
			return b.fail(err)
		}
	}
	b.left = size
	if b.stream {
		// Timed while the message is not all here; a message already read
		// ahead needs no deadline (and costs no timer).
		b.setTimed(int64(b.buffered()) < size)
	}
	return nil
}

// srcReader reads a bodyReader's source (through its read-ahead).
type srcReader struct{ b *bodyReader }

func (r srcReader) Read(p []byte) (int, error) { return r.b.readSrc(p) }

// drain makes a stream end at its next idle point: at once if it is waiting
// for a message, after the current one otherwise.
func (b *bodyReader) drain() {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.draining = true
	if b.idle {
		_ = b.rc.SetReadDeadline(time.Now())
	}
}

// wrap turns a read deadline into the guard's refusal; other errors pass.
func (b *bodyReader) wrap(err error) error {
	if err == nil || err == io.EOF {
		return err
	}
	if errors.Is(err, os.ErrDeadlineExceeded) {
		b.mu.Lock()
		draining := b.draining
		b.mu.Unlock()
		if draining {
			return b.fail(errShuttingDown)
		}
		return b.fail(errReadTimeout)
	}
	return err
}

func (b *bodyReader) fail(err error) error {
	if b.c != nil && b.c.cause == nil {
		b.c.cause = err
	}
	return toConnectError(err)
}
