// Package wsconn is the WebSocket protocol (RFC 6455) as a bridge between
// two peers needs it: the server side of a client's connection (Accept),
// the client side of a connection to a backend (Dial), and whole messages
// read and written on either, without extensions or subprotocols.
//
// It exists for what an idle connection costs. A gateway holds thousands
// of connections that carry a message now and then; general-purpose
// libraries keep a read and a write buffer per connection for its whole
// life. A Conn holds a buffer only while a message is being read or
// written: a reader waiting for the next message waits for the socket to
// become readable (syscall.RawConn) and takes a pooled buffer once there is
// something to read. Connections that are not plain sockets (TLS) wait in
// a read and hold the buffer meanwhile.
package wsconn

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"slices"
	"sync"
	"syscall"
	"time"
)

// DefaultReadLimit is a new Conn's limit on a message's size.
const DefaultReadLimit = 32 << 10

// CloseTimeout is how long a connection whose close frame was sent waits
// for its peer's before its reads end anyway.
const CloseTimeout = 5 * time.Second

// ErrClosed is what writing to a connection after its close frame returns.
var ErrClosed = errors.New("websocket: close frame already sent")

// Conn is one side of a WebSocket connection. One goroutine at a time may
// Read; writes may come from any goroutine (control frames the reader
// answers included).
type Conn struct {
	nc     net.Conn
	raw    syscall.RawConn // nil: the connection is not a plain socket
	client bool            // this side dialed: its frames are masked, its peer's are not
	limit  int64
	// onControl is called for each ping and pong read: they are what a
	// peer that only keeps the connection alive sends.
	onControl func()

	// Read state, the reader's alone. The unread bytes are (*rbuf)[r:w];
	// rbuf is nil whenever there are none.
	rbuf    *[]byte
	r, w    int
	readErr error
	// skip is the payload of a frame over the read limit still to come:
	// AwaitClose discards it to reach the peer's close frame.
	skip int64

	wmu       sync.Mutex
	closeSent bool
}

func newConn(nc net.Conn, client bool, leftover []byte) *Conn {
	c := &Conn{nc: nc, client: client, limit: DefaultReadLimit}
	if sc, ok := nc.(syscall.Conn); ok && canWaitReadable {
		if raw, err := sc.SyscallConn(); err == nil {
			c.raw = raw
		}
	}
	if len(leftover) > 0 {
		b := getBuf(len(leftover))
		c.rbuf, c.w = b, copy((*b)[:cap(*b)], leftover)
	}
	return c
}

// SetReadLimit bounds the size of a message (its fragments together); a
// larger one ends the connection with StatusMessageTooBig. There is always
// a limit: n <= 0 keeps the one set before.
func (c *Conn) SetReadLimit(n int64) {
	if n > 0 {
		c.limit = n
	}
}

// OnControl sets the function called for each ping and pong read. Set it
// before the first Read.
func (c *Conn) OnControl(f func()) { c.onControl = f }

// Read reads the next data message, appending its payload to dst. Pings
// are answered and pongs taken on the way. A close frame from the peer is
// answered and returned as a CloseError; a frame that breaks the protocol
// or the read limit closes the connection with the matching status. After
// an error every Read returns it.
func (c *Conn) Read(dst []byte) (MessageType, []byte, error) {
	if c.readErr != nil {
		return 0, dst, c.readErr
	}
	typ, dst, err := c.read(dst)
	if err != nil {
		c.readErr = err
	}
	if c.r == c.w {
		c.release()
	}
	return typ, dst, err
}

func (c *Conn) read(dst []byte) (MessageType, []byte, error) {
	var typ MessageType // of the message being read; 0 before its first frame
	start := len(dst)
	for {
		h, err := c.nextHeader()
		if err != nil {
			return 0, dst, err
		}
		if err := h.check(!c.client); err != nil {
			return 0, dst, c.fail(StatusProtocolError, err)
		}
		if h.op.control() {
			if err := c.control(h); err != nil {
				return 0, dst, err
			}
			continue
		}
		switch {
		case h.op == opContinuation && typ == 0:
			return 0, dst, c.fail(StatusProtocolError, errors.New("continuation frame outside a message"))
		case h.op != opContinuation && typ != 0:
			return 0, dst, c.fail(StatusProtocolError, errors.New("new message inside a fragmented one"))
		case typ == 0:
			typ = MessageType(h.op)
		}
		if int64(len(dst)-start)+h.length > c.limit {
			c.skip = h.length
			return 0, dst, c.fail(StatusMessageTooBig, fmt.Errorf("message over the read limit of %d bytes", c.limit))
		}
		if dst, err = c.payload(dst, h); err != nil {
			return 0, dst, err
		}
		if h.fin {
			return typ, dst, nil
		}
	}
}

