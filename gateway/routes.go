package gateway

import (
	"net/http"
	"net/netip"

	"github.com/gin-gonic/gin"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/llmgate/llmgate/ui"
)

// routes registers every route of the gateway. This is the one place to
// read to know what the gateway answers.
func (s *Server) routes() error {
	gin.SetMode(gin.ReleaseMode)
	r := gin.New()
	r.RedirectTrailingSlash = false
	r.RedirectFixedPath = false
	r.HandleMethodNotAllowed = true
	if err := r.SetTrustedProxies(prefixStrings(s.cfg.TrustedProxies)); err != nil {
		return err
	}
	r.Use(s.recoverPanics(), s.measure(), s.logRequests(), s.securityHeaders())
	r.NoRoute(func(c *gin.Context) {
		s.fail(c, refuse(http.StatusNotFound, "not_found", "no route for %s %s", c.Request.Method, c.Request.URL.Path))
	})
	r.NoMethod(func(c *gin.Context) {
		s.fail(c, refuse(http.StatusMethodNotAllowed, "method_not_allowed", "%s is not allowed on %s", c.Request.Method, c.Request.URL.Path))
	})

	// Machine endpoints.
	r.GET("/healthz", s.handleHealthz)
	r.HEAD("/healthz", s.handleHealthz)
	r.GET("/readyz", s.handleReadyz)
	r.GET("/metrics", gin.WrapH(promhttp.HandlerFor(s.metrics.reg, promhttp.HandlerOpts{})))
	r.StaticFS("/static", http.FS(ui.Static()))

	// Browser pages and the SSO dance.
	pages := r.Group("/", setFamily(familyPage), s.loadSession())
	pages.GET("/oauth2/start", s.handleStart)
	pages.GET("/oauth2/callback", s.handleCallback)
	pages.POST("/oauth2/sign_out", s.requireCSRF(), s.handleSignOut)
	pages.GET("/oauth2/signed_out", s.handleSignedOut)
	pages.GET("/", s.requireSignIn(), s.handleHome)
	pages.POST("/ui/tokens", s.requireSignIn(), s.requireCSRF(), s.handleUICreateToken)
	pages.POST("/ui/tokens/:id/revoke", s.requireSignIn(), s.requireCSRF(), s.handleUIRevokeToken)
	pages.GET("/ui/usage", s.requireSignIn(), s.handleUIUsage)
	uiAdmin := pages.Group("/ui/admin", s.requireSignIn(), s.requireAdmin(), s.requireCSRF())
	uiAdmin.GET("/sessions", s.handleUIAdminSessions)
	uiAdmin.POST("/sessions/:id/end", s.handleUIAdminEndSession)
	uiAdmin.GET("/users", s.handleUIAdminUsers)
	uiAdmin.POST("/users/logout", s.handleUIAdminLogoutUser)
	uiAdmin.POST("/users/block", s.handleUIAdminBlock)
	uiAdmin.POST("/users/unblock", s.handleUIAdminUnblock)
	uiAdmin.GET("/tokens", s.handleUIAdminTokens)
	uiAdmin.POST("/tokens/:id/revoke", s.handleUIAdminRevokeToken)
	uiAdmin.GET("/usage", s.handleUIAdminUsage)
	uiAdmin.GET("/usage.csv", s.handleUIAdminUsageCSV)
	uiAdmin.GET("/audit", s.handleUIAdminAudit)
	uiAdmin.GET("/spend", s.handleUIAdminSpend)
	uiAdmin.POST("/spend", s.handleUISetBudget)

	// CLI and device sign-in pages (the person's side of them).
	pages.GET("/cli/authorize", s.checkCLIAuthorize(), s.requireSignIn(), s.handleCLIAuthorize)
	pages.POST("/cli/authorize", s.requireSession(), s.requireSameOrigin(), s.requireCSRF(), s.handleCLIConsent)
	pages.GET("/device", s.requireSignIn(), s.handleDevice)
	pages.POST("/device", s.requireSession(), s.requireSameOrigin(), s.requireCSRF(), s.handleDeviceDecide)

	// The gateway as an OAuth authorization server for the CLI and Claude
	// Code (public clients: no cookies, no CSRF; OAuth error shapes).
	oauth := r.Group("/", setFamily(familyAPI))
	oauth.GET("/.well-known/oauth-authorization-server", s.handleMetadata)
	oauth.POST("/api/device/code", s.handleDeviceCode)
	oauth.POST("/oauth/device_authorization", s.handleDeviceCode)
	oauth.POST("/api/cli/token", s.handleToken)
	oauth.POST("/api/device/token", s.handleToken)
	oauth.POST("/oauth/token", s.handleToken)
	oauth.POST("/oauth/revoke", s.handleRevoke)

	r.GET("/.well-known/jwks.json", s.handleJWKS)
	r.POST("/oauth2/backchannel_logout", setFamily(familyAPI), s.handleBackchannelLogout)
	// Claude Code's /usage, with the bearer it calls the LLM API with (SPEC §8).
	r.GET("/api/oauth/usage", setFamily(familyAPI), s.handleOAuthUsage)

	// Claude Code and Claude Desktop (SPEC §8).
	r.HEAD("/api/hello", s.handleHello)
	r.GET("/api/hello", s.handleHello)
	r.GET("/managed/settings", setFamily(familyAPI), s.handleManagedSettings)
	for path := range otlpPaths {
		r.POST(path, setFamily(familyAPI), s.handleOTLP)
	}

	// JSON API: API token with scope "tokens", or session cookie (+CSRF on writes).
	api := r.Group("/api", setFamily(familyAPI), s.loadToken(), s.loadSession(), s.requireUser(), s.requireCSRF())
	api.GET("/me", s.handleMe)
	api.POST("/tokens", s.handleCreateToken)
	api.GET("/tokens", s.handleListTokens)
	api.GET("/tokens/:id", s.handleGetToken)
	api.DELETE("/tokens/:id", s.handleRevokeToken)
	api.GET("/tokens/:id/usage", s.handleTokenUsage)
	api.GET("/usage", s.handleUsage)
	api.GET("/requests", s.handleRequests)
	admin := api.Group("/admin", s.requireAdmin())
	admin.GET("/sessions", s.handleAdminSessions)
	admin.GET("/sessions/stats", s.handleAdminSessionStats)
	admin.DELETE("/sessions/:id", s.handleAdminDeleteSession)
	admin.POST("/sessions/revoke-user", s.handleAdminRevokeUser)
	admin.GET("/tokens", s.handleAdminTokens)
	admin.DELETE("/tokens/:id", s.handleAdminRevokeToken)
	admin.POST("/users/:email/block", s.handleAdminBlock)
	admin.POST("/users/:email/unblock", s.handleAdminUnblock)
	admin.PUT("/users/:email/budget", s.handleAdminSetBudget)
	admin.GET("/users", s.handleAdminUsers)
	admin.GET("/usage", s.handleAdminUsage)
	admin.GET("/audit", s.handleAdminAudit)

	// The OpenResty gateway's names, for teams migrating from it.
	api.POST("/token/generate", s.handleCreateToken)
	api.GET("/token/list", s.handleListTokens)
	api.GET("/token/info", s.handleGetToken)
	api.POST("/token/revoke", s.handleRevokeToken)

	s.engine = r
	return nil
}

func prefixStrings(ps []netip.Prefix) []string {
	out := make([]string, len(ps))
	for i, p := range ps {
		out[i] = p.String()
	}
	return out
}
