package gateway

import (
	"context"
	"errors"
	"testing"

	"connectrpc.com/connect"

	alev1 "github.com/alecrypt/alecrypt/gen/ale/v1"
)

// TestMuxItemOfGoneCallerNotRecycled: an item whose caller stopped waiting
// may still be answered later; it must never serve another call.
func TestMuxItemOfGoneCallerNotRecycled(t *testing.T) {
	m := newIdleMux() // no stream: the item stays queued
	defer m.close()
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() {
		_, err := m.decrypt(ctx, &alev1.DecryptRequest{})
		errc <- err
	}()
	gone := <-m.queue
	cancel()
	if err := <-errc; connect.CodeOf(err) != connect.CodeCanceled {
		t.Fatalf("decrypt after cancel = %v, want Canceled", err)
	}
	late := errors.New("a late answer")
	gone.done <- muxResult{err: late} // as send would, after the caller left
	for range 100 {
		it := newMuxItem(context.Background())
		if it == gone {
			t.Fatal("the item of a caller that gave up serves another call")
		}
		if len(it.done) != 0 || it.dec != nil || it.enc != nil {
			t.Fatal("a recycled item keeps an answer or a request")
		}
		defer it.recycle()
	}
}
