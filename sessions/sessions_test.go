package sessions_test

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/redis/go-redis/v9"

	"github.com/llmgate/llmgate/internal/redistest"
	"github.com/llmgate/llmgate/sessions"
)

func TestCreateGet(t *testing.T) {
	t.Parallel()
	redistest.Each(t, func(t *testing.T, srv *redistest.Server) {
		e := newEnv(t, srv, func(u time.Duration) sessions.Config {
			return sessions.Config{TTL: 24 * u, IdleTimeout: 8 * u}
		})
		ctx := context.Background()
		start := e.clock()
		in := sessions.Session{
			ID:          "attacker-chosen-id",
			Handle:      "attacker-chosen-handle",
			Email:       " Alice@Example.COM ",
			Subject:     "alice-sub",
			Name:        "Alice",
			Groups:      []string{"eng", "admins"},
			Admin:       true,
			Issuer:      "https://idp.example.com",
			IDTokenHint: "eyJhbGciOi.fake.token",
			CreatedAt:   time.Unix(1, 0),
		}
		sess, err := e.store.Create(ctx, in)
		if err != nil {
			t.Fatalf("Create: %v", err)
		}
		raw, err := base64.RawURLEncoding.DecodeString(sess.ID)
		if err != nil || len(raw) != 32 {
			t.Errorf("Create: ID %q is not 32 bytes of base64url (decode error %v, %d bytes)", sess.ID, err, len(raw))
		}
		sum := sha256.Sum256([]byte(sess.ID))
		if want := hex.EncodeToString(sum[:]); sess.Handle != want {
			t.Errorf("Create: Handle = %q, want hex SHA-256 of ID %q", sess.Handle, want)
		}
		if sess.ID == in.ID || sess.Handle == in.Handle {
			t.Errorf("Create kept the caller's ID or Handle: %q, %q", sess.ID, sess.Handle)
		}
		if sess.Email != "alice@example.com" {
			t.Errorf("Create: Email = %q, want alice@example.com", sess.Email)
		}
		if sess.CreatedAt.Before(start) || !sess.LastSeenAt.Equal(sess.CreatedAt) {
			t.Errorf("Create: CreatedAt = %v, LastSeenAt = %v, want both now (%v or later)", sess.CreatedAt, sess.LastSeenAt, start)
		}
		if want := sess.CreatedAt.Add(24 * e.u); !sess.ExpiresAt.Equal(want) {
			t.Errorf("Create: ExpiresAt = %v, want CreatedAt+TTL = %v", sess.ExpiresAt, want)
		}

		got, err := e.store.Get(ctx, sess.ID)
		if err != nil {
			t.Fatalf("Get(created ID): %v", err)
		}
		if diff := cmp.Diff(sess, got); diff != "" {
			t.Errorf("Get(created ID) differs from Create's result (-create +get):\n%s", diff)
		}
		e.checkTTL(t, "session:"+sess.Handle, sess.LastSeenAt.Add(8*e.u))

		dump := e.dump(t)
		if strings.Contains(dump, sess.ID) {
			t.Errorf("the session ID %q is stored in Redis:\n%s", sess.ID, dump)
		}
		for _, want := range []string{
			"string " + srv.Prefix + "session:" + sess.Handle + " = ",
			"zset " + srv.Prefix + "user-sessions:alice@example.com = [{",
			"set " + srv.Prefix + "session-users = [alice@example.com]",
		} {
			if !strings.Contains(dump, want) {
				t.Errorf("Redis lacks %q; it holds:\n%s", want, dump)
			}
		}
	})
}

func TestCreateRefusesEmptyEmail(t *testing.T) {
	t.Parallel()
	redistest.Each(t, func(t *testing.T, srv *redistest.Server) {
		e := newEnv(t, srv, nil)
		if _, err := e.store.Create(context.Background(), sessions.Session{Email: "  "}); err == nil {
			t.Error("Create with an empty email succeeded, want an error")
		}
	})
}

