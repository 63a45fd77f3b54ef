package gateway

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/cdp"
	"github.com/chromedp/cdproto/log"
	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/cdproto/target"
	"github.com/chromedp/chromedp"

	"github.com/llmgate/llmgate/internal/devidp"
	"github.com/llmgate/llmgate/internal/redistest"
	"github.com/llmgate/llmgate/tokens"
)

// chromiumPath finds a Chromium to drive, skipping the test without one
// (failing it under LLMGATE_TEST_REQUIRE_BROWSER=1, as CI sets).
func chromiumPath(tb testing.TB) string {
	tb.Helper()
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	if os.Getenv("LLMGATE_TEST_REQUIRE_BROWSER") == "1" {
		tb.Fatal("LLMGATE_TEST_REQUIRE_BROWSER=1 but no chromium on PATH: apt-get install chromium")
	}
	tb.Skip("no Chromium installed: apt-get install chromium to run the browser tests")
	return ""
}

// chrome is a headless Chromium for one test (or one browser context of
// it: a separate cookie jar, as a second person's browser), recording
// console errors, exceptions and CSP violations of the gateway's own
// pages, and the URLs of the documents it requested, redirects included.
type chrome struct {
	ctx      context.Context
	name     string
	mu       sync.Mutex
	problems []string
	visited  []string
}

func newChrome(t *testing.T, origin string) *chrome {
	t.Helper()
	// Chromium's helpers may still be writing when the test ends, so the
	// profile directory is removed best-effort rather than by t.TempDir.
	profile, err := os.MkdirTemp("", "llmgate-chromium-")
	if err != nil {
		t.Fatal(err)
	}
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(chromiumPath(t)),
		chromedp.NoSandbox, // root in CI
		chromedp.DisableGPU,
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("disable-quic", true),
		chromedp.WindowSize(1280, 900),
		chromedp.UserDataDir(profile),
	)
	alloc, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancelCtx := chromedp.NewContext(alloc)
	ctx, cancelTimeout := context.WithTimeout(ctx, 3*time.Minute)
	t.Cleanup(func() {
		cancelTimeout()
		cancelCtx()
		cancelAlloc()
		os.RemoveAll(profile)
	})
	return watch(t, ctx, origin, "browser")
}

// otherPerson opens a second browser context in c's Chromium: its own
// cookies, as another person's browser.
func (c *chrome) otherPerson(t *testing.T, origin, name string) *chrome {
	t.Helper()
	// chromedp's WithNewBrowserContext opens the tab without a window,
	// which headless Chromium refuses ("no browser is open"): open it here.
	exec := cdp.WithExecutor(c.ctx, chromedp.FromContext(c.ctx).Browser)
	bctx, err := target.CreateBrowserContext().WithDisposeOnDetach(true).Do(exec)
	if err != nil {
		t.Fatalf("create a browser context: %v", err)
	}
	id, err := target.CreateTarget("about:blank").WithBrowserContextID(bctx).WithNewWindow(true).Do(exec)
	if err != nil {
		t.Fatalf("open a tab in the new browser context: %v", err)
	}
	ctx, cancel := chromedp.NewContext(c.ctx, chromedp.WithTargetID(id))
	t.Cleanup(cancel)
	return watch(t, ctx, origin, name)
}

// watch starts recording ctx's problems and documents, and saves a
// screenshot of its page when the test fails.
func watch(t *testing.T, ctx context.Context, origin, name string) *chrome {
	t.Helper()
	c := &chrome{ctx: ctx, name: name}
	chromedp.ListenTarget(ctx, func(ev any) {
		c.mu.Lock()
		defer c.mu.Unlock()
		switch e := ev.(type) {
		case *runtime.EventExceptionThrown:
			c.problems = append(c.problems, "exception: "+e.ExceptionDetails.Text)
		case *runtime.EventConsoleAPICalled:
			if e.Type == runtime.APITypeError {
				c.problems = append(c.problems, fmt.Sprintf("console.error: %v", e.Args))
			}
		case *log.EventEntryAdded:
			if e.Entry.Level == log.LevelError && (strings.HasPrefix(e.Entry.URL, origin) || strings.Contains(e.Entry.Text, "Content Security Policy")) {
				c.problems = append(c.problems, "log: "+e.Entry.Text+" "+e.Entry.URL)
			}
		case *network.EventRequestWillBeSent:
			if e.Type == network.ResourceTypeDocument {
				c.visited = append(c.visited, e.Request.URL)
			}
		}
	})
	if err := chromedp.Run(ctx, log.Enable(), runtime.Enable(), network.Enable()); err != nil {
		t.Fatalf("start Chromium: %v", err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			c.screenshot(t, "at-failure")
		}
	})
	return c
}

