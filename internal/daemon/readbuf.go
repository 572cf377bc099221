package daemon

import (
	"net"
	"sync"
)

// BufferReads returns ln with each accepted connection's small reads
// served from a buffer. Go's HTTP/2 server reads an unencrypted connection
// unbuffered: every frame costs a read system call for its 9-byte header
// and another for its payload (and a WINDOW_UPDATE, 13 bytes, two), where
// one read would have fetched the frames already there. With TLS, crypto/tls
// buffers whole records already: only plaintext listeners need this.
//
// Reads of readBufMin bytes or more go straight to the connection, so
// HTTP/1.1 (net/http reads through a 4 KiB bufio.Reader of its own) gets no
// second buffer, and neither does the one-byte read with which net/http
// watches an idle HTTP/1.1 connection. A buffer is taken from a pool for a
// small read and returned once drained: it is held only while it has data,
// or while a small read waits for some (an idle HTTP/2 connection's next
// frame header).
func BufferReads(ln net.Listener) net.Listener { return bufListener{ln} }

type bufListener struct{ net.Listener }

func (l bufListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return &bufConn{Conn: c}, nil
}

// readBufSize holds an HTTP/2 frame of the default maximum size (16 KiB)
// and the small frames around it.
const (
	readBufSize = 16<<10 + 64
	readBufMin  = 4 << 10
)

var readBufs = sync.Pool{New: func() any { return new([readBufSize]byte) }}

// bufConn is a connection read through a buffer. One reader at a time, as
// net/http reads its connections; writes pass through.
type bufConn struct {
	net.Conn
	buf  *[readBufSize]byte // nil while empty
	r, w int                // buf[r:w] is read and not yet consumed
}

func (c *bufConn) Read(p []byte) (int, error) {
	if c.buf == nil {
		if len(p) <= 1 || len(p) >= readBufMin {
			return c.Conn.Read(p)
		}
		buf := readBufs.Get().(*[readBufSize]byte)
		// A read that returns data returns no error: a connection's
		// failure or end comes back again at the next read.
		n, err := c.Conn.Read(buf[:])
		if n == 0 {
			readBufs.Put(buf)
			return 0, err
		}
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

// CloseWrite passes net/http's half-close (its closeWriteAndWait before
// closing a connection with an error response) on to a TCP connection.
func (c *bufConn) CloseWrite() error {
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return nil
}
