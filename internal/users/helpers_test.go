package users_test

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/llmgate/llmgate/internal/logtest"
	"github.com/llmgate/llmgate/internal/redistest"
	"github.com/llmgate/llmgate/internal/users"
	"github.com/redis/go-redis/v9"
)

var (
	secret      = []byte("0123456789abcdef0123456789abcdef-test-secret")
	otherSecret = []byte("another secret, also at least thirty-two bytes long")
)

const day = 24 * time.Hour

// env is one test's Redis, fake clock and log.
type env struct {
	srv  *redistest.Server
	mu   sync.Mutex
	now  time.Time
	logs *logtest.Buffer
}

func newEnv(tb testing.TB, srv *redistest.Server) *env {
	tb.Helper()
	return &env{
		srv:  srv,
		now:  time.Date(2030, 1, 2, 3, 4, 5, 6000, time.UTC),
		logs: &logtest.Buffer{},
	}
}

// clock is the stores' clock. It is fake on real Redis too: the store keeps
// its schedule by its own clock, and only claim leases expire by Redis time.
func (e *env) clock() time.Time {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.now
}

// advance moves the fake clock by d.
func (e *env) advance(d time.Duration) {
	e.mu.Lock()
	e.now = e.now.Add(d)
	e.mu.Unlock()
}

// store starts a Store on the test's Redis with a 24h re-check, edited by
// mod, and closes it when the test ends.
func (e *env) store(tb testing.TB, mod func(*users.Config)) *users.Store {
	tb.Helper()
	cfg := users.Config{
		Prefix:          e.srv.Prefix,
		Secret:          secret,
		RecheckInterval: day,
		Now:             e.clock,
		Logger:          slog.New(slog.NewTextHandler(e.logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
	}
	if mod != nil {
		mod(&cfg)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	s, err := users.New(ctx, e.srv.Client, cfg)
	if err != nil {
		tb.Fatalf("users.New: %v", err)
	}
	tb.Cleanup(func() { s.Close() })
	return s
}

// person returns a Person for email with the identity fields filled.
func person(email string) users.Person {
	return users.Person{
		Email:   email,
		Name:    "Name of " + email,
		Subject: "sub-" + email,
		Issuer:  "https://idp.example.com",
		Groups:  []string{"eng", "ml"},
	}
}

// login records a sign-in of email with refresh token rt.
func login(tb testing.TB, s *users.Store, email, rt string) {
	tb.Helper()
	if err := s.Login(context.Background(), person(email), rt); err != nil {
		tb.Fatalf("Login(%q): %v", email, err)
	}
}

// due calls Due and returns email → refresh token.
func due(tb testing.TB, s *users.Store, limit int) map[string]string {
	tb.Helper()
	list, err := s.Due(context.Background(), limit)
	if err != nil {
		tb.Fatalf("Due(%d): %v", limit, err)
	}
	got := map[string]string{}
	for _, d := range list {
		if _, dup := got[d.Person.Email]; dup {
			tb.Fatalf("Due(%d) returned %s twice", limit, d.Person.Email)
		}
		got[d.Person.Email] = d.RefreshToken
	}
	return got
}

// key is the full name of a key of the store under the test's prefix.
func (e *env) key(name string) string { return e.srv.Prefix + name }

// dump renders every key under the test's prefix with its value.
func (e *env) dump(tb testing.TB) string { return e.srv.Dump(tb) }

// gate is a go-redis hook that counts commands and, while closed, fails
// them without sending them.
type gate struct {
	mu     sync.Mutex
	closed bool
	n      int
}

var errGateClosed = fmt.Errorf("test gate: Redis is unreachable")

func (g *gate) set(closed bool) {
	g.mu.Lock()
	g.closed, g.n = closed, 0
	g.mu.Unlock()
}

// count returns how many commands were attempted since the last set.
func (g *gate) count() int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.n
}

func (g *gate) pass(n int) error {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.n += n
	if g.closed {
		return errGateClosed
	}
	return nil
}

func (g *gate) DialHook(next redis.DialHook) redis.DialHook { return next }

func (g *gate) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		if err := g.pass(1); err != nil {
			cmd.SetErr(err)
			return err
		}
		return next(ctx, cmd)
	}
}

func (g *gate) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		if err := g.pass(len(cmds)); err != nil {
			for _, c := range cmds {
				c.SetErr(err)
			}
			return err
		}
		return next(ctx, cmds)
	}
}
