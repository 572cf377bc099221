package gateway_test

import (
	"context"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"connectrpc.com/connect"

	alev1 "github.com/alecrypt/alecrypt/gen/ale/v1"
	"github.com/alecrypt/alecrypt/internal/api"
	"github.com/alecrypt/alecrypt/internal/gateway"
)

// smallLimit is alecryptd with a --max-request-bytes under the mux's batch
// size: a batch of items that each fit is over it.
func smallLimit(mk newAPI) http.Handler { return mk(api.Options{MaxRequestBytes: 100 << 10}) }

// TestMuxSplitsRefusedBatch: a batch message alecryptd refuses as a whole
// (ResourceExhausted, over its --max-request-bytes) is sent again one item
// a message: each item that fits alone gets its plaintext, and only an item
// refused alone gets ResourceExhausted (the 413 of an HTTP request).
func TestMuxSplitsRefusedBatch(t *testing.T) {
	t.Parallel()
	e := newEnvWith(t, defaultOpts(), 0, smallLimit)
	m := gateway.NewTestMux(e.crypto)
	t.Cleanup(m.Close)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	bodies := []string{
		`{"x":"` + strings.Repeat("a", 50<<10) + `"}`,
		`{"x":"` + strings.Repeat("b", 50<<10) + `"}`,
		`{"x":"` + strings.Repeat("c", 60<<10) + `"}`,
		`{"x":"` + strings.Repeat("d", 101<<10) + `"}`, // over the limit alone too
		`{"x":"e"}`,
	}
	errs := make([]error, len(bodies))
	var wg sync.WaitGroup
	for i, body := range bodies {
		env := e.seal(t, "k-ctr", body)
		wg.Go(func() {
			res, err := m.Decrypt(ctx, &alev1.DecryptRequest{Envelope: &alev1.Envelope{Iv: env.IV, Fingerprint: env.Fingerprint, Message: env.Message}})
			if err == nil && string(res.GetPlaintext()) != body {
				t.Errorf("item %d: wrong plaintext", i)
			}
			errs[i] = err
		})
	}
	for m.Queued() < len(bodies) {
		time.Sleep(time.Millisecond)
	}
	m.Start() // one batch message of all five, about 260 KiB
	wg.Wait()
	for i, err := range errs {
		switch {
		case i == 3 && connect.CodeOf(err) != connect.CodeResourceExhausted:
			t.Errorf("item %d (%d bytes, over the limit alone): %v, want ResourceExhausted", i, len(bodies[i]), err)
		case i != 3 && err != nil:
			t.Errorf("item %d (%d bytes): %v, want its plaintext", i, len(bodies[i]), err)
		}
	}
}

// TestBatchOverRequestLimit: concurrent requests that each fit alecryptd's
// --max-request-bytes all get through, however the gateway batches them.
func TestBatchOverRequestLimit(t *testing.T) {
	t.Parallel()
	e := newEnvWith(t, defaultOpts(), 30*time.Second, smallLimit)
	body := `{"x":"` + strings.Repeat("a", 50<<10) + `"}`
	var mu sync.Mutex
	codes := map[int]int{}
	var wg sync.WaitGroup
	for range 16 {
		env := e.seal(t, "k-ctr", body)
		wg.Go(func() {
			req, _ := http.NewRequest(http.MethodPost, e.url+"/orders", strings.NewReader(b64(env.Message)))
			req.Header = aleHeader(env)
			res, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Error(err)
				return
			}
			res.Body.Close()
			mu.Lock()
			codes[res.StatusCode]++
			mu.Unlock()
		})
	}
	wg.Wait()
	if codes[http.StatusOK] != 16 {
		t.Fatalf("16 concurrent 50 KiB requests under a 100 KiB limit: %v, want all 200", codes)
	}
}

// TestMuxClose: calls queued when the mux closes, and calls made after, are
// answered Unavailable at once instead of waiting for their own deadline.
func TestMuxClose(t *testing.T) {
	t.Parallel()
	e := newEnv(t, defaultOpts(), 0)
	m := gateway.NewTestMux(e.crypto) // no stream: what is queued stays queued
	env := e.seal(t, "k-ctr", `{"order":1}`)
	req := &alev1.DecryptRequest{Envelope: &alev1.Envelope{Iv: env.IV, Fingerprint: env.Fingerprint, Message: env.Message}}
	queued := make(chan error, 1)
	go func() {
		_, err := m.Decrypt(context.Background(), req)
		queued <- err
	}()
	for m.Queued() < 1 {
		time.Sleep(time.Millisecond)
	}
	m.Close()
	wait := func(name string, ch <-chan error) {
		t.Helper()
		select {
		case err := <-ch:
			if connect.CodeOf(err) != connect.CodeUnavailable {
				t.Errorf("%s: %v, want Unavailable", name, err)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("%s: still waiting 10s after close", name)
		}
	}
	wait("a call queued at close", queued)
	after := make(chan error, 1)
	go func() {
		_, err := m.Decrypt(context.Background(), req)
		after <- err
	}()
	wait("a call after close", after)
}
