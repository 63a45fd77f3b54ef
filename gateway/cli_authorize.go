package gateway

import (
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/llmgate/llmgate/internal/audit"
	"github.com/llmgate/llmgate/internal/grants"
	"github.com/llmgate/llmgate/tokens"
	"github.com/llmgate/llmgate/ui"
)

// The loopback CLI sign-in (RFC 8252 with PKCE, `llmgate login`): the CLI
// listens on 127.0.0.1, sends the browser to GET /cli/authorize, the
// person approves on the consent page, the browser is sent to the CLI's
// /callback with a code, and the CLI exchanges it at POST /api/cli/token.

// Limits on what the CLI reports about itself.
const (
	maxHostLen  = 255
	maxStateLen = 512
	maxNameLen  = 100
)

// cliAuthorize is a checked authorization request.
type cliAuthorize struct {
	RedirectURI string // canonical loopback URI
	State       string
	Challenge   string
	Host        string
	Name        string // as asked; TokenName() applies the default
}

// TokenName is the name of the credential the CLI gets.
func (a cliAuthorize) TokenName() string { return cliTokenName(a.Name, a.Host) }

func cliTokenName(name, host string) string {
	switch {
	case name != "":
		return name
	case host != "":
		return truncateRunes("llmgate CLI on "+host, maxNameLen)
	default:
		return "llmgate CLI"
	}
}

func truncateRunes(s string, n int) string {
	r := []rune(s)
	if len(r) > n {
		return string(r[:n])
	}
	return s
}

// loopbackRedirect returns raw when it is a loopback redirect URI the CLI
// may receive a code at: http, host 127.0.0.1, [::1] or localhost, a
// port, path exactly /callback, nothing else (no userinfo, query or
// fragment). The URI must be written exactly in that canonical form, so
// no parser difference between the gateway and a browser can send the
// code elsewhere.
func loopbackRedirect(raw string) (string, bool) {
	if raw == "" || len(raw) > 64 {
		return "", false
	}
	u, err := url.Parse(raw)
	if err != nil || u.Scheme != "http" || u.User != nil || u.Opaque != "" || u.RawQuery != "" || u.ForceQuery ||
		u.Fragment != "" || u.Path != "/callback" || u.RawPath != "" {
		return "", false
	}
	host, port := u.Hostname(), u.Port()
	switch host {
	case "127.0.0.1", "::1", "localhost":
	default:
		return "", false
	}
	n, err := strconv.Atoi(port)
	if err != nil || n < 1 || n > 65535 || strconv.Itoa(n) != port {
		return "", false
	}
	canon := "http://" + net.JoinHostPort(host, port) + "/callback"
	if raw != canon {
		return "", false
	}
	return canon, true
}

// validChallenge reports whether c is an S256 code challenge: 43
// characters of base64url (a SHA-256).
func validChallenge(c string) bool {
	if len(c) != 43 {
		return false
	}
	_, err := base64.RawURLEncoding.Strict().DecodeString(c)
	return err == nil
}

// validVerifier reports whether v is a PKCE code verifier (RFC 7636 §4.1):
// 43 to 128 unreserved characters.
func validVerifier(v string) bool {
	if len(v) < 43 || len(v) > 128 {
		return false
	}
	for i := 0; i < len(v); i++ {
		c := v[i]
		if !(c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '.' || c == '_' || c == '~') {
			return false
		}
	}
	return true
}

// pkceMatches reports whether verifier hashes to challenge (S256).
func pkceMatches(verifier, challenge string) bool {
	sum := sha256.Sum256([]byte(verifier))
	got := base64.RawURLEncoding.EncodeToString(sum[:])
	return subtle.ConstantTimeCompare([]byte(got), []byte(challenge)) == 1
}

