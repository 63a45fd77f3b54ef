package gateway

import (
	"errors"
	"fmt"
	"net/http"
	"strings"

	"github.com/gin-gonic/gin"

	"github.com/llmgate/llmgate/tokens"
	"github.com/llmgate/llmgate/ui"
)

// apiError is every refusal and failure the gateway answers with. It is
// rendered in the caller's family: JSON for API routes, an HTML page for
// browser routes.
type apiError struct {
	Status  int
	Code    string // short, stable, snake_case
	Message string // safe to show; says what was wrong and what to do
	// cause is logged for 5xx answers and never shown.
	cause error
}

func (e *apiError) Error() string { return e.Message }

// refuse makes a 4xx apiError.
func refuse(status int, code, format string, args ...any) *apiError {
	return &apiError{Status: status, Code: code, Message: fmt.Sprintf(format, args...)}
}

// internal makes a 500 whose cause is logged and not shown.
func internal(op string, err error) *apiError {
	return &apiError{Status: http.StatusInternalServerError, Code: "internal_error",
		Message: "internal error; the gateway's log has the details", cause: fmt.Errorf("%s: %w", op, err)}
}

// unavailable makes a 503 for a dependency that is down.
func unavailable(op string, err error) *apiError {
	return &apiError{Status: http.StatusServiceUnavailable, Code: "unavailable",
		Message: "the gateway cannot reach its store right now; try again shortly", cause: fmt.Errorf("%s: %w", op, err)}
}

// errorType is the OpenAI-style "type" of an error response.
func errorType(status int) string {
	switch status {
	case http.StatusBadRequest, http.StatusRequestEntityTooLarge, http.StatusNotFound, http.StatusMethodNotAllowed:
		return "invalid_request_error"
	case http.StatusUnauthorized:
		return "authentication_error"
	case http.StatusForbidden:
		return "permission_error"
	case http.StatusTooManyRequests:
		return "rate_limit_error"
	default:
		return "api_error"
	}
}

// family says how a route's errors are rendered.
type family int

const (
	familyAPI  family = iota // SPEC §3 JSON
	familyPage               // HTML error page
)

const familyKey = "llmgate.family"

// setFamily is middleware that marks the routes of a group.
func setFamily(f family) gin.HandlerFunc {
	return func(c *gin.Context) { c.Set(familyKey, f) }
}

func familyOf(c *gin.Context) family {
	if f, ok := c.Get(familyKey); ok {
		return f.(family)
	}
	p := c.Request.URL.Path
	if c.FullPath() == "" && !strings.Contains(c.GetHeader("Accept"), "text/html") {
		return familyAPI // unrouted, and not a browser: JSON
	}
	if strings.HasPrefix(p, "/api/") || strings.HasPrefix(p, "/.well-known/") || strings.HasPrefix(p, "/v1/") ||
		strings.HasPrefix(p, "/oauth/") || p == "/oauth2/backchannel_logout" || p == "/metrics" {
		return familyAPI
	}
	return familyPage
}

// fail answers c with e in the route's family and stops the chain.
func (s *Server) fail(c *gin.Context, e *apiError) {
	if e.Status >= 500 && e.cause != nil {
		s.log.Error("request failed", "route", c.FullPath(), "status", e.Status, "err", e.cause)
	}
	c.Header("Cache-Control", "no-store")
	if familyOf(c) == familyPage {
		s.render(c, e.Status, s.errorPage(c, e))
		c.Abort()
		return
	}
	c.AbortWithStatusJSON(e.Status, gin.H{"error": gin.H{
		"message": e.Message, "type": errorType(e.Status), "code": e.Code,
	}})
}

