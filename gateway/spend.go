package gateway

import (
	"context"
	"fmt"
	"math"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/llmgate/llmgate/internal/usage"
	"github.com/llmgate/llmgate/tokens"
)

// SpendConfig configures spend caps (SPEC §4.5). The zero value caps
// nobody and prices nothing. A Claude Code policy's monthly budget comes
// with the policy itself (Config.ClaudeCode), chosen by the same first
// match that chooses its models and settings.
type SpendConfig struct {
	// Prices prices calls whose upstream sends no cost header (YAML
	// "prices"); nil prices nothing.
	Prices *usage.Prices
	// DefaultMonthlyUSD is LLMGATE_USER_MONTHLY_BUDGET_USD: the cap of
	// people no other cap applies to; 0 = no cap.
	DefaultMonthlyUSD float64
	// GroupMonthlyUSD caps the members of a group (YAML budgets.groups);
	// 0 = no cap.
	GroupMonthlyUSD map[string]float64
}

// spendState is the gateway's part of spend caps.
type spendState struct {
	ledger      *usage.Ledger
	needGroups  bool // some cap depends on a person's groups (s.groupsOf)
	spentUSD    *prometheus.CounterVec
	refusals    prometheus.Counter
	groupLabels map[string]bool // the values of the group label
}

func (s *Server) initSpend() {
	cfg := s.proxyCfg.Spend
	sp := &s.spend
	sp.ledger = s.usage.Ledger()
	sp.needGroups = len(cfg.GroupMonthlyUSD) > 0 || s.policiesNeedGroups()
	sp.spentUSD = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "llmgate_spend_usd_total",
		Help: "Cost in USD of proxied calls of known cost, by the budget group whose cap applies to the caller (\"none\" without a group cap).",
	}, []string{"group"})
	sp.refusals = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "llmgate_budget_refusals_total",
		Help: "API calls refused because a spend cap was reached.",
	})
	s.metrics.reg.MustRegister(sp.spentUSD, sp.refusals)
}

// budget is the cap that binds a call: the one nearest to being reached.
type budget struct {
	limitUSD float64
	spentUSD float64
	// source says where the cap comes from, for people: "token",
	// "person", "group NAME", "Claude Code policy", "default".
	source  string
	monthly bool      // a calendar-month cap; otherwise a token's lifetime cap
	reset   time.Time // when it resets: the next month, or the token's expiry
}

func (b *budget) utilization() float64 {
	if b.limitUSD <= 0 {
		return 1
	}
	return b.spentUSD / b.limitUSD
}

func (b *budget) reached() bool { return b.spentUSD >= b.limitUSD }

func (b *budget) remaining() float64 { return b.limitUSD - b.spentUSD }

// monthlyCap is the smallest monthly cap that applies to email, its
// source and the budget group for metrics ("none" when no group cap
// applies).
func (s *Server) monthlyCap(email string, groups []string) (limit float64, source, group string, ok bool) {
	cfg := &s.proxyCfg.Spend
	group = "none"
	consider := func(v float64, src string) {
		if !ok || v < limit {
			limit, source, ok = v, src, true
		}
	}
	if v, set := s.spend.ledger.Cap(email); set {
		consider(v, "person")
	}
	for _, g := range groups {
		if v := cfg.GroupMonthlyUSD[g]; v > 0 {
			if !ok || v < limit {
				group = g
			}
			consider(v, "group "+g)
		}
	}
	if p := s.policyFor(email, groups); p != nil && p.MonthlyBudgetUSD > 0 {
		consider(p.MonthlyBudgetUSD, "Claude Code policy")
	}
	if !ok && cfg.DefaultMonthlyUSD > 0 {
		consider(cfg.DefaultMonthlyUSD, "default")
	}
	return limit, source, group, ok
}

// nextMonth is the start of the calendar month (UTC) after t.
func nextMonth(t time.Time) time.Time {
	t = t.UTC()
	return time.Date(t.Year(), t.Month()+1, 1, 0, 0, 0, 0, time.UTC)
}

// personBudget is email's monthly budget, nil without a cap.
func (s *Server) personBudget(email string, groups []string) (*budget, string) {
	limit, source, group, ok := s.monthlyCap(email, groups)
	if !ok {
		return nil, group
	}
	return &budget{limitUSD: limit, spentUSD: s.spend.ledger.Spent(email), source: source, monthly: true,
		reset: nextMonth(s.cfg.Now())}, group
}

// callBudget is the budget that binds a call of cl: the person's monthly
// cap or the token's lifetime one, whichever has less left.
// Only a token with a cap of its own costs a Redis round trip.
func (s *Server) callBudget(ctx context.Context, cl *tokens.Claims) (*budget, string, error) {
	var groups []string
	if s.spend.needGroups {
		groups = s.groupsOf(ctx, cl.Email)
	}
	b, group := s.personBudget(cl.Email, groups)
	if cl.MaxCostUSD > 0 {
		spent, err := s.usage.TokenSpend(ctx, cl.ID)
		if err != nil {
			return b, group, err
		}
		tb := &budget{limitUSD: cl.MaxCostUSD, spentUSD: spent, source: "token", reset: cl.ExpiresAt}
		if b == nil || tb.remaining() < b.remaining() ||
			tb.remaining() == b.remaining() && tb.utilization() > b.utilization() {
			b = tb
		}
	}
	return b, group, nil
}

