package gateway

import (
	"context"
	"net/http"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/llmgate/llmgate/ui"
)

// handleHome is the signed-in home page: GET /.
func (s *Server) handleHome(c *gin.Context) {
	sess := currentSession(c)
	c.Header("Cache-Control", "no-store")
	s.render(c, http.StatusOK, ui.HomePage{
		Layout:         ui.Layout{Title: "Home", User: currentUser(c), CSRFToken: s.csrfToken(c)},
		SessionExpires: sess.ExpiresAt,
	})
}

// meResponse is GET /api/me.
type meResponse struct {
	Email     string   `json:"email"`
	Name      string   `json:"name"`
	Subject   string   `json:"sub"`
	Groups    []string `json:"groups"`
	Admin     bool     `json:"admin"`
	Via       string   `json:"authenticated_by"`
	CSRFToken string   `json:"csrf_token,omitempty"`
	// TokenID and TokenExpiresAt are set when an API token authenticated the call.
	TokenID        string     `json:"token_id,omitempty"`
	TokenExpiresAt *time.Time `json:"token_expires_at,omitempty"`
	// SessionExpiresAt is set for browser sessions.
	SessionExpiresAt *time.Time `json:"session_expires_at,omitempty"`
}

// handleMe says who the caller is: GET /api/me.
func (s *Server) handleMe(c *gin.Context) {
	p := currentPrincipal(c)
	r := meResponse{Email: p.Email, Name: p.Name, Subject: p.Subject, Groups: p.Groups, Admin: p.Admin, Via: p.Via}
	if r.Groups == nil {
		r.Groups = []string{}
	}
	if sess := currentSession(c); sess != nil {
		r.CSRFToken = s.csrfToken(c)
		r.SessionExpiresAt = &sess.ExpiresAt
	}
	if cl := currentClaims(c); cl != nil {
		r.TokenID = cl.ID
		exp := cl.ExpiresAt
		r.TokenExpiresAt = &exp
	}
	c.Header("Cache-Control", "no-store")
	c.JSON(http.StatusOK, r)
}

// handleHealthz says the process is alive: GET /healthz.
func (s *Server) handleHealthz(c *gin.Context) {
	c.JSON(http.StatusOK, gin.H{"status": "ok", "version": s.cfg.Version})
}

// handleReadyz says whether this replica should get traffic: GET /readyz.
// It is 503 while shutting down, before discovery, or when a dependency
// (Redis) does not answer within a second.
func (s *Server) handleReadyz(c *gin.Context) {
	ctx, cancel := context.WithTimeout(c.Request.Context(), time.Second)
	defer cancel()
	checks := map[string]string{}
	ok := true
	if s.draining.Load() {
		checks["shutdown"] = "shutting down"
		ok = false
	}
	if s.rp.Ready() {
		checks["oidc"] = "ok"
	} else {
		checks["oidc"] = "discovery not done"
		ok = false
	}
	switch {
	case !s.tokens.Ready():
		checks["tokens"] = "signing keys not loaded"
		ok = false
	case !s.tokens.Healthy():
		checks["tokens"] = "token store unreachable"
		ok = false
	default:
		checks["tokens"] = "ok"
	}
	for _, ch := range s.checks {
		if err := ch.Check(ctx); err != nil {
			checks[ch.Name] = err.Error()
			ok = false
		} else {
			checks[ch.Name] = "ok"
		}
	}
	status, word := http.StatusOK, "ok"
	if !ok {
		status, word = http.StatusServiceUnavailable, "unavailable"
	}
	c.Header("Cache-Control", "no-store")
	c.JSON(status, gin.H{"status": word, "checks": checks})
}