func TestCreateGivesNewIDs(t *testing.T) {
	t.Parallel()
	redistest.Each(t, func(t *testing.T, srv *redistest.Server) {
		e := newEnv(t, srv, nil)
		a := e.create(t, "alice@example.com")
		b := e.create(t, "alice@example.com")
		if a.ID == b.ID || a.Handle == b.Handle {
			t.Fatalf("two Creates gave the same ID or Handle: %q/%q and %q/%q", a.ID, a.Handle, b.ID, b.Handle)
		}
		for _, s := range []sessions.Session{a, b} {
			if _, err := e.store.Get(context.Background(), s.ID); err != nil {
				t.Errorf("Get(%q): %v", s.ID, err)
			}
		}
	})
}

func TestGetUnknown(t *testing.T) {
	t.Parallel()
	redistest.Each(t, func(t *testing.T, srv *redistest.Server) {
		e := newEnv(t, srv, nil)
		sess := e.create(t, "alice@example.com")
		flipped := []byte(sess.ID)
		flipped[0] ^= 'A' ^ 'B'
		if flipped[0] == sess.ID[0] {
			flipped[0] = 'C'
		}
		tests := []struct {
			name string
			id   string
		}{
			{"empty", ""},
			{"garbage", "not a session id"},
			{"never created", base64.RawURLEncoding.EncodeToString(make([]byte, 32))},
			{"one character changed", string(flipped)},
			{"handle as cookie", sess.Handle},
			{"ID with padding", sess.ID + "="},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				if _, err := e.store.Get(context.Background(), tt.id); !errors.Is(err, sessions.ErrNotFound) {
					t.Errorf("Get(%q) error = %v, want ErrNotFound", tt.id, err)
				}
			})
		}
	})
}

func TestGetCorrupt(t *testing.T) {
	t.Parallel()
	redistest.Each(t, func(t *testing.T, srv *redistest.Server) {
		e := newEnv(t, srv, nil)
		sess := e.create(t, "alice@example.com")
		if err := srv.Client.Set(context.Background(), srv.Prefix+"session:"+sess.Handle, "{not json", time.Minute).Err(); err != nil {
			t.Fatal(err)
		}
		_, err := e.store.Get(context.Background(), sess.ID)
		if err == nil || errors.Is(err, sessions.ErrNotFound) {
			t.Errorf("Get of a corrupt session error = %v, want a decode error that is not ErrNotFound", err)
		}
	})
}

// TestAbsoluteExpiry: a session in constant use still ends at ExpiresAt, and
// its idle window is cut short to end there too.
func TestAbsoluteExpiry(t *testing.T) {
	t.Parallel()
	redistest.Each(t, func(t *testing.T, srv *redistest.Server) {
		e := newEnv(t, srv, func(u time.Duration) sessions.Config {
			return sessions.Config{TTL: 4 * u, IdleTimeout: 2 * u, TouchInterval: u / 2}
		})
		ctx := context.Background()
		sess := e.create(t, "alice@example.com")
		key := "session:" + sess.Handle

		e.advance(3 * e.u / 2) // 1.5u
		got, err := e.store.Get(ctx, sess.ID)
		if err != nil {
			t.Fatalf("Get at 1.5u of TTL 4u: %v", err)
		}
		e.checkTTL(t, key, got.LastSeenAt.Add(2*e.u)) // a whole idle window: it ends before ExpiresAt
		e.advance(3 * e.u / 2)                        // 3u
		if _, err := e.store.Get(ctx, sess.ID); err != nil {
			t.Fatalf("Get at 3u of TTL 4u: %v", err)
		}
		e.checkTTL(t, key, sess.ExpiresAt) // the idle window would end at 5u: cut to ExpiresAt at 4u
		if n, err := srv.Client.Exists(ctx, srv.Prefix+"user-sessions:alice@example.com").Result(); err != nil || n != 1 {
			t.Errorf("index exists = %d, %v before expiry, want 1", n, err)
		}

		e.advance(3 * e.u / 2) // 4.5u
		if _, err := e.store.Get(ctx, sess.ID); !errors.Is(err, sessions.ErrNotFound) {
			t.Errorf("Get at 4.5u of TTL 4u error = %v, want ErrNotFound", err)
		}
		if list, err := e.store.ListByEmail(ctx, sess.Email); err != nil || len(list) != 0 {
			t.Errorf("ListByEmail after expiry = %v, %v, want none", list, err)
		}
		if n, err := srv.Client.ZCard(ctx, srv.Prefix+"user-sessions:alice@example.com").Result(); err != nil || n != 0 {
			t.Errorf("index ZCARD after expiry = %d, %v, want 0", n, err)
		}
		if emails, err := e.store.Emails(ctx); err != nil || len(emails) != 0 {
			t.Errorf("Emails after expiry = %q, %v, want none", emails, err)
		}
	})
}

