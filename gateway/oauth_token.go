package gateway

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/llmgate/llmgate/internal/audit"
	"github.com/llmgate/llmgate/internal/grants"
	"github.com/llmgate/llmgate/internal/users"
	"github.com/llmgate/llmgate/tokens"
)

// handleToken is the token endpoint: POST /oauth/token, and the same at
// /api/device/token and /api/cli/token. Form-encoded; grant types
// authorization_code (loopback CLI sign-in), device_code, refresh_token.
func (s *Server) handleToken(c *gin.Context) {
	form, ok := s.parseOAuthForm(c)
	if !ok {
		return
	}
	var e *oauthError
	switch gt := first(form, "grant_type"); gt {
	case grantAuthorizationCode:
		e = s.tokenFromCode(c, form)
	case grantDeviceCode:
		e = s.tokenFromDevice(c, form)
	case grantRefreshToken:
		e = s.tokenFromRefresh(c, form)
	case "":
		e = oauthRefuse(http.StatusBadRequest, "invalid_request", "grant_type is required")
	default:
		e = oauthRefuse(http.StatusBadRequest, "unsupported_grant_type",
			fmt.Sprintf("grant_type %.64q is not supported: use %s, %s or %s", gt, grantAuthorizationCode, grantDeviceCode, grantRefreshToken))
	}
	if e != nil {
		s.oauthFail(c, e)
	}
}

// gatewayTokenResponse is the answer to Claude Code's token requests.
type gatewayTokenResponse struct {
	AccessToken  string `json:"access_token"`
	TokenType    string `json:"token_type"`
	ExpiresIn    int64  `json:"expires_in"`
	RefreshToken string `json:"refresh_token"`
	Scope        string `json:"scope"`
	Email        string `json:"email"`
}

func (s *Server) answerSignIn(c *gin.Context, si tokens.SignIn) {
	oauthJSON(c, gatewayTokenResponse{
		AccessToken: si.AccessToken, TokenType: "Bearer", ExpiresIn: int64(si.AccessExpiresAt.Sub(s.cfg.Now()) / time.Second),
		RefreshToken: si.RefreshToken, Scope: tokens.ScopeLLM, Email: si.Record.Email,
	})
}

// startClaudeCode starts the Claude Code sign-in approved by p and answers
// with its first tokens.
func (s *Server) startClaudeCode(c *gin.Context, p grants.Person, d grants.Device) *oauthError {
	name := "Claude Code"
	if d.Host != "" {
		name = truncateRunes("Claude Code on "+d.Host, maxNameLen)
	}
	si, err := s.tokens.StartSignIn(c.Request.Context(), tokens.SignInRequest{
		Name: name, Email: p.Email, Subject: p.Subject, UserName: p.Name, ClientID: tokens.ClientClaudeCode,
		Scopes: []string{tokens.ScopeLLM}, AccessTTL: s.cfg.GatewayTokenTTL, RefreshTTL: s.cfg.GatewayRefreshTTL,
		Address: c.ClientIP(),
	})
	var ve *tokens.ValidationError
	switch {
	case errors.Is(err, tokens.ErrUserBlocked):
		return s.deny(c, p.Email, "blocked",
			oauthRefuse(http.StatusBadRequest, "access_denied", p.Email+" is blocked by an administrator of this gateway"))
	case errors.Is(err, tokens.ErrUnavailable):
		return oauthUnavailable("start sign-in", err)
	case errors.As(err, &ve):
		return oauthInternal("start sign-in (check LLMGATE_GATEWAY_REFRESH_TTL against LLMGATE_TOKEN_MAX_TTL)", err)
	case err != nil:
		return oauthInternal("start sign-in", err)
	}
	s.audit.Record(audit.Event{Type: audit.TypeSessionMint, Actor: p.Email, Email: p.Email, TokenID: si.Record.ID, IP: c.ClientIP(),
		Details: map[string]string{"client_id": si.Record.ClientID, "name": si.Record.Name, "expires_at": si.Record.ExpiresAt.Format(time.RFC3339)}})
	s.answerSignIn(c, si)
	return nil
}

// tokenFromRefresh renews a Claude Code sign-in:
// grant_type=refresh_token&refresh_token. A refusal is 401 invalid_grant,
// Claude Code's signal to sign in again; store trouble is 503 and
// consumes nothing.
func (s *Server) tokenFromRefresh(c *gin.Context, form map[string][]string) *oauthError {
	rt := first(form, "refresh_token")
	if rt == "" {
		return oauthRefuse(http.StatusBadRequest, "invalid_request", "refresh_token is required")
	}
	si, err := s.tokens.Refresh(c.Request.Context(), tokens.RefreshRequest{
		Token: rt, AccessTTL: s.cfg.GatewayTokenTTL, Address: c.ClientIP(), Check: s.mayRenew,
	})
	refused := oauthRefuse(http.StatusUnauthorized, "invalid_grant", "this sign-in has ended; sign in again with /login")
	switch {
	case errors.Is(err, tokens.ErrReplay):
		s.audit.Record(audit.Event{Type: audit.TypeRefreshReplay, Email: si.Record.Email, TokenID: si.Record.ID, IP: c.ClientIP(),
			Status: http.StatusUnauthorized, Reason: "a refresh token rotated earlier was used again: the sign-in is revoked"})
		return refused
	case errors.Is(err, tokens.ErrInvalidGrant):
		s.audit.Record(audit.Event{Type: audit.TypeAuthDenied, Email: si.Record.Email, TokenID: si.Record.ID, IP: c.ClientIP(),
			Status: http.StatusUnauthorized, Reason: err.Error(), Details: map[string]string{"grant_type": grantRefreshToken}})
		return refused
	case errors.Is(err, tokens.ErrUnavailable):
		return oauthUnavailable("refresh", err)
	case err != nil:
		return oauthInternal("refresh", err)
	}
	s.audit.Record(audit.Event{Type: audit.TypeSessionRefresh, Actor: si.Record.Email, Email: si.Record.Email, TokenID: si.Record.ID, IP: c.ClientIP()})
	s.answerSignIn(c, si)
	return nil
}

// mayRenew re-checks, at each refresh, that the owner of a sign-in may
// still sign in: the sign-in policy (allowed domains and groups) against
// the groups of their last SSO sign-in. Blocks and revoke-user cut-offs
// (which deprovisioning sets) are checked by the tokens package.
func (s *Server) mayRenew(ctx context.Context, rec tokens.Record) error {
	p, err := s.users.Get(ctx, rec.Email)
	switch {
	case errors.Is(err, users.ErrNotFound):
		return fmt.Errorf("%s is not known to this gateway any more", rec.Email)
	case err != nil:
		return fmt.Errorf("%w: %w", tokens.ErrUnavailable, err)
	}
	return s.rp.Admits(rec.Email, p.Groups)
}
