package users_test

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/llmgate/llmgate/internal/redistest"
	"github.com/llmgate/llmgate/internal/users"
	"github.com/redis/go-redis/v9"
)

func TestRefreshTokenStoredEncrypted(t *testing.T) {
	redistest.Each(t, func(t *testing.T, srv *redistest.Server) {
		e := newEnv(t, srv)
		s := e.store(t, nil)
		const rt = "refresh-token-Zm9vYmFyYmF6cXV4-do-not-store"
		login(t, s, "alice@example.com", rt)

		dump := e.dump(t)
		for _, needle := range []string{rt, "Zm9vYmFyYmF6cXV4"} {
			if strings.Contains(dump, needle) {
				t.Errorf("Redis holds %q in clear:\n%s", needle, dump)
			}
		}
		sealed, err := srv.Client.HGet(context.Background(), e.key("users:person:alice@example.com"), "rt").Result()
		if err != nil || len(sealed) < len(rt) {
			t.Fatalf("HGET rt = %d bytes, %v; want a sealed token", len(sealed), err)
		}

		e.advance(day)
		got := due(t, s, 10)
		if d := cmp.Diff(map[string]string{"alice@example.com": rt}, got); d != "" {
			t.Errorf("Due after a day (-want +got):\n%s", d)
		}
		if strings.Contains(e.logs.String(), rt) {
			t.Errorf("the refresh token appears in the log:\n%s", e.logs)
		}
	})
}

// A sealed token is bound to its person: copied to another, it does not open.
func TestRefreshTokenBoundToEmail(t *testing.T) {
	e := newEnv(t, redistest.Mini(t))
	s := e.store(t, nil)
	login(t, s, "alice@example.com", "alice-rt")
	login(t, s, "mallory@example.com", "mallory-rt")
	ctx := context.Background()
	c := e.srv.Client
	sealed, err := c.HGet(ctx, e.key("users:person:alice@example.com"), "rt").Result()
	if err != nil {
		t.Fatal(err)
	}
	if err := c.HSet(ctx, e.key("users:person:mallory@example.com"), "rt", sealed).Err(); err != nil {
		t.Fatal(err)
	}
	e.advance(day)
	if got := due(t, s, 10); len(got) != 1 || got["alice@example.com"] != "alice-rt" {
		t.Errorf("Due = %v, want only alice's token (mallory's copy of it must not open)", got)
	}
	if !strings.Contains(e.logs.String(), "mallory@example.com") {
		t.Errorf("no warning naming mallory@example.com in the log:\n%s", e.logs)
	}
}

// Another secret cannot decrypt: Due skips the person with a warning and
// reschedules them one interval later; the token is kept.
func TestRefreshTokenOtherSecret(t *testing.T) {
	redistest.Each(t, func(t *testing.T, srv *redistest.Server) {
		e := newEnv(t, srv)
		right := e.store(t, nil)
		wrong := e.store(t, func(c *users.Config) { c.Secret = otherSecret })
		const rt = "the-refresh-token-of-alice"
		login(t, right, "alice@example.com", rt)

		e.advance(day)
		list, err := wrong.Due(context.Background(), 10)
		if err != nil || len(list) != 0 {
			t.Fatalf("Due with another secret = %v, %v; want nothing, nil (the person skipped)", list, err)
		}
		logs := e.logs.String()
		if !strings.Contains(logs, "does not decrypt") || !strings.Contains(logs, "alice@example.com") {
			t.Errorf("no warning about alice's undecryptable token in the log:\n%s", logs)
		}
		if strings.Contains(logs, rt) {
			t.Errorf("the refresh token appears in the log:\n%s", logs)
		}
		score, err := srv.Client.ZScore(context.Background(), e.key("users:recheck"), "alice@example.com").Result()
		if want := float64(e.clock().Add(day).UnixMilli()); err != nil || score != want {
			t.Errorf("ZSCORE users:recheck alice = %v, %v; want now+interval %v", score, err, want)
		}
		if got := due(t, right, 10); len(got) != 0 {
			t.Errorf("Due with the right secret right after = %v, want nothing (rescheduled)", got)
		}
		e.advance(day)
		if got := due(t, right, 10); got["alice@example.com"] != rt {
			t.Errorf("Due with the right secret a day later = %v, want alice's token (kept)", got)
		}
	})
}