func TestIdleTimeout(t *testing.T) {
	t.Parallel()
	redistest.Each(t, func(t *testing.T, srv *redistest.Server) {
		e := newEnv(t, srv, func(u time.Duration) sessions.Config {
			return sessions.Config{TTL: 10 * u, IdleTimeout: 2 * u, TouchInterval: u / 2}
		})
		ctx := context.Background()
		sess := e.create(t, "alice@example.com")

		e.advance(3 * e.u / 2) // 1.5u: within the first idle window, touches
		if _, err := e.store.Get(ctx, sess.ID); err != nil {
			t.Fatalf("Get at 1.5u of idle 2u: %v", err)
		}
		e.advance(3 * e.u / 2) // 3u: past the first window, within the slid one
		got, err := e.store.Get(ctx, sess.ID)
		if err != nil {
			t.Fatalf("Get at 3u after a touch at 1.5u (idle 2u): %v", err)
		}
		e.checkTTL(t, "session:"+sess.Handle, got.LastSeenAt.Add(2*e.u))
		if !got.LastSeenAt.After(sess.LastSeenAt) {
			t.Errorf("Get: LastSeenAt = %v, want later than %v", got.LastSeenAt, sess.LastSeenAt)
		}

		e.advance(5 * e.u / 2) // 5.5u: idle 2.5u
		if _, err := e.store.Get(ctx, sess.ID); !errors.Is(err, sessions.ErrNotFound) {
			t.Errorf("Get after 2.5u idle (timeout 2u) error = %v, want ErrNotFound", err)
		}
		if list, err := e.store.ListByEmail(ctx, sess.Email); err != nil || len(list) != 0 {
			t.Errorf("ListByEmail after idle expiry = %v, %v, want none", list, err)
		}
		if n, err := srv.Client.ZCard(ctx, srv.Prefix+"user-sessions:alice@example.com").Result(); err != nil || n != 0 {
			t.Errorf("index ZCARD after ListByEmail of an idled-out session = %d, %v, want 0 (pruned)", n, err)
		}
	})
}

// TestExpiryFollowsClock: the store's clock decides, even while Redis still
// holds the key (clock skew between replicas and Redis).
func TestExpiryFollowsClock(t *testing.T) {
	t.Parallel()
	type step struct {
		skew    time.Duration
		wantErr error
	}
	const ms = time.Millisecond
	tests := []struct {
		name  string
		steps []step
	}{
		{"idle", []step{{2*time.Hour - ms, nil}, {2 * time.Hour, sessions.ErrNotFound}}},
		{"absolute", []step{
			{90 * time.Minute, nil},
			{90 * time.Minute, nil},
			{time.Hour - ms, nil},
			{ms, sessions.ErrNotFound},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t, redistest.Mini(t), func(u time.Duration) sessions.Config {
				return sessions.Config{TTL: 4 * u, IdleTimeout: 2 * u, TouchInterval: u / 2}
			})
			sess := e.create(t, "alice@example.com")
			var total time.Duration
			for _, st := range tt.steps {
				e.skew(t, st.skew)
				total += st.skew
				if _, err := e.store.Get(context.Background(), sess.ID); !errors.Is(err, st.wantErr) {
					t.Errorf("Get %v after Create by the clock only (TTL 4h, idle 2h): error = %v, want %v", total, err, st.wantErr)
				}
			}
			if !e.srv.Mini.Exists(e.srv.Prefix + "session:" + sess.Handle) {
				t.Errorf("Redis no longer holds the key: the test did not separate clock from Redis expiry")
			}
		})
	}
}

