//go:build unix

package wsconn

import (
	"io"
	"syscall"
)

const canWaitReadable = true

// waitRead waits until the socket is readable without holding a buffer,
// then reads what is there into a pooled one: the runtime's poller calls
// the function again each time the socket becomes readable, and a read
// that would block gives the buffer back before the wait.
func (c *Conn) waitRead() error {
	var rerr error
	err := c.raw.Read(func(fd uintptr) bool {
		b := getBuf(0)
		for {
			n, err := syscall.Read(int(fd), (*b)[:cap(*b)])
			switch {
			case err == syscall.EINTR:
				continue
			case err == syscall.EAGAIN:
				putBuf(b)
				return false
			case err != nil:
				rerr = err
			case n == 0:
				rerr = io.EOF
			default:
				c.rbuf, c.r, c.w = b, 0, n
				return true
			}
			putBuf(b)
			return true
		}
	})
	if err != nil {
		return err
	}
	return rerr
}
