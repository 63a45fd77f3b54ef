package gateway

import (
	"encoding/csv"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/llmgate/llmgate/internal/devidp"
	"github.com/llmgate/llmgate/internal/redistest"
	"github.com/llmgate/llmgate/tokens"
)

// postAdmin posts an admin form with the CSRF token of csrf and returns the
// page the browser ends on.
func (b *browser) postAdmin(h *harness, path string, csrf http.Header, form url.Values) (int, string, string) {
	b.t.Helper()
	form.Set("csrf_token", csrf.Get("X-Csrf-Token"))
	p := b.PostForm(h.url+path, form, nil)
	return p.Status, p.URL.RequestURI(), p.Body
}

// TestUIAdminSessionsAndUsers: an admin finds bob's sessions, ends one,
// logs him out everywhere with his tokens, blocks and unblocks him, each
// time coming back to the page with a message; bob's browser is sent to
// sign in and his token is refused.
func TestUIAdminSessionsAndUsers(t *testing.T) {
	h := newHarness(t, redistest.Mini(t))
	users := devidp.DemoUsers()
	alice, csrf := signedIn(t, h, users[0])
	bob, _ := signedIn(t, h, users[1])
	bob2, _ := signedIn(t, h, users[1])
	bobTok := h.mint(t, tokens.IssueRequest{Email: "bob@example.com", Subject: "bob-sub", Name: "bob laptop"})

	page := alice.page(h, "/ui/admin/sessions?email=bob%40example.com", http.StatusOK)
	if n := strings.Count(page, `action="/ui/admin/sessions/`); n != 2 {
		t.Fatalf("bob's sessions page: %d End buttons, want 2\n%s", n, page)
	}
	if !strings.Contains(page, `id="logout-person"`) || !strings.Contains(page, `aria-current="page">Sessions</a>`) {
		t.Error("bob's sessions page lacks the log-out-everywhere form or the current nav entry")
	}
	handle := between(page, `action="/ui/admin/sessions/`, `/end"`)
	back := "/ui/admin/sessions?email=bob%40example.com"
	status, at, body := alice.postAdmin(h, "/ui/admin/sessions/"+handle+"/end", csrf, url.Values{"back": {back}})
	if status != http.StatusOK || at != back || !strings.Contains(body, `id="flash">Ended a session of bob@example.com`) {
		t.Fatalf("end a session: ended on %d %s, want the sessions page with a message\n%s", status, at, body)
	}
	if strings.Count(body, `action="/ui/admin/sessions/`) != 1 {
		t.Error("after ending one of bob's two sessions, the page does not show one left")
	}
	// The flash is shown once.
	if again := alice.page(h, back, http.StatusOK); strings.Contains(again, `id="flash"`) {
		t.Error("the message shows again on reload")
	}

	// Log bob out everywhere, tokens too.
	_, _, body = alice.postAdmin(h, "/ui/admin/users/logout", csrf, url.Values{"email": {"bob@example.com"}, "revoke_tokens": {"1"}, "back": {back}})
	if !strings.Contains(body, "1 session ended, 1 token revoked") {
		t.Errorf("log out everywhere: page says\n%s", between(body, `id="flash">`, `</p>`))
	}
	for _, b := range []*browser{bob, bob2} {
		b.StopAt = func(u *url.URL) bool { return u.Path == "/oauth2/start" }
		if p := b.Get(h.url + "/ui/usage"); p.Status != http.StatusFound || !strings.HasPrefix(p.Header.Get("Location"), "/oauth2/start") {
			t.Errorf("bob after log-out-everywhere: GET /ui/usage %d to %q, want sent to sign in", p.Status, p.Header.Get("Location"))
		}
	}
	if resp, _ := h.api(t, "POST", "/v1/chat/completions", chatBody, bearer(bobTok)); resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("bob's token after revoke-everything: %d, want 401", resp.StatusCode)
	}

	// The users page lists both, with their numbers; block and unblock bob.
	page = alice.page(h, "/ui/admin/users", http.StatusOK)
	for _, want := range []string{`id="user-alice@example.com"`, `id="user-bob@example.com"`, `aria-label="Block bob@example.com"`} {
		if !strings.Contains(page, want) {
			t.Errorf("users page lacks %s", want)
		}
	}
	bobTok2 := h.mint(t, tokens.IssueRequest{Email: "bob@example.com", Subject: "bob-sub", Name: "bob new"})
	_, at, body = alice.postAdmin(h, "/ui/admin/users/block", csrf, url.Values{"email": {"bob@example.com"}, "back": {"/ui/admin/users"}})
	if at != "/ui/admin/users" || !strings.Contains(body, "Blocked bob@example.com") || !strings.Contains(body, `aria-label="Unblock bob@example.com"`) {
		t.Errorf("block: ended on %s\n%s", at, between(body, `<main`, `</table>`))
	}
	if resp, _ := h.api(t, "POST", "/v1/chat/completions", chatBody, bearer(bobTok2)); resp.StatusCode != http.StatusForbidden {
		t.Errorf("blocked bob's token: %d, want 403", resp.StatusCode)
	}
	_, _, body = alice.postAdmin(h, "/ui/admin/users/unblock", csrf, url.Values{"email": {"bob@example.com"}, "back": {"/ui/admin/users"}})
	if !strings.Contains(body, "Unblocked bob@example.com") {
		t.Errorf("unblock: page says %s", between(body, `id="flash">`, `</p>`))
	}
	if resp, body := h.api(t, "POST", "/v1/chat/completions", chatBody, bearer(bobTok2)); resp.StatusCode != http.StatusOK {
		t.Errorf("unblocked bob's token: %d %s, want 200", resp.StatusCode, body)
	}

	// A refused action comes back with what was refused.
	_, _, body = alice.postAdmin(h, "/ui/admin/users/block", csrf, url.Values{"email": {"alice@example.com"}, "back": {"/ui/admin/users"}})
	if !strings.Contains(body, `class="flash flash-error" role="alert" id="flash">Not done: you cannot block yourself`) {
		t.Errorf("self-block: page says %s", between(body, `<main`, `</p>`))
	}
	// back may only lead to the admin pages.
	_, at, _ = alice.postAdmin(h, "/ui/admin/users/unblock", csrf, url.Values{"email": {"carol@example.com"}, "back": {"//evil.example/ui/admin/"}})
	if at != "/ui/admin/users" {
		t.Errorf("back=//evil.example: ended on %s, want /ui/admin/users", at)
	}
}