// screenshot saves the whole page as a PNG and logs where. The directory
// is kept after the test (t.TempDir would remove it with the test).
func (c *chrome) screenshot(t *testing.T, step string) string {
	dir := filepath.Join(os.TempDir(), "llmgate-screenshots", strings.NewReplacer("/", "_", " ", "_").Replace(t.Name()))
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Logf("screenshot: %v", err)
		return ""
	}
	var png []byte
	ctx, cancel := context.WithTimeout(c.ctx, 10*time.Second)
	defer cancel()
	path := filepath.Join(dir, c.name+"-"+strings.NewReplacer(" ", "-", "/", "_").Replace(step)+".png")
	if err := chromedp.Run(ctx, chromedp.FullScreenshot(&png, 100)); err != nil {
		t.Logf("screenshot of %s: %v", c.name, err)
		return ""
	}
	if err := os.WriteFile(path, png, 0o644); err != nil {
		t.Logf("screenshot: %v", err)
		return ""
	}
	t.Logf("screenshot of %s's page: %s", c.name, path)
	return path
}

// run runs actions; on failure it saves a screenshot and says where.
func (c *chrome) run(t *testing.T, step string, actions ...chromedp.Action) {
	t.Helper()
	if err := chromedp.Run(c.ctx, actions...); err != nil {
		path := c.screenshot(t, step)
		t.Fatalf("%s (%s): %v (screenshot: %s)", step, c.name, err, path)
	}
}

// clean fails the test for every problem the browser reported, except
// those containing one of expected (e.g. the status of a refusal the test
// provokes on purpose).
func (c *chrome) clean(t *testing.T, expected ...string) {
	t.Helper()
	c.mu.Lock()
	defer c.mu.Unlock()
next:
	for _, p := range c.problems {
		for _, e := range expected {
			if strings.Contains(p, e) {
				continue next
			}
		}
		t.Errorf("%s reported: %s", c.name, p)
	}
}

// went reports whether the browser requested a document whose URL
// starts with prefix since the mark.
func (c *chrome) went(mark int, prefix string) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, u := range c.visited[min(mark, len(c.visited)):] {
		if strings.HasPrefix(u, prefix) {
			return true
		}
	}
	return false
}

// mark is a point in the browser's history for went.
func (c *chrome) mark() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.visited)
}

// reloadUntil reloads the page until sel is in it: for what the gateway
// records in the background, such as usage.
func reloadUntil(sel string) chromedp.Action {
	return chromedp.ActionFunc(func(ctx context.Context) error {
		for {
			var state string
			err := chromedp.Evaluate(`document.readyState !== "complete" ? "loading" : document.querySelector(`+"`"+sel+"`"+`) !== null ? "found" : "absent"`, &state).Do(ctx)
			switch {
			case err == nil && state == "found":
				return nil
			case err == nil && state == "absent":
				if err := chromedp.Reload().Do(ctx); err != nil {
					return err
				}
			}
			select {
			case <-ctx.Done():
				return fmt.Errorf("reloading until %s: %w", sel, ctx.Err())
			case <-time.After(100 * time.Millisecond):
			}
		}
	})
}

// present waits until sel is in the page the browser shows, across the
// navigation that a click or submit starts: during it, queries against
// the old document may fail, which only means "not yet".
func present(sel string) chromedp.Action {
	return chromedp.ActionFunc(func(ctx context.Context) error {
		for {
			var ok bool
			err := chromedp.Evaluate(`document.readyState === "complete" && document.querySelector(`+"`"+sel+"`"+`) !== null`, &ok).Do(ctx)
			if err == nil && ok {
				return nil
			}
			select {
			case <-ctx.Done():
				return fmt.Errorf("waiting for %s: %w", sel, ctx.Err())
			case <-time.After(20 * time.Millisecond):
			}
		}
	})
}

// gone waits until sel has left the page.
func gone(sel string) chromedp.Action {
	return chromedp.ActionFunc(func(ctx context.Context) error {
		for {
			var ok bool
			err := chromedp.Evaluate(`document.readyState === "complete" && document.querySelector(`+"`"+sel+"`"+`) === null`, &ok).Do(ctx)
			if err == nil && ok {
				return nil
			}
			select {
			case <-ctx.Done():
				return fmt.Errorf("waiting for %s to go: %w", sel, ctx.Err())
			case <-time.After(20 * time.Millisecond):
			}
		}
	})
}

// signIn signs c in as user through the provider's login form, from path.
func (c *chrome) signIn(t *testing.T, h *harness, path string, user devidp.User, landed string) {
	t.Helper()
	c.run(t, "open the provider's login form",
		chromedp.Navigate(h.url+path),
		present(`input[name=username]`))
	c.run(t, "sign in",
		chromedp.SendKeys(`input[name=username]`, user.Email, chromedp.ByQuery),
		chromedp.SendKeys(`input[name=password]`, user.Password, chromedp.ByQuery),
		chromedp.Submit(`input[name=password]`, chromedp.ByQuery),
		present(landed))
}

