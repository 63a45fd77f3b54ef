package gateway

import (
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/llmgate/llmgate/internal/devidp"
	"github.com/llmgate/llmgate/internal/redistest"
)

// TestCLILoopbackLogin plays `llmgate login`: the browser signs in at the
// provider, approves on the consent page, lands on the CLI's loopback
// listener with a code, and the CLI trades the code for its credential.
func TestCLILoopbackLogin(t *testing.T) {
	redistest.Each(t, func(t *testing.T, rs *redistest.Server) {
		h := newHarness(t, rs)
		l := newLoopback(t)
		b := newBrowser(t)

		// Not signed in: SSO first, then back to the consent page.
		p := b.signIn(h, strings.TrimPrefix(l.authorizeURL(h, `<b>build-box</b>`, ""), h.url), "alice@example.com", devidp.DemoUsers()[0].Password)
		if p.Status != http.StatusOK || p.URL.Path != "/cli/authorize" || p.URL.Query().Get("code_challenge") != l.challenge {
			t.Fatalf("after sign-in: %d at %s, want the consent page with the CLI's query\n%s", p.Status, p.URL, p.Body)
		}
		for _, want := range []string{"Allow <code>llmgate login</code> on &lt;b&gt;build-box&lt;/b&gt;?", "reported by the CLI", "alice@example.com", "llmgate CLI on &lt;b&gt;build-box&lt;/b&gt;"} {
			if !strings.Contains(p.Body, want) {
				t.Errorf("consent page lacks %q:\n%s", want, p.Body)
			}
		}
		if strings.Contains(p.Body, "<b>build-box") {
			t.Errorf("consent page reflects the host unescaped:\n%s", p.Body)
		}

		p = b.submit(h, formByAction(t, p, "/cli/authorize"), "approve")
		got := p.URL.Query()
		if p.Status != http.StatusOK || "http://"+p.URL.Host+p.URL.Path != l.redirect || got.Get("state") != l.state || len(got.Get("code")) < 43 {
			t.Fatalf("approve ended at %s (%d), want %s?code=…&state=%s", p.URL, p.Status, l.redirect, l.state)
		}
		code := got.Get("code")

		resp, tok := h.exchange(t, l, code)
		if resp.StatusCode != http.StatusOK || resp.Header.Get("Cache-Control") != "no-store" {
			t.Fatalf("POST /api/cli/token: %d, Cache-Control %q, %v; want 200, no-store", resp.StatusCode, resp.Header.Get("Cache-Control"), tok)
		}
		if tok["token_type"] != "Bearer" || tok["scope"] != "llm tokens" || tok["email"] != "alice@example.com" || str(tok, "token_id") == "" ||
			str(tok, "access_token") == "" || str(tok, "expires_at") == "" {
			t.Errorf("token answer %v: want Bearer, scope \"llm tokens\", alice, token_id, expires_at", tok)
		}
		if in, _ := tok["expires_in"].(float64); in < float64(30*24*3600-60) || in > float64(30*24*3600) {
			t.Errorf("expires_in %v, want LLMGATE_CLI_TOKEN_TTL (30d)", tok["expires_in"])
		}

		// The credential manages tokens and calls the LLM API.
		cred := bearer(str(tok, "access_token"))
		resp, body := h.api(t, "GET", "/api/me", "", cred)
		if resp.StatusCode != http.StatusOK || !strings.Contains(body, `"token_id":"`+str(tok, "token_id")+`"`) {
			t.Errorf("GET /api/me with the CLI credential: %d %s", resp.StatusCode, body)
		}
		resp, body = h.api(t, "GET", "/api/tokens", "", cred)
		if resp.StatusCode != http.StatusOK || !strings.Contains(body, `"kind":"cli"`) || !strings.Contains(body, `"client_id":"llmgate-cli"`) {
			t.Errorf("GET /api/tokens with the CLI credential: %d %s, want the credential listed as kind cli", resp.StatusCode, body)
		}
		if resp, _ := h.api(t, "POST", "/v1/chat/completions", chatBody, cred); resp.StatusCode != http.StatusOK {
			t.Errorf("LLM call with the CLI credential: %d", resp.StatusCode)
		}

		// A code works once.
		if resp, out := h.exchange(t, l, code); resp.StatusCode != http.StatusBadRequest || out["error"] != "invalid_grant" {
			t.Errorf("reusing the code: %d %v, want 400 invalid_grant", resp.StatusCode, out)
		}
	})
}