// readCLIAuthorize checks an authorization request's parameters, read by
// get (the query of the GET, the form of the POST).
func readCLIAuthorize(get func(string) string) (cliAuthorize, *apiError) {
	bad := func(format string, args ...any) (cliAuthorize, *apiError) {
		return cliAuthorize{}, refuse(http.StatusBadRequest, "invalid_cli_request", format+"; run llmgate login again", args...)
	}
	redirect, ok := loopbackRedirect(get("redirect_uri"))
	if !ok {
		return bad("this sign-in link is not from the llmgate CLI: its redirect_uri is not http://127.0.0.1:PORT/callback on this computer")
	}
	if m := get("code_challenge_method"); m != "S256" {
		return bad("code_challenge_method must be S256")
	}
	challenge := get("code_challenge")
	if !validChallenge(challenge) {
		return bad("code_challenge must be 43 characters of base64url (the S256 hash of the verifier)")
	}
	state := get("state")
	if _, ok := cleanText(state, maxStateLen); !ok || len(state) > maxStateLen {
		return bad("state is longer than %d characters or holds control characters", maxStateLen)
	}
	host, ok := cleanText(get("host"), maxHostLen)
	if !ok {
		return bad("host is longer than %d characters or holds control characters", maxHostLen)
	}
	name, ok := cleanText(get("name"), maxNameLen)
	if !ok {
		return bad("name is longer than %d characters or holds control characters", maxNameLen)
	}
	return cliAuthorize{RedirectURI: redirect, State: state, Challenge: challenge, Host: host, Name: name}, nil
}

// checkCLIAuthorize validates GET /cli/authorize before sign-in, so a bad
// link is refused at once, with a page and never a redirect.
func (s *Server) checkCLIAuthorize() gin.HandlerFunc {
	return func(c *gin.Context) {
		if _, e := readCLIAuthorize(c.Query); e != nil {
			s.fail(c, e)
		}
	}
}

// handleCLIAuthorize shows the consent page: GET /cli/authorize.
func (s *Server) handleCLIAuthorize(c *gin.Context) {
	a, e := readCLIAuthorize(c.Query)
	if e != nil {
		s.fail(c, e)
		return
	}
	u, _ := url.Parse(a.RedirectURI)
	c.Header("Cache-Control", "no-store")
	s.render(c, http.StatusOK, ui.ConsentPage{
		Layout:    ui.Layout{Title: "Allow llmgate login", User: currentUser(c), CSRFToken: s.csrfToken(c)},
		Host:      a.Host,
		TokenName: a.TokenName(),
		Callback:  u.Host,
		Form: ui.ConsentForm{RedirectURI: a.RedirectURI, State: a.State, CodeChallenge: a.Challenge,
			CodeChallengeMethod: "S256", Host: a.Host, Name: a.Name},
	})
}

// handleCLIConsent approves or denies: POST /cli/authorize. Either way the
// browser goes back to the CLI's loopback URI (303), with a code or with
// error=access_denied.
func (s *Server) handleCLIConsent(c *gin.Context) {
	a, e := readCLIAuthorize(c.PostForm)
	if e != nil {
		s.fail(c, e)
		return
	}
	sess := currentSession(c)
	q := url.Values{}
	action := c.PostForm("action")
	switch action {
	case "approve":
		code, err := s.grants.NewCode(c.Request.Context(), grants.Code{
			Challenge: a.Challenge, RedirectURI: a.RedirectURI, TokenName: a.TokenName(), Host: a.Host,
			Person: grants.Person{Email: sess.Email, Subject: sess.Subject, Name: sess.Name, Groups: sess.Groups},
		})
		if err != nil {
			s.fail(c, unavailable("save authorization code", err))
			return
		}
		q.Set("code", code)
	case "deny":
		q.Set("error", "access_denied")
	default:
		s.fail(c, refuse(http.StatusBadRequest, "invalid_action", "choose Approve or Deny"))
		return
	}
	if a.State != "" {
		q.Set("state", a.State)
	}
	s.audit.Record(audit.Event{Type: audit.TypeCLIAuthorize, Actor: sess.Email, Email: sess.Email, IP: c.ClientIP(),
		Details: map[string]string{"decision": action, "host": a.Host, "name": a.TokenName()}})
	c.Header("Cache-Control", "no-store")
	c.Redirect(http.StatusSeeOther, a.RedirectURI+"?"+q.Encode())
}

// cliTokenResponse is the answer to a CLI's token request (loopback or
// device): an API token with scopes llm and tokens.
type cliTokenResponse struct {
	AccessToken string    `json:"access_token"`
	TokenType   string    `json:"token_type"`
	ExpiresIn   int64     `json:"expires_in"`
	Scope       string    `json:"scope"`
	Email       string    `json:"email"`
	TokenID     string    `json:"token_id"`
	ExpiresAt   time.Time `json:"expires_at"`
}

