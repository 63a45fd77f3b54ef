package gateway

import (
	"encoding/csv"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"

	"github.com/gin-gonic/gin"

	"github.com/llmgate/llmgate/internal/usage"
	"github.com/llmgate/llmgate/ui"
)

// adminUsage reads everyone's usage over days, or email's alone.
func (s *Server) adminUsage(c *gin.Context, days int, email string) (map[string][]usage.DayModel, bool) {
	all, err := s.usage.AllUsage(c.Request.Context(), days)
	if err != nil {
		s.fail(c, unavailable("read usage", err))
		return nil, false
	}
	if email != "" {
		all = map[string][]usage.DayModel{email: all[email]}
	}
	return all, true
}

// handleUIAdminUsage is usage per person and model:
// GET /ui/admin/usage?days=&metric=&email=.
func (s *Server) handleUIAdminUsage(c *gin.Context) {
	days, metric, ok := s.usageQuery(c)
	if !ok {
		return
	}
	email := strings.ToLower(strings.TrimSpace(c.Query("email")))
	all, ok := s.adminUsage(c, days, email)
	if !ok {
		return
	}
	t := newUsageTotals()
	for e, rows := range all {
		t.add(e, rows)
	}
	who := "everyone"
	if email != "" {
		who = email
	}
	p := ui.AdminUsagePage{
		Layout: s.layout(c, "All usage", "admin-usage"),
		Days:   days, Email: email,
		Chart:  t.chart(who, days, s.cfg.Now(), metric),
		People: sorted(t.perPerson),
		Rows:   byEmailModel(t.perPersonModel),
		Total:  t.total,
		CSVURL: withQuery("/ui/admin/usage.csv", "days", strconv.Itoa(days), "email", email),
	}
	q := url.Values{}
	if email != "" {
		q.Set("email", email)
	}
	p.Periods, p.Metrics = usageLinks("/ui/admin/usage", q, days, metric)
	s.render(c, http.StatusOK, p)
}

// handleUIAdminUsageCSV downloads usage per day, person and model:
// GET /ui/admin/usage.csv?days=&email=.
func (s *Server) handleUIAdminUsageCSV(c *gin.Context) {
	days, ok := s.intQuery(c, "days", 30, 400)
	if !ok {
		return
	}
	email := strings.ToLower(strings.TrimSpace(c.Query("email")))
	all, ok := s.adminUsage(c, days, email)
	if !ok {
		return
	}
	emails := make([]string, 0, len(all))
	for e := range all {
		emails = append(emails, e)
	}
	slices.Sort(emails)
	name := fmt.Sprintf("llmgate-usage-%s-%dd.csv", s.cfg.Now().UTC().Format("2006-01-02"), days)
	c.Header("Content-Type", "text/csv; charset=utf-8")
	c.Header("Content-Disposition", `attachment; filename="`+name+`"`)
	c.Header("Cache-Control", "no-store")
	c.Status(http.StatusOK)
	w := csv.NewWriter(c.Writer)
	w.Write([]string{"day", "email", "model", "requests", "input_tokens", "output_tokens", "cost_usd", "cost_unknown_requests"})
	for _, e := range emails {
		rows := slices.Clone(all[e])
		slices.SortStableFunc(rows, func(a, b usage.DayModel) int { return strings.Compare(a.Day, b.Day) })
		for _, r := range rows {
			w.Write(csvSafe(r.Day, e, r.Model, strconv.FormatInt(r.Requests, 10), strconv.FormatInt(r.InputTokens, 10),
				strconv.FormatInt(r.OutputTokens, 10), strconv.FormatFloat(r.CostUSD, 'f', 6, 64), strconv.FormatInt(r.CostUnknownRequests, 10)))
		}
	}
	w.Flush()
	if err := w.Error(); err != nil {
		s.log.Warn("write usage CSV", "err", err)
	}
}

// csvSafe defuses cells a spreadsheet would run as a formula (CSV
// injection): a cell starting with = + - @, a tab or a carriage return
// gets a leading apostrophe, so it shows as text. Model names and emails
// come from callers, so they may start with anything.
func csvSafe(cells ...string) []string {
	for i, v := range cells {
		if v != "" && strings.ContainsRune("=+-@\t\r", rune(v[0])) {
			cells[i] = "'" + v
		}
	}
	return cells
}
