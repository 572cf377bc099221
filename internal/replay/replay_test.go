package replay_test

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/alecrypt/alecrypt/internal/replay"
	"github.com/alecrypt/alecrypt/test/harness"
)

// clock is a settable clock.
type clock struct{ ns atomic.Int64 }

func (c *clock) now() time.Time      { return time.Unix(0, c.ns.Load()) }
func (c *clock) add(d time.Duration) { c.ns.Add(int64(d)) }
func newClock() *clock {
	c := &clock{}
	c.ns.Store(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC).UnixNano())
	return c
}
func iv(first byte) []byte               { return []byte{first, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15} }
func id(fp string, first byte) replay.ID { return replay.NewID(fp, iv(first)) }

// owner is the one channel claiming in tests that need only one.
var owner = replay.NewOwner()

func claim(s replay.Store, i replay.ID) error {
	again, err := s.Claim(context.Background(), i, owner)
	if err == nil && again {
		return errAgain
	}
	return err
}

// errAgain stands for a claim its owner held already.
var errAgain = errors.New("held by this owner already")

// TestIDKinds: a pair and a copy never share an ID, whatever the inputs;
// the copy's parts cannot shift into one another.
func TestIDKinds(t *testing.T) {
	t.Parallel()
	ids := map[replay.ID]string{}
	for name, got := range map[string]replay.ID{
		"pair":                  replay.NewID("fp", iv(1)),
		"copy of empty":         replay.NewCopyID("fp", iv(1), nil),
		"copy":                  replay.NewCopyID("fp", iv(1), []byte("ct")),
		"copy, IV shifted":      replay.NewCopyID("fp", iv(1)[:15], []byte("ct")),
		"copy, other key":       replay.NewCopyID("fq", iv(1), []byte("ct")),
		"pair of the copy form": replay.NewID("\x00fp", iv(1)),
	} {
		if other, ok := ids[got]; ok {
			t.Fatalf("%s and %s share ID %x", name, other, got)
		}
		ids[got] = name
	}
}

// conformance is what every Store must do: a pair is claimed once within
// the window (its owner is told it holds it, any other owner is refused),
// pairs differing in fingerprint or IV are distinct, a released pair is free
// for others and a release never frees another owner's, the pair is free
// again after the window, and of many concurrent claims of one pair exactly
// one wins. wait lets the window pass (a fake clock, or real time for a
// real server).
func conformance(t *testing.T, s replay.Store, window time.Duration, wait func(time.Duration)) {
	t.Helper()
	if err := s.Ready(context.Background()); err != nil {
		t.Fatalf("Ready = %v", err)
	}
	ctx := context.Background()
	a, b, c := replay.NewOwner(), replay.NewOwner(), replay.NewOwner()
	for _, st := range []struct {
		name    string
		op      func() (bool, error)
		again   bool
		wantErr error
	}{
		{"a claims", func() (bool, error) { return s.Claim(ctx, id("own", 1), a) }, false, nil},
		{"a claims again", func() (bool, error) { return s.Claim(ctx, id("own", 1), a) }, true, nil},
		{"b is refused", func() (bool, error) { return s.Claim(ctx, id("own", 1), b) }, false, replay.ErrReplay},
		{"b releases what a holds", func() (bool, error) { return false, s.Release(ctx, id("own", 1), b) }, false, nil},
		{"c is still refused", func() (bool, error) { return s.Claim(ctx, id("own", 1), c) }, false, replay.ErrReplay},
		{"a still holds it", func() (bool, error) { return s.Claim(ctx, id("own", 1), a) }, true, nil},
		{"a releases it", func() (bool, error) { return false, s.Release(ctx, id("own", 1), a) }, false, nil},
		{"c claims it", func() (bool, error) { return s.Claim(ctx, id("own", 1), c) }, false, nil},
		{"a is refused now", func() (bool, error) { return s.Claim(ctx, id("own", 1), a) }, false, replay.ErrReplay},
		{"b too", func() (bool, error) { return s.Claim(ctx, id("own", 1), b) }, false, replay.ErrReplay},
	} {
		again, err := st.op()
		if !errors.Is(err, st.wantErr) || (st.wantErr == nil && err != nil) || again != st.again {
			t.Fatalf("%s: got (%v, %v), want (%v, %v)", st.name, again, err, st.again, st.wantErr)
		}
	}
	steps := []struct {
		name string
		id   replay.ID
		want error
	}{
		{"first sight", id("fp-a", 1), nil},
		{"the same pair again", id("fp-a", 1), errAgain},
		{"its owner is told it holds it", id("fp-a", 1), errAgain},
		{"same IV, another fingerprint", id("fp-b", 1), nil},
		{"same fingerprint, another IV", id("fp-a", 2), nil},
		{"fingerprint/IV boundary cannot be shifted", replay.NewID("fp-a\x01", []byte{2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15}), nil},
		{"still held", id("fp-b", 1), errAgain},
		{"a copy under a claimed pair is another kind", replay.NewCopyID("fp-a", iv(1), []byte("ct")), nil},
		{"the same copy again", replay.NewCopyID("fp-a", iv(1), []byte("ct")), errAgain},
		{"another ciphertext under that pair", replay.NewCopyID("fp-a", iv(1), []byte("cu")), nil},
	}
	for _, st := range steps {
		if err := claim(s, st.id); !errors.Is(err, st.want) || (st.want == nil && err != nil) {
			t.Fatalf("%s: Claim = %v, want %v", st.name, err, st.want)
		}
		// Whoever claims, another owner is refused.
		if _, err := s.Claim(ctx, st.id, b); !errors.Is(err, replay.ErrReplay) {
			t.Fatalf("%s: another owner's Claim = %v, want ErrReplay", st.name, err)
		}
	}
	wait(window + window/2)
	if err := claim(s, id("fp-a", 1)); err != nil {
		t.Fatalf("Claim after the window = %v, want nil (the pair was forgotten)", err)
	}
	if _, err := s.Claim(ctx, id("fp-a", 1), b); !errors.Is(err, replay.ErrReplay) {
		t.Fatalf("another owner's Claim after the window's reclaim = %v, want ErrReplay", err)
	}

	var wins, replays atomic.Int64
	var wg sync.WaitGroup
	race := id("fp-race", 9)
	for range 32 {
		wg.Go(func() {
			switch _, err := s.Claim(ctx, race, replay.NewOwner()); {
			case err == nil:
				wins.Add(1)
			case errors.Is(err, replay.ErrReplay):
				replays.Add(1)
			default:
				t.Errorf("concurrent Claim = %v", err)
			}
		})
	}
	wg.Wait()
	if wins.Load() != 1 || replays.Load() != 31 {
		t.Fatalf("32 concurrent claims of one pair: %d won, %d replays; want 1 and 31", wins.Load(), replays.Load())
	}
}