// TestTouchInterval: Get is one GET, and writes only once per TouchInterval.
func TestTouchInterval(t *testing.T) {
	t.Parallel()
	redistest.Each(t, func(t *testing.T, srv *redistest.Server) {
		e := newEnv(t, srv, func(u time.Duration) sessions.Config {
			return sessions.Config{TTL: 10 * u, IdleTimeout: 4 * u, TouchInterval: 2 * u}
		})
		ctx := context.Background()
		sess := e.create(t, "alice@example.com")
		key := "session:" + sess.Handle
		get := func(t *testing.T, when string, wantWrites int) sessions.Session {
			t.Helper()
			e.cmds.reset()
			got, err := e.store.Get(ctx, sess.ID)
			if err != nil {
				t.Fatalf("Get %s: %v", when, err)
			}
			if n := e.cmds.count("get"); n != 1 {
				t.Errorf("Get %s sent %d GETs, want 1", when, n)
			}
			if n := e.cmds.count("set"); n != wantWrites {
				t.Errorf("Get %s sent %d SETs, want %d", when, n, wantWrites)
			}
			return got
		}

		e.advance(e.u) // 1u
		got := get(t, "1u after Create (touch interval 2u)", 0)
		if !got.LastSeenAt.Equal(sess.LastSeenAt) {
			t.Errorf("Get within the touch interval: LastSeenAt = %v, want unchanged %v", got.LastSeenAt, sess.LastSeenAt)
		}
		if st := e.stored(t, sess.Handle); !st.LastSeenAt.Equal(sess.LastSeenAt) {
			t.Errorf("stored LastSeenAt = %v after Get within the touch interval, want unchanged %v", st.LastSeenAt, sess.LastSeenAt)
		}
		e.checkTTL(t, key, sess.CreatedAt.Add(4*e.u))

		e.advance(e.u / 2) // 1.5u
		get(t, "1.5u after Create", 0)

		e.advance(e.u) // 2.5u
		got = get(t, "2.5u after Create", 1)
		if !got.LastSeenAt.After(sess.LastSeenAt) {
			t.Errorf("Get after the touch interval: LastSeenAt = %v, want after %v", got.LastSeenAt, sess.LastSeenAt)
		}
		if st := e.stored(t, sess.Handle); !st.LastSeenAt.Equal(got.LastSeenAt) {
			t.Errorf("stored LastSeenAt = %v, want the touched %v", st.LastSeenAt, got.LastSeenAt)
		}
		e.checkTTL(t, key, got.LastSeenAt.Add(4*e.u))

		again := get(t, "right after a touch", 0)
		if !again.LastSeenAt.Equal(got.LastSeenAt) {
			t.Errorf("Get right after a touch: LastSeenAt = %v, want %v", again.LastSeenAt, got.LastSeenAt)
		}
	})
}

// TestTouchDoesNotResurrect: a session deleted between Get's read and its
// touch stays deleted.
func TestTouchDoesNotResurrect(t *testing.T) {
	t.Parallel()
	srv := redistest.Mini(t) // needs the fake clock to force a touch
	e := newEnv(t, srv, nil)
	sess := e.create(t, "alice@example.com")
	e.advance(2 * time.Minute) // past the default touch interval of 1m
	key := srv.Prefix + "session:" + sess.Handle
	srv.Client.AddHook(&afterGet{key: key, fn: func() { srv.Mini.Del(key) }})
	if _, err := e.store.Get(context.Background(), sess.ID); !errors.Is(err, sessions.ErrNotFound) {
		t.Errorf("Get of a session deleted before its touch: error = %v, want ErrNotFound", err)
	}
	if srv.Mini.Exists(key) {
		t.Errorf("Get's touch brought a deleted session back")
	}
}

// afterGet is a go-redis hook that runs fn right after a GET of key.
type afterGet struct {
	key string
	fn  func()
}

