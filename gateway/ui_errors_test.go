package gateway

import (
	"context"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/llmgate/llmgate/internal/devidp"
	"github.com/llmgate/llmgate/internal/redistest"
	"github.com/llmgate/llmgate/internal/webtest"
)

// TestUIRefusalPages: refusals a person meets in the browser say what
// happened and what to do, as pages of the gateway.
func TestUIRefusalPages(t *testing.T) {
	users := devidp.DemoUsers()
	alice, bob := users[0], users[1]
	check := func(t *testing.T, p webtest.Page, status int, heading string, more ...string) {
		t.Helper()
		if p.Status != status || !strings.Contains(p.Body, `<h1 id="error-heading">`+heading+`</h1>`) {
			t.Fatalf("got %d, want %d with heading %q\n%s", p.Status, status, heading, p.Body)
		}
		for _, m := range more {
			if !strings.Contains(p.Body, m) {
				t.Errorf("page lacks %q", m)
			}
		}
	}

	t.Run("blocked", func(t *testing.T) {
		h := newHarness(t, redistest.Mini(t))
		if err := h.tokens.Block(context.Background(), bob.Email, "alice@example.com"); err != nil {
			t.Fatal(err)
		}
		p := newBrowser(t).signIn(h, "/", bob.Email, bob.Password)
		check(t, p, http.StatusForbidden, "Your account is blocked", "Ask them to unblock you")
	})

	t.Run("domain not allowed", func(t *testing.T) {
		h := newHarness(t, redistest.Mini(t), func(s *setup) { s.oidc.AllowedEmailDomains = []string{"corp.example"} })
		p := newBrowser(t).signIn(h, "/", alice.Email, alice.Password)
		check(t, p, http.StatusForbidden, "This account may not sign in here",
			"accounts of example.com may not sign in here", `id="error-action"`)
	})

	t.Run("session ended before a form was sent", func(t *testing.T) {
		h := newHarness(t, redistest.Mini(t))
		b, csrf := signedIn(t, h, bob)
		if _, err := h.store.DeleteByEmail(context.Background(), bob.Email); err != nil {
			t.Fatal(err)
		}
		p := b.PostForm(h.url+"/ui/tokens", url.Values{"csrf_token": {csrf.Get("X-Csrf-Token")}, "name": {"late"}}, nil)
		check(t, p, http.StatusUnauthorized, "Your session has ended", "Nothing was changed", "Sign in again")
	})

	t.Run("form from an older session", func(t *testing.T) {
		h := newHarness(t, redistest.Mini(t))
		b, _ := signedIn(t, h, bob)
		p := b.PostForm(h.url+"/ui/tokens", url.Values{"csrf_token": {"stale"}, "name": {"x"}}, nil)
		check(t, p, http.StatusForbidden, "This form has expired", "Reload the page")
	})
}