// TestUIAdminRefusals: non-admins get the HTML 403 page on every admin
// page and action; forms without the CSRF token are refused; signed-out
// browsers are sent to sign in.
func TestUIAdminRefusals(t *testing.T) {
	h := newHarness(t, redistest.Mini(t))
	users := devidp.DemoUsers()
	alice, _ := signedIn(t, h, users[0])
	bob, bobCSRF := signedIn(t, h, users[1])
	pages := []string{"/ui/admin/sessions", "/ui/admin/users", "/ui/admin/tokens", "/ui/admin/usage", "/ui/admin/usage.csv", "/ui/admin/audit"}
	for _, path := range pages {
		body := bob.page(h, path, http.StatusForbidden)
		if !strings.Contains(body, `<h1 id="error-heading">Administrators only</h1>`) || !strings.Contains(body, "bob@example.com is not one") {
			t.Errorf("bob on %s: not the 403 page\n%s", path, body)
		}
		if strings.Contains(body, "/ui/admin/") {
			t.Errorf("bob's 403 page on %s shows admin links", path)
		}
	}
	for _, path := range []string{"/ui/admin/users/block", "/ui/admin/users/logout", "/ui/admin/tokens/x/revoke", "/ui/admin/sessions/x/end"} {
		if status, _, _ := bob.postAdmin(h, path, bobCSRF, url.Values{"email": {"alice@example.com"}}); status != http.StatusForbidden {
			t.Errorf("bob POST %s: %d, want 403", path, status)
		}
		if p := alice.PostForm(h.url+path, url.Values{"email": {"bob@example.com"}}, nil); p.Status != http.StatusForbidden || !strings.Contains(p.Body, "This form has expired") {
			t.Errorf("alice POST %s without the CSRF token: %d, want 403", path, p.Status)
		}
	}
	anon := newBrowser(t)
	anon.StopAt = func(u *url.URL) bool { return u.Path == "/oauth2/start" }
	if p := anon.Get(h.url + "/ui/admin/users"); p.Status != http.StatusFound {
		t.Errorf("signed out GET /ui/admin/users: %d, want 302 to sign in", p.Status)
	}
}

