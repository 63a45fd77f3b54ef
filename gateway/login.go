package gateway

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"net/http"
	"strings"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/llmgate/llmgate/internal/audit"
	"github.com/llmgate/llmgate/internal/users"
	"github.com/llmgate/llmgate/oidc"
	"github.com/llmgate/llmgate/sessions"
	"github.com/llmgate/llmgate/ui"
)

// loginTTL is how long a started sign-in may take.
const loginTTL = 10 * time.Minute

// loginCookieName is per login, so sign-ins started in two tabs do not
// overwrite each other's binding.
func (s *Server) loginCookieName(state string) string {
	h := sha256.Sum256([]byte(state))
	name := "llmgate-login-" + hex.EncodeToString(h[:6])
	if s.secure {
		return "__Host-" + name
	}
	return name
}

// stateMAC binds a login's state to the browser that started it: the
// cookie holds a MAC of the state under a key derived from the secret.
func (s *Server) stateMAC(state string) string {
	m := hmac.New(sha256.New, s.stateKey)
	m.Write([]byte(state))
	return base64.RawURLEncoding.EncodeToString(m.Sum(nil))
}

// handleStart begins SSO: GET /oauth2/start?rd=PATH.
func (s *Server) handleStart(c *gin.Context) {
	rd := safeRedirect(c.Query("rd"))
	f := oidc.NewFlow()
	authURL, err := s.rp.AuthCodeURL(f)
	if err != nil {
		s.fail(c, &apiError{Status: http.StatusServiceUnavailable, Code: "idp_unavailable",
			Message: "the identity provider has not answered the gateway yet; try again in a minute", cause: err})
		return
	}
	err = s.sessions.SaveLogin(c.Request.Context(), f.State, sessions.LoginFlow{
		Nonce: f.Nonce, PKCEVerifier: f.Verifier, RedirectPath: rd, CreatedAt: s.cfg.Now(),
	}, loginTTL)
	if err != nil {
		s.fail(c, unavailable("save login", err))
		return
	}
	s.setCookie(c, s.loginCookieName(f.State), s.stateMAC(f.State), s.cfg.Now().Add(loginTTL))
	c.Header("Cache-Control", "no-store")
	c.Redirect(http.StatusFound, authURL)
}

// handleCallback finishes SSO: GET /oauth2/callback?code=…&state=….
func (s *Server) handleCallback(c *gin.Context) {
	ctx := c.Request.Context()
	q := c.Request.URL.Query()
	state := q.Get("state")
	if state == "" || len(state) > 512 {
		s.fail(c, refuse(http.StatusBadRequest, "login_state", "this sign-in link has no valid state; start sign-in again"))
		return
	}
	cookieName := s.loginCookieName(state)
	ck, err := c.Request.Cookie(cookieName)
	if err != nil || !hmac.Equal([]byte(ck.Value), []byte(s.stateMAC(state))) {
		s.log.Warn("login refused", "reason", "state not bound to this browser")
		s.fail(c, refuse(http.StatusBadRequest, "login_state",
			"this sign-in was not started in this browser, or it took longer than %d minutes; start sign-in again", int(loginTTL.Minutes())))
		return
	}
	s.clearCookie(c, cookieName)
	flow, err := s.sessions.TakeLogin(ctx, state)
	switch {
	case errors.Is(err, sessions.ErrNotFound):
		s.log.Warn("login refused", "reason", "state used or expired")
		s.fail(c, refuse(http.StatusBadRequest, "login_expired", "this sign-in has already been used or has expired; start sign-in again"))
		return
	case err != nil:
		s.fail(c, unavailable("take login", err))
		return
	}
	if e := q.Get("error"); e != "" {
		msg := "the identity provider refused the sign-in (" + e + ")"
		if d := q.Get("error_description"); d != "" {
			msg += ": " + d
		}
		s.log.Warn("login refused by identity provider", "error", e)
		s.fail(c, refuse(http.StatusForbidden, "idp_refused", "%s", msg))
		return
	}
	code := q.Get("code")
	if code == "" {
		s.fail(c, refuse(http.StatusBadRequest, "login_code", "the identity provider sent no authorization code; start sign-in again"))
		return
	}
	id, err := s.rp.Exchange(ctx, code, oidc.Flow{State: state, Nonce: flow.Nonce, Verifier: flow.PKCEVerifier})
	if err != nil {
		s.loginFailed(c, err)
		return
	}
	if s.tokens.Blocked(id.Email) {
		s.log.Warn("login refused", "reason", "blocked", "user", id.Email)
		s.audit.Record(audit.Event{Type: audit.TypeLoginRefused, Email: id.Email, IP: c.ClientIP(), Status: http.StatusForbidden, Reason: "blocked"})
		s.fail(c, refuse(http.StatusForbidden, "user_blocked",
			"%s is blocked by an administrator of this gateway, so sign-in is refused. Ask your administrator to unblock you.", id.Email))
		return
	}
	// A new session id at every login: no fixation. The old one ends.
	if old, err := c.Request.Cookie(s.sessionCookieName()); err == nil && old.Value != "" {
		if err := s.sessions.Delete(ctx, old.Value); err != nil {
			s.log.Warn("delete previous session", "err", err)
		}
	}
	sess, err := s.sessions.Create(ctx, sessions.Session{
		Email: id.Email, Subject: id.Subject, Name: id.Name, Groups: id.Groups, Admin: id.Admin,
		Issuer: id.Issuer, IDPSessionID: id.SessionID, IDTokenHint: s.seal(id.IDToken),
		IP: c.ClientIP(), UserAgent: truncate(c.Request.UserAgent(), 256),
	})
	if err != nil {
		s.fail(c, unavailable("create session", err))
		return
	}
	if err := s.users.Login(ctx, users.Person{Email: id.Email, Name: id.Name, Subject: id.Subject, Issuer: id.Issuer,
		Groups: id.Groups, Admin: id.Admin}, id.RefreshToken); err != nil {
		s.fail(c, unavailable("record login", err))
		return
	}
	s.setCookie(c, s.sessionCookieName(), sess.ID, sess.ExpiresAt)
	s.audit.Record(audit.Event{Type: audit.TypeLogin, Email: id.Email, Actor: id.Email, IP: c.ClientIP()})
	c.Header("Cache-Control", "no-store")
	c.Redirect(http.StatusFound, safeRedirect(flow.RedirectPath))
}