func TestDueSelectsPeople(t *testing.T) {
	redistest.Each(t, func(t *testing.T, srv *redistest.Server) {
		e := newEnv(t, srv)
		s := e.store(t, nil)
		ctx := context.Background()
		login(t, s, "due@example.com", "rt-due")
		login(t, s, "no-token@example.com", "")
		login(t, s, "dropped@example.com", "rt-dropped")
		login(t, s, "forgotten@example.com", "rt-forgotten")
		e.advance(time.Minute)
		login(t, s, "dropped@example.com", "") // new session without a refresh token
		if err := s.Forget(ctx, "forgotten@example.com"); err != nil {
			t.Fatalf("Forget: %v", err)
		}
		e.advance(time.Hour)
		login(t, s, "later@example.com", "rt-later")

		tests := []struct {
			name    string
			advance time.Duration // from the previous step
			want    map[string]string
		}{
			{"before anyone is due", day - time.Hour - time.Minute - time.Millisecond, map[string]string{}},
			{"exactly at the next check", time.Millisecond, map[string]string{"due@example.com": "rt-due"}},
			{"claimed people are not due again", time.Hour, map[string]string{}},
			{"the later one", time.Minute, map[string]string{"later@example.com": "rt-later"}},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				e.advance(tt.advance)
				if d := cmp.Diff(tt.want, due(t, s, 10)); d != "" {
					t.Errorf("Due at %v (-want +got):\n%s", e.clock(), d)
				}
			})
		}
		if got, err := s.Due(ctx, 0); err != nil || len(got) != 0 {
			t.Errorf("Due(0) = %v, %v; want nothing", got, err)
		}
	})
}

func TestDueLimit(t *testing.T) {
	e := newEnv(t, redistest.Mini(t))
	s := e.store(t, nil)
	for i := range 5 {
		login(t, s, fmt.Sprintf("p%d@example.com", i), "rt")
	}
	e.advance(day)
	a, b := due(t, s, 3), due(t, s, 3)
	if len(a) != 3 || len(b) != 2 {
		t.Errorf("Due(3) twice = %d then %d people, want 3 then 2", len(a), len(b))
	}
}

func TestRecheckOff(t *testing.T) {
	redistest.Each(t, func(t *testing.T, srv *redistest.Server) {
		e := newEnv(t, srv)
		s := e.store(t, func(c *users.Config) { c.RecheckInterval = 0 })
		login(t, s, "alice@example.com", "rt-not-kept")
		ctx := context.Background()
		if has, err := srv.Client.HExists(ctx, e.key("users:person:alice@example.com"), "rt").Result(); err != nil || has {
			t.Errorf("HEXISTS rt with the re-check off = %v, %v; want false (not kept)", has, err)
		}
		if n, _ := srv.Client.ZCard(ctx, e.key("users:recheck")).Result(); n != 0 {
			t.Errorf("ZCARD users:recheck = %d with the re-check off, want 0", n)
		}
		e.advance(10 * day)
		if got := due(t, s, 10); len(got) != 0 {
			t.Errorf("Due with the re-check off = %v, want nothing", got)
		}
	})
}

// Two replicas calling Due concurrently never both get the same person.
func TestDueReplicasClaimOnce(t *testing.T) {
	redistest.Each(t, func(t *testing.T, srv *redistest.Server) {
		e := newEnv(t, srv)
		replicas := []*users.Store{e.store(t, nil), e.store(t, nil)}
		const people = 60
		for i := range people {
			login(t, replicas[0], fmt.Sprintf("p%02d@example.com", i), fmt.Sprintf("rt-%02d", i))
		}
		e.advance(day)

		var mu sync.Mutex
		claimed := map[string][]string{} // email → who got it
		var wg sync.WaitGroup
		for r, s := range replicas {
			for w := range 4 {
				wg.Go(func() {
					for {
						list, err := s.Due(context.Background(), 4)
						if err != nil {
							t.Errorf("replica %d worker %d: Due: %v", r, w, err)
							return
						}
						if len(list) == 0 {
							return
						}
						mu.Lock()
						for _, d := range list {
							claimed[d.Person.Email] = append(claimed[d.Person.Email], fmt.Sprintf("replica %d worker %d", r, w))
						}
						mu.Unlock()
					}
				})
			}
		}
		wg.Wait()
		for _, s := range replicas { // whatever the workers left
			for email := range due(t, s, people) {
				claimed[email] = append(claimed[email], "final sweep")
			}
		}
		for email, who := range claimed {
			if len(who) != 1 {
				t.Errorf("%s was claimed %d times: %v", email, len(who), who)
			}
		}
		if len(claimed) != people {
			t.Errorf("%d people claimed, want %d", len(claimed), people)
		}
	})
}

