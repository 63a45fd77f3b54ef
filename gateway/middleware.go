package gateway

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/llmgate/llmgate/internal/audit"
	"github.com/llmgate/llmgate/sessions"
	"github.com/llmgate/llmgate/tokens"
	"github.com/llmgate/llmgate/ui"
)

const (
	principalKey = "llmgate.principal"
	sessionKey   = "llmgate.session"
	claimsKey    = "llmgate.claims"
)

// principal is whoever a request is authenticated as.
type principal struct {
	Email   string
	Name    string
	Subject string
	Groups  []string
	Admin   bool
	// Via is "session" (browser cookie) or "token" (API token).
	Via string
	// TokenID is the id of the API token, when Via is "token".
	TokenID string
}

// logRequests writes one line per request. It logs the path but never the
// query string, headers or body: those carry codes, states and tokens.
func (s *Server) logRequests() gin.HandlerFunc {
	return func(c *gin.Context) {
		start := time.Now()
		c.Next()
		route := c.FullPath()
		attrs := []any{
			"method", c.Request.Method,
			"route", route,
			"path", c.Request.URL.Path,
			"status", c.Writer.Status(),
			"duration_us", time.Since(start).Microseconds(),
			"client_ip", c.ClientIP(),
		}
		if p, ok := c.Get(principalKey); ok {
			attrs = append(attrs, "user", p.(*principal).Email)
		}
		if route == "/healthz" || route == "/readyz" || route == "/metrics" {
			s.log.Debug("request", attrs...)
			return
		}
		s.log.Info("request", attrs...)
	}
}

// metrics are the gateway's Prometheus collectors, on a registry of its own.
type metrics struct {
	reg       *prometheus.Registry
	requests  *prometheus.CounterVec
	latency   *prometheus.HistogramVec
	proxied   *prometheus.CounterVec
	refusals  *prometheus.CounterVec
	upLatency *prometheus.HistogramVec
}

func newMetrics(reg *prometheus.Registry) *metrics {
	m := &metrics{
		reg: reg,
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "llmgate_http_requests_total",
			Help: "HTTP requests answered, by route template, method and status code.",
		}, []string{"route", "method", "code"}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "llmgate_http_request_duration_seconds",
			Help:    "Time to answer an HTTP request (to the end of the body), by route template.",
			Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60, 300},
		}, []string{"route"}),
	}
	m.proxied = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "llmgate_proxy_requests_total",
		Help: "Proxied API calls answered, by upstream and status code (refusals have upstream \"\" when unrouted).",
	}, []string{"upstream", "code"})
	m.refusals = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "llmgate_proxy_refusals_total",
		Help: "API calls refused before the upstream, by reason code.",
	}, []string{"reason"})
	m.upLatency = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "llmgate_proxy_duration_seconds",
		Help:    "Time from receiving a proxied call to the end of its response body, by upstream.",
		Buckets: []float64{.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600},
	}, []string{"upstream"})
	reg.MustRegister(m.requests, m.latency, m.proxied, m.refusals, m.upLatency,
		prometheus.NewGoCollector(),
		prometheus.NewProcessCollector(prometheus.ProcessCollectorOpts{}))
	return m
}

// measure counts requests by route template, never by raw path, so label
// cardinality stays bounded.
func (s *Server) measure() gin.HandlerFunc {
	return func(c *gin.Context) {
		start := time.Now()
		c.Next()
		route := c.FullPath()
		if route == "" {
			route = "unmatched"
		}
		s.metrics.requests.WithLabelValues(route, c.Request.Method, strconv.Itoa(c.Writer.Status())).Inc()
		s.metrics.latency.WithLabelValues(route).Observe(time.Since(start).Seconds())
	}
}

// recoverPanics turns a panic into a 500 in the route's family.
func (s *Server) recoverPanics() gin.HandlerFunc {
	return gin.CustomRecoveryWithWriter(nil, func(c *gin.Context, v any) {
		s.log.Error("panic while handling request", "route", c.FullPath(), "panic", v)
		s.fail(c, &apiError{Status: http.StatusInternalServerError, Code: "internal_error", Message: "internal error; the gateway's log has the details"})
	})
}

// The Content-Security-Policy of every answer: no inline script, nothing
// from other origins, no framing. (No form-action: Chrome applies it to the
// redirect that sign-out follows to the identity provider's logout page.)
const csp = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; " +
	"connect-src 'self'; frame-ancestors 'none'; base-uri 'none'"

