package gateway

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/llmgate/llmgate/internal/devidp"
	"github.com/llmgate/llmgate/internal/redistest"
	"github.com/llmgate/llmgate/internal/webtest"
	"github.com/llmgate/llmgate/tokens"
)

// call makes a JSON API request with b's cookies and returns the status
// and the decoded body.
func (b *browser) call(method, u string, body string, header http.Header) (int, map[string]any, http.Header) {
	b.t.Helper()
	req, err := http.NewRequest(method, u, strings.NewReader(body))
	if err != nil {
		b.t.Fatal(err)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	for k, v := range header {
		req.Header[k] = v
	}
	p := b.Do(req)
	var out map[string]any
	if p.Body != "" {
		if err := json.Unmarshal([]byte(p.Body), &out); err != nil {
			b.t.Fatalf("%s %s: answer is not JSON: %v\n%s", method, u, err, p.Body)
		}
	}
	return p.Status, out, p.Header
}

// signedIn returns a browser signed in as user and its CSRF header.
func signedIn(t *testing.T, h *harness, user devidp.User) (*browser, http.Header) {
	t.Helper()
	b := newBrowser(t)
	b.signIn(h, "/", user.Email, user.Password)
	status, me := b.me(h)
	if status != http.StatusOK {
		t.Fatalf("sign in as %s: GET /api/me %d", user.Email, status)
	}
	return b, http.Header{"X-Csrf-Token": {me.CSRFToken}}
}

func errorCode(body map[string]any) string {
	e, _ := body["error"].(map[string]any)
	c, _ := e["code"].(string)
	return c
}

func errorMessage(body map[string]any) string {
	e, _ := body["error"].(map[string]any)
	m, _ := e["message"].(string)
	return m
}

func TestTokenLifecycle(t *testing.T) {
	redistest.Each(t, func(t *testing.T, rs *redistest.Server) {
		h := newHarness(t, rs)
		users := devidp.DemoUsers()
		alice, csrf := signedIn(t, h, users[0])
		bob, bobCSRF := signedIn(t, h, users[1])

		body := `{"name":"roo code","ttl":"7d","models":["gpt-4o"]}`
		if status, out, _ := alice.call("POST", h.url+"/api/tokens", body, nil); status != http.StatusForbidden || errorCode(out) != "csrf_invalid" {
			t.Errorf("POST /api/tokens without CSRF: %d %v, want 403 csrf_invalid", status, out)
		}
		status, created, _ := alice.call("POST", h.url+"/api/tokens", body, csrf)
		if status != http.StatusCreated {
			t.Fatalf("POST /api/tokens: %d %v, want 201", status, created)
		}
		raw, _ := created["token"].(string)
		id, _ := created["id"].(string)
		if raw == "" || id == "" || created["name"] != "roo code" || created["client_id"] != tokens.ClientAPI {
			t.Fatalf("POST /api/tokens answered %v, want token, id, name and client_id %s", created, tokens.ClientAPI)
		}
		exp, _ := time.Parse(time.RFC3339, created["expires_at"].(string))
		if want := h.clock.Now().Add(7 * 24 * time.Hour); exp.Sub(want).Abs() > time.Minute {
			t.Errorf("expires_at = %v, want about %v", exp, want)
		}
		cl, err := h.tokens.Verify(t.Context(), raw, tokens.ScopeLLM)
		if err != nil || cl.Email != "alice@example.com" || !cl.AllowsModel("gpt-4o") || cl.AllowsModel("gpt-4.1") {
			t.Fatalf("the minted token: Verify = %+v, %v; want alice's llm token for gpt-4o only", cl, err)
		}
		if strings.Contains(h.logBuf.String(), raw) {
			t.Error("the gateway log contains the minted token")
		}

		// Listed without the token string; readable by id.
		status, list, _ := alice.call("GET", h.url+"/api/tokens", "", nil)
		items, _ := list["tokens"].([]any)
		if status != http.StatusOK || len(items) != 1 {
			t.Fatalf("GET /api/tokens: %d %v, want one token", status, list)
		}
		item := items[0].(map[string]any)
		if item["id"] != id || item["status"] != "active" || item["revoked"] != false {
			t.Errorf("listed token = %v, want id %s, active, not revoked", item, id)
		}
		if _, has := item["token"]; has {
			t.Errorf("GET /api/tokens shows the token string")
		}
		if status, got, _ := alice.call("GET", h.url+"/api/tokens/"+id, "", nil); status != http.StatusOK || got["id"] != id || got["token"] != nil {
			t.Errorf("GET /api/tokens/{id}: %d %v", status, got)
		}

		// Someone else's token does not exist for bob.
		if status, out, _ := bob.call("GET", h.url+"/api/tokens/"+id, "", nil); status != http.StatusNotFound {
			t.Errorf("bob GET alice's token: %d %v, want 404", status, out)
		}
		if status, out, _ := bob.call("DELETE", h.url+"/api/tokens/"+id, "", bobCSRF); status != http.StatusNotFound {
			t.Errorf("bob DELETE alice's token: %d %v, want 404", status, out)
		}
		if status, out, _ := bob.call("GET", h.url+"/api/tokens", "", nil); status != http.StatusOK || len(out["tokens"].([]any)) != 0 {
			t.Errorf("bob GET /api/tokens: %d %v, want an empty list", status, out)
		}
		if _, err := h.tokens.Verify(t.Context(), raw, tokens.ScopeLLM); err != nil {
			t.Fatalf("after bob's attempts alice's token fails: %v", err)
		}

		// Revoked by its owner: refused from then on.
		if status, out, _ := alice.call("DELETE", h.url+"/api/tokens/"+id, "", nil); status != http.StatusForbidden {
			t.Errorf("DELETE without CSRF: %d %v, want 403", status, out)
		}
		status, out, _ := alice.call("DELETE", h.url+"/api/tokens/"+id, "", csrf)
		if status != http.StatusOK || out["revoked"] != true || out["status"] != "revoked" {
			t.Fatalf("DELETE /api/tokens/{id}: %d %v, want 200 revoked", status, out)
		}
		if _, err := h.tokens.Verify(t.Context(), raw, tokens.ScopeLLM); !errors.Is(err, tokens.ErrRevoked) {
			t.Errorf("Verify after revocation: %v, want ErrRevoked", err)
		}
	})
}

func TestTokenCreateRefusals(t *testing.T) {
	h := newHarness(t, redistest.Mini(t))
	b, csrf := signedIn(t, h, devidp.DemoUsers()[0])
	tests := []struct {
		name, body string
		status     int
		message    string
	}{
		{"lifetime over the maximum", `{"name":"x","ttl":"120d"}`, 400, "exceeds the maximum 90d"},
		{"expires_in over the maximum", `{"name":"x","expires_in":31536000}`, 400, "exceeds the maximum"},
		{"negative expires_in", `{"name":"x","expires_in":-5}`, 400, "positive whole number of seconds"},
		{"ttl and expires_in", `{"name":"x","ttl":"1d","expires_in":60}`, 400, "not both"},
		{"unparseable ttl", `{"name":"x","ttl":"soon"}`, 400, "not a positive duration"},
		{"no name", `{"ttl":"1d"}`, 400, "name"},
		{"name too long", `{"name":"` + strings.Repeat("n", 101) + `"}`, 400, "name"},
		{"bad CIDR", `{"name":"x","cidrs":["10.0.0.0/33"]}`, 400, "10.0.0.0/33"},
		{"negative budget", `{"name":"x","max_cost_usd":-1}`, 400, "max_cost_usd"},
		{"unknown field", `{"name":"x","scopes":["tokens"]}`, 400, `unknown field "scopes"`},
		{"not JSON", `name=x`, 400, "not valid JSON"},
		{"empty body", ``, 400, "empty"},
		{"body too large", `{"name":"` + strings.Repeat("x", 70<<10) + `"}`, 413, "larger than"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			status, out, _ := b.call("POST", h.url+"/api/tokens", tt.body, csrf)
			if status != tt.status || !strings.Contains(errorMessage(out), tt.message) {
				t.Errorf("POST /api/tokens %s: %d %v, want %d with a message containing %q", tt.body[:min(len(tt.body), 60)], status, out, tt.status, tt.message)
			}
		})
	}
	if _, out, _ := b.call("GET", h.url+"/api/tokens", "", nil); len(out["tokens"].([]any)) != 0 {
		t.Errorf("refused requests created tokens: %v", out)
	}
}

