package h2conn

import (
	"bytes"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"sync"
	"testing"
	"time"
)

// countingConn is a connection whose peer has sent src: each Read returns
// as much of it as fits, and counts.
type countingConn struct {
	net.Conn
	src   []byte
	reads int
}

func (c *countingConn) Read(p []byte) (int, error) {
	c.reads++
	if len(c.src) == 0 {
		return 0, io.EOF
	}
	n := copy(p, c.src)
	c.src = c.src[n:]
	return n, nil
}

// frames is what Go's HTTP/2 server reads of a stream message and the
// window updates after it: a DATA frame and two WINDOW_UPDATE frames.
func frames() []byte {
	var b []byte
	for _, f := range []struct {
		typ     byte
		payload int
	}{{0, 2145}, {8, 4}, {8, 4}} {
		n := f.payload
		b = append(b, byte(n>>16), byte(n>>8), byte(n), f.typ, 0, 0, 0, 0, 1)
		b = append(b, bytes.Repeat([]byte{f.typ + 'a'}, n)...)
	}
	return b
}

func TestReadsFrames(t *testing.T) {
	t.Parallel()
	src := frames()
	under := &countingConn{src: src}
	c := &conn{Conn: under}
	var got []byte
	hdr := make([]byte, 9)
	for range 3 {
		if _, err := io.ReadFull(c, hdr); err != nil {
			t.Fatal(err)
		}
		payload := make([]byte, int(hdr[0])<<16|int(hdr[1])<<8|int(hdr[2]))
		if _, err := io.ReadFull(c, payload); err != nil {
			t.Fatal(err)
		}
		got = append(append(got, hdr...), payload...)
	}
	if !bytes.Equal(got, src) {
		t.Fatal("frames read through the buffer differ from those sent")
	}
	// Unbuffered, the three frames took six reads.
	if under.reads != 1 {
		t.Errorf("reads of the connection = %d, want 1", under.reads)
	}
	if c.buf != nil {
		t.Error("a drained buffer is still held")
	}
	if n, err := c.Read(hdr); n != 0 || err != io.EOF {
		t.Errorf("Read at the end = %d, %v; want 0, EOF", n, err)
	}
}

func TestReadsPassesLargeAndOneByteReads(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		size int
	}{
		{"net/http's idle-connection read", 1},
		{"net/http's bufio.Reader", 4 << 10},
		{"a large payload", 64 << 10},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			under := &countingConn{src: make([]byte, 128<<10)}
			c := &conn{Conn: under}
			n, err := c.Read(make([]byte, tc.size))
			if err != nil || n != tc.size {
				t.Fatalf("Read = %d, %v; want %d, nil", n, err, tc.size)
			}
			if c.buf != nil {
				t.Error("the read took a buffer")
			}
			if got := len(under.src); got != 128<<10-tc.size {
				t.Errorf("%d bytes left in the connection, want %d", got, 128<<10-tc.size)
			}
		})
	}
}

// TestReadsStream reads random-sized pieces of a long stream through
// the buffer and gets the stream back.
func TestReadsStream(t *testing.T) {
	t.Parallel()
	rng := rand.New(rand.NewPCG(1, 2))
	src := make([]byte, 1<<20)
	for i := range src {
		src[i] = byte(rng.IntN(256))
	}
	c := &conn{Conn: &countingConn{src: src}}
	var got []byte
	for {
		p := make([]byte, 1+rng.IntN(20<<10))
		n, err := c.Read(p)
		got = append(got, p[:n]...)
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	if !bytes.Equal(got, src) {
		t.Fatal("the stream read through the buffer differs")
	}
}

// TestReadsServesHTTP checks a real server behind the listener, over
// HTTP/1.1 and h2c.
func TestReadsServesHTTP(t *testing.T) {
	t.Parallel()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var protocols http.Protocols
	protocols.SetHTTP1(true)
	protocols.SetUnencryptedHTTP2(true)
	srv := &http.Server{Protocols: &protocols, ReadHeaderTimeout: 10 * time.Second, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		_, _ = w.Write([]byte(r.Proto + " "))
		_, _ = w.Write(b)
	})}
	go func() { _ = srv.Serve(Listen(ln)) }()
	t.Cleanup(func() { _ = srv.Close() })
	body := bytes.Repeat([]byte("0123456789abcdef"), 5000)
	for _, tc := range []struct {
		proto string
		h2c   bool
	}{{"HTTP/1.1", false}, {"HTTP/2.0", true}} {
		var p http.Protocols
		p.SetHTTP1(!tc.h2c)
		p.SetUnencryptedHTTP2(tc.h2c)
		client := &http.Client{Transport: &http.Transport{Protocols: &p}}
		for range 3 {
			res, err := client.Post("http://"+ln.Addr().String(), "application/octet-stream", bytes.NewReader(body))
			if err != nil {
				t.Fatal(err)
			}
			got, err := io.ReadAll(res.Body)
			res.Body.Close()
			if err != nil {
				t.Fatal(err)
			}
			if want := append([]byte(tc.proto+" "), body...); !bytes.Equal(got, want) {
				t.Errorf("%s: response of %d bytes starting %q, want the body echoed", tc.proto, len(got), got[:min(len(got), 12)])
			}
		}
		client.CloseIdleConnections()
	}
}

