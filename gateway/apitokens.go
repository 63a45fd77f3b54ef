package gateway

import (
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/llmgate/llmgate/internal/audit"
	"github.com/llmgate/llmgate/internal/duration"
	"github.com/llmgate/llmgate/tokens"
)

// maxJSONBody bounds the JSON bodies of the gateway's own API.
const maxJSONBody = 64 << 10

// TokenView is a token as the JSON API shows it (and the CLI reads it): never the token string,
// except once, in the answer to its creation.
type TokenView struct {
	ID         string     `json:"id"`
	Token      string     `json:"token,omitempty"`
	Name       string     `json:"name"`
	Email      string     `json:"email"`
	ClientID   string     `json:"client_id"`
	Scopes     []string   `json:"scopes"`
	Models     []string   `json:"models"`
	RPM        int        `json:"rpm,omitempty"`
	CIDRs      []string   `json:"cidrs,omitempty"`
	MaxCostUSD float64    `json:"max_cost_usd,omitempty"`
	CreatedAt  time.Time  `json:"created_at"`
	ExpiresAt  time.Time  `json:"expires_at"`
	LastUsedAt *time.Time `json:"last_used_at"`
	Revoked    bool       `json:"revoked"`
	RevokedAt  *time.Time `json:"revoked_at,omitempty"`
	Status     string     `json:"status"`
	// Kind is "token" (an API token), "cli" (the credential of llmgate
	// login) or "sign_in" (a Claude Code sign-in: ExpiresAt is when it
	// ends, each of its access tokens lives LLMGATE_GATEWAY_TOKEN_TTL).
	Kind string `json:"kind"`
	// Address is where a sign-in was last renewed from.
	Address string `json:"address,omitempty"`
	// TokenID and TokenName repeat ID and Name under the names of the
	// OpenResty gateway's API, for clients migrating from it.
	TokenID   string `json:"token_id"`
	TokenName string `json:"token_name"`
}

func (s *Server) view(r tokens.Record) TokenView {
	v := TokenView{
		ID: r.ID, Name: r.Name, Email: r.Email, ClientID: r.ClientID, Scopes: r.Scopes, Models: r.Models,
		RPM: r.RPM, CIDRs: r.CIDRs, MaxCostUSD: r.MaxCostUSD, CreatedAt: r.CreatedAt, ExpiresAt: r.ExpiresAt,
		Revoked: !r.RevokedAt.IsZero(), Status: r.Status(s.cfg.Now()), TokenID: r.ID, TokenName: r.Name,
		Kind: tokenKind(r), Address: r.Address,
	}
	if v.Models == nil {
		v.Models = []string{}
	}
	if !r.LastUsedAt.IsZero() {
		v.LastUsedAt = &r.LastUsedAt
	}
	if !r.RevokedAt.IsZero() {
		v.RevokedAt = &r.RevokedAt
	}
	return v
}

// tokenKind is a record's kind as the token views show it.
func tokenKind(r tokens.Record) string {
	switch {
	case r.ClientID == tokens.ClientClaudeCode:
		return "sign_in"
	case slices.Contains(r.Scopes, tokens.ScopeTokens):
		return "cli"
	}
	return "token"
}

// createTokenRequest is the body of POST /api/tokens, and of the
// OpenResty-era POST /api/token/generate (token_name, expires_in).
type createTokenRequest struct {
	Name       string          `json:"name"`
	TokenName  string          `json:"token_name"`
	ExpiresIn  json.RawMessage `json:"expires_in"` // seconds
	TTL        string          `json:"ttl"`        // "30d", "12h"
	Models     []string        `json:"models"`
	RPM        int             `json:"rpm"`
	CIDRs      []string        `json:"cidrs"`
	MaxCostUSD float64         `json:"max_cost_usd"`
}

// bindJSON decodes the request body into v, refusing unknown fields and
// bodies over maxJSONBody with a message that says what was wrong.
func (s *Server) bindJSON(c *gin.Context, v any) bool {
	dec := json.NewDecoder(http.MaxBytesReader(c.Writer, c.Request.Body, maxJSONBody))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		var mbe *http.MaxBytesError
		switch {
		case errors.Is(err, io.EOF):
			s.fail(c, refuse(http.StatusBadRequest, "invalid_json", "the request body is empty; send a JSON object"))
		case errors.As(err, &mbe):
			s.fail(c, refuse(http.StatusRequestEntityTooLarge, "body_too_large", "the request body is larger than %d KiB", maxJSONBody>>10))
		default:
			s.fail(c, refuse(http.StatusBadRequest, "invalid_json", "the request body is not valid JSON for this call: %s", strings.TrimPrefix(err.Error(), "json: ")))
		}
		return false
	}
	return true
}

