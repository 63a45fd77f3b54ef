package gateway

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/llmgate/llmgate/internal/audit"
	"github.com/llmgate/llmgate/internal/devidp"
	"github.com/llmgate/llmgate/internal/redistest"
	"github.com/llmgate/llmgate/internal/usage"
	"github.com/llmgate/llmgate/internal/users"
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

// oauthUsage reads GET /api/oauth/usage with tok.
func (h *harness) oauthUsage(tb testing.TB, tok string) (int, oauthUsageBody) {
	tb.Helper()
	resp, body := h.api(tb, "GET", "/api/oauth/usage", "", bearer(tok))
	var u oauthUsageBody
	if resp.StatusCode == 200 {
		if err := json.Unmarshal([]byte(body), &u); err != nil {
			tb.Fatalf("GET /api/oauth/usage: %v\n%s", err, body)
		}
	}
	return resp.StatusCode, u
}

type oauthUsageBody struct {
	ExtraUsage struct {
		IsEnabled    bool     `json:"is_enabled"`
		MonthlyLimit *float64 `json:"monthly_limit"`
		UsedCredits  *float64 `json:"used_credits"`
		Utilization  *float64 `json:"utilization"`
		Currency     string   `json:"currency"`
	} `json:"extra_usage"`
	Limits []struct {
		Kind     string  `json:"kind"`
		Group    string  `json:"group"`
		Percent  float64 `json:"percent"`
		ResetsAt string  `json:"resets_at"`
		Severity string  `json:"severity"`
		IsActive bool    `json:"is_active"`
	} `json:"limits"`
}

// TestSpendSmallestCapWins: of a token's, the person's, their groups', the
// first matching Claude Code policy's and the default cap, the smallest
// binds; a person with none gets no headers and limits [].
func TestSpendSmallestCapWins(t *testing.T) {
	const alice = "alice@example.com"
	for _, tt := range []struct {
		name      string
		spend     SpendConfig
		policies  []Policy // Claude Code policies
		person    float64  // 0: none set
		token     float64  // max_cost_usd; 0: none
		wantCents int64    // 0: no cap
		wantGroup string
	}{
		{name: "none"},
		{name: "default", spend: SpendConfig{DefaultMonthlyUSD: 50}, wantCents: 5000, wantGroup: "default"},
		{name: "group below default", spend: SpendConfig{DefaultMonthlyUSD: 50, GroupMonthlyUSD: map[string]float64{"ml": 20}}, wantCents: 2000, wantGroup: "group ml"},
		{name: "group above default", spend: SpendConfig{DefaultMonthlyUSD: 10, GroupMonthlyUSD: map[string]float64{"ml": 20}}, wantCents: 2000, wantGroup: "group ml"},
		{name: "smallest of two groups", spend: SpendConfig{GroupMonthlyUSD: map[string]float64{"ml": 20, "interns": 7, "other": 1}}, wantCents: 700, wantGroup: "group interns"},
		{name: "policy below group", spend: SpendConfig{GroupMonthlyUSD: map[string]float64{"ml": 20}},
			policies: []Policy{{Groups: []string{"ml"}, MonthlyBudgetUSD: 15}}, wantCents: 1500, wantGroup: "Claude Code policy"},
		{name: "first matching policy only", policies: []Policy{
			{EmailDomains: []string{"other.example"}, MonthlyBudgetUSD: 1},
			{EmailDomains: []string{"EXAMPLE.com"}, MonthlyBudgetUSD: 30},
			{Groups: []string{"ml"}, MonthlyBudgetUSD: 2}}, wantCents: 3000, wantGroup: "Claude Code policy"},
		{name: "matching policy without budget", policies: []Policy{
			{Groups: []string{"ml"}}, {MonthlyBudgetUSD: 2}}},
		{name: "person below group", spend: SpendConfig{GroupMonthlyUSD: map[string]float64{"ml": 20}}, person: 3, wantCents: 300, wantGroup: "person"},
		{name: "person above group", spend: SpendConfig{GroupMonthlyUSD: map[string]float64{"ml": 20}}, person: 100, wantCents: 2000, wantGroup: "group ml"},
		{name: "person alone", person: 4, wantCents: 400, wantGroup: "person"},
		{name: "token below person", person: 4, token: 2, wantCents: 200, wantGroup: "token"},
		{name: "token above person", person: 4, token: 9, wantCents: 400, wantGroup: "person"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			h := newHarness(t, redistest.Mini(t), func(s *setup) {
				s.proxy.Spend = tt.spend
				s.claudeCode = ClaudeCodeConfig{Policies: tt.policies}
			})
			ctx := context.Background()
			if err := h.gw.users.Login(ctx, users.Person{Email: alice, Name: "Alice", Groups: []string{"ml", "interns"}}, ""); err != nil {
				t.Fatal(err)
			}
			if tt.person > 0 {
				h.setCap(t, alice, tt.person)
			}
			tok := h.mint(t, tokens.IssueRequest{MaxCostUSD: tt.token, ClientID: tokens.ClientClaudeCode})
			resp, body := h.api(t, "POST", "/v1/messages", messagesBody, bearer(tok))
			if resp.StatusCode != 200 {
				t.Fatalf("POST /v1/messages: %d %s", resp.StatusCode, body)
			}
			headers := unifiedHeaders(resp.Header)
			var status int
			var u oauthUsageBody
			waitFor(t, "usage known", func() bool { status, u = h.oauthUsage(t, tok); return status == 200 })
			if tt.wantCents == 0 {
				if len(headers) != 0 || len(u.Limits) != 0 || u.ExtraUsage.IsEnabled {
					t.Errorf("no cap: headers %v, oauth usage %+v; want no headers, limits [] and extra usage off", headers, u)
				}
				return
			}
			if headers["status"] != "allowed" {
				t.Errorf("capped: unified status header %q; want allowed", headers["status"])
			}
			if u.ExtraUsage.MonthlyLimit == nil || int64(*u.ExtraUsage.MonthlyLimit) != tt.wantCents || len(u.Limits) != 1 || u.Limits[0].Group != tt.wantGroup {
				t.Errorf("oauth usage %+v; want monthly_limit %d cents from %q", u, tt.wantCents, tt.wantGroup)
			}
		})
	}
}

