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

	"github.com/chromedp/cdproto/log"
	"github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/chromedp"

	"github.com/llmgate/llmgate/internal/devidp"
	"github.com/llmgate/llmgate/internal/redistest"
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

// chrome is a headless Chromium for one test, recording console errors,
// exceptions and CSP violations of the gateway's own pages.
type chrome struct {
	ctx      context.Context
	mu       sync.Mutex
	problems []string
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
		chromedp.UserDataDir(profile),
	)
	alloc, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancelCtx := chromedp.NewContext(alloc)
	ctx, cancelTimeout := context.WithTimeout(ctx, 60*time.Second)
	t.Cleanup(func() {
		cancelTimeout()
		cancelCtx()
		cancelAlloc()
		os.RemoveAll(profile)
	})
	c := &chrome{ctx: ctx}
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
		}
	})
	if err := chromedp.Run(ctx, log.Enable(), runtime.Enable()); err != nil {
		t.Fatalf("start Chromium: %v", err)
	}
	return c
}

// run runs actions; on failure it saves a screenshot and says where.
func (c *chrome) run(t *testing.T, step string, actions ...chromedp.Action) {
	t.Helper()
	if err := chromedp.Run(c.ctx, actions...); err != nil {
		var png []byte
		shotCtx, cancel := context.WithTimeout(c.ctx, 5*time.Second)
		defer cancel()
		path := filepath.Join(t.TempDir(), strings.ReplaceAll(step, " ", "-")+".png")
		if chromedp.Run(shotCtx, chromedp.FullScreenshot(&png, 80)) == nil && os.WriteFile(path, png, 0o644) == nil {
			t.Fatalf("%s: %v (screenshot: %s)", step, err, path)
		}
		t.Fatalf("%s: %v", step, err)
	}
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

// TestBrowserTokens: in a real Chromium, sign in through the provider's
// form, create a token with the home page's form, use it on the proxy,
// revoke it with its button; the next call is refused. No console errors
// and no CSP violations on the way.
func TestBrowserTokens(t *testing.T) {
	h := newHarness(t, redistest.Mini(t))
	c := newChrome(t, h.url)
	alice := devidp.DemoUsers()[0]

	c.run(t, "open the provider's login form",
		chromedp.Navigate(h.url+"/"),
		present(`input[name=username]`))
	c.run(t, "sign in",
		chromedp.SendKeys(`input[name=username]`, alice.Email, chromedp.ByQuery),
		chromedp.SendKeys(`input[name=password]`, alice.Password, chromedp.ByQuery),
		chromedp.Submit(`input[name=password]`, chromedp.ByQuery),
		present(`#create-token`))

	var token, settings string
	var copyHidden bool
	c.run(t, "create a token",
		chromedp.SendKeys(`#token-name`, "browser test", chromedp.ByQuery),
		chromedp.SetValue(`#token-ttl`, "7d", chromedp.ByQuery),
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

	var status string
	c.run(t, "revoke it",
		chromedp.Click(`button[aria-label="Revoke browser test"]`, chromedp.ByQuery),
		gone(`button[aria-label="Revoke browser test"]`), // the page came back
		present(`td.status`),
		chromedp.Text(`td.status`, &status, chromedp.ByQuery))
	if status != "revoked" {
		t.Errorf("token status after Revoke: %q, want revoked", status)
	}
	if resp, _ := h.api(t, "POST", "/v1/chat/completions", chatBody, bearer(token)); resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("the revoked token on the proxy: %d, want 401", resp.StatusCode)
	}
	var tooLong string
	c.run(t, "refuse a lifetime over the maximum",
		chromedp.SendKeys(`#token-name`, "x", chromedp.ByQuery),
		chromedp.Evaluate(`(() => { const o = document.createElement("option"); o.value = "365d"; o.selected = true; document.querySelector("#token-ttl").append(o); })()`, nil),
		chromedp.Click(`#create-token`, chromedp.ByQuery),
		present(`#form-error`),
		chromedp.Text(`#form-error`, &tooLong, chromedp.ByQuery))
	if !strings.Contains(tooLong, "maximum") {
		t.Errorf("form error for 365 days: %q, want it to name the maximum", tooLong)
	}

	c.mu.Lock()
	defer c.mu.Unlock()
	for _, p := range c.problems {
		if strings.Contains(p, "400") && strings.Contains(p, "/ui/tokens") {
			continue // the refused form answers 400 on purpose
		}
		t.Errorf("browser reported: %s", p)
	}
}
