package gateway

import (
	"errors"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/llmgate/llmgate/internal/audit"
	"github.com/llmgate/llmgate/sessions"
	"github.com/llmgate/llmgate/tokens"
)

// requireAdmin refuses everyone who is not an administrator, and audits
// the attempt.
func (s *Server) requireAdmin() gin.HandlerFunc {
	return func(c *gin.Context) {
		p := currentPrincipal(c)
		if p != nil && p.Admin {
			return
		}
		s.audit.Record(audit.Event{Type: audit.TypeAdminDenied, Actor: p.Email, IP: c.ClientIP(), Status: http.StatusForbidden,
			Reason: c.Request.Method + " " + c.FullPath()})
		s.fail(c, refuse(http.StatusForbidden, "admin_required", "this needs an administrator; %s is not one", p.Email))
	}
}

// sessionView is a session as admins see it. ID is the session's handle:
// enough to end it, useless as a cookie.
type sessionView struct {
	ID         string    `json:"id"`
	Email      string    `json:"email"`
	Name       string    `json:"name"`
	Admin      bool      `json:"admin"`
	CreatedAt  time.Time `json:"created_at"`
	ExpiresAt  time.Time `json:"expires_at"`
	LastSeenAt time.Time `json:"last_seen_at"`
	IP         string    `json:"ip,omitempty"`
	UserAgent  string    `json:"user_agent,omitempty"`
}

func viewSession(ss sessions.Session) sessionView {
	return sessionView{ID: ss.Handle, Email: ss.Email, Name: ss.Name, Admin: ss.Admin, CreatedAt: ss.CreatedAt,
		ExpiresAt: ss.ExpiresAt, LastSeenAt: ss.LastSeenAt, IP: ss.IP, UserAgent: ss.UserAgent}
}

// handleAdminSessions lists sessions, of one person (?email=) or of
// everyone, a page of people at a time: GET /api/admin/sessions.
func (s *Server) handleAdminSessions(c *gin.Context) {
	ctx := c.Request.Context()
	limit, ok := s.intQuery(c, "limit", 100, 1000)
	if !ok {
		return
	}
	emails := []string{strings.ToLower(strings.TrimSpace(c.Query("email")))}
	if emails[0] == "" {
		all, err := s.sessions.Emails(ctx)
		if err != nil {
			s.fail(c, unavailable("list session users", err))
			return
		}
		cursor := c.Query("cursor")
		i, _ := slices.BinarySearch(all, cursor)
		if cursor != "" && i < len(all) && all[i] == cursor {
			i++
		}
		emails = all[i:]
	}
	out := []sessionView{}
	next := ""
	for _, e := range emails {
		list, err := s.sessions.ListByEmail(ctx, e)
		if err != nil {
			s.fail(c, unavailable("list sessions", err))
			return
		}
		for _, ss := range list {
			out = append(out, viewSession(ss))
		}
		if len(out) >= limit && c.Query("email") == "" {
			next = e
			break
		}
	}
	c.Header("Cache-Control", "no-store")
	c.JSON(http.StatusOK, gin.H{"sessions": out, "next_cursor": next})
}

// handleAdminSessionStats counts sessions per person:
// GET /api/admin/sessions/stats, in the OpenResty gateway's shape.
func (s *Server) handleAdminSessionStats(c *gin.Context) {
	ctx := c.Request.Context()
	emails, err := s.sessions.Emails(ctx)
	if err != nil {
		s.fail(c, unavailable("list session users", err))
		return
	}
	per := map[string]int{}
	total := 0
	for _, e := range emails {
		list, err := s.sessions.ListByEmail(ctx, e)
		if err != nil {
			s.fail(c, unavailable("list sessions", err))
			return
		}
		if len(list) > 0 {
			per[e] = len(list)
			total += len(list)
		}
	}
	c.Header("Cache-Control", "no-store")
	c.JSON(http.StatusOK, gin.H{"total_sessions": total, "unique_users": len(per), "user_sessions": per})
}