// errorPage turns e into a page that says what happened and what to do.
func (s *Server) errorPage(c *gin.Context, e *apiError) ui.ErrorPage {
	p := ui.ErrorPage{Status: e.Status, Message: e.Message}
	p.Title = http.StatusText(e.Status)
	switch e.Status {
	case http.StatusUnauthorized:
		p.Heading = "Sign-in failed"
		p.ActionURL, p.ActionText = "/oauth2/start?rd=%2F", "Sign in again"
	case http.StatusForbidden:
		p.Heading = "Access refused"
	case http.StatusNotFound:
		p.Heading = "Page not found"
		p.ActionURL, p.ActionText = "/", "Go to the home page"
	case http.StatusBadRequest:
		p.Heading = "Request not accepted"
	case http.StatusServiceUnavailable:
		p.Heading = "Temporarily unavailable"
	default:
		p.Heading = "Something went wrong"
	}
	signIn := "/oauth2/start?rd=%2F"
	switch e.Code {
	case "login_expired", "login_state":
		p.ActionURL, p.ActionText = signIn, "Start sign-in again"
	case "session_expired":
		p.Heading = "Your session has ended"
		p.Advice = "Nothing was changed. Sign in again, then repeat what you were doing."
		p.ActionURL, p.ActionText = signIn, "Sign in again"
	case "user_blocked":
		p.Heading = "Your account is blocked"
		p.Advice = "An administrator of this gateway blocked your account: your sessions ended and your API tokens are refused. Ask them to unblock you."
	case "login_domain", "login_group", "login_email_unverified", "login_email_missing":
		p.Heading = "This account may not sign in here"
		p.Advice = "If you have another account (for example your work account), sign out of the identity provider and sign in with that one."
		p.ActionURL, p.ActionText = signIn, "Try another account"
	case "admin_required":
		p.Heading = "Administrators only"
		p.Advice = "This page is part of the admin console. If you need it, ask an administrator to add you."
		p.ActionURL, p.ActionText = "/", "Go to your tokens"
	case "csrf_invalid", "csrf_origin":
		p.Heading = "This form has expired"
		p.Message = "The form was sent without this session's security token: it was opened before your last sign-in, or by another site."
		p.Advice = "Nothing was changed. Reload the page and submit the form again."
		p.ActionURL, p.ActionText = "/", "Go to your tokens"
	case "idp_refused":
		p.Heading = "The identity provider refused the sign-in"
		p.ActionURL, p.ActionText = signIn, "Try again"
	}
	if p.ActionURL == "" && e.Status >= 500 {
		p.Advice = "This is on our side, not yours. Wait a moment and try again; if it goes on, tell your administrator."
		p.ActionURL, p.ActionText = "/", "Go to the home page"
	}
	if u := currentUser(c); u != nil {
		p.User = u
		p.CSRFToken = s.csrfToken(c)
	}
	return p
}

// render writes a page with status.
func (s *Server) render(c *gin.Context, status int, p ui.Page) {
	c.Header("Content-Type", "text/html; charset=utf-8")
	c.Status(status)
	if err := s.pages.Render(c.Writer, p); err != nil {
		s.log.Error("render page", "page", p.Template(), "err", err)
	}
}

// tokenError maps an error of the tokens package to the answer: what was
// wrong with the token and what to do about it.
func tokenError(op string, err error) *apiError {
	var ve *tokens.ValidationError
	switch {
	case errors.As(err, &ve):
		return refuse(http.StatusBadRequest, "invalid_"+ve.Field, "%s", ve.Message)
	case errors.Is(err, tokens.ErrNotFound):
		return refuse(http.StatusNotFound, "token_not_found", "no such token")
	case errors.Is(err, tokens.ErrExpired):
		return refuse(http.StatusUnauthorized, "token_expired", "API token expired: create a new one in the web UI or with 'llmgate token create'")
	case errors.Is(err, tokens.ErrRevoked):
		return refuse(http.StatusUnauthorized, "token_revoked", "API token revoked: create a new one in the web UI or with 'llmgate token create'")
	case errors.Is(err, tokens.ErrUserRevoked):
		return refuse(http.StatusUnauthorized, "token_revoked", "API tokens of this person were revoked by an administrator: sign in again and create a new one")
	case errors.Is(err, tokens.ErrUserBlocked):
		return refuse(http.StatusForbidden, "user_blocked", "this person is blocked by an administrator")
	case errors.Is(err, tokens.ErrScope):
		return refuse(http.StatusForbidden, "insufficient_scope", "this token may only call the LLM API; manage tokens from the web UI or with the credential of 'llmgate login'")
	case errors.Is(err, tokens.ErrMalformed), errors.Is(err, tokens.ErrSignature),
		errors.Is(err, tokens.ErrNotYetValid), errors.Is(err, tokens.ErrClaims):
		return refuse(http.StatusUnauthorized, "invalid_token", "invalid API token")
	case errors.Is(err, tokens.ErrUnavailable):
		return unavailable(op, err)
	default:
		return internal(op, err)
	}
}
