package gateway

import (
	"cmp"
	"encoding/json"
	"errors"
	"math"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/llmgate/llmgate/internal/audit"
	"github.com/llmgate/llmgate/internal/usage"
	"github.com/llmgate/llmgate/internal/users"
	"github.com/llmgate/llmgate/tokens"
)

// spendView is a person's spend this month against their cap, as the
// JSON API shows it.
type spendView struct {
	Month    string  `json:"month"` // YYYY-MM, UTC
	SpentUSD float64 `json:"spent_usd"`
	// CapUSD is the monthly cap that applies (the smallest), null for none.
	CapUSD *float64 `json:"cap_usd"`
	// CapSource is where it comes from: "person", "group NAME",
	// "Claude Code policy" or "default".
	CapSource   string    `json:"cap_source,omitempty"`
	Utilization *float64  `json:"utilization"` // spent / cap, null without a cap
	ResetsAt    time.Time `json:"resets_at"`
}

func (s *Server) spendView(email string, groups []string) spendView {
	now := s.cfg.Now().UTC()
	v := spendView{Month: now.Format("2006-01"), SpentUSD: roundCents(s.spend.ledger.Spent(email)), ResetsAt: nextMonth(now)}
	if b, _ := s.personBudget(email, groups); b != nil {
		limit, u := b.limitUSD, math.Round(b.utilization()*1e4)/1e4
		v.CapUSD, v.CapSource, v.Utilization = &limit, b.source, &u
	}
	return v
}

// roundCents rounds to a micro-dollar, which is what is stored; the name
// says what the UI then shows.
func roundCents(usd float64) float64 { return math.Round(usd*1e6) / 1e6 }

// handleOAuthUsage is the caller's spend against their cap in the shape
// Claude Code's /usage reads (SPEC §8): GET /api/oauth/usage with the
// bearer Claude Code calls the API with.
func (s *Server) handleOAuthUsage(c *gin.Context) {
	raw := bearerToken(c.Request)
	if raw == "" {
		c.Header("WWW-Authenticate", `Bearer`)
		s.fail(c, refuse(http.StatusUnauthorized, "missing_token", "no bearer token: send the access token as Authorization: Bearer"))
		return
	}
	cl, err := s.tokens.Verify(c.Request.Context(), raw, tokens.ScopeLLM)
	if err != nil {
		e := tokenError("verify token", err)
		if e.Status == http.StatusUnauthorized {
			c.Header("WWW-Authenticate", `Bearer error="invalid_token"`)
		}
		s.fail(c, e)
		return
	}
	ctx := c.Request.Context()
	b, _, err := s.callBudget(ctx, cl)
	if err != nil {
		s.fail(c, unavailable("read token spend", err))
		return
	}
	c.Header("Cache-Control", "no-store")
	cents := func(usd float64) int64 { return int64(math.Round(usd * 100)) }
	if b != nil {
		pct := int64(math.Min(math.Floor(b.utilization()*100), 100))
		severity := "normal"
		switch u := b.utilization(); {
		case u >= 0.95:
			severity = "critical"
		case u >= 0.75:
			severity = "warning"
		}
		group := b.source
		c.JSON(http.StatusOK, gin.H{
			"extra_usage": gin.H{
				"is_enabled": true, "monthly_limit": cents(b.limitUSD), "used_credits": cents(b.spentUSD),
				"utilization": pct, "currency": "USD",
			},
			"limits": []gin.H{{
				"kind": "spend", "group": group, "percent": pct,
				"resets_at": b.reset.UTC().Format(time.RFC3339), "severity": severity, "is_active": b.reached(),
			}},
		})
		return
	}
	rows, err := s.usage.UserUsage(ctx, cl.Email, 7)
	if err != nil {
		s.fail(c, unavailable("read usage", err))
		return
	}
	month := s.spend.ledger.Spent(cl.Email)
	if len(rows) == 0 && month == 0 {
		s.fail(c, refuse(http.StatusNotFound, "no_usage", "no usage is known for %s yet", cl.Email))
		return
	}
	today := s.cfg.Now().UTC().Format("2006-01-02")
	var daily, weekly float64
	for _, r := range rows {
		weekly += r.CostUSD
		if r.Day == today {
			daily += r.CostUSD
		}
	}
	c.JSON(http.StatusOK, gin.H{
		"extra_usage": gin.H{
			"is_enabled": false, "monthly_limit": nil, "used_credits": cents(month), "utilization": nil, "currency": "USD",
			"daily_limit": nil, "daily_used_credits": cents(daily),
			"weekly_limit": nil, "weekly_used_credits": cents(weekly),
		},
		"limits": []gin.H{},
	})
}

