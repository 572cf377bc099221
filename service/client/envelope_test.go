package client

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"net/http"
	"slices"
	"testing"
)

// readSizes is a RoundTripper that reads the request body the way the
// HTTP/2 transport does (into one buffer of bufLen, each Read becoming a
// DATA frame) and records what each Read returned.
type readSizes struct {
	bufLen int
	sizes  []int
	body   []byte
	err    error
}

func (rs *readSizes) RoundTrip(r *http.Request) (*http.Response, error) {
	buf := make([]byte, rs.bufLen)
	for {
		n, err := r.Body.Read(buf)
		if n > 0 {
			rs.sizes = append(rs.sizes, n)
			rs.body = append(rs.body, buf[:n]...)
		}
		if err != nil {
			if !errors.Is(err, io.EOF) {
				rs.err = err
			}
			return &http.Response{StatusCode: http.StatusOK, Body: http.NoBody}, nil
		}
	}
}

func envelope(n int) []byte {
	b := make([]byte, 5+n)
	binary.BigEndian.PutUint32(b[1:5], uint32(n))
	for i := range n {
		b[5+i] = byte(i)
	}
	return b
}

// TestEnvelopeBodies: a stream's messages, written to the body pipe as
// connect-go writes them (prefix, then data), reach the transport one
// whole message a Read when they fit its buffer, and the body's bytes are
// unchanged; a body that is not enveloped is read as it comes.
func TestEnvelopeBodies(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name        string
		contentType string
		bufLen      int
		writes      [][]byte // the writer's writes, in order
		want        []int    // the sizes of the transport's Reads
	}{
		{"connect stream", "application/connect+proto", 16 << 10,
			[][]byte{envelope(100)[:5], envelope(100)[5:], envelope(0), envelope(7)[:5], envelope(7)[5:]}, []int{105, 5, 12}},
		{"grpc", "application/grpc+proto", 16 << 10,
			[][]byte{envelope(1000)[:5], envelope(1000)[5:]}, []int{1005}},
		{"message over the buffer", "application/connect+proto", 64,
			[][]byte{envelope(100)[:5], envelope(100)[5:], envelope(3)[:5], envelope(3)[5:]}, []int{64, 41, 8}},
		{"ends inside a message", "application/connect+proto", 16 << 10,
			[][]byte{envelope(100)[:5], envelope(100)[5:50]}, []int{50}},
		{"buffer too small for a prefix", "application/connect+proto", 3,
			[][]byte{envelope(2)}, []int{3, 3, 1}},
		{"unary body", "application/proto", 16 << 10,
			[][]byte{[]byte("ab"), []byte("cd")}, []int{2, 2}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			pr, pw := io.Pipe()
			go func() {
				for _, w := range tt.writes {
					if _, err := pw.Write(w); err != nil {
						return
					}
				}
				pw.Close()
			}()
			req, err := http.NewRequest(http.MethodPost, "http://alecryptd/ale.v1.CryptoService/Stream", pr)
			if err != nil {
				t.Fatal(err)
			}
			req.Header.Set("Content-Type", tt.contentType)
			rs := &readSizes{bufLen: tt.bufLen}
			if _, err := (envelopeBodies{next: rs}).RoundTrip(req); err != nil {
				t.Fatal(err)
			}
			if rs.err != nil {
				t.Fatalf("body read failed: %v", rs.err)
			}
			if !slices.Equal(rs.sizes, tt.want) {
				t.Errorf("reads = %v, want %v", rs.sizes, tt.want)
			}
			if want := bytes.Join(tt.writes, nil); !bytes.Equal(rs.body, want) {
				t.Errorf("body = %x, want %x", rs.body, want)
			}
			if req.Body != io.ReadCloser(pr) {
				t.Error("the caller's request was modified")
			}
		})
	}
}
