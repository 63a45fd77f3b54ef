package gateway

import (
	"context"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/llmgate/llmgate/internal/devidp"
	"github.com/llmgate/llmgate/internal/redistest"
)

// TestUICreateTokenForm: every field of the home page's form reaches the
// token (custom lifetime, models, rate limit, budget, networks); the page
// shows the token once with settings for each tool; bad values are
// refused with a message naming the field.
func TestUICreateTokenForm(t *testing.T) {
	h := newHarness(t, redistest.Mini(t))
	b, csrf := signedIn(t, h, devidp.DemoUsers()[1])
	form := url.Values{"csrf_token": {csrf.Get("X-Csrf-Token")}, "name": {"ci runner"}, "ttl": {"custom"}, "ttl_custom": {"45d"},
		"models": {"gpt-4o-mini, claude-sonnet-4-6"}, "rpm": {"30"}, "max_cost_usd": {"12.50"}, "cidrs": {"10.0.0.0/8, 192.168.0.0/16"}}
	p := b.PostForm(h.url+"/ui/tokens", form, nil)
	if p.Status != http.StatusOK {
		t.Fatalf("create: %d\n%s", p.Status, p.Body)
	}
	token := between(p.Body, `<code id="new-token">`, `</code>`)
	for _, want := range []string{
		"export ANTHROPIC_AUTH_TOKEN=" + token, "export ANTHROPIC_BASE_URL=" + h.url + "\n",
		`id="settings-roo"`, `id="settings-continue"`, `id="settings-cursor"`, `id="settings-openai"`, `id="settings-anthropic"`, `id="settings-curl"`,
		"apiBase: " + h.url + "/v1", `model: gpt-4o-mini`,
	} {
		if !strings.Contains(p.Body, want) {
			t.Errorf("the new token's settings lack %q", want)
		}
	}
	recs, err := h.tokens.List(context.Background(), "bob@example.com")
	if err != nil || len(recs) != 1 {
		t.Fatalf("bob's tokens: %v %d", err, len(recs))
	}
	r := recs[0]
	if life := r.ExpiresAt.Sub(r.CreatedAt); (life-45*24*time.Hour).Abs() > time.Minute || r.RPM != 30 || r.MaxCostUSD != 12.5 ||
		strings.Join(r.CIDRs, " ") != "10.0.0.0/8 192.168.0.0/16" || strings.Join(r.Models, " ") != "gpt-4o-mini claude-sonnet-4-6" {
		t.Errorf("token made from the form: lifetime %v rpm %d budget %v cidrs %v models %v", life, r.RPM, r.MaxCostUSD, r.CIDRs, r.Models)
	}

	for _, tt := range []struct{ field, value, want string }{
		{"rpm", "fast", "Requests per minute fast"},
		{"max_cost_usd", "lots", "Budget lots"},
		{"cidrs", "office", `&#34;office&#34; is not a valid CIDR`},
		{"ttl_custom", "", "Custom lifetime is empty"},
	} {
		f := url.Values{"csrf_token": form["csrf_token"], "name": {"x"}, "ttl": {"custom"}, "ttl_custom": {"1d"}}
		f.Set(tt.field, tt.value)
		p := b.PostForm(h.url+"/ui/tokens", f, nil)
		if msg := between(p.Body, `id="form-error">`, `</p>`); p.Status != http.StatusBadRequest || !strings.Contains(msg, tt.want) {
			t.Errorf("%s=%q: %d %q, want 400 saying %q", tt.field, tt.value, p.Status, msg, tt.want)
		}
	}
}
