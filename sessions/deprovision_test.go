package sessions_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/llmgate/llmgate/internal/redistest"
	"github.com/llmgate/llmgate/sessions"
)

const (
	issuerA = "https://idp-a.example.com"
	issuerB = "https://idp-b.example.com"
)

// createUnder stores a session for email created under the identity
// provider session sid of issuer ("" for none).
func (e *env) createUnder(tb testing.TB, email, issuer, sid string) sessions.Session {
	tb.Helper()
	sess, err := e.store.Create(context.Background(), sessions.Session{
		Email:        email,
		Subject:      "sub-" + email,
		Issuer:       issuer,
		IDPSessionID: sid,
	})
	if err != nil {
		tb.Fatalf("Create(%s under %s %q): %v", email, issuer, sid, err)
	}
	return sess
}

// idpIndex is the key (without prefix) of the index of IdP session sid.
func idpIndex(issuer, sid string) string {
	sum := sha256.Sum256([]byte(issuer + "\x00" + sid))
	return "idp-session:" + hex.EncodeToString(sum[:])
}

// handles returns the members of the sorted set key (under the prefix).
func (e *env) handles(tb testing.TB, key string) []string {
	tb.Helper()
	m, err := e.srv.Client.ZRange(context.Background(), e.srv.Prefix+key, 0, -1).Result()
	if err != nil {
		tb.Fatalf("ZRANGE %s: %v", key, err)
	}
	return m
}

func TestDeleteByIDPSession(t *testing.T) {
	t.Parallel()
	redistest.Each(t, func(t *testing.T, srv *redistest.Server) {
		e := newEnv(t, srv, nil)
		ctx := context.Background()
		a1 := e.createUnder(t, "alice@example.com", issuerA, "sid-1")
		a2 := e.createUnder(t, "alice@example.com", issuerA, "sid-1") // a second login in the same IdP session
		a3 := e.createUnder(t, "alice@example.com", issuerA, "sid-2")
		b := e.createUnder(t, "bob@example.com", issuerA, "sid-3")
		c := e.createUnder(t, "carol@example.com", issuerB, "sid-1") // same sid, another provider
		n := e.createUnder(t, "dave@example.com", issuerA, "")
		e.cmds.reset()

		got, err := e.store.DeleteByIDPSession(ctx, issuerA, "sid-1")
		if err != nil || got != 2 {
			t.Fatalf("DeleteByIDPSession(A, sid-1) = %d, %v, want 2, nil", got, err)
		}
		for _, cmd := range []string{"multi", "exec", "eval", "evalsha", "keys", "scan"} {
			if c := e.cmds.count(cmd); c != 0 {
				t.Errorf("DeleteByIDPSession ran %s %d times, want none (Cluster-safe, no keyspace walks)", cmd, c)
			}
		}
		for _, s := range []sessions.Session{a1, a2} {
			if _, err := e.store.Get(ctx, s.ID); !errors.Is(err, sessions.ErrNotFound) {
				t.Errorf("Get(%s) after DeleteByIDPSession(A, sid-1) error = %v, want ErrNotFound", s.Handle, err)
			}
		}
		for _, s := range []sessions.Session{a3, b, c, n} {
			if _, err := e.store.Get(ctx, s.ID); err != nil {
				t.Errorf("Get(%s of %s, sid %q) after DeleteByIDPSession(A, sid-1): %v", s.Handle, s.Email, s.IDPSessionID, err)
			}
		}
		list, err := e.store.ListByEmail(ctx, "alice@example.com")
		if err != nil || len(list) != 1 || list[0].Handle != a3.Handle {
			t.Errorf("ListByEmail(alice) after DeleteByIDPSession = %v, %v, want only a3", list, err)
		}
		if got := e.handles(t, "user-sessions:alice@example.com"); !cmp.Equal(got, []string{a3.Handle}) {
			t.Errorf("alice's user index = %q, want only a3 %q", got, a3.Handle)
		}
		if got := e.handles(t, idpIndex(issuerA, "sid-1")); len(got) != 0 {
			t.Errorf("index of IdP session A/sid-1 = %q, want empty", got)
		}
		if got := e.handles(t, idpIndex(issuerB, "sid-1")); !cmp.Equal(got, []string{c.Handle}) {
			t.Errorf("index of IdP session B/sid-1 = %q, want carol's %q", got, c.Handle)
		}

		if got, err := e.store.DeleteByIDPSession(ctx, issuerA, "sid-1"); err != nil || got != 0 {
			t.Errorf("second DeleteByIDPSession(A, sid-1) = %d, %v, want 0, nil", got, err)
		}
		if got, err := e.store.DeleteByIDPSession(ctx, issuerA, "no-such-sid"); err != nil || got != 0 {
			t.Errorf("DeleteByIDPSession(A, unknown sid) = %d, %v, want 0, nil", got, err)
		}
		if _, err := e.store.DeleteByIDPSession(ctx, issuerA, ""); err == nil {
			t.Errorf("DeleteByIDPSession(A, \"\") error = nil, want one")
		}

		// The last session of a person: they leave the set of users.
		if got, err := e.store.DeleteByIDPSession(ctx, issuerB, "sid-1"); err != nil || got != 1 {
			t.Errorf("DeleteByIDPSession(B, sid-1) = %d, %v, want 1, nil", got, err)
		}
		members, err := srv.Client.SMembers(ctx, srv.Prefix+"session-users").Result()
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range members {
			if m == "carol@example.com" {
				t.Errorf("session-users still holds carol after her last session ended: %q", members)
			}
		}
		if !strings.Contains(e.dump(t), "idp-session:") {
			t.Errorf("Redis holds no idp-session index at all:\n%s", e.dump(t))
		}
	})
}