// A claim not settled lapses after the lease; the first claimant's late
// report then does not release the second one's claim.
func TestDueClaimLapses(t *testing.T) {
	redistest.Each(t, func(t *testing.T, srv *redistest.Server) {
		e := newEnv(t, srv)
		const lease = 300 * time.Millisecond
		a := e.store(t, func(c *users.Config) { c.Lease = lease })
		b := e.store(t, func(c *users.Config) { c.Lease = lease })
		login(t, a, "alice@example.com", "rt-1")
		e.advance(day)
		if got := due(t, a, 10); got["alice@example.com"] != "rt-1" {
			t.Fatalf("replica A Due = %v, want alice", got)
		}
		if got := due(t, b, 10); len(got) != 0 {
			t.Fatalf("replica B Due while A holds the claim = %v, want nothing", got)
		}
		e.advance(lease)
		srv.FastForward(lease + 10*time.Millisecond)
		if got := due(t, b, 10); got["alice@example.com"] != "rt-1" {
			t.Fatalf("replica B Due after A's lease lapsed = %v, want alice", got)
		}
		// A, late, reports a transient failure: it must not release B's claim.
		if err := a.Postpone(context.Background(), "alice@example.com", time.Millisecond); err != nil {
			t.Fatalf("A.Postpone: %v", err)
		}
		if n, err := srv.Client.Exists(context.Background(), e.key("users:claim:alice@example.com")).Result(); err != nil || n != 1 {
			t.Errorf("EXISTS claim after A's late Postpone = %d, %v; want 1 (B's claim kept)", n, err)
		}
		e.advance(time.Millisecond)
		if got := due(t, a, 10); len(got) != 0 {
			t.Errorf("A Due while B holds the claim = %v, want nothing", got)
		}
	})
}

func TestChecked(t *testing.T) {
	tests := []struct {
		name    string
		rotated string // what the IdP returned
		want    string // the token due next time
	}{
		{"rotated", "rt-2", "rt-2"},
		{"not rotated", "", "rt-1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			redistest.Each(t, func(t *testing.T, srv *redistest.Server) {
				e := newEnv(t, srv)
				s := e.store(t, nil)
				other := e.store(t, nil)
				ctx := context.Background()
				login(t, s, "alice@example.com", "rt-1")
				e.advance(day)
				if got := due(t, s, 1); got["alice@example.com"] != "rt-1" {
					t.Fatalf("Due = %v, want alice", got)
				}
				e.advance(time.Second)
				checked := e.clock()
				if err := s.Checked(ctx, "Alice@example.com", tt.rotated); err != nil {
					t.Fatalf("Checked: %v", err)
				}
				p, err := s.Get(ctx, "alice@example.com")
				if err != nil || !p.LastCheck.Equal(checked) {
					t.Errorf("Get after Checked: LastCheck = %v, %v; want %v", p.LastCheck, err, checked)
				}
				if n, _ := srv.Client.Exists(ctx, e.key("users:claim:alice@example.com")).Result(); n != 0 {
					t.Errorf("claim key still exists after Checked")
				}
				// Released, but rescheduled: no other replica takes it now.
				if got := due(t, other, 1); len(got) != 0 {
					t.Errorf("other replica Due right after Checked = %v, want nothing", got)
				}
				e.advance(day - time.Millisecond)
				if got := due(t, other, 1); len(got) != 0 {
					t.Errorf("Due 1 ms before the next check = %v, want nothing", got)
				}
				e.advance(time.Millisecond)
				if got := due(t, other, 1); got["alice@example.com"] != tt.want {
					t.Errorf("Due a RecheckInterval after Checked = %v, want alice with %q", got, tt.want)
				}
			})
		})
	}
}

func TestPostpone(t *testing.T) {
	redistest.Each(t, func(t *testing.T, srv *redistest.Server) {
		e := newEnv(t, srv)
		s := e.store(t, nil)
		ctx := context.Background()
		login(t, s, "alice@example.com", "rt-1")
		e.advance(day)
		if got := due(t, s, 1); len(got) != 1 {
			t.Fatalf("Due = %v, want alice", got)
		}
		if err := s.Postpone(ctx, "alice@example.com", 0); err == nil {
			t.Errorf("Postpone(0): got nil error")
		}
		if err := s.Postpone(ctx, "alice@example.com", 10*time.Minute); err != nil {
			t.Fatalf("Postpone: %v", err)
		}
		e.advance(10*time.Minute - time.Millisecond)
		if got := due(t, s, 1); len(got) != 0 {
			t.Errorf("Due before the postponed time = %v, want nothing", got)
		}
		e.advance(time.Millisecond)
		if got := due(t, s, 1); got["alice@example.com"] != "rt-1" {
			t.Errorf("Due at the postponed time = %v, want alice", got)
		}
		p, err := s.Get(ctx, "alice@example.com")
		if err != nil || !p.LastCheck.IsZero() {
			t.Errorf("LastCheck after Postpone = %v, %v; want zero", p.LastCheck, err)
		}
	})
}

