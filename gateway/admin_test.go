package gateway

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/llmgate/llmgate/internal/devidp"
	"github.com/llmgate/llmgate/internal/redistest"
	"github.com/llmgate/llmgate/tokens"
)

// TestAdminRouteAccess drives every admin route as an admin (session and
// CLI credential), a non-admin, an llm-only token and nobody.
func TestAdminRouteAccess(t *testing.T) {
	h := newHarness(t, redistest.Mini(t))
	users := devidp.DemoUsers()
	alice, aliceCSRF := signedIn(t, h, users[0])
	bob, bobCSRF := signedIn(t, h, users[1])
	adminCLI := h.mint(t, tokens.IssueRequest{Scopes: []string{tokens.ScopeLLM, tokens.ScopeTokens}})
	llmOnly := h.mint(t, tokens.IssueRequest{})
	anon := newBrowser(t)

	routes := []struct{ method, path, body string }{
		{"GET", "/api/admin/sessions", ""},
		{"GET", "/api/admin/sessions?email=bob@example.com", ""},
		{"GET", "/api/admin/sessions/stats", ""},
		{"DELETE", "/api/admin/sessions/" + strings.Repeat("0", 64), ""},
		{"POST", "/api/admin/sessions/revoke-user", `{"user_email":"carol@example.com","revoke_tokens":false}`},
		{"GET", "/api/admin/tokens?status=active", ""},
		{"DELETE", "/api/admin/tokens/no-such-token", ""},
		{"POST", "/api/admin/users/carol@example.com/block", ""},
		{"POST", "/api/admin/users/carol@example.com/unblock", ""},
		{"GET", "/api/admin/usage?days=7", ""},
		{"GET", "/api/admin/audit", ""},
	}
	for _, rt := range routes {
		t.Run(rt.method+" "+rt.path, func(t *testing.T) {
			callers := []struct {
				name   string
				b      *browser
				header http.Header
				want   func(int) bool
			}{
				{"admin session", alice, aliceCSRF, func(s int) bool { return s == 200 || s == 404 }},
				{"admin CLI credential", anon, bearer(adminCLI), func(s int) bool { return s == 200 || s == 404 }},
				{"non-admin session", bob, bobCSRF, func(s int) bool { return s == 403 }},
				{"llm-only token", anon, bearer(llmOnly), func(s int) bool { return s == 403 }},
				{"anonymous", anon, nil, func(s int) bool { return s == 401 }},
			}
			for _, cl := range callers {
				status, out, _ := cl.b.call(rt.method, h.url+rt.path, rt.body, cl.header)
				if !cl.want(status) {
					t.Errorf("%s: %d %v", cl.name, status, out)
				}
			}
		})
	}
	// Bob's attempts are in the audit log.
	_, out, _ := alice.call("GET", h.url+"/api/admin/audit?type=admin.denied&email=bob@example.com", "", nil)
	waitFor(t, "admin.denied audited", func() bool {
		_, out, _ = alice.call("GET", h.url+"/api/admin/audit?type=admin.denied&email=bob@example.com", "", nil)
		evs, _ := out["events"].([]any)
		return len(evs) == len(routes)
	})
}

