package gateway

import (
	"errors"
	"net/http"
	"strconv"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/llmgate/llmgate/internal/audit"
	"github.com/llmgate/llmgate/oidc"
)

// backchannelError answers a refused logout token the way Back-Channel
// Logout 1.0 §2.8 says: 400 with an OAuth error body.
func backchannelError(c *gin.Context, status int, code, desc string) {
	c.Header("Cache-Control", "no-store")
	c.AbortWithStatusJSON(status, gin.H{"error": code, "error_description": desc})
}

// handleBackchannelLogout lets the identity provider end a person's
// sessions: POST /oauth2/backchannel_logout with a logout_token (OpenID
// Connect Back-Channel Logout 1.0).
func (s *Server) handleBackchannelLogout(c *gin.Context) {
	ctx := c.Request.Context()
	c.Request.Body = http.MaxBytesReader(c.Writer, c.Request.Body, 64<<10)
	raw := c.PostForm("logout_token")
	if raw == "" {
		backchannelError(c, http.StatusBadRequest, "invalid_request", "logout_token form field is missing")
		return
	}
	lc, err := s.rp.VerifyLogoutToken(ctx, raw)
	if err != nil {
		s.audit.Record(audit.Event{Type: audit.TypeBackchannelLogout, IP: c.ClientIP(), Status: http.StatusBadRequest, Reason: err.Error()})
		if errors.Is(err, oidc.ErrNotReady) {
			backchannelError(c, http.StatusServiceUnavailable, "temporarily_unavailable", "identity provider discovery has not completed")
			return
		}
		backchannelError(c, http.StatusBadRequest, "invalid_request", err.Error())
		return
	}
	first, err := s.sessions.SeenOnce(ctx, "logout-jti", lc.Issuer+" "+lc.JTI, max(time.Until(lc.Expiry), time.Minute))
	if err != nil {
		backchannelError(c, http.StatusServiceUnavailable, "temporarily_unavailable", "the gateway cannot reach its store")
		return
	}
	if !first {
		s.audit.Record(audit.Event{Type: audit.TypeBackchannelLogout, IP: c.ClientIP(), Status: http.StatusBadRequest, Reason: "replayed jti"})
		backchannelError(c, http.StatusBadRequest, "invalid_request", "logout token replayed (jti already used)")
		return
	}
	n, e := s.endIDPSessions(c, lc)
	if e != nil {
		s.fail(c, e)
		return
	}
	s.audit.Record(audit.Event{Type: audit.TypeBackchannelLogout, IP: c.ClientIP(), Reason: "identity provider logout",
		Details: map[string]string{"sid": lc.SessionID, "sub": lc.Subject, "deleted_sessions": strconv.Itoa(n)}})
	c.Header("Cache-Control", "no-store")
	c.Status(http.StatusOK)
}

// endIDPSessions ends the sessions a logout token names: those of the
// provider session sid, or, with only a subject, every session of that
// person.
func (s *Server) endIDPSessions(c *gin.Context, lc oidc.LogoutClaims) (int, *apiError) {
	ctx := c.Request.Context()
	if lc.SessionID != "" {
		n, err := s.sessions.DeleteByIDPSession(ctx, lc.Issuer, lc.SessionID)
		if err != nil {
			return 0, unavailable("end provider session", err)
		}
		return n, nil
	}
	// Subject only: find the person's sessions through the per-user index.
	emails, err := s.sessions.Emails(ctx)
	if err != nil {
		return 0, unavailable("list session users", err)
	}
	n := 0
	for _, e := range emails {
		list, err := s.sessions.ListByEmail(ctx, e)
		if err != nil {
			return n, unavailable("list sessions", err)
		}
		for _, ss := range list {
			if ss.Subject == lc.Subject && ss.Issuer == lc.Issuer {
				if _, err := s.sessions.DeleteHandle(ctx, ss.Handle); err == nil {
					n++
				}
			}
		}
	}
	return n, nil
}