// TestBrowserTokens: in a real Chromium, sign in through the provider's
// form, create a token with the home page's form, use it on the proxy,
// see the call on the usage page, revoke the token with its button; the
// next call is refused. No console errors and no CSP violations on the
// way.
func TestBrowserTokens(t *testing.T) {
	h := newHarness(t, redistest.Mini(t))
	c := newChrome(t, h.url)
	c.signIn(t, h, "/", devidp.DemoUsers()[0], `#create-token`)

	var token, settings string
	var copyHidden bool
	c.run(t, "create a token",
		chromedp.SendKeys(`#token-name`, "browser test", chromedp.ByQuery),
		chromedp.SetValue(`#token-ttl`, "7d", chromedp.ByQuery),
		chromedp.SendKeys(`#token-rpm`, "60", chromedp.ByQuery),
		chromedp.Click(`#create-token`, chromedp.ByQuery),
		present(`#new-token`),
		chromedp.Text(`#new-token`, &token, chromedp.ByQuery),
		chromedp.Text(`#settings`, &settings, chromedp.ByQuery),
		chromedp.Evaluate(`document.querySelector("button.copy").hidden`, &copyHidden))
	if !strings.HasPrefix(token, "eyJ") || !strings.Contains(settings, "ANTHROPIC_AUTH_TOKEN="+token) {
		t.Fatalf("new token %q, settings %q: want a JWT and settings that use it", token, settings)
	}
	if copyHidden {
		t.Error("the Copy button stayed hidden: copy.js did not run under the CSP")
	}
	if resp, body := h.api(t, "POST", "/v1/chat/completions", chatBody, bearer(token)); resp.StatusCode != http.StatusOK {
		t.Fatalf("the token made in the browser, on the proxy: %d %s", resp.StatusCode, body)
	}

	var model, tokenName string
	var bars int
	c.run(t, "see the call on the usage page",
		chromedp.Click(`nav a[href="/ui/usage"]`, chromedp.ByQuery),
		present(`#usage-chart`),
		reloadUntil(`#recent-requests`),
		chromedp.Text(`#recent-requests tbody tr td:nth-child(2)`, &model, chromedp.ByQuery),
		chromedp.Text(`#recent-requests tbody tr td:nth-child(8)`, &tokenName, chromedp.ByQuery),
		chromedp.Evaluate(`document.querySelectorAll("#usage-chart rect.bar").length`, &bars))
	if model != "gpt-4o-mini" || tokenName != "browser test" || bars != 30 {
		t.Errorf("usage page: recent request model %q token %q, %d bars; want gpt-4o-mini, browser test, 30", model, tokenName, bars)
	}
	var rowModel string
	c.run(t, "switch to 7 days of tokens",
		chromedp.Click(`a[href="/ui/usage?days=7&metric=requests"]`, chromedp.ByQuery),
		present(`#model-usage`),
		chromedp.Text(`#model-usage tbody th`, &rowModel, chromedp.ByQuery),
		chromedp.Evaluate(`document.querySelectorAll("#usage-chart rect.bar").length`, &bars))
	if rowModel != "gpt-4o-mini" || bars != 7 {
		t.Errorf("7-day usage: model row %q, %d bars; want gpt-4o-mini, 7", rowModel, bars)
	}

	var status, flash string
	c.run(t, "revoke it",
		chromedp.Click(`nav a[href="/"]`, chromedp.ByQuery),
		present(`button[aria-label="Revoke browser test"]`),
		chromedp.Click(`button[aria-label="Revoke browser test"]`, chromedp.ByQuery),
		gone(`button[aria-label="Revoke browser test"]`), // the page came back
		present(`#flash`),
		chromedp.Text(`#flash`, &flash, chromedp.ByQuery),
		chromedp.Text(`td.status`, &status, chromedp.ByQuery))
	if status != "revoked" || !strings.Contains(flash, "revoked") {
		t.Errorf("after Revoke: status %q, message %q; want revoked", status, flash)
	}
	if resp, _ := h.api(t, "POST", "/v1/chat/completions", chatBody, bearer(token)); resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("the revoked token on the proxy: %d, want 401", resp.StatusCode)
	}
	var tooLong string
	c.run(t, "refuse a lifetime over the maximum",
		chromedp.SendKeys(`#token-name`, "x", chromedp.ByQuery),
		chromedp.SetValue(`#token-ttl`, "custom", chromedp.ByQuery),
		chromedp.SendKeys(`#token-ttl-custom`, "365d", chromedp.ByQuery),
		chromedp.Click(`#create-token`, chromedp.ByQuery),
		present(`#form-error`),
		chromedp.Text(`#form-error`, &tooLong, chromedp.ByQuery))
	if !strings.Contains(tooLong, "maximum") {
		t.Errorf("form error for 365 days: %q, want it to name the maximum", tooLong)
	}
	c.clean(t, "status of 400") // the refused form answers 400 on purpose
}