// TestSpendOAuthUsage: GET /api/oauth/usage in cents and whole percents,
// resets equal to the header's; 401 without a valid bearer.
func TestSpendOAuthUsage(t *testing.T) {
	h := newHarness(t, redistest.Mini(t))
	tok := h.mint(t, tokens.IssueRequest{ClientID: tokens.ClientClaudeCode})
	if status, _ := h.oauthUsage(t, tok); status != 404 {
		t.Errorf("GET /api/oauth/usage with nothing known: %d; want 404", status)
	}
	if status, _ := h.oauthUsage(t, "not-a-token"); status != 401 {
		t.Errorf("GET /api/oauth/usage with a bad bearer: %d; want 401", status)
	}
	h.setCap(t, "alice@example.com", 200)
	h.spend(t, "alice@example.com", 156.789)
	resp, _ := h.api(t, "POST", "/v1/messages", messagesBody, bearer(tok))
	status, u := h.oauthUsage(t, tok)
	if status != 200 {
		t.Fatalf("GET /api/oauth/usage: %d", status)
	}
	e := u.ExtraUsage
	if !e.IsEnabled || *e.MonthlyLimit != 20000 || *e.UsedCredits != 15679 || *e.Utilization != 78 || e.Currency != "USD" {
		t.Errorf("extra_usage %+v; want enabled, 20000 cents limit, 15679 used, 78 %%, USD", e)
	}
	reset, _ := strconv.ParseInt(resp.Header.Get("Anthropic-Ratelimit-Unified-Reset"), 10, 64)
	l := u.Limits[0]
	if l.Kind != "spend" || l.Percent != 78 || l.ResetsAt != time.Unix(reset, 0).UTC().Format(time.RFC3339) || l.Severity != "warning" || l.IsActive {
		t.Errorf("limits[0] %+v; want spend 78 %% warning, resets at the header's %d", l, reset)
	}
}