func (h *afterGet) DialHook(next redis.DialHook) redis.DialHook { return next }

func (h *afterGet) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		err := next(ctx, cmd)
		if args := cmd.Args(); cmd.Name() == "get" && len(args) == 2 && args[1] == h.key {
			h.fn()
		}
		return err
	}
}

func (h *afterGet) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return next
}

func TestDelete(t *testing.T) {
	t.Parallel()
	redistest.Each(t, func(t *testing.T, srv *redistest.Server) {
		e := newEnv(t, srv, nil)
		ctx := context.Background()
		a := e.create(t, "alice@example.com")
		b := e.create(t, "alice@example.com")
		if err := e.store.Delete(ctx, a.ID); err != nil {
			t.Fatalf("Delete(a): %v", err)
		}
		if _, err := e.store.Get(ctx, a.ID); !errors.Is(err, sessions.ErrNotFound) {
			t.Errorf("Get(a) after Delete(a) error = %v, want ErrNotFound", err)
		}
		if _, err := e.store.Get(ctx, b.ID); err != nil {
			t.Errorf("Get(b) after Delete(a): %v", err)
		}
		if n, err := srv.Client.ZCard(ctx, srv.Prefix+"user-sessions:alice@example.com").Result(); err != nil || n != 1 {
			t.Errorf("index ZCARD after Delete = %d, %v, want 1", n, err)
		}
		for _, id := range []string{a.ID, "", "garbage", b.Handle} {
			if err := e.store.Delete(ctx, id); err != nil {
				t.Errorf("Delete(%q) of a missing session: %v, want nil", id, err)
			}
		}
		if _, err := e.store.Get(ctx, b.ID); err != nil {
			t.Errorf("Get(b) after Delete(b.Handle): %v (a handle must not delete as a cookie)", err)
		}
	})
}

func TestDeleteHandle(t *testing.T) {
	t.Parallel()
	redistest.Each(t, func(t *testing.T, srv *redistest.Server) {
		e := newEnv(t, srv, nil)
		ctx := context.Background()
		a := e.create(t, "alice@example.com")
		b := e.create(t, "alice@example.com")
		got, err := e.store.DeleteHandle(ctx, a.Handle)
		if err != nil {
			t.Fatalf("DeleteHandle(a): %v", err)
		}
		want := a
		want.ID = ""
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("DeleteHandle(a) returned (-want +got):\n%s", diff)
		}
		if _, err := e.store.Get(ctx, a.ID); !errors.Is(err, sessions.ErrNotFound) {
			t.Errorf("Get(a) after DeleteHandle(a) error = %v, want ErrNotFound", err)
		}
		if _, err := e.store.Get(ctx, b.ID); err != nil {
			t.Errorf("Get(b) after DeleteHandle(a): %v", err)
		}
		list, err := e.store.ListByEmail(ctx, "alice@example.com")
		if err != nil || len(list) != 1 || list[0].Handle != b.Handle {
			t.Errorf("ListByEmail after DeleteHandle(a) = %v, %v, want only b", list, err)
		}
		for _, tt := range []struct{ name, handle string }{
			{"deleted", a.Handle},
			{"empty", ""},
			{"not hex", "zz"},
			{"upper-case hex", strings.ToUpper(b.Handle)},
			{"cookie ID", b.ID},
		} {
			t.Run(tt.name, func(t *testing.T) {
				if _, err := e.store.DeleteHandle(ctx, tt.handle); !errors.Is(err, sessions.ErrNotFound) {
					t.Errorf("DeleteHandle(%q) error = %v, want ErrNotFound", tt.handle, err)
				}
			})
		}
		if _, err := e.store.Get(ctx, b.ID); err != nil {
			t.Errorf("Get(b) after failed DeleteHandles: %v", err)
		}
	})
}

