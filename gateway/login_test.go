package gateway

import (
	"encoding/json"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/llmgate/llmgate/internal/devidp"
	"github.com/llmgate/llmgate/internal/redistest"
	"github.com/llmgate/llmgate/sessions"
)

func (h *harness) host() string { return strings.TrimPrefix(h.url, "http://") }

// me calls GET /api/me with the browser's cookies.
func (b *browser) me(h *harness) (int, Me) {
	b.t.Helper()
	p := b.Get(h.url + "/api/me")
	var r Me
	if p.Status == http.StatusOK {
		if err := json.Unmarshal([]byte(p.Body), &r); err != nil {
			b.t.Fatalf("GET /api/me: decode %q: %v", p.Body, err)
		}
	}
	return p.Status, r
}

func TestLoginEndToEnd(t *testing.T) {
	redistest.Each(t, func(t *testing.T, rs *redistest.Server) {
		h := newHarness(t, rs)
		b := newBrowser(t)

		// An anonymous visit goes to the provider's login form.
		p := b.Get(h.url + "/")
		if p.URL.Host == h.host() {
			t.Fatalf("GET / as anonymous ended on %s (status %d), want the provider's login page", p.URL, p.Status)
		}
		if !strings.HasPrefix(b.Visited[1], h.url+"/oauth2/start?rd=%2F") {
			t.Errorf("GET / redirected to %s, want %s/oauth2/start?rd=%%2F", b.Visited[1], h.url)
		}
		p = b.SubmitLogin(p, "alice@example.com", devidp.DemoUsers()[0].Password)
		if p.Status != http.StatusOK || p.URL.String() != h.url+"/" {
			t.Fatalf("after login: status %d at %s, want 200 at %s/\n%s", p.Status, p.URL, h.url, p.Body)
		}
		for _, want := range []string{"alice@example.com", `<dd id="role">admin</dd>`} {
			if !strings.Contains(p.Body, want) {
				t.Errorf("home page lacks %q:\n%s", want, p.Body)
			}
		}

		status, me := b.me(h)
		if status != http.StatusOK {
			t.Fatalf("GET /api/me: status %d, want 200", status)
		}
		want := Me{Email: "alice@example.com", Name: "Alice Example", Groups: []string{"admins", "engineering"}, Admin: true, Via: "session"}
		got := me
		got.Subject, got.CSRFToken, got.SessionExpiresAt = "", "", nil
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("GET /api/me (-want +got):\n%s", diff)
		}
		if me.CSRFToken == "" || me.Subject == "" || me.SessionExpiresAt == nil {
			t.Errorf("GET /api/me: csrf_token %q, sub %q, session_expires_at %v: want all set", me.CSRFToken, me.Subject, me.SessionExpiresAt)
		}

		// The ID token kept for logout is sealed at rest.
		stored, err := h.store.ListByEmail(t.Context(), "alice@example.com")
		if err != nil || len(stored) != 1 || stored[0].IDTokenHint == "" || strings.HasPrefix(stored[0].IDTokenHint, "eyJ") || strings.Count(stored[0].IDTokenHint, ".") == 2 {
			t.Errorf("stored sessions %+v (err %v): want one whose id_token_hint is sealed, not a JWT", stored, err)
		}

		// Sign-out without the CSRF token is refused and changes nothing.
		p = b.PostForm(h.url+"/oauth2/sign_out", url.Values{}, nil)
		if p.Status != http.StatusForbidden {
			t.Errorf("POST /oauth2/sign_out without CSRF: status %d, want 403", p.Status)
		}
		if status, _ := b.me(h); status != http.StatusOK {
			t.Fatalf("after refused sign-out, GET /api/me: status %d, want 200", status)
		}

		// With it, the session ends and the browser passes the provider's logout.
		p = b.PostForm(h.url+"/oauth2/sign_out", url.Values{}, http.Header{"X-Csrf-Token": {me.CSRFToken}})
		if p.Status != http.StatusOK || p.URL.String() != h.url+"/oauth2/signed_out" {
			t.Errorf("sign-out ended at %s with status %d, want 200 at %s/oauth2/signed_out", p.URL, p.Status, h.url)
		}
		if !visitedHost(b.Visited, h.idp.Issuer()) {
			t.Errorf("sign-out did not pass the provider's end_session_endpoint; visited %v", b.Visited)
		}
		if !strings.Contains(strings.Join(b.Visited, " "), "id_token_hint=eyJ") {
			t.Errorf("sign-out sent no id_token_hint to the provider; visited %v", b.Visited)
		}
		if status, _ := b.me(h); status != http.StatusUnauthorized {
			t.Errorf("after sign-out, GET /api/me: status %d, want 401", status)
		}
		if n, err := h.store.ListByEmail(t.Context(), "alice@example.com"); err != nil || len(n) != 0 {
			t.Errorf("after sign-out, sessions of alice: %d (err %v), want 0", len(n), err)
		}
	})
}