// TestSpendOpenAIRefusal: every other client gets OpenAI's 429
// insufficient_quota at the cap, and /api/usage shows spend and cap.
func TestSpendOpenAIRefusal(t *testing.T) {
	h := newHarness(t, redistest.Mini(t), func(s *setup) {
		s.upstream.CostUSD = 0.3
		s.proxy.CostHeader = "x-litellm-response-cost"
		s.proxy.Spend.DefaultMonthlyUSD = 1
	})
	tok := h.mint(t, tokens.IssueRequest{})
	for i := range 4 {
		resp, body := h.api(t, "POST", "/v1/chat/completions", chatBody, bearer(tok))
		if resp.StatusCode != 200 {
			t.Fatalf("call %d under the cap: %d %s", i+1, resp.StatusCode, body)
		}
		if len(unifiedHeaders(resp.Header)) != 0 {
			t.Errorf("an OpenAI-family answer carries Claude Code's usage-limit headers: %v", resp.Header)
		}
		waitFor(t, "spend counted", func() bool { return h.usage.Ledger().Spent("alice@example.com") >= 0.3*float64(i+1)-1e-9 })
	}
	resp, body := h.api(t, "POST", "/v1/chat/completions", chatBody, bearer(tok))
	var e struct {
		Error struct{ Type, Code, Message string }
	}
	json.Unmarshal([]byte(body), &e)
	if resp.StatusCode != 429 || e.Error.Type != "insufficient_quota" || resp.Header.Get("X-Should-Retry") != "false" ||
		resp.Header.Get("Retry-After") == "" || !strings.Contains(e.Error.Message, "$1.00") || !strings.Contains(e.Error.Message, "resets on") {
		t.Errorf("over the cap: %d %v %s; want 429 insufficient_quota with Retry-After and x-should-retry false naming the cap and reset", resp.StatusCode, resp.Header, body)
	}
	if len(unifiedHeaders(resp.Header)) != 0 {
		t.Errorf("an OpenAI-family 429 carries Claude Code's usage-limit headers: %v", resp.Header)
	}

	b, _ := signedIn(t, h, devidp.DemoUsers()[0])
	status, out, _ := b.call("GET", h.url+"/api/usage", "", nil)
	sp, _ := out["spend"].(map[string]any)
	if status != 200 || sp["spent_usd"] != 1.2 || sp["cap_usd"] != 1.0 || sp["cap_source"] != "default" || sp["month"] != time.Now().UTC().Format("2006-01") {
		t.Errorf("GET /api/usage: %d spend %v; want $1.2 of the $1 default cap", status, sp)
	}
	cl, _ := h.tokens.Verify(t.Context(), tok, tokens.ScopeLLM)
	waitFor(t, "the token's spend written", func() bool {
		n, _ := h.usage.TokenSpend(t.Context(), cl.ID)
		return math.Abs(n-1.2) < 1e-9
	})
	status, out, _ = b.call("GET", h.url+"/api/tokens/"+cl.ID+"/usage", "", nil)
	month, _ := out["month"].(map[string]any)
	if status != 200 || out["spent_usd"] != 1.2 || month["spent_usd"] != 1.2 || month["cap_usd"] != 1.0 {
		t.Errorf("GET /api/tokens/{id}/usage: %d %v; want the token's $1.2 and the month's $1.2 of $1", status, out)
	}

	metrics := b.Get(h.url + "/metrics").Body
	for _, want := range []string{`llmgate_spend_usd_total{group="none"} 1.2`, `llmgate_budget_refusals_total 1`} {
		if !strings.Contains(metrics, want) {
			t.Errorf("GET /metrics lacks %s", want)
		}
	}
	if strings.Contains(metrics, "alice@") {
		t.Error("GET /metrics names a person")
	}
}

