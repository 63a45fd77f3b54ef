package tokens

import (
	"hash/maphash"
	"strconv"
	"testing"
)

func hashOf(c *verifiedCache, raw string) uint64 { return maphash.String(c.seed, raw) }

func TestCacheBounded(t *testing.T) {
	c := newVerifiedCache(640)
	for i := range 10_000 {
		c.put(&cacheEntry{raw: "tok" + strconv.Itoa(i), claims: &Claims{}, until: 1e18}, 0)
	}
	if n := c.len(); n > 640 {
		t.Fatalf("cache of size 640 holds %d entries", n)
	}
	if e := c.get("tok9999"); e == nil {
		t.Fatalf("the entry just added is missing")
	}
	if e := c.get("tok99990"); e != nil {
		t.Fatalf("get of a string never added returned an entry")
	}
}

func TestCacheEvictsExpiredFirst(t *testing.T) {
	c := newVerifiedCache(16 * cacheShards)
	var live []string
	for i := range 5000 {
		raw := "tok" + strconv.Itoa(i)
		until := int64(10) // expired at now=100
		if i%50 == 0 {
			until = 1000
			live = append(live, raw)
		}
		c.put(&cacheEntry{raw: raw, claims: &Claims{}, until: until}, 100)
	}
	kept := 0
	for _, raw := range live {
		if c.get(raw) != nil {
			kept++
		}
	}
	if kept != len(live) {
		t.Fatalf("%d of %d live entries kept: expired entries should have been evicted first", kept, len(live))
	}
}

func TestCacheExactMatch(t *testing.T) {
	c := newVerifiedCache(10)
	e := &cacheEntry{raw: "a.b.c", claims: &Claims{}, until: 1e18}
	c.put(e, 0)
	// Force a "collision": store the entry under another string's hash.
	h := hashOf(c, "x.y.z")
	sh := c.shard(h)
	sh.m[h] = e
	if c.get("x.y.z") != nil {
		t.Fatalf("a hash hit with a different token string was returned")
	}
}
