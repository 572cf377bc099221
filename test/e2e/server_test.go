package e2e

import (
	"context"
	"io"
	"strings"
	"syscall"
	"testing"
	"time"

	"connectrpc.com/connect"

	alev1 "github.com/alecrypt/alecrypt/gen/ale/v1"
	"github.com/alecrypt/alecrypt/service/client"
	"github.com/alecrypt/alecrypt/test/harness"
)

// TestClientCAWithoutPolicyRequiresCertificate: --client-ca alone (no
// --policy) means callers must present a verified client certificate, over
// Connect and gRPC; health stays open for probes without one.
func TestClientCAWithoutPolicyRequiresCertificate(t *testing.T) {
	pki := harness.NewPKI(t)
	cert, key := pki.Server(t, "alecryptd")
	svc := harness.StartAlecryptd(t, harness.StartOptions{Args: []string{"--tls-cert", cert, "--tls-key", key, "--client-ca", pki.CAFile}})
	clientCert, clientKey := pki.Client(t, "pos", "spiffe://alecrypt/pos/store-1")
	for _, grpc := range []bool{false, true} {
		anon, err := client.New(client.Config{URL: svc.URL, GRPC: grpc, CAFile: pki.CAFile})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := encryptWith(anon, "", "x"); connect.CodeOf(err) != connect.CodeUnauthenticated {
			t.Fatalf("grpc=%v: no client certificate: err = %v, want unauthenticated", grpc, err)
		}
		withCert, err := client.New(client.Config{URL: svc.URL, GRPC: grpc, CAFile: pki.CAFile, CertFile: clientCert, KeyFile: clientKey})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := encryptWith(withCert, "", "x"); err != nil {
			t.Fatalf("grpc=%v: with a client certificate: %v", grpc, err)
		}
	}
	anon, err := client.New(client.Config{URL: svc.URL, CAFile: pki.CAFile})
	if err != nil {
		t.Fatal(err)
	}
	res, err := anon.HTTP.Post(svc.URL+"/grpc.health.v1.Health/Check", "application/json", strings.NewReader("{}"))
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(res.Body)
	res.Body.Close()
	if res.StatusCode != 200 || string(body) != `{"status":"SERVING_STATUS_SERVING"}` {
		t.Fatalf("health without a client certificate = %d %s, want SERVING", res.StatusCode, body)
	}
}

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