// TestSpendCostSources: a call's cost comes from the upstream's cost
// header, else from the price table applied to the response's usage (JSON
// and SSE, OpenAI and Anthropic shapes), else it is unknown.
func TestSpendCostSources(t *testing.T) {
	prices := usage.NewPrices(map[string]usage.Price{
		"gpt-4o":            {InputPerMTok: 2, OutputPerMTok: 8},
		"claude-sonnet-4-6": {InputPerMTok: 3, OutputPerMTok: 15},
	})
	streamChat := `{"model":"gpt-4o-mini","stream":true,"stream_options":{"include_usage":true},"messages":[{"role":"user","content":"hello there"}]}`
	streamMessages := `{"model":"claude-sonnet-4-6","max_tokens":64,"stream":true,"messages":[{"role":"user","content":"hello there"}]}`
	unpriced := `{"model":"llama-3-70b","messages":[{"role":"user","content":"hello there"}]}`
	for _, tt := range []struct {
		name       string
		headerCost float64 // the upstream's cost header; 0: none
		path, body string
		priced     bool // cost from the table: input*price + output*price
		inP, outP  float64
	}{
		{"header wins over the table", 0.42, "/v1/chat/completions", chatBody, false, 0, 0},
		{"table, OpenAI JSON", 0, "/v1/chat/completions", chatBody, true, 2, 8},
		{"table, OpenAI SSE", 0, "/v1/chat/completions", streamChat, true, 2, 8},
		{"table, Anthropic JSON", 0, "/v1/messages", messagesBody, true, 3, 15},
		{"table, Anthropic SSE", 0, "/v1/messages?beta=true", streamMessages, true, 3, 15},
		{"unknown", 0, "/v1/chat/completions", unpriced, false, 0, 0},
	} {
		t.Run(tt.name, func(t *testing.T) {
			h := newHarness(t, redistest.Mini(t), func(s *setup) {
				s.upstream.CostUSD = tt.headerCost
				s.proxy.CostHeader = "x-litellm-response-cost"
				s.proxy.Spend.Prices = prices
			})
			tok := h.mint(t, tokens.IssueRequest{})
			if resp, body := h.api(t, "POST", tt.path, tt.body, bearer(tok)); resp.StatusCode != 200 {
				t.Fatalf("POST %s: %d %s", tt.path, resp.StatusCode, body)
			}
			var rec usage.Record
			waitFor(t, "the call recorded", func() bool {
				recs, _ := h.usage.Recent(context.Background(), "alice@example.com", 1)
				if len(recs) == 1 {
					rec = recs[0]
				}
				return len(recs) == 1
			})
			if rec.InputTokens <= 0 || rec.OutputTokens <= 0 {
				t.Fatalf("recorded %+v; want usage read from the answer", rec)
			}
			spent := h.usage.Ledger().Spent("alice@example.com")
			switch {
			case tt.headerCost > 0:
				if !rec.CostKnown || rec.CostUSD != tt.headerCost || spent != tt.headerCost {
					t.Errorf("recorded %+v, month spend %v; want the header's %v", rec, spent, tt.headerCost)
				}
			case tt.priced:
				want := math.Round((float64(rec.InputTokens)*tt.inP+float64(rec.OutputTokens)*tt.outP)/1e6*1e6) / 1e6
				if !rec.CostKnown || math.Abs(rec.CostUSD-want) > 1e-6 || want == 0 || math.Abs(spent-want) > 1e-6 {
					t.Errorf("recorded %+v, month spend %v; want the table's %v", rec, spent, want)
				}
			default:
				if rec.CostKnown || spent != 0 {
					t.Errorf("recorded %+v, month spend %v; want unknown cost, nothing spent", rec, spent)
				}
			}
		})
	}
}