// TestTokenBearer uses the JSON API with tokens instead of a session: a
// CLI credential (scope tokens) may, an llm-only token may not.
func TestTokenBearer(t *testing.T) {
	h := newHarness(t, redistest.Mini(t))
	ctx := t.Context()
	cli, _, err := h.tokens.Issue(ctx, tokens.IssueRequest{Name: "cli", Email: "alice@example.com", Subject: "alice-sub", UserName: "Alice",
		ClientID: tokens.ClientCLI, Scopes: []string{tokens.ScopeLLM, tokens.ScopeTokens}})
	if err != nil {
		t.Fatal(err)
	}
	llmOnly, _, err := h.tokens.Issue(ctx, tokens.IssueRequest{Name: "roo", Email: "alice@example.com", Subject: "alice-sub"})
	if err != nil {
		t.Fatal(err)
	}
	b := newBrowser(t) // no cookies at all
	bearer := func(tok string) http.Header { return http.Header{"Authorization": {"Bearer " + tok}} }

	status, me, _ := b.call("GET", h.url+"/api/me", "", bearer(cli))
	if status != http.StatusOK || me["email"] != "alice@example.com" || me["authenticated_by"] != "token" || me["admin"] != true || me["csrf_token"] != nil {
		t.Errorf("GET /api/me with a CLI credential: %d %v, want alice, by token, admin, no csrf_token", status, me)
	}
	status, out, _ := b.call("POST", h.url+"/api/tokens", `{"name":"from cli","ttl":"1d"}`, bearer(cli))
	if status != http.StatusCreated || out["client_id"] != tokens.ClientCLI {
		t.Errorf("POST /api/tokens with a CLI credential and no CSRF: %d %v, want 201 from %s", status, out, tokens.ClientCLI)
	}
	if status, out, _ := b.call("GET", h.url+"/api/tokens", "", http.Header{"X-Api-Key": {cli}}); status != http.StatusOK || len(out["tokens"].([]any)) != 3 {
		t.Errorf("GET /api/tokens with x-api-key: %d %v, want alice's 3 tokens", status, out)
	}
	for _, path := range []string{"/api/me", "/api/tokens"} {
		if status, out, _ := b.call("GET", h.url+path, "", bearer(llmOnly)); status != http.StatusForbidden || errorCode(out) != "insufficient_scope" {
			t.Errorf("GET %s with an llm-only token: %d %v, want 403 insufficient_scope", path, status, out)
		}
	}
	status, out, hdr := b.call("GET", h.url+"/api/me", "", bearer(cli[:len(cli)-4]+"AAAA"))
	if status != http.StatusUnauthorized || errorCode(out) != "invalid_token" || !strings.Contains(hdr.Get("WWW-Authenticate"), "invalid_token") {
		t.Errorf("GET /api/me with a forged signature: %d %v %q, want 401 invalid_token with WWW-Authenticate", status, out, hdr.Get("WWW-Authenticate"))
	}
	// A bad bearer is refused even next to a valid session cookie.
	alice, _ := signedIn(t, h, devidp.DemoUsers()[0])
	if status, _, _ := alice.call("GET", h.url+"/api/me", "", bearer("not-a-token")); status != http.StatusUnauthorized {
		t.Errorf("GET /api/me with a session and a bad bearer: %d, want 401", status)
	}
	cl, _ := h.tokens.Verify(ctx, cli, tokens.ScopeTokens)
	if _, err := h.tokens.Revoke(ctx, cl.ID, "test"); err != nil {
		t.Fatal(err)
	}
	if status, out, _ := b.call("GET", h.url+"/api/me", "", bearer(cli)); status != http.StatusUnauthorized || errorCode(out) != "token_revoked" {
		t.Errorf("GET /api/me with a revoked credential: %d %v, want 401 token_revoked", status, out)
	}
}

