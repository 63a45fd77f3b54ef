package gateway

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/llmgate/llmgate/internal/redistest"
)

// TestIDPTokens: with LLMGATE_IDP_TOKEN_AUDIENCES, the identity provider's
// own ID tokens (Claude Desktop's gateway sign-in) are API credentials for
// the person they name — and every forged, foreign, stale or misdirected
// one is refused in the API family's shape, before the upstream.
func TestIDPTokens(t *testing.T) {
	h := newHarness(t, redistest.Mini(t), claudePolicies, func(s *setup) {
		s.idpAudiences = []string{"claude-desktop", "other-app"}
	})
	const aud = "claude-desktop"
	mint := func(mutate func(map[string]any)) string {
		t.Helper()
		tok, err := h.idp.IDToken(aud, "alice@example.com", mutate)
		if err != nil {
			t.Fatal(err)
		}
		return tok
	}
	now := time.Now()

	good := mint(nil)
	h.upstream.Reset()
	for i := range 2 { // the second time from memory
		resp, body := h.api(t, "POST", "/v1/messages", messagesBody, bearer(good))
		if resp.StatusCode != 200 {
			t.Fatalf("call %d with a good ID token: %d %s, want 200", i, resp.StatusCode, body)
		}
	}
	reqs := h.upstream.Requests()
	if len(reqs) != 2 || reqs[0].Header.Get("X-Llmgate-User-Email") != "alice@example.com" || reqs[0].Header.Get("Authorization") != "" {
		t.Fatalf("upstream got %d requests, identity %q, Authorization %q; want alice's email and not her ID token",
			len(reqs), reqs[0].Header.Get("X-Llmgate-User-Email"), reqs[0].Header.Get("Authorization"))
	}
	// The policy applies, by the groups in the token (alice is in admins).
	opus := strings.Replace(messagesBody, "claude-sonnet-4-6", "claude-opus-4-7", 1)
	if resp, body := h.api(t, "POST", "/v1/messages", opus, bearer(good)); resp.StatusCode != 400 {
		t.Errorf("model outside alice's policy with an ID token: %d %s, want 400", resp.StatusCode, body)
	}
	if resp, body := h.api(t, "GET", "/managed/settings", "", bearer(good)); resp.StatusCode != 200 || !strings.Contains(body, "acceptEdits") {
		t.Errorf("managed settings with an ID token: %d %s, want alice's policy", resp.StatusCode, body)
	}
	// Another trusted audience, and the email from preferred_username or upn.
	for name, mutate := range map[string]func(map[string]any){
		"second audience":    func(c map[string]any) { c["aud"] = []any{"x", "other-app"} },
		"preferred_username": func(c map[string]any) { delete(c, "email") },
		"upn": func(c map[string]any) {
			delete(c, "email")
			delete(c, "preferred_username")
			c["upn"] = "Alice@Example.com"
		},
	} {
		if resp, body := h.api(t, "POST", "/v1/messages", messagesBody, bearer(mint(mutate))); resp.StatusCode != 200 {
			t.Errorf("%s: %d %s, want 200", name, resp.StatusCode, body)
		}
	}

	foreign, _ := h.idp.ForeignIDToken(aud, "alice@example.com", nil)
	unsigned, _ := h.idp.UnsignedIDToken(aud, "alice@example.com", nil)
	tests := []struct {
		name   string
		tok    string
		status int
	}{
		{"wrong audience", mint(func(c map[string]any) { c["aud"] = []any{"llmgate-other"} }), 401},
		{"audience is the gateway's own client", mint(func(c map[string]any) { c["aud"] = []any{"llmgate"} }), 401},
		{"wrong issuer", mint(func(c map[string]any) { c["iss"] = "https://evil.example" }), 401},
		{"issuer with a path added", mint(func(c map[string]any) { c["iss"] = h.idp.Issuer() + "/x" }), 401},
		{"expired", mint(func(c map[string]any) { c["exp"] = now.Add(-2 * time.Minute).Unix() }), 401},
		{"no exp", mint(func(c map[string]any) { delete(c, "exp") }), 401},
		{"not yet valid", mint(func(c map[string]any) { c["nbf"] = now.Add(time.Hour).Unix() }), 401},
		{"alg none", unsigned, 401},
		{"signed by another key", foreign, 401},
		{"tampered payload", tamper(good), 401},
		{"email not verified", mint(func(c map[string]any) { c["email_verified"] = false }), 403},
		{"no email at all", mint(func(c map[string]any) { delete(c, "email"); delete(c, "preferred_username") }), 403},
	}
	h.upstream.Reset()
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for _, path := range []string{"/v1/messages", "/v1/chat/completions"} {
				body := messagesBody
				if path == "/v1/chat/completions" {
					body = chatBody
				}
				resp, got := h.api(t, "POST", path, body, bearer(tt.tok))
				if resp.StatusCode != tt.status || resp.Header.Get("X-Should-Retry") != "false" {
					t.Errorf("POST %s: %d (x-should-retry %q) %s, want %d with x-should-retry false", path, resp.StatusCode, resp.Header.Get("X-Should-Retry"), got, tt.status)
				}
				checkFamily(t, path, got)
			}
		})
	}
	if n := len(h.upstream.Requests()); n != 0 {
		t.Errorf("refused ID tokens reached the upstream %d times", n)
	}

	// A blocked person's ID token stops at once, also one seen before.
	if err := h.tokens.Block(t.Context(), "alice@example.com", "test"); err != nil {
		t.Fatal(err)
	}
	if resp, body := h.api(t, "POST", "/v1/messages", messagesBody, bearer(good)); resp.StatusCode != 403 {
		t.Errorf("blocked alice, seen ID token: %d %s, want 403", resp.StatusCode, body)
	}
	if err := h.tokens.Unblock(t.Context(), "alice@example.com", "test"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "unblock applied", func() bool { return !h.tokens.Blocked("alice@example.com") })

	// Revoke-user: ID tokens issued before the cut-off are refused, later ones work.
	if _, err := h.tokens.RevokeUser(t.Context(), "alice@example.com", "test"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "revoke-user applied", func() bool { _, ok := h.tokens.RevokedSince("alice@example.com"); return ok })
	if resp, body := h.api(t, "POST", "/v1/messages", messagesBody, bearer(good)); resp.StatusCode != 401 {
		t.Errorf("ID token issued before revoke-user: %d %s, want 401", resp.StatusCode, body)
	}
	later := mint(func(c map[string]any) { c["iat"] = time.Now().Add(2 * time.Second).Unix() })
	if resp, body := h.api(t, "POST", "/v1/messages", messagesBody, bearer(later)); resp.StatusCode != 200 {
		t.Errorf("ID token issued after revoke-user: %d %s, want 200", resp.StatusCode, body)
	}
}

