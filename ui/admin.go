package ui

import "time"

// SessionRow is one browser session as admins see it.
type SessionRow struct {
	ID         string // the session's handle: enough to end it, useless as a cookie
	Email      string
	Name       string
	Admin      bool
	CreatedAt  time.Time
	LastSeenAt time.Time
	ExpiresAt  time.Time
	IP         string
	UserAgent  string
	Current    bool // the admin's own session
}

// SessionCount is how many sessions one person has.
type SessionCount struct {
	Email string
	Count int
}

// AdminSessionsPage lists sessions: GET /ui/admin/sessions?email=.
type AdminSessionsPage struct {
	Layout
	Email         string // the search, "" for everyone
	TotalSessions int
	UniqueUsers   int
	Top           []SessionCount // people with the most sessions
	Sessions      []SessionRow
	NextURL       string // the next page, "" on the last
	// Back is this page's URL, where actions come back to.
	Back string
}

// PersonRow is one person on the users page.
type PersonRow struct {
	Email        string
	Name         string
	Admin        bool
	Blocked      bool
	FirstLogin   time.Time
	LastLogin    time.Time
	LastAPIUse   *time.Time
	ActiveTokens int
	Sessions     int
	Usage        UsageRow // over UsersPage.UsageDays
}

// AdminUsersPage lists everyone who has signed in: GET /ui/admin/users.
type AdminUsersPage struct {
	Layout
	Total     int
	UsageDays int
	People    []PersonRow
	NextURL   string
	Back      string
}

// AdminTokenRow is one token on the admin tokens page.
type AdminTokenRow struct {
	TokenRow
	Email    string
	ClientID string
}

// AdminTokensPage lists everyone's tokens: GET /ui/admin/tokens?status=&email=.
type AdminTokensPage struct {
	Layout
	Email    string
	Status   string
	Statuses []Choice
	Tokens   []AdminTokenRow
	NextURL  string
	Back     string
}

// AdminUsagePage is usage per person and model: GET /ui/admin/usage.
type AdminUsagePage struct {
	Layout
	Days    int
	Email   string // filter, "" for everyone
	Periods []Choice
	Metrics []Choice
	Chart   BarChart
	People  []UsageRow // per person, all models
	Rows    []UsageRow // per person and model
	Total   UsageRow
	CSVURL  string
}

// AuditRow is one audit event.
type AuditRow struct {
	ID      string
	Time    time.Time
	Type    string
	Refusal bool
	Actor   string
	Email   string
	TokenID string
	IP      string
	Status  int
	Reason  string
	Details []Detail
}

// Detail is one key and value of an audit event's details.
type Detail struct{ Key, Value string }

// AdminAuditPage pages through the audit log: GET /ui/admin/audit.
type AdminAuditPage struct {
	Layout
	Email   string
	Type    string
	Types   []Choice
	Events  []AuditRow
	NextURL string // older events, "" at the end of the log
	// FirstURL is the newest page of this filter, set when paging.
	FirstURL string
}

func (AdminSessionsPage) Template() string { return "admin_sessions.html" }
func (AdminUsersPage) Template() string    { return "admin_users.html" }
func (AdminTokensPage) Template() string   { return "admin_tokens.html" }
func (AdminUsagePage) Template() string    { return "admin_usage.html" }
func (AdminAuditPage) Template() string    { return "admin_audit.html" }
