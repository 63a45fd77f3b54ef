package sessions_test

import (
	"context"
	"encoding/json"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/llmgate/llmgate/internal/redistest"
	"github.com/llmgate/llmgate/sessions"
)

// env is one Store on one Redis, with a clock that moves together with key
// expiry: a fake clock and FastForward on miniredis, real time on a real
// server.
type env struct {
	srv   *redistest.Server
	store *sessions.Store
	// u is the test's unit of time: an hour on miniredis, short on a real
	// server where tests sleep. Durations in tests are multiples of u.
	u    time.Duration
	cmds *counter

	mu  sync.Mutex
	now time.Time
}

// newEnv returns a Store on srv configured by cfg(u); Prefix and Now are
// set by newEnv.
func newEnv(tb testing.TB, srv *redistest.Server, cfg func(u time.Duration) sessions.Config) *env {
	tb.Helper()
	e := &env{
		srv:  srv,
		u:    time.Hour,
		cmds: &counter{n: map[string]int{}},
		now:  time.Date(2030, 1, 2, 3, 4, 5, 6000, time.UTC),
	}
	if srv.Real() {
		e.u = time.Second // generous: CI runs every package at once under -race on 2 cores
	}
	var c sessions.Config
	if cfg != nil {
		c = cfg(e.u)
	}
	c.Prefix = srv.Prefix
	c.Now = e.clock
	srv.Client.AddHook(e.cmds)
	e.store = sessions.New(srv.Client, c)
	return e
}

func (e *env) clock() time.Time {
	if e.srv.Real() {
		return time.Now()
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.now
}

// advance lets d pass for both the store's clock and Redis key expiry.
func (e *env) advance(d time.Duration) {
	if e.srv.Real() {
		time.Sleep(d)
		return
	}
	e.mu.Lock()
	e.now = e.now.Add(d)
	e.mu.Unlock()
	e.srv.FastForward(d)
}

// skew moves only the store's clock, leaving Redis expiry behind
// (miniredis only).
func (e *env) skew(tb testing.TB, d time.Duration) {
	tb.Helper()
	if e.srv.Real() {
		tb.Fatal("skew needs the fake clock of miniredis")
	}
	e.mu.Lock()
	e.now = e.now.Add(d)
	e.mu.Unlock()
}

// create stores a session for email with some identity fields filled.
func (e *env) create(tb testing.TB, email string) sessions.Session {
	tb.Helper()
	sess, err := e.store.Create(context.Background(), sessions.Session{
		Email:        email,
		Subject:      "sub-" + email,
		Name:         "Name " + email,
		Groups:       []string{"eng", "ml"},
		Issuer:       "https://idp.example.com",
		IDPSessionID: "idp-sid",
		IDTokenHint:  "eyJhbGciOi.fake.token",
		IP:           "192.0.2.7",
		UserAgent:    "Mozilla/5.0",
	})
	if err != nil {
		tb.Fatalf("Create(%q): %v", email, err)
	}
	return sess
}

// stored reads the session with handle straight from Redis.
func (e *env) stored(tb testing.TB, handle string) sessions.Session {
	tb.Helper()
	val, err := e.srv.Client.Get(context.Background(), e.srv.Prefix+"session:"+handle).Bytes()
	if err != nil {
		tb.Fatalf("GET session:%s: %v", handle, err)
	}
	var s sessions.Session
	if err := json.Unmarshal(val, &s); err != nil {
		tb.Fatalf("decode stored session: %v", err)
	}
	return s
}

// pttl returns the remaining Redis TTL of key (under the prefix).
func (e *env) pttl(tb testing.TB, key string) time.Duration {
	tb.Helper()
	d, err := e.srv.Client.PTTL(context.Background(), e.srv.Prefix+key).Result()
	if err != nil {
		tb.Fatalf("PTTL %s: %v", key, err)
	}
	return d
}

// checkTTL fails tb unless key's Redis TTL ends at until: exactly on
// miniredis; on a real server, where time passes meanwhile, up to u/4
// earlier or u/10 later.
func (e *env) checkTTL(tb testing.TB, key string, until time.Time) {
	tb.Helper()
	want := until.Sub(e.clock())
	got := e.pttl(tb, key)
	slack, late := time.Duration(0), e.u/4
	if e.srv.Real() {
		// The store computes a TTL from its clock a little before Redis
		// starts counting it down, and real time runs on between the
		// write and this read (far more under -race on a loaded machine).
		slack, late = e.u/10, e.u/2
	}
	if got > want+slack || got < want-late {
		tb.Errorf("PTTL %s = %v, want %v (at most %v less)", key, got, want, late)
	}
}

// dump renders every key under the test's prefix with its value.
func (e *env) dump(tb testing.TB) string { return e.srv.Dump(tb) }

// counter is a go-redis hook counting commands by name.
type counter struct {
	mu sync.Mutex
	n  map[string]int
}

func (c *counter) add(cmds ...redis.Cmder) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, cmd := range cmds {
		c.n[strings.ToLower(cmd.Name())]++
	}
}

// count returns how many times cmd ran since the last reset.
func (c *counter) count(cmd string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.n[cmd]
}

func (c *counter) reset() {
	c.mu.Lock()
	defer c.mu.Unlock()
	clear(c.n)
}

func (c *counter) DialHook(next redis.DialHook) redis.DialHook { return next }

func (c *counter) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		c.add(cmd)
		return next(ctx, cmd)
	}
}

func (c *counter) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		c.add(cmds...)
		return next(ctx, cmds)
	}
}
