package gateway

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"net/http"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/llmgate/llmgate/internal/redistest"
	"github.com/llmgate/llmgate/internal/usage"
	"github.com/llmgate/llmgate/tokens"
)

// setCap sets email's monthly cap on h's replica.
func (h *harness) setCap(tb testing.TB, email string, usd float64) {
	tb.Helper()
	if err := h.usage.Ledger().SetCap(context.Background(), email, &usd); err != nil {
		tb.Fatalf("SetCap(%s, %v): %v", email, usd, err)
	}
}

// spend records a call of email that cost usd, as if proxied, and waits
// until h's ledger counts it.
func (h *harness) spend(tb testing.TB, email string, usd float64) {
	tb.Helper()
	before := h.usage.Ledger().Spent(email)
	h.usage.Record(usage.Record{Email: email, Model: "m", Status: 200, CostUSD: usd, CostKnown: true})
	waitFor(tb, "the spend counted", func() bool { return h.usage.Ledger().Spent(email) >= before+usd-1e-9 })
}

// unifiedHeaders returns the anthropic-ratelimit-unified-* headers of an
// answer, lower-cased names without the prefix.
func unifiedHeaders(h http.Header) map[string]string {
	out := map[string]string{}
	for name, v := range h {
		if n, ok := strings.CutPrefix(strings.ToLower(name), "anthropic-ratelimit-unified-"); ok {
			out[n] = v[0]
		}
	}
	return out
}

// limitsUpstream answers /v1/messages like Anthropic, with its own rate
// limit headers, which must never reach a person with a cap.
func limitsUpstream(tb testing.TB, calls *atomic.Int64) func(*setup) {
	u := newRawUpstream(tb, func(w http.ResponseWriter, r *http.Request) {
		calls.Add(1)
		h := w.Header()
		h.Set("Content-Type", "application/json")
		h.Set("Anthropic-Ratelimit-Requests-Limit", "4000")
		h.Set("Anthropic-Ratelimit-Unified-Status", "allowed")
		h.Set("Anthropic-Ratelimit-Unified-5h-Utilization", "0.5")
		w.Write([]byte(`{"id":"msg_1","type":"message","role":"assistant","model":"claude-sonnet-4-6","content":[{"type":"text","text":"hi"}],"usage":{"input_tokens":10,"output_tokens":5}}`))
	})
	return func(s *setup) {
		s.proxy.Upstreams = []Upstream{{Name: "anthropic", URL: u, Paths: []string{"/v1/"}}}
	}
}