// securityHeaders sets the headers every answer carries.
func (s *Server) securityHeaders() gin.HandlerFunc {
	return func(c *gin.Context) {
		h := c.Writer.Header()
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("X-Frame-Options", "DENY")
		// same-origin, not no-referrer: with no-referrer browsers send
		// "Origin: null" on form posts, which the CSRF origin check refuses.
		h.Set("Referrer-Policy", "same-origin")
		h.Set("Content-Security-Policy", csp)
		if s.secure {
			h.Set("Strict-Transport-Security", "max-age=31536000; includeSubDomains")
		}
		c.Next()
	}
}

// sessionCookieName is __Host-llmgate on HTTPS and llmgate on plain HTTP
// (browsers refuse __Host- cookies without Secure).
func (s *Server) sessionCookieName() string {
	if s.secure {
		return "__Host-llmgate"
	}
	return "llmgate"
}

// loadSession resolves the session cookie, when there is one, and stores
// the session and its principal in c. A missing, expired or idle session
// is not an error here: the require* middleware decide.
func (s *Server) loadSession() gin.HandlerFunc {
	return func(c *gin.Context) {
		if currentPrincipal(c) != nil {
			return // already authenticated by an API token
		}
		ck, err := c.Request.Cookie(s.sessionCookieName())
		if err != nil || ck.Value == "" {
			return
		}
		sess, err := s.sessions.Get(c.Request.Context(), ck.Value)
		switch {
		case errors.Is(err, sessions.ErrNotFound):
			s.clearCookie(c, s.sessionCookieName())
			return
		case err != nil:
			s.fail(c, unavailable("load session", err))
			return
		}
		if s.tokens.Blocked(sess.Email) { // blocked on another replica since: end it here too
			s.sessions.Delete(c.Request.Context(), ck.Value)
			s.clearCookie(c, s.sessionCookieName())
			return
		}
		c.Set(sessionKey, &sess)
		c.Set(principalKey, &principal{
			Email: sess.Email, Name: sess.Name, Subject: sess.Subject,
			Groups: sess.Groups, Admin: sess.Admin, Via: "session",
		})
	}
}

// loadToken authenticates JSON API calls that carry an API token
// (Authorization: Bearer, or x-api-key) with scope "tokens". A bad token is
// refused outright rather than falling back to the cookie.
func (s *Server) loadToken() gin.HandlerFunc {
	return func(c *gin.Context) {
		raw := bearerToken(c.Request)
		if raw == "" {
			return
		}
		cl, err := s.tokens.Verify(c.Request.Context(), raw, tokens.ScopeTokens)
		if err != nil {
			e := tokenError("verify token", err)
			if e.Status == http.StatusUnauthorized {
				c.Header("WWW-Authenticate", `Bearer error="invalid_token"`)
			}
			s.audit.Record(audit.Event{Type: audit.TypeAPIRefused, IP: c.ClientIP(), Status: e.Status, Reason: err.Error(),
				Details: map[string]string{"path": c.Request.URL.Path}})
			s.fail(c, e)
			return
		}
		// The token carries no groups: take those of the person's last sign-in.
		var groups []string
		if p, err := s.users.Get(c.Request.Context(), cl.Email); err == nil {
			groups = p.Groups
		}
		c.Set(claimsKey, cl)
		c.Set(principalKey, &principal{
			Email: cl.Email, Name: cl.Name, Subject: cl.Subject, Groups: groups,
			Admin: s.rp.IsAdmin(cl.Email, groups), Via: "token", TokenID: cl.ID,
		})
	}
}

// bearerToken is the credential of an API call: Authorization: Bearer,
// or x-api-key as Anthropic clients send it.
func bearerToken(r *http.Request) string {
	if h := r.Header.Get("Authorization"); len(h) > 7 && strings.EqualFold(h[:7], "bearer ") {
		return strings.TrimSpace(h[7:])
	}
	return strings.TrimSpace(r.Header.Get("X-Api-Key"))
}

func currentSession(c *gin.Context) *sessions.Session {
	if v, ok := c.Get(sessionKey); ok {
		return v.(*sessions.Session)
	}
	return nil
}

func currentClaims(c *gin.Context) *tokens.Claims {
	if v, ok := c.Get(claimsKey); ok {
		return v.(*tokens.Claims)
	}
	return nil
}

