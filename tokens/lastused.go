package tokens

import (
	"context"
	"errors"
	"strconv"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
)

// lastUsedEvery is how often, at most, a token's last_used_at is queued
// for writing; the queue is written in one pipeline at the same interval.
const lastUsedEvery = 5 * time.Second

// maxPending bounds the queue if Redis stays down.
const maxPending = 1 << 20

// touchScript sets last_used_at (unix ms) if the record still exists and
// the value is newer, so a late or out-of-order write neither resurrects a
// purged record nor moves the time backwards.
var touchScript = redis.NewScript(`
if redis.call('HEXISTS', KEYS[1], 'meta') == 0 then return 0 end
local cur = tonumber(redis.call('HGET', KEYS[1], 'last_used_at') or '0')
if tonumber(ARGV[1]) > cur then redis.call('HSET', KEYS[1], 'last_used_at', ARGV[1]) end
return 1`)

// lastUsed queues last-used times (unix ms) by token id.
type lastUsed struct {
	mu      sync.Mutex
	pending map[string]int64
}

func newLastUsed() *lastUsed { return &lastUsed{pending: map[string]int64{}} }

func (l *lastUsed) note(id string, ms int64) {
	l.mu.Lock()
	if ms > l.pending[id] && (len(l.pending) < maxPending || l.pending[id] != 0) {
		l.pending[id] = ms
	}
	l.mu.Unlock()
}

func (l *lastUsed) get(id string) (int64, bool) {
	l.mu.Lock()
	ms, ok := l.pending[id]
	l.mu.Unlock()
	return ms, ok
}

// take returns the queued times and starts a new queue; nil when none are
// queued (the empty map stays in use, so it must not be handed out: the
// caller reads it without the lock).
func (l *lastUsed) take() map[string]int64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	p := l.pending
	if len(p) == 0 {
		return nil
	}
	l.pending = make(map[string]int64, len(p))
	return p
}

// touch queues e's last use at now (unix nanos) unless it was queued less
// than lastUsedEvery ago. No Redis round trip, no allocation in the
// common case.
func (s *Service) touch(e *cacheEntry, now int64) {
	last := e.lastUsed.Load()
	if now-last < int64(lastUsedEvery) || !e.lastUsed.CompareAndSwap(last, now) {
		return
	}
	s.used.note(e.claims.ID, now/int64(time.Millisecond))
}

// flushLastUsed writes the queued times in one pipeline (in chunks of
// 1000); on failure they are queued again.
func (s *Service) flushLastUsed(ctx context.Context) {
	pending := s.used.take()
	if len(pending) == 0 {
		return
	}
	ids := make([]string, 0, len(pending))
	for id := range pending {
		ids = append(ids, id)
	}
	for done := 0; done < len(ids); done += 1000 {
		chunk := ids[done:min(done+1000, len(ids))]
		if err := s.writeLastUsed(ctx, chunk, pending); err != nil {
			s.storeFailed(err)
			s.log.Warn("write last-used times; will retry", "tokens", len(ids)-done, "err", err)
			for _, id := range ids[done:] {
				s.used.note(id, pending[id])
			}
			return
		}
	}
}

func (s *Service) writeLastUsed(ctx context.Context, ids []string, at map[string]int64) error {
	run := func() ([]redis.Cmder, error) {
		return s.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
			for _, id := range ids {
				touchScript.EvalSha(ctx, p, []string{s.tokKey(id)}, strconv.FormatInt(at[id], 10))
			}
			return nil
		})
	}
	_, err := run()
	if err != nil && redis.HasErrorPrefix(err, "NOSCRIPT") {
		if err := touchScript.Load(ctx, s.rdb).Err(); err != nil {
			return err
		}
		_, err = run()
	}
	if err != nil && !errors.Is(err, redis.Nil) {
		return err
	}
	return nil
}
