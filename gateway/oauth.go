package gateway

import (
	"errors"
	"net/http"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/gin-gonic/gin"

	"github.com/llmgate/llmgate/internal/audit"
	"github.com/llmgate/llmgate/tokens"
)

// The gateway as an OAuth authorization server for its own clients: the
// CLI (loopback and device sign-in) and Claude Code (device sign-in with
// refresh tokens, SPEC §8). Its endpoints answer in OAuth's own shapes,
// not the JSON API's: errors are {"error","error_description"} (RFC 6749
// §5.2, RFC 8628 §3.5).

// Grant types of the token endpoint.
const (
	grantAuthorizationCode = "authorization_code"
	grantDeviceCode        = "urn:ietf:params:oauth:grant-type:device_code"
	grantRefreshToken      = "refresh_token"
)

// maxFormBody bounds the form bodies of the OAuth endpoints.
const maxFormBody = 64 << 10

// oauthError is an OAuth error answer.
type oauthError struct {
	Status      int
	Code        string // RFC 6749 / 8628 error code
	Description string
	cause       error // logged for 5xx, never shown
}

func oauthRefuse(status int, code, description string) *oauthError {
	return &oauthError{Status: status, Code: code, Description: description}
}

// oauthUnavailable is store trouble: 503 temporarily_unavailable.
func oauthUnavailable(op string, err error) *oauthError {
	return &oauthError{Status: http.StatusServiceUnavailable, Code: "temporarily_unavailable",
		Description: "the gateway cannot reach its store right now; try again shortly", cause: errors.Join(errors.New(op), err)}
}

// oauthInternal is a 500 server_error whose cause is logged.
func oauthInternal(op string, err error) *oauthError {
	return &oauthError{Status: http.StatusInternalServerError, Code: "server_error",
		Description: "internal error; the gateway's log has the details", cause: errors.Join(errors.New(op), err)}
}

// oauthFail answers c with e and stops the chain.
func (s *Server) oauthFail(c *gin.Context, e *oauthError) {
	if e.Status >= 500 && e.cause != nil {
		s.log.Error("request failed", "route", c.FullPath(), "status", e.Status, "err", e.cause)
	}
	c.Header("Cache-Control", "no-store")
	c.Header("Pragma", "no-cache")
	if e.Status == http.StatusServiceUnavailable {
		c.Header("Retry-After", "5")
	}
	body := gin.H{"error": e.Code}
	if e.Description != "" {
		body["error_description"] = e.Description
	}
	c.AbortWithStatusJSON(e.Status, body)
}

// oauthJSON answers a successful token request.
func oauthJSON(c *gin.Context, v any) {
	c.Header("Cache-Control", "no-store")
	c.Header("Pragma", "no-cache")
	c.JSON(http.StatusOK, v)
}

// parseOAuthForm reads a form-encoded body (at most maxFormBody) and
// returns its values; query parameters are not read: credentials do not
// belong in URLs.
func (s *Server) parseOAuthForm(c *gin.Context) (map[string][]string, bool) {
	c.Request.Body = http.MaxBytesReader(c.Writer, c.Request.Body, maxFormBody)
	if err := c.Request.ParseForm(); err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			s.oauthFail(c, oauthRefuse(http.StatusRequestEntityTooLarge, "invalid_request", "the request body is too large"))
		} else {
			s.oauthFail(c, oauthRefuse(http.StatusBadRequest, "invalid_request", "the body is not a valid application/x-www-form-urlencoded form"))
		}
		return nil, false
	}
	return c.Request.PostForm, true
}

// requireSameOrigin refuses a form post that the browser does not say
// came from the gateway's own pages: Origin must be the public URL's
// origin or, without one, Sec-Fetch-Site must be same-origin. (The
// session's CSRF token is checked by requireCSRF as well.)
func (s *Server) requireSameOrigin() gin.HandlerFunc {
	return func(c *gin.Context) {
		o := c.GetHeader("Origin")
		if o == s.origin() {
			return
		}
		if (o == "" || o == "null") && c.GetHeader("Sec-Fetch-Site") == "same-origin" {
			return
		}
		s.log.Warn("form post refused: not from the gateway's own page", "route", c.FullPath(), "origin", truncate(o, 100))
		s.fail(c, refuse(http.StatusForbidden, "csrf_origin",
			"this form must be sent from this gateway's own page (%s); go back to it and submit it again", s.origin()))
	}
}

// requireSession refuses a form post without a session (a page would
// send the browser through sign-in first; a post cannot be replayed
// after it).
func (s *Server) requireSession() gin.HandlerFunc {
	return func(c *gin.Context) {
		if currentSession(c) == nil {
			s.fail(c, refuse(http.StatusUnauthorized, "not_signed_in",
				"your session ended before the form was sent; sign in and start again"))
		}
	}
}

