package gateway

import (
	"context"
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
	limit, ok := s.intQuery(c, "limit", 100, 1000)
	if !ok {
		return
	}
	list, next, e := s.listSessions(c.Request.Context(), c.Query("email"), c.Query("cursor"), limit)
	if e != nil {
		s.fail(c, e)
		return
	}
	out := make([]sessionView, len(list))
	for i, ss := range list {
		out[i] = viewSession(ss)
	}
	c.Header("Cache-Control", "no-store")
	c.JSON(http.StatusOK, gin.H{"sessions": out, "next_cursor": next})
}

// listSessions returns the sessions of email, or, when email is empty,
// of everyone: whole people in email order after cursor, until at least
// limit sessions, and the cursor of the next page ("" after the last).
func (s *Server) listSessions(ctx context.Context, email, cursor string, limit int) ([]sessions.Session, string, *apiError) {
	email = strings.ToLower(strings.TrimSpace(email))
	emails := []string{email}
	if email == "" {
		all, err := s.sessions.Emails(ctx)
		if err != nil {
			return nil, "", unavailable("list session users", err)
		}
		i, _ := slices.BinarySearch(all, cursor)
		if cursor != "" && i < len(all) && all[i] == cursor {
			i++
		}
		emails = all[i:]
	}
	out := []sessions.Session{}
	next := ""
	for i, e := range emails {
		list, err := s.sessions.ListByEmail(ctx, e)
		if err != nil {
			return nil, "", unavailable("list sessions", err)
		}
		out = append(out, list...)
		if len(out) >= limit && email == "" && i < len(emails)-1 {
			next = e
			break
		}
	}
	return out, next, nil
}

// handleAdminSessionStats counts sessions per person:
// GET /api/admin/sessions/stats, in the OpenResty gateway's shape.
func (s *Server) handleAdminSessionStats(c *gin.Context) {
	total, per, e := s.sessionStats(c.Request.Context())
	if e != nil {
		s.fail(c, e)
		return
	}
	c.Header("Cache-Control", "no-store")
	c.JSON(http.StatusOK, gin.H{"total_sessions": total, "unique_users": len(per), "user_sessions": per})
}

// sessionStats counts live sessions, in total and per person.
func (s *Server) sessionStats(ctx context.Context) (int, map[string]int, *apiError) {
	emails, err := s.sessions.Emails(ctx)
	if err != nil {
		return 0, nil, unavailable("list session users", err)
	}
	per := map[string]int{}
	total := 0
	for _, e := range emails {
		list, err := s.sessions.ListByEmail(ctx, e)
		if err != nil {
			return 0, nil, unavailable("list sessions", err)
		}
		if len(list) > 0 {
			per[e] = len(list)
			total += len(list)
		}
	}
	return total, per, nil
}

// handleAdminDeleteSession force-logs-out one session:
// DELETE /api/admin/sessions/{id}.
func (s *Server) handleAdminDeleteSession(c *gin.Context) {
	actor := currentPrincipal(c).Email
	ss, e := s.endSession(c.Request.Context(), c.Param("id"), actor, c.ClientIP())
	if e != nil {
		s.fail(c, e)
		return
	}
	c.JSON(http.StatusOK, gin.H{"deleted": true, "id": ss.Handle, "user_email": ss.Email, "deleted_by": actor})
}

// endSession force-logs-out the session with handle, for actor, audited.
func (s *Server) endSession(ctx context.Context, handle, actor, ip string) (sessions.Session, *apiError) {
	ss, err := s.sessions.DeleteHandle(ctx, handle)
	switch {
	case errors.Is(err, sessions.ErrNotFound):
		return ss, refuse(http.StatusNotFound, "session_not_found", "no such session (it may have ended already)")
	case err != nil:
		return ss, unavailable("delete session", err)
	}
	s.audit.Record(audit.Event{Type: audit.TypeSessionRevoke, Actor: actor, Email: ss.Email, IP: ip})
	return ss, nil
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
	actor := currentPrincipal(c).Email
	n, revoked, e := s.revokeUser(c.Request.Context(), email, req.RevokeTokens, actor, c.ClientIP())
	if e != nil {
		s.fail(c, e)
		return
	}
	c.JSON(http.StatusOK, gin.H{"user_email": email, "deleted_count": n, "revoked_tokens": revoked, "deleted_by": actor})
}

// revokeUser ends a person's sessions and, with tokensToo, their tokens,
// for actor, audited. It returns the sessions ended and tokens revoked.
func (s *Server) revokeUser(ctx context.Context, email string, tokensToo bool, actor, ip string) (int, int, *apiError) {
	if !strings.Contains(email, "@") {
		return 0, 0, refuse(http.StatusBadRequest, "invalid_user_email", "user_email must be an email address")
	}
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
	s.audit.Record(audit.Event{Type: audit.TypeUserRevoke, Actor: actor, Email: email, IP: ip,
		Details: map[string]string{"deleted_sessions": strconv.Itoa(n), "revoked_tokens": strconv.Itoa(revoked)}})
	return n, revoked, nil
}

// handleAdminBlock blocks a person: sessions end, tokens are refused on
// every replica at once, sign-in is refused until unblocked:
// POST /api/admin/users/{email}/block.
func (s *Server) handleAdminBlock(c *gin.Context) {
	email := strings.ToLower(strings.TrimSpace(c.Param("email")))
	actor := currentPrincipal(c).Email
	n, e := s.blockUser(c.Request.Context(), email, actor, c.ClientIP())
	if e != nil {
		s.fail(c, e)
		return
	}
	c.JSON(http.StatusOK, gin.H{"user_email": email, "blocked": true, "deleted_count": n, "blocked_by": actor})
}

