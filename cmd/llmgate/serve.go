package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/url"
	"os"
	"time"

	"github.com/llmgate/llmgate/gateway"
	"github.com/llmgate/llmgate/internal/audit"
	"github.com/llmgate/llmgate/internal/logbuf"
	"github.com/llmgate/llmgate/internal/redisconn"
	"github.com/llmgate/llmgate/internal/usage"
	"github.com/llmgate/llmgate/internal/users"
	"github.com/llmgate/llmgate/oidc"
	"github.com/llmgate/llmgate/sessions"
	"github.com/llmgate/llmgate/tokens"
)

func cmdServe(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	cfg, warnings, err := LoadConfig(args, os.Getenv, os.Environ(), stderr)
	if errors.Is(err, flag.ErrHelp) {
		return exitOK
	}
	if err != nil {
		// Warnings first: a typo warning often explains a "required" error.
		for _, w := range warnings {
			fmt.Fprintf(stderr, "llmgate serve: warning: %s\n", w)
		}
		fmt.Fprintf(stderr, "llmgate serve: configuration is not valid:\n%v\n\nRun 'llmgate serve --help' for every setting.\n", err)
		return exitUsage
	}
	// Every write to stderr from here on goes through one buffer, so that
	// logging a call never holds the call up, and lines stay in order.
	lw := logbuf.New(stderr, 0, 0)
	defer lw.Close()
	stderr = lw
	log := newLogger(cfg.LogFormat, stderr)
	for _, w := range warnings {
		log.Warn(w)
	}
	ln, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		log.Error("cannot listen", "LLMGATE_LISTEN", cfg.Listen, "err", err)
		return exitFailure
	}
	if err := runGateway(ctx, cfg, ln, log); err != nil {
		log.Error("gateway stopped", "err", err)
		return exitFailure
	}
	return exitOK
}

// newLogger makes the process logger: JSON (default) or text on w.
func newLogger(format string, w io.Writer) *slog.Logger {
	if format == "text" {
		return slog.New(slog.NewTextHandler(w, nil))
	}
	return slog.New(slog.NewJSONHandler(w, nil))
}

// redisStartWait is how long serve waits for Redis at start.
const redisStartWait = time.Minute

// runGateway wires every part from cfg and serves on ln until ctx ends.
// `serve` and `dev` both come through here.
func runGateway(ctx context.Context, cfg *Config, ln net.Listener, log *slog.Logger) error {
	publicURL, err := url.Parse(cfg.PublicURL)
	if err != nil {
		return fmt.Errorf("LLMGATE_PUBLIC_URL: %w", err)
	}
	redisconn.SetLogger(log)
	rdb, err := redisconn.New(redisconn.Config{
		URL: cfg.RedisURL, SentinelMaster: cfg.RedisSentinelMaster, Cluster: cfg.RedisCluster, Addrs: cfg.RedisAddrs,
	})
	if err != nil {
		return err
	}
	defer rdb.Close()

	store := sessions.New(rdb, sessions.Config{TTL: cfg.SessionTTL, IdleTimeout: cfg.SessionIdleTimeout})
	rp := oidc.New(oidc.Config{
		Issuer:              cfg.OIDCIssuer,
		ClientID:            cfg.OIDCClientID,
		ClientSecret:        cfg.OIDCClientSecret,
		RedirectURL:         cfg.PublicURL + "/oauth2/callback",
		Scopes:              cfg.OIDCScopes,
		GroupsClaim:         cfg.OIDCGroupsClaim,
		AllowedEmailDomains: cfg.AllowedEmailDomains,
		AllowedGroups:       cfg.AllowedGroups,
		AdminEmails:         cfg.AdminEmails,
		AdminGroups:         cfg.AdminGroups,
		Logger:              log,
	})
	go func() {
		if err := rp.Run(ctx); err == nil {
			log.Info("identity provider discovered", "issuer", cfg.OIDCIssuer)
		}
	}()
	if len(cfg.AdminEmails) == 0 && len(cfg.AdminGroups) == 0 {
		log.Warn("no administrator configured: set LLMGATE_ADMIN_EMAILS or LLMGATE_ADMIN_GROUPS")
	}

	// Without its signing keys the gateway can do nothing useful: wait a
	// while for Redis, then fail loudly rather than hang.
	log.Info("loading signing keys and revocation state from Redis")
	startCtx, cancelStart := context.WithTimeout(ctx, redisStartWait)
	defer cancelStart()
	tok, err := tokens.New(startCtx, rdb, tokens.Config{
		Issuer:     cfg.PublicURL,
		Secret:     []byte(cfg.Secret),
		Rotation:   cfg.KeyRotation,
		DefaultTTL: cfg.TokenDefaultTTL,
		MaxTTL:     cfg.TokenMaxTTL,
		FailOpen:   cfg.Failsafe == "open",
		Logger:     log,
	})
	if err != nil {
		if errors.Is(err, tokens.ErrWrongSecret) {
			return fmt.Errorf("%w: the signing keys in Redis were made with another LLMGATE_SECRET; start with that secret (every replica needs the same one)", err)
		}
		return fmt.Errorf("start token service (is LLMGATE_REDIS_URL reachable?): %w", err)
	}
	defer tok.Close()
	if err := redisconn.CheckVersion(startCtx, rdb); err != nil {
		return err
	}

	upstreams, err := upstreamsOf(cfg)
	if err != nil {
		return err
	}
	rec := usage.NewRecorder(rdb, usage.Config{Retention: cfg.UsageRetention, Logger: log})
	defer rec.Close()
	auditLog := audit.New(rdb, audit.Config{WebhookURL: cfg.AuditWebhookURL, Logger: log})
	defer auditLog.Close()
	people, err := users.New(startCtx, rdb, users.Config{Secret: []byte(cfg.Secret), RecheckInterval: cfg.UserRecheckInterval, Logger: log})
	if err != nil {
		return fmt.Errorf("start users store: %w", err)
	}
	defer people.Close()

	var otlp *url.URL
	if cfg.OTLPEndpoint != "" {
		if otlp, err = url.Parse(cfg.OTLPEndpoint); err != nil {
			return fmt.Errorf("LLMGATE_OTLP_ENDPOINT: %w", err)
		}
	}
	gw, err := gateway.New(gateway.Config{
		PublicURL:          publicURL,
		Secret:             []byte(cfg.Secret),
		TrustedProxies:     cfg.TrustedProxies,
		ShutdownGrace:      cfg.ShutdownGrace,
		ShutdownDelay:      cfg.ShutdownDelay,
		RequireLoginWithin: cfg.TokenRequireLoginWithin,
		TokenMaxTTL:        cfg.TokenMaxTTL,
		CLITokenTTL:        cfg.CLITokenTTL,
		GatewayTokenTTL:    cfg.GatewayTokenTTL,
		GatewayRefreshTTL:  cfg.GatewayRefreshTTL,
		Version:            version,
		Logger:             log,
		ClaudeCode:         claudeCodeOf(cfg),
		OTLPEndpoint:       otlp,
		IDPTokenAudiences:  cfg.IDPTokenAudiences,
		Proxy: gateway.ProxyConfig{
			Upstreams:       upstreams,
			IdentityHeaders: cfg.IdentityHeaders,
			InjectUser:      cfg.InjectUser,
			MaxBody:         cfg.MaxBody,
			FailOpen:        cfg.Failsafe == "open",
			UserRPM:         cfg.UserRPM,
			CostHeader:      cfg.CostHeader,
			Spend:           spendConfigOf(cfg),
			SSEKeepalive:    cfg.SSEKeepalive,
			HeaderTimeout:   cfg.UpstreamHeaderTimeout,
		},
	}, gateway.Deps{
		Sessions: store,
		RP:       rp,
		Tokens:   tok,
		Usage:    rec,
		Audit:    auditLog,
		Users:    people,
		Redis:    rdb,
		Checks: []gateway.Check{{Name: "redis", Check: func(ctx context.Context) error {
			return rdb.Ping(ctx).Err()
		}}},
	})
	if err != nil {
		return err
	}
	log.Info("llmgate listening", "addr", ln.Addr().String(), "public_url", cfg.PublicURL, "version", version)
	return gw.Serve(ctx, ln)
}