// handleAdminSetBudget sets or removes a person's monthly cap:
// PUT /api/admin/users/{email}/budget {"monthly_usd": N | null}.
func (s *Server) handleAdminSetBudget(c *gin.Context) {
	email := strings.ToLower(strings.TrimSpace(c.Param("email")))
	if !strings.Contains(email, "@") {
		s.fail(c, refuse(http.StatusBadRequest, "invalid_user_email", "%q is not an email address", email))
		return
	}
	var req map[string]json.RawMessage
	if !s.bindJSON(c, &req) {
		return
	}
	for k := range req {
		if k != "monthly_usd" {
			s.fail(c, refuse(http.StatusBadRequest, "invalid_json", `unknown field %q: send {"monthly_usd": N} to set the cap, or {"monthly_usd": null} to remove it`, k))
			return
		}
	}
	capUSD, e := parseMonthlyUSD(req["monthly_usd"])
	if e != nil {
		s.fail(c, e)
		return
	}
	actor := currentPrincipal(c).Email
	if e := s.setBudget(c, email, capUSD, actor); e != nil {
		s.fail(c, e)
		return
	}
	out := gin.H{"user_email": email, "monthly_usd": capUSD, "set_by": actor}
	var groups []string
	if p, err := s.users.Get(c.Request.Context(), email); err == nil {
		groups = p.Groups
	}
	out["spend"] = s.spendView(email, groups)
	c.JSON(http.StatusOK, out)
}

// parseMonthlyUSD reads monthly_usd: a non-negative number, or null.
func parseMonthlyUSD(raw json.RawMessage) (*float64, *apiError) {
	bad := refuse(http.StatusBadRequest, "invalid_monthly_usd",
		"monthly_usd must be a non-negative amount in USD (0 allows no spend), or null to remove the person's cap")
	if len(raw) == 0 {
		return nil, bad
	}
	if string(raw) == "null" {
		return nil, nil
	}
	var v float64
	if err := json.Unmarshal(raw, &v); err != nil || v < 0 || math.IsNaN(v) || math.IsInf(v, 0) || v > 1e9 {
		return nil, bad
	}
	return &v, nil
}

// setBudget stores a person's cap and audits it.
func (s *Server) setBudget(c *gin.Context, email string, capUSD *float64, actor string) *apiError {
	if err := s.spend.ledger.SetCap(c.Request.Context(), email, capUSD); err != nil {
		if errors.Is(err, usage.ErrInvalidCap) {
			return refuse(http.StatusBadRequest, "invalid_monthly_usd", "monthly_usd must be a non-negative amount in USD, or null")
		}
		return unavailable("set spend cap", err)
	}
	val := "none"
	if capUSD != nil {
		val = strconv.FormatFloat(*capUSD, 'f', -1, 64)
	}
	s.audit.Record(audit.Event{Type: audit.TypeUserBudget, Actor: actor, Email: email, IP: c.ClientIP(),
		Details: map[string]string{"monthly_usd": val}})
	return nil
}

// personSpendRow is one person in the admin list of spend.
type personSpendRow struct {
	Email string `json:"email"`
	spendView
	// PersonCapUSD is the cap an admin set for this person, null for none.
	PersonCapUSD *float64 `json:"person_cap_usd"`
}

// spendRows lists everyone who has spent this month, has a cap of their
// own or has signed in (up to the first page of people), most spent
// first.
func (s *Server) spendRows(c *gin.Context) ([]personSpendRow, error) {
	people, _, err := s.users.List(c.Request.Context(), "", users.MaxListLimit)
	if err != nil {
		return nil, err
	}
	groups := map[string][]string{}
	for _, p := range people {
		groups[p.Email] = p.Groups
	}
	seen := map[string]bool{}
	var rows []personSpendRow
	add := func(email string) {
		if seen[email] {
			return
		}
		seen[email] = true
		row := personSpendRow{Email: email, spendView: s.spendView(email, groups[email])}
		if v, ok := s.spend.ledger.Cap(email); ok {
			row.PersonCapUSD = &v
		}
		rows = append(rows, row)
	}
	for _, p := range s.spend.ledger.All() {
		add(p.Email)
	}
	for _, p := range people {
		add(p.Email)
	}
	slices.SortFunc(rows, func(a, b personSpendRow) int {
		if d := cmp.Compare(b.SpentUSD, a.SpentUSD); d != 0 {
			return d
		}
		return strings.Compare(a.Email, b.Email)
	})
	return rows, nil
}
