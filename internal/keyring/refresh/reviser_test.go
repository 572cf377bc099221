package refresh_test

import (
	"context"
	"log/slog"
	"sync"
	"testing"

	"github.com/alecrypt/alecrypt/internal/keyring"
	"github.com/alecrypt/alecrypt/internal/keyring/refresh"
)

// revisedStore is a fakeStore that also answers the cheap revision check.
type revisedStore struct {
	*fakeStore
	mu  sync.Mutex
	tok string
}

func (r *revisedStore) Revision(context.Context) (string, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.tok, nil
}

func (r *revisedStore) setToken(tok string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.tok = tok
}

// TestRefresherSkipsLoadWhenRevisionUnchanged: a store whose cheap revision
// has not moved is not loaded again; a new revision is.
func TestRefresherSkipsLoadWhenRevisionUnchanged(t *testing.T) {
	t.Parallel()
	store := &revisedStore{fakeStore: &fakeStore{}, tok: "stat-1"}
	store.set("content-1", nil, rec("fp-1"))
	ring := keyring.New()
	r := refresh.New(store, ring, slog.New(slog.DiscardHandler), 0)
	ctx := context.Background()
	for range 3 {
		if err := r.Reload(ctx); err != nil {
			t.Fatal(err)
		}
	}
	if n := store.loadCount(); n != 1 {
		t.Fatalf("Load called %d times for an unchanged revision, want 1", n)
	}
	if ok, err := r.Status(); err != nil || ok.IsZero() {
		t.Fatalf("Status = %v, %v; want a recent success", ok, err)
	}
	store.set("content-2", nil, rec("fp-1"), rec("fp-2"))
	store.setToken("stat-2")
	if err := r.Reload(ctx); err != nil {
		t.Fatal(err)
	}
	if n := store.loadCount(); n != 2 {
		t.Fatalf("Load called %d times after the revision moved, want 2", n)
	}
	lookup(t, ring, "fp-2")
}