// TestSpendCapAcrossReplicas, on real Redis with two replicas: a person
// with a $1 cap whose calls cost $0.30 is refused on replica B within a
// second of crossing the cap on replica A, and concurrent calls overshoot
// the cap by at most those in flight.
func TestSpendCapAcrossReplicas(t *testing.T) {
	rs := redistest.Real(t)
	replica := func(s *setup) {
		s.issuer = "https://llm.example.test"
		s.upstream.CostUSD = 0.3
		s.proxy.CostHeader = "x-litellm-response-cost"
	}
	a := newHarness(t, rs, replica)
	b := newHarness(t, rs, replica)
	const alice, bob = "alice@example.com", "bob@example.com"
	a.setCap(t, alice, 1)
	a.setCap(t, bob, 1)
	waitFor(t, "replica B sees the caps", func() bool {
		_, okA := b.usage.Ledger().Cap(alice)
		_, okB := b.usage.Ledger().Cap(bob)
		return okA && okB
	})
	tok := a.mint(t, tokens.IssueRequest{})

	for i := range 4 {
		if resp, body := a.api(t, "POST", "/v1/chat/completions", chatBody, bearer(tok)); resp.StatusCode != 200 {
			t.Fatalf("call %d on replica A, under the cap: %d %s", i+1, resp.StatusCode, body)
		}
	}
	crossed := time.Now() // A counts its own calls as they end
	if resp, _ := a.api(t, "POST", "/v1/chat/completions", chatBody, bearer(tok)); resp.StatusCode != 429 {
		t.Fatalf("replica A after crossing the cap: %d; want 429 at once", resp.StatusCode)
	}
	var refusedAfter time.Duration
	extra := 0
	for {
		resp, body := b.api(t, "POST", "/v1/chat/completions", chatBody, bearer(tok))
		if resp.StatusCode == 429 {
			refusedAfter = time.Since(crossed)
			break
		}
		if resp.StatusCode != 200 {
			t.Fatalf("replica B: %d %s", resp.StatusCode, body)
		}
		extra++
		if time.Since(crossed) > 5*time.Second {
			t.Fatal("replica B still lets alice through 5 s after she crossed her cap on replica A")
		}
	}
	t.Logf("replica B refused %v after the cap was crossed on replica A, after %d more calls", refusedAfter, extra)
	if refusedAfter > time.Second {
		t.Errorf("replica B refused %v after the cap was crossed on replica A; want within 1 s", refusedAfter)
	}

	// Concurrent calls on one replica: at most those in flight overshoot.
	const workers = 4
	bobTok := a.mint(t, tokens.IssueRequest{Email: bob, Subject: "bob-sub"})
	var ok atomic.Int64
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			for {
				resp, _ := a.api(t, "POST", "/v1/chat/completions", chatBody, bearer(bobTok))
				if resp.StatusCode != 200 {
					return
				}
				ok.Add(1)
			}
		})
	}
	wg.Wait()
	// $1 at $0.30 a call is crossed by the 4th; the calls already in
	// flight then (at most one per worker) may still go through.
	if n := ok.Load(); n < 4 || n > 4+workers {
		t.Errorf("%d concurrent workers got %d calls through a $1 cap at $0.30 a call; want 4 to %d", workers, n, 4+workers)
	}
}

// TestSpendSurvivesRestart: the month's spend and the caps survive a
// restart of both replicas and of Redis (append-only file).
func TestSpendSurvivesRestart(t *testing.T) {
	p := redistest.Process(t)
	replica := func(s *setup) {
		s.issuer = "https://llm.example.test"
		s.upstream.CostUSD = 0.3
		s.proxy.CostHeader = "x-litellm-response-cost"
	}
	const alice = "alice@example.com"
	t.Run("before", func(t *testing.T) {
		a := newHarness(t, p.Server, replica)
		b := newHarness(t, p.Server, replica)
		a.setCap(t, alice, 1)
		tok := a.mint(t, tokens.IssueRequest{})
		for _, h := range []*harness{a, b, a} {
			if resp, body := h.api(t, "POST", "/v1/chat/completions", chatBody, bearer(tok)); resp.StatusCode != 200 {
				t.Fatalf("call under the cap: %d %s", resp.StatusCode, body)
			}
		}
		waitFor(t, "$0.90 written", func() bool {
			n, _ := a.usage.MonthSpend(context.Background(), alice, time.Now())
			return math.Abs(n-0.9) < 1e-9
		})
	})
	p.Stop()
	p.Start()
	t.Run("after", func(t *testing.T) {
		a := newHarness(t, p.Server, replica)
		b := newHarness(t, p.Server, replica)
		waitFor(t, "the spend and cap read back", func() bool {
			c, ok := b.usage.Ledger().Cap(alice)
			return ok && c == 1 && math.Abs(b.usage.Ledger().Spent(alice)-0.9) < 1e-9
		})
		tok := a.mint(t, tokens.IssueRequest{})
		if resp, body := b.api(t, "POST", "/v1/chat/completions", chatBody, bearer(tok)); resp.StatusCode != 200 {
			t.Fatalf("call at $0.90 of $1 after the restart: %d %s", resp.StatusCode, body)
		}
		if resp, _ := b.api(t, "POST", "/v1/chat/completions", chatBody, bearer(tok)); resp.StatusCode != 429 {
			t.Errorf("call at $1.20 of $1 after the restart: %d; want 429", resp.StatusCode)
		}
	})
}

