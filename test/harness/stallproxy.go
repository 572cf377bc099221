package harness

import (
	"context"
	"fmt"
	"net"
	"sync"
	"testing"
)

// StallProxy is a TCP proxy to a server that a test can stall: once Hold is
// called, what clients send is kept back, per connection and in order,
// until the test lets a connection's bytes through. It makes a server that
// does not answer for a while (a Redis under SIGSTOP, a network that
// stalls) deterministic: the test decides which connection's commands reach
// the server, and in which order, instead of racing timers.
type StallProxy struct {
	Addr   string
	target string
	ln     net.Listener

	mu      sync.Mutex
	holding bool
	conns   []*stallConn
	held    chan int // a connection's index, when it starts keeping bytes back (again after each flush)
	replied chan int // a connection's index, each time the server answers on it (best effort: dropped when full)
}

type stallConn struct {
	up       net.Conn
	client   net.Conn
	buf      []byte
	holding  bool
	announce bool // held announced since the last flush
}

// StartStallProxy listens on a free loopback port and forwards to target;
// it is closed, with every connection, at cleanup.
func StartStallProxy(t testing.TB, target string) *StallProxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &StallProxy{Addr: ln.Addr().String(), target: target, ln: ln, held: make(chan int, 1024), replied: make(chan int, 1024)}
	go p.accept()
	t.Cleanup(func() {
		ln.Close()
		p.mu.Lock()
		defer p.mu.Unlock()
		for _, c := range p.conns {
			c.up.Close()
			c.client.Close()
		}
	})
	return p
}

func (p *StallProxy) accept() {
	for {
		client, err := p.ln.Accept()
		if err != nil {
			return
		}
		up, err := net.Dial("tcp", p.target)
		if err != nil {
			client.Close()
			continue
		}
		p.mu.Lock()
		c := &stallConn{up: up, client: client}
		p.conns = append(p.conns, c)
		i := len(p.conns) - 1
		p.mu.Unlock()
		go p.fromClient(i, c)
		go func() {
			buf := make([]byte, 32<<10)
			for {
				n, err := up.Read(buf)
				if n > 0 {
					_, _ = client.Write(buf[:n])
					select {
					case p.replied <- i:
					default:
					}
				}
				if err != nil {
					return
				}
			}
		}()
	}
}

// fromClient forwards or keeps back what the client sends. A client that
// hangs up leaves the server's side open: bytes kept back still reach the
// server when let through, as they would from a socket buffer.
func (p *StallProxy) fromClient(i int, c *stallConn) {
	buf := make([]byte, 32<<10)
	for {
		n, err := c.client.Read(buf)
		if n > 0 {
			p.mu.Lock()
			if p.holding || c.holding {
				c.holding = true
				c.buf = append(c.buf, buf[:n]...)
				if !c.announce {
					c.announce = true
					p.held <- i
				}
			} else {
				_, _ = c.up.Write(buf[:n])
			}
			p.mu.Unlock()
		}
		if err != nil {
			return
		}
	}
}

// Hold keeps back, from now on, what any client sends.
func (p *StallProxy) Hold() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.holding = true
}

// WaitReplied waits until the server sent something back on connection i
// (after what was let through on it ran), or ctx ends.
func (p *StallProxy) WaitReplied(ctx context.Context, i int) error {
	for {
		select {
		case got := <-p.replied:
			if got == i {
				return nil
			}
		case <-ctx.Done():
			return fmt.Errorf("no answer on proxied connection %d: %w", i, ctx.Err())
		}
	}
}

// Held delivers the index of each connection that starts keeping bytes
// back (again after each Flush of it).
func (p *StallProxy) Held() <-chan int { return p.held }

// WaitHeld returns the index of the next connection that starts keeping
// bytes back, or an error when ctx ends first.
func (p *StallProxy) WaitHeld(ctx context.Context) (int, error) {
	select {
	case i := <-p.held:
		return i, nil
	case <-ctx.Done():
		return 0, fmt.Errorf("nothing held: %w", ctx.Err())
	}
}

// Flush lets connection i's kept bytes through, in order, and forwards what
// it sends from now on.
func (p *StallProxy) Flush(i int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.flush(p.conns[i])
}

func (p *StallProxy) flush(c *stallConn) {
	_, _ = c.up.Write(c.buf)
	c.buf, c.holding, c.announce = nil, false, false
}

// ResumeExcept stops holding: every connection's kept bytes go through, in
// order, except those of the connections named, which stay held until their
// Flush.
func (p *StallProxy) ResumeExcept(keep ...int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.holding = false
next:
	for i, c := range p.conns {
		for _, k := range keep {
			if i == k {
				continue next
			}
		}
		if c.holding {
			p.flush(c)
		}
	}
}

// Deliver lets every held connection through, in one of two orders: late
// first (waiting until the server answered on it), then the rest; or the
// rest first, until othersDone returns (it waits for what they carried to
// take effect, such as the reply to the call that sent it), then late.
func (p *StallProxy) Deliver(ctx context.Context, late int, lateFirst bool, othersDone func() error) error {
	if lateFirst {
		p.Flush(late)
		if err := p.WaitReplied(ctx, late); err != nil {
			return err
		}
		p.ResumeExcept()
		return othersDone()
	}
	p.ResumeExcept(late)
	if err := othersDone(); err != nil {
		return err
	}
	p.Flush(late)
	return p.WaitReplied(ctx, late)
}
