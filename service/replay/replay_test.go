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

	"github.com/alecrypt/alecrypt/service/replay"
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
func iv(first byte) []byte                    { return []byte{first, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15} }
func id(fp string, first byte) replay.ID      { return replay.NewID(fp, iv(first)) }
func claim(s replay.Store, i replay.ID) error { return s.Claim(context.Background(), i) }

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
// the window, pairs differing in fingerprint or IV are distinct, the pair
// is free again after the window, and of many concurrent claims of one pair
// exactly one wins. wait lets the window pass (a fake clock, or real time
// for a real server).
func conformance(t *testing.T, s replay.Store, window time.Duration, wait func(time.Duration)) {
	t.Helper()
	if err := s.Ready(context.Background()); err != nil {
		t.Fatalf("Ready = %v", err)
	}
	steps := []struct {
		name string
		id   replay.ID
		want error
	}{
		{"first sight", id("fp-a", 1), nil},
		{"the same pair again", id("fp-a", 1), replay.ErrReplay},
		{"same IV, another fingerprint", id("fp-b", 1), nil},
		{"same fingerprint, another IV", id("fp-a", 2), nil},
		{"fingerprint/IV boundary cannot be shifted", replay.NewID("fp-a\x01", []byte{2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15}), nil},
		{"still a replay", id("fp-b", 1), replay.ErrReplay},
		{"a copy under a claimed pair is another kind", replay.NewCopyID("fp-a", iv(1), []byte("ct")), nil},
		{"the same copy again", replay.NewCopyID("fp-a", iv(1), []byte("ct")), replay.ErrReplay},
		{"another ciphertext under that pair", replay.NewCopyID("fp-a", iv(1), []byte("cu")), nil},
	}
	for _, st := range steps {
		if err := claim(s, st.id); !errors.Is(err, st.want) || (st.want == nil && err != nil) {
			t.Fatalf("%s: Claim = %v, want %v", st.name, err, st.want)
		}
	}
	wait(window + window/2)
	if err := claim(s, id("fp-a", 1)); err != nil {
		t.Fatalf("Claim after the window = %v, want nil (the pair was forgotten)", err)
	}
	if err := claim(s, id("fp-a", 1)); !errors.Is(err, replay.ErrReplay) {
		t.Fatalf("Claim again after the window's reclaim = %v, want ErrReplay", err)
	}

	var wins, replays atomic.Int64
	var wg sync.WaitGroup
	race := id("fp-race", 9)
	for range 32 {
		wg.Go(func() {
			switch err := claim(s, race); {
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
	if err := claim(m, id("fp", 0)); !errors.Is(err, replay.ErrReplay) {
		t.Fatalf("Claim of a live pair at the cap = %v, want ErrReplay (not forgotten)", err)
	}
	c.add(31 * time.Second) // the first pair's window (60 s) has passed
	if err := claim(m, id("fp", 3)); err != nil {
		t.Fatalf("Claim once an entry expired = %v, want nil", err)
	}
	if err := claim(m, id("fp", 1)); !errors.Is(err, replay.ErrReplay) {
		t.Fatalf("Claim of the second pair, still in its window = %v, want ErrReplay", err)
	}
	if m.Len() != 3 {
		t.Fatalf("Len = %d, want 3", m.Len())
	}
}

// TestMemoryBytesPerEntry measures the heap a full memory store holds per
// entry, the number the README and Memory's doc state.
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
	if per < 40 || per > 120 {
		t.Errorf("memory store holds %.0f bytes per entry; the documented bound is 40-120", per)
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
		pipe.SetNX(ctx, fmt.Sprintf("%s%x", replay.DefaultRedisPrefix, id[:]), "1", time.Hour)
		if i%1000 == 999 {
			if _, err := pipe.Exec(ctx); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := claim(s, replay.NewID("fp", []byte("0"))); !errors.Is(err, replay.ErrReplay) {
		t.Fatalf("Claim of a pair written by the pipeline = %v, want ErrReplay", err)
	}
	per := float64(used()-before) / n
	t.Logf("redis store: %.0f bytes per entry at %d entries", per, n)
	if per < 50 || per > 200 {
		t.Errorf("redis holds %.0f bytes per entry; the documented bound is 50-200", per)
	}
}