// TestTokenCompatAliases drives the OpenResty gateway's routes.
func TestTokenCompatAliases(t *testing.T) {
	h := newHarness(t, redistest.Mini(t))
	b, csrf := signedIn(t, h, devidp.DemoUsers()[1])
	status, out, _ := b.call("POST", h.url+"/api/token/generate", `{"token_name":"legacy","expires_in":3600}`, csrf)
	if status != http.StatusCreated || out["token_name"] != "legacy" || out["token"] == nil || out["token_id"] == nil {
		t.Fatalf("POST /api/token/generate: %d %v, want 201 with token, token_id, token_name", status, out)
	}
	id := out["token_id"].(string)
	exp, _ := time.Parse(time.RFC3339, out["expires_at"].(string))
	if d := exp.Sub(h.clock.Now()); d < 59*time.Minute || d > 61*time.Minute {
		t.Errorf("expires_in 3600 made a token living %v, want 1h", d)
	}
	if status, out, _ := b.call("GET", h.url+"/api/token/list", "", nil); status != http.StatusOK || len(out["tokens"].([]any)) != 1 {
		t.Errorf("GET /api/token/list: %d %v", status, out)
	}
	if status, out, _ := b.call("GET", h.url+"/api/token/info?token_id="+id, "", nil); status != http.StatusOK || out["token_id"] != id {
		t.Errorf("GET /api/token/info: %d %v", status, out)
	}
	if status, out, _ := b.call("POST", h.url+"/api/token/revoke", `{"token_id":"`+id+`"}`, csrf); status != http.StatusOK || out["revoked"] != true {
		t.Errorf("POST /api/token/revoke: %d %v", status, out)
	}
}