// between returns the text of s between the first start and the next end.
func between(s, start, end string) string {
	_, rest, ok := strings.Cut(s, start)
	if !ok {
		return ""
	}
	v, _, _ := strings.Cut(rest, end)
	return v
}

// TestUIAdminTokens: the admin tokens page filters by owner and status
// and revokes anyone's token, which the proxy then refuses.
func TestUIAdminTokens(t *testing.T) {
	h := newHarness(t, redistest.Mini(t))
	alice, csrf := signedIn(t, h, devidp.DemoUsers()[0])
	bobTok := h.mint(t, tokens.IssueRequest{Email: "bob@example.com", Subject: "bob-sub", Name: "bob ci"})
	h.mint(t, tokens.IssueRequest{Name: "alice laptop"})

	page := alice.page(h, "/ui/admin/tokens", http.StatusOK)
	if !strings.Contains(page, "bob ci") || !strings.Contains(page, "alice laptop") {
		t.Fatalf("all tokens page lacks a token\n%s", page)
	}
	page = alice.page(h, "/ui/admin/tokens?email=bob%40example.com&status=active", http.StatusOK)
	if !strings.Contains(page, "bob ci") || strings.Contains(page, "alice laptop") {
		t.Errorf("filtered by bob: wrong tokens")
	}
	if !strings.Contains(page, `<option value="active" selected>`) {
		t.Error("the status filter does not show the chosen status")
	}
	id := between(page, `action="/ui/admin/tokens/`, `/revoke"`)
	back := "/ui/admin/tokens?email=bob%40example.com&status=active"
	_, at, body := alice.postAdmin(h, "/ui/admin/tokens/"+id+"/revoke", csrf, url.Values{"back": {back}})
	if at != back || !strings.Contains(body, "Revoked “bob ci” of bob@example.com") || strings.Contains(body, `id="token-`+id) {
		t.Errorf("revoke: ended on %s\n%s", at, between(body, "<main", "</main>"))
	}
	if resp, _ := h.api(t, "POST", "/v1/chat/completions", chatBody, bearer(bobTok)); resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("bob's token revoked by an admin: %d, want 401", resp.StatusCode)
	}
	page = alice.page(h, "/ui/admin/tokens?status=revoked", http.StatusOK)
	if !strings.Contains(page, "bob ci") || strings.Contains(page, "alice laptop") {
		t.Error("status=revoked does not list exactly the revoked token")
	}
	alice.page(h, "/ui/admin/tokens?status=bogus", http.StatusBadRequest)
}