// TestAdminForceLogoutAndBlock acts on replica A and checks replica B: a
// second gateway on the same Redis.
func TestAdminForceLogoutAndBlock(t *testing.T) {
	redistest.Each(t, func(t *testing.T, rs *redistest.Server) {
		replica := func(s *setup) { s.issuer = "https://llm.example.test" }
		a := newHarness(t, rs, replica)
		b := newHarness(t, rs, replica) // replica B: same store, same issuer
		users := devidp.DemoUsers()
		admin, csrf := signedIn(t, a, users[0])
		bob, _ := signedIn(t, a, users[1])
		bob2, _ := signedIn(t, a, users[1]) // a second session of bob
		bobToken := a.mint(t, tokens.IssueRequest{Email: "bob@example.com", Subject: "bob-sub"})

		// Bob's sessions work on replica B too (shared store).
		if status, _ := bob.me(b); status != 200 {
			t.Fatalf("bob on replica B: %d", status)
		}
		status, stats, _ := admin.call("GET", a.url+"/api/admin/sessions/stats", "", nil)
		per, _ := stats["user_sessions"].(map[string]any)
		if status != 200 || per["bob@example.com"] != float64(2) || stats["unique_users"] != float64(2) || stats["total_sessions"] != float64(3) {
			t.Errorf("stats: %d %v, want bob 2, alice 1", status, stats)
		}

		// Force-logout one of bob's sessions.
		_, list, _ := admin.call("GET", a.url+"/api/admin/sessions?email=bob@example.com", "", nil)
		sess := list["sessions"].([]any)
		if len(sess) != 2 {
			t.Fatalf("bob's sessions: %v", list)
		}
		id := sess[0].(map[string]any)["id"].(string)
		if status, out, _ := admin.call("DELETE", a.url+"/api/admin/sessions/"+id, "", csrf); status != 200 {
			t.Fatalf("DELETE session: %d %v", status, out)
		}
		s1, _ := bob.me(b)
		s2, _ := bob2.me(b)
		if s1+s2 != 200+401 {
			t.Errorf("after ending one of bob's two sessions, replica B answers %d and %d, want one 200 and one 401", s1, s2)
		}

		// Block: sessions end, tokens refused, sign-in refused, on replica B.
		if status, out, _ := admin.call("POST", a.url+"/api/admin/users/bob@example.com/block", "", csrf); status != 200 {
			t.Fatalf("block bob: %d %v", status, out)
		}
		start := time.Now()
		waitFor(t, "bob's token refused on replica B", func() bool {
			resp, _ := b.api(t, "POST", "/v1/chat/completions", chatBody, bearer(bobToken))
			return resp.StatusCode == http.StatusForbidden
		})
		t.Logf("block took effect on replica B after %v", time.Since(start))
		if s1, _ := bob.me(b); s1 == 200 {
			t.Error("blocked bob's session still works on replica B")
		}
		if s2, _ := bob2.me(b); s2 == 200 {
			t.Error("blocked bob's second session still works on replica B")
		}
		fresh := newBrowser(t)
		p := fresh.signIn(b, "/", "bob@example.com", users[1].Password)
		if p.Status != http.StatusForbidden || !strings.Contains(p.Body, "blocked") {
			t.Errorf("blocked bob signing in on replica B: %d %s, want 403 saying blocked", p.Status, p.Body)
		}

		// Unblock: bob may sign in and use his token again.
		if status, out, _ := admin.call("POST", a.url+"/api/admin/users/bob@example.com/unblock", "", csrf); status != 200 {
			t.Fatalf("unblock: %d %v", status, out)
		}
		waitFor(t, "bob's token accepted again on replica B", func() bool {
			resp, _ := b.api(t, "POST", "/v1/chat/completions", chatBody, bearer(bobToken))
			return resp.StatusCode == http.StatusOK
		})

		// revoke-user with tokens: every session and token of bob, on B too.
		signedIn(t, a, users[1])
		status, out, _ := admin.call("POST", a.url+"/api/admin/sessions/revoke-user", `{"user_email":"bob@example.com","revoke_tokens":true}`, csrf)
		if status != 200 || out["user_email"] != "bob@example.com" || out["deleted_count"] != float64(1) || out["revoked_tokens"].(float64) < 1 || out["deleted_by"] != "alice@example.com" {
			t.Fatalf("revoke-user: %d %v, want 1 session and bob's tokens revoked by alice", status, out)
		}
		waitFor(t, "bob's token refused on replica B", func() bool {
			resp, _ := b.api(t, "POST", "/v1/chat/completions", chatBody, bearer(bobToken))
			return resp.StatusCode == http.StatusUnauthorized
		})
		// The admin's actions are audited with who did them (the audit
		// log is written asynchronously, so wait for the third event).
		var events []any
		waitFor(t, "bob's three user events in the audit log", func() bool {
			_, out, _ = admin.call("GET", a.url+"/api/admin/audit?email=bob@example.com&type=user.", "", nil)
			events, _ = out["events"].([]any)
			return len(events) >= 3
		})
		var types []string
		for _, e := range events {
			ev := e.(map[string]any)
			if ev["actor"] != "alice@example.com" {
				t.Errorf("audit event %v: actor should be alice", ev)
			}
			types = append(types, ev["type"].(string))
		}
		if strings.Join(types, ",") != "user.revoke,user.unblock,user.block" {
			t.Errorf("audited user actions on bob, newest first: %v", types)
		}
	})
}
