package wsconn

import (
	"bufio"
	"bytes"
	"encoding/hex"
	"errors"
	"io"
	"net"
	"os"
	"strings"
	"testing"
	"time"
)

// streamConn is a net.Conn that reads a fixed byte stream and records
// what is written: the reader's side of a connection, without a peer.
type streamConn struct {
	r io.Reader
	w bytes.Buffer
}

func (s *streamConn) Read(p []byte) (int, error)       { return s.r.Read(p) }
func (s *streamConn) Write(p []byte) (int, error)      { return s.w.Write(p) }
func (s *streamConn) Close() error                     { return nil }
func (s *streamConn) LocalAddr() net.Addr              { return &net.TCPAddr{} }
func (s *streamConn) RemoteAddr() net.Addr             { return &net.TCPAddr{} }
func (s *streamConn) SetDeadline(time.Time) error      { return nil }
func (s *streamConn) SetReadDeadline(time.Time) error  { return nil }
func (s *streamConn) SetWriteDeadline(time.Time) error { return nil }

// readAll reads messages until the stream ends, as "type:payload".
func readAll(c *Conn) ([]string, error) {
	var got []string
	for {
		typ, p, err := c.Read(nil)
		if err != nil {
			return got, err
		}
		name := map[MessageType]string{Text: "text", Binary: "binary"}[typ]
		got = append(got, name+":"+string(p))
	}
}

// TestRFCExamples: section 5.7's frames read as the messages they carry,
// whether they arrive whole or a byte at a time.
func TestRFCExamples(t *testing.T) {
	t.Parallel()
	f, err := os.Open("testdata/rfc6455.txt")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || line[0] == '#' {
			continue
		}
		fields := strings.Fields(line)
		name, side, wire, want := fields[0], fields[1], fields[2], fields[3]
		b, err := hex.DecodeString(wire)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		for _, chunked := range []bool{false, true} {
			var r io.Reader = bytes.NewReader(b)
			if chunked {
				r = iotestOneByte{r}
			}
			// The reader is the other side from the sender.
			c := newConn(&streamConn{r: r}, side == "server", nil)
			got, err := readAll(c)
			if !errors.Is(err, io.EOF) && !errors.Is(err, io.ErrUnexpectedEOF) {
				t.Errorf("%s (chunked %v): ended with %v, want the stream's end", name, chunked, err)
			}
			if strings.Join(got, ",") != want {
				t.Errorf("%s (chunked %v): read %q, want %q", name, chunked, got, want)
			}
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
}

type iotestOneByte struct{ r io.Reader }

func (o iotestOneByte) Read(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	return o.r.Read(p[:1])
}

// TestPingAnswered: a ping is answered with a pong carrying its payload,
// and the activity hook sees pings and pongs.
func TestPingAnswered(t *testing.T) {
	t.Parallel()
	in, _ := hex.DecodeString("890548656c6c6f8a00810548656c6c6f") // ping "Hello", pong, text "Hello"
	s := &streamConn{r: bytes.NewReader(in)}
	c := newConn(s, true, nil)
	seen := 0
	c.OnControl(func() { seen++ })
	if _, p, err := c.Read(nil); err != nil || string(p) != "Hello" {
		t.Fatalf("Read = %q, %v", p, err)
	}
	if seen != 2 {
		t.Errorf("activity hook called %d times, want 2 (a ping and a pong)", seen)
	}
	// The client's pong is masked: unmask it to compare.
	h, n, err := parseHeader(s.w.Bytes())
	if err != nil || n == 0 || h.op != opPong || !h.masked || h.length != 5 {
		t.Fatalf("answer header = %+v (n %d, err %v), want a masked pong of 5 bytes", h, n, err)
	}
	p := append([]byte(nil), s.w.Bytes()[n:]...)
	maskBytes(h.mask, 0, p)
	if string(p) != "Hello" {
		t.Errorf("pong payload = %q, want Hello", p)
	}
}

// TestProtocolErrors: each broken rule ends the reader with an error and
// closes the connection with the status the RFC names; nothing of the
// broken frame is returned as a message.
func TestProtocolErrors(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name       string
		fromClient bool
		wire       string
		limit      int64
		want       StatusCode
	}{
		{"client frame not masked", true, "810548656c6c6f", 0, StatusProtocolError},
		{"server frame masked", false, "818537fa213d7f9f4d5158", 0, StatusProtocolError},
		{"reserved bit", false, "c10548656c6c6f", 0, StatusProtocolError},
		{"unknown data opcode", false, "830548656c6c6f", 0, StatusProtocolError},
		{"unknown control opcode", false, "8b00", 0, StatusProtocolError},
		{"fragmented ping", false, "0900", 0, StatusProtocolError},
		{"control frame over 125 bytes", false, "897e007e" + strings.Repeat("00", 126), 0, StatusProtocolError},
		{"continuation first", false, "800548656c6c6f", 0, StatusProtocolError},
		{"new message inside one", false, "0103486565810548656c6c6f", 0, StatusProtocolError},
		{"close of one byte", false, "880103", 0, StatusProtocolError},
		{"close status 1005 sent", false, "880203ed", 0, StatusProtocolError},
		{"close status 999", false, "880203e7", 0, StatusProtocolError},
		{"close reason not UTF-8", false, "880403e8fffe", 0, StatusInvalidFramePayloadData},
		{"length with top bit", false, "827f8000000000000000", 0, StatusProtocolError},
		{"length over the default limit", false, "827f0000000100000000", 0, StatusMessageTooBig},
		{"message over the limit", false, "820a" + strings.Repeat("00", 10), 9, StatusMessageTooBig},
		{"fragments over the limit", false, "0205" + strings.Repeat("00", 5) + "8005" + strings.Repeat("00", 5), 9, StatusMessageTooBig},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b, err := hex.DecodeString(tc.wire)
			if err != nil {
				t.Fatal(err)
			}
			s := &streamConn{r: bytes.NewReader(b)}
			c := newConn(s, !tc.fromClient, nil)
			c.SetReadLimit(tc.limit) // 0 keeps the default
			got, err := readAll(c)
			if len(got) != 0 || err == nil || CloseStatus(err) != 0 {
				t.Fatalf("read %q, %v; want no message and a protocol error", got, err)
			}
			h, n, perr := parseHeader(s.w.Bytes())
			if perr != nil || n == 0 || h.op != opClose {
				t.Fatalf("wrote %x, want a close frame", s.w.Bytes())
			}
			p := append([]byte(nil), s.w.Bytes()[n:]...)
			if h.masked {
				maskBytes(h.mask, 0, p)
			}
			ce, perr := parseClose(p)
			if perr != nil || ce.Code != tc.want {
				t.Errorf("close = %+v (%v), want status %d", ce, perr, tc.want)
			}
			if _, _, again := c.Read(nil); again != err {
				t.Errorf("Read after the error = %v, want the same error", again)
			}
		})
	}
}