func TestForget(t *testing.T) {
	redistest.Each(t, func(t *testing.T, srv *redistest.Server) {
		e := newEnv(t, srv)
		s := e.store(t, nil)
		ctx := context.Background()
		login(t, s, "alice@example.com", "rt-1")
		before, err := s.Get(ctx, "alice@example.com")
		if err != nil {
			t.Fatal(err)
		}
		lastBefore, _ := s.LastLogin("alice@example.com")
		e.advance(day)
		if got := due(t, s, 1); len(got) != 1 {
			t.Fatalf("Due = %v, want alice", got)
		}
		if err := s.Forget(ctx, "alice@example.com"); err != nil {
			t.Fatalf("Forget: %v", err)
		}
		if has, _ := srv.Client.HExists(ctx, e.key("users:person:alice@example.com"), "rt").Result(); has {
			t.Errorf("the refresh token is still stored after Forget")
		}
		e.advance(10 * day)
		if got := due(t, s, 1); len(got) != 0 {
			t.Errorf("Due after Forget = %v, want nothing", got)
		}
		after, err := s.Get(ctx, "alice@example.com")
		if err != nil {
			t.Fatalf("Get after Forget: %v", err)
		}
		if d := cmp.Diff(before, after); d != "" {
			t.Errorf("person changed by Forget (-before +after):\n%s", d)
		}
		if last, ok := s.LastLogin("alice@example.com"); !ok || !last.Equal(lastBefore) {
			t.Errorf("LastLogin after Forget = %v, %v; want %v", last, ok, lastBefore)
		}
		// Signing in again schedules them again.
		login(t, s, "alice@example.com", "rt-new")
		e.advance(day)
		if got := due(t, s, 1); got["alice@example.com"] != "rt-new" {
			t.Errorf("Due a day after signing in again = %v, want alice with rt-new", got)
		}
	})
}

// A replica that read the schedule before another finished a re-check, and
// wins the claim after that one released it, backs off: the person is no
// longer due.
func TestDueStaleCandidate(t *testing.T) {
	redistest.Each(t, func(t *testing.T, srv *redistest.Server) {
		e := newEnv(t, srv)
		a := e.store(t, nil)
		// Replica B on a client of its own: between B's read of the schedule
		// and B's claim, A claims, re-checks and releases.
		opt := &redis.Options{Addr: srv.Addr}
		if srv.Real() {
			var err error
			if opt, err = redis.ParseURL(redistest.RealURL(t)); err != nil {
				t.Fatal(err)
			}
		}
		cb := redis.NewClient(opt)
		t.Cleanup(func() { cb.Close() })
		var once sync.Once
		cb.AddHook(&beforeClaim{fn: func() {
			once.Do(func() {
				if got := due(t, a, 1); got["alice@example.com"] != "rt-1" {
					t.Errorf("A.Due, between B's read and B's claim = %v, want alice", got)
				}
				if err := a.Checked(context.Background(), "alice@example.com", "rt-2"); err != nil {
					t.Errorf("A.Checked: %v", err)
				}
			})
		}})
		b, err := users.New(context.Background(), cb, users.Config{Prefix: srv.Prefix, Secret: secret, RecheckInterval: day, Now: e.clock, Logger: slog.New(slog.NewTextHandler(e.logs, nil))})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { b.Close() })

		login(t, a, "alice@example.com", "rt-1")
		e.advance(day)
		if got := due(t, b, 1); len(got) != 0 {
			t.Errorf("B.Due, claiming after A's Checked = %v, want nothing (refreshing rt-2 again at once)", got)
		}
		if n, _ := srv.Client.Exists(context.Background(), e.key("users:claim:alice@example.com")).Result(); n != 0 {
			t.Errorf("B left its claim on a person it skipped; log:\n%s", e.logs)
		}
	})
}

// beforeClaim is a go-redis hook that calls fn before sending a pipeline
// that takes claims (SET … NX).
type beforeClaim struct{ fn func() }

func (h *beforeClaim) DialHook(next redis.DialHook) redis.DialHook          { return next }
func (h *beforeClaim) ProcessHook(next redis.ProcessHook) redis.ProcessHook { return next }
func (h *beforeClaim) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		if len(cmds) > 0 && cmds[0].Name() == "set" && strings.Contains(fmt.Sprint(cmds[0].Args()), "users:claim:") {
			h.fn()
		}
		return next(ctx, cmds)
	}
}
