package gateway

import (
	"math"
	"net/http"
	"net/url"
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
	notice := ""
	if who := c.Query("saved"); who != "" {
		notice = "Saved the cap of " + who + "."
	}
	s.renderAdminSpend(c, http.StatusOK, notice, "")
}

func (s *Server) renderAdminSpend(c *gin.Context, status int, notice, formError string) {
	rows, err := s.spendRows(c)
	if err != nil {
		s.fail(c, unavailable("read people", err))
		return
	}
	page := ui.AdminSpendPage{
		Layout: ui.Layout{Title: "Spend", User: currentUser(c), CSRFToken: s.csrfToken(c)},
		Month:  s.cfg.Now().UTC().Format("2006-01"), Notice: notice, FormError: formError,
	}
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
	c.Header("Cache-Control", "no-store")
	s.render(c, status, page)
}

// handleUISetBudget sets or removes a person's cap from the admin spend
// page's form: POST /ui/admin/users/{email}/budget with monthly_usd (empty
// removes the cap). It answers with a redirect back to the page.
func (s *Server) handleUISetBudget(c *gin.Context) {
	email := strings.ToLower(strings.TrimSpace(c.Param("email")))
	if !strings.Contains(email, "@") {
		s.renderAdminSpend(c, http.StatusBadRequest, "", email+" is not an email address.")
		return
	}
	var capUSD *float64
	if v := strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(c.PostForm("monthly_usd")), "$")); v != "" {
		f, err := strconv.ParseFloat(v, 64)
		if err != nil || f < 0 || math.IsNaN(f) || math.IsInf(f, 0) || f > 1e9 {
			s.renderAdminSpend(c, http.StatusBadRequest, "",
				"The cap of "+email+" was not changed: “"+v+"” is not an amount in USD. Write a number such as 200 or 49.5, or leave the field empty to remove the cap.")
			return
		}
		capUSD = &f
	}
	if e := s.setBudget(c, email, capUSD, currentPrincipal(c).Email); e != nil {
		s.fail(c, e)
		return
	}
	c.Redirect(http.StatusSeeOther, "/ui/admin/spend?saved="+url.QueryEscape(email))
}