func TestMemoryConformance(t *testing.T) {
	t.Parallel()
	c := newClock()
	conformance(t, replay.NewMemory(time.Minute, 1000, c.now), time.Minute, c.add)
}

func TestRedisConformance(t *testing.T) {
	t.Parallel()
	srv := harness.StartRedis(t)
	rc := redis.NewClient(&redis.Options{Addr: srv.Addr, MaxRetries: -1})
	t.Cleanup(func() { rc.Close() })
	const window = 300 * time.Millisecond // real expiry on a real server
	conformance(t, replay.NewRedis(rc, window, "test:"+t.Name()+":"), window, time.Sleep)
	// Keys carry the prefix and a hash, never the fingerprint.
	keys, err := rc.Keys(context.Background(), "*").Result()
	if err != nil || len(keys) == 0 {
		t.Fatalf("KEYS * = %v, %v", keys, err)
	}
	for _, k := range keys {
		if !strings.HasPrefix(k, "test:") || strings.Contains(k, "fp-") || len(k) != len("test:"+t.Name()+":")+32 {
			t.Fatalf("key %q: want the prefix and 32 hex digits", k)
		}
	}
	ttl, err := rc.PTTL(context.Background(), keys[0]).Result()
	if err != nil || ttl <= 0 || ttl > window {
		t.Fatalf("PTTL = %v, %v; want an expiry within the window %v", ttl, err, window)
	}
}

// TestMemoryRefusesWhenFull: at the cap, Claim refuses new pairs (never
// forgets a live one to make room), still reports replays, and takes new
// pairs again once old ones expire.
func TestMemoryRefusesWhenFull(t *testing.T) {
	t.Parallel()
	c := newClock()
	m := replay.NewMemory(time.Minute, 3, c.now)
	for i := range 3 {
		if err := claim(m, id("fp", byte(i))); err != nil {
			t.Fatal(err)
		}
		c.add(10 * time.Second)
	}
	if err := claim(m, id("fp", 3)); !errors.Is(err, replay.ErrFull) {
		t.Fatalf("Claim over the cap = %v, want ErrFull", err)
	}
	if _, err := m.Claim(context.Background(), id("fp", 0), replay.NewOwner()); !errors.Is(err, replay.ErrReplay) {
		t.Fatalf("Claim of a live pair at the cap = %v, want ErrReplay (not forgotten)", err)
	}
	c.add(31 * time.Second) // the first pair's window (60 s) has passed
	if err := claim(m, id("fp", 3)); err != nil {
		t.Fatalf("Claim once an entry expired = %v, want nil", err)
	}
	if _, err := m.Claim(context.Background(), id("fp", 1), replay.NewOwner()); !errors.Is(err, replay.ErrReplay) {
		t.Fatalf("Claim of the second pair, still in its window = %v, want ErrReplay", err)
	}
	if m.Len() != 3 {
		t.Fatalf("Len = %d, want 3", m.Len())
	}
}