// spendConfigOf is the spend caps and price table of cfg.
func spendConfigOf(cfg *Config) gateway.SpendConfig {
	sc := gateway.SpendConfig{DefaultMonthlyUSD: cfg.UserMonthlyBudgetUSD, GroupMonthlyUSD: cfg.Budgets.Groups}
	if len(cfg.Prices) > 0 {
		table := make(map[string]usage.Price, len(cfg.Prices))
		for model, p := range cfg.Prices {
			table[model] = usage.Price{InputPerMTok: p.InputPerMTok, OutputPerMTok: p.OutputPerMTok}
		}
		sc.Prices = usage.NewPrices(table)
	}
	return sc
}

// upstreamsOf is LLMGATE_UPSTREAM_URL at /v1/, or the YAML upstreams.
func upstreamsOf(cfg *Config) ([]gateway.Upstream, error) {
	if len(cfg.Upstreams) == 0 {
		u, err := url.Parse(cfg.UpstreamURL)
		if err != nil {
			return nil, fmt.Errorf("LLMGATE_UPSTREAM_URL: %w", err)
		}
		return []gateway.Upstream{{Name: "default", URL: u, APIKey: cfg.UpstreamAPIKey, Paths: []string{"/v1/"}}}, nil
	}
	out := make([]gateway.Upstream, 0, len(cfg.Upstreams))
	for _, up := range cfg.Upstreams {
		u, err := url.Parse(up.URL)
		if err != nil {
			return nil, fmt.Errorf("upstream %s: url: %w", up.Name, err)
		}
		out = append(out, gateway.Upstream{Name: up.Name, URL: u, APIKey: up.APIKey, Paths: up.Paths, StripPrefix: up.StripPrefix})
	}
	return out, nil
}

// claudeCodeOf is the YAML claude_code section in the gateway's terms.
func claudeCodeOf(cfg *Config) gateway.ClaudeCodeConfig {
	var out gateway.ClaudeCodeConfig
	for _, p := range cfg.ClaudeCode.Policies {
		out.Policies = append(out.Policies, gateway.Policy{
			Groups: p.Match.Groups, EmailDomains: p.Match.EmailDomains, Models: p.Models,
			Settings: p.Settings, MonthlyBudgetUSD: p.MonthlyBudgetUSD,
		})
	}
	return out
}
