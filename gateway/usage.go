package gateway

import (
	"net/http"
	"strconv"
	"time"

	"github.com/gin-gonic/gin"
)

// intQuery reads a whole-number query parameter within [1, max].
func (s *Server) intQuery(c *gin.Context, name string, def, max int) (int, bool) {
	v := c.Query(name)
	if v == "" {
		return def, true
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 1 || n > max {
		s.fail(c, refuse(http.StatusBadRequest, "invalid_"+name, "%s must be a whole number from 1 to %d", name, max))
		return 0, false
	}
	return n, true
}

// handleUsage is the caller's usage per day and model: GET /api/usage?days=N.
func (s *Server) handleUsage(c *gin.Context) {
	days, ok := s.intQuery(c, "days", 30, 400)
	if !ok {
		return
	}
	p := currentPrincipal(c)
	email := p.Email
	rows, err := s.usage.UserUsage(c.Request.Context(), email, days)
	if err != nil {
		s.fail(c, unavailable("read usage", err))
		return
	}
	c.Header("Cache-Control", "no-store")
	c.JSON(http.StatusOK, gin.H{"email": email, "days": days, "usage": rows, "spend": s.spendView(email, p.Groups)})
}

// handleTokenUsage is one token's lifetime usage and spend against its
// budget: GET /api/tokens/{id}/usage.
func (s *Server) handleTokenUsage(c *gin.Context) {
	rec, ok := s.ownToken(c, c.Param("id"))
	if !ok {
		return
	}
	tot, err := s.usage.TokenUsage(c.Request.Context(), rec.ID)
	if err != nil {
		s.fail(c, unavailable("read token usage", err))
		return
	}
	p := currentPrincipal(c)
	out := gin.H{"token_id": rec.ID, "name": rec.Name, "usage": tot, "spent_usd": tot.CostUSD,
		"month": s.spendView(p.Email, p.Groups)}
	if rec.MaxCostUSD > 0 {
		out["max_cost_usd"] = rec.MaxCostUSD
		out["remaining_usd"] = max(rec.MaxCostUSD-tot.CostUSD, 0)
	}
	c.Header("Cache-Control", "no-store")
	c.JSON(http.StatusOK, out)
}

// requestView is one recent call as GET /api/requests shows it.
type requestView struct {
	Time         time.Time `json:"time"`
	Model        string    `json:"model"`
	Path         string    `json:"path"`
	Status       int       `json:"status"`
	InputTokens  int64     `json:"input_tokens"`
	OutputTokens int64     `json:"output_tokens"`
	CostUSD      *float64  `json:"cost_usd"` // null when unknown
	LatencyMS    float64   `json:"latency_ms"`
	TokenID      string    `json:"token_id"`
}

// handleRequests lists the caller's recent calls: GET /api/requests?limit=N.
func (s *Server) handleRequests(c *gin.Context) {
	limit, ok := s.intQuery(c, "limit", 50, 200)
	if !ok {
		return
	}
	recs, err := s.usage.Recent(c.Request.Context(), currentPrincipal(c).Email, limit)
	if err != nil {
		s.fail(c, unavailable("read recent requests", err))
		return
	}
	out := make([]requestView, len(recs))
	for i, r := range recs {
		out[i] = requestView{Time: r.Time, Model: r.Model, Path: r.Path, Status: r.Status, InputTokens: r.InputTokens,
			OutputTokens: r.OutputTokens, LatencyMS: float64(r.Latency.Microseconds()) / 1000, TokenID: r.TokenID}
		if r.CostKnown {
			cost := r.CostUSD
			out[i].CostUSD = &cost
		}
	}
	c.Header("Cache-Control", "no-store")
	c.JSON(http.StatusOK, gin.H{"requests": out})
}
