package gateway

import (
	"context"
	"crypto/hkdf"
	"crypto/sha256"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"sync/atomic"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/go-redis/redis_rate/v10"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"

	"github.com/llmgate/llmgate/internal/audit"
	"github.com/llmgate/llmgate/internal/grants"
	"github.com/llmgate/llmgate/internal/h1transport"
	"github.com/llmgate/llmgate/internal/usage"
	"github.com/llmgate/llmgate/internal/users"
	"github.com/llmgate/llmgate/oidc"
	"github.com/llmgate/llmgate/sessions"
	"github.com/llmgate/llmgate/tokens"
	"github.com/llmgate/llmgate/ui"
)

// Config is the gateway's own configuration.
type Config struct {
	// PublicURL is the external base URL (LLMGATE_PUBLIC_URL), without a
	// trailing slash. Its scheme decides the cookie names and Secure flags.
	PublicURL *url.URL
	// Secret is LLMGATE_SECRET; the gateway derives its MAC keys from it.
	Secret []byte
	// TrustedProxies are the peers whose X-Forwarded-For / X-Real-IP is
	// believed (LLMGATE_TRUSTED_PROXIES). Empty trusts none.
	TrustedProxies []netip.Prefix
	// ShutdownGrace is how long requests may finish after shutdown begins.
	ShutdownGrace time.Duration
	// ShutdownDelay is how long the server keeps accepting requests, with
	// /readyz answering 503, after shutdown begins and before it stops
	// accepting connections, so load balancers take it out of rotation
	// first (LLMGATE_SHUTDOWN_DELAY). Zero stops accepting at once.
	ShutdownDelay time.Duration
	// Version is shown by /healthz.
	Version string
	// TokenMaxTTL bounds the lifetimes the token form offers (default 90d).
	TokenMaxTTL time.Duration
	// RequireLoginWithin, when positive, stops the API tokens of people who
	// have not signed in through SSO for this long
	// (LLMGATE_TOKEN_REQUIRE_LOGIN_WITHIN).
	RequireLoginWithin time.Duration
	// CLITokenTTL is the lifetime of the credential `llmgate login` obtains
	// (LLMGATE_CLI_TOKEN_TTL, default 30d).
	CLITokenTTL time.Duration
	// GatewayTokenTTL is the lifetime of the access tokens of Claude Code
	// sign-ins (LLMGATE_GATEWAY_TOKEN_TTL, default 1h).
	GatewayTokenTTL time.Duration
	// GatewayRefreshTTL is the lifetime of a Claude Code sign-in, its
	// refresh-token family (LLMGATE_GATEWAY_REFRESH_TTL, default 14d).
	GatewayRefreshTTL time.Duration
	// Proxy configures the proxied API.
	Proxy ProxyConfig
	// ClaudeCode holds the Claude Code policies: models enforced on every
	// proxied call of the people they match, and their managed settings.
	ClaudeCode ClaudeCodeConfig
	// OTLPEndpoint is the OTLP/HTTP collector Claude Code telemetry is
	// forwarded to (LLMGATE_OTLP_ENDPOINT); nil accepts and drops it.
	OTLPEndpoint *url.URL
	// IDPTokenAudiences, when not empty, lets the identity provider's own
	// ID and access tokens with one of these audiences be API credentials
	// (LLMGATE_IDP_TOKEN_AUDIENCES).
	IDPTokenAudiences []string
	// KeyPrefix starts the gateway's own Redis keys (rate limits);
	// default "llmgate:".
	KeyPrefix string
	Now       func() time.Time
	Logger    *slog.Logger
}

// Check is one readiness condition reported by /readyz.
type Check struct {
	Name string
	// Check returns nil when the dependency is usable.
	Check func(ctx context.Context) error
}

// Deps are the parts the gateway joins together.
type Deps struct {
	Sessions *sessions.Store
	RP       *oidc.RelyingParty
	Tokens   *tokens.Service
	// Usage records proxied calls.
	Usage *usage.Recorder
	// Audit records security events.
	Audit *audit.Log
	// Users remembers who signed in, for the users view, re-checks and
	// RequireLoginWithin.
	Users *users.Store
	// Redis backs rate limits.
	Redis redis.UniversalClient
	// Checks are run by /readyz in addition to the relying party's discovery.
	Checks []Check
}

// Server is the gateway. Create it with New.
type Server struct {
	cfg      Config
	log      *slog.Logger
	sessions *sessions.Store
	rp       *oidc.RelyingParty
	tokens   *tokens.Service
	checks   []Check
	pages    *ui.Renderer
	engine   *gin.Engine

	csrfKey  []byte
	stateKey []byte
	sealKey  []byte
	secure   bool // PublicURL is https

	metrics  *metrics
	draining atomic.Bool

	// The proxied API.
	proxyCfg    ProxyConfig
	proxyRoutes []route
	// upstreamTransport carries every proxied call (TLS ones through its fallback).
	upstreamTransport *h1transport.Transport
	strip             []string // identity headers removed from every proxied request
	usage             *usage.Recorder
	audit             *audit.Log
	users             *users.Store
	limiter           *redis_rate.Limiter
	rateKeyPrefix     string
	spend             spendState
	streams           openStreams // SSE answers in flight, ended with an event when the grace is over

	// Claude Code and Claude Desktop (SPEC §8).
	policies []*policy
	groups   groupCache
	idp      idpCache
	otlp     *http.Client

	// CLI, device and Claude Code sign-ins.
	grants *grants.Store
}

