package gateway

import (
	"context"
	"net/http"
	"net/url"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/llmgate/llmgate/internal/audit"
	"github.com/llmgate/llmgate/internal/devidp"
	"github.com/llmgate/llmgate/internal/redistest"
	"github.com/llmgate/llmgate/internal/users"
)

// claudeCodeUA is what Claude Code sends as its User-Agent.
var claudeCodeUA = http.Header{"User-Agent": {"claude-code/2.1.328"}}

// claudeCodeSignIn plays Claude Code's /login on h, approved by b, and
// returns the token answer.
func (h *harness) claudeCodeSignIn(tb testing.TB, b *browser) map[string]any {
	tb.Helper()
	dev := h.deviceCode(tb, "/oauth/device_authorization", url.Values{"surface": {"claude_code"}}, claudeCodeUA)
	body := b.decideDevice(h, str(dev, "verification_uri_complete"), "approve")
	if !strings.Contains(body, "Claude Code is signed in") {
		tb.Errorf("approval answer does not say Claude Code is signed in:\n%s", body)
	}
	resp, tok := h.poll(tb, "/oauth/token", str(dev, "device_code"))
	if resp.StatusCode != http.StatusOK || resp.Header.Get("Cache-Control") != "no-store" {
		tb.Fatalf("Claude Code's token request: %d %v", resp.StatusCode, tok)
	}
	return tok
}

// refresh uses a refresh token as Claude Code does.
func (h *harness) refresh(tb testing.TB, rt string) (*http.Response, map[string]any) {
	tb.Helper()
	return h.oauthPost(tb, "/oauth/token", url.Values{"grant_type": {"refresh_token"}, "refresh_token": {rt}}, claudeCodeUA)
}

// message calls /v1/messages as Claude Code does and returns the status.
func (h *harness) message(tb testing.TB, access string) int {
	tb.Helper()
	resp, _ := h.api(tb, "POST", "/v1/messages?beta=true", messagesBody, bearer(access))
	return resp.StatusCode
}

