package tokens

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/llmgate/llmgate/internal/redistest"
)

// TestRevocationReachesReplicas: two replicas on one Redis; a revocation
// made on one is refused by the other, which has the token cached, within
// one second. The observed delay is logged.
func TestRevocationReachesReplicas(t *testing.T) {
	redistest.Each(t, func(t *testing.T, srv *redistest.Server) {
		ctx := context.Background()
		a := newService(t, srv)
		b := newService(t, srv)
		tests := []struct {
			name   string
			email  string
			action func(id string) error
			want   error
		}{
			{"revoke", "erin@example.com", func(id string) error { _, err := a.Revoke(ctx, id, "erin@example.com"); return err }, ErrRevoked},
			{"block", "frank@example.com", func(string) error { return a.Block(ctx, "frank@example.com", "admin@example.com") }, ErrUserBlocked},
			{"revoke user", "grace@example.com", func(string) error { _, err := a.RevokeUser(ctx, "grace@example.com", "admin@example.com"); return err }, ErrUserRevoked},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				raw, rec := issue(t, a, IssueRequest{Email: tt.email})
				verifyOK(t, b, raw) // cached on b
				start := time.Now()
				if err := tt.action(rec.ID); err != nil {
					t.Fatalf("%s: %v", tt.name, err)
				}
				delay := waitRefused(t, b, raw, tt.want, start)
				t.Logf("%s on replica a refused on replica b after %v", tt.name, delay)
			})
		}
		t.Run("unblock", func(t *testing.T) {
			raw, _ := issue(t, a, IssueRequest{Email: "heidi@example.com"})
			verifyOK(t, b, raw)
			if err := a.Block(ctx, "heidi@example.com", "admin"); err != nil {
				t.Fatalf("Block: %v", err)
			}
			waitRefused(t, b, raw, ErrUserBlocked, time.Now())
			if !b.Blocked("Heidi@Example.com") {
				t.Errorf("Blocked(heidi) = false on the other replica")
			}
			start := time.Now()
			if err := a.Unblock(ctx, "heidi@example.com", "admin"); err != nil {
				t.Fatalf("Unblock: %v", err)
			}
			for {
				if _, err := b.Verify(ctx, raw, ScopeLLM); err == nil {
					break
				}
				if time.Since(start) > time.Second {
					t.Fatalf("token still refused 1s after Unblock on the other replica")
				}
				time.Sleep(time.Millisecond)
			}
			t.Logf("unblock reached replica b after %v", time.Since(start))
		})
	})
}

// TestQuickUnblockStays: a replica that blocks and at once unblocks a
// person must not be re-blocked by the late echo of its own block event.
func TestQuickUnblockStays(t *testing.T) {
	redistest.Each(t, func(t *testing.T, srv *redistest.Server) {
		ctx := context.Background()
		a := newService(t, srv)
		b := newService(t, srv)
		for i := range 20 {
			if err := a.Block(ctx, "ivan@example.com", "admin"); err != nil {
				t.Fatalf("Block: %v", err)
			}
			if err := a.Unblock(ctx, "ivan@example.com", "admin"); err != nil {
				t.Fatalf("Unblock: %v", err)
			}
			// Watch long enough for both echoes to arrive.
			for deadline := time.Now().Add(50 * time.Millisecond); time.Now().Before(deadline); {
				if a.Blocked("ivan@example.com") {
					t.Fatalf("round %d: Blocked(ivan) = true on the replica that unblocked him, after its own block echoed back", i)
				}
				time.Sleep(100 * time.Microsecond)
			}
		}
		// Other replicas apply both events, in order.
		deadline := time.Now().Add(time.Second)
		for b.Blocked("ivan@example.com") {
			if time.Now().After(deadline) {
				t.Fatal("Blocked(ivan) still true on the other replica 1s after the last unblock")
			}
			time.Sleep(time.Millisecond)
		}
	})
}

