// Package h2conn groups the bytes of alecryptd's plaintext HTTP/2 (h2c)
// connections into fewer system calls for Go's HTTP/2 server. It changes no
// byte that crosses a connection, only how reads and writes are batched:
//
//   - Reads go through a buffer. Go's HTTP/2 server reads an unencrypted
//     connection unbuffered: every frame cost a read for its 9-byte header
//     and one for its payload, and a stream message with the two
//     WINDOW_UPDATE frames before it took six reads where one fetched
//     them all. (With TLS, crypto/tls buffers whole records already.)
//   - A write made only of WINDOW_UPDATE frames is held until the next
//     write, and goes out with it in one system call, or after holdFor.
//     Go's HTTP/2 server sends one for every 4 KiB a handler reads, in a
//     write of its own, just before the handler answers: a stream message
//     cost a write (and a wake-up of the client) for the update, then the
//     answer's. Held, the update rides on the answer. Send windows are far
//     larger than what holdFor delays (1 MiB per connection and stream on
//     Go's server): a held update slows no sender.
//
// It knows the HTTP/2 frame header only to recognise WINDOW_UPDATE frames
// (RFC 9113, section 6.9) and the connection preface.
package h2conn

import (
	"bytes"
	"net"
	"sync"
	"time"
)

// Listen returns ln with its connections grouped as the package says.
// HTTP/1.1 connections on the same listener are left as they are: reads of
// 1 byte (net/http's watch of an idle connection) and of 4 KiB or more
// (net/http's own bufio.Reader) go straight to the connection, and writes
// are held only on a connection that opened with the HTTP/2 preface.
func Listen(ln net.Listener) net.Listener { return listener{ln} }

type listener struct{ net.Listener }

func (l listener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return &conn{Conn: c}, nil
}

// readBufSize holds an HTTP/2 frame of the default maximum size (16 KiB)
// and the small frames around it. Reads of 1 byte or of directMin bytes or
// more bypass the buffer (see Listen).
const (
	readBufSize = 16<<10 + 64
	directMin   = 4 << 10
)

// holdFor bounds how long a WINDOW_UPDATE waits for a write to ride on.
const holdFor = time.Millisecond

// maxHeld bounds the updates held (each is 13 bytes).
const maxHeld = 512

var readBufs = sync.Pool{New: func() any { return new([readBufSize]byte) }}

// conn is a connection grouped as the package says. One reader at a time,
// as net/http reads its connections.
type conn struct {
	net.Conn
	h2   bool // the connection speaks HTTP/2: its updates may be held
	seen bool // the first read has been looked at (for the preface)

	buf  *[readBufSize]byte // nil while empty: a buffer is held only while it has data
	r, w int                // buf[r:w] is read and not yet consumed

	wmu   sync.Mutex
	held  []byte // WINDOW_UPDATE frames written and not yet sent
	timer *time.Timer
	werr  error // why sending held frames failed, for the next Write
	iov   [2][]byte
	bufs  net.Buffers
}

var preface = []byte("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")

func (c *conn) Read(p []byte) (int, error) {
	if c.buf == nil {
		if len(p) <= 1 || len(p) >= directMin {
			n, err := c.Conn.Read(p)
			c.look(p[:n])
			return n, err
		}
		buf := readBufs.Get().(*[readBufSize]byte)
		// A read that returns data returns no error: a connection's
		// failure or end comes back again at the next read.
		n, err := c.Conn.Read(buf[:])
		if n == 0 {
			readBufs.Put(buf)
			return 0, err
		}
		c.look(buf[:n])
		c.buf, c.r, c.w = buf, 0, n
	}
	n := copy(p, c.buf[c.r:c.w])
	c.r += n
	if c.r == c.w {
		readBufs.Put(c.buf)
		c.buf = nil
	}
	return n, nil
}

// look notes whether the connection opens with the HTTP/2 preface (net/http
// reads it whole in its first read, through the buffer).
func (c *conn) look(first []byte) {
	if c.seen || len(first) == 0 {
		return
	}
	c.seen = true
	if bytes.HasPrefix(first, preface) {
		c.wmu.Lock()
		c.h2 = true
		c.wmu.Unlock()
	}
}

func (c *conn) Write(p []byte) (int, error) {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if c.werr != nil {
		return 0, c.werr
	}
	if c.h2 && onlyWindowUpdates(p) && len(c.held)+len(p) <= maxHeld {
		if len(c.held) == 0 {
			if c.timer == nil {
				c.timer = time.AfterFunc(holdFor, c.sendHeld)
			} else {
				c.timer.Reset(holdFor)
			}
		}
		c.held = append(c.held, p...)
		return len(p), nil
	}
	if len(c.held) == 0 {
		return c.Conn.Write(p)
	}
	c.timer.Stop()
	held := len(c.held)
	// One writev on a TCP connection. The slices live in c: a
	// net.Buffers of the call's own would be allocated per write.
	c.iov = [2][]byte{c.held, p}
	c.bufs = c.iov[:]
	n, err := c.bufs.WriteTo(c.Conn)
	c.iov, c.bufs = [2][]byte{}, nil // no reference to the caller's p kept
	c.held = c.held[:0]
	if err != nil {
		c.werr = err
	}
	return max(int(n)-held, 0), err
}

// sendHeld sends the held updates no write came to carry.
func (c *conn) sendHeld() {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if len(c.held) == 0 || c.werr != nil {
		return
	}
	if _, err := c.Conn.Write(c.held); err != nil {
		c.werr = err
	}
	c.held = c.held[:0]
}

func (c *conn) Close() error {
	c.wmu.Lock()
	if c.timer != nil {
		c.timer.Stop()
	}
	c.wmu.Unlock()
	return c.Conn.Close()
}

// CloseWrite passes net/http's half-close (its closeWriteAndWait before
// closing a connection with an error response) on to a TCP connection.
func (c *conn) CloseWrite() error {
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return nil
}

// frameHeaderLen, windowUpdateLen: RFC 9113, sections 4.1 and 6.9.
const (
	frameHeaderLen   = 9
	windowUpdateLen  = frameHeaderLen + 4
	typeWindowUpdate = 0x8
)

// onlyWindowUpdates says whether p is whole WINDOW_UPDATE frames and
// nothing else.
func onlyWindowUpdates(p []byte) bool {
	if len(p) == 0 || len(p)%windowUpdateLen != 0 {
		return false
	}
	for f := p; len(f) > 0; f = f[windowUpdateLen:] {
		if f[0] != 0 || f[1] != 0 || f[2] != 4 || f[3] != typeWindowUpdate {
			return false
		}
	}
	return true
}