func keys(m map[string]any) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// TestClaudeCodeSignIn follows a Claude Code sign-in through its life:
// device grant, calls, refresh with rotation, two terminals racing, a
// replay, revoke-user seen on a second replica, and RFC 7009 revocation.
func TestClaudeCodeSignIn(t *testing.T) {
	redistest.Each(t, func(t *testing.T, rs *redistest.Server) {
		ctx := context.Background()
		replica := func(s *setup) { s.issuer = "https://llm.example.test" }
		a := newHarness(t, rs, replica)
		b := newHarness(t, rs, replica)
		users := devidp.DemoUsers()
		bob, bobCSRF := signedIn(t, a, users[1])
		admin, adminCSRF := signedIn(t, a, users[0])

		tok := a.claudeCodeSignIn(t, bob)
		if got := strings.Join(keys(tok), ","); got != "access_token,email,expires_in,refresh_token,scope,token_type" {
			t.Errorf("token answer fields %s, want access_token,email,expires_in,refresh_token,scope,token_type", got)
		}
		if tok["token_type"] != "Bearer" || tok["scope"] != "llm" || tok["email"] != "bob@example.com" {
			t.Errorf("token answer %v: want Bearer, scope llm, email bob", tok)
		}
		if in, _ := tok["expires_in"].(float64); in < 3590 || in > 3600 {
			t.Errorf("expires_in %v, want LLMGATE_GATEWAY_TOKEN_TTL (1h)", tok["expires_in"])
		}

		// The access token calls the API as bob; the upstream sees his email.
		access, rt := str(tok, "access_token"), str(tok, "refresh_token")
		a.upstream.Reset()
		if s := a.message(t, access); s != http.StatusOK {
			t.Fatalf("/v1/messages with the access token: %d, want 200", s)
		}
		if reqs := a.upstream.Requests(); len(reqs) != 1 || reqs[0].Header.Get("X-LLMGate-User-Email") != "bob@example.com" {
			t.Errorf("upstream got %d requests, email %q; want one as bob@example.com", len(reqs), reqs[0].Header.Get("X-LLMGate-User-Email"))
		}
		if resp, _ := a.api(t, "GET", "/api/me", "", bearer(access)); resp.StatusCode != http.StatusForbidden {
			t.Errorf("GET /api/me with the access token: %d, want 403 (scope llm only)", resp.StatusCode)
		}

		// The sign-in is listed with bob's tokens.
		status, list, _ := bob.call("GET", a.url+"/api/tokens", "", nil)
		toks, _ := list["tokens"].([]any)
		if status != 200 || len(toks) != 1 {
			t.Fatalf("GET /api/tokens: %d %v, want the sign-in", status, list)
		}
		row := toks[0].(map[string]any)
		if row["kind"] != "sign_in" || row["client_id"] != "claude-code" || row["address"] != "127.0.0.1" || row["status"] != "active" || row["name"] != "Claude Code" {
			t.Errorf("listed sign-in %v: want kind sign_in, client claude-code, address 127.0.0.1, active", row)
		}
		signInID := str(row, "id")

		// Refresh rotates both tokens; the old refresh token is refused.
		a.clock.Add(2 * time.Second) // a new iat: an access token of the same second would be the same string
		b.clock.Add(2 * time.Second)
		resp, next := a.refresh(t, rt)
		if resp.StatusCode != http.StatusOK || str(next, "refresh_token") == rt || str(next, "access_token") == access || next["email"] != "bob@example.com" {
			t.Fatalf("refresh: %d %v, want a new pair", resp.StatusCode, next)
		}
		if s := a.message(t, str(next, "access_token")); s != http.StatusOK {
			t.Errorf("refreshed access token: %d, want 200", s)
		}
		if resp, out := a.refresh(t, rt); resp.StatusCode != http.StatusUnauthorized || out["error"] != "invalid_grant" {
			t.Errorf("old refresh token: %d %v, want 401 invalid_grant", resp.StatusCode, out)
		}

		// Two terminals share the credential and refresh at once: one wins.
		shared := str(next, "refresh_token")
		var wg sync.WaitGroup
		answers := make([]map[string]any, 2)
		codes := make([]int, 2)
		for i := range 2 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				r, out := a.refresh(t, shared)
				codes[i], answers[i] = r.StatusCode, out
			}()
		}
		wg.Wait()
		if codes[0]+codes[1] != 200+401 {
			t.Fatalf("two terminals refreshing one token: %d and %d, want one 200 and one 401", codes[0], codes[1])
		}
		win := answers[0]
		if codes[1] == 200 {
			win = answers[1]
		}
		if s := a.message(t, str(win, "access_token")); s != http.StatusOK {
			t.Errorf("the winner's access token: %d, want 200", s)
		}
		resp, latest := a.refresh(t, str(win, "refresh_token"))
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("the winner's refresh token: %d %v, want 200", resp.StatusCode, latest)
		}

		// A token rotated longer than the grace ago comes back: the whole
		// sign-in is revoked, and audited.
		a.clock.Add(31 * time.Second)
		b.clock.Add(31 * time.Second)
		if resp, out := a.refresh(t, shared); resp.StatusCode != http.StatusUnauthorized || out["error"] != "invalid_grant" {
			t.Errorf("replay after the grace: %d %v, want 401 invalid_grant", resp.StatusCode, out)
		}
		if s := a.message(t, str(latest, "access_token")); s != http.StatusUnauthorized {
			t.Errorf("current access token after a replay: %d, want 401", s)
		}
		if resp, _ := a.refresh(t, str(latest, "refresh_token")); resp.StatusCode != http.StatusUnauthorized {
			t.Errorf("current refresh token after a replay: %d, want 401", resp.StatusCode)
		}
		waitFor(t, "refresh.replay audited", func() bool {
			pg, _ := a.audit.List(ctx, audit.Filter{Type: audit.TypeRefreshReplay, Email: "bob@example.com"})
			return len(pg.Events) == 1 && pg.Events[0].TokenID == signInID
		})

		// revoke-user on replica A stops a sign-in's access token on
		// replica B, and its refresh.
		tok = a.claudeCodeSignIn(t, bob)
		access = str(tok, "access_token")
		if s := b.message(t, access); s != http.StatusOK {
			t.Fatalf("access token on replica B: %d, want 200", s)
		}
		status, out, _ := admin.call("POST", a.url+"/api/admin/sessions/revoke-user", `{"user_email":"bob@example.com","revoke_tokens":true}`, adminCSRF)
		if status != http.StatusOK {
			t.Fatalf("revoke-user: %d %v", status, out)
		}
		start := time.Now()
		waitFor(t, "the sign-in refused on replica B", func() bool { return b.message(t, access) == http.StatusUnauthorized })
		t.Logf("revoke-user reached replica B after %v", time.Since(start))
		if resp, out := b.refresh(t, str(tok, "refresh_token")); resp.StatusCode != http.StatusUnauthorized || out["error"] != "invalid_grant" {
			t.Errorf("refresh after revoke-user: %d %v, want 401 invalid_grant", resp.StatusCode, out)
		}
		_ = bobCSRF
	})
}