// TestIDPTokensOff: without LLMGATE_IDP_TOKEN_AUDIENCES the provider's
// tokens are not credentials; with a domain policy, people the login
// policy keeps out are refused with their ID token too.
func TestIDPTokensOff(t *testing.T) {
	h := newHarness(t, redistest.Mini(t))
	tok, _ := h.idp.IDToken("claude-desktop", "alice@example.com", nil)
	if resp, body := h.api(t, "POST", "/v1/messages", messagesBody, bearer(tok)); resp.StatusCode != 401 {
		t.Errorf("ID token with the feature off: %d %s, want 401", resp.StatusCode, body)
	}

	h = newHarness(t, redistest.Mini(t), func(s *setup) {
		s.idpAudiences = []string{"claude-desktop"}
		s.oidc.AllowedEmailDomains = []string{"corp.example"}
	})
	tok, _ = h.idp.IDToken("claude-desktop", "alice@example.com", nil)
	if resp, body := h.api(t, "POST", "/v1/messages", messagesBody, bearer(tok)); resp.StatusCode != 403 {
		t.Errorf("ID token of a domain not allowed to sign in: %d %s, want 403", resp.StatusCode, body)
	}
}

// tamper changes one character of a token's payload.
func tamper(tok string) string {
	parts := strings.Split(tok, ".")
	p := []byte(parts[1])
	if p[10] == 'A' {
		p[10] = 'B'
	} else {
		p[10] = 'A'
	}
	parts[1] = string(p)
	return strings.Join(parts, ".")
}

// checkFamily checks a refusal's body shape: Anthropic on /v1/messages,
// OpenAI elsewhere.
func checkFamily(tb testing.TB, path, body string) {
	tb.Helper()
	var anth struct {
		Type  string `json:"type"`
		Error struct {
			Type, Message string
		} `json:"error"`
	}
	var oai struct {
		Error struct{ Message, Type, Code string } `json:"error"`
	}
	if strings.HasPrefix(path, "/v1/messages") {
		if json.Unmarshal([]byte(body), &anth) != nil || anth.Type != "error" || anth.Error.Type == "" || anth.Error.Message == "" {
			tb.Errorf("POST %s refusal %s is not in Anthropic's error shape", path, body)
		}
		return
	}
	if json.Unmarshal([]byte(body), &oai) != nil || oai.Error.Code == "" || oai.Error.Type == "" || oai.Error.Message == "" {
		tb.Errorf("POST %s refusal %s is not in OpenAI's error shape", path, body)
	}
}