// waitRefused polls Verify on s until it refuses raw with want, failing
// after one second; it returns the delay since start.
func waitRefused(tb testing.TB, s *Service, raw string, want error, start time.Time) time.Duration {
	tb.Helper()
	for {
		_, err := s.Verify(context.Background(), raw, ScopeLLM)
		if errors.Is(err, want) {
			return time.Since(start)
		}
		if err != nil {
			tb.Fatalf("Verify = %v, want nil or %v", err, want)
		}
		if time.Since(start) > time.Second {
			tb.Fatalf("token still accepted 1s after the change on the other replica")
		}
		time.Sleep(time.Millisecond)
	}
}

// TestResyncRepairsLostMessages: a revocation whose message was lost (here:
// written to Redis without publishing) is applied by the next resync.
func TestResyncRepairsLostMessages(t *testing.T) {
	redistest.Each(t, func(t *testing.T, srv *redistest.Server) {
		ctx := context.Background()
		s := newService(t, srv)
		raw, rec := issue(t, s, IssueRequest{})
		verifyOK(t, s, raw)
		if err := srv.Client.ZAdd(ctx, s.revokedKey(), redis.Z{Score: float64(rec.ExpiresAt.Unix()), Member: rec.ID}).Err(); err != nil {
			t.Fatalf("ZADD: %v", err)
		}
		if err := srv.Client.HSet(ctx, s.blockedKey(), "ivan@example.com", `{"by":"admin"}`).Err(); err != nil {
			t.Fatalf("HSET: %v", err)
		}
		verifyOK(t, s, raw) // not yet known
		if err := s.resync(ctx); err != nil {
			t.Fatalf("resync: %v", err)
		}
		wantRefused(t, s, raw, ScopeLLM, ErrRevoked)
		if !s.Blocked("ivan@example.com") {
			t.Errorf("Blocked(ivan) = false after resync")
		}
	})
}

// TestResyncKeepsConcurrentEvents: an event that arrives while a resync is
// reading Redis survives the snapshot that replaces the state.
func TestResyncKeepsConcurrentEvents(t *testing.T) {
	r := newRevocations()
	r.startRecording()
	r.apply(event{Type: evRevoke, ID: "a", Exp: 1})
	r.apply(event{Type: evBlock, Email: "x@example.com"})
	r.apply(event{Type: evUnblock, Email: "x@example.com"})
	r.replace(map[string]int64{"b": 1}, map[string]Block{"x@example.com": {}}, map[string]int64{}, 0, 0)
	if err := r.check("a", "y@example.com", 0); !errors.Is(err, ErrRevoked) {
		t.Errorf("check(a) after replace = %v, want ErrRevoked (event replayed)", err)
	}
	if err := r.check("b", "y@example.com", 0); !errors.Is(err, ErrRevoked) {
		t.Errorf("check(b) after replace = %v, want ErrRevoked (from the snapshot)", err)
	}
	if err := r.check("c", "x@example.com", 0); err != nil {
		t.Errorf("check(x) after replace = %v, want nil (unblock replayed after the snapshot's block)", err)
	}
}

// TestResyncKeepsRevocations: a snapshot that lacks a known revocation
// (Redis lost its data) does not un-revoke the token; an unblock does
// remove a block; expired revocations are dropped.
func TestResyncKeepsRevocations(t *testing.T) {
	r := newRevocations()
	r.apply(event{Type: evRevoke, ID: "live", Exp: 100})
	r.apply(event{Type: evRevoke, ID: "old", Exp: 10})
	r.apply(event{Type: evRevokeSince, Email: "a@example.com", At: 500})
	r.apply(event{Type: evBlock, Email: "b@example.com"})
	r.startRecording()
	r.replace(map[string]int64{}, map[string]Block{}, map[string]int64{}, 50, 0)
	if err := r.check("live", "c@example.com", 0); !errors.Is(err, ErrRevoked) {
		t.Errorf("check(live) after an empty snapshot = %v, want ErrRevoked", err)
	}
	if _, ok := r.jtis["old"]; ok {
		t.Errorf("expired revocation kept after resync")
	}
	if err := r.check("x", "a@example.com", 400); !errors.Is(err, ErrUserRevoked) {
		t.Errorf("check(a) after an empty snapshot = %v, want ErrUserRevoked", err)
	}
	if err := r.check("x", "b@example.com", 0); err != nil {
		t.Errorf("check(b) = %v, want nil (the snapshot has no block)", err)
	}
}