// nextHeader reads a frame header, waiting for one as long as it takes.
func (c *Conn) nextHeader() (header, error) {
	for {
		var b []byte
		if c.rbuf != nil {
			b = (*c.rbuf)[c.r:c.w]
		}
		h, n, err := parseHeader(b)
		if err != nil {
			return h, c.fail(StatusProtocolError, err)
		}
		if n > 0 {
			c.r += n
			return h, nil
		}
		if err := c.fill(); err != nil {
			return h, err
		}
	}
}

// fill reads more bytes. With none pending the connection may be idle for
// hours, so the wait takes no buffer where it can (waitRead).
func (c *Conn) fill() error {
	if c.r == c.w {
		c.release()
		if c.raw != nil {
			return c.waitRead()
		}
		b := getBuf(0)
		n, err := c.nc.Read((*b)[:cap(*b)])
		if n == 0 {
			putBuf(b)
			return readError(err)
		}
		c.rbuf, c.r, c.w = b, 0, n
		return nil
	}
	// Part of a header is pending: it is at most 13 bytes, and a buffer
	// holds thousands.
	buf := (*c.rbuf)[:cap(*c.rbuf)]
	c.w = copy(buf, buf[c.r:c.w])
	c.r = 0
	n, err := c.nc.Read(buf[c.w:])
	c.w += n
	if n == 0 {
		return readError(err)
	}
	return nil
}

func readError(err error) error {
	if err == nil {
		return io.ErrNoProgress
	}
	return err
}

// take moves up to len(p) pending bytes into p and returns how many.
func (c *Conn) take(p []byte) int {
	if c.rbuf == nil {
		return 0
	}
	n := copy(p, (*c.rbuf)[c.r:c.w])
	c.r += n
	return n
}

// readFull fills p from the pending bytes, then the connection.
func (c *Conn) readFull(p []byte) error {
	n := c.take(p)
	if n == len(p) {
		return nil
	}
	if _, err := io.ReadFull(c.nc, p[n:]); err != nil {
		if err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		return err
	}
	return nil
}

// payload appends a data frame's payload to dst, unmasked.
func (c *Conn) payload(dst []byte, h header) ([]byte, error) {
	n := len(dst)
	dst = slices.Grow(dst, int(h.length))[:n+int(h.length)]
	if err := c.readFull(dst[n:]); err != nil {
		return dst[:n], err
	}
	if h.masked {
		maskBytes(h.mask, 0, dst[n:])
	}
	return dst, nil
}

// control handles a ping, pong or close frame.
func (c *Conn) control(h header) error {
	var arr [maxControlPayload]byte
	p := arr[:h.length]
	if err := c.readFull(p); err != nil {
		return err
	}
	if h.masked {
		maskBytes(h.mask, 0, p)
	}
	switch h.op {
	case opPing:
		if c.onControl != nil {
			c.onControl()
		}
		if err := c.writeFrame(opPong, p); err != nil && !errors.Is(err, ErrClosed) {
			return err
		}
	case opPong:
		if c.onControl != nil {
			c.onControl()
		}
	case opClose:
		ce, err := parseClose(p)
		if err != nil {
			status := StatusProtocolError
			if errors.Is(err, errInvalidUTF8) {
				status = StatusInvalidFramePayloadData
			}
			return c.fail(status, err)
		}
		// The peer's close is answered with its status (section 5.5.1),
		// unless this side's own close went first.
		_ = c.writeClose(ce.Code, "")
		return ce
	}
	return nil
}