// recordingConn keeps what is written to it, each write apart.
type recordingConn struct {
	net.Conn
	mu     sync.Mutex
	writes [][]byte
}

func (c *recordingConn) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.writes = append(c.writes, bytes.Clone(p))
	return len(p), nil
}

func (c *recordingConn) Close() error { return nil }

func (c *recordingConn) sent() []byte {
	c.mu.Lock()
	defer c.mu.Unlock()
	return bytes.Join(c.writes, nil)
}

func windowUpdate(stream byte, n byte) []byte {
	return []byte{0, 0, 4, typeWindowUpdate, 0, 0, 0, 0, stream, 0, 0, 0x10, n}
}

func dataFrame(payload string) []byte {
	return append([]byte{0, 0, byte(len(payload)), 0, 0, 0, 0, 0, 1}, payload...)
}

// TestWindowUpdatesRideOnTheNextWrite: a write of WINDOW_UPDATE frames alone
// is held and goes out with the next write, before its bytes.
func TestWindowUpdatesRideOnTheNextWrite(t *testing.T) {
	t.Parallel()
	under := &recordingConn{}
	c := &conn{Conn: under, h2: true}
	updates := append(windowUpdate(0, 1), windowUpdate(1, 1)...)
	for _, p := range [][]byte{updates, windowUpdate(0, 2)} {
		if n, err := c.Write(p); n != len(p) || err != nil {
			t.Fatalf("Write = %d, %v", n, err)
		}
	}
	if got := under.sent(); len(got) != 0 {
		t.Fatalf("window updates sent alone at once: %x", got)
	}
	data := dataFrame("hello")
	if n, err := c.Write(data); n != len(data) || err != nil {
		t.Fatalf("Write = %d, %v; want %d, nil", n, err, len(data))
	}
	want := bytes.Join([][]byte{updates, windowUpdate(0, 2), data}, nil)
	if got := under.sent(); !bytes.Equal(got, want) {
		t.Errorf("sent %x, want %x", got, want)
	}
}

// TestWindowUpdatesNotHeldForEver: held updates go out on their own when no
// write comes to carry them.
func TestWindowUpdatesNotHeldForEver(t *testing.T) {
	t.Parallel()
	under := &recordingConn{}
	c := &conn{Conn: under, h2: true}
	if _, err := c.Write(windowUpdate(1, 1)); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for !bytes.Equal(under.sent(), windowUpdate(1, 1)) {
		if time.Now().After(deadline) {
			t.Fatalf("held update not sent; sent %x", under.sent())
		}
		time.Sleep(time.Millisecond)
	}
}

// TestWritesNotHeld: other writes, and anything on a connection that did
// not open with the HTTP/2 preface (HTTP/1.1 on alecryptd's port), go out
// at once.
func TestWritesNotHeld(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name  string
		h2    bool
		write []byte
	}{
		{"a DATA frame", true, dataFrame("x")},
		{"an update and a DATA frame", true, append(windowUpdate(1, 1), dataFrame("x")...)},
		{"a PING", true, []byte{0, 0, 8, 6, 0, 0, 0, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8}},
		{"a truncated update", true, windowUpdate(1, 1)[:12]},
		{"HTTP/1.1 bytes that look like an update", false, windowUpdate(1, 1)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			under := &recordingConn{}
			c := &conn{Conn: under, h2: tc.h2}
			if _, err := c.Write(tc.write); err != nil {
				t.Fatal(err)
			}
			if got := under.sent(); !bytes.Equal(got, tc.write) {
				t.Errorf("sent %x, want %x at once", got, tc.write)
			}
		})
	}
}

// TestServerHoldsOnlyAfterPreface: an accepted connection holds updates
// once its first read showed the HTTP/2 preface.
func TestServerHoldsOnlyAfterPreface(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name  string
		first []byte
		held  bool
	}{
		{"HTTP/2", append(append([]byte{}, preface...), windowUpdate(0, 1)...), true},
		{"HTTP/1.1", []byte("POST / HTTP/1.1\r\nHost: x\r\n\r\n"), false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			under := &recordingConn{}
			c := &conn{Conn: &countingConn{Conn: under, src: tc.first}}
			// net/http's first read: the length of the preface's first line.
			if _, err := c.Read(make([]byte, 14)); err != nil {
				t.Fatal(err)
			}
			if _, err := c.Write(windowUpdate(1, 1)); err != nil {
				t.Fatal(err)
			}
			if held := len(under.sent()) == 0; held != tc.held {
				t.Errorf("update held = %v, want %v", held, tc.held)
			}
		})
	}
}