// TestClaudeCodeRevoke: /logout posts the access token, or the refresh
// token, to /oauth/revoke; either ends the sign-in and nothing else. The
// answer is 200 {} for tokens it does not know too.
func TestClaudeCodeRevoke(t *testing.T) {
	redistest.Each(t, func(t *testing.T, rs *redistest.Server) {
		h := newHarness(t, rs)
		bob, _ := signedIn(t, h, devidp.DemoUsers()[1])
		for _, which := range []string{"access_token", "refresh_token"} {
			t.Run(which, func(t *testing.T) {
				tok := h.claudeCodeSignIn(t, bob)
				other := h.claudeCodeSignIn(t, bob)
				form := url.Values{"token": {str(tok, which)}}
				if which == "refresh_token" {
					form.Set("token_type_hint", "refresh_token")
				}
				resp, out := h.oauthPost(t, "/oauth/revoke", form, claudeCodeUA)
				if resp.StatusCode != http.StatusOK || len(out) != 0 {
					t.Fatalf("revoke by %s: %d %v, want 200 {}", which, resp.StatusCode, out)
				}
				if s := h.message(t, str(tok, "access_token")); s != http.StatusUnauthorized {
					t.Errorf("access token after revoking by %s: %d, want 401", which, s)
				}
				if resp, out := h.refresh(t, str(tok, "refresh_token")); resp.StatusCode != http.StatusUnauthorized || out["error"] != "invalid_grant" {
					t.Errorf("refresh after revoking by %s: %d %v, want 401 invalid_grant", which, resp.StatusCode, out)
				}
				if s := h.message(t, str(other, "access_token")); s != http.StatusOK {
					t.Errorf("bob's other sign-in after revoking one by %s: %d, want 200", which, s)
				}
				// Revoking again, or anything unknown, is still 200 {}.
				if resp, _ := h.oauthPost(t, "/oauth/revoke", form, nil); resp.StatusCode != http.StatusOK {
					t.Errorf("revoking again: %d, want 200", resp.StatusCode)
				}
			})
		}
		for _, junk := range []string{"junk", "eyJhbGciOiJub25lIn0.eyJqdGkiOiIxIn0.", strings.Repeat("a", 32) + "." + strings.Repeat("B", 43)} {
			if resp, out := h.oauthPost(t, "/oauth/revoke", url.Values{"token": {junk}}, nil); resp.StatusCode != http.StatusOK || len(out) != 0 {
				t.Errorf("revoke %q: %d %v, want 200 {}", junk, resp.StatusCode, out)
			}
		}
		if resp, out := h.oauthPost(t, "/oauth/revoke", url.Values{}, nil); resp.StatusCode != http.StatusBadRequest || out["error"] != "invalid_request" {
			t.Errorf("revoke without a token: %d %v, want 400 invalid_request", resp.StatusCode, out)
		}

		// A revoked sign-in is listed as revoked; revoking from the token
		// API ends one too.
		tok := h.claudeCodeSignIn(t, bob)
		_, list, _ := bob.call("GET", h.url+"/api/tokens", "", nil)
		var id string
		for _, r := range list["tokens"].([]any) {
			row := r.(map[string]any)
			if row["kind"] == "sign_in" && row["status"] == "active" {
				id = str(row, "id") // newest first: the one just made
				break
			}
		}
		_, me := bob.me(h)
		if status, out, _ := bob.call("DELETE", h.url+"/api/tokens/"+id, "", http.Header{"X-Csrf-Token": {me.CSRFToken}}); status != http.StatusOK {
			t.Fatalf("DELETE /api/tokens/%s: %d %v", id, status, out)
		}
		if s := h.message(t, str(tok, "access_token")); s != http.StatusUnauthorized {
			t.Errorf("access token after DELETE /api/tokens/{id}: %d, want 401", s)
		}
		if resp, _ := h.refresh(t, str(tok, "refresh_token")); resp.StatusCode != http.StatusUnauthorized {
			t.Errorf("refresh after DELETE /api/tokens/{id}: %d, want 401", resp.StatusCode)
		}
	})
}