// AwaitClose reads until the peer's close frame answers the one this side
// sent, discarding messages, and returns at once when no close was sent or
// the peer's has been read already (or the connection broke). Closing a
// socket with unread data resets the connection, which can cut off the
// very close frame that tells the peer why (a message over the limit is
// still arriving when its header is refused). Close's deadline bounds the
// wait. It takes the reader's place: call it once no Read runs.
func (c *Conn) AwaitClose() {
	c.wmu.Lock()
	sent := c.closeSent
	c.wmu.Unlock()
	if !sent {
		return
	}
	if c.readErr != nil && c.skip == 0 {
		return
	}
	defer c.release()
	if c.skip > 0 {
		if err := c.discard(c.skip); err != nil {
			return
		}
		c.skip = 0
	}
	for {
		h, err := c.nextHeader()
		if err != nil || h.check(!c.client) != nil {
			return
		}
		if h.op.control() {
			if c.control(h) != nil {
				return
			}
			continue
		}
		if c.discard(h.length) != nil {
			return
		}
	}
}

// discard reads and drops n bytes.
func (c *Conn) discard(n int64) error {
	var chunk [512]byte
	for n > 0 {
		p := chunk[:min(n, int64(len(chunk)))]
		if err := c.readFull(p); err != nil {
			return err
		}
		n -= int64(len(p))
	}
	return nil
}

// fail closes the connection for a broken rule and returns the error the
// reader ends with.
func (c *Conn) fail(code StatusCode, err error) error {
	_ = c.Close(code, err.Error())
	return fmt.Errorf("websocket: %w", err)
}

// Write sends p as one message of type typ.
func (c *Conn) Write(typ MessageType, p []byte) error {
	return c.writeFrame(opcode(typ), p)
}

// Close sends a close frame with code and reason (cut to what a control
// frame holds), unless one was sent already, and gives the peer
// CloseTimeout to answer: the reader ends with the answer, or with a
// timeout. The connection itself is closed by CloseNow.
func (c *Conn) Close(code StatusCode, reason string) error {
	err := c.writeClose(code, reason)
	if errors.Is(err, ErrClosed) {
		return nil
	}
	_ = c.nc.SetReadDeadline(time.Now().Add(CloseTimeout))
	return err
}

func (c *Conn) writeClose(code StatusCode, reason string) error {
	var arr [maxControlPayload]byte
	return c.writeFrame(opClose, appendClose(arr[:0], code, reason))
}

// CloseNow closes the connection without a close frame; a Read in
// progress returns.
func (c *Conn) CloseNow() error { return c.nc.Close() }

// writeFrame sends one whole frame in one write.
func (c *Conn) writeFrame(op opcode, p []byte) error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if c.closeSent {
		return ErrClosed
	}
	if op == opClose {
		c.closeSent = true
	}
	h := header{fin: true, op: op, length: int64(len(p)), masked: c.client}
	if c.client {
		// Masking keys need only be unpredictable to the page's script
		// (section 10.3); math/rand/v2's generator is ChaCha8.
		binary.LittleEndian.PutUint32(h.mask[:], rand.Uint32())
	}
	b := getBuf(maxHeaderBytes + len(p))
	buf := appendHeader((*b)[:0], h)
	body := len(buf)
	buf = append(buf, p...)
	if c.client {
		maskBytes(h.mask, 0, buf[body:])
	}
	_, err := c.nc.Write(buf)
	*b = buf
	putBuf(b)
	return err
}

// release gives the read buffer back once nothing in it is unread.
func (c *Conn) release() {
	if c.rbuf != nil {
		putBuf(c.rbuf)
		c.rbuf, c.r, c.w = nil, 0, 0
	}
}

// bufs holds read and write buffers between messages. A buffer holds a
// typical message with its header; larger writes grow it, and buffers
// beyond maxPooled go back to the garbage collector.
var bufs = sync.Pool{New: func() any { b := make([]byte, 0, bufSize); return &b }}

const (
	bufSize   = 4 << 10
	maxPooled = 64 << 10
)

func getBuf(n int) *[]byte {
	b := bufs.Get().(*[]byte)
	if cap(*b) < n {
		*b = make([]byte, 0, n)
	}
	return b
}

func putBuf(b *[]byte) {
	if cap(*b) <= maxPooled {
		*b = (*b)[:0]
		bufs.Put(b)
	}
}
