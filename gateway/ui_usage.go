package gateway

import (
	"cmp"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/llmgate/llmgate/internal/usage"
	"github.com/llmgate/llmgate/ui"
)

// usageTotals sums usage rows: per day, per model, per person and model,
// per person, and everything.
type usageTotals struct {
	perDay         map[string]*ui.UsageRow
	perModel       map[string]*ui.UsageRow
	perPersonModel map[[2]string]*ui.UsageRow
	perPerson      map[string]*ui.UsageRow
	total          ui.UsageRow
}

func newUsageTotals() *usageTotals {
	return &usageTotals{perDay: map[string]*ui.UsageRow{}, perModel: map[string]*ui.UsageRow{},
		perPersonModel: map[[2]string]*ui.UsageRow{}, perPerson: map[string]*ui.UsageRow{}}
}

func addUsage(r *ui.UsageRow, d usage.DayModel) {
	r.Requests += d.Requests
	r.InputTokens += d.InputTokens
	r.OutputTokens += d.OutputTokens
	r.CostUSD += d.CostUSD
	r.CostUnknownRequests += d.CostUnknownRequests
}

func rowOf[K comparable](m map[K]*ui.UsageRow, k K, init ui.UsageRow) *ui.UsageRow {
	r := m[k]
	if r == nil {
		r = &init
		m[k] = r
	}
	return r
}

// add counts email's rows.
func (t *usageTotals) add(email string, rows []usage.DayModel) {
	for _, d := range rows {
		addUsage(rowOf(t.perDay, d.Day, ui.UsageRow{}), d)
		addUsage(rowOf(t.perModel, d.Model, ui.UsageRow{Model: d.Model}), d)
		addUsage(rowOf(t.perPersonModel, [2]string{email, d.Model}, ui.UsageRow{Email: email, Model: d.Model}), d)
		addUsage(rowOf(t.perPerson, email, ui.UsageRow{Email: email}), d)
		addUsage(&t.total, d)
	}
}

// sorted returns the rows of m, most requests first, then by email and model.
func sorted[K comparable](m map[K]*ui.UsageRow) []ui.UsageRow {
	out := make([]ui.UsageRow, 0, len(m))
	for _, r := range m {
		out = append(out, *r)
	}
	slices.SortFunc(out, func(a, b ui.UsageRow) int {
		return cmp.Or(cmp.Compare(b.Requests, a.Requests), cmp.Compare(a.Email, b.Email), cmp.Compare(a.Model, b.Model))
	})
	return out
}

// byEmailModel returns the rows of m by email, then model.
func byEmailModel(m map[[2]string]*ui.UsageRow) []ui.UsageRow {
	out := sorted(m)
	slices.SortFunc(out, func(a, b ui.UsageRow) int {
		return cmp.Or(cmp.Compare(a.Email, b.Email), cmp.Compare(a.Model, b.Model))
	})
	return out
}

// chart draws metric per day over the last days days (oldest first,
// days without calls as zero).
func (t *usageTotals) chart(who string, days int, now time.Time, metric string) ui.BarChart {
	today := now.UTC()
	points := make([]ui.Point, days)
	for i := range days {
		day := today.AddDate(0, 0, -(days - 1 - i)).Format("2006-01-02")
		var r ui.UsageRow
		if p := t.perDay[day]; p != nil {
			r = *p
		}
		title := fmt.Sprintf("%s: %s requests, %s input tokens, %s output tokens, %s", day,
			ui.Num(r.Requests), ui.Num(r.InputTokens), ui.Num(r.OutputTokens), ui.USD(r.CostUSD))
		points[i] = ui.Point{Label: day[5:], Value: metricValue(r, metric), Title: title}
	}
	format, unit := ui.Compact, "requests"
	switch metric {
	case ui.MetricTokens:
		unit = "tokens (input + output)"
	case ui.MetricCost:
		unit = "cost (USD)"
		format = func(v float64) string { return ui.USD(v) }
	}
	label := fmt.Sprintf("%s per day over the last %d days (%s)", unitTitle(metric), days, who)
	return ui.NewBarChart(label, unit, points, format)
}

func unitTitle(metric string) string {
	switch metric {
	case ui.MetricTokens:
		return "Tokens"
	case ui.MetricCost:
		return "Cost"
	}
	return "Requests"
}

func metricValue(r ui.UsageRow, metric string) float64 {
	switch metric {
	case ui.MetricTokens:
		return float64(r.InputTokens + r.OutputTokens)
	case ui.MetricCost:
		return r.CostUSD
	}
	return float64(r.Requests)
}

// usageQuery reads ?days= (1–400, default 30) and ?metric= of a usage page.
func (s *Server) usageQuery(c *gin.Context) (int, string, bool) {
	days, ok := s.intQuery(c, "days", 30, 400)
	if !ok {
		return 0, "", false
	}
	metric := c.DefaultQuery("metric", ui.MetricRequests)
	switch metric {
	case ui.MetricRequests, ui.MetricTokens, ui.MetricCost:
	default:
		s.fail(c, refuse(http.StatusBadRequest, "invalid_metric", "metric must be requests, tokens or cost"))
		return 0, "", false
	}
	return days, metric, true
}

// usageLinks builds a usage page's period and metric links, keeping the
// other query parameters.
func usageLinks(path string, q url.Values, days int, metric string) (periods, metrics []ui.Choice) {
	link := func(k, v string) string {
		u := url.Values{}
		for key, vals := range q {
			u[key] = vals
		}
		u.Set("days", strconv.Itoa(days))
		u.Set("metric", metric)
		u.Set(k, v)
		return path + "?" + u.Encode()
	}
	periods = ui.PeriodChoices(days, func(d int) string { return link("days", strconv.Itoa(d)) })
	metrics = ui.MetricChoices(metric, func(m string) string { return link("metric", m) })
	return periods, metrics
}

// handleUIUsage is the person's own usage: GET /ui/usage?days=&metric=.
func (s *Server) handleUIUsage(c *gin.Context) {
	days, metric, ok := s.usageQuery(c)
	if !ok {
		return
	}
	ctx := c.Request.Context()
	sess := currentSession(c)
	rows, err := s.usage.UserUsage(ctx, sess.Email, days)
	if err != nil {
		s.fail(c, unavailable("read usage", err))
		return
	}
	recent, err := s.usage.Recent(ctx, sess.Email, 50)
	if err != nil {
		s.fail(c, unavailable("read recent requests", err))
		return
	}
	names := map[string]string{}
	if recs, err := s.tokens.List(ctx, sess.Email); err == nil {
		for _, r := range recs {
			names[r.ID] = r.Name
		}
	}
	t := newUsageTotals()
	t.add(sess.Email, rows)
	p := ui.UsagePage{
		Layout: s.layout(c, "Usage", "usage"),
		Days:   days,
		Chart:  t.chart("you", days, s.cfg.Now(), metric),
		Models: sorted(t.perModel),
		Total:  t.total,
	}
	p.Periods, p.Metrics = usageLinks("/ui/usage", url.Values{}, days, metric)
	for _, r := range recent {
		row := ui.RequestRow{Time: r.Time, Model: r.Model, Path: r.Path, Status: r.Status, InputTokens: r.InputTokens,
			OutputTokens: r.OutputTokens, LatencyMS: float64(r.Latency.Microseconds()) / 1000, TokenName: names[r.TokenID]}
		if row.TokenName == "" {
			row.TokenName = r.TokenID
		}
		if r.CostKnown {
			cost := r.CostUSD
			row.CostUSD = &cost
		}
		p.Recent = append(p.Recent, row)
	}
	s.render(c, http.StatusOK, p)
}
