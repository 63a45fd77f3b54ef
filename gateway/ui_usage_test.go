package gateway

import (
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/llmgate/llmgate/internal/devidp"
	"github.com/llmgate/llmgate/internal/redistest"
	"github.com/llmgate/llmgate/tokens"
)

// page GETs a gateway page with b and fails unless it answers want.
func (b *browser) page(h *harness, path string, want int) string {
	b.t.Helper()
	p := b.Get(h.url + path)
	if p.Status != want {
		b.t.Fatalf("GET %s: %d, want %d\n%s", path, p.Status, want, p.Body)
	}
	if ct := p.Header.Get("Content-Type"); !strings.HasPrefix(ct, "text/html") {
		b.t.Fatalf("GET %s: Content-Type %q, want text/html", path, ct)
	}
	return p.Body
}

// TestUIUsage: calls made with a token show on the usage page, in the
// per-model table, the chart and the recent requests; the page needs no
// script; another person's calls do not show.
func TestUIUsage(t *testing.T) {
	h := newHarness(t, redistest.Mini(t))
	users := devidp.DemoUsers()
	alice, _ := signedIn(t, h, users[0])
	bob, _ := signedIn(t, h, users[1])
	tok := h.mint(t, tokens.IssueRequest{Name: "usage laptop"})
	for range 2 {
		if resp, body := h.api(t, "POST", "/v1/chat/completions", chatBody, bearer(tok)); resp.StatusCode != http.StatusOK {
			t.Fatalf("proxy call: %d %s", resp.StatusCode, body)
		}
	}
	var body string
	waitFor(t, "usage recorded", func() bool {
		body = alice.page(h, "/ui/usage?days=7", http.StatusOK)
		return strings.Contains(body, `id="recent-requests"`) && strings.Contains(body, `<dd id="total-requests">2</dd>`)
	})
	for _, want := range []string{
		`<th scope="row">gpt-4o-mini</th><td class="num">2</td>`, // per-model table
		`role="img" aria-label="Requests per day over the last 7 days (you)"`,
		`<rect class="bar"`, `<title>`, // bars with tooltips
		`usage laptop`,                  // the recent request names its token
		`aria-current="page">Usage</a>`, // the navigation marks the page
		`href="/ui/usage?days=30&amp;metric=requests"`,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("usage page lacks %q", want)
		}
	}
	if strings.Contains(body, "<script") || strings.Contains(body, "style=") {
		t.Error("usage page has a script or an inline style")
	}
	if !strings.Contains(body, `href="/ui/admin/audit"`) {
		t.Error("alice, an admin, does not see the admin links")
	}

	bobs := bob.page(h, "/ui/usage?metric=tokens&days=90", http.StatusOK)
	if strings.Contains(bobs, "gpt-4o-mini") || strings.Contains(bobs, "usage laptop") {
		t.Error("bob's usage page shows alice's calls")
	}
	if strings.Contains(bobs, "/ui/admin/") {
		t.Error("bob, not an admin, sees admin links")
	}
	for _, bad := range []string{"/ui/usage?days=0", "/ui/usage?days=abc", "/ui/usage?metric=evil"} {
		bob.page(h, bad, http.StatusBadRequest)
	}
	// Signed out: sent to sign in, coming back to the page.
	anon := newBrowser(t)
	anon.StopAt = func(u *url.URL) bool { return u.Path == "/oauth2/start" }
	if p := anon.Get(h.url + "/ui/usage?days=7"); p.Status != http.StatusFound || p.Header.Get("Location") != "/oauth2/start?rd=%2Fui%2Fusage%3Fdays%3D7" {
		t.Errorf("GET /ui/usage signed out: %d to %q, want 302 to sign in", p.Status, p.Header.Get("Location"))
	}
}