// TestIDPSessionIndexFollowsDeletes: sessions ended by other means leave
// the IdP session index or are skipped by DeleteByIDPSession.
func TestIDPSessionIndexFollowsDeletes(t *testing.T) {
	t.Parallel()
	redistest.Each(t, func(t *testing.T, srv *redistest.Server) {
		e := newEnv(t, srv, nil)
		ctx := context.Background()
		s1 := e.createUnder(t, "alice@example.com", issuerA, "sid-1")
		s2 := e.createUnder(t, "bob@example.com", issuerA, "sid-1")
		e.createUnder(t, "carol@example.com", issuerA, "sid-1")
		s4 := e.createUnder(t, "dave@example.com", issuerA, "sid-1")

		if _, err := e.store.DeleteHandle(ctx, s1.Handle); err != nil {
			t.Fatal(err)
		}
		if got := e.handles(t, idpIndex(issuerA, "sid-1")); len(got) != 3 || slices.Contains(got, s1.Handle) {
			t.Errorf("IdP session index after DeleteHandle(s1) = %q, want 3 handles without s1", got)
		}
		if err := e.store.Delete(ctx, s2.ID); err != nil {
			t.Fatal(err)
		}
		if _, err := e.store.DeleteByEmail(ctx, "carol@example.com"); err != nil {
			t.Fatal(err)
		}
		got, err := e.store.DeleteByIDPSession(ctx, issuerA, "sid-1")
		if err != nil || got != 1 {
			t.Errorf("DeleteByIDPSession after three of its four sessions ended = %d, %v, want 1 (only dave's)", got, err)
		}
		if _, err := e.store.Get(ctx, s4.ID); !errors.Is(err, sessions.ErrNotFound) {
			t.Errorf("Get(dave's session) after DeleteByIDPSession error = %v, want ErrNotFound", err)
		}
		if n, err := srv.Client.Exists(ctx, srv.Prefix+idpIndex(issuerA, "sid-1")).Result(); err != nil || n != 0 {
			t.Errorf("IdP session index exists = %d, %v after every session ended, want 0", n, err)
		}
		if emails, err := e.store.Emails(ctx); err != nil || len(emails) != 0 {
			t.Errorf("Emails() = %q, %v, want none", emails, err)
		}
	})
}

// TestIDPSessionIndexExpires: the index lives as long as its longest
// session and no longer.
func TestIDPSessionIndexExpires(t *testing.T) {
	t.Parallel()
	redistest.Each(t, func(t *testing.T, srv *redistest.Server) {
		e := newEnv(t, srv, func(u time.Duration) sessions.Config {
			return sessions.Config{TTL: 4 * u, IdleTimeout: 4 * u}
		})
		ctx := context.Background()
		key := idpIndex(issuerA, "sid-1")
		first := e.createUnder(t, "alice@example.com", issuerA, "sid-1")
		e.checkTTL(t, key, first.ExpiresAt)
		e.advance(e.u)
		second := e.createUnder(t, "alice@example.com", issuerA, "sid-1")
		e.checkTTL(t, key, second.ExpiresAt)

		e.advance(7 * e.u / 2) // 4.5u: first expired, second has 0.5u left
		third := e.createUnder(t, "bob@example.com", issuerA, "sid-1")
		want := []string{second.Handle, third.Handle}
		slices.Sort(want)
		if got := e.handles(t, key); !cmp.Equal(got, want, cmpopts.SortSlices(func(a, b string) bool { return a < b })) {
			t.Errorf("index after the first session expired = %q, want second and third (the expired one pruned)", got)
		}
		if got, err := e.store.DeleteByIDPSession(ctx, issuerA, "sid-1"); err != nil || got != 2 {
			t.Errorf("DeleteByIDPSession = %d, %v, want 2", got, err)
		}

		e.createUnder(t, "carol@example.com", issuerA, "sid-2")
		e.advance(9 * e.u / 2)
		if n, err := srv.Client.Exists(ctx, srv.Prefix+idpIndex(issuerA, "sid-2")).Result(); err != nil || n != 0 {
			t.Errorf("IdP session index exists = %d, %v after its session expired, want 0", n, err)
		}
	})
}