// cleanText checks a short text a client reports about itself (a host
// name, a token name): at most max runes, printable, trimmed.
func cleanText(v string, max int) (string, bool) {
	v = strings.TrimSpace(v)
	if !utf8.ValidString(v) || utf8.RuneCountInString(v) > max {
		return "", false
	}
	if strings.IndexFunc(v, func(r rune) bool { return !unicode.IsPrint(r) }) >= 0 {
		return "", false
	}
	return v, true
}

// metadata is the RFC 8414 authorization server metadata.
type metadata struct {
	Issuer                            string   `json:"issuer"`
	AuthorizationEndpoint             string   `json:"authorization_endpoint"`
	DeviceAuthorizationEndpoint       string   `json:"device_authorization_endpoint"`
	TokenEndpoint                     string   `json:"token_endpoint"`
	RevocationEndpoint                string   `json:"revocation_endpoint"`
	JWKSURI                           string   `json:"jwks_uri"`
	GrantTypesSupported               []string `json:"grant_types_supported"`
	ResponseTypesSupported            []string `json:"response_types_supported"`
	ScopesSupported                   []string `json:"scopes_supported"`
	TokenEndpointAuthMethodsSupported []string `json:"token_endpoint_auth_methods_supported"`
	RevocationEndpointAuthMethods     []string `json:"revocation_endpoint_auth_methods_supported"`
	CodeChallengeMethodsSupported     []string `json:"code_challenge_methods_supported"`
}

// handleMetadata serves GET /.well-known/oauth-authorization-server. It
// is built from LLMGATE_PUBLIC_URL alone, never from the request's Host
// or forwarding headers.
func (s *Server) handleMetadata(c *gin.Context) {
	base := s.cfg.PublicURL.String()
	c.Header("Cache-Control", "public, max-age=300")
	c.JSON(http.StatusOK, metadata{
		Issuer:                            base,
		AuthorizationEndpoint:             base + "/cli/authorize",
		DeviceAuthorizationEndpoint:       base + "/api/device/code",
		TokenEndpoint:                     base + "/oauth/token",
		RevocationEndpoint:                base + "/oauth/revoke",
		JWKSURI:                           base + "/.well-known/jwks.json",
		GrantTypesSupported:               []string{grantDeviceCode, grantRefreshToken, grantAuthorizationCode},
		ResponseTypesSupported:            []string{"code"},
		ScopesSupported:                   []string{tokens.ScopeLLM, tokens.ScopeTokens},
		TokenEndpointAuthMethodsSupported: []string{"none"},
		RevocationEndpointAuthMethods:     []string{"none"},
		CodeChallengeMethodsSupported:     []string{"S256"},
	})
}

// handleRevoke revokes a credential (RFC 7009): POST /oauth/revoke with
// token (an access or API token, or a refresh token) and an optional
// token_type_hint. Revoking either token of a sign-in ends the whole
// sign-in. The answer is 200 {} whether or not the token was known; 503
// when the store cannot be reached (nothing was revoked: try again).
func (s *Server) handleRevoke(c *gin.Context) {
	form, ok := s.parseOAuthForm(c)
	if !ok {
		return
	}
	raw := strings.TrimSpace(first(form, "token"))
	if raw == "" {
		s.oauthFail(c, oauthRefuse(http.StatusBadRequest, "invalid_request", "token is required"))
		return
	}
	rec, err := s.tokens.RevokeCredential(c.Request.Context(), raw, "oauth/revoke")
	switch {
	case errors.Is(err, tokens.ErrUnavailable):
		s.oauthFail(c, oauthUnavailable("revoke credential", err))
		return
	case err != nil:
		// Unknown or invalid tokens need no revocation (RFC 7009 §2.2).
	default:
		typ := audit.TypeTokenRevoke
		if rec.ClientID == tokens.ClientClaudeCode {
			typ = audit.TypeSessionRevoke
		}
		s.audit.Record(audit.Event{Type: typ, Actor: rec.Email, Email: rec.Email, TokenID: rec.ID, IP: c.ClientIP(),
			Details: map[string]string{"via": "oauth/revoke", "client_id": rec.ClientID, "hint": truncate(first(form, "token_type_hint"), 32)}})
	}
	c.Header("Cache-Control", "no-store")
	c.JSON(http.StatusOK, gin.H{})
}

// first is the first value of key in form, or "".
func first(form map[string][]string, key string) string {
	if v := form[key]; len(v) > 0 {
		return v[0]
	}
	return ""
}
