package gateway

import (
	"math"
	"net/http"
	"strconv"
	"strings"

	"github.com/gin-gonic/gin"

	"github.com/llmgate/llmgate/ui"
)

// spendBar is email's spend this month against their cap, for pages.
func (s *Server) spendBar(email string, groups []string) ui.SpendBar {
	v := s.spendView(email, groups)
	bar := ui.SpendBar{Month: v.Month, SpentUSD: v.SpentUSD, ResetsAt: v.ResetsAt}
	if v.CapUSD != nil {
		bar.CapUSD, bar.HasCap, bar.Source = *v.CapUSD, true, v.CapSource
		bar.Percent = percentOf(v.SpentUSD, *v.CapUSD)
	}
	return bar
}

// percentOf is the whole percent of limit that spent is, 0–100.
func percentOf(spent, limit float64) int {
	if limit <= 0 {
		return 100
	}
	return int(math.Min(math.Floor(spent/limit*100), 100))
}

// handleUIAdminSpend lists people by spend this month with their caps,
// each editable: GET /ui/admin/spend.
func (s *Server) handleUIAdminSpend(c *gin.Context) {
	rows, err := s.spendRows(c)
	if err != nil {
		s.fail(c, unavailable("read people", err))
		return
	}
	page := ui.AdminSpendPage{Layout: s.layout(c, "Spend", "admin-spend"), Month: s.cfg.Now().UTC().Format("2006-01")}
	for _, r := range rows {
		row := ui.SpendRow{Email: r.Email, SpentUSD: r.SpentUSD}
		if r.CapUSD != nil {
			row.CapUSD, row.HasCap, row.Source = *r.CapUSD, true, r.CapSource
			row.Percent = percentOf(r.SpentUSD, *r.CapUSD)
		}
		if r.PersonCapUSD != nil {
			row.PersonCap = strconv.FormatFloat(*r.PersonCapUSD, 'f', -1, 64)
		}
		page.People = append(page.People, row)
	}
	s.render(c, http.StatusOK, page)
}

// handleUISetBudget sets or removes a person's cap from the spend page's
// form: POST /ui/admin/spend with email and monthly_usd (empty removes the
// cap), then back to the page with what was done.
func (s *Server) handleUISetBudget(c *gin.Context) {
	email := strings.ToLower(strings.TrimSpace(c.PostForm("email")))
	if !strings.Contains(email, "@") {
		s.actionDone(c, "/ui/admin/spend", "", refuse(http.StatusBadRequest, "invalid_user_email", "%q is not an email address", email))
		return
	}
	var capUSD *float64
	v := strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(c.PostForm("monthly_usd")), "$"))
	if v != "" {
		f, err := strconv.ParseFloat(v, 64)
		if err != nil || f < 0 || math.IsNaN(f) || math.IsInf(f, 0) || f > 1e9 {
			s.actionDone(c, "/ui/admin/spend", "", refuse(http.StatusBadRequest, "invalid_monthly_usd",
				"the cap of %s was not changed: %q is not an amount in USD; write a number such as 200 or 49.5, or leave the field empty to remove the cap", email, v))
			return
		}
		capUSD = &f
	}
	msg := "Removed the own cap of " + email + "."
	if capUSD != nil {
		msg = "Set the own cap of " + email + " to " + ui.USD(*capUSD) + " a month."
	}
	s.actionDone(c, "/ui/admin/spend", msg, s.setBudget(c, email, capUSD, currentPrincipal(c).Email))
}