// ttl reads the lifetime from expires_in (seconds) or ttl ("30d").
func (r createTokenRequest) ttl() (time.Duration, *apiError) {
	if len(r.ExpiresIn) > 0 && string(r.ExpiresIn) != "null" && r.TTL != "" {
		return 0, refuse(http.StatusBadRequest, "invalid_ttl", "send either expires_in (seconds) or ttl (like 30d), not both")
	}
	if r.TTL != "" {
		d, err := duration.Parse(r.TTL)
		if err != nil || d <= 0 {
			return 0, refuse(http.StatusBadRequest, "invalid_ttl", "ttl %q is not a positive duration like 30d, 12h or 90m", r.TTL)
		}
		return d, nil
	}
	if len(r.ExpiresIn) == 0 || string(r.ExpiresIn) == "null" {
		return 0, nil // the default
	}
	raw := strings.Trim(string(r.ExpiresIn), `"`)
	secs, err := strconv.ParseInt(raw, 10, 64)
	if err != nil || secs <= 0 || secs > int64(100*365*24*time.Hour/time.Second) {
		return 0, refuse(http.StatusBadRequest, "invalid_ttl", "expires_in must be a positive whole number of seconds, got %s", r.ExpiresIn)
	}
	return time.Duration(secs) * time.Second, nil
}

// handleCreateToken mints a token for the caller: POST /api/tokens.
func (s *Server) handleCreateToken(c *gin.Context) {
	var req createTokenRequest
	if !s.bindJSON(c, &req) {
		return
	}
	ttl, e := req.ttl()
	if e != nil {
		s.fail(c, e)
		return
	}
	name := req.Name
	if name == "" {
		name = req.TokenName
	}
	p := currentPrincipal(c)
	client := tokens.ClientAPI
	if p.Via == "token" {
		client = tokens.ClientCLI
	}
	raw, rec, err := s.tokens.Issue(c.Request.Context(), tokens.IssueRequest{
		Name: name, Email: p.Email, Subject: p.Subject, UserName: p.Name, ClientID: client,
		TTL: ttl, Scopes: []string{tokens.ScopeLLM}, Models: req.Models, RPM: req.RPM, CIDRs: req.CIDRs, MaxCostUSD: req.MaxCostUSD,
	})
	if err != nil {
		s.fail(c, tokenError("issue token", err))
		return
	}
	s.audit.Record(audit.Event{Type: audit.TypeTokenCreate, Actor: p.Email, Email: p.Email, TokenID: rec.ID, IP: c.ClientIP(),
		Details: map[string]string{"name": rec.Name, "expires_at": rec.ExpiresAt.Format(time.RFC3339), "via": p.Via}})
	v := s.view(rec)
	v.Token = raw
	c.Header("Cache-Control", "no-store")
	c.JSON(http.StatusCreated, v)
}

// handleListTokens lists the caller's tokens: GET /api/tokens.
func (s *Server) handleListTokens(c *gin.Context) {
	recs, err := s.tokens.List(c.Request.Context(), currentPrincipal(c).Email)
	if err != nil {
		s.fail(c, tokenError("list tokens", err))
		return
	}
	out := make([]TokenView, len(recs))
	for i, r := range recs {
		out[i] = s.view(r)
	}
	c.Header("Cache-Control", "no-store")
	c.JSON(http.StatusOK, gin.H{"tokens": out})
}

// ownToken loads token id when it belongs to the caller. Someone else's
// token is "not found", so ids cannot be probed.
func (s *Server) ownToken(c *gin.Context, id string) (tokens.Record, bool) {
	if id == "" {
		s.fail(c, refuse(http.StatusBadRequest, "missing_token_id", "name the token by its id"))
		return tokens.Record{}, false
	}
	rec, err := s.tokens.Get(c.Request.Context(), id)
	if err == nil && rec.Email != currentPrincipal(c).Email {
		err = tokens.ErrNotFound
	}
	if err != nil {
		s.fail(c, tokenError("get token", err))
		return tokens.Record{}, false
	}
	return rec, true
}

// handleGetToken shows one of the caller's tokens: GET /api/tokens/{id}.
func (s *Server) handleGetToken(c *gin.Context) {
	id := c.Param("id")
	if id == "" {
		id = c.Query("token_id")
	}
	rec, ok := s.ownToken(c, id)
	if !ok {
		return
	}
	c.Header("Cache-Control", "no-store")
	c.JSON(http.StatusOK, s.view(rec))
}

// handleRevokeToken revokes one of the caller's tokens:
// DELETE /api/tokens/{id}, or POST /api/token/revoke {"token_id"}.
func (s *Server) handleRevokeToken(c *gin.Context) {
	id := c.Param("id")
	if c.Request.Method == http.MethodPost {
		var req struct {
			TokenID string `json:"token_id"`
		}
		if !s.bindJSON(c, &req) {
			return
		}
		id = req.TokenID
	}
	if _, ok := s.ownToken(c, id); !ok {
		return
	}
	p := currentPrincipal(c)
	rec, err := s.tokens.Revoke(c.Request.Context(), id, p.Email)
	if err != nil {
		s.fail(c, tokenError("revoke token", err))
		return
	}
	s.audit.Record(audit.Event{Type: audit.TypeTokenRevoke, Actor: p.Email, Email: p.Email, TokenID: id, IP: c.ClientIP()})
	c.JSON(http.StatusOK, s.view(rec))
}

// handleJWKS publishes the public keys of API tokens so an upstream can
// verify them itself: GET /.well-known/jwks.json.
func (s *Server) handleJWKS(c *gin.Context) {
	c.Header("Cache-Control", "public, max-age=300")
	c.Data(http.StatusOK, "application/jwk-set+json", s.tokens.JWKS())
}