// TestCLILoopbackRefusals: a code is bound to its verifier and redirect
// URI and lives 60 seconds; a denial goes back to the CLI as access_denied.
func TestCLILoopbackRefusals(t *testing.T) {
	redistest.Each(t, func(t *testing.T, rs *redistest.Server) {
		h := newHarness(t, rs)
		b, _ := signedIn(t, h, devidp.DemoUsers()[1])
		codeOf := func(l loopback) string {
			p := b.approveLoopback(h, l, "approve")
			c := p.URL.Query().Get("code")
			if c == "" {
				t.Fatalf("approve ended at %s, want a code", p.URL)
			}
			return c
		}

		l := newLoopback(t)
		code := codeOf(l)
		wrong := l
		wrong.verifier = randomString(50)
		if resp, out := h.exchange(t, wrong, code); resp.StatusCode != 400 || out["error"] != "invalid_grant" {
			t.Errorf("wrong verifier: %d %v, want 400 invalid_grant", resp.StatusCode, out)
		}
		if resp, out := h.exchange(t, l, code); resp.StatusCode != 400 || out["error"] != "invalid_grant" {
			t.Errorf("right verifier after a wrong one: %d %v, want 400 invalid_grant (the code is spent)", resp.StatusCode, out)
		}

		code = codeOf(l)
		other := l
		other.redirect = strings.Replace(l.redirect, "127.0.0.1", "localhost", 1)
		if resp, out := h.exchange(t, other, code); resp.StatusCode != 400 || out["error"] != "invalid_grant" {
			t.Errorf("wrong redirect_uri: %d %v, want 400 invalid_grant", resp.StatusCode, out)
		}

		code = codeOf(l)
		h.clock.Add(61 * time.Second)
		if rs.Mini != nil {
			rs.Mini.FastForward(61 * time.Second)
		}
		if resp, out := h.exchange(t, l, code); resp.StatusCode != 400 || out["error"] != "invalid_grant" {
			t.Errorf("code after 61s: %d %v, want 400 invalid_grant", resp.StatusCode, out)
		}

		p := b.approveLoopback(h, l, "deny")
		if q := p.URL.Query(); q.Get("error") != "access_denied" || q.Get("state") != l.state || q.Get("code") != "" {
			t.Errorf("deny ended at %s, want error=access_denied&state=%s and no code", p.URL, l.state)
		}

		for _, tt := range []struct {
			name string
			form url.Values
			want string
		}{
			{"no grant_type", url.Values{"code": {"x"}}, "invalid_request"},
			{"unknown grant_type", url.Values{"grant_type": {"password"}}, "unsupported_grant_type"},
			{"no verifier", url.Values{"grant_type": {"authorization_code"}, "code": {"x"}, "redirect_uri": {l.redirect}}, "invalid_request"},
			{"unknown code", url.Values{"grant_type": {"authorization_code"}, "code": {"x"}, "redirect_uri": {l.redirect}, "code_verifier": {l.verifier}}, "invalid_grant"},
		} {
			if resp, out := h.oauthPost(t, "/api/cli/token", tt.form, nil); resp.StatusCode != 400 || out["error"] != tt.want {
				t.Errorf("%s: %d %v, want 400 %s", tt.name, resp.StatusCode, out, tt.want)
			}
		}
	})
}