// TestSpendHeaders: the usage-limit headers of Claude Code by the share of
// the cap spent, and the 429 at the cap with exactly SPEC §8's headers.
func TestSpendHeaders(t *testing.T) {
	var calls atomic.Int64
	h := newHarness(t, redistest.Mini(t), limitsUpstream(t, &calls))
	const alice = "alice@example.com"
	tok := h.mint(t, tokens.IssueRequest{ClientID: tokens.ClientClaudeCode})
	h.setCap(t, alice, 10)
	reset := strconv.FormatInt(nextMonth(time.Now()).Unix(), 10)
	spent := 0.0
	for _, tt := range []struct {
		spent     float64
		status    string
		threshold string // "" = absent
		util      string
	}{
		{0, "allowed", "", "0.00"},
		{5, "allowed", "", "0.50"},
		{7.49, "allowed", "", "0.74"},
		{7.5, "allowed_warning", "0.75", "0.75"},
		{9.49, "allowed_warning", "0.75", "0.94"},
		{9.5, "allowed_warning", "0.95", "0.95"},
		{9.999, "allowed_warning", "0.95", "0.99"},
	} {
		t.Run(fmt.Sprint(tt.spent), func(t *testing.T) {
			if d := tt.spent - spent; d > 0 {
				h.spend(t, alice, d)
				spent = tt.spent
			}
			resp, body := h.api(t, "POST", "/v1/messages?beta=true", messagesBody, bearer(tok))
			if resp.StatusCode != 200 {
				t.Fatalf("POST /v1/messages with $%v of $10 spent: %d %s", tt.spent, resp.StatusCode, body)
			}
			want := map[string]string{
				"status": tt.status, "representative-claim": "overage", "overage-status": tt.status,
				"overage-utilization": tt.util, "reset": reset, "overage-reset": reset,
			}
			if tt.threshold != "" {
				want["overage-surpassed-threshold"] = tt.threshold
			}
			if got := unifiedHeaders(resp.Header); !mapsEqual(got, want) {
				t.Errorf("$%v of $10 spent: unified headers\n got %v\nwant %v", tt.spent, got, want)
			}
			for name := range resp.Header {
				if strings.HasPrefix(name, "Anthropic-Ratelimit-") && !strings.HasPrefix(name, "Anthropic-Ratelimit-Unified-") ||
					name == "Anthropic-Ratelimit-Unified-5h-Utilization" {
					t.Errorf("the upstream's %s reached a person with a cap", name)
				}
			}
		})
	}

	t.Run("at the cap", func(t *testing.T) {
		h.spend(t, alice, 10-spent)
		resp, body := h.api(t, "POST", "/v1/messages?beta=true", messagesBody, bearer(tok))
		if resp.StatusCode != http.StatusTooManyRequests {
			t.Fatalf("POST /v1/messages at the cap: %d %s, want 429", resp.StatusCode, body)
		}
		want := map[string]string{
			"status": "rejected", "overage-utilization": "1", "overage-surpassed-threshold": "1",
			"reset": reset, "overage-reset": reset, "overage-period": "monthly", "overage-disabled-reason": "out_of_credits",
		}
		if got := unifiedHeaders(resp.Header); !mapsEqual(got, want) {
			t.Errorf("429 unified headers\n got %v\nwant %v", got, want)
		}
		retry, _ := strconv.Atoi(resp.Header.Get("Retry-After"))
		if untilReset := time.Until(nextMonth(time.Now())).Seconds(); math.Abs(float64(retry)-untilReset) > 5 {
			t.Errorf("Retry-After = %q; want the seconds to the reset, about %.0f", resp.Header.Get("Retry-After"), untilReset)
		}
		if resp.Header.Get("X-Should-Retry") != "false" {
			t.Errorf("x-should-retry = %q; want false", resp.Header.Get("X-Should-Retry"))
		}
		var e struct {
			Type  string `json:"type"`
			Error struct{ Type, Message string }
		}
		json.Unmarshal([]byte(body), &e)
		if e.Type != "error" || e.Error.Type != "billing_error" || !strings.Contains(e.Error.Message, "$10.00") ||
			!strings.Contains(e.Error.Message, nextMonth(time.Now()).Format("2006-01-02")) || !strings.Contains(e.Error.Message, "administrator") {
			t.Errorf("429 body %s; want a billing_error naming the $10.00 cap, the reset date and whom to ask", body)
		}
		if n := calls.Load(); n != 7 {
			t.Errorf("upstream calls = %d; want 7 (the refusal never reaches it)", n)
		}
	})

	t.Run("no cap", func(t *testing.T) {
		bob := h.mint(t, tokens.IssueRequest{Email: "bob@example.com", Subject: "bob-sub", ClientID: tokens.ClientClaudeCode})
		resp, body := h.api(t, "POST", "/v1/messages", messagesBody, bearer(bob))
		if resp.StatusCode != 200 {
			t.Fatalf("bob without a cap: %d %s", resp.StatusCode, body)
		}
		if got := unifiedHeaders(resp.Header); !mapsEqual(got, map[string]string{"status": "allowed", "5h-utilization": "0.5"}) {
			t.Errorf("bob without a cap: unified headers %v; want only the upstream's own", got)
		}
		waitFor(t, "bob's usage recorded", func() bool {
			resp, body = h.api(t, "GET", "/api/oauth/usage", "", bearer(bob))
			return resp.StatusCode != http.StatusNotFound
		})
		var u struct {
			ExtraUsage map[string]any `json:"extra_usage"`
			Limits     []any          `json:"limits"`
		}
		json.Unmarshal([]byte(body), &u)
		if resp.StatusCode != 200 || u.Limits == nil || len(u.Limits) != 0 || u.ExtraUsage["is_enabled"] != false ||
			u.ExtraUsage["monthly_limit"] != nil || u.ExtraUsage["currency"] != "USD" {
			t.Errorf("GET /api/oauth/usage without a cap: %d %s; want limits [] and extra_usage disabled with null limits", resp.StatusCode, body)
		}
	})
}

func mapsEqual(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if w, ok := b[k]; !ok || w != v {
			return false
		}
	}
	return true
}