func TestListByEmail(t *testing.T) {
	t.Parallel()
	redistest.Each(t, func(t *testing.T, srv *redistest.Server) {
		e := newEnv(t, srv, nil)
		ctx := context.Background()
		a1 := e.create(t, "alice@example.com")
		e.advance(e.u / 100)
		a2 := e.create(t, "Alice@Example.com")
		e.advance(e.u / 100)
		e.create(t, "bob@example.com")
		a3 := e.create(t, "ALICE@example.com")
		noID := func(ss ...sessions.Session) []sessions.Session {
			for i := range ss {
				ss[i].ID = ""
			}
			return ss
		}

		got, err := e.store.ListByEmail(ctx, "alice@EXAMPLE.com")
		if err != nil {
			t.Fatalf("ListByEmail: %v", err)
		}
		if diff := cmp.Diff(noID(a3, a2, a1), got); diff != "" {
			t.Errorf("ListByEmail(alice) (-want +got):\n%s", diff)
		}

		// a2's key vanishes (as if expired): it is not listed and leaves the index.
		if err := srv.Client.Del(ctx, srv.Prefix+"session:"+a2.Handle).Err(); err != nil {
			t.Fatal(err)
		}
		got, err = e.store.ListByEmail(ctx, "alice@example.com")
		if err != nil {
			t.Fatalf("ListByEmail: %v", err)
		}
		if diff := cmp.Diff(noID(a3, a1), got); diff != "" {
			t.Errorf("ListByEmail(alice) with a2 gone (-want +got):\n%s", diff)
		}
		members, err := srv.Client.ZRange(ctx, srv.Prefix+"user-sessions:alice@example.com", 0, -1).Result()
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range members {
			if m == a2.Handle {
				t.Errorf("index still holds the vanished session %s: %q", a2.Handle, members)
			}
		}
		if len(members) != 2 {
			t.Errorf("index = %q, want the 2 live handles", members)
		}

		if got, err := e.store.ListByEmail(ctx, "nobody@example.com"); err != nil || len(got) != 0 {
			t.Errorf("ListByEmail(nobody) = %v, %v, want none", got, err)
		}
	})
}

func TestDeleteByEmail(t *testing.T) {
	t.Parallel()
	redistest.Each(t, func(t *testing.T, srv *redistest.Server) {
		e := newEnv(t, srv, nil)
		ctx := context.Background()
		a1 := e.create(t, "alice@example.com")
		a2 := e.create(t, "alice@example.com")
		a3 := e.create(t, "alice@example.com")
		b := e.create(t, "bob@example.com")
		if err := srv.Client.Del(ctx, srv.Prefix+"session:"+a3.Handle).Err(); err != nil { // stale entry
			t.Fatal(err)
		}

		n, err := e.store.DeleteByEmail(ctx, "Alice@Example.com")
		if err != nil || n != 2 {
			t.Errorf("DeleteByEmail(alice) = %d, %v, want 2 (the stale entry is not counted)", n, err)
		}
		for _, s := range []sessions.Session{a1, a2} {
			if _, err := e.store.Get(ctx, s.ID); !errors.Is(err, sessions.ErrNotFound) {
				t.Errorf("Get(%s) after DeleteByEmail error = %v, want ErrNotFound", s.Handle, err)
			}
		}
		if _, err := e.store.Get(ctx, b.ID); err != nil {
			t.Errorf("Get(bob's session) after DeleteByEmail(alice): %v", err)
		}
		if n, err := srv.Client.Exists(ctx, srv.Prefix+"user-sessions:alice@example.com").Result(); err != nil || n != 0 {
			t.Errorf("alice's index exists = %d, %v after DeleteByEmail, want 0", n, err)
		}
		emails, err := e.store.Emails(ctx)
		if diff := cmp.Diff([]string{"bob@example.com"}, emails); err != nil || diff != "" {
			t.Errorf("Emails after DeleteByEmail(alice): err %v, (-want +got):\n%s", err, diff)
		}
		if ok, err := srv.Client.SIsMember(ctx, srv.Prefix+"session-users", "alice@example.com").Result(); err != nil || ok {
			t.Errorf("alice still in session-users = %v, %v", ok, err)
		}
		for _, email := range []string{"alice@example.com", "nobody@example.com"} {
			if n, err := e.store.DeleteByEmail(ctx, email); err != nil || n != 0 {
				t.Errorf("DeleteByEmail(%s) with no sessions = %d, %v, want 0, nil", email, n, err)
			}
		}
	})
}

