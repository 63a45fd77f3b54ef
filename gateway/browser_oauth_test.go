package gateway

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/llmgate/llmgate/internal/devidp"
	"github.com/llmgate/llmgate/internal/redistest"
)

// locationHas waits until the browser's URL contains part.
func locationHas(part string) chromedp.Action {
	return chromedp.ActionFunc(func(ctx context.Context) error {
		for {
			var loc string
			if err := chromedp.Location(&loc).Do(ctx); err == nil && strings.Contains(loc, part) {
				return nil
			}
			select {
			case <-ctx.Done():
				return fmt.Errorf("waiting for a URL with %s: %w", part, ctx.Err())
			case <-time.After(20 * time.Millisecond):
			}
		}
	})
}

// TestBrowserDeviceAndConsent: in a real Chromium, approve a Claude Code
// device code (the approval page shows the code and approves only on the
// click; the browser's own Origin passes the same-origin check), then
// approve a loopback CLI sign-in, which lands on the CLI's listener with a
// code. No console errors and no CSP violations on the way.
func TestBrowserDeviceAndConsent(t *testing.T) {
	h := newHarness(t, redistest.Mini(t))
	c := newChrome(t, h.url)
	bob := devidp.DemoUsers()[1]
	dev := h.deviceCode(t, "/oauth/device_authorization", url.Values{"surface": {"claude_code"}}, claudeCodeUA)

	var shown string
	c.run(t, "open the verification URI and sign in",
		chromedp.Navigate(str(dev, "verification_uri_complete")),
		present(`input[name=username]`),
		chromedp.SendKeys(`input[name=username]`, bob.Email, chromedp.ByQuery),
		chromedp.SendKeys(`input[name=password]`, bob.Password, chromedp.ByQuery),
		chromedp.Submit(`input[name=password]`, chromedp.ByQuery),
		present(`#approve`),
		chromedp.Text(`#user-code`, &shown, chromedp.ByQuery))
	if shown != str(dev, "user_code") {
		t.Errorf("approval page shows %q, want %q", shown, str(dev, "user_code"))
	}
	if resp, out := h.poll(t, "/oauth/token", str(dev, "device_code")); out["error"] != "authorization_pending" {
		t.Fatalf("poll before the click: %d %v, want authorization_pending", resp.StatusCode, out)
	}
	var result string
	c.run(t, "approve",
		chromedp.Click(`#approve`, chromedp.ByQuery),
		present(`#device-result`),
		chromedp.Text(`#device-result`, &result, chromedp.ByQuery))
	if !strings.Contains(result, "Claude Code is signed in as bob@example.com") {
		t.Errorf("after Approve: %q", result)
	}
	h.clock.Add(6 * time.Second)
	if resp, out := h.poll(t, "/oauth/token", str(dev, "device_code")); resp.StatusCode != http.StatusOK || out["email"] != "bob@example.com" {
		t.Errorf("poll after the click: %d %v, want 200 for bob", resp.StatusCode, out)
	}

	l := newLoopback(t)
	var loc string
	c.run(t, "approve a loopback sign-in",
		chromedp.Navigate(l.authorizeURL(h, "bob-laptop", "")),
		present(`#approve`),
		chromedp.Click(`#approve`, chromedp.ByQuery),
		locationHas(l.redirect+"?"),
		chromedp.Location(&loc))
	u, _ := url.Parse(loc)
	if u.Query().Get("state") != l.state || u.Query().Get("code") == "" {
		t.Fatalf("loopback landed at %s, want code and state", loc)
	}
	if resp, out := h.exchange(t, l, u.Query().Get("code")); resp.StatusCode != http.StatusOK || out["email"] != "bob@example.com" {
		t.Errorf("exchange the browser's code: %d %v", resp.StatusCode, out)
	}

	c.mu.Lock()
	defer c.mu.Unlock()
	for _, p := range c.problems {
		t.Errorf("browser reported: %s", p)
	}
}