// checkSpend refuses a call whose caller has reached a spend cap, and
// remembers the binding budget for the usage-limit headers.
func (s *Server) checkSpend(w http.ResponseWriter, r *http.Request, c *call) bool {
	b, group, err := s.callBudget(r.Context(), c.claims)
	c.spendGroup = group
	if err != nil && !s.proxyCfg.FailOpen {
		w.Header().Set("Retry-After", "5")
		s.refuse(w, r, c, http.StatusServiceUnavailable, "overloaded_error", "store_unavailable",
			"the gateway cannot reach its store; try again shortly", "budget store: "+err.Error())
		return false
	}
	c.budget = b
	if b == nil || !b.reached() {
		return true
	}
	now := s.cfg.Now()
	h := w.Header()
	retry := max(int64(math.Ceil(b.reset.Sub(now).Seconds())), 1)
	h.Set("Retry-After", strconv.FormatInt(retry, 10))
	if c.anthropic {
		setUnifiedHeaders(h, b, true)
	}
	typ := "insufficient_quota"
	if c.anthropic {
		typ = "billing_error"
	}
	var msg string
	if b.monthly {
		msg = fmt.Sprintf("spend cap reached: you have spent $%.2f of your monthly cap of $%.2f (%s cap); it resets on %s. Ask an llmgate administrator to raise your cap if you need more before then",
			b.spentUSD, b.limitUSD, b.source, b.reset.Format("2006-01-02 15:04 UTC"))
	} else {
		msg = fmt.Sprintf("budget exhausted: this token has spent $%.2f of its $%.2f budget; create a new token or ask an llmgate administrator",
			b.spentUSD, b.limitUSD)
	}
	s.spend.refusals.Inc()
	s.refuse(w, r, c, http.StatusTooManyRequests, typ, "budget_exhausted", msg, "spend cap reached ("+b.source+")")
	return false
}

// Claude Code's usage-limit headers (SPEC §8).
const (
	hUnified             = "Anthropic-Ratelimit-Unified-"
	hUnifiedStatus       = hUnified + "Status"
	hUnifiedClaim        = hUnified + "Representative-Claim"
	hUnifiedOverStatus   = hUnified + "Overage-Status"
	hUnifiedUtilization  = hUnified + "Overage-Utilization"
	hUnifiedThreshold    = hUnified + "Overage-Surpassed-Threshold"
	hUnifiedReset        = hUnified + "Reset"
	hUnifiedOverReset    = hUnified + "Overage-Reset"
	hUnifiedPeriod       = hUnified + "Overage-Period"
	hUnifiedDisabledWhy  = hUnified + "Overage-Disabled-Reason"
	upstreamLimitsPrefix = "Anthropic-Ratelimit-"
)

// Header values shared by every answer: ReverseProxy copies response
// headers value by value, so these slices are never written to.
var (
	vAllowed        = []string{"allowed"}
	vAllowedWarning = []string{"allowed_warning"}
	vOverage        = []string{"overage"}
	v075            = []string{"0.75"}
	v095            = []string{"0.95"}
)

// setUnifiedHeaders sets the usage-limit headers of b: those of an
// allowed answer, or those of the 429 at the cap. The names are canonical.
func setUnifiedHeaders(h http.Header, b *budget, rejected bool) {
	reset := []string{strconv.FormatInt(b.reset.Unix(), 10)}
	h[hUnifiedReset] = reset
	h[hUnifiedOverReset] = reset
	if rejected {
		h.Set(hUnifiedStatus, "rejected")
		h.Set(hUnifiedUtilization, "1")
		h.Set(hUnifiedThreshold, "1")
		period := "monthly"
		if !b.monthly {
			period = "lifetime"
		}
		h.Set(hUnifiedPeriod, period)
		h.Set(hUnifiedDisabledWhy, "out_of_credits")
		return
	}
	u := b.utilization()
	status := vAllowed
	switch {
	case u >= 0.95:
		status = vAllowedWarning
		h[hUnifiedThreshold] = v095
	case u >= 0.75:
		status = vAllowedWarning
		h[hUnifiedThreshold] = v075
	}
	h[hUnifiedStatus] = status
	h[hUnifiedClaim] = vOverage
	h[hUnifiedOverStatus] = status
	h[hUnifiedUtilization] = []string{strconv.FormatFloat(min(math.Floor(u*100)/100, 0.99), 'f', 2, 64)}
}

// spendHeaders replaces the upstream's rate-limit headers with the
// caller's usage-limit headers when a cap applies to them.
func (s *Server) spendHeaders(resp *http.Response, c *call) {
	if c.budget == nil {
		return
	}
	for name := range resp.Header {
		// Names read from the upstream are canonical.
		if strings.HasPrefix(name, upstreamLimitsPrefix) {
			delete(resp.Header, name)
		}
	}
	if c.anthropic && resp.StatusCode >= 200 && resp.StatusCode < 300 {
		setUnifiedHeaders(resp.Header, c.budget, false)
	}
}

// callCost is what a finished call cost: the upstream's cost header when
// it sent one, else the price table applied to the response's usage.
func (s *Server) callCost(c *call, header float64, headerKnown bool, u usage.Usage) (float64, bool) {
	cost, known := header, headerKnown
	if !known {
		cost, known = s.proxyCfg.Spend.Prices.Cost(c.model, u)
	}
	if known && cost > 0 {
		s.spend.spentUSD.WithLabelValues(c.spendGroup).Add(cost)
	}
	return cost, known
}
