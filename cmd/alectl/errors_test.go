package main

import (
	"errors"
	"net"
	"net/url"
	"os"
	"strings"
	"syscall"
	"testing"

	"connectrpc.com/connect"
)

// TestCallErrorNotH2C: --grpc at a server that does not speak h2c (the
// metrics port) fails in one of three ways, by timing: an answer HTTP/2
// cannot read, or the server closing the connection on the preface while
// alectl still writes (broken pipe or reset). Each says the same thing.
func TestCallErrorNotH2C(t *testing.T) {
	t.Parallel()
	const addr = "http://127.0.0.1:9090"
	const notH2C = addr + " is not an alecryptd API port: it does not speak HTTP/2 without TLS (h2c)"
	writeErr := func(errno syscall.Errno) error {
		return &url.Error{Op: "Post", URL: addr + "/ale.v1.CryptoService/Encrypt",
			Err: &net.OpError{Op: "write", Net: "tcp", Err: os.NewSyscallError("write", errno)}}
	}
	for _, tc := range []struct {
		name string
		grpc bool
		err  error
		want string // prefix of the message
	}{
		{"unreadable answer", true, connect.NewError(connect.CodeUnavailable, errors.New(`http2: frame too large`)), notH2C},
		{"broken pipe", true, connect.NewError(connect.CodeCanceled, writeErr(syscall.EPIPE)), notH2C},
		{"connection reset", true, connect.NewError(connect.CodeUnavailable, writeErr(syscall.ECONNRESET)), notH2C},
		// Without --grpc, HTTP/1.1 is spoken, and the h2c hint would be wrong.
		{"broken pipe over HTTP/1.1", false, connect.NewError(connect.CodeCanceled, writeErr(syscall.EPIPE)), "canceled: Post "},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			r := &remote{addr: addr, grpc: tc.grpc}
			got := r.callError(opEncrypt, nil, "", tc.err).Error()
			if !strings.HasPrefix(got, tc.want) {
				t.Fatalf("callError = %q, want it to start %q", got, tc.want)
			}
		})
	}
}