func visitedHost(visited []string, base string) bool {
	for _, v := range visited {
		if strings.HasPrefix(v, base) {
			return true
		}
	}
	return false
}

func TestSessionCookie(t *testing.T) {
	h := newHarness(t, redistest.Mini(t))
	b := newBrowser(t)
	b.StopAt = func(u *url.URL) bool { return u.Path == "/oauth2/callback" }
	p := b.signIn(h, "/", "bob@example.com", devidp.DemoUsers()[1].Password)
	if p.Status != http.StatusFound && p.Status != http.StatusSeeOther {
		t.Fatalf("login form answered %d, want a redirect to the callback", p.Status)
	}
	callback := p.Header.Get("Location")
	// Follow the callback by hand to read its Set-Cookie.
	b.StopAt = func(*url.URL) bool { return true }
	p = b.Get(callback)
	if p.Status != http.StatusFound {
		t.Fatalf("callback: status %d, want 302:\n%s", p.Status, p.Body)
	}
	var session *http.Cookie
	for _, c := range (&http.Response{Header: p.Header}).Cookies() {
		if c.Name == "llmgate" {
			session = c
		}
	}
	if session == nil {
		t.Fatalf("callback set no llmgate cookie; Set-Cookie: %v", p.Header.Values("Set-Cookie"))
	}
	if !session.HttpOnly || session.SameSite != http.SameSiteLaxMode || session.Path != "/" || session.Secure {
		t.Errorf("session cookie HttpOnly=%v SameSite=%v Path=%q Secure=%v; want HttpOnly, Lax, /, not Secure on http",
			session.HttpOnly, session.SameSite, session.Path, session.Secure)
	}
	if len(session.Value) < 43 {
		t.Errorf("session id %d characters, want at least 43 (256 bits)", len(session.Value))
	}
	// Nothing secret reaches the log: not the cookie, the code or the state.
	cbURL, _ := url.Parse(callback)
	log := h.logBuf.String()
	for name, secret := range map[string]string{"session id": session.Value, "code": cbURL.Query().Get("code"), "state": cbURL.Query().Get("state")} {
		if secret == "" {
			t.Fatalf("no %s to look for", name)
		}
		if strings.Contains(log, secret) {
			t.Errorf("the gateway log contains the %s", name)
		}
	}
}

// TestLoginRefusals checks each way a login must fail: the status the
// browser gets, that it stays on the gateway's callback, and that no
// session is made.
func TestLoginRefusals(t *testing.T) {
	alice := devidp.DemoUsers()[0]
	tests := []struct {
		name   string
		setup  func(*setup)
		user   devidp.User
		mutate func(t *testing.T, b *browser, h *harness, callback *url.URL) // may change the callback URL or the cookies
		status int
		code   string // substring of the page
	}{
		{
			name: "tampered state",
			user: alice,
			mutate: func(t *testing.T, b *browser, h *harness, cb *url.URL) {
				q := cb.Query()
				q.Set("state", q.Get("state")+"x")
				cb.RawQuery = q.Encode()
			},
			status: http.StatusBadRequest, code: "not started in this browser",
		},
		{
			name: "state from another browser",
			user: alice,
			mutate: func(t *testing.T, b *browser, h *harness, cb *url.URL) {
				jar := newBrowser(t).Client.Jar // fresh cookies: the attacker's browser
				b.Client.Jar = jar
			},
			status: http.StatusBadRequest, code: "not started in this browser",
		},
		{
			name: "wrong nonce",
			setup: func(s *setup) {
				s.claimsHook = func(_ string, _ devidp.User, c map[string]any) { c["nonce"] = "not-the-nonce" }
			},
			user: alice, status: http.StatusUnauthorized, code: "could not be verified",
		},
		{
			name: "ID token for another audience",
			setup: func(s *setup) {
				s.claimsHook = func(_ string, _ devidp.User, c map[string]any) { c["aud"] = []string{"some-other-app"} }
			},
			user: alice, status: http.StatusUnauthorized, code: "could not be verified",
		},
		{
			name:   "disallowed domain",
			setup:  func(s *setup) { s.oidc.AllowedEmailDomains = []string{"corp.example"} },
			user:   alice,
			status: http.StatusForbidden, code: "accounts of example.com may not sign in here",
		},
		{
			name:   "disallowed group",
			setup:  func(s *setup) { s.oidc.AllowedGroups = []string{"finance"} },
			user:   alice,
			status: http.StatusForbidden, code: "in none of the groups allowed",
		},
		{
			name: "unverified email",
			setup: func(s *setup) {
				s.users = []devidp.User{{Email: "eve@example.com", Password: "eve-password-1", Name: "Eve", EmailUnverified: true}}
			},
			user:   devidp.User{Email: "eve@example.com", Password: "eve-password-1"},
			status: http.StatusForbidden, code: "is not verified",
		},
		{
			name: "provider error instead of a code",
			user: alice,
			mutate: func(t *testing.T, b *browser, h *harness, cb *url.URL) {
				q := cb.Query()
				q.Del("code")
				q.Set("error", "access_denied")
				q.Set("error_description", "<script>alert(1)</script>")
				cb.RawQuery = q.Encode()
			},
			status: http.StatusForbidden, code: "access_denied",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			var opts []func(*setup)
			if tt.setup != nil {
				opts = append(opts, tt.setup)
			}
			h := newHarness(t, redistest.Mini(t), opts...)
			b := newBrowser(t)
			b.StopAt = func(u *url.URL) bool { return u.Path == "/oauth2/callback" }
			p := b.signIn(h, "/", tt.user.Email, tt.user.Password)
			cb, err := url.Parse(p.Header.Get("Location"))
			if err != nil || cb.Path != "/oauth2/callback" {
				t.Fatalf("login form answered %d with Location %q, want a redirect to the callback", p.Status, p.Header.Get("Location"))
			}
			if tt.mutate != nil {
				tt.mutate(t, b, h, cb)
			}
			b.StopAt = nil
			p = b.Get(cb.String())
			if p.Status != tt.status {
				t.Errorf("callback: status %d, want %d\n%s", p.Status, tt.status, p.Body)
			}
			if p.URL.Host != h.host() || p.URL.Path != "/oauth2/callback" {
				t.Errorf("browser ended at %s, want the gateway's callback page", p.URL)
			}
			if !strings.Contains(p.Body, tt.code) {
				t.Errorf("refusal page lacks %q:\n%s", tt.code, p.Body)
			}
			if strings.Contains(p.Body, "<script>") {
				t.Errorf("refusal page echoes markup unescaped:\n%s", p.Body)
			}
			if status, _ := b.me(h); status != http.StatusUnauthorized {
				t.Errorf("after the refusal GET /api/me: status %d, want 401", status)
			}
		})
	}
}