// loginFailed maps a failed exchange to a page that says why.
func (s *Server) loginFailed(c *gin.Context, err error) {
	var pe *oidc.PolicyError
	switch {
	case errors.As(err, &pe):
		s.audit.Record(audit.Event{Type: audit.TypeLoginRefused, Email: pe.Email, IP: c.ClientIP(), Status: http.StatusForbidden, Reason: pe.Reason})
		s.fail(c, refuse(http.StatusForbidden, "login_"+pe.Reason, "%s. Ask your administrator if you need access.", pe.Error()))
	case errors.Is(err, oidc.ErrNonce), errors.Is(err, oidc.ErrIDToken):
		s.log.Warn("login refused", "reason", "id token rejected", "err", err)
		s.fail(c, refuse(http.StatusUnauthorized, "login_id_token", "the identity provider's answer could not be verified; start sign-in again"))
	case errors.Is(err, oidc.ErrExchange):
		s.log.Warn("login refused", "reason", "code exchange failed", "err", err)
		s.fail(c, refuse(http.StatusUnauthorized, "login_exchange", "the sign-in could not be completed with the identity provider; start sign-in again"))
	default:
		s.fail(c, &apiError{Status: http.StatusBadGateway, Code: "idp_error",
			Message: "the identity provider could not be reached; try again shortly", cause: err})
	}
}

// handleSignOut ends this session: POST /oauth2/sign_out. Browsers are sent
// on to the provider's logout when it has one; JSON callers get the URL.
func (s *Server) handleSignOut(c *gin.Context) {
	sess := currentSession(c)
	logoutURL := ""
	if sess != nil {
		if err := s.sessions.Delete(c.Request.Context(), sess.ID); err != nil {
			s.fail(c, unavailable("delete session", err))
			return
		}
		s.audit.Record(audit.Event{Type: audit.TypeLogout, Email: sess.Email, Actor: sess.Email, IP: c.ClientIP()})
		hint, err := s.open(sess.IDTokenHint)
		if err != nil {
			s.log.Warn("sign-out without id_token_hint", "err", err)
		}
		logoutURL = s.rp.LogoutURL(hint, s.cfg.PublicURL.String()+"/oauth2/signed_out")
	}
	s.clearCookie(c, s.sessionCookieName())
	c.Header("Cache-Control", "no-store")
	if strings.Contains(c.GetHeader("Accept"), "application/json") {
		c.JSON(http.StatusOK, gin.H{"signed_out": true, "logout_url": logoutURL})
		return
	}
	if logoutURL == "" {
		logoutURL = "/oauth2/signed_out"
	}
	c.Redirect(http.StatusSeeOther, logoutURL)
}

// handleSignedOut confirms a sign-out: GET /oauth2/signed_out.
func (s *Server) handleSignedOut(c *gin.Context) {
	s.render(c, http.StatusOK, ui.SignedOutPage{Layout: ui.Layout{Title: "Signed out"}})
}

func truncate(s string, n int) string {
	if len(s) > n {
		return s[:n]
	}
	return s
}