// handleAdminDeleteSession force-logs-out one session:
// DELETE /api/admin/sessions/{id}.
func (s *Server) handleAdminDeleteSession(c *gin.Context) {
	ss, err := s.sessions.DeleteHandle(c.Request.Context(), c.Param("id"))
	switch {
	case errors.Is(err, sessions.ErrNotFound):
		s.fail(c, refuse(http.StatusNotFound, "session_not_found", "no such session (it may have ended already)"))
		return
	case err != nil:
		s.fail(c, unavailable("delete session", err))
		return
	}
	actor := currentPrincipal(c).Email
	s.audit.Record(audit.Event{Type: audit.TypeSessionRevoke, Actor: actor, Email: ss.Email, IP: c.ClientIP()})
	c.JSON(http.StatusOK, gin.H{"deleted": true, "id": ss.Handle, "user_email": ss.Email, "deleted_by": actor})
}

// revokeUserRequest is POST /api/admin/sessions/revoke-user.
type revokeUserRequest struct {
	UserEmail    string `json:"user_email"`
	RevokeTokens bool   `json:"revoke_tokens"`
}

// handleAdminRevokeUser ends every session of a person and, when asked,
// every token issued to them until now: POST /api/admin/sessions/revoke-user.
func (s *Server) handleAdminRevokeUser(c *gin.Context) {
	var req revokeUserRequest
	if !s.bindJSON(c, &req) {
		return
	}
	email := strings.ToLower(strings.TrimSpace(req.UserEmail))
	if !strings.Contains(email, "@") {
		s.fail(c, refuse(http.StatusBadRequest, "invalid_user_email", "user_email must be an email address"))
		return
	}
	actor := currentPrincipal(c).Email
	n, revoked, e := s.revokeUser(c, email, req.RevokeTokens, actor)
	if e != nil {
		s.fail(c, e)
		return
	}
	s.audit.Record(audit.Event{Type: audit.TypeUserRevoke, Actor: actor, Email: email, IP: c.ClientIP(),
		Details: map[string]string{"deleted_sessions": strconv.Itoa(n), "revoked_tokens": strconv.Itoa(revoked)}})
	c.JSON(http.StatusOK, gin.H{"user_email": email, "deleted_count": n, "revoked_tokens": revoked, "deleted_by": actor})
}

// revokeUser ends a person's sessions and, with tokensToo, their tokens.
func (s *Server) revokeUser(c *gin.Context, email string, tokensToo bool, actor string) (int, int, *apiError) {
	ctx := c.Request.Context()
	revoked := 0
	if tokensToo {
		var err error
		if revoked, err = s.tokens.RevokeUser(ctx, email, actor); err != nil {
			return 0, 0, tokenError("revoke user tokens", err)
		}
	}
	n, err := s.sessions.DeleteByEmail(ctx, email)
	if err != nil {
		return 0, 0, unavailable("delete user sessions", err)
	}
	return n, revoked, nil
}

// handleAdminBlock blocks a person: sessions end, tokens are refused on
// every replica at once, sign-in is refused until unblocked:
// POST /api/admin/users/{email}/block.
func (s *Server) handleAdminBlock(c *gin.Context) {
	email := strings.ToLower(strings.TrimSpace(c.Param("email")))
	actor := currentPrincipal(c).Email
	if !strings.Contains(email, "@") {
		s.fail(c, refuse(http.StatusBadRequest, "invalid_user_email", "%q is not an email address", email))
		return
	}
	if email == actor {
		s.fail(c, refuse(http.StatusBadRequest, "cannot_block_self", "you cannot block yourself"))
		return
	}
	if err := s.tokens.Block(c.Request.Context(), email, actor); err != nil {
		s.fail(c, tokenError("block user", err))
		return
	}
	n, err := s.sessions.DeleteByEmail(c.Request.Context(), email)
	if err != nil {
		s.fail(c, unavailable("delete user sessions", err))
		return
	}
	s.audit.Record(audit.Event{Type: audit.TypeUserBlock, Actor: actor, Email: email, IP: c.ClientIP(),
		Details: map[string]string{"deleted_sessions": strconv.Itoa(n)}})
	c.JSON(http.StatusOK, gin.H{"user_email": email, "blocked": true, "deleted_count": n, "blocked_by": actor})
}

