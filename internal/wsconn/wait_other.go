//go:build !unix

package wsconn

// Elsewhere a reader waits in a read, holding its buffer.
const canWaitReadable = false

func (c *Conn) waitRead() error { panic("wsconn: no readable wait on this platform") }
