package replay

import (
	"context"
	"encoding/hex"
	"fmt"
	"time"

	"github.com/redis/go-redis/v9"
)

// Redis is the store several gateway replicas share: each claim is one
// `SET <prefix><hex id> 1 NX PX <window>`, atomic on the server, so of two
// replicas receiving the same message exactly one wins, and Redis expires
// the entry when the window has passed. It works the same on Valkey.
//
// Size: a key is the prefix plus 32 hex digits; with Redis's per-key
// overhead and the expiry, TestRedisBytesPerEntry measures about 150 bytes
// per entry (used_memory) on Debian's Redis 7. Bound it on the server with maxmemory and the
// noeviction policy: a full Redis then refuses writes, Claim fails, and the
// gateway refuses messages rather than forget (an evicting policy would
// forget unexpired entries and let their replays through).
//
// When Redis cannot be reached, or answers an error, Claim returns that
// error and the gateway refuses the message (fail closed). The client must
// not retry a SET on its own (go-redis MaxRetries -1): a retry after a lost
// reply would find its own first write and refuse a fresh message as a
// replay.
type Redis struct {
	c      redis.Cmdable
	window time.Duration
	prefix string
}

// DefaultRedisPrefix starts every key the gateway writes.
const DefaultRedisPrefix = "alegate:replay:"

// NewRedis returns a store on a built client (redis.NewClient,
// redis.NewClusterClient, ...); prefix namespaces the keys.
func NewRedis(c redis.Cmdable, window time.Duration, prefix string) *Redis {
	return &Redis{c: c, window: window, prefix: prefix}
}

// Claim implements Store.
func (r *Redis) Claim(ctx context.Context, id ID) error {
	ok, err := r.c.SetNX(ctx, r.prefix+hex.EncodeToString(id[:]), "1", r.window).Result()
	switch {
	case err != nil:
		return fmt.Errorf("replay store: %w", err)
	case !ok:
		return ErrReplay
	}
	return nil
}

// Ready implements Store with a PING.
func (r *Redis) Ready(ctx context.Context) error {
	if err := r.c.Ping(ctx).Err(); err != nil {
		return fmt.Errorf("replay store: %w", err)
	}
	return nil
}

var _ Store = (*Redis)(nil)