// TestMemoryBytesPerEntry measures the heap a full memory store holds per
// entry, the number docs/gateway.md and Memory's doc state.
func TestMemoryBytesPerEntry(t *testing.T) {
	if testing.Short() {
		t.Skip("allocates tens of MB")
	}
	const n = 200_000
	c := newClock()
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	m := replay.NewMemory(time.Hour, n, c.now)
	for i := range n {
		if err := claim(m, replay.NewID("fp", []byte(strconv.Itoa(i)))); err != nil {
			t.Fatal(err)
		}
	}
	runtime.GC()
	runtime.ReadMemStats(&after)
	per := float64(after.HeapAlloc-before.HeapAlloc) / n
	t.Logf("memory store: %.0f bytes per entry at %d entries", per, n)
	if per < 60 || per > 190 {
		t.Errorf("memory store holds %.0f bytes per entry; the documented bound is 60-190", per)
	}
	runtime.KeepAlive(m)
}

// TestRedisBytesPerEntry measures a real server's memory per entry.
func TestRedisBytesPerEntry(t *testing.T) {
	if testing.Short() {
		t.Skip("writes 50,000 keys")
	}
	srv := harness.StartRedis(t)
	rc := redis.NewClient(&redis.Options{Addr: srv.Addr, MaxRetries: -1})
	t.Cleanup(func() { rc.Close() })
	ctx := context.Background()
	used := func() int64 {
		info, err := rc.Info(ctx, "memory").Result()
		if err != nil {
			t.Fatal(err)
		}
		for _, l := range strings.Split(info, "\r\n") {
			if v, ok := strings.CutPrefix(l, "used_memory:"); ok {
				n, _ := strconv.ParseInt(v, 10, 64)
				return n
			}
		}
		t.Fatal("no used_memory in INFO")
		return 0
	}
	const n = 50_000
	s := replay.NewRedis(rc, time.Hour, replay.DefaultRedisPrefix)
	before := used()
	pipe := rc.Pipeline()
	for i := range n {
		id := replay.NewID("fp", []byte(strconv.Itoa(i)))
		pipe.SetNX(ctx, fmt.Sprintf("%s%x", replay.DefaultRedisPrefix, id[:]), owner.String(), time.Hour) // as Claim writes it
		if i%1000 == 999 {
			if _, err := pipe.Exec(ctx); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := claim(s, replay.NewID("fp", []byte("0"))); !errors.Is(err, errAgain) {
		t.Fatalf("Claim of a pair written by the pipeline = %v, want it held by its owner", err)
	}
	per := float64(used()-before) / n
	t.Logf("redis store: %.0f bytes per entry at %d entries", per, n)
	if per < 100 || per > 300 {
		t.Errorf("redis holds %.0f bytes per entry; the documented bound is 100-300", per)
	}
}

// TestMemoryRelease: a released entry is free for another owner at once,
// and the released claim's expiry does not cut the new claim's window
// short; released entries still count toward the cap until they expire.
func TestMemoryRelease(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	c := newClock()
	m := replay.NewMemory(time.Minute, 3, c.now)
	a, b := replay.NewOwner(), replay.NewOwner()
	if _, err := m.Claim(ctx, id("fp", 1), a); err != nil {
		t.Fatal(err)
	}
	c.add(30 * time.Second)
	if err := m.Release(ctx, id("fp", 1), a); err != nil {
		t.Fatal(err)
	}
	if again, err := m.Claim(ctx, id("fp", 1), b); err != nil || again {
		t.Fatalf("Claim by another owner after the release = (%v, %v), want (false, nil)", again, err)
	}
	c.add(31 * time.Second) // a's window has passed, b's has not
	if _, err := m.Claim(ctx, id("fp", 1), a); !errors.Is(err, replay.ErrReplay) {
		t.Fatalf("Claim when the released claim would have expired = %v, want ErrReplay (b's window runs on)", err)
	}
	if again, err := m.Claim(ctx, id("fp", 1), b); err != nil || !again {
		t.Fatalf("b's Claim = (%v, %v), want (true, nil)", again, err)
	}
	// b's claim and its renewal take two of the cap of 3 (the released
	// claim expired); a released entry counts until it expires.
	if _, err := m.Claim(ctx, id("fp", 2), a); err != nil {
		t.Fatal(err)
	}
	if err := m.Release(ctx, id("fp", 2), a); err != nil {
		t.Fatal(err)
	}
	if _, err := m.Claim(ctx, id("fp", 3), a); !errors.Is(err, replay.ErrFull) {
		t.Fatalf("Claim with a released entry not yet expired at the cap = %v, want ErrFull", err)
	}
}

// redisThroughProxy is a Redis store reached through a proxy the test can
// stall, with the client settings alegate uses (no retries) and a short
// command timeout.
func redisThroughProxy(t *testing.T) (*replay.Redis, *harness.StallProxy, *redis.Client) {
	t.Helper()
	srv := harness.StartRedis(t)
	p := harness.StartStallProxy(t, srv.Addr)
	rc := redis.NewClient(&redis.Options{Addr: p.Addr, MaxRetries: -1, ReadTimeout: 200 * time.Millisecond, WriteTimeout: 200 * time.Millisecond})
	t.Cleanup(func() { rc.Close() })
	direct := redis.NewClient(&redis.Options{Addr: srv.Addr, MaxRetries: -1})
	t.Cleanup(func() { direct.Close() })
	return replay.NewRedis(rc, time.Minute, "test:"), p, direct
}

// TestRedisLateClaimReleased: a claim that timed out while Redis stalled,
// and was released, never blocks another owner, whichever of the late claim
// and the release Redis runs first; an owner that gave a pair up never gets
// it back; and a release never frees another owner's claim.
func TestRedisLateClaimReleased(t *testing.T) {
	t.Parallel()
	for _, releaseFirst := range []bool{true, false} {
		t.Run(fmt.Sprintf("release first %v", releaseFirst), func(t *testing.T) {
			t.Parallel()
			s, p, _ := redisThroughProxy(t)
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			// Loads the scripts, as the first message after start does.
			if _, err := s.Claim(ctx, id("warm", 0), replay.NewOwner()); err != nil {
				t.Fatal(err)
			}
			gaveUp, retry := replay.NewOwner(), replay.NewOwner()
			p.Hold()
			if _, err := s.Claim(ctx, id("fp", 1), gaveUp); err == nil || errors.Is(err, replay.ErrReplay) {
				t.Fatalf("Claim with Redis stalled = %v, want a timeout", err)
			}
			late, err := p.WaitHeld(ctx)
			if err != nil {
				t.Fatal(err)
			}
			released := make(chan error, 1)
			go func() { released <- s.Release(ctx, id("fp", 1), gaveUp) }()
			if _, err := p.WaitHeld(ctx); err != nil { // the release is on its way too
				t.Fatal(err)
			}
			if err := p.Deliver(ctx, late, !releaseFirst, func() error { return <-released }); err != nil {
				t.Fatalf("the late claim and the release reaching Redis: %v", err)
			}
			if _, err := s.Claim(ctx, id("fp", 1), gaveUp); !errors.Is(err, replay.ErrReplay) {
				t.Fatalf("Claim by the owner that gave the pair up = %v, want ErrReplay", err)
			}
			if again, err := s.Claim(ctx, id("fp", 1), retry); err != nil || again {
				t.Fatalf("Claim by the retry's owner = (%v, %v), want (false, nil): the late claim blocks it", again, err)
			}
			if err := s.Release(ctx, id("fp", 1), gaveUp); err != nil {
				t.Fatalf("Release again = %v", err)
			}
			if _, err := s.Claim(ctx, id("fp", 1), replay.NewOwner()); !errors.Is(err, replay.ErrReplay) {
				t.Fatalf("Claim after another owner's release = %v, want ErrReplay (the retry holds it)", err)
			}
			// The retry gives it up as well: still no one's, and still
			// never the first owner's.
			if err := s.Release(ctx, id("fp", 1), retry); err != nil {
				t.Fatal(err)
			}
			if _, err := s.Claim(ctx, id("fp", 1), gaveUp); !errors.Is(err, replay.ErrReplay) {
				t.Fatalf("Claim by the first owner after the second gave up = %v, want ErrReplay", err)
			}
			if _, err := s.Claim(ctx, id("fp", 1), replay.NewOwner()); err != nil {
				t.Fatalf("Claim by a third owner = %v, want nil", err)
			}
		})
	}
}

// TestRedisReleaseBounded: the owners listed as having given an entry up
// are bounded; beyond the bound a release says it was not recorded.
func TestRedisReleaseBounded(t *testing.T) {
	t.Parallel()
	srv := harness.StartRedis(t)
	rc := redis.NewClient(&redis.Options{Addr: srv.Addr, MaxRetries: -1})
	t.Cleanup(func() { rc.Close() })
	s := replay.NewRedis(rc, time.Minute, "test:")
	ctx := context.Background()
	for i := range 64 {
		if err := s.Release(ctx, id("fp", 1), replay.NewOwner()); err != nil {
			t.Fatalf("release %d = %v", i, err)
		}
	}
	if err := s.Release(ctx, id("fp", 1), replay.NewOwner()); err == nil {
		t.Fatal("the 65th release was recorded; want an error")
	}
	if _, err := s.Claim(ctx, id("fp", 1), replay.NewOwner()); err != nil {
		t.Fatalf("Claim of an entry no one holds = %v, want nil", err)
	}
}

// TestClaimAgainRenews: a claim its owner makes again starts the entry's
// window again, so a pair a connection keeps using stays its own; in memory
// (a fake clock) and in Redis (the key's expiry).
func TestClaimAgainRenews(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	a, b := replay.NewOwner(), replay.NewOwner()
	t.Run("memory", func(t *testing.T) {
		t.Parallel()
		c := newClock()
		m := replay.NewMemory(time.Minute, 10, c.now)
		if _, err := m.Claim(ctx, id("fp", 1), a); err != nil {
			t.Fatal(err)
		}
		c.add(40 * time.Second)
		if again, err := m.Claim(ctx, id("fp", 1), a); err != nil || !again {
			t.Fatalf("Claim again = (%v, %v), want (true, nil)", again, err)
		}
		c.add(40 * time.Second) // past the first window, within the renewed one
		if _, err := m.Claim(ctx, id("fp", 1), b); !errors.Is(err, replay.ErrReplay) {
			t.Fatalf("another owner's Claim within the renewed window = %v, want ErrReplay", err)
		}
		c.add(21 * time.Second) // past the renewed window
		if _, err := m.Claim(ctx, id("fp", 1), b); err != nil {
			t.Fatalf("another owner's Claim after the renewed window = %v, want nil", err)
		}
	})
	t.Run("redis", func(t *testing.T) {
		t.Parallel()
		srv := harness.StartRedis(t)
		rc := redis.NewClient(&redis.Options{Addr: srv.Addr, MaxRetries: -1})
		t.Cleanup(func() { rc.Close() })
		s := replay.NewRedis(rc, time.Minute, "test:")
		if _, err := s.Claim(ctx, id("fp", 1), a); err != nil {
			t.Fatal(err)
		}
		i := id("fp", 1)
		key := fmt.Sprintf("test:%x", i[:])
		if err := rc.PExpire(ctx, key, time.Second).Err(); err != nil { // most of the window gone
			t.Fatal(err)
		}
		if again, err := s.Claim(ctx, i, a); err != nil || !again {
			t.Fatalf("Claim again = (%v, %v), want (true, nil)", again, err)
		}
		if ttl, err := rc.PTTL(ctx, key).Result(); err != nil || ttl <= time.Second {
			t.Fatalf("PTTL after the owner's Claim again = %v, %v; want the window started again", ttl, err)
		}
	})
}

// TestRedisReleaseWhenDown: with nothing listening where Redis was, a
// release has nothing to stop (a claim in flight died with the server) and
// returns at once, so a refused message is answered without waiting.
func TestRedisReleaseWhenDown(t *testing.T) {
	t.Parallel()
	srv := harness.StartRedis(t)
	rc := redis.NewClient(&redis.Options{Addr: srv.Addr, MaxRetries: -1})
	t.Cleanup(func() { rc.Close() })
	s := replay.NewRedis(rc, time.Minute, "test:")
	srv.Stop()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := s.Claim(ctx, id("fp", 1), owner); err == nil || errors.Is(err, replay.ErrReplay) {
		t.Fatalf("Claim with Redis gone = %v, want an error", err)
	}
	if err := s.Release(ctx, id("fp", 1), owner); err != nil {
		t.Fatalf("Release with Redis gone = %v, want nil (nothing in flight)", err)
	}
}