// TestCloseAnswered: the peer's close is answered with its status and
// returned as a CloseError; a close without a status is answered empty.
func TestCloseAnswered(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		wire string // from the server
		want CloseError
	}{
		{"88090fa1627965206e6f77", CloseError{Code: 4001, Reason: "bye now"}},
		{"8800", CloseError{Code: StatusNoStatusRcvd}},
	} {
		b, _ := hex.DecodeString(tc.wire)
		s := &streamConn{r: bytes.NewReader(b)}
		c := newConn(s, true, nil)
		_, _, err := c.Read(nil)
		var ce CloseError
		if !errors.As(err, &ce) || ce != tc.want {
			t.Errorf("%s: Read = %v, want %+v", tc.wire, err, tc.want)
			continue
		}
		h, n, _ := parseHeader(s.w.Bytes())
		p := append([]byte(nil), s.w.Bytes()[n:]...)
		maskBytes(h.mask, 0, p)
		back, err := parseClose(p)
		if h.op != opClose || err != nil || back.Code != tc.want.Code {
			t.Errorf("%s: answered %x (status %d), want status %d", tc.wire, s.w.Bytes(), back.Code, tc.want.Code)
		}
	}
}

// TestHeaderRoundTrip: every length encoding reads back as written.
func TestHeaderRoundTrip(t *testing.T) {
	t.Parallel()
	for _, n := range []int64{0, 1, 125, 126, 127, 65535, 65536, 1 << 40} {
		for _, masked := range []bool{false, true} {
			h := header{fin: true, op: opBinary, length: n}
			if masked {
				h.masked, h.mask = true, [4]byte{1, 2, 3, 4}
			}
			b := appendHeader(nil, h)
			got, used, err := parseHeader(b)
			if err != nil || used != len(b) || got != h {
				t.Errorf("length %d masked %v: read %+v (%d of %d bytes, %v)", n, masked, got, used, len(b), err)
			}
			if _, short, _ := parseHeader(b[:len(b)-1]); short != 0 {
				t.Errorf("length %d masked %v: a header missing its last byte parsed", n, masked)
			}
		}
	}
}

// TestMaskBytes: masking by words equals masking byte by byte from any
// starting position.
func TestMaskBytes(t *testing.T) {
	t.Parallel()
	key := [4]byte{0x37, 0xfa, 0x21, 0x3d}
	for n := range 40 {
		for pos := range 4 {
			b := make([]byte, n)
			for i := range b {
				b[i] = byte(i * 7)
			}
			want := append([]byte(nil), b...)
			for i := range want {
				want[i] ^= key[(pos+i)&3]
			}
			end := maskBytes(key, pos, b)
			if !bytes.Equal(b, want) || end != (pos+n)&3 {
				t.Fatalf("n %d pos %d: %x (end %d), want %x (end %d)", n, pos, b, end, want, (pos+n)&3)
			}
		}
	}
}

// FuzzRead: whatever arrives, Read never panics, returns no message over
// its limit, and once it fails keeps failing.
func FuzzRead(f *testing.F) {
	f.Add([]byte{0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58}, true)
	f.Add([]byte{0x01, 0x03, 0x48, 0x65, 0x6c, 0x80, 0x02, 0x6c, 0x6f}, false)
	f.Add([]byte{0x88, 0x02, 0x03, 0xe8}, false)
	f.Fuzz(func(t *testing.T, data []byte, fromClient bool) {
		c := newConn(&streamConn{r: bytes.NewReader(data)}, !fromClient, nil)
		c.SetReadLimit(64)
		for {
			_, p, err := c.Read(nil)
			if err != nil {
				if _, _, again := c.Read(nil); again != err {
					t.Fatalf("Read after %v = %v", err, again)
				}
				return
			}
			if len(p) > 64 {
				t.Fatalf("message of %d bytes over the limit of 64", len(p))
			}
		}
	})
}
