package tokens

import (
	"hash/maphash"
	"strings"
	"sync"
	"sync/atomic"
)

// The verified-token cache maps a token string to the claims verified for
// it, so that a token seen before costs a hash and a map lookup instead of
// a signature check. Keys are a 64-bit maphash of the string under a
// per-process random seed; each entry keeps the string and a hit must match
// it exactly, so a hash collision is a miss, never a wrong answer. The
// cache is bounded (random eviction, expired entries first) and an entry
// is refused once its token has expired.

const cacheShards = 64

type cacheEntry struct {
	raw       string
	claims    *Claims
	until     int64        // unix nanos: exp + leeway
	issued    atomic.Int64 // unix nanos, compared with revoke-since cut-offs
	confirmed atomic.Bool
	lastUsed  atomic.Int64 // unix nanos when last queued for a last_used_at write
	confirmAt atomic.Int64 // unix nanos of the last attempt to read the record (fail-open entries)
}

type cacheShard struct {
	mu  sync.RWMutex
	m   map[uint64]*cacheEntry
	cap int
	_   [32]byte // keep shards on separate cache lines
}

type verifiedCache struct {
	seed   maphash.Seed
	shards [cacheShards]cacheShard
}

func newVerifiedCache(size int) *verifiedCache {
	c := &verifiedCache{seed: maphash.MakeSeed()}
	per := max((size+cacheShards-1)/cacheShards, 1)
	for i := range c.shards {
		c.shards[i].m = make(map[uint64]*cacheEntry)
		c.shards[i].cap = per
	}
	return c
}

func (c *verifiedCache) shard(h uint64) *cacheShard { return &c.shards[h%cacheShards] }

// get returns the entry for raw, or nil.
func (c *verifiedCache) get(raw string) *cacheEntry {
	h := maphash.String(c.seed, raw)
	sh := c.shard(h)
	sh.mu.RLock()
	e := sh.m[h]
	sh.mu.RUnlock()
	if e == nil || e.raw != raw {
		return nil
	}
	return e
}

// put stores e (whose raw is set), evicting when the shard is full.
func (c *verifiedCache) put(e *cacheEntry, now int64) {
	e.raw = strings.Clone(e.raw)
	h := maphash.String(c.seed, e.raw)
	sh := c.shard(h)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	if _, ok := sh.m[h]; !ok && len(sh.m) >= sh.cap {
		evicted, seen := false, 0
		var victim uint64
		for k, v := range sh.m { // map order is random
			if v.until <= now {
				delete(sh.m, k)
				evicted = true
			} else if seen == 0 {
				victim = k
			}
			if seen++; seen >= 8 {
				break
			}
		}
		if !evicted {
			delete(sh.m, victim)
		}
	}
	sh.m[h] = e
}

// remove drops raw's entry, if any.
func (c *verifiedCache) remove(raw string) {
	h := maphash.String(c.seed, raw)
	sh := c.shard(h)
	sh.mu.Lock()
	if e := sh.m[h]; e != nil && e.raw == raw {
		delete(sh.m, h)
	}
	sh.mu.Unlock()
}

// purge drops the entries drop selects.
func (c *verifiedCache) purge(drop func(*cacheEntry) bool) {
	for i := range c.shards {
		sh := &c.shards[i]
		sh.mu.Lock()
		for k, e := range sh.m {
			if drop(e) {
				delete(sh.m, k)
			}
		}
		sh.mu.Unlock()
	}
}

// len counts the entries (for tests).
func (c *verifiedCache) len() int {
	n := 0
	for i := range c.shards {
		c.shards[i].mu.RLock()
		n += len(c.shards[i].m)
		c.shards[i].mu.RUnlock()
	}
	return n
}