// TestLoginStateSingleUse replays a callback that already succeeded, with
// the browser's login cookie restored: the state is spent.
func TestLoginStateSingleUse(t *testing.T) {
	h := newHarness(t, redistest.Mini(t))
	b := newBrowser(t)
	b.StopAt = func(u *url.URL) bool { return u.Path == "/oauth2/callback" }
	p := b.signIn(h, "/", "alice@example.com", devidp.DemoUsers()[0].Password)
	cb := p.Header.Get("Location")
	var loginCookie *http.Cookie
	u, _ := url.Parse(h.url)
	for _, c := range b.Client.Jar.Cookies(u) {
		if strings.HasPrefix(c.Name, "llmgate-login-") {
			loginCookie = c
		}
	}
	if loginCookie == nil {
		t.Fatal("no login cookie was set by /oauth2/start")
	}
	b.StopAt = nil
	if p := b.Get(cb); p.Status != http.StatusOK || p.URL.String() != h.url+"/" {
		t.Fatalf("first callback ended at %s with %d, want 200 at home", p.URL, p.Status)
	}
	if b.Cookie(h.url, loginCookie.Name) != nil {
		t.Errorf("login cookie %s still set after the callback", loginCookie.Name)
	}

	attacker := newBrowser(t)
	attacker.Client.Jar.SetCookies(u, []*http.Cookie{{Name: loginCookie.Name, Value: loginCookie.Value}})
	p = attacker.Get(cb)
	if p.Status != http.StatusBadRequest || !strings.Contains(p.Body, "already been used") {
		t.Errorf("replayed callback: status %d, want 400 'already been used':\n%s", p.Status, p.Body)
	}
	if status, _ := attacker.me(h); status != http.StatusUnauthorized {
		t.Errorf("replayed callback signed the replayer in: GET /api/me %d", status)
	}
}