// TestCLIAuthorizeRedirectURIs: anything but a loopback /callback is
// refused with a page, never a redirect, signed in or not, on the GET and
// on the consent POST.
func TestCLIAuthorizeRedirectURIs(t *testing.T) {
	h := newHarness(t, redistest.Mini(t))
	l := newLoopback(t)
	port := strings.TrimPrefix(strings.TrimSuffix(l.redirect, "/callback"), "http://127.0.0.1:")
	payloads := []string{
		"https://evil.com/callback",
		"http://evil.com/callback",
		"http://127.0.0.1.evil.com/callback",
		"http://localhost.evil.com:" + port + "/callback",
		"http://localhost@evil.com/callback",
		"http://127.0.0.1:" + port + "@evil.com/callback",
		"http://user@127.0.0.1:" + port + "/callback",
		"//evil.com/callback",
		"/callback",
		"http://127.0.0.1:8080/other",
		"http://127.0.0.1:" + port + "/callback/",
		"http://127.0.0.1:" + port + "/callback/../callback",
		"http://127.0.0.1:" + port + "//callback",
		"http://127.0.0.1:" + port + "/Callback",
		"http://127.0.0.1:" + port + "/callback?next=https://evil.com",
		"http://127.0.0.1:" + port + "/callback?",
		"http://127.0.0.1:" + port + "/callback#",
		"http://[::1]:5/callback#frag",
		"http://127.0.0.1:" + port + "/%63allback",
		"http://127.0.0.1:" + port + "\\@evil.com/callback",
		"http://127.0.0.1%2eevil.com/callback",
		"HTTP://127.0.0.1:" + port + "/callback",
		"http://127.1:" + port + "/callback",
		"http://0x7f000001:" + port + "/callback",
		"http://2130706433:" + port + "/callback",
		"http://127.0.0.2:" + port + "/callback",
		"http://[::ffff:127.0.0.1]:" + port + "/callback",
		"http://127.0.0.1:0/callback",
		"http://127.0.0.1:65536/callback",
		"http://127.0.0.1:080/callback",
		"http://127.0.0.1/callback",
		"http://127.0.0.1:/callback",
		"javascript:alert(1)//127.0.0.1:" + port + "/callback",
		"data:text/html,<script>alert(1)</script>",
		"http://127.0.0.1:" + port + "/callback\r\nLocation: https://evil.com",
		" http://127.0.0.1:" + port + "/callback",
		"",
	}
	anon := newBrowser(t)
	anon.StopAt = func(*url.URL) bool { return true }
	signed, csrf := signedIn(t, h, devidp.DemoUsers()[0])
	signed.StopAt = func(*url.URL) bool { return true }
	for _, payload := range payloads {
		t.Run(payload, func(t *testing.T) {
			bad := l
			bad.redirect = payload
			for _, b := range []*browser{anon, signed} {
				p := b.Get(bad.authorizeURL(h, "laptop", ""))
				if p.Status != http.StatusBadRequest || p.Header.Get("Location") != "" || !strings.Contains(p.Body, "redirect_uri") {
					t.Errorf("GET /cli/authorize: %d, Location %q, want 400 with a page naming redirect_uri and no redirect", p.Status, p.Header.Get("Location"))
				}
			}
			form := url.Values{"csrf_token": csrf["X-Csrf-Token"], "redirect_uri": {payload}, "state": {"s"},
				"code_challenge": {l.challenge}, "code_challenge_method": {"S256"}, "action": {"approve"}}
			p := signed.PostForm(h.url+"/cli/authorize", form, sameOrigin(h))
			if p.Status != http.StatusBadRequest || p.Header.Get("Location") != "" {
				t.Errorf("POST /cli/authorize: %d, Location %q, want 400 and no redirect", p.Status, p.Header.Get("Location"))
			}
		})
	}

	// The other parameters are checked too.
	for name, q := range map[string]url.Values{
		"plain method":    {"code_challenge_method": {"plain"}},
		"no method":       {"code_challenge_method": {""}},
		"short challenge": {"code_challenge": {"abc"}},
		"long state":      {"state": {strings.Repeat("s", 600)}},
		"control in host": {"host": {"a\nb"}},
	} {
		u, _ := url.Parse(l.authorizeURL(h, "laptop", ""))
		v := u.Query()
		for k, vs := range q {
			v[k] = vs
		}
		u.RawQuery = v.Encode()
		if p := signed.Get(u.String()); p.Status != http.StatusBadRequest || p.Header.Get("Location") != "" {
			t.Errorf("%s: %d, Location %q, want 400 and no redirect", name, p.Status, p.Header.Get("Location"))
		}
	}
}

// TestCLIConsentForgery: the consent POST needs the session's CSRF token
// and a same-origin browser.
func TestCLIConsentForgery(t *testing.T) {
	h := newHarness(t, redistest.Mini(t))
	l := newLoopback(t)
	b, _ := signedIn(t, h, devidp.DemoUsers()[0])
	b.StopAt = func(u *url.URL) bool { return u.Host != h.host() }
	p := b.Get(l.authorizeURL(h, "laptop", ""))
	f := formByAction(t, p, "/cli/authorize")
	f.Values.Set("action", "approve")
	noCSRF := url.Values{}
	for k, v := range f.Values {
		if k != "csrf_token" {
			noCSRF[k] = v
		}
	}
	tests := []struct {
		name   string
		form   url.Values
		header http.Header
		want   int
	}{
		{"no CSRF token", noCSRF, sameOrigin(h), http.StatusForbidden},
		{"cross-origin", f.Values, http.Header{"Origin": {"https://evil.example"}}, http.StatusForbidden},
		{"cross-site fetch", f.Values, http.Header{"Sec-Fetch-Site": {"cross-site"}}, http.StatusForbidden},
		{"no origin at all", f.Values, nil, http.StatusForbidden},
		{"same-origin by Sec-Fetch-Site", f.Values, http.Header{"Sec-Fetch-Site": {"same-origin"}}, http.StatusSeeOther},
		{"same-origin by Origin", f.Values, sameOrigin(h), http.StatusSeeOther},
	}
	for _, tt := range tests {
		p := b.PostForm(h.url+"/cli/authorize", tt.form, tt.header)
		if p.Status != tt.want {
			t.Errorf("%s: %d, want %d", tt.name, p.Status, tt.want)
		}
		if tt.want != http.StatusSeeOther && p.Header.Get("Location") != "" {
			t.Errorf("%s: refused with a redirect to %s", tt.name, p.Header.Get("Location"))
		}
	}
	anon := newBrowser(t)
	anon.StopAt = func(*url.URL) bool { return true }
	if p := anon.PostForm(h.url+"/cli/authorize", f.Values, sameOrigin(h)); p.Status != http.StatusUnauthorized {
		t.Errorf("consent POST without a session: %d, want 401", p.Status)
	}
}