// commandCounter counts the commands a client sends.
type commandCounter struct {
	mu sync.Mutex
	n  map[string]int
}

func countCommands(tb testing.TB, c redis.UniversalClient) *commandCounter {
	tb.Helper()
	cc := &commandCounter{n: map[string]int{}}
	c.AddHook(cc)
	return cc
}

func (cc *commandCounter) add(cmds ...redis.Cmder) {
	cc.mu.Lock()
	for _, c := range cmds {
		cc.n[strings.ToLower(c.Name())]++
		cc.n[""]++
	}
	cc.mu.Unlock()
}

func (cc *commandCounter) get(name string) int {
	cc.mu.Lock()
	defer cc.mu.Unlock()
	return cc.n[name]
}

func (cc *commandCounter) DialHook(next redis.DialHook) redis.DialHook { return next }
func (cc *commandCounter) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error { cc.add(cmd); return next(ctx, cmd) }
}
func (cc *commandCounter) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error { cc.add(cmds...); return next(ctx, cmds) }
}

// quiet stops the periodic background work for the length of a test.
func quiet(c *Config) {
	c.healthInterval, c.flushInterval, c.rotationCheckInterval, c.ResyncInterval = time.Hour, time.Hour, time.Hour, time.Hour
}

// TestSeenTokenNoRoundTrip: verifying a token seen before sends nothing to
// Redis; the first verification reads its record once.
func TestSeenTokenNoRoundTrip(t *testing.T) {
	redistest.Each(t, func(t *testing.T, srv *redistest.Server) {
		s := newService(t, srv, quiet)
		raw, _ := issue(t, s, IssueRequest{})
		cc := countCommands(t, srv.Client)
		verifyOK(t, s, raw)
		if n := cc.get(""); n != 1 {
			t.Fatalf("first Verify sent %d commands, want 1 (read the record)", n)
		}
		for range 1000 {
			verifyOK(t, s, raw)
		}
		if n := cc.get(""); n != 1 {
			t.Fatalf("1000 Verify of a seen token sent %d more commands, want 0", n-1)
		}
	})
}

// TestLastUsedBatched: last_used_at is written in the background, at most
// once per token every 5 seconds, whatever the request rate.
func TestLastUsedBatched(t *testing.T) {
	redistest.Each(t, func(t *testing.T, srv *redistest.Server) {
		ctx := context.Background()
		clk := newClock()
		s := newService(t, srv, withClock(clk), quiet)
		raw, rec := issue(t, s, IssueRequest{})
		cc := countCommands(t, srv.Client)
		for range 500 {
			verifyOK(t, s, raw)
		}
		if n := cc.get("evalsha"); n != 0 {
			t.Fatalf("Verify wrote last_used_at synchronously (%d writes)", n)
		}
		got, _ := s.Get(ctx, rec.ID) // the pending time is shown before it is written
		if !got.LastUsedAt.Equal(clk.Now()) {
			t.Errorf("Get LastUsedAt = %v, want the pending %v", got.LastUsedAt, clk.Now())
		}
		s.flushLastUsed(ctx)
		if n := cc.get("evalsha"); n != 1 {
			t.Fatalf("flush wrote %d last_used_at updates for 500 uses, want 1", n)
		}
		first := clk.Now()
		clk.Advance(2 * time.Second)
		for range 100 {
			verifyOK(t, s, raw)
		}
		s.flushLastUsed(ctx)
		if n := cc.get("evalsha"); n != 1 {
			t.Fatalf("uses within 5s were written again (%d writes)", n)
		}
		stored, err := s.readRecord(ctx, rec.ID)
		if err != nil || !stored.LastUsedAt.Equal(first) {
			t.Fatalf("stored LastUsedAt = %v, %v; want %v", stored.LastUsedAt, err, first)
		}
		clk.Advance(4 * time.Second)
		verifyOK(t, s, raw)
		s.Close() // flushes
		stored, err = s.readRecord(ctx, rec.ID)
		if err != nil || !stored.LastUsedAt.Equal(clk.Now()) {
			t.Fatalf("stored LastUsedAt after Close = %v, %v; want %v", stored.LastUsedAt, err, clk.Now())
		}
		// A write for a purged record does not recreate it.
		srv.Client.Del(ctx, s.tokKey(rec.ID))
		s.used.note(rec.ID, clk.Now().UnixMilli())
		s.flushLastUsed(ctx)
		if n, _ := srv.Client.Exists(ctx, s.tokKey(rec.ID)).Result(); n != 0 {
			t.Fatalf("last-used write recreated a purged record")
		}
	})
}