// issueCLI mints the CLI credential of person and answers with it.
func (s *Server) issueCLI(c *gin.Context, p grants.Person, name, via string) *oauthError {
	raw, rec, err := s.tokens.Issue(c.Request.Context(), tokens.IssueRequest{
		Name: name, Email: p.Email, Subject: p.Subject, UserName: p.Name, ClientID: tokens.ClientCLI,
		TTL: s.cfg.CLITokenTTL, Scopes: []string{tokens.ScopeLLM, tokens.ScopeTokens},
	})
	var ve *tokens.ValidationError
	switch {
	case errors.Is(err, tokens.ErrUserBlocked):
		s.audit.Record(audit.Event{Type: audit.TypeAuthDenied, Email: p.Email, IP: c.ClientIP(), Status: http.StatusBadRequest, Reason: "blocked",
			Details: map[string]string{"via": via}})
		return oauthRefuse(http.StatusBadRequest, "access_denied", p.Email+" is blocked by an administrator of this gateway")
	case errors.Is(err, tokens.ErrUnavailable):
		return oauthUnavailable("issue CLI credential", err)
	case errors.As(err, &ve):
		return oauthInternal("issue CLI credential (check LLMGATE_CLI_TOKEN_TTL against LLMGATE_TOKEN_MAX_TTL)", err)
	case err != nil:
		return oauthInternal("issue CLI credential", err)
	}
	s.audit.Record(audit.Event{Type: audit.TypeTokenCreate, Actor: p.Email, Email: p.Email, TokenID: rec.ID, IP: c.ClientIP(),
		Details: map[string]string{"name": rec.Name, "expires_at": rec.ExpiresAt.Format(time.RFC3339), "via": via}})
	oauthJSON(c, cliTokenResponse{
		AccessToken: raw, TokenType: "Bearer", ExpiresIn: int64(rec.ExpiresAt.Sub(s.cfg.Now()) / time.Second),
		Scope: tokens.ScopeLLM + " " + tokens.ScopeTokens, Email: rec.Email, TokenID: rec.ID, ExpiresAt: rec.ExpiresAt,
	})
	return nil
}

// tokenFromCode exchanges a loopback authorization code:
// grant_type=authorization_code&code&code_verifier&redirect_uri.
func (s *Server) tokenFromCode(c *gin.Context, form map[string][]string) *oauthError {
	code, verifier, redirect := first(form, "code"), first(form, "code_verifier"), first(form, "redirect_uri")
	switch {
	case code == "":
		return oauthRefuse(http.StatusBadRequest, "invalid_request", "code is required")
	case verifier == "":
		return oauthRefuse(http.StatusBadRequest, "invalid_request", "code_verifier is required (PKCE)")
	case redirect == "":
		return oauthRefuse(http.StatusBadRequest, "invalid_request", "redirect_uri is required")
	case !validVerifier(verifier):
		return oauthRefuse(http.StatusBadRequest, "invalid_request", "code_verifier must be 43 to 128 unreserved characters")
	}
	ctx := c.Request.Context()
	g, err := s.grants.TakeCode(ctx, code)
	switch {
	case errors.Is(err, grants.ErrNotFound):
		return s.deny(c, "", "authorization code unknown, used or expired",
			oauthRefuse(http.StatusBadRequest, "invalid_grant", "the authorization code is unknown, already used or expired; run llmgate login again"))
	case err != nil:
		return oauthUnavailable("take authorization code", err)
	}
	switch {
	case g.RedirectURI != redirect:
		return s.deny(c, g.Person.Email, "redirect_uri mismatch",
			oauthRefuse(http.StatusBadRequest, "invalid_grant", "redirect_uri does not match the one the code was issued to"))
	case !pkceMatches(verifier, g.Challenge):
		return s.deny(c, g.Person.Email, "code_verifier mismatch",
			oauthRefuse(http.StatusBadRequest, "invalid_grant", "code_verifier does not match the code_challenge"))
	}
	if e := s.issueCLI(c, g.Person, g.TokenName, "cli login"); e != nil {
		if e.Status >= 500 {
			if err := s.grants.RestoreCode(ctx, code, g); err != nil {
				s.log.Warn("restore authorization code", "err", err)
			}
		}
		return e
	}
	return nil
}

// deny audits a refused token request and returns e.
func (s *Server) deny(c *gin.Context, email, reason string, e *oauthError) *oauthError {
	s.audit.Record(audit.Event{Type: audit.TypeAuthDenied, Email: email, IP: c.ClientIP(), Status: e.Status, Reason: reason,
		Details: map[string]string{"path": c.Request.URL.Path}})
	return e
}