// TestUIAdminUsage: the admin usage page shows each person's calls per
// model; the CSV download is an attachment whose cells cannot run as
// spreadsheet formulas, whatever a caller names their model.
func TestUIAdminUsage(t *testing.T) {
	h := newHarness(t, redistest.Mini(t))
	alice, _ := signedIn(t, h, devidp.DemoUsers()[0])
	bobTok := h.mint(t, tokens.IssueRequest{Email: "bob@example.com", Subject: "bob-sub"})
	evil := `=HYPERLINK("http://evil.example","x")`
	for _, body := range []string{chatBody, `{"model":"` + strings.ReplaceAll(evil, `"`, `\"`) + `","messages":[{"role":"user","content":"hi"}]}`} {
		if resp, out := h.api(t, "POST", "/v1/chat/completions", body, bearer(bobTok)); resp.StatusCode != http.StatusOK {
			t.Fatalf("bob's call: %d %s", resp.StatusCode, out)
		}
	}
	var page string
	waitFor(t, "usage recorded", func() bool {
		page = alice.page(h, "/ui/admin/usage?days=7", http.StatusOK)
		return strings.Contains(page, `<dd id="total-requests">2</dd>`)
	})
	for _, want := range []string{
		`<td>bob@example.com</td><td>gpt-4o-mini</td><td class="num">1</td>`,
		`aria-label="Requests per day over the last 7 days (everyone)"`,
		`href="/ui/admin/usage.csv?days=7"`,
	} {
		if !strings.Contains(page, want) {
			t.Errorf("admin usage page lacks %s", want)
		}
	}
	if page := alice.page(h, "/ui/admin/usage?days=7&email=carol%40example.com", http.StatusOK); strings.Contains(page, "gpt-4o-mini") {
		t.Error("usage filtered to carol shows bob's calls")
	}

	p := alice.Get(h.url + "/ui/admin/usage.csv?days=7")
	if p.Status != http.StatusOK || !strings.HasPrefix(p.Header.Get("Content-Type"), "text/csv") ||
		!strings.HasPrefix(p.Header.Get("Content-Disposition"), `attachment; filename="llmgate-usage-`) {
		t.Fatalf("CSV: %d %q %q", p.Status, p.Header.Get("Content-Type"), p.Header.Get("Content-Disposition"))
	}
	rows, err := csv.NewReader(strings.NewReader(p.Body)).ReadAll()
	if err != nil || len(rows) != 3 {
		t.Fatalf("CSV: %v, %d rows, want a header and 2 rows\n%s", err, len(rows), p.Body)
	}
	if strings.Join(rows[0], ",") != "day,email,model,requests,input_tokens,output_tokens,cost_usd,cost_unknown_requests" {
		t.Errorf("CSV header %v", rows[0])
	}
	for _, r := range rows[1:] {
		for _, cell := range r {
			if cell != "" && strings.ContainsRune("=+-@", rune(cell[0])) {
				t.Errorf("CSV cell %q starts like a formula", cell)
			}
		}
	}
	if !strings.Contains(p.Body, `'`+strings.ReplaceAll(evil, `"`, `""`)) {
		t.Errorf("CSV lacks the defused model name\n%s", p.Body)
	}
}

func TestCSVSafe(t *testing.T) {
	got := csvSafe("=1+1", "+x", "-2", "@SUM(A1)", "\tx", "plain", "", "2026-11-25")
	want := []string{"'=1+1", "'+x", "'-2", "'@SUM(A1)", "'\tx", "plain", "", "2026-11-25"}
	if strings.Join(got, "|") != strings.Join(want, "|") {
		t.Errorf("csvSafe = %q, want %q", got, want)
	}
}

// TestUIAdminAudit: the audit page lists events newest first, filters by
// person and type, and pages back with Older.
func TestUIAdminAudit(t *testing.T) {
	h := newHarness(t, redistest.Mini(t))
	alice, _ := signedIn(t, h, devidp.DemoUsers()[0])
	bob, _ := signedIn(t, h, devidp.DemoUsers()[1])
	for range pageSize + 5 {
		h.mint(t, tokens.IssueRequest{})   // not audited: minted below the gateway
		bob.Get(h.url + "/ui/admin/users") // audited: admin.denied
	}
	// The audit log is written asynchronously: wait until all of them
	// are stored, newest page and older page together.
	var page, first string
	waitFor(t, "the refusals stored", func() bool {
		first = alice.page(h, "/ui/admin/audit?type=admin.denied&email=bob%40example.com", http.StatusOK)
		if strings.Count(first, `<span class="pill refusal">admin.denied</span>`) != pageSize {
			return false
		}
		older, _, _ := strings.Cut(first, `" id="older">`)
		older = older[strings.LastIndex(older, `href="`)+len(`href="`):]
		if older == "" {
			t.Fatalf("no Older link after a full page\n%s", first)
		}
		page = alice.page(h, strings.ReplaceAll(older, "&amp;", "&"), http.StatusOK)
		return strings.Count(page, `admin.denied</span>`) == 5
	})
	if !strings.Contains(first, `<option value="admin.denied" selected>`) || !strings.Contains(first, `value="bob@example.com"`) {
		t.Error("the audit page does not show its filters")
	}
	if !strings.Contains(page, "← Newest") || strings.Contains(page, `id="older"`) {
		t.Error("the last page lacks the link to the newest or still offers Older")
	}
	page = alice.page(h, "/ui/admin/audit?type=login", http.StatusOK)
	if n := strings.Count(page, `<span class="pill">login</span>`); n != 2 {
		t.Errorf("type=login: %d sign-ins, want 2", n)
	}
	alice.page(h, "/ui/admin/audit?cursor=bogus", http.StatusBadRequest)
}
