package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"

	"github.com/alecrypt/alecrypt/internal/replay"
)

// replayConfig is alegate's replay rejection: off unless --replay-window.
type replayConfig struct {
	Window     time.Duration
	Store      string // memory or redis
	RedisURL   string
	Prefix     string
	MaxEntries int
}

// flags defines the replay flags. --replay-redis has no default shown:
// its URL may hold a password, and --help must not print it; cli.FromEnv
// sets it from ALEGATE_REPLAY_REDIS after the defaults are fixed.
func (c *replayConfig) flags(fs *flag.FlagSet) {
	fs.DurationVar(&c.Window, "replay-window", 0, "refuse a request or frame whose (fingerprint, IV) another request or connection used, or whose exact copy was seen, within this window (errorCode 2); 0 (default) turns it off")
	fs.StringVar(&c.Store, "replay-store", "memory", "where the window lives: memory (one replica) or redis (shared by replicas; --replay-redis)")
	fs.StringVar(&c.RedisURL, "replay-redis", "", "Redis or Valkey URL for --replay-store redis: redis://[user:password@]host:port[/db], rediss:// for TLS (env ALEGATE_REPLAY_REDIS)")
	fs.StringVar(&c.Prefix, "replay-redis-prefix", replay.DefaultRedisPrefix, "prefix of the keys alegate writes to Redis")
	fs.IntVar(&c.MaxEntries, "replay-max-entries", replay.DefaultMaxEntries, "cap of the memory store (about 90-180 bytes each); beyond it messages are refused with 503, never forgotten early")
}

func (c *replayConfig) validate() error {
	if c.Window < 0 || (c.Window > 0 && c.Window < time.Millisecond) {
		return fmt.Errorf("--replay-window must be 0 (off) or at least 1ms, got %v", c.Window)
	}
	switch c.Store {
	case "memory":
		if c.MaxEntries < 1 {
			return fmt.Errorf("--replay-max-entries must be positive, got %d", c.MaxEntries)
		}
	case "redis":
		if c.Window > 0 && c.RedisURL == "" {
			return errors.New("--replay-store redis needs --replay-redis (or ALEGATE_REPLAY_REDIS)")
		}
		if c.RedisURL != "" {
			if _, err := redis.ParseURL(c.RedisURL); err != nil {
				// The URL may hold a password: name the flag, not the value.
				return errors.New("--replay-redis is not a redis:// or rediss:// URL")
			}
		}
	default:
		return fmt.Errorf("--replay-store must be memory or redis, got %q", c.Store)
	}
	return nil
}

// open builds the store (nil when off) and registers its metrics.
func (c *replayConfig) open(reg prometheus.Registerer) (replay.Store, func(), error) {
	if c.Window == 0 {
		return nil, func() {}, nil
	}
	if c.Store == "memory" {
		m := replay.NewMemory(c.Window, c.MaxEntries, time.Now)
		if reg != nil {
			reg.MustRegister(
				prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "alegate_replay_entries",
					Help: "(fingerprint, IV) pairs the memory replay store remembers now."}, func() float64 { return float64(m.Len()) }),
				prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "alegate_replay_max_entries",
					Help: "--replay-max-entries: at this many, new messages are refused with 503."}, func() float64 { return float64(c.MaxEntries) }),
			)
		}
		return m, func() {}, nil
	}
	opts, err := redis.ParseURL(c.RedisURL)
	if err != nil {
		return nil, nil, errors.New("--replay-redis is not a redis:// or rediss:// URL")
	}
	// No client-side retries: a SET retried after a lost reply would find
	// its own first write and refuse a fresh message as a replay. Short
	// timeouts: a request waits at most this long before its 503.
	opts.MaxRetries = -1
	opts.DialTimeout, opts.ReadTimeout, opts.WriteTimeout = 2*time.Second, time.Second, time.Second
	rc := redis.NewClient(opts)
	return replay.NewRedis(rc, c.Window, c.Prefix), func() { _ = rc.Close() }, nil
}

// describe is what alegate logs about replay rejection at startup (never
// the Redis URL, which may carry a password).
func (c *replayConfig) describe() []any {
	if c.Window == 0 {
		return []any{"replay_window", "off"}
	}
	out := []any{"replay_window", c.Window.String(), "replay_store", c.Store}
	if c.Store == "redis" {
		if o, err := redis.ParseURL(c.RedisURL); err == nil {
			out = append(out, "replay_redis", o.Addr)
		}
	}
	return out
}

// readyReplay adds the store to readiness: with replay rejection on, a
// store that cannot answer refuses every message, so the replica is not
// ready.
func readyReplay(s replay.Store) func() bool {
	return func() bool {
		if s == nil {
			return true
		}
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		return s.Ready(ctx) == nil
	}
}