// handleAdminUnblock lifts a block: POST /api/admin/users/{email}/unblock.
func (s *Server) handleAdminUnblock(c *gin.Context) {
	email := strings.ToLower(strings.TrimSpace(c.Param("email")))
	actor := currentPrincipal(c).Email
	if err := s.tokens.Unblock(c.Request.Context(), email, actor); err != nil {
		s.fail(c, tokenError("unblock user", err))
		return
	}
	s.audit.Record(audit.Event{Type: audit.TypeUserUnblock, Actor: actor, Email: email, IP: c.ClientIP()})
	c.JSON(http.StatusOK, gin.H{"user_email": email, "blocked": false, "unblocked_by": actor})
}

// handleAdminTokens lists every token, filtered by ?email= and
// ?status=active|revoked|expired: GET /api/admin/tokens.
func (s *Server) handleAdminTokens(c *gin.Context) {
	ctx := c.Request.Context()
	limit, ok := s.intQuery(c, "limit", 100, 1000)
	if !ok {
		return
	}
	status := c.Query("status")
	if status != "" && status != tokens.StatusActive && status != tokens.StatusRevoked && status != tokens.StatusExpired {
		s.fail(c, refuse(http.StatusBadRequest, "invalid_status", "status must be active, revoked or expired"))
		return
	}
	var recs []tokens.Record
	var err error
	if email := strings.ToLower(strings.TrimSpace(c.Query("email"))); email != "" {
		recs, err = s.tokens.List(ctx, email)
	} else {
		recs, err = s.tokens.ListAll(ctx, 1000)
	}
	if err != nil {
		s.fail(c, tokenError("list tokens", err))
		return
	}
	// The cursor is the id of the last token of the previous page.
	start := 0
	if cur := c.Query("cursor"); cur != "" {
		for i, r := range recs {
			if r.ID == cur {
				start = i + 1
			}
		}
	}
	out := []tokenView{}
	next := ""
	now := s.cfg.Now()
	for _, r := range recs[start:] {
		if status != "" && r.Status(now) != status {
			continue
		}
		if len(out) == limit {
			next = out[len(out)-1].ID
			break
		}
		out = append(out, s.view(r))
	}
	c.Header("Cache-Control", "no-store")
	c.JSON(http.StatusOK, gin.H{"tokens": out, "next_cursor": next})
}

// handleAdminRevokeToken revokes anyone's token: DELETE /api/admin/tokens/{id}.
func (s *Server) handleAdminRevokeToken(c *gin.Context) {
	actor := currentPrincipal(c).Email
	rec, err := s.tokens.Revoke(c.Request.Context(), c.Param("id"), actor)
	if err != nil {
		s.fail(c, tokenError("revoke token", err))
		return
	}
	s.audit.Record(audit.Event{Type: audit.TypeTokenRevoke, Actor: actor, Email: rec.Email, TokenID: rec.ID, IP: c.ClientIP()})
	c.JSON(http.StatusOK, s.view(rec))
}

// handleAdminUsage is usage per person and model: GET /api/admin/usage?days=N.
func (s *Server) handleAdminUsage(c *gin.Context) {
	days, ok := s.intQuery(c, "days", 30, 400)
	if !ok {
		return
	}
	all, err := s.usage.AllUsage(c.Request.Context(), days)
	if err != nil {
		s.fail(c, unavailable("read usage", err))
		return
	}
	spend, err := s.spendRows(c)
	if err != nil {
		s.fail(c, unavailable("read people", err))
		return
	}
	c.Header("Cache-Control", "no-store")
	c.JSON(http.StatusOK, gin.H{"days": days, "users": all, "spend": spend})
}

// handleAdminAudit pages through the audit log, newest first:
// GET /api/admin/audit?email=&type=&cursor=&limit=.
func (s *Server) handleAdminAudit(c *gin.Context) {
	limit, ok := s.intQuery(c, "limit", audit.DefaultLimit, audit.MaxLimit)
	if !ok {
		return
	}
	page, err := s.audit.List(c.Request.Context(), audit.Filter{
		Email: c.Query("email"), Type: c.Query("type"), Cursor: c.Query("cursor"), Limit: limit,
	})
	switch {
	case errors.Is(err, audit.ErrInvalidCursor):
		s.fail(c, refuse(http.StatusBadRequest, "invalid_cursor", "cursor is not one this API returned"))
		return
	case err != nil:
		s.fail(c, unavailable("read audit log", err))
		return
	}
	c.Header("Cache-Control", "no-store")
	c.JSON(http.StatusOK, page)
}