func TestNoIDPSessionIndexWithoutSID(t *testing.T) {
	t.Parallel()
	redistest.Each(t, func(t *testing.T, srv *redistest.Server) {
		e := newEnv(t, srv, nil)
		e.createUnder(t, "alice@example.com", issuerA, "")
		if dump := e.dump(t); strings.Contains(dump, "idp-session:") {
			t.Errorf("a session without IDPSessionID wrote an IdP session index:\n%s", dump)
		}
	})
}

func TestSeenOnce(t *testing.T) {
	t.Parallel()
	redistest.Each(t, func(t *testing.T, srv *redistest.Server) {
		e := newEnv(t, srv, nil)
		ctx := context.Background()
		const jti = issuerA + " jti-4f3e2d1c"
		ttl := 2 * e.u

		steps := []struct {
			name      string
			kind, id  string
			wantFirst bool
		}{
			{"first sight", "logout-jti", jti, true},
			{"replay", "logout-jti", jti, false},
			{"replay again", "logout-jti", jti, false},
			{"another id", "logout-jti", jti + "x", true},
			{"same id, another kind", "device-code", jti, true},
		}
		for _, st := range steps {
			first, err := e.store.SeenOnce(ctx, st.kind, st.id, ttl)
			if err != nil || first != st.wantFirst {
				t.Errorf("%s: SeenOnce(%q, %q) = %v, %v, want %v, nil", st.name, st.kind, st.id, first, err, st.wantFirst)
			}
		}
		if dump := e.dump(t); strings.Contains(dump, "jti-4f3e2d1c") {
			t.Errorf("the id is stored in the clear:\n%s", dump)
		}
		sum := sha256.Sum256([]byte(jti))
		e.checkTTL(t, "seen:logout-jti:"+hex.EncodeToString(sum[:]), e.clock().Add(ttl))

		e.advance(ttl + e.u/2)
		if first, err := e.store.SeenOnce(ctx, "logout-jti", jti, ttl); err != nil || !first {
			t.Errorf("SeenOnce after ttl passed = %v, %v, want true, nil", first, err)
		}

		for _, bad := range []struct {
			name, kind, id string
			ttl            time.Duration
		}{
			{"empty kind", "", jti, ttl},
			{"empty id", "logout-jti", "", ttl},
			{"zero ttl", "logout-jti", "fresh-1", 0},
			{"negative ttl", "logout-jti", "fresh-2", -time.Second},
		} {
			t.Run(bad.name, func(t *testing.T) {
				if first, err := e.store.SeenOnce(ctx, bad.kind, bad.id, bad.ttl); err == nil || first {
					t.Errorf("SeenOnce(%q, %q, %v) = %v, %v, want false and an error", bad.kind, bad.id, bad.ttl, first, err)
				}
			})
		}
	})
}

// TestSeenOnceConcurrent: of many replicas seeing the same token at once,
// exactly one gets first.
func TestSeenOnceConcurrent(t *testing.T) {
	t.Parallel()
	redistest.Each(t, func(t *testing.T, srv *redistest.Server) {
		replicas := make([]*sessions.Store, 4)
		for i := range replicas {
			replicas[i] = sessions.New(srv.Client, sessions.Config{Prefix: srv.Prefix})
		}
		var (
			wg     sync.WaitGroup
			mu     sync.Mutex
			firsts int
		)
		for i := range 32 {
			wg.Go(func() {
				first, err := replicas[i%len(replicas)].SeenOnce(context.Background(), "logout-jti", "jti-race", time.Minute)
				if err != nil {
					t.Errorf("SeenOnce: %v", err)
				}
				if first {
					mu.Lock()
					firsts++
					mu.Unlock()
				}
			})
		}
		wg.Wait()
		if firsts != 1 {
			t.Errorf("32 concurrent SeenOnce calls returned first %d times, want 1", firsts)
		}
	})
}