// New builds the gateway and its routes.
func New(cfg Config, deps Deps) (*Server, error) {
	if cfg.PublicURL == nil {
		return nil, errors.New("gateway: PublicURL is required")
	}
	if len(cfg.Secret) < 32 {
		return nil, errors.New("gateway: Secret must be at least 32 bytes")
	}
	if deps.Sessions == nil || deps.RP == nil || deps.Tokens == nil || deps.Usage == nil || deps.Audit == nil || deps.Users == nil || deps.Redis == nil {
		return nil, errors.New("gateway: Sessions, RP, Tokens, Usage, Audit, Users and Redis are required")
	}
	if cfg.TokenMaxTTL <= 0 {
		cfg.TokenMaxTTL = 90 * 24 * time.Hour
	}
	if cfg.CLITokenTTL <= 0 {
		cfg.CLITokenTTL = 30 * 24 * time.Hour
	}
	if cfg.GatewayTokenTTL <= 0 {
		cfg.GatewayTokenTTL = time.Hour
	}
	if cfg.GatewayRefreshTTL <= 0 {
		cfg.GatewayRefreshTTL = 14 * 24 * time.Hour
	}
	if cfg.KeyPrefix == "" {
		cfg.KeyPrefix = "llmgate:"
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.ShutdownGrace <= 0 {
		cfg.ShutdownGrace = 30 * time.Second
	}
	pages, err := ui.NewRenderer()
	if err != nil {
		return nil, err
	}
	s := &Server{
		cfg:      cfg,
		log:      cfg.Logger,
		sessions: deps.Sessions,
		rp:       deps.RP,
		tokens:   deps.Tokens,
		checks:   deps.Checks,
		pages:    pages,
		secure:   cfg.PublicURL.Scheme == "https",
		csrfKey:  deriveKey(cfg.Secret, "llmgate csrf v1"),
		stateKey: deriveKey(cfg.Secret, "llmgate login state v1"),
		sealKey:  deriveKey(cfg.Secret, "llmgate session seal v1"),
		metrics:  newMetrics(prometheus.NewRegistry()),
		usage:    deps.Usage,
		audit:    deps.Audit,
		users:    deps.Users,
		limiter:  redis_rate.NewLimiter(deps.Redis),
		grants:   grants.New(deps.Redis, grants.Config{Prefix: cfg.KeyPrefix, Now: cfg.Now}),
	}
	s.rateKeyPrefix = cfg.KeyPrefix + "rate:"
	if s.policies, err = newPolicies(cfg.ClaudeCode); err != nil {
		return nil, err
	}
	s.otlp = newOTLPClient()
	s.metrics.reg.MustRegister(deps.Audit.Collectors()...)
	s.metrics.reg.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{
		Name: "llmgate_usage_dropped_total",
		Help: "Usage records dropped because the recorder's queue was full (Redis too slow or down).",
	}, func() float64 { return float64(deps.Usage.Dropped()) }))
	if err := s.routes(); err != nil {
		return nil, err
	}
	if err := s.newProxy(cfg.Proxy); err != nil {
		return nil, err
	}
	s.initSpend()
	return s, nil
}

// deriveKey derives a 32-byte key for one purpose from the master secret.
func deriveKey(secret []byte, purpose string) []byte {
	k, err := hkdf.Key(sha256.New, secret, nil, purpose, 32)
	if err != nil {
		panic(fmt.Sprintf("hkdf: %v", err)) // only for lengths out of range
	}
	return k
}

// Handler is the gateway's HTTP handler: proxied API paths take a lean
// path of their own, everything else goes through the router.
func (s *Server) Handler() http.Handler { return s }

// Serve answers on ln until ctx ends, then stops taking new connections,
// reports not-ready, and lets requests in flight finish within the grace
// period before closing what is left.
func (s *Server) Serve(ctx context.Context, ln net.Listener) error {
	srv := &http.Server{
		Handler:           s,
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       2 * time.Minute,
		MaxHeaderBytes:    1 << 20,
		ErrorLog:          slog.NewLogLogger(s.log.Handler(), slog.LevelDebug),
	}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	recheckCtx, stopRecheck := context.WithCancel(ctx)
	defer stopRecheck()
	go s.runRecheck(recheckCtx)
	select {
	case err := <-errc:
		return fmt.Errorf("serve: %w", err)
	case <-ctx.Done():
	}
	s.draining.Store(true)
	if d := s.cfg.ShutdownDelay; d > 0 {
		s.log.Info("shutting down: /readyz answers 503; still serving until load balancers notice", "delay", d.String())
		select {
		case <-time.After(d):
		case err := <-errc:
			return fmt.Errorf("serve: %w", err)
		}
	}
	s.log.Info("shutting down: letting requests in flight finish", "grace", s.cfg.ShutdownGrace.String())
	sctx, cancel := context.WithTimeout(context.Background(), s.cfg.ShutdownGrace)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		// Streams still open get an error event of their API family
		// rather than a cut connection, so clients can tell a restart
		// from a broken network and retry.
		if n := s.streams.end(); n > 0 {
			s.log.Warn("grace period over; ending open streams with an error event", "streams", n)
			ectx, ecancel := context.WithTimeout(context.Background(), streamEndWait)
			_ = srv.Shutdown(ectx) // returns when their handlers have written it
			ecancel()
		}
		s.log.Warn("grace period over; closing remaining connections", "err", err)
		srv.Close()
	}
	if s.upstreamTransport != nil {
		s.upstreamTransport.CloseIdleConnections()
	}
	if err := <-errc; err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("serve: %w", err)
	}
	return nil
}