// TestAdminBudget: an admin sets, changes and removes a person's cap over
// the API; bad amounts are refused naming the field; the admin usage
// lists everyone's spend against their cap; others may not.
func TestAdminBudget(t *testing.T) {
	h := newHarness(t, redistest.Mini(t))
	demo := devidp.DemoUsers()
	admin, csrf := signedIn(t, h, demo[0])
	bob, bobCSRF := signedIn(t, h, demo[1])
	const url = "/api/admin/users/Bob@Example.com/budget"
	if status, _, _ := bob.call("PUT", h.url+url, `{"monthly_usd":1000}`, bobCSRF); status != 403 {
		t.Errorf("bob setting his own cap: %d; want 403", status)
	}
	for _, bad := range []string{`{"monthly_usd":-1}`, `{"monthly_usd":"10"}`, `{}`, `{"monthly":5}`} {
		status, out, _ := admin.call("PUT", h.url+url, bad, csrf)
		if status != 400 || !strings.Contains(errorMessage(out), "monthly_usd") {
			t.Errorf("PUT budget %s: %d %v; want 400 naming monthly_usd", bad, status, out)
		}
	}
	status, out, _ := admin.call("PUT", h.url+url, `{"monthly_usd":25.5}`, csrf)
	if status != 200 || out["monthly_usd"] != 25.5 || out["user_email"] != "bob@example.com" {
		t.Fatalf("PUT budget 25.5: %d %v", status, out)
	}
	if c, ok := h.usage.Ledger().Cap("bob@example.com"); !ok || c != 25.5 {
		t.Errorf("bob's cap after PUT = %v, %v; want 25.5", c, ok)
	}
	h.spend(t, "bob@example.com", 5)
	_, usage, _ := admin.call("GET", h.url+"/api/admin/usage", "", nil)
	rows, _ := usage["spend"].([]any)
	var bobRow map[string]any
	for _, r := range rows {
		if m := r.(map[string]any); m["email"] == "bob@example.com" {
			bobRow = m
		}
	}
	if len(rows) < 2 || rows[0].(map[string]any)["email"] != "bob@example.com" || bobRow["spent_usd"] != 5.0 ||
		bobRow["cap_usd"] != 25.5 || bobRow["person_cap_usd"] != 25.5 {
		t.Errorf("GET /api/admin/usage spend = %v; want bob first with $5 of $25.5, alice listed", rows)
	}
	if status, out, _ := admin.call("PUT", h.url+url, `{"monthly_usd":null}`, csrf); status != 200 || out["monthly_usd"] != nil {
		t.Errorf("PUT budget null: %d %v", status, out)
	}
	if _, ok := h.usage.Ledger().Cap("bob@example.com"); ok {
		t.Error("bob still has a cap after PUT null")
	}
	var page audit.Page
	var err error
	waitFor(t, "two budget events audited", func() bool {
		page, err = h.audit.List(context.Background(), audit.Filter{Type: audit.TypeUserBudget})
		return err != nil || len(page.Events) >= 2
	})
	if err != nil || len(page.Events) != 2 || page.Events[0].Actor != "alice@example.com" || page.Events[1].Details["monthly_usd"] != "25.5" {
		t.Errorf("audit of budget changes: %+v, %v; want two user.budget events by alice", page, err)
	}
}