// TestBrowserAdmin: in one Chromium, alice (admin) and bob each in their
// own browser context. Bob gets the 403 page on an admin URL; alice goes
// through every admin page, finds bob's session and logs him out
// everywhere; bob's next click goes to sign in. No console errors and no
// CSP violations on any page.
func TestBrowserAdmin(t *testing.T) {
	h := newHarness(t, redistest.Mini(t))
	users := devidp.DemoUsers()
	alice := newChrome(t, h.url)
	alice.name = "alice"
	alice.signIn(t, h, "/", users[0], `#create-token`)
	bob := alice.otherPerson(t, h.url, "bob")
	bob.signIn(t, h, "/", users[1], `#create-token`)
	if resp, body := h.api(t, "POST", "/v1/chat/completions", chatBody, bearer(h.mint(t, tokens.IssueRequest{
		Email: "bob@example.com", Subject: "bob-sub", Name: "bob cli"}))); resp.StatusCode != http.StatusOK {
		t.Fatalf("bob's call: %d %s", resp.StatusCode, body)
	}

	var heading string
	var adminLinks int
	bob.run(t, "bob on an admin page",
		chromedp.Navigate(h.url+"/ui/admin/users"),
		present(`#error-heading`),
		chromedp.Text(`#error-heading`, &heading, chromedp.ByQuery),
		chromedp.Evaluate(`document.querySelectorAll('a[href^="/ui/admin/"]').length`, &adminLinks))
	if heading != "Administrators only" || adminLinks != 0 {
		t.Errorf("bob on /ui/admin/users: heading %q, %d admin links; want the 403 page without admin links", heading, adminLinks)
	}
	bob.run(t, "bob goes back to his tokens",
		chromedp.Click(`#error-action`, chromedp.ByQuery),
		present(`#create-token`))

	// Alice visits every page of the console.
	for _, pg := range []struct{ path, sel string }{
		{"/ui/usage", "#usage-chart"},
		{"/ui/admin/users", `#users tr[id="user-bob@example.com"]`},
		{"/ui/admin/tokens", "#all-tokens"},
		{"/ui/admin/usage?metric=tokens", "#usage-chart"},
		{"/ui/admin/audit", "#audit"},
		{"/ui/admin/sessions", "#sessions"},
	} {
		alice.run(t, "alice opens "+pg.path, chromedp.Navigate(h.url+pg.path), present(pg.sel))
	}
	var usageRows int
	alice.run(t, "alice sees bob's usage",
		chromedp.Navigate(h.url+"/ui/admin/usage"),
		reloadUntil(`#person-model-usage`),
		chromedp.Evaluate(`document.querySelectorAll("#person-model-usage tbody tr").length`, &usageRows))
	if usageRows != 1 {
		t.Errorf("admin usage: %d person × model rows, want bob's one", usageRows)
	}

	var flash string
	alice.run(t, "alice finds bob's sessions",
		chromedp.Navigate(h.url+"/ui/admin/sessions"),
		present(`#session-email`),
		chromedp.SendKeys(`#session-email`, "bob@example.com", chromedp.ByQuery),
		chromedp.Submit(`#session-email`, chromedp.ByQuery),
		present(`#logout-person`))
	alice.run(t, "alice logs bob out everywhere",
		chromedp.Click(`#logout-person`, chromedp.ByQuery),
		present(`#flash`),
		chromedp.Text(`#flash`, &flash, chromedp.ByQuery))
	if !strings.Contains(flash, "Logged bob@example.com out everywhere: 1 session ended") {
		t.Errorf("after log-out-everywhere: %q", flash)
	}

	mark := bob.mark()
	bob.run(t, "bob clicks Usage",
		chromedp.Click(`nav a[href="/ui/usage"]`, chromedp.ByQuery),
		// The provider's form, or, as the provider still has bob's own
		// sign-in, the page after a fresh sign-in: either way a new page.
		present(`#usage-chart, input[name=username]`))
	if !bob.went(mark, h.url+"/oauth2/start?rd=%2Fui%2Fusage") {
		t.Errorf("bob's click after the force-logout did not go to sign in; documents: %v", bob.visited[mark:])
	}
	alice.clean(t)
	bob.clean(t, "status of 403") // the admin page refused on purpose
}