// TestClaudeCodeRefreshRechecks: a refresh re-checks the person: blocked,
// or no longer in an allowed group, is 401 invalid_grant.
func TestClaudeCodeRefreshRechecks(t *testing.T) {
	h := newHarness(t, redistest.Mini(t))
	bob, _ := signedIn(t, h, devidp.DemoUsers()[1])
	tok := h.claudeCodeSignIn(t, bob)
	if err := h.tokens.Block(context.Background(), "bob@example.com", "admin"); err != nil {
		t.Fatal(err)
	}
	if resp, out := h.refresh(t, str(tok, "refresh_token")); resp.StatusCode != http.StatusUnauthorized || out["error"] != "invalid_grant" {
		t.Errorf("refresh of a blocked person: %d %v, want 401 invalid_grant", resp.StatusCode, out)
	}
	if err := h.tokens.Unblock(context.Background(), "bob@example.com", "admin"); err != nil {
		t.Fatal(err)
	}
	// Unblocked, the same refresh token still works: the refusal consumed nothing.
	if resp, out := h.refresh(t, str(tok, "refresh_token")); resp.StatusCode != http.StatusOK {
		t.Errorf("refresh after unblock: %d %v, want 200", resp.StatusCode, out)
	}

	// A gateway that admits only a group bob is not in.
	g := newHarness(t, redistest.Mini(t), func(s *setup) { s.oidc.AllowedGroups = []string{"engineering"} })
	alice, _ := signedIn(t, g, devidp.DemoUsers()[0])
	tok = g.claudeCodeSignIn(t, alice)
	resp, next := g.refresh(t, str(tok, "refresh_token"))
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("refresh of an admitted person: %d, want 200", resp.StatusCode)
	}
	// Her next SSO sign-in shows she left the group: the sign-in ends at its next refresh.
	if err := g.gw.users.Login(context.Background(), users.Person{Email: "alice@example.com", Name: "Alice Example", Subject: "alice-sub",
		Issuer: g.idp.Issuer(), Groups: []string{"admins"}}, ""); err != nil {
		t.Fatal(err)
	}
	if resp, out := g.refresh(t, str(next, "refresh_token")); resp.StatusCode != http.StatusUnauthorized || out["error"] != "invalid_grant" {
		t.Errorf("refresh after leaving the allowed group: %d %v, want 401 invalid_grant", resp.StatusCode, out)
	}
}

// TestOAuthStoreOutage: with Redis down the token endpoints answer 503
// temporarily_unavailable and consume nothing: once Redis is back, the
// same refresh token, code and device code still work.
func TestOAuthStoreOutage(t *testing.T) {
	p := redistest.Process(t)
	h := newHarness(t, p.Server)
	bob, _ := signedIn(t, h, devidp.DemoUsers()[1])
	tok := h.claudeCodeSignIn(t, bob)
	l := newLoopback(t)
	code := bob.approveLoopback(h, l, "approve").URL.Query().Get("code")
	dev := h.deviceCode(t, "/api/device/code", nil, nil)
	bob.decideDevice(h, str(dev, "verification_uri_complete"), "approve")

	p.Stop()
	waitFor(t, "the token service to notice the outage", func() bool { return !h.tokens.Healthy() })
	for name, call := range map[string]func() (*http.Response, map[string]any){
		"refresh":       func() (*http.Response, map[string]any) { return h.refresh(t, str(tok, "refresh_token")) },
		"code exchange": func() (*http.Response, map[string]any) { return h.exchange(t, l, code) },
		"device poll":   func() (*http.Response, map[string]any) { return h.poll(t, "/oauth/token", str(dev, "device_code")) },
		"device code":   func() (*http.Response, map[string]any) { return h.oauthPost(t, "/api/device/code", nil, nil) },
		"revoke refresh": func() (*http.Response, map[string]any) {
			return h.oauthPost(t, "/oauth/revoke", url.Values{"token": {str(tok, "refresh_token")}}, nil)
		},
	} {
		if resp, out := call(); resp.StatusCode != http.StatusServiceUnavailable || out["error"] != "temporarily_unavailable" {
			t.Errorf("%s with Redis down: %d %v, want 503 temporarily_unavailable", name, resp.StatusCode, out)
		}
	}

	p.Start()
	waitFor(t, "Redis back", func() bool { return h.tokens.Healthy() })
	if resp, out := h.refresh(t, str(tok, "refresh_token")); resp.StatusCode != http.StatusOK {
		t.Errorf("refresh after the outage: %d %v, want 200 (nothing consumed)", resp.StatusCode, out)
	}
	if resp, out := h.exchange(t, l, code); resp.StatusCode != http.StatusOK {
		t.Errorf("code exchange after the outage: %d %v, want 200", resp.StatusCode, out)
	}
	if resp, out := h.poll(t, "/oauth/token", str(dev, "device_code")); resp.StatusCode != http.StatusOK {
		t.Errorf("device poll after the outage: %d %v, want 200", resp.StatusCode, out)
	}
}