// TestOutage: with Redis failing, tokens already seen keep working from
// memory, first-seen tokens get ErrUnavailable (or pass with FailOpen), and
// Healthy says so. Runs on miniredis, which can be made to fail.
func TestOutage(t *testing.T) {
	srv := redistest.Mini(t)
	ctx := context.Background()
	clk := newClock()
	fast := func(c *Config) { c.healthInterval = 10 * time.Millisecond }
	closed := newService(t, srv, withClock(clk), fast)
	open := newService(t, srv, withClock(clk), fast, func(c *Config) { c.FailOpen = true })
	seen, _ := issue(t, closed, IssueRequest{})
	fresh, freshRec := issue(t, closed, IssueRequest{CIDRs: []string{"10.0.0.0/8"}})
	verifyOK(t, closed, seen)
	verifyOK(t, open, seen)

	srv.Mini.SetError("LOADING simulated outage")
	waitHealthy(t, closed, false)
	verifyOK(t, closed, seen)
	verifyOK(t, open, seen)
	err := wantRefused(t, closed, fresh, ScopeLLM, ErrUnavailable)
	t.Logf("closed: %v", err)
	c := verifyOK(t, open, fresh)
	if c.AllowsAddr(mustAddr(t, "192.0.2.1")) {
		t.Errorf("fail-open token lost its signed CIDR limit")
	}
	if _, err := closed.Revoke(ctx, freshRec.ID, "x"); !errors.Is(err, ErrUnavailable) {
		t.Errorf("Revoke during the outage = %v, want ErrUnavailable", err)
	}

	srv.Mini.SetError("")
	waitHealthy(t, closed, true)
	waitHealthy(t, open, true)
	verifyOK(t, closed, fresh)
	// The fail-open entry reads its record once Redis is back: deleted → refused.
	srv.Client.Del(ctx, closed.tokKey(freshRec.ID))
	clk.Advance(time.Second)
	err = wantRefused(t, open, fresh, ScopeLLM, ErrRevoked)
	t.Logf("fail-open token confirmed after the outage: %v", err)
}

func waitHealthy(tb testing.TB, s *Service, want bool) {
	tb.Helper()
	deadline := time.Now().Add(3 * time.Second)
	for s.Healthy() != want {
		if time.Now().After(deadline) {
			tb.Fatalf("Healthy() = %v after 3s, want %v", !want, want)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestReconnectResyncs: when the Redis connection drops and comes back,
// the revocation state is reloaded at once (messages sent meanwhile are
// lost), not at the next periodic resync. Runs on miniredis, which can be
// restarted.
func TestReconnectResyncs(t *testing.T) {
	srv := redistest.Mini(t)
	ctx := context.Background()
	s := newService(t, srv, quiet, func(c *Config) { c.healthInterval = 20 * time.Millisecond })
	raw, rec := issue(t, s, IssueRequest{})
	verifyOK(t, s, raw)
	// A revocation whose message this replica will never get.
	if err := srv.Client.ZAdd(ctx, s.revokedKey(), redis.Z{Score: float64(rec.ExpiresAt.Unix()), Member: rec.ID}).Err(); err != nil {
		t.Fatalf("ZADD: %v", err)
	}
	srv.Mini.Close()
	waitHealthy(t, s, false)
	verifyOK(t, s, raw) // from memory during the outage
	if err := srv.Mini.Restart(); err != nil {
		t.Fatalf("restart miniredis: %v", err)
	}
	start := time.Now()
	waitRefused(t, s, raw, ErrRevoked, start)
	t.Logf("state reloaded %v after Redis came back", time.Since(start))
	waitHealthy(t, s, true)
}
