package e2e

import (
	"context"
	"syscall"
	"testing"
	"time"

	"connectrpc.com/connect"

	alev1 "github.com/alecrypt/alecrypt/gen/ale/v1"
	"github.com/alecrypt/alecrypt/service/client"
	"github.com/alecrypt/alecrypt/test/harness"
)

// TestSIGTERMEndsIdleStreams: a real alecryptd with an idle Stream open (as
// every gateway WebSocket holds one) exits 0 on SIGTERM without waiting for
// its --shutdown-timeout, and the stream's client sees the stream end.
func TestSIGTERMEndsIdleStreams(t *testing.T) {
	svc := harness.StartAlecryptd(t, harness.StartOptions{Args: []string{"--shutdown-timeout", "60s"}})
	clients, err := client.New(client.Config{URL: svc.URL}) // the Stream over h2c, as alegate does
	if err != nil {
		t.Fatal(err)
	}
	c := clients.Crypto
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	s := c.Stream(ctx)
	if err := s.Send(&alev1.StreamRequest{RequestId: "1", Operation: &alev1.StreamRequest_Encrypt{Encrypt: &alev1.EncryptRequest{Plaintext: []byte("x")}}}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Receive(); err != nil {
		t.Fatal(err)
	}
	ended := make(chan error, 1)
	go func() {
		_, err := s.Receive() // idle: nothing more is sent
		ended <- err
	}()
	svc.Signal(t, syscall.SIGTERM)
	// Far below the 60s shutdown timeout: only an alecryptd that waits on
	// the idle stream misses it.
	deadline := time.Now().Add(10 * time.Second)
	for {
		if done, err := svc.Exited(); done {
			if err != nil {
				t.Fatalf("alecryptd exit after SIGTERM: %v, want 0\n%s", err, svc.Logs())
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("alecryptd still running 10s after SIGTERM with an idle stream open (shutdown timeout 60s)")
		}
		time.Sleep(20 * time.Millisecond)
	}
	select {
	case err := <-ended:
		// Unavailable: the standard "retry, elsewhere if need be".
		if connect.CodeOf(err) != connect.CodeUnavailable {
			t.Fatalf("stream Receive after SIGTERM = %v, want the stream to end with unavailable", err)
		}
	case <-ctx.Done():
		t.Fatal("the stream's client never saw the stream end")
	}
	_ = s.CloseResponse()
}
