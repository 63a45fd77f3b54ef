package main

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/llmgate/llmgate/gateway"
	"github.com/llmgate/llmgate/tokens"
)

// TestWhoami checks the stored credential live against the gateway.
func TestWhoami(t *testing.T) {
	t.Parallel()
	g := startGateway(t)
	cred, rec := g.credential(t, "alice@example.com")
	u := newUser(t)
	u.signIn(t, g.url, cred, rec)

	r := u.run(t, "whoami")
	if r.code != 0 {
		t.Fatalf("llmgate whoami: %v", r)
	}
	for _, want := range []string{"alice@example.com", g.url, "llm tokens", rec.ExpiresAt.UTC().Format("2006-01-02 15:04"), u.credsPath(), rec.ID} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("llmgate whoami output lacks %q:\n%s", want, r.stdout)
		}
	}

	r = u.run(t, "whoami", "--json")
	var w whoami
	if err := json.Unmarshal([]byte(r.stdout), &w); err != nil || r.code != 0 {
		t.Fatalf("llmgate whoami --json: %v (%v)", r, err)
	}
	if w.Email != "alice@example.com" || w.Server != g.url || strings.Join(w.Scopes, " ") != "llm tokens" ||
		!w.ExpiresAt.Equal(rec.ExpiresAt) || w.TokenID != rec.ID || w.Source != u.credsPath() || !w.Admin {
		t.Errorf("llmgate whoami --json = %+v, want alice (admin) on %s, scopes llm tokens, expiring %v, from %s", w, g.url, rec.ExpiresAt, u.credsPath())
	}

	// Revoked on the server: the live check notices and says what to run.
	if _, err := g.tokens.Revoke(t.Context(), rec.ID, "test"); err != nil {
		t.Fatal(err)
	}
	r = u.run(t, "whoami")
	if r.code != 1 || !strings.Contains(r.stderr, "revoked") || !strings.Contains(r.stderr, "llmgate login --server "+g.url) {
		t.Errorf("llmgate whoami with a revoked credential: %v\nwant exit 1, the gateway's reason and 'llmgate login --server %s'", r, g.url)
	}
}

// TestCredentialSources: LLMGATE_TOKEN and LLMGATE_SERVER win over the
// stored credential, and each failure says what to do.
func TestCredentialSources(t *testing.T) {
	t.Parallel()
	g := startGateway(t)
	aliceCred, aliceRec := g.credential(t, "alice@example.com")
	bobCred, _ := g.credential(t, "bob@example.com")

	u := newUser(t)
	r := u.run(t, "whoami")
	if r.code != 1 || !strings.Contains(r.stderr, "not signed in") || !strings.Contains(r.stderr, "llmgate login --server") {
		t.Errorf("whoami with nothing stored: %v\nwant exit 1 and 'not signed in: run llmgate login --server …'", r)
	}

	u.signIn(t, g.url, aliceCred, aliceRec)
	u.env["LLMGATE_TOKEN"] = bobCred
	r = u.run(t, "whoami", "--json")
	if r.code != 0 || !strings.Contains(r.stdout, `"email": "bob@example.com"`) || !strings.Contains(r.stdout, `"source": "LLMGATE_TOKEN"`) {
		t.Errorf("whoami with LLMGATE_TOKEN set: %v\nwant bob, from LLMGATE_TOKEN", r)
	}

	// An llm-only token in LLMGATE_TOKEN: the message names the variable.
	llmOnly, _ := g.mint(t, "bob@example.com", tokens.ClientAPI, tokens.ScopeLLM)
	u.env["LLMGATE_TOKEN"] = llmOnly
	r = u.run(t, "token", "list")
	if r.code != 1 || !strings.Contains(r.stderr, "LLMGATE_TOKEN") || !strings.Contains(r.stderr, "LLM API") {
		t.Errorf("token list with an llm-only LLMGATE_TOKEN: %v\nwant exit 1 naming LLMGATE_TOKEN and the scope", r)
	}
	u.env["LLMGATE_TOKEN"] = "not-a-token"
	r = u.run(t, "whoami")
	if r.code != 1 || !strings.Contains(r.stderr, "refused LLMGATE_TOKEN") || !strings.Contains(r.stderr, "Unset LLMGATE_TOKEN") {
		t.Errorf("whoami with a bad LLMGATE_TOKEN: %v\nwant exit 1 saying the gateway refused LLMGATE_TOKEN", r)
	}
	delete(u.env, "LLMGATE_TOKEN")

	// LLMGATE_SERVER names a gateway with no stored credential.
	other := closedPort(t)
	u.env["LLMGATE_SERVER"] = other
	r = u.run(t, "whoami")
	if r.code != 1 || !strings.Contains(r.stderr, "not signed in to "+other) || !strings.Contains(r.stderr, "llmgate login --server "+other) {
		t.Errorf("whoami with LLMGATE_SERVER=%s: %v\nwant exit 1, not signed in to it", other, r)
	}
	u.env["LLMGATE_SERVER"] = "ftp://x"
	if r = u.run(t, "whoami"); r.code != 2 || !strings.Contains(r.stderr, "LLMGATE_SERVER") {
		t.Errorf("whoami with LLMGATE_SERVER=ftp://x: %v\nwant exit 2 naming LLMGATE_SERVER", r)
	}
	delete(u.env, "LLMGATE_SERVER")

	// A credential past its expiry is refused before any request.
	aliceRec.ExpiresAt = time.Now().Add(-time.Hour)
	u.signIn(t, g.url, aliceCred, aliceRec)
	r = u.run(t, "whoami")
	if r.code != 1 || !strings.Contains(r.stderr, "expired") || !strings.Contains(r.stderr, "llmgate login --server "+g.url) {
		t.Errorf("whoami with an expired credential: %v\nwant exit 1, expired, run llmgate login --server %s", r, g.url)
	}
}