// blockUser blocks email for actor, audited, and returns how many sessions
// it ended.
func (s *Server) blockUser(ctx context.Context, email, actor, ip string) (int, *apiError) {
	if !strings.Contains(email, "@") {
		return 0, refuse(http.StatusBadRequest, "invalid_user_email", "%q is not an email address", email)
	}
	if email == actor {
		return 0, refuse(http.StatusBadRequest, "cannot_block_self", "you cannot block yourself")
	}
	if err := s.tokens.Block(ctx, email, actor); err != nil {
		return 0, tokenError("block user", err)
	}
	n, err := s.sessions.DeleteByEmail(ctx, email)
	if err != nil {
		return 0, unavailable("delete user sessions", err)
	}
	s.audit.Record(audit.Event{Type: audit.TypeUserBlock, Actor: actor, Email: email, IP: ip,
		Details: map[string]string{"deleted_sessions": strconv.Itoa(n)}})
	return n, nil
}

// handleAdminUnblock lifts a block: POST /api/admin/users/{email}/unblock.
func (s *Server) handleAdminUnblock(c *gin.Context) {
	email := strings.ToLower(strings.TrimSpace(c.Param("email")))
	actor := currentPrincipal(c).Email
	if e := s.unblockUser(c.Request.Context(), email, actor, c.ClientIP()); e != nil {
		s.fail(c, e)
		return
	}
	c.JSON(http.StatusOK, gin.H{"user_email": email, "blocked": false, "unblocked_by": actor})
}

// unblockUser lifts the block of email for actor, audited.
func (s *Server) unblockUser(ctx context.Context, email, actor, ip string) *apiError {
	if err := s.tokens.Unblock(ctx, email, actor); err != nil {
		return tokenError("unblock user", err)
	}
	s.audit.Record(audit.Event{Type: audit.TypeUserUnblock, Actor: actor, Email: email, IP: ip})
	return nil
}

// handleAdminTokens lists every token, filtered by ?email= and
// ?status=active|revoked|expired: GET /api/admin/tokens.
func (s *Server) handleAdminTokens(c *gin.Context) {
	limit, ok := s.intQuery(c, "limit", 100, 1000)
	if !ok {
		return
	}
	recs, next, e := s.listAllTokens(c.Request.Context(), c.Query("email"), c.Query("status"), c.Query("cursor"), limit)
	if e != nil {
		s.fail(c, e)
		return
	}
	out := make([]TokenView, len(recs))
	for i, r := range recs {
		out[i] = s.view(r)
	}
	c.Header("Cache-Control", "no-store")
	c.JSON(http.StatusOK, gin.H{"tokens": out, "next_cursor": next})
}

// listAllTokens returns up to limit tokens of email (everyone when empty)
// with status (any when empty), after the token whose id is cursor, and
// the cursor of the next page ("" after the last).
func (s *Server) listAllTokens(ctx context.Context, email, status, cursor string, limit int) ([]tokens.Record, string, *apiError) {
	if status != "" && status != tokens.StatusActive && status != tokens.StatusRevoked && status != tokens.StatusExpired {
		return nil, "", refuse(http.StatusBadRequest, "invalid_status", "status must be active, revoked or expired")
	}
	var recs []tokens.Record
	var err error
	if email = strings.ToLower(strings.TrimSpace(email)); email != "" {
		recs, err = s.tokens.List(ctx, email)
	} else {
		recs, err = s.tokens.ListAll(ctx, 1000)
	}
	if err != nil {
		return nil, "", tokenError("list tokens", err)
	}
	start := 0
	if cursor != "" {
		for i, r := range recs {
			if r.ID == cursor {
				start = i + 1
			}
		}
	}
	out := []tokens.Record{}
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
		out = append(out, r)
	}
	return out, next, nil
}

// handleAdminRevokeToken revokes anyone's token: DELETE /api/admin/tokens/{id}.
func (s *Server) handleAdminRevokeToken(c *gin.Context) {
	rec, e := s.adminRevokeToken(c.Request.Context(), c.Param("id"), currentPrincipal(c).Email, c.ClientIP())
	if e != nil {
		s.fail(c, e)
		return
	}
	c.JSON(http.StatusOK, s.view(rec))
}

// adminRevokeToken revokes the token id, whoever's it is, for actor, audited.
func (s *Server) adminRevokeToken(ctx context.Context, id, actor, ip string) (tokens.Record, *apiError) {
	rec, err := s.tokens.Revoke(ctx, id, actor)
	if err != nil {
		return rec, tokenError("revoke token", err)
	}
	s.audit.Record(audit.Event{Type: audit.TypeTokenRevoke, Actor: actor, Email: rec.Email, TokenID: rec.ID, IP: ip})
	return rec, nil
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
	page, e := s.auditPage(c.Request.Context(), audit.Filter{
		Email: c.Query("email"), Type: c.Query("type"), Cursor: c.Query("cursor"), Limit: limit,
	})
	if e != nil {
		s.fail(c, e)
		return
	}
	c.Header("Cache-Control", "no-store")
	c.JSON(http.StatusOK, page)
}

// auditPage reads one page of the audit log.
func (s *Server) auditPage(ctx context.Context, f audit.Filter) (audit.Page, *apiError) {
	page, err := s.audit.List(ctx, f)
	switch {
	case errors.Is(err, audit.ErrInvalidCursor):
		return page, refuse(http.StatusBadRequest, "invalid_cursor", "cursor is not one this API returned")
	case err != nil:
		return page, unavailable("read audit log", err)
	}
	return page, nil
}
