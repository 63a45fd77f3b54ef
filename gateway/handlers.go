package gateway

import (
	"context"
	"errors"
	"math"
	"net/http"
	"strconv"
	"strings"
	"time"
	"unicode"

	"github.com/gin-gonic/gin"

	"github.com/llmgate/llmgate/internal/audit"
	"github.com/llmgate/llmgate/internal/duration"
	"github.com/llmgate/llmgate/tokens"
	"github.com/llmgate/llmgate/ui"
)

// handleHome is the signed-in home page: GET /.
func (s *Server) handleHome(c *gin.Context) {
	s.renderHome(c, http.StatusOK, nil, "")
}

// renderHome renders the home page, with a token just created or a form
// error when there is one.
func (s *Server) renderHome(c *gin.Context, status int, created *ui.NewToken, formError string) {
	sess := currentSession(c)
	recs, err := s.tokens.List(c.Request.Context(), sess.Email)
	if err != nil {
		s.fail(c, tokenError("list tokens", err))
		return
	}
	now := s.cfg.Now()
	rows := make([]ui.TokenRow, 0, len(recs))
	for _, r := range recs {
		row := ui.TokenRow{ID: r.ID, Name: r.Name, Models: r.Models, CreatedAt: r.CreatedAt, ExpiresAt: r.ExpiresAt, Status: r.Status(now)}
		if !r.LastUsedAt.IsZero() {
			t := r.LastUsedAt
			row.LastUsed = &t
		}
		rows = append(rows, row)
	}
	s.render(c, status, ui.HomePage{
		Layout:         s.layout(c, "Tokens", "tokens"),
		SessionExpires: sess.ExpiresAt,
		BaseURL:        s.cfg.PublicURL.String(),
		Tokens:         rows,
		NewToken:       created,
		FormError:      formError,
		MaxTTLDays:     int(s.cfg.TokenMaxTTL / (24 * time.Hour)),
		Spend:          s.spendBar(sess.Email, sess.Groups),
	})
}

// handleUICreateToken creates a token from the home page's form:
// POST /ui/tokens. The answer is the home page showing the token once.
func (s *Server) handleUICreateToken(c *gin.Context) {
	sess := currentSession(c)
	var ttl time.Duration
	v := c.PostForm("ttl")
	if v == "custom" {
		v = strings.TrimSpace(c.PostForm("ttl_custom"))
		if v == "" {
			s.renderHome(c, http.StatusBadRequest, nil, "Custom lifetime is empty: enter a duration like 45d or 12h.")
			return
		}
	}
	if v != "" {
		d, err := duration.Parse(v)
		if err != nil || d <= 0 {
			s.renderHome(c, http.StatusBadRequest, nil, "Lifetime "+v+" is not a duration like 30d.")
			return
		}
		ttl = d
	}
	rpm := 0
	if v := strings.TrimSpace(c.PostForm("rpm")); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 0 {
			s.renderHome(c, http.StatusBadRequest, nil, "Requests per minute "+v+" is not a whole number (leave it empty for no limit).")
			return
		}
		rpm = n
	}
	budget := 0.0
	if v := strings.TrimSpace(strings.TrimPrefix(c.PostForm("max_cost_usd"), "$")); v != "" {
		f, err := strconv.ParseFloat(v, 64)
		if err != nil || f < 0 || math.IsInf(f, 0) || math.IsNaN(f) {
			s.renderHome(c, http.StatusBadRequest, nil, "Budget "+v+" is not an amount of US dollars like 25 or 7.50 (leave it empty for none).")
			return
		}
		budget = f
	}
	raw, rec, err := s.tokens.Issue(c.Request.Context(), tokens.IssueRequest{
		Name: strings.TrimSpace(c.PostForm("name")), Email: sess.Email, Subject: sess.Subject, UserName: sess.Name,
		ClientID: tokens.ClientUI, TTL: ttl, Scopes: []string{tokens.ScopeLLM}, Models: formList(c.PostForm("models")),
		RPM: rpm, CIDRs: formList(c.PostForm("cidrs")), MaxCostUSD: budget,
	})
	var ve *tokens.ValidationError
	if errors.As(err, &ve) {
		s.renderHome(c, http.StatusBadRequest, nil, ve.Message)
		return
	}
	if err != nil {
		s.fail(c, tokenError("issue token", err))
		return
	}
	s.audit.Record(audit.Event{Type: audit.TypeTokenCreate, Actor: sess.Email, Email: sess.Email, TokenID: rec.ID, IP: c.ClientIP(),
		Details: map[string]string{"name": rec.Name, "expires_at": rec.ExpiresAt.Format(time.RFC3339), "via": "ui"}})
	nt := &ui.NewToken{Name: rec.Name, Token: raw}
	if len(rec.Models) > 0 {
		nt.Model = rec.Models[0]
	}
	s.renderHome(c, http.StatusOK, nt, "")
}

// formList splits a form field of comma- or space-separated values.
func formList(v string) []string {
	return strings.FieldsFunc(v, func(r rune) bool { return r == ',' || unicode.IsSpace(r) })
}

// handleUIRevokeToken revokes one of the person's tokens from the home
// page: POST /ui/tokens/{id}/revoke, then back home.
func (s *Server) handleUIRevokeToken(c *gin.Context) {
	sess := currentSession(c)
	id := c.Param("id")
	rec, err := s.tokens.Get(c.Request.Context(), id)
	if err == nil && rec.Email != sess.Email {
		err = tokens.ErrNotFound
	}
	if err == nil {
		_, err = s.tokens.Revoke(c.Request.Context(), id, sess.Email)
	}
	if err != nil {
		s.fail(c, tokenError("revoke token", err))
		return
	}
	s.audit.Record(audit.Event{Type: audit.TypeTokenRevoke, Actor: sess.Email, Email: sess.Email, TokenID: id, IP: c.ClientIP()})
	s.doneTo(c, "/", "Token “"+rec.Name+"” revoked: calls with it are refused from now on.")
}

// Me is GET /api/me.
type Me struct {
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
	r := Me{Email: p.Email, Name: p.Name, Subject: p.Subject, Groups: p.Groups, Admin: p.Admin, Via: p.Via}
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
