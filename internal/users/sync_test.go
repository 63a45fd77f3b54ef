package users_test

import (
	"context"
	"testing"
	"time"

	"github.com/llmgate/llmgate/internal/redistest"
	"github.com/llmgate/llmgate/internal/users"
	"github.com/redis/go-redis/v9"
)

// waitLastLogin polls s.LastLogin(email) until it is want, for up to
// within, and returns how long that took.
func waitLastLogin(tb testing.TB, s *users.Store, email string, want time.Time, within time.Duration) time.Duration {
	tb.Helper()
	start := time.Now()
	for {
		got, ok := s.LastLogin(email)
		if ok && got.Equal(want) {
			return time.Since(start)
		}
		if time.Since(start) > within {
			tb.Fatalf("LastLogin(%q) = %v, %v after %v; want %v", email, got, ok, within, want)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// A sign-in on one replica reaches another's LastLogin through pub/sub.
func TestLastLoginReplicates(t *testing.T) {
	redistest.Each(t, func(t *testing.T, srv *redistest.Server) {
		e := newEnv(t, srv)
		noReload := func(c *users.Config) { c.SyncInterval = time.Hour }
		a, b := e.store(t, noReload), e.store(t, noReload)
		if _, ok := b.LastLogin("alice@example.com"); ok {
			t.Fatal("LastLogin before any sign-in: ok = true")
		}
		for i := range 3 {
			e.advance(time.Hour)
			login(t, a, "alice@example.com", "")
			want := e.clock().Truncate(time.Millisecond)
			d := waitLastLogin(t, b, "Alice@Example.com", want, time.Second)
			t.Logf("sign-in %d on replica A seen by replica B after %v", i+1, d)
		}
	})
}

// A new replica loads the map at start; a sign-in whose announcement was
// lost arrives with the next reload.
func TestLastLoginLoadsAndReloads(t *testing.T) {
	redistest.Each(t, func(t *testing.T, srv *redistest.Server) {
		e := newEnv(t, srv)
		a := e.store(t, nil)
		login(t, a, "alice@example.com", "")
		want := e.clock().Truncate(time.Millisecond)

		b := e.store(t, func(c *users.Config) { c.SyncInterval = 50 * time.Millisecond })
		if got, ok := b.LastLogin("alice@example.com"); !ok || !got.Equal(want) {
			t.Errorf("LastLogin on a Store started after the sign-in = %v, %v; want %v", got, ok, want)
		}
		// Written as Login writes it, but never announced.
		later := want.Add(time.Hour)
		err := srv.Client.ZAdd(context.Background(), e.key("users:last-login"),
			redis.Z{Score: float64(later.UnixMilli()), Member: "bob@example.com"}).Err()
		if err != nil {
			t.Fatal(err)
		}
		d := waitLastLogin(t, b, "bob@example.com", later, 2*time.Second)
		t.Logf("unannounced sign-in picked up by the reload after %v", d)
		// A time older than the one known never moves it back.
		if got, _ := b.LastLogin("alice@example.com"); !got.Equal(want) {
			t.Errorf("LastLogin(alice) = %v after reloads, want %v", got, want)
		}
	})
}

// LastLogin answers from memory: with Redis unreachable it still answers,
// and it sends no command.
func TestLastLoginNeedsNoRedis(t *testing.T) {
	redistest.Each(t, func(t *testing.T, srv *redistest.Server) {
		e := newEnv(t, srv)
		g := &gate{}
		srv.Client.AddHook(g)
		t.Cleanup(func() { g.set(false) }) // before redistest's cleanup needs Redis
		s := e.store(t, func(c *users.Config) { c.SyncInterval = time.Hour })
		login(t, s, "alice@example.com", "")
		want := e.clock().Truncate(time.Millisecond)

		g.set(true)
		for range 1000 {
			if got, ok := s.LastLogin("alice@example.com"); !ok || !got.Equal(want) {
				t.Fatalf("LastLogin with Redis unreachable = %v, %v; want %v", got, ok, want)
			}
			if _, ok := s.LastLogin("nobody@example.com"); ok {
				t.Fatal("LastLogin(nobody) with Redis unreachable: ok = true")
			}
		}
		if n := g.count(); n != 0 {
			t.Errorf("2000 LastLogin calls sent %d Redis commands, want 0", n)
		}
		// Proof the gate works: Get does need Redis.
		if _, err := s.Get(context.Background(), "alice@example.com"); err == nil {
			t.Error("Get with Redis unreachable: got nil error (the gate does not work)")
		}
	})
}

func BenchmarkLastLogin(b *testing.B) {
	e := newEnv(b, redistest.Mini(b))
	s := e.store(b, nil)
	login(b, s, "alice@example.com", "")
	b.ReportAllocs()
	for b.Loop() {
		if _, ok := s.LastLogin("alice@example.com"); !ok {
			b.Fatal("not found")
		}
	}
}