// TestUnreachable: errors name the URL and what failed.
func TestUnreachable(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		server string
		want   []string
	}{
		{"nothing listens", closedPort(t), []string{"cannot reach the gateway at", "/api/me", "connection refused"}},
		{"not a gateway", htmlServer(t, http.StatusNotFound), []string{"/api/me answered 404 Not Found, not an llmgate API answer", "gateway's URL"}},
		{"unknown host", "http://no-such-host.invalid", []string{"cannot reach the gateway at http://no-such-host.invalid/api/me", "does not resolve"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			u := newUser(t)
			u.env["LLMGATE_SERVER"] = tt.server
			u.env["LLMGATE_TOKEN"] = "some-token"
			r := u.run(t, "whoami")
			if r.code != 1 {
				t.Errorf("whoami against %s: %v\nwant exit 1", tt.server, r)
			}
			for _, w := range tt.want {
				if !strings.Contains(r.stderr, w) {
					t.Errorf("whoami against %s: stderr lacks %q:\n%s", tt.server, w, r.stderr)
				}
			}
			if strings.Contains(r.stderr, "some-token") {
				t.Errorf("whoami printed the token:\n%s", r.stderr)
			}
		})
	}
	// A redirect to https says to use https.
	srv := httptest.NewServer(http.RedirectHandler("https://gw.example.com/api/me", http.StatusMovedPermanently))
	defer srv.Close()
	u := newUser(t)
	u.env["LLMGATE_SERVER"], u.env["LLMGATE_TOKEN"] = srv.URL, "some-token"
	r := u.run(t, "whoami")
	if r.code != 1 || !strings.Contains(r.stderr, "redirects to https://gw.example.com/api/me") || !strings.Contains(r.stderr, "use --server https://") {
		t.Errorf("whoami against an http→https redirect: %v\nwant exit 1 saying to use https", r)
	}
}