func TestSessionExpiry(t *testing.T) {
	redistest.Each(t, func(t *testing.T, rs *redistest.Server) {
		t.Run("absolute", func(t *testing.T) {
			h := newHarness(t, rs, func(s *setup) {
				// On real Redis the lifetime runs in real time from the
				// sign-in, which can take a few seconds on a loaded machine.
				s.sessions = sessions.Config{TTL: 5 * time.Second, IdleTimeout: time.Hour}
			})
			b := newBrowser(t)
			b.signIn(h, "/", "bob@example.com", devidp.DemoUsers()[1].Password)
			h.advance(time.Second)
			if status, _ := b.me(h); status != http.StatusOK {
				t.Fatalf("1s into a 5s session GET /api/me: %d, want 200", status)
			}
			h.advance(4500 * time.Millisecond)
			if status, _ := b.me(h); status != http.StatusUnauthorized {
				t.Errorf("after the session's lifetime GET /api/me: %d, want 401", status)
			}
			assertSentToSignIn(t, b, h, "/", "%2F")
		})
		t.Run("idle", func(t *testing.T) {
			h := newHarness(t, rs, func(s *setup) {
				s.sessions = sessions.Config{TTL: time.Hour, IdleTimeout: 2 * time.Second, TouchInterval: 500 * time.Millisecond}
			})
			b := newBrowser(t)
			b.signIn(h, "/", "bob@example.com", devidp.DemoUsers()[1].Password)
			for i := range 2 {
				h.advance(1500 * time.Millisecond)
				if status, _ := b.me(h); status != http.StatusOK {
					t.Fatalf("use %d, 1.5s after the last one, of a session with 2s idle timeout: GET /api/me %d, want 200", i+1, status)
				}
			}
			h.advance(2500 * time.Millisecond)
			if status, _ := b.me(h); status != http.StatusUnauthorized {
				t.Errorf("after 2.5s idle GET /api/me: %d, want 401", status)
			}
			assertSentToSignIn(t, b, h, "/?x=1", "%2F%3Fx%3D1")
		})
	})
}

// TestOpenRedirect signs in with hostile rd values: every one must land on
// the gateway's home page, never elsewhere.
func TestOpenRedirect(t *testing.T) {
	payloads := []string{
		"//evil.example",
		"//evil.example/path",
		"///evil.example",
		"////evil.example",
		"/\\evil.example",
		"\\/evil.example",
		"\\\\evil.example",
		"https://evil.example",
		"http://evil.example/",
		"HTTPS://evil.example",
		"javascript:alert(1)",
		"data:text/html,<script>alert(1)</script>",
		"evil.example",
		"/%2F/evil.example",
		"/%2f%2fevil.example",
		"%2F%2Fevil.example",
		"/%5Cevil.example",
		"/%5cevil.example",
		"/%252F%252Fevil.example",
		"/\t/evil.example",
		"/\n/evil.example",
		"/\r\n/evil.example",
		"/%09/evil.example",
		"/%0d%0a/evil.example",
		"/\x00/evil.example",
		"/／evil.example",
		"/\u2215evil.example",
		" //evil.example",
		"https:evil.example",
		"//user:pass@evil.example",
		"/" + strings.Repeat("a", 3000),
	}
	h := newHarness(t, redistest.Mini(t))
	for _, rd := range payloads {
		t.Run(rd[:min(len(rd), 40)], func(t *testing.T) {
			b := newBrowser(t)
			p := b.signIn(h, "/oauth2/start?rd="+url.QueryEscape(rd), "alice@example.com", devidp.DemoUsers()[0].Password)
			if p.URL.String() != h.url+"/" || p.Status != http.StatusOK {
				t.Errorf("sign-in with rd=%q ended at %s (status %d), want %s/", rd, p.URL, p.Status, h.url)
			}
		})
		if got := safeRedirect(rd); got != "/" {
			t.Errorf("safeRedirect(%q) = %q, want /", rd, got)
		}
	}
	// Local paths are honoured.
	for _, rd := range []string{"/api/me", "/ui/tokens?page=2", "/a%20b"} {
		b := newBrowser(t)
		p := b.signIn(h, "/oauth2/start?rd="+url.QueryEscape(rd), "alice@example.com", devidp.DemoUsers()[0].Password)
		want, _ := url.Parse(h.url + rd)
		if p.URL.String() != want.String() {
			t.Errorf("sign-in with rd=%q ended at %s, want %s", rd, p.URL, want)
		}
	}
}

// assertSentToSignIn checks that the browser's visit to path is sent to
// sign in again, coming back to path (rdEscaped is path as the rd query
// value). The provider may then sign it straight back in with its own SSO
// session, as real ones do, so the browser is stopped at /oauth2/start.
func assertSentToSignIn(t *testing.T, b *browser, h *harness, path, rdEscaped string) {
	t.Helper()
	b.StopAt = func(u *url.URL) bool { return u.Path == "/oauth2/start" }
	defer func() { b.StopAt = nil }()
	p := b.Get(h.url + path)
	if want := "/oauth2/start?rd=" + rdEscaped; p.Status != http.StatusFound || p.Header.Get("Location") != want {
		t.Errorf("GET %s with an ended session: %d to %q, want 302 to %q", path, p.Status, p.Header.Get("Location"), want)
	}
	if b.Cookie(h.url, "llmgate") != nil {
		t.Errorf("GET %s with an ended session left the session cookie in place", path)
	}
}