func TestEmails(t *testing.T) {
	t.Parallel()
	redistest.Each(t, func(t *testing.T, srv *redistest.Server) {
		e := newEnv(t, srv, nil)
		ctx := context.Background()
		if got, err := e.store.Emails(ctx); err != nil || len(got) != 0 {
			t.Errorf("Emails of an empty store = %q, %v, want none", got, err)
		}
		e.create(t, "carol@example.com")
		e.create(t, "Bob@Example.com")
		e.create(t, "alice@example.com")
		c := e.create(t, "carol@example.com")
		e.create(t, "alice@example.com")
		got, err := e.store.Emails(ctx)
		if diff := cmp.Diff([]string{"alice@example.com", "bob@example.com", "carol@example.com"}, got); err != nil || diff != "" {
			t.Errorf("Emails: err %v, (-want +got):\n%s", err, diff)
		}

		if _, err := e.store.DeleteByEmail(ctx, "bob@example.com"); err != nil {
			t.Fatal(err)
		}
		if _, err := e.store.DeleteHandle(ctx, c.Handle); err != nil { // carol keeps one
			t.Fatal(err)
		}
		got, err = e.store.Emails(ctx)
		if diff := cmp.Diff([]string{"alice@example.com", "carol@example.com"}, got); err != nil || diff != "" {
			t.Errorf("Emails after bob's sessions ended: err %v, (-want +got):\n%s", err, diff)
		}
	})
}

// TestEmailsPrunes: an email whose index emptied by expiry leaves the set of
// users the next time Emails looks.
func TestEmailsPrunes(t *testing.T) {
	t.Parallel()
	redistest.Each(t, func(t *testing.T, srv *redistest.Server) {
		e := newEnv(t, srv, func(u time.Duration) sessions.Config {
			return sessions.Config{TTL: 2 * u}
		})
		ctx := context.Background()
		e.create(t, "alice@example.com")
		e.advance(e.u)
		e.create(t, "bob@example.com")
		e.advance(3 * e.u / 2) // alice's session expired, bob's has 0.5u left
		got, err := e.store.Emails(ctx)
		if diff := cmp.Diff([]string{"bob@example.com"}, got); err != nil || diff != "" {
			t.Errorf("Emails after alice's session expired: err %v, (-want +got):\n%s", err, diff)
		}
		members, err := srv.Client.SMembers(ctx, srv.Prefix+"session-users").Result()
		if diff := cmp.Diff([]string{"bob@example.com"}, members); err != nil || diff != "" {
			t.Errorf("session-users after Emails: err %v, (-want +got):\n%s", err, diff)
		}
	})
}

func TestConcurrentGet(t *testing.T) {
	t.Parallel()
	redistest.Each(t, func(t *testing.T, srv *redistest.Server) {
		e := newEnv(t, srv, func(u time.Duration) sessions.Config {
			return sessions.Config{TouchInterval: time.Nanosecond} // every Get touches
		})
		sess := e.create(t, "alice@example.com")
		var wg sync.WaitGroup
		errs := make(chan error, 16*10)
		for range 16 {
			wg.Go(func() {
				for range 10 {
					if _, err := e.store.Get(context.Background(), sess.ID); err != nil {
						errs <- err
					}
				}
			})
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Errorf("concurrent Get: %v", err)
		}
	})
}

func BenchmarkGet(b *testing.B) {
	for _, bb := range []struct {
		name string
		srv  func(testing.TB) *redistest.Server
	}{
		{"miniredis", redistest.Mini},
		{"redis", redistest.Real},
	} {
		b.Run(bb.name, func(b *testing.B) {
			e := newEnv(b, bb.srv(b), nil)
			sess := e.create(b, "alice@example.com")
			ctx := context.Background()
			b.ReportAllocs()
			for b.Loop() {
				if _, err := e.store.Get(ctx, sess.ID); err != nil {
					b.Fatalf("Get: %v", err)
				}
			}
		})
	}
}