// TestTokenCommands mints, lists and revokes tokens with the CLI
// credential, and uses a minted token on the proxy.
func TestTokenCommands(t *testing.T) {
	t.Parallel()
	g := startGateway(t)
	cred, rec := g.credential(t, "bob@example.com")
	u := newUser(t)
	u.signIn(t, g.url, cred, rec)

	r := u.run(t, "token", "create", "--name", "ci", "--ttl", "2d", "--models", "gpt-4o-mini, claude-haiku-4-5", "--json")
	var created gateway.TokenView
	if err := json.Unmarshal([]byte(r.stdout), &created); err != nil || r.code != 0 {
		t.Fatalf("token create --json: %v (%v)", r, err)
	}
	if created.Token == "" || created.Name != "ci" || created.Email != "bob@example.com" || strings.Join(created.Models, ",") != "gpt-4o-mini,claude-haiku-4-5" ||
		strings.Join(created.Scopes, " ") != "llm" {
		t.Errorf("token create --json = %+v, want bob's token ci for two models, scope llm", created)
	}
	if d := time.Until(created.ExpiresAt); d < 47*time.Hour || d > 49*time.Hour {
		t.Errorf("token create --ttl 2d: expires in %v", d)
	}
	if s := proxyStatus(t, g.url, created.Token); s != http.StatusOK {
		t.Errorf("the created token on the proxy: %d, want 200", s)
	}

	// Human output: the token alone on stdout, so $(…) captures it.
	r = u.run(t, "token", "create", "--name", "script")
	plain := strings.TrimSpace(r.stdout)
	if r.code != 0 || strings.Contains(plain, "\n") || strings.Count(plain, ".") != 2 || !strings.Contains(r.stderr, `"script"`) {
		t.Errorf("token create: %v\nwant the JWT alone on stdout and the details on stderr", r)
	}
	if s := proxyStatus(t, g.url, plain); s != http.StatusOK {
		t.Errorf("the token printed by token create on the proxy: %d, want 200", s)
	}

	r = u.run(t, "token", "list")
	if r.code != 0 {
		t.Fatalf("token list: %v", r)
	}
	lines := strings.Split(strings.TrimRight(r.stdout, "\n"), "\n")
	if len(lines) != 4 {
		t.Fatalf("token list: %d lines, want a header and 3 tokens:\n%s", len(lines), r.stdout)
	}
	// Aligned: every column starts where its header does.
	header := lines[0]
	for _, col := range []string{"NAME", "CLIENT", "MODELS", "CREATED", "EXPIRES", "LAST USED", "STATUS"} {
		at := strings.Index(header, col)
		if at < 0 {
			t.Fatalf("token list header %q lacks %s", header, col)
		}
		for _, l := range lines[1:] {
			if len(l) <= at || l[at-1] != ' ' || l[at] == ' ' {
				t.Errorf("token list: column %s (at %d) is not aligned in\n%s\n%s", col, at, header, l)
			}
		}
	}
	for _, want := range []string{created.ID, "gpt-4o-mini,claude-haiku-4-5", "(this CLI)", "llmgate-cli"} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("token list lacks %q:\n%s", want, r.stdout)
		}
	}

	r = u.run(t, "token", "list", "--json")
	var list []gateway.TokenView
	if err := json.Unmarshal([]byte(r.stdout), &list); err != nil || len(list) != 3 {
		t.Fatalf("token list --json: %v (%v), want 3 tokens", r, err)
	}

	r = u.run(t, "token", "revoke", created.ID, "--json")
	var revoked []gateway.TokenView
	if err := json.Unmarshal([]byte(r.stdout), &revoked); err != nil || r.code != 0 || len(revoked) != 1 || !revoked[0].Revoked {
		t.Fatalf("token revoke ID --json: %v (%v)", r, err)
	}
	if s := proxyStatus(t, g.url, created.Token); s != http.StatusUnauthorized {
		t.Errorf("the revoked token on the proxy: %d, want 401", s)
	}
	r = u.run(t, "token", "revoke", "0123456789abcdef0123456789abcdef")
	if r.code != 1 || !strings.Contains(r.stderr, "no token of yours") {
		t.Errorf("token revoke of an unknown id: %v\nwant exit 1, no token of yours", r)
	}

	// Usage errors: exit 2 with the fix.
	for _, args := range [][]string{{"token"}, {"token", "create"}, {"token", "revoke"}, {"token", "frob"}, {"token", "list", "--bogus"}} {
		if r := u.run(t, args...); r.code != 2 {
			t.Errorf("llmgate %s: %v\nwant exit 2", strings.Join(args, " "), r)
		}
	}
	// An API refusal is shown as the gateway's message.
	r = u.run(t, "token", "create", "--name", "x", "--ttl", "1000d")
	if r.code != 1 || !strings.Contains(r.stderr, g.url+": ") || !strings.Contains(r.stderr, "90") {
		t.Errorf("token create --ttl 1000d: %v\nwant exit 1 with the gateway's message about the longest lifetime", r)
	}
}

