package ui

import (
	"bytes"
	"strings"
	"testing"
	"time"
)

// TestRenderPages renders every console page with data in each optional
// part, so a template that refers to a missing field or misuses a
// function fails here rather than in front of a person, and checks that
// no page carries an inline script or style (the CSP forbids both).
func TestRenderPages(t *testing.T) {
	r, err := NewRenderer()
	if err != nil {
		t.Fatal(err)
	}
	now := time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)
	cost := 0.25
	admin := Layout{Title: "T", User: &User{Email: "alice@example.com", Admin: true}, CSRFToken: "csrf", Flash: "done", FlashError: true}
	row := UsageRow{Email: "bob@example.com", Model: "=evil()", Requests: 1234, InputTokens: 5, OutputTokens: 6, CostUSD: 0.5, CostUnknownRequests: 1}
	chart := NewBarChart("Requests per day", "requests", []Point{{Label: "11-24", Value: 1, Title: "one"}, {Label: "11-25", Value: 3}}, nil)
	periods := PeriodChoices(30, func(d int) string { return "/ui/usage?days=" + itoa(d) })
	tok := TokenRow{ID: "id1", Name: "laptop", Models: []string{"m"}, CreatedAt: now, ExpiresAt: now, LastUsed: &now, Status: "active"}
	pages := []Page{
		UsagePage{Layout: admin, Days: 30, Periods: periods, Chart: chart, Models: []UsageRow{row}, Total: row,
			Recent: []RequestRow{{Time: now, Model: "m", Status: 429, CostUSD: &cost, LatencyMS: 12.5, TokenName: "laptop"}, {Time: now}}},
		AdminSessionsPage{Layout: admin, Email: "bob@example.com", TotalSessions: 2, UniqueUsers: 1, Top: []SessionCount{{"bob@example.com", 2}},
			Sessions: []SessionRow{{ID: "h", Email: "bob@example.com", Current: true, Admin: true}}, NextURL: "/next", Back: "/ui/admin/sessions"},
		AdminUsersPage{Layout: admin, Total: 1, UsageDays: 30, People: []PersonRow{{Email: "bob@example.com", Blocked: true, LastAPIUse: &now, Usage: row}, {Email: "carol@example.com"}}, NextURL: "/n"},
		AdminTokensPage{Layout: admin, Status: "active", Statuses: []Choice{{Value: "active", Label: "active", Current: true}},
			Tokens: []AdminTokenRow{{TokenRow: tok, Email: "bob@example.com", ClientID: "llmgate-ui"}}, NextURL: "/n"},
		AdminUsagePage{Layout: admin, Days: 7, Periods: periods, Chart: chart, People: []UsageRow{row}, Rows: []UsageRow{row}, Total: row, CSVURL: "/ui/admin/usage.csv"},
		AdminUsagePage{Layout: admin, Days: 7, Email: "carol@example.com", Chart: NewBarChart("x", "y", nil, nil)},
		AdminAuditPage{Layout: admin, Types: []Choice{{Value: "", Label: "any"}}, Events: []AuditRow{{Type: "api.refused", Refusal: true, Status: 401,
			Reason: "revoked", Details: []Detail{{"path", "/v1/x"}}}, {Type: "login"}}, NextURL: "/older", FirstURL: "/ui/admin/audit"},
		AdminAuditPage{Layout: admin, NextURL: "/older"},
		ErrorPage{Layout: admin, Status: 403, Heading: "Administrators only", Message: "m", Advice: "a", ActionURL: "/", ActionText: "Go"},
		HomePage{Layout: admin, Tokens: []TokenRow{tok}, NewToken: &NewToken{Name: "n", Token: "eyJ", Model: "m"}, FormError: "bad", MaxTTLDays: 90,
			Spend: SpendBar{Month: "2026-11", SpentUSD: 12, CapUSD: 10, HasCap: true, Source: "person", Percent: 100, ResetsAt: now}},
		HomePage{Layout: admin, Spend: SpendBar{Month: "2026-11", SpentUSD: 0.5}},
		AdminSpendPage{Layout: admin, Month: "2026-11", People: []SpendRow{{Email: "bob@example.com", SpentUSD: 1, CapUSD: 2.5, HasCap: true,
			Source: "group ml", Percent: 40, PersonCap: "2.5"}, {Email: "carol@example.com"}}},
		AdminSpendPage{Layout: admin, Month: "2026-11"},
	}
	for _, p := range pages {
		var buf bytes.Buffer
		if err := r.Render(&buf, p); err != nil {
			t.Errorf("render %s: %v", p.Template(), err)
			continue
		}
		out := buf.String()
		for _, bad := range []string{"<script>", " style=", "onclick=", "javascript:"} {
			if strings.Contains(out, bad) {
				t.Errorf("%s contains %q", p.Template(), bad)
			}
		}
		if !strings.Contains(out, `class="flash flash-error" role="alert"`) {
			t.Errorf("%s does not show the flash message as an alert", p.Template())
		}
	}
}
