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

// TestDeprovisionOnRecheck: a person disabled at an identity provider
// without back-channel logout loses sessions and tokens at the next
// re-check; an active one keeps them.
func TestDeprovisionOnRecheck(t *testing.T) {
	redistest.Each(t, func(t *testing.T, rs *redistest.Server) {
		h := newHarness(t, rs, func(s *setup) { s.recheck = time.Hour; s.noBackchannel = true })
		users := devidp.DemoUsers()
		alice, aliceCSRF := signedIn(t, h, users[0])
		bob, bobCSRF := signedIn(t, h, users[1])
		mintVia := func(b *browser, csrf http.Header) string {
			_, out, _ := b.call("POST", h.url+"/api/tokens", `{"name":"ide"}`, csrf)
			return out["token"].(string)
		}
		aliceTok, bobTok := mintVia(alice, aliceCSRF), mintVia(bob, bobCSRF)

		h.idp.SetDisabled("bob@example.com", true)
		h.gw.recheckOnce(t.Context()) // not due yet: nothing happens
		if status, _ := bob.me(h); status != 200 {
			t.Fatalf("before the re-check is due bob's session answers %d", status)
		}
		h.clock.Add(time.Hour + time.Minute) // the schedule follows the clock; no Redis key needs to expire
		h.gw.recheckOnce(t.Context())

		if status, _ := bob.me(h); status != http.StatusUnauthorized {
			t.Errorf("after the re-check, disabled bob's session answers %d, want 401", status)
		}
		if resp, body := h.api(t, "POST", "/v1/chat/completions", chatBody, bearer(bobTok)); resp.StatusCode != http.StatusUnauthorized {
			t.Errorf("disabled bob's token: %d %s, want 401", resp.StatusCode, body)
		}
		if status, _ := alice.me(h); status != 200 {
			t.Errorf("active alice's session after the re-check: %d, want 200", status)
		}
		if resp, body := h.api(t, "POST", "/v1/chat/completions", chatBody, bearer(aliceTok)); resp.StatusCode != 200 {
			t.Errorf("active alice's token after the re-check: %d %s", resp.StatusCode, body)
		}
		waitFor(t, "deprovisioning audited", func() bool {
			_, out, _ := alice.call("GET", h.url+"/api/admin/audit?type=deprovision", "", nil)
			evs, _ := out["events"].([]any)
			return len(evs) == 1 && evs[0].(map[string]any)["email"] == "bob@example.com"
		})
	})
}

// TestRequireLoginWithin: API tokens stop working when their person has
// not signed in for the window, and work again after a sign-in.
func TestRequireLoginWithin(t *testing.T) {
	h := newHarness(t, redistest.Mini(t), func(s *setup) { s.requireLogin = 24 * time.Hour })
	tok := h.mint(t, tokens.IssueRequest{})
	resp, body := h.api(t, "POST", "/v1/messages", messagesBody, bearer(tok))
	if resp.StatusCode != http.StatusUnauthorized || !strings.Contains(body, "sign in again") || resp.Header.Get("X-Should-Retry") != "false" {
		t.Fatalf("token of a person who never signed in: %d %s, want 401 asking to sign in", resp.StatusCode, body)
	}
	signedIn(t, h, devidp.DemoUsers()[0])
	waitFor(t, "the sign-in reaching the proxy's memory", func() bool {
		resp, _ := h.api(t, "POST", "/v1/messages", messagesBody, bearer(tok))
		return resp.StatusCode == 200
	})
	h.clock.Add(25 * time.Hour)
	if resp, body := h.api(t, "POST", "/v1/messages", messagesBody, bearer(tok)); resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("25 h after the last sign-in: %d %s, want 401", resp.StatusCode, body)
	}
}

func TestAdminUsersView(t *testing.T) {
	h := newHarness(t, redistest.Mini(t))
	users := devidp.DemoUsers()
	alice, _ := signedIn(t, h, users[0])
	signedIn(t, h, users[1])
	bobTok := h.mint(t, tokens.IssueRequest{Email: "bob@example.com", Subject: "bob-sub"})
	h.api(t, "POST", "/v1/chat/completions", chatBody, bearer(bobTok))
	status, out, _ := alice.call("GET", h.url+"/api/admin/users", "", nil)
	list, _ := out["users"].([]any)
	if status != 200 || len(list) != 2 || out["total"] != float64(2) {
		t.Fatalf("GET /api/admin/users: %d %v, want alice and bob", status, out)
	}
	bob := list[1].(map[string]any)
	if bob["email"] != "bob@example.com" || bob["name"] != "Bob Example" || bob["active_tokens"] != float64(1) ||
		bob["blocked"] != false || bob["last_login"] == nil || bob["last_api_use"] == nil {
		t.Errorf("bob in the users view: %v", bob)
	}
	// With a CLI credential, admin groups count too (alice is admin by email here).
	if status, _, _ := newBrowser(t).call("GET", h.url+"/api/admin/users", "", bearer(h.mint(t, tokens.IssueRequest{Scopes: []string{tokens.ScopeTokens}}))); status != 200 {
		t.Errorf("admin CLI credential on /api/admin/users: %d", status)
	}
}

// TestRecheckRacingSignIn: the grant being re-checked is refused, but the
// person signed in again meanwhile: nothing of theirs is revoked.
func TestRecheckRacingSignIn(t *testing.T) {
	h := newHarness(t, redistest.Mini(t), func(s *setup) { s.recheck = time.Minute; s.noBackchannel = true })
	bob := devidp.DemoUsers()[1]
	signedIn(t, h, bob)
	h.clock.Add(2 * time.Minute) // due; ID tokens (1 h) still valid for the next sign-in
	due, err := h.gw.users.Due(t.Context(), 10)
	if err != nil || len(due) != 1 {
		t.Fatalf("Due = %v, %v; want bob", due, err)
	}
	// The grant under check gets rotated away (so redeeming it now fails
	// with invalid_grant), and bob signs in again with a fresh one.
	if _, err := h.gw.rp.Refresh(t.Context(), due[0].RefreshToken); err != nil {
		t.Fatalf("rotate bob's refresh token: %v", err)
	}
	h.clock.Add(time.Second)
	again, _ := signedIn(t, h, bob)
	tok := h.mint(t, tokens.IssueRequest{Email: "bob@example.com", Subject: "bob-sub"})

	h.gw.recheck(t.Context(), due[0])

	if status, _ := again.me(h); status != 200 {
		t.Errorf("bob's fresh session after the stale re-check: %d, want 200", status)
	}
	if resp, body := h.api(t, "POST", "/v1/chat/completions", chatBody, bearer(tok)); resp.StatusCode != 200 {
		t.Errorf("bob's token after the stale re-check: %d %s, want 200", resp.StatusCode, body)
	}
}