func currentPrincipal(c *gin.Context) *principal {
	if v, ok := c.Get(principalKey); ok {
		return v.(*principal)
	}
	return nil
}

func currentUser(c *gin.Context) *ui.User {
	p := currentPrincipal(c)
	if p == nil {
		return nil
	}
	return &ui.User{Email: p.Email, Name: p.Name, Groups: p.Groups, Admin: p.Admin}
}

// requireSignIn sends a browser without a session to sign in, coming back
// to the page it asked for; a form posted without one gets a page saying
// the session has ended.
func (s *Server) requireSignIn() gin.HandlerFunc {
	return func(c *gin.Context) {
		if currentSession(c) != nil {
			return
		}
		if c.Request.Method != http.MethodGet && c.Request.Method != http.MethodHead {
			// A form sent after the session ended: say so rather than
			// replaying it as a GET after sign-in.
			s.fail(c, refuse(http.StatusUnauthorized, "session_expired",
				"your session has ended (it expired, you signed out, or an administrator ended it), so this was not done"))
			return
		}
		rd := c.Request.URL.Path
		if c.Request.URL.RawQuery != "" {
			rd += "?" + c.Request.URL.RawQuery
		}
		c.Redirect(http.StatusFound, "/oauth2/start?rd="+url.QueryEscape(rd))
		c.Abort()
	}
}

// requireUser refuses API calls that carry no valid credential.
func (s *Server) requireUser() gin.HandlerFunc {
	return func(c *gin.Context) {
		if currentPrincipal(c) == nil {
			s.fail(c, refuse(http.StatusUnauthorized, "not_signed_in",
				"not signed in: sign in at %s or send an API token with scope \"tokens\" as Authorization: Bearer", s.cfg.PublicURL))
		}
	}
}

// csrfToken is the CSRF token of the request's session: an HMAC of the
// session id, so it needs no storage and dies with the session.
func (s *Server) csrfToken(c *gin.Context) string {
	sess := currentSession(c)
	if sess == nil {
		return ""
	}
	return csrfFor(s.csrfKey, sess.ID)
}

func csrfFor(key []byte, sessionID string) string {
	m := hmac.New(sha256.New, key)
	m.Write([]byte(sessionID))
	return base64.RawURLEncoding.EncodeToString(m.Sum(nil))
}

// requireCSRF protects state-changing requests authenticated by the
// session cookie: they must carry the session's CSRF token in the
// X-CSRF-Token header or a csrf_token form field, and, when the browser
// says where they come from, come from the gateway's own origin.
// Requests authenticated by an API token need neither.
func (s *Server) requireCSRF() gin.HandlerFunc {
	return func(c *gin.Context) {
		switch c.Request.Method {
		case http.MethodGet, http.MethodHead, http.MethodOptions:
			return
		}
		sess := currentSession(c)
		if sess == nil {
			return
		}
		if o := c.Request.Header.Get("Origin"); o != "" && o != s.origin() {
			s.fail(c, refuse(http.StatusForbidden, "csrf_origin", "cross-origin request refused: %s is not this gateway's origin", o))
			return
		}
		got := c.Request.Header.Get("X-CSRF-Token")
		if got == "" {
			got = c.PostForm("csrf_token")
		}
		want := csrfFor(s.csrfKey, sess.ID)
		if got == "" || !hmac.Equal([]byte(got), []byte(want)) {
			s.fail(c, refuse(http.StatusForbidden, "csrf_invalid",
				"missing or wrong CSRF token: send the csrf_token from GET /api/me in the X-CSRF-Token header"))
			return
		}
	}
}

// origin is the gateway's own origin, scheme://host[:port].
func (s *Server) origin() string {
	return s.cfg.PublicURL.Scheme + "://" + s.cfg.PublicURL.Host
}

func (s *Server) setCookie(c *gin.Context, name, value string, expires time.Time) {
	http.SetCookie(c.Writer, &http.Cookie{
		Name: name, Value: value, Path: "/", Expires: expires,
		Secure: s.secure, HttpOnly: true, SameSite: http.SameSiteLaxMode,
	})
}

func (s *Server) clearCookie(c *gin.Context, name string) {
	http.SetCookie(c.Writer, &http.Cookie{
		Name: name, Value: "", Path: "/", MaxAge: -1,
		Secure: s.secure, HttpOnly: true, SameSite: http.SameSiteLaxMode,
	})
}
