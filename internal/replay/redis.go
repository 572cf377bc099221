package replay

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"syscall"
	"time"

	"github.com/redis/go-redis/v9"
)

// Redis is the store several gateway replicas share. Each claim is one
// script, atomic on the server, so of two replicas receiving the same
// message exactly one wins, and Redis expires the entry when the window has
// passed. It works the same on Valkey (scripts and SET ... KEEPTTL need
// Redis 6 or Valkey).
//
// An entry's value is its owner (32 hex digits), followed by the owners that
// gave it up, each as "-" and 32 hex digits; a value starting with "-" is
// held by no one. A claim takes a free key or one held by no one, reports
// "again" when its owner holds it, and never lands for an owner listed as
// having given up: so a claim that timed out, and that alegate released,
// does nothing when it reaches Redis after the release, whatever the order
// of the two on their separate connections. An entry written by a replica
// that stores "1" (no owner) is someone else's to every owner.
//
// Size: a key is the prefix plus 32 hex digits and its value 32 more; with
// Redis's per-key overhead and the expiry, TestRedisBytesPerEntry measures
// about 215 bytes per entry (used_memory) on Debian's Redis 7. Bound it on
// the server with maxmemory and the noeviction policy: a full Redis then
// refuses writes, Claim fails, and the gateway refuses messages rather than
// forget (an evicting policy would forget unexpired entries and let their
// replays through).
//
// When Redis cannot be reached, or answers an error, Claim returns that
// error and the gateway refuses the message (fail closed). The client must
// not retry a claim on its own (go-redis MaxRetries -1): a claim of a frame's
// exact copy retried after a lost reply would find its own first write
// and refuse a fresh frame as a replay.
type Redis struct {
	c      redis.Cmdable
	window time.Duration
	prefix string
}

// DefaultRedisPrefix starts every key the gateway writes.
const DefaultRedisPrefix = "alegate:replay:"

// maxGivenUp bounds the owners an entry lists as having given it up (33
// bytes each): they accrue only while Redis times out, one per refused
// message naming that pair. Beyond it a release is refused (an error), and
// that owner's late claim, if it lands, blocks the pair for its window.
const maxGivenUp = 64

// claimScript: KEYS[1] the entry; ARGV[1] the owner, ARGV[2] the window in
// milliseconds. Returns 1 when claimed now, 2 when the owner held it
// already (its window starts again), 0 when another owner holds it or this
// one gave it up.
var claimScript = redis.NewScript(`
local v = redis.call('GET', KEYS[1])
if not v then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  return 1
end
if string.find(v, '-' .. ARGV[1], 1, true) then return 0 end
if string.sub(v, 1, 1) ~= '-' then
  if v == ARGV[1] or string.sub(v, 1, 33) == ARGV[1] .. '-' then
    redis.call('PEXPIRE', KEYS[1], ARGV[2])
    return 2
  end
  return 0
end
redis.call('SET', KEYS[1], ARGV[1] .. v, 'PX', ARGV[2])
return 1
`)

// releaseScript: KEYS[1] the entry; ARGV[1] the owner, ARGV[2] the window
// in milliseconds, ARGV[3] maxGivenUp. Records that the owner gave the entry
// up: it is then held by no one if the owner held it, and the owner's claim
// cannot land later. Returns 1 when recorded (or already), 0 when the list is
// full.
var releaseScript = redis.NewScript(`
local v = redis.call('GET', KEYS[1])
local mark = '-' .. ARGV[1]
if not v then
  redis.call('SET', KEYS[1], mark, 'PX', ARGV[2])
  return 1
end
if string.find(v, mark, 1, true) then return 1 end
local _, n = string.gsub(v, '-', '')
if n >= tonumber(ARGV[3]) then return 0 end
if v == ARGV[1] or string.sub(v, 1, 33) == ARGV[1] .. '-' then
  v = string.sub(v, 33)
end
redis.call('SET', KEYS[1], v .. mark, 'KEEPTTL')
return 1
`)

// NewRedis returns a store on a built client (redis.NewClient,
// redis.NewClusterClient, ...); prefix namespaces the keys.
func NewRedis(c redis.Cmdable, window time.Duration, prefix string) *Redis {
	return &Redis{c: c, window: window, prefix: prefix}
}

func (r *Redis) key(id ID) string { return r.prefix + hex.EncodeToString(id[:]) }

func (r *Redis) windowMillis() int64 { return max(r.window.Milliseconds(), 1) }

// Claim implements Store.
func (r *Redis) Claim(ctx context.Context, id ID, owner Owner) (again bool, err error) {
	n, err := claimScript.Run(ctx, r.c, []string{r.key(id)}, owner.String(), r.windowMillis()).Int()
	switch {
	case err != nil:
		return false, fmt.Errorf("replay store: %w", err)
	case n == 0:
		return false, ErrReplay
	}
	return n == 2, nil
}

// Release implements Store. It tries until the release is recorded or ctx
// ends: the script is idempotent, and until it is recorded a claim that
// timed out may still land. A refused connection ends it at once: no server
// listens there, so none holds a claim in flight (it died with its process).
func (r *Redis) Release(ctx context.Context, id ID, owner Owner) error {
	for {
		n, err := releaseScript.Run(ctx, r.c, []string{r.key(id)}, owner.String(), r.windowMillis(), maxGivenUp).Int()
		switch {
		case err == nil && n == 0:
			return errors.New("replay store: release not recorded: too many owners gave this entry up")
		case err == nil:
			return nil
		case errors.Is(err, syscall.ECONNREFUSED):
			return nil
		}
		var answer redis.Error
		if errors.As(err, &answer) { // the server answered: retrying would not change it
			return fmt.Errorf("replay store: release: %w", err)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("replay store: release: %w", err)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// Ready implements Store with a PING.
func (r *Redis) Ready(ctx context.Context) error {
	if err := r.c.Ping(ctx).Err(); err != nil {
		return fmt.Errorf("replay store: %w", err)
	}
	return nil
}

var _ Store = (*Redis)(nil)
