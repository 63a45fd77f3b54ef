package gateway

import (
	"strings"
	"testing"

	"github.com/chromedp/cdproto/emulation"
	"github.com/chromedp/chromedp"

	"github.com/llmgate/llmgate/internal/devidp"
	"github.com/llmgate/llmgate/internal/redistest"
)

// TestBrowserSpend: in a real Chromium with JavaScript off, the home page
// shows the month's spend against the cap, and an admin edits a person's
// cap on the spend page with its plain form.
func TestBrowserSpend(t *testing.T) {
	h := newHarness(t, redistest.Mini(t), func(s *setup) { s.proxy.Spend.DefaultMonthlyUSD = 10 })
	c := newChrome(t, h.url)
	alice := devidp.DemoUsers()[0]
	h.spend(t, "alice@example.com", 8)
	h.spend(t, "bob@example.com", 1)

	c.run(t, "turn JavaScript off", emulation.SetScriptExecutionDisabled(true))
	c.run(t, "open the provider's login form",
		chromedp.Navigate(h.url+"/"),
		present(`input[name=username]`))
	var spend, meter string
	c.run(t, "sign in and see the spend bar",
		chromedp.SendKeys(`input[name=username]`, alice.Email, chromedp.ByQuery),
		chromedp.SendKeys(`input[name=password]`, alice.Password, chromedp.ByQuery),
		chromedp.Submit(`input[name=password]`, chromedp.ByQuery),
		present(`#spend-text`),
		chromedp.Text(`#spend-text`, &spend, chromedp.ByQuery),
		chromedp.AttributeValue(`#spend-meter`, "value", &meter, nil, chromedp.ByQuery))
	if !strings.Contains(spend, "$8.00 of your $10.00 monthly cap (80 %)") || meter != "80" {
		t.Errorf("home spend bar: %q, meter %q; want $8.00 of $10.00 (80 %%)", spend, meter)
	}

	const bobCap = `input[id="cap-bob@example.com"]`
	var flash, bobRow string
	c.run(t, "set bob's cap on the spend page",
		chromedp.Navigate(h.url+"/ui/admin/spend"),
		present(bobCap),
		chromedp.SetValue(bobCap, "2.5", chromedp.ByQuery),
		chromedp.Click(`button[aria-label="Save the cap of bob@example.com"]`, chromedp.ByQuery),
		present(`#flash`),
		chromedp.Text(`#flash`, &flash, chromedp.ByQuery),
		chromedp.Text(`tr[id="spend-bob@example.com"]`, &bobRow, chromedp.ByQuery))
	if got, ok := h.usage.Ledger().Cap("bob@example.com"); !ok || got != 2.5 {
		t.Errorf("bob's cap after the form = %v, %v; want 2.5", got, ok)
	}
	if !strings.Contains(flash, "bob@example.com") || !strings.Contains(bobRow, "$2.50") || !strings.Contains(bobRow, "40 %") {
		t.Errorf("after saving: flash %q, bob's row %q; want $1.00 of $2.50 (40 %%)", flash, bobRow)
	}

	var formError string
	c.run(t, "refuse an amount that is not a number",
		chromedp.SetValue(bobCap, "lots", chromedp.ByQuery),
		chromedp.Click(`button[aria-label="Save the cap of bob@example.com"]`, chromedp.ByQuery),
		present(`p.flash-error`),
		chromedp.Text(`p.flash-error`, &formError, chromedp.ByQuery))
	if !strings.Contains(formError, "not an amount") {
		t.Errorf("form error: %q; want it to say the amount is not one", formError)
	}
	c.run(t, "remove bob's cap",
		chromedp.Clear(bobCap, chromedp.ByQuery),
		chromedp.Click(`button[aria-label="Save the cap of bob@example.com"]`, chromedp.ByQuery),
		gone(`p.flash-error`),
		present(`#flash`))
	if got, ok := h.usage.Ledger().Cap("bob@example.com"); ok {
		t.Errorf("bob's cap after emptying the field = %v; want none", got)
	}

	c.mu.Lock()
	defer c.mu.Unlock()
	for _, p := range c.problems {
		t.Errorf("browser reported: %s", p)
	}
}