// TestHelp: every client command explains itself with examples.
func TestHelp(t *testing.T) {
	t.Parallel()
	u := newUser(t)
	for _, args := range [][]string{{"login"}, {"logout"}, {"whoami"}, {"env"}, {"token", "create"}, {"token", "list"}, {"token", "revoke"}} {
		r := u.run(t, append(args, "--help")...)
		if r.code != 0 || !strings.Contains(r.stderr+r.stdout, "Examples:") || !strings.Contains(r.stderr+r.stdout, "llmgate "+args[0]) {
			t.Errorf("llmgate %s --help: %v\nwant exit 0 and examples", strings.Join(args, " "), r)
		}
	}
	r := u.run(t, "token", "--help")
	if r.code != 0 || !strings.Contains(r.stdout, "Examples:") {
		t.Errorf("llmgate token --help: %v", r)
	}
	r = u.run(t, "--help")
	for _, c := range []string{"login", "logout", "whoami", "token", "env"} {
		if !strings.Contains(r.stdout, "  "+c+" ") {
			t.Errorf("llmgate --help does not list %s:\n%s", c, r.stdout)
		}
	}
}

// TestLogout revokes the stored credential on the gateway and deletes it,
// leaving other gateways' credentials alone.
func TestLogout(t *testing.T) {
	t.Parallel()
	g := startGateway(t)
	cred, rec := g.credential(t, "bob@example.com")
	u := newUser(t)
	other := "https://other.example.com"
	u.signIn(t, other, "other-token", tokens.Record{ID: "other-id", Email: "bob@example.com", ExpiresAt: time.Now().Add(time.Hour)})
	u.signIn(t, g.url, cred, rec)

	r := u.run(t, "logout")
	if r.code != 0 || !strings.Contains(r.stdout, "Signed out of "+g.url) {
		t.Fatalf("logout: %v", r)
	}
	if s := proxyStatus(t, g.url, cred); s != http.StatusUnauthorized {
		t.Errorf("the credential on the proxy after logout: %d, want 401 (revoked)", s)
	}
	f, err := loadCredentials(u.credsPath())
	if err != nil || f.Servers[g.url] != nil || f.Servers[other] == nil || f.Servers[other].Token != "other-token" {
		t.Errorf("credentials after logout = %+v (%v), want only %s's left", f.Servers, err, other)
	}
	if r := u.run(t, "logout", "--server", g.url); r.code != 1 || !strings.Contains(r.stderr, "not signed in to "+g.url) {
		t.Errorf("second logout: %v\nwant exit 1, not signed in", r)
	}

	// A credential the gateway already refuses is simply deleted.
	cred2, rec2 := g.credential(t, "bob@example.com")
	u.signIn(t, g.url, cred2, rec2)
	if _, err := g.tokens.Revoke(t.Context(), rec2.ID, "admin"); err != nil {
		t.Fatal(err)
	}
	if r := u.run(t, "logout", "--server", g.url); r.code != 0 {
		t.Errorf("logout with an already revoked credential: %v\nwant exit 0", r)
	}

	// The gateway is unreachable: deleted here, and the person is told to
	// revoke it elsewhere.
	gone := closedPort(t)
	u.signIn(t, gone, "gone-token", tokens.Record{ID: "gone-id", Email: "bob@example.com", ExpiresAt: time.Now().Add(time.Hour)})
	r = u.run(t, "logout", "--server", gone)
	if r.code != 1 || !strings.Contains(r.stderr, "cannot reach the gateway") || !strings.Contains(r.stderr, "gone-id") {
		t.Errorf("logout with the gateway down: %v\nwant exit 1, naming the token id to revoke", r)
	}
	if f, _ := loadCredentials(u.credsPath()); f.Servers[gone] != nil {
		t.Errorf("logout with the gateway down kept the credential")
	}
}
