package gateway

import (
	"cmp"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"

	"github.com/gin-gonic/gin"

	"github.com/llmgate/llmgate/internal/users"
	"github.com/llmgate/llmgate/tokens"
	"github.com/llmgate/llmgate/ui"
)

// The admin console's pages. Each reads with the same functions as the
// JSON admin API (listSessions, listPeople, listAllTokens, …) and each
// action is a POST form with the CSRF token that answers 303 back to the
// page it came from, with a flash message saying what was done.

// pageSize is how many rows an admin page shows.
const pageSize = 50

// withQuery is path with the non-empty values of kv (key, value, …).
func withQuery(path string, kv ...string) string {
	q := url.Values{}
	for i := 0; i+1 < len(kv); i += 2 {
		if kv[i+1] != "" {
			q.Set(kv[i], kv[i+1])
		}
	}
	if len(q) == 0 {
		return path
	}
	return path + "?" + q.Encode()
}

// thisPage is the URL of the page being rendered, for forms to come back to.
func thisPage(c *gin.Context) string {
	if c.Request.URL.RawQuery == "" {
		return c.Request.URL.Path
	}
	return c.Request.URL.Path + "?" + c.Request.URL.RawQuery
}

// actionDone ends an admin form: back to its page with msg, or, for a
// refusal (4xx), with what was refused; failures get the error page.
func (s *Server) actionDone(c *gin.Context, fallback, msg string, e *apiError) {
	back := backTo(c, "/ui/admin/", fallback)
	if e != nil && e.Status >= 500 {
		s.fail(c, e)
		return
	}
	if e != nil {
		s.doneTo(c, back, "!Not done: "+e.Message)
		return
	}
	s.doneTo(c, back, msg)
}

// handleUIAdminSessions lists sessions: GET /ui/admin/sessions?email=&cursor=.
func (s *Server) handleUIAdminSessions(c *gin.Context) {
	ctx := c.Request.Context()
	email := strings.ToLower(strings.TrimSpace(c.Query("email")))
	list, next, e := s.listSessions(ctx, email, c.Query("cursor"), pageSize)
	if e != nil {
		s.fail(c, e)
		return
	}
	total, per, e := s.sessionStats(ctx)
	if e != nil {
		s.fail(c, e)
		return
	}
	p := ui.AdminSessionsPage{Layout: s.layout(c, "Sessions", "admin-sessions"), Email: email,
		TotalSessions: total, UniqueUsers: len(per), Back: thisPage(c)}
	for e, n := range per {
		p.Top = append(p.Top, ui.SessionCount{Email: e, Count: n})
	}
	slices.SortFunc(p.Top, func(a, b ui.SessionCount) int {
		return cmp.Or(cmp.Compare(b.Count, a.Count), cmp.Compare(a.Email, b.Email))
	})
	p.Top = p.Top[:min(len(p.Top), 10)]
	mine := currentSession(c).Handle
	for _, ss := range list {
		p.Sessions = append(p.Sessions, ui.SessionRow{ID: ss.Handle, Email: ss.Email, Name: ss.Name, Admin: ss.Admin,
			CreatedAt: ss.CreatedAt, LastSeenAt: ss.LastSeenAt, ExpiresAt: ss.ExpiresAt, IP: ss.IP, UserAgent: ss.UserAgent,
			Current: ss.Handle == mine})
	}
	if next != "" {
		p.NextURL = withQuery("/ui/admin/sessions", "cursor", next)
	}
	s.render(c, http.StatusOK, p)
}

// handleUIAdminEndSession force-logs-out one session:
// POST /ui/admin/sessions/{id}/end.
func (s *Server) handleUIAdminEndSession(c *gin.Context) {
	ss, e := s.endSession(c.Request.Context(), c.Param("id"), currentPrincipal(c).Email, c.ClientIP())
	s.actionDone(c, "/ui/admin/sessions", "Ended a session of "+ss.Email+": their next click asks them to sign in.", e)
}

// handleUIAdminLogoutUser ends every session of a person and, with
// revoke_tokens, revokes every token issued to them:
// POST /ui/admin/users/logout (email).
func (s *Server) handleUIAdminLogoutUser(c *gin.Context) {
	email := strings.ToLower(strings.TrimSpace(c.PostForm("email")))
	tokensToo := c.PostForm("revoke_tokens") != ""
	n, revoked, e := s.revokeUser(c.Request.Context(), email, tokensToo, currentPrincipal(c).Email, c.ClientIP())
	msg := fmt.Sprintf("Logged %s out everywhere: %s ended.", email, plural(n, "session", "sessions"))
	if tokensToo {
		msg = fmt.Sprintf("Logged %s out everywhere and revoked their tokens: %s ended, %s revoked.", email,
			plural(n, "session", "sessions"), plural(revoked, "token", "tokens"))
	}
	s.actionDone(c, "/ui/admin/users", msg, e)
}

