package gateway

import (
	"context"
	"errors"
	"net/http"
	"strconv"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/llmgate/llmgate/internal/audit"
	"github.com/llmgate/llmgate/internal/users"
	"github.com/llmgate/llmgate/oidc"
	"github.com/llmgate/llmgate/tokens"
)

// recheckEvery is how often the gateway looks for people due for a
// re-check at the identity provider (each person is checked once per
// LLMGATE_USER_RECHECK_INTERVAL).
const recheckEvery = 30 * time.Second

// runRecheck re-checks, until ctx ends, the people whose refresh token is
// due: the identity provider refusing it (invalid_grant) means the person
// was removed there, so their sessions and tokens are revoked (SPEC §6).
func (s *Server) runRecheck(ctx context.Context) {
	t := time.NewTicker(recheckEvery)
	defer t.Stop()
	for {
		s.recheckOnce(ctx)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// recheckOnce re-checks the people due now, a batch at a time.
func (s *Server) recheckOnce(ctx context.Context) {
	for {
		due, err := s.users.Due(ctx, 50)
		if err != nil {
			s.log.Warn("re-check: list people due", "err", err)
			return
		}
		if len(due) == 0 {
			return
		}
		for _, d := range due {
			s.recheck(ctx, d)
		}
	}
}

func (s *Server) recheck(ctx context.Context, d users.Due) {
	email := d.Person.Email
	rctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	next, err := s.rp.Refresh(rctx, d.RefreshToken)
	// A sign-in while the check ran replaced the grant being checked: its
	// outcome says nothing about the person now, and its rotated token
	// must not overwrite the fresh one.
	if now, gerr := s.users.Get(ctx, email); gerr == nil && now.LastLogin.After(d.Person.LastLogin) {
		if err := s.users.Checked(ctx, email, ""); err != nil {
			s.log.Warn("re-check: record success", "user", email, "err", err)
		}
		return
	}
	switch {
	case err == nil:
		if err := s.users.Checked(ctx, email, next); err != nil {
			s.log.Warn("re-check: record success", "user", email, "err", err)
		}
	case errors.Is(err, oidc.ErrInvalidGrant):
		s.deprovision(ctx, email, "identity provider refused the refresh token (invalid_grant)")
	default:
		s.log.Warn("re-check: identity provider unreachable; retrying in an hour", "user", email, "err", err)
		if err := s.users.Postpone(ctx, email, time.Hour); err != nil {
			s.log.Warn("re-check: postpone", "user", email, "err", err)
		}
	}
}

// deprovision revokes everything of a person the identity provider no
// longer knows: their tokens (issued until now), their sessions, and the
// kept refresh token.
func (s *Server) deprovision(ctx context.Context, email, reason string) {
	revoked, err := s.tokens.RevokeUser(ctx, email, "deprovisioning")
	if err != nil {
		s.log.Error("deprovision: revoke tokens", "user", email, "err", err)
		s.users.Postpone(ctx, email, time.Minute)
		return
	}
	n, err := s.sessions.DeleteByEmail(ctx, email)
	if err != nil {
		s.log.Error("deprovision: delete sessions", "user", email, "err", err)
	}
	if err := s.users.Forget(ctx, email); err != nil {
		s.log.Warn("deprovision: forget refresh token", "user", email, "err", err)
	}
	s.audit.Record(audit.Event{Type: audit.TypeDeprovision, Email: email, Reason: reason,
		Details: map[string]string{"revoked_tokens": strconv.Itoa(revoked), "deleted_sessions": strconv.Itoa(n)}})
}

// recentLogin enforces LLMGATE_TOKEN_REQUIRE_LOGIN_WITHIN from memory: API
// tokens of a person who has not signed in through SSO for that long stop
// working until they do.
func (s *Server) recentLogin(cl *tokens.Claims) bool {
	if s.cfg.RequireLoginWithin <= 0 {
		return true
	}
	last, ok := s.users.LastLogin(cl.Email)
	return ok && s.cfg.Now().Sub(last) <= s.cfg.RequireLoginWithin
}

// personView is a person as the admin's users view shows them.
type personView struct {
	users.Person
	Blocked    bool       `json:"blocked"`
	Tokens     int        `json:"active_tokens"`
	LastAPIUse *time.Time `json:"last_api_use"`
}

// handleAdminUsers lists everyone who has signed in, by email:
// GET /api/admin/users?cursor=&limit=.
func (s *Server) handleAdminUsers(c *gin.Context) {
	limit, ok := s.intQuery(c, "limit", users.DefaultListLimit, users.MaxListLimit)
	if !ok {
		return
	}
	out, next, total, e := s.listPeople(c.Request.Context(), c.Query("cursor"), limit)
	if e != nil {
		s.fail(c, e)
		return
	}
	c.Header("Cache-Control", "no-store")
	c.JSON(http.StatusOK, gin.H{"users": out, "total": total, "next_cursor": next})
}

// listPeople returns a page of everyone who has signed in, in email order
// after cursor, with their block, active tokens and last API use; the
// cursor of the next page; and how many people there are in all.
func (s *Server) listPeople(ctx context.Context, cursor string, limit int) ([]personView, string, int, *apiError) {
	people, next, err := s.users.List(ctx, cursor, limit)
	if err != nil {
		return nil, "", 0, unavailable("list people", err)
	}
	total, _ := s.users.Count(ctx)
	now := s.cfg.Now()
	out := make([]personView, len(people))
	for i, p := range people {
		v := personView{Person: p, Blocked: s.tokens.Blocked(p.Email)}
		recs, err := s.tokens.List(ctx, p.Email)
		if err != nil {
			return nil, "", 0, tokenError("list tokens", err)
		}
		for _, r := range recs {
			if r.Status(now) == tokens.StatusActive {
				v.Tokens++
			}
			if !r.LastUsedAt.IsZero() && (v.LastAPIUse == nil || r.LastUsedAt.After(*v.LastAPIUse)) {
				t := r.LastUsedAt
				v.LastAPIUse = &t
			}
		}
		out[i] = v
	}
	return out, next, total, nil
}