func TestJWKSRoute(t *testing.T) {
	h := newHarness(t, redistest.Mini(t))
	raw, _, err := h.tokens.Issue(t.Context(), tokens.IssueRequest{Name: "x", Email: "bob@example.com", Subject: "bob"})
	if err != nil {
		t.Fatal(err)
	}
	hdrJSON, _ := base64.RawURLEncoding.DecodeString(strings.Split(raw, ".")[0])
	var hdr struct{ Kid, Alg, Typ string }
	json.Unmarshal(hdrJSON, &hdr)

	p := webtest.NewBrowser(t).Get(h.url + "/.well-known/jwks.json")
	var set struct {
		Keys []map[string]any `json:"keys"`
	}
	if err := json.Unmarshal([]byte(p.Body), &set); err != nil || p.Status != http.StatusOK {
		t.Fatalf("GET /.well-known/jwks.json: %d %s", p.Status, p.Body)
	}
	if !strings.Contains(p.Header.Get("Cache-Control"), "max-age=") {
		t.Errorf("JWKS Cache-Control = %q, want a max-age", p.Header.Get("Cache-Control"))
	}
	found := false
	for _, k := range set.Keys {
		if _, private := k["d"]; private {
			t.Errorf("JWKS publishes a private key: %v", k)
		}
		if k["kid"] == hdr.Kid && k["alg"] == hdr.Alg {
			found = true
		}
	}
	if !found || hdr.Typ != "at+jwt" || hdr.Alg != "EdDSA" {
		t.Errorf("token header %+v; JWKS %v: want an at+jwt EdDSA token whose kid is published", hdr, set.Keys)
	}
}