// handleUIAdminBlock blocks a person: POST /ui/admin/users/block (email).
func (s *Server) handleUIAdminBlock(c *gin.Context) {
	email := strings.ToLower(strings.TrimSpace(c.PostForm("email")))
	n, e := s.blockUser(c.Request.Context(), email, currentPrincipal(c).Email, c.ClientIP())
	s.actionDone(c, "/ui/admin/users", fmt.Sprintf("Blocked %s: %s ended, their tokens are refused and sign-in is refused until unblocked.",
		email, plural(n, "session", "sessions")), e)
}

// handleUIAdminUnblock lifts a block: POST /ui/admin/users/unblock (email).
func (s *Server) handleUIAdminUnblock(c *gin.Context) {
	email := strings.ToLower(strings.TrimSpace(c.PostForm("email")))
	e := s.unblockUser(c.Request.Context(), email, currentPrincipal(c).Email, c.ClientIP())
	s.actionDone(c, "/ui/admin/users", "Unblocked "+email+": they can sign in, and their unrevoked tokens work again.", e)
}

func plural(n int, one, many string) string {
	if n == 1 {
		return "1 " + one
	}
	return fmt.Sprintf("%d %s", n, many)
}

// usersUsageDays is the period of the usage column of the users page.
const usersUsageDays = 30

// handleUIAdminUsers lists everyone who has signed in: GET /ui/admin/users?cursor=.
func (s *Server) handleUIAdminUsers(c *gin.Context) {
	ctx := c.Request.Context()
	people, next, total, e := s.listPeople(ctx, c.Query("cursor"), min(pageSize, users.MaxListLimit))
	if e != nil {
		s.fail(c, e)
		return
	}
	_, per, e := s.sessionStats(ctx)
	if e != nil {
		s.fail(c, e)
		return
	}
	all, err := s.usage.AllUsage(ctx, usersUsageDays)
	if err != nil {
		s.fail(c, unavailable("read usage", err))
		return
	}
	t := newUsageTotals()
	for email, rows := range all {
		t.add(email, rows)
	}
	p := ui.AdminUsersPage{Layout: s.layout(c, "Users", "admin-users"), Total: total, UsageDays: usersUsageDays, Back: thisPage(c)}
	for _, v := range people {
		row := ui.PersonRow{Email: v.Email, Name: v.Name, Admin: v.Admin, Blocked: v.Blocked, FirstLogin: v.FirstLogin,
			LastLogin: v.LastLogin, LastAPIUse: v.LastAPIUse, ActiveTokens: v.Tokens, Sessions: per[v.Email]}
		if u := t.perPerson[v.Email]; u != nil {
			row.Usage = *u
		}
		p.People = append(p.People, row)
	}
	if next != "" {
		p.NextURL = withQuery("/ui/admin/users", "cursor", next)
	}
	s.render(c, http.StatusOK, p)
}

// handleUIAdminTokens lists everyone's tokens:
// GET /ui/admin/tokens?status=&email=&cursor=.
func (s *Server) handleUIAdminTokens(c *gin.Context) {
	email := strings.ToLower(strings.TrimSpace(c.Query("email")))
	status := c.Query("status")
	recs, next, e := s.listAllTokens(c.Request.Context(), email, status, c.Query("cursor"), pageSize)
	if e != nil {
		s.fail(c, e)
		return
	}
	p := ui.AdminTokensPage{Layout: s.layout(c, "All tokens", "admin-tokens"), Email: email, Status: status, Back: thisPage(c)}
	for _, st := range []string{"", tokens.StatusActive, tokens.StatusRevoked, tokens.StatusExpired} {
		label := st
		if st == "" {
			label = "any"
		}
		p.Statuses = append(p.Statuses, ui.Choice{Value: st, Label: label, Current: st == status})
	}
	now := s.cfg.Now()
	for _, r := range recs {
		row := ui.AdminTokenRow{TokenRow: ui.TokenRow{ID: r.ID, Name: r.Name, Models: r.Models, CreatedAt: r.CreatedAt,
			ExpiresAt: r.ExpiresAt, Status: r.Status(now)}, Email: r.Email, ClientID: r.ClientID}
		if !r.LastUsedAt.IsZero() {
			t := r.LastUsedAt
			row.LastUsed = &t
		}
		p.Tokens = append(p.Tokens, row)
	}
	if next != "" {
		p.NextURL = withQuery("/ui/admin/tokens", "email", email, "status", status, "cursor", next)
	}
	s.render(c, http.StatusOK, p)
}

// handleUIAdminRevokeToken revokes anyone's token: POST /ui/admin/tokens/{id}/revoke.
func (s *Server) handleUIAdminRevokeToken(c *gin.Context) {
	rec, e := s.adminRevokeToken(c.Request.Context(), c.Param("id"), currentPrincipal(c).Email, c.ClientIP())
	s.actionDone(c, "/ui/admin/tokens", "Revoked “"+rec.Name+"” of "+rec.Email+": calls with it are refused from now on.", e)
}
