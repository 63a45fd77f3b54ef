package ui

import "time"

// UsagePage is a person's own usage: GET /ui/usage.
type UsagePage struct {
	Layout
	Days    int // the period shown: the last Days days, today included
	Periods []Choice
	Metrics []Choice
	Chart   BarChart
	Models  []UsageRow // per model, over the period
	Total   UsageRow
	Recent  []RequestRow
}

// UsageRow is usage summed over a period: of one model, or one person and
// model (Email set), or everything.
type UsageRow struct {
	Email               string
	Model               string
	Requests            int64
	InputTokens         int64
	OutputTokens        int64
	CostUSD             float64
	CostUnknownRequests int64
}

// RequestRow is one recent call.
type RequestRow struct {
	Time         time.Time
	Model        string
	Path         string
	Status       int
	InputTokens  int64
	OutputTokens int64
	CostUSD      *float64 // nil when unknown
	LatencyMS    float64
	TokenName    string // the token's name, or its id when it is gone
}

// Choice is one option of a set of links or a select: a period, a metric,
// a status filter.
type Choice struct {
	Value, Label string
	Current      bool
	URL          string
}

// PeriodChoices are the usage periods offered, as links built by url.
func PeriodChoices(current int, url func(days int) string) []Choice {
	var out []Choice
	for _, d := range []int{7, 30, 90} {
		out = append(out, Choice{Value: itoa(d), Label: itoa(d) + " days", Current: d == current, URL: url(d)})
	}
	return out
}

// Metrics a usage chart can show.
const (
	MetricRequests = "requests"
	MetricTokens   = "tokens"
	MetricCost     = "cost"
)

// MetricChoices are the chart's metrics, as links built by url.
func MetricChoices(current string, url func(metric string) string) []Choice {
	var out []Choice
	for _, m := range [][2]string{{MetricRequests, "Requests"}, {MetricTokens, "Tokens"}, {MetricCost, "Cost"}} {
		out = append(out, Choice{Value: m[0], Label: m[1], Current: m[0] == current, URL: url(m[0])})
	}
	return out
}

func (UsagePage) Template() string { return "usage.html" }
