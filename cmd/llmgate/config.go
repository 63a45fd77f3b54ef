package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"net"
	"net/netip"
	"net/url"
	"os"
	"reflect"
	"sort"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/llmgate/llmgate/internal/duration"
	"github.com/llmgate/llmgate/internal/redisconn"
)

// Config is everything `llmgate serve` is configured with. Each scalar field
// is one setting of SPEC §2: an environment variable LLMGATE_NAME, a flag
// --name and a YAML key name (see settings). Upstreams, Prices, Budgets and
// ClaudeCode exist only in the YAML file.
type Config struct {
	Listen    string // LLMGATE_LISTEN, default ":8080"
	PublicURL string // LLMGATE_PUBLIC_URL, required; no trailing slash
	Secret    string // LLMGATE_SECRET, required, at least 32 bytes

	RedisURL            string   // LLMGATE_REDIS_URL, required
	RedisSentinelMaster string   // LLMGATE_REDIS_SENTINEL_MASTER
	RedisAddrs          []string // LLMGATE_REDIS_ADDRS
	RedisCluster        bool     // LLMGATE_REDIS_CLUSTER

	OIDCIssuer       string   // LLMGATE_OIDC_ISSUER, required
	OIDCClientID     string   // LLMGATE_OIDC_CLIENT_ID, required
	OIDCClientSecret string   // LLMGATE_OIDC_CLIENT_SECRET, required
	OIDCScopes       []string // LLMGATE_OIDC_SCOPES, default openid email profile
	OIDCGroupsClaim  string   // LLMGATE_OIDC_GROUPS_CLAIM, default "groups"

	AllowedEmailDomains []string // LLMGATE_ALLOWED_EMAIL_DOMAINS, lower-cased; empty = any
	AllowedGroups       []string // LLMGATE_ALLOWED_GROUPS; empty = any
	AdminEmails         []string // LLMGATE_ADMIN_EMAILS, lower-cased
	AdminGroups         []string // LLMGATE_ADMIN_GROUPS

	SessionTTL         time.Duration // LLMGATE_SESSION_TTL, default 24h
	SessionIdleTimeout time.Duration // LLMGATE_SESSION_IDLE_TIMEOUT, default 8h
	TokenDefaultTTL    time.Duration // LLMGATE_TOKEN_DEFAULT_TTL, default 30d
	TokenMaxTTL        time.Duration // LLMGATE_TOKEN_MAX_TTL, default 90d

	UpstreamURL     string   // LLMGATE_UPSTREAM_URL, required unless Upstreams is set
	UpstreamAPIKey  string   // LLMGATE_UPSTREAM_API_KEY
	IdentityHeaders []string // LLMGATE_IDENTITY_HEADER, default X-LLMGate-User-Email
	InjectUser      bool     // LLMGATE_INJECT_USER, default false

	Failsafe       string         // LLMGATE_FAILSAFE: "closed" (default) | "open"
	TrustedProxies []netip.Prefix // LLMGATE_TRUSTED_PROXIES; a bare IP is a /32 or /128
	LogFormat      string         // LLMGATE_LOG_FORMAT: "json" (default) | "text"

	KeyRotation time.Duration // LLMGATE_KEY_ROTATION, default 30d
	CLITokenTTL time.Duration // LLMGATE_CLI_TOKEN_TTL, default 30d
	UserRPM     int           // LLMGATE_USER_RPM, default 0 = off
	MaxBody     int64         // LLMGATE_MAX_BODY in bytes, default 32MiB

	UpstreamHeaderTimeout time.Duration // LLMGATE_UPSTREAM_HEADER_TIMEOUT, default 10m

	ShutdownGrace   time.Duration // LLMGATE_SHUTDOWN_GRACE, default 30s
	ShutdownDelay   time.Duration // LLMGATE_SHUTDOWN_DELAY, default 0
	AuditWebhookURL string        // LLMGATE_AUDIT_WEBHOOK_URL

	GatewayTokenTTL   time.Duration // LLMGATE_GATEWAY_TOKEN_TTL, default 1h, at least 10m
	GatewayRefreshTTL time.Duration // LLMGATE_GATEWAY_REFRESH_TTL, default 14d
	SSEKeepalive      time.Duration // LLMGATE_SSE_KEEPALIVE, default 60s, 0 = off
	OTLPEndpoint      string        // LLMGATE_OTLP_ENDPOINT
	IDPTokenAudiences []string      // LLMGATE_IDP_TOKEN_AUDIENCES; empty = off

	UserMonthlyBudgetUSD float64 // LLMGATE_USER_MONTHLY_BUDGET_USD, default 0 = no cap
	CostHeader           string  // LLMGATE_COST_HEADER, default x-litellm-response-cost

	UserRecheckInterval     time.Duration // LLMGATE_USER_RECHECK_INTERVAL, default 24h, 0 = off
	TokenRequireLoginWithin time.Duration // LLMGATE_TOKEN_REQUIRE_LOGIN_WITHIN, default 0 = off
	UsageRetention          time.Duration // LLMGATE_USAGE_RETENTION, default 400d

	// Upstreams routes path prefixes to several upstreams (YAML "upstreams").
	Upstreams []UpstreamConfig
	// Prices prices a request from its usage when the upstream sends no cost
	// header, keyed by model-name prefix (YAML "prices").
	Prices map[string]Price
	// Budgets holds monthly spend caps per group (YAML "budgets").
	Budgets BudgetConfig
	// ClaudeCode holds the Claude Code policies (YAML "claude_code").
	ClaudeCode ClaudeCodeConfig
}

// UpstreamConfig is one entry of the YAML "upstreams" list.
type UpstreamConfig struct {
	Name      string `yaml:"name"`
	URL       string `yaml:"url"`
	APIKeyEnv string `yaml:"api_key_env"` // the variable holding the upstream's key
	// APIKey is the value of the variable APIKeyEnv names, read by LoadConfig.
	// A key is never written in the YAML file itself.
	APIKey      string   `yaml:"-"`
	Paths       []string `yaml:"paths"`        // path prefixes routed here; longest prefix wins
	StripPrefix string   `yaml:"strip_prefix"` // removed from the path before forwarding
}

// Price is what a model costs, in USD per million tokens (YAML "prices").
type Price struct {
	InputPerMTok  float64 `yaml:"input_per_mtok"`
	OutputPerMTok float64 `yaml:"output_per_mtok"`
}

// BudgetConfig is the YAML "budgets" section.
type BudgetConfig struct {
	// Groups maps a group name to the monthly cap in USD of each of its members.
	Groups map[string]float64 `yaml:"groups"`
}

// ClaudeCodeConfig is the YAML "claude_code" section.
type ClaudeCodeConfig struct {
	// Policies are tried in order; the first that matches a person applies.
	Policies []ClaudeCodePolicy `yaml:"policies"`
}

// ClaudeCodePolicy says which models a group of people may use, the managed
// settings Claude Code receives, and their monthly budget.
type ClaudeCodePolicy struct {
	// Match selects the people; an empty Match matches everyone, so such a
	// policy can only be the last one.
	Match  PolicyMatch `yaml:"match"`
	Models []string    `yaml:"models"` // allowed models; empty = no restriction
	// Settings is served at /managed/settings; it must be representable as JSON.
	Settings map[string]any `yaml:"settings"`
	// MonthlyBudgetUSD caps each matched person's monthly spend; 0 = no cap.
	MonthlyBudgetUSD float64 `yaml:"monthly_budget_usd"`
}

// PolicyMatch matches a person who is in any of Groups or whose email is in
// any of EmailDomains.
type PolicyMatch struct {
	Groups       []string `yaml:"groups"`
	EmailDomains []string `yaml:"email_domains"`
}

// ConfigError lists every problem found in a configuration. main exits 2 on it.
type ConfigError struct {
	Problems []string
}

// Error returns the problems, one per line.
func (e *ConfigError) Error() string {
	return strings.Join(e.Problems, "\n")
}

// envPrefix starts every llmgate variable.
const envPrefix = "LLMGATE_"

// configEnv names the YAML file; --config is its flag. It is not a Config field.
const configEnv = "LLMGATE_CONFIG"

// minGatewayTokenTTL is the shortest Claude Code access-token lifetime: the
// client refreshes when less than 5 minutes are left (SPEC §8).
const minGatewayTokenTTL = 10 * time.Minute

// minSecretLen is the shortest LLMGATE_SECRET accepted, in bytes.
const minSecretLen = 32

// A setting is one configuration variable: its environment name, from which
// the flag (--lower-kebab) and YAML key (lower_snake) are derived, its
// default as text (parsed by set like any other value, so help and behaviour
// agree), its help, and set, which parses a value into the Config.
type setting struct {
	env      string
	group    string
	def      string // "" = no default (the zero value)
	arg      string // placeholder in help: URL, DURATION, LIST, …
	required bool   // for help only; Validate decides
	secret   bool   // the value is never echoed
	boolean  bool   // the flag may be given without a value
	help     string
	example  string // a complete example value, shown in help
	set      func(c *Config, v string) error
}

// flagName is the setting's flag without dashes: LLMGATE_PUBLIC_URL → public-url.
func (s setting) flagName() string {
	return strings.ReplaceAll(strings.ToLower(strings.TrimPrefix(s.env, envPrefix)), "_", "-")
}

// yamlKey is the setting's key in the YAML file: LLMGATE_PUBLIC_URL → public_url.
func (s setting) yamlKey() string {
	return strings.ToLower(strings.TrimPrefix(s.env, envPrefix))
}

// Setting groups, in the order --help shows them.
const (
	groupGateway  = "Gateway"
	groupOIDC     = "Identity provider (OIDC)"
	groupAccess   = "Who may sign in, who is admin"
	groupRedis    = "Redis"
	groupUpstream = "Upstream (the LLM proxy)"
	groupTokens   = "Sessions and tokens"
	groupSpend    = "Limits and spend"
	groupClaude   = "Claude Code and Claude Desktop"
	groupOps      = "Operations"
)

// settings is the one table of configuration variables. Environment, flags,
// YAML keys, defaults and --help are all derived from it.
func settings() []setting {
	return []setting{
		// Gateway
		{env: "LLMGATE_LISTEN", group: groupGateway, def: ":8080", arg: "ADDR",
			help: "Address to listen on, host:port; :8080 is every interface.",
			set:  into(parseString, func(c *Config) *string { return &c.Listen })},
		{env: "LLMGATE_PUBLIC_URL", group: groupGateway, arg: "URL", required: true,
			help:    "External base URL people and clients reach the gateway at. The OIDC redirect URI to register at the identity provider is PUBLIC_URL/oauth2/callback; it is also the issuer (iss) of API tokens.",
			example: "https://llm.example.com",
			set:     into(parsePublicURL, func(c *Config) *string { return &c.PublicURL })},
		{env: "LLMGATE_SECRET", group: groupGateway, arg: "SECRET", required: true, secret: true,
			help:    "Master secret, at least 32 bytes: cookie and CSRF MACs and encryption of signing keys at rest. Every replica needs the same value. Generate one with `llmgate secret`.",
			example: "$(llmgate secret)",
			set:     into(parseString, func(c *Config) *string { return &c.Secret })},

		// Identity provider
		{env: "LLMGATE_OIDC_ISSUER", group: groupOIDC, arg: "URL", required: true,
			help:    "Issuer URL of the identity provider, exactly as it reports it; discovery is read from ISSUER/.well-known/openid-configuration.",
			example: "https://sso.example.com/realms/corp",
			set:     into(parseString, func(c *Config) *string { return &c.OIDCIssuer })},
		{env: "LLMGATE_OIDC_CLIENT_ID", group: groupOIDC, arg: "ID", required: true,
			help:    "Client ID of the gateway's registration at the identity provider.",
			example: "llmgate",
			set:     into(parseString, func(c *Config) *string { return &c.OIDCClientID })},
		{env: "LLMGATE_OIDC_CLIENT_SECRET", group: groupOIDC, arg: "SECRET", required: true, secret: true,
			help: "Client secret of that registration.",
			set:  into(parseString, func(c *Config) *string { return &c.OIDCClientSecret })},
		{env: "LLMGATE_OIDC_SCOPES", group: groupOIDC, def: "openid email profile", arg: "SCOPES",
			help:    "Scopes requested at sign-in, separated by spaces or commas; must include openid. Add offline_access so people removed at the identity provider lose access (see LLMGATE_USER_RECHECK_INTERVAL).",
			example: "openid email profile offline_access",
			set:     into(parseScopes, func(c *Config) *[]string { return &c.OIDCScopes })},
		{env: "LLMGATE_OIDC_GROUPS_CLAIM", group: groupOIDC, def: "groups", arg: "CLAIM",
			help: "ID-token claim holding the person's group names.",
			set:  into(parseString, func(c *Config) *string { return &c.OIDCGroupsClaim })},

		// Access
		{env: "LLMGATE_ALLOWED_EMAIL_DOMAINS", group: groupAccess, arg: "LIST",
			help:    "Comma list of email domains allowed to sign in; empty = any.",
			example: "example.com,example.org",
			set:     into(parseLowerList, func(c *Config) *[]string { return &c.AllowedEmailDomains })},
		{env: "LLMGATE_ALLOWED_GROUPS", group: groupAccess, arg: "LIST",
			help: "Comma list of groups allowed to sign in; empty = any.",
			set:  into(parseList, func(c *Config) *[]string { return &c.AllowedGroups })},
		{env: "LLMGATE_ADMIN_EMAILS", group: groupAccess, arg: "LIST",
			help:    "Comma list of people who are admins.",
			example: "alice@example.com,bob@example.com",
			set:     into(parseLowerList, func(c *Config) *[]string { return &c.AdminEmails })},
		{env: "LLMGATE_ADMIN_GROUPS", group: groupAccess, arg: "LIST",
			help: "Comma list of groups whose members are admins.",
			set:  into(parseList, func(c *Config) *[]string { return &c.AdminGroups })},

		// Redis
		{env: "LLMGATE_REDIS_URL", group: groupRedis, arg: "URL", required: true,
			help:    "Redis holding sessions, tokens and usage: redis://, or rediss:// for TLS; the password goes in the URL (percent-encoded). With Sentinel or Cluster only its credentials, database and scheme are used.",
			example: "redis://:PASSWORD@redis:6379/0",
			set:     into(parseString, func(c *Config) *string { return &c.RedisURL })},
		{env: "LLMGATE_REDIS_SENTINEL_MASTER", group: groupRedis, arg: "NAME",
			help:    "Sentinel master group name; needs LLMGATE_REDIS_ADDRS (the Sentinels).",
			example: "mymaster",
			set:     into(parseString, func(c *Config) *string { return &c.RedisSentinelMaster })},
		{env: "LLMGATE_REDIS_ADDRS", group: groupRedis, arg: "LIST",
			help:    "Comma list of host:port: the Sentinels, or the Cluster seed nodes.",
			example: "sentinel-0:26379,sentinel-1:26379,sentinel-2:26379",
			set:     into(parseList, func(c *Config) *[]string { return &c.RedisAddrs })},
		{env: "LLMGATE_REDIS_CLUSTER", group: groupRedis, def: "false", arg: "BOOL", boolean: true,
			help: "Use Redis Cluster; needs LLMGATE_REDIS_ADDRS (seed nodes).",
			set:  into(parseBool, func(c *Config) *bool { return &c.RedisCluster })},
		{env: "LLMGATE_FAILSAFE", group: groupRedis, def: "closed", arg: "closed|open",
			help: "When Redis is unreachable: closed = API calls get 503; open = tokens whose signature and expiry verify are let through on the last known revocation state.",
			set:  into(parseWord, func(c *Config) *string { return &c.Failsafe })},

		// Upstream
		{env: "LLMGATE_UPSTREAM_URL", group: groupUpstream, arg: "URL", required: true,
			help:    "The LLM proxy requests are forwarded to (the default route /v1/). Required unless the YAML file lists upstreams.",
			example: "http://litellm:4000",
			set:     into(parseString, func(c *Config) *string { return &c.UpstreamURL })},
		{env: "LLMGATE_UPSTREAM_API_KEY", group: groupUpstream, arg: "KEY", secret: true,
			help: "Credential sent upstream (Authorization: Bearer …) in place of the caller's token, e.g. a LiteLLM virtual key.",
			set:  into(parseString, func(c *Config) *string { return &c.UpstreamAPIKey })},
		{env: "LLMGATE_IDENTITY_HEADER", group: groupUpstream, def: "X-LLMGate-User-Email", arg: "LIST",
			help:    "Header(s), comma-separated, carrying the caller's email upstream. For LiteLLM add x-litellm-end-user-id, which it reads with no configuration.",
			example: "X-LLMGate-User-Email,x-litellm-end-user-id",
			set:     into(parseList, func(c *Config) *[]string { return &c.IdentityHeaders })},
		{env: "LLMGATE_INJECT_USER", group: groupUpstream, def: "false", arg: "BOOL", boolean: true,
			help: "Also set the email in JSON bodies (OpenAI user, Anthropic metadata.user_id). Off: headers already attribute, and bodies then stream through untouched.",
			set:  into(parseBool, func(c *Config) *bool { return &c.InjectUser })},
		{env: "LLMGATE_MAX_BODY", group: groupUpstream, def: "32MiB", arg: "SIZE",
			help: "Largest request body accepted on proxied routes (413 above). Bytes, or with KiB/MiB/GiB (KB/MB/GB are powers of 1000).",
			set:  into(parseSize, func(c *Config) *int64 { return &c.MaxBody })},
		{env: "LLMGATE_UPSTREAM_HEADER_TIMEOUT", group: groupUpstream, def: "10m", arg: "DURATION",
			help: "How long the upstream may take to start its answer (response headers) before the caller gets 504. Streams are not cut once they flow.",
			set:  into(parseDuration, func(c *Config) *time.Duration { return &c.UpstreamHeaderTimeout })},
		{env: "LLMGATE_SSE_KEEPALIVE", group: groupUpstream, def: "60s", arg: "DURATION",
			help: "Send an SSE comment line when a streaming upstream has been silent this long; 0 = off.",
			set:  into(parseDuration, func(c *Config) *time.Duration { return &c.SSEKeepalive })},

		// Sessions and tokens
		{env: "LLMGATE_SESSION_TTL", group: groupTokens, def: "24h", arg: "DURATION",
			help: "Absolute lifetime of a browser session.",
			set:  into(parseDuration, func(c *Config) *time.Duration { return &c.SessionTTL })},
		{env: "LLMGATE_SESSION_IDLE_TIMEOUT", group: groupTokens, def: "8h", arg: "DURATION",
			help: "A browser session unused this long ends; at most LLMGATE_SESSION_TTL.",
			set:  into(parseDuration, func(c *Config) *time.Duration { return &c.SessionIdleTimeout })},
		{env: "LLMGATE_TOKEN_DEFAULT_TTL", group: groupTokens, def: "30d", arg: "DURATION",
			help: "Lifetime of an API token when its creator names none.",
			set:  into(parseDuration, func(c *Config) *time.Duration { return &c.TokenDefaultTTL })},
		{env: "LLMGATE_TOKEN_MAX_TTL", group: groupTokens, def: "90d", arg: "DURATION",
			help: "Longest API token lifetime; a request for more is refused with 400.",
			set:  into(parseDuration, func(c *Config) *time.Duration { return &c.TokenMaxTTL })},
		{env: "LLMGATE_CLI_TOKEN_TTL", group: groupTokens, def: "30d", arg: "DURATION",
			help: "Lifetime of the credential `llmgate login` obtains.",
			set:  into(parseDuration, func(c *Config) *time.Duration { return &c.CLITokenTTL })},
		{env: "LLMGATE_KEY_ROTATION", group: groupTokens, def: "30d", arg: "DURATION",
			help: "How often a new token signing key is made; retired keys stay published until their tokens expire.",
			set:  into(parseDuration, func(c *Config) *time.Duration { return &c.KeyRotation })},
		{env: "LLMGATE_USER_RECHECK_INTERVAL", group: groupTokens, def: "24h", arg: "DURATION",
			help: "How often a person is re-checked at the identity provider with their refresh token (needs offline_access in LLMGATE_OIDC_SCOPES); a refusal revokes their sessions and tokens. 0 = off.",
			set:  into(parseDuration, func(c *Config) *time.Duration { return &c.UserRecheckInterval })},
		{env: "LLMGATE_TOKEN_REQUIRE_LOGIN_WITHIN", group: groupTokens, def: "0", arg: "DURATION",
			help:    "API tokens of a person who has not signed in through SSO within this period stop working until they do. 0 = off.",
			example: "30d",
			set:     into(parseDuration, func(c *Config) *time.Duration { return &c.TokenRequireLoginWithin })},

		// Limits and spend
		{env: "LLMGATE_USER_RPM", group: groupSpend, def: "0", arg: "N",
			help: "Default requests per minute per person across their tokens; 0 = off.",
			set:  into(strconv.Atoi, func(c *Config) *int { return &c.UserRPM })},
		{env: "LLMGATE_USER_MONTHLY_BUDGET_USD", group: groupSpend, def: "0", arg: "USD",
			help: "Default spend cap per person per calendar month (UTC); groups and people can have their own. 0 = no cap.",
			set:  into(parseFloat, func(c *Config) *float64 { return &c.UserMonthlyBudgetUSD })},
		{env: "LLMGATE_COST_HEADER", group: groupSpend, def: "x-litellm-response-cost", arg: "HEADER",
			help: "Upstream response header carrying a request's cost in USD; without it cost comes from the YAML prices table.",
			set:  into(parseString, func(c *Config) *string { return &c.CostHeader })},
		{env: "LLMGATE_USAGE_RETENTION", group: groupSpend, def: "400d", arg: "DURATION",
			help: "How long per-day usage records are kept.",
			set:  into(parseDuration, func(c *Config) *time.Duration { return &c.UsageRetention })},

		// Claude Code
		{env: "LLMGATE_GATEWAY_TOKEN_TTL", group: groupClaude, def: "1h", arg: "DURATION",
			help: "Lifetime of the access tokens of Claude Code sign-ins; at least 10m (Claude Code refreshes 5 minutes before expiry).",
			set:  into(parseDuration, func(c *Config) *time.Duration { return &c.GatewayTokenTTL })},
		{env: "LLMGATE_GATEWAY_REFRESH_TTL", group: groupClaude, def: "14d", arg: "DURATION",
			help: "Lifetime of a Claude Code sign-in's refresh-token family.",
			set:  into(parseDuration, func(c *Config) *time.Duration { return &c.GatewayRefreshTTL })},
		{env: "LLMGATE_OTLP_ENDPOINT", group: groupClaude, arg: "URL",
			help:    "OTLP/HTTP collector that Claude Code telemetry is forwarded to; empty = accepted and dropped.",
			example: "http://otel-collector:4318",
			set:     into(parseString, func(c *Config) *string { return &c.OTLPEndpoint })},
		{env: "LLMGATE_IDP_TOKEN_AUDIENCES", group: groupClaude, arg: "LIST",
			help: "Accept the identity provider's own ID/access tokens with these audiences as API credentials (Claude Desktop); empty = off.",
			set:  into(parseList, func(c *Config) *[]string { return &c.IDPTokenAudiences })},

		// Operations
		{env: "LLMGATE_LOG_FORMAT", group: groupOps, def: "json", arg: "json|text",
			help: "Log format.",
			set:  into(parseWord, func(c *Config) *string { return &c.LogFormat })},
		{env: "LLMGATE_TRUSTED_PROXIES", group: groupOps, arg: "LIST",
			help:    "Comma list of CIDRs (or single IPs) whose X-Forwarded-For / X-Real-IP is believed; empty = none.",
			example: "10.0.0.0/8,192.168.1.10",
			set:     into(parsePrefixes, func(c *Config) *[]netip.Prefix { return &c.TrustedProxies })},
		{env: "LLMGATE_SHUTDOWN_GRACE", group: groupOps, def: "30s", arg: "DURATION",
			help: "How long open streams may finish after SIGTERM.",
			set:  into(parseDuration, func(c *Config) *time.Duration { return &c.ShutdownGrace })},
		{env: "LLMGATE_SHUTDOWN_DELAY", group: groupOps, def: "0s", arg: "DURATION",
			help: "After SIGTERM, keep serving this long with /readyz answering 503 so load balancers stop sending traffic, then stop accepting connections. Behind Kubernetes set it above the readiness probe's period × failure threshold, e.g. 5s (and terminationGracePeriodSeconds above delay + grace).",
			set:  into(parseDuration, func(c *Config) *time.Duration { return &c.ShutdownDelay })},
		{env: "LLMGATE_AUDIT_WEBHOOK_URL", group: groupOps, arg: "URL",
			help: "Security events are also POSTed here as JSON.",
			set:  into(parseString, func(c *Config) *string { return &c.AuditWebhookURL })},
	}
}

// into makes a setter from a parser and the field it fills.
func into[T any](parse func(string) (T, error), field func(*Config) *T) func(*Config, string) error {
	return func(c *Config, v string) error {
		x, err := parse(v)
		if err != nil {
			return err
		}
		*field(c) = x
		return nil
	}
}

// DefaultConfig returns a Config holding every default of the settings table
// and nothing else; the required settings are empty.
func DefaultConfig() *Config {
	c := &Config{}
	for _, s := range settings() {
		if s.def == "" {
			continue
		}
		if err := s.set(c, s.def); err != nil {
			panic(fmt.Sprintf("default of %s: %v", s.env, err)) // a bug in the table; tests catch it
		}
	}
	return c
}

// LoadConfig reads the configuration of `llmgate serve`: defaults < YAML file <
// environment < flags. args are the command-line arguments after "serve"
// (flags, including --config FILE; LLMGATE_CONFIG also names the file).
// environ is os.Environ(), used to warn about unknown LLMGATE_* variables.
//
// LoadConfig also validates: a nil error means cfg.Validate() passed. Every
// problem found while parsing and validating comes back at once in a
// *ConfigError. The warnings (unknown variables, with the closest known
// name) are returned even with an error: print them first, a typo often
// explains a missing setting. A --help or -h request prints the usage to
// stderr and returns flag.ErrHelp.
func LoadConfig(args []string, getenv func(string) string, environ []string, stderr io.Writer) (*Config, []string, error) {
	cfg, warnings, problems, err := loadConfig(args, getenv, environ, stderr)
	if err != nil {
		return nil, warnings, err
	}
	problems = append(problems, cfg.problems()...)
	if len(problems) > 0 {
		return nil, warnings, &ConfigError{Problems: problems}
	}
	return cfg, warnings, nil
}

// assignment is one value for one setting from one source.
type assignment struct {
	s      setting
	value  string
	source string // how to name where the value came from in a problem
}

// loadConfig does LoadConfig's work without the final validation. err is
// flag.ErrHelp or a *ConfigError for unusable command-line syntax; problems
// are the values that could not be parsed.
func loadConfig(args []string, getenv func(string) string, environ []string, stderr io.Writer) (*Config, []string, []string, error) {
	table := settings()
	var warnings, problems []string

	// Flags first: --config names the file.
	fs := flag.NewFlagSet("llmgate serve", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.Usage = func() {}
	var flagged []assignment
	for _, s := range table {
		fs.Var(&flagValue{s: s, into: &flagged}, s.flagName(), s.help)
	}
	configFile := fs.String("config", "", "YAML configuration file")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			printServeUsage(stderr, table)
			return nil, nil, nil, flag.ErrHelp
		}
		return nil, nil, nil, &ConfigError{Problems: []string{flagProblem(err, table)}}
	}
	if fs.NArg() > 0 {
		return nil, nil, nil, &ConfigError{Problems: []string{fmt.Sprintf(
			"unexpected argument %q: llmgate serve takes only flags (see llmgate serve --help)", fs.Arg(0))}}
	}

	c := DefaultConfig()
	var assignments []assignment

	// The YAML file.
	file, fileSource := *configFile, "--config"
	if file == "" {
		file, fileSource = getenv(configEnv), configEnv
	}
	if file != "" {
		fc, fileSettings, fileProblems := readConfigFile(file, fileSource, table)
		problems = append(problems, fileProblems...)
		assignments = append(assignments, fileSettings...)
		if fc != nil {
			c.Upstreams = fc.Upstreams
			c.Prices = fc.Prices
			c.Budgets = fc.Budgets
			c.ClaudeCode = fc.ClaudeCode
		}
	}

	// The environment.
	for _, s := range table {
		if v := getenv(s.env); v != "" {
			assignments = append(assignments, assignment{s: s, value: v, source: s.env})
		}
	}

	// Flags last: they win.
	for _, a := range flagged {
		if a.s.secret {
			warnings = append(warnings, fmt.Sprintf(
				"--%s puts a secret on the command line, where other users can see it (ps, /proc): prefer %s",
				a.s.flagName(), a.s.env))
		}
	}
	assignments = append(assignments, flagged...)

	for _, a := range assignments {
		if err := a.s.set(c, a.value); err != nil {
			msg := err.Error()
			if a.s.secret && a.value != "" {
				msg = strings.ReplaceAll(msg, a.value, "[redacted]")
			}
			problems = append(problems, fmt.Sprintf("%s: %s", a.source, msg))
		}
	}

	// Keys of YAML upstreams come from the variables they name.
	apiKeyVars := map[string]bool{}
	for i := range c.Upstreams {
		if name := c.Upstreams[i].APIKeyEnv; name != "" {
			c.Upstreams[i].APIKey = getenv(name)
			apiKeyVars[name] = true
		}
	}

	warnings = append(warnings, unknownVariables(environ, table, apiKeyVars)...)
	if w := plainHTTPWarning(c.PublicURL); w != "" {
		warnings = append(warnings, w)
	}
	return c, warnings, problems, nil
}

// flagValue collects a flag's values; they are parsed with the other
// sources so that every bad value is reported, not just the first.
type flagValue struct {
	s    setting
	into *[]assignment
}

func (f *flagValue) String() string { return "" }

func (f *flagValue) Set(v string) error {
	*f.into = append(*f.into, assignment{s: f.s, value: v, source: fmt.Sprintf("--%s (%s)", f.s.flagName(), f.s.env)})
	return nil
}

func (f *flagValue) IsBoolFlag() bool { return f.s.boolean }

// flagProblem rewrites a flag-package error, suggesting the closest flag.
func flagProblem(err error, table []setting) string {
	const undefined = "flag provided but not defined: -"
	msg := err.Error()
	if name, ok := strings.CutPrefix(msg, undefined); ok {
		names := []string{"config"}
		for _, s := range table {
			names = append(names, s.flagName())
		}
		return fmt.Sprintf("unknown flag --%s: did you mean --%s? (llmgate serve --help lists every setting)",
			name, closest(name, names))
	}
	return msg + " (see llmgate serve --help)"
}

// fileConfig is the YAML file: the settings as top-level keys, plus the
// sections that exist only in YAML.
type fileConfig struct {
	Upstreams  []UpstreamConfig     `yaml:"upstreams"`
	Prices     map[string]Price     `yaml:"prices"`
	Budgets    BudgetConfig         `yaml:"budgets"`
	ClaudeCode ClaudeCodeConfig     `yaml:"claude_code"`
	Settings   map[string]yaml.Node `yaml:",inline"`
}

// yamlSections are the YAML-only top-level keys, the tags of fileConfig.
func yamlSections() []string { return []string{"upstreams", "prices", "budgets", "claude_code"} }

// readConfigFile reads the YAML file: its sections, its settings as
// assignments, and every problem found, unknown keys included.
func readConfigFile(path, source string, table []setting) (*fileConfig, []assignment, []string) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, nil, []string{fmt.Sprintf("%s: cannot read the configuration file: %v", source, err)}
	}
	var fc fileConfig
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	var problems []string
	if err := dec.Decode(&fc); err != nil && !errors.Is(err, io.EOF) {
		var te *yaml.TypeError
		if !errors.As(err, &te) {
			return nil, nil, []string{fmt.Sprintf("%s: %v", path, err)}
		}
		lines := strings.Split(string(data), "\n")
		for _, e := range te.Errors {
			if p, ok := typeProblem(e, lines); ok {
				e = p
			} else {
				e = yamlProblem(e)
			}
			problems = append(problems, path+" "+e) // e starts "line N: "
		}
	}

	byKey := map[string]setting{}
	known := yamlSections()
	for _, s := range table {
		byKey[s.yamlKey()] = s
		known = append(known, s.yamlKey())
	}
	keys := make([]string, 0, len(fc.Settings))
	for k := range fc.Settings {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool { return fc.Settings[keys[i]].Line < fc.Settings[keys[j]].Line })

	var assignments []assignment
	for _, k := range keys {
		n := fc.Settings[k]
		s, ok := byKey[k]
		if !ok {
			problems = append(problems, fmt.Sprintf("%s line %d: unknown key %q: did you mean %s?", path, n.Line, k, closest(k, known)))
			continue
		}
		where := fmt.Sprintf("%s in %s line %d (%s)", k, path, n.Line, s.env)
		v, set, err := nodeText(&n)
		if err != nil {
			problems = append(problems, fmt.Sprintf("%s: %v", where, err))
			continue
		}
		if set {
			assignments = append(assignments, assignment{s: s, value: v, source: where})
		}
	}
	sort.SliceStable(problems, func(i, j int) bool {
		return lineOf(problems[i], path) < lineOf(problems[j], path)
	})
	return &fc, assignments, problems
}

// lineOf returns N from a problem starting "PATH line N:", or 0.
func lineOf(problem, path string) int {
	var n int
	fmt.Sscanf(strings.TrimPrefix(problem, path), " line %d:", &n)
	return n
}

// nodeText turns a YAML value into the text an environment variable would
// hold: a scalar as is, a list joined with commas. A null value is unset.
func nodeText(n *yaml.Node) (string, bool, error) {
	switch n.Kind {
	case yaml.AliasNode:
		return nodeText(n.Alias)
	case yaml.ScalarNode:
		if n.Tag == "!!null" {
			return "", false, nil
		}
		return n.Value, true, nil
	case yaml.SequenceNode:
		parts := make([]string, 0, len(n.Content))
		for _, item := range n.Content {
			if item.Kind != yaml.ScalarNode {
				return "", false, fmt.Errorf("list items must be single values")
			}
			parts = append(parts, item.Value)
		}
		return strings.Join(parts, ","), true, nil
	default:
		return "", false, fmt.Errorf("want a single value or a list, not a mapping")
	}
}

// typeProblem rewrites a yaml.v3 "cannot unmarshal" error about an amount
// or the budgets.groups mapping, naming the key from the line and the fix.
func typeProblem(msg string, lines []string) (string, bool) {
	var n int
	if _, err := fmt.Sscanf(msg, "line %d:", &n); err != nil || n < 1 || n > len(lines) {
		return "", false
	}
	line, rest, _ := strings.Cut(msg, ": ")
	key, value, _ := strings.Cut(strings.TrimSpace(lines[n-1]), ":")
	key = strings.Trim(strings.TrimSpace(strings.TrimPrefix(key, "- ")), "{\"'")
	value = strings.TrimSpace(value)
	switch {
	case strings.HasSuffix(rest, "into float64"):
		// The line may hold a flow mapping ({a: 1, b: x}): name the key when it is plain.
		if strings.ContainsAny(key, "{}[],") || strings.HasPrefix(value, "{") {
			return fmt.Sprintf("%s: a value is not a number (%s): write amounts in USD as numbers, e.g. 200 or 49.5", line, rest), true
		}
		return fmt.Sprintf("%s: %s: %s is not a number: write an amount in USD, e.g. 200 or 49.5", line, key, value), true
	case strings.HasSuffix(rest, "into map[string]float64"):
		return fmt.Sprintf("%s: %s must map group names to monthly caps in USD, e.g. groups: {ml-research: 500}", line, key), true
	}
	return "", false
}

// yamlProblem rewrites one yaml.v3 decoding error in YAML's own terms.
func yamlProblem(msg string) string {
	types := map[string]reflect.Type{
		"main.UpstreamConfig":   reflect.TypeOf(UpstreamConfig{}),
		"main.Price":            reflect.TypeOf(Price{}),
		"main.BudgetConfig":     reflect.TypeOf(BudgetConfig{}),
		"main.ClaudeCodeConfig": reflect.TypeOf(ClaudeCodeConfig{}),
		"main.ClaudeCodePolicy": reflect.TypeOf(ClaudeCodePolicy{}),
		"main.PolicyMatch":      reflect.TypeOf(PolicyMatch{}),
	}
	sections := map[string]string{
		"main.UpstreamConfig":   "an upstreams entry",
		"main.Price":            "a prices entry",
		"main.BudgetConfig":     "budgets",
		"main.ClaudeCodeConfig": "claude_code",
		"main.ClaudeCodePolicy": "a claude_code policy",
		"main.PolicyMatch":      "a claude_code policy's match",
	}
	// "line 5: field foo not found in type main.UpstreamConfig"
	line, rest, ok := strings.Cut(msg, ": field ")
	if !ok {
		return msg
	}
	field, typ, ok := strings.Cut(rest, " not found in type ")
	t, known := types[typ]
	if !ok || !known {
		return msg
	}
	var keys []string
	for i := 0; i < t.NumField(); i++ {
		if k, _, _ := strings.Cut(t.Field(i).Tag.Get("yaml"), ","); k != "" && k != "-" {
			keys = append(keys, k)
		}
	}
	p := fmt.Sprintf("%s: unknown key %q in %s: did you mean %s? (known: %s)",
		line, field, sections[typ], closest(field, keys), strings.Join(keys, ", "))
	if typ == "main.UpstreamConfig" && (field == "api_key" || field == "key") {
		p += "; keep the key out of the file: put it in a variable and name it with api_key_env"
	}
	return p
}

// unknownVariables warns about LLMGATE_* variables that no setting reads.
func unknownVariables(environ []string, table []setting, alsoKnown map[string]bool) []string {
	// The client commands' variables are not serve settings, but not typos either.
	known := map[string]bool{configEnv: true, envToken: true, envServer: true}
	names := []string{configEnv}
	for _, s := range table {
		known[s.env] = true
		names = append(names, s.env)
	}
	seen := map[string]bool{}
	var warnings []string
	for _, kv := range environ {
		name, _, _ := strings.Cut(kv, "=")
		if !strings.HasPrefix(name, envPrefix) || known[name] || alsoKnown[name] || seen[name] {
			continue
		}
		seen[name] = true
		warnings = append(warnings, fmt.Sprintf("%s is not a known variable (a typo?): did you mean %s?", name, closest(name, names)))
	}
	sort.Strings(warnings)
	return warnings
}

// plainHTTPWarning warns when people reach the gateway over plain HTTP on
// anything but loopback: cookies and tokens would cross the network in clear.
func plainHTTPWarning(publicURL string) string {
	u, err := url.Parse(publicURL)
	if err != nil || u.Scheme != "http" {
		return ""
	}
	host := u.Hostname()
	if ip, err := netip.ParseAddr(host); (err == nil && ip.IsLoopback()) || host == "localhost" {
		return ""
	}
	return fmt.Sprintf("LLMGATE_PUBLIC_URL %s is plain http: session cookies and tokens cross the network unencrypted; use https:// in production", u.Redacted())
}

// closest returns the candidate nearest to name by edit distance.
func closest(name string, candidates []string) string {
	best, bestDist := "", math.MaxInt
	for _, c := range candidates {
		if d := editDistance(strings.ToLower(name), strings.ToLower(c)); d < bestDist {
			best, bestDist = c, d
		}
	}
	return best
}

// editDistance is the Levenshtein distance between a and b.
func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}

// Validate reports every problem with c at once, each naming its variable,
// as a *ConfigError; nil means c is usable.
func (c *Config) Validate() error {
	if p := c.problems(); len(p) > 0 {
		return &ConfigError{Problems: p}
	}
	return nil
}

// problems lists what is wrong with c, in the order of the settings table.
func (c *Config) problems() []string {
	var p []string
	add := func(format string, args ...any) { p = append(p, fmt.Sprintf(format, args...)) }

	// Gateway.
	if c.Listen == "" {
		add("LLMGATE_LISTEN is empty: give host:port, e.g. :8080")
	} else if _, port, err := net.SplitHostPort(c.Listen); err != nil {
		add("LLMGATE_LISTEN %q is not host:port: write e.g. :8080 or 127.0.0.1:8080", c.Listen)
	} else if n, err := strconv.Atoi(port); err != nil || n < 0 || n > 65535 {
		add("LLMGATE_LISTEN %q has no valid port: write e.g. :8080", c.Listen)
	}
	p = append(p, publicURLProblems(c.PublicURL)...)
	switch {
	case c.Secret == "":
		add("LLMGATE_SECRET is required: generate one with `llmgate secret` (at least %d bytes) and give every replica the same value", minSecretLen)
	case len(c.Secret) < minSecretLen:
		add("LLMGATE_SECRET is too short: it must be at least %d bytes; generate one with `llmgate secret`", minSecretLen)
	}

	// Identity provider.
	if c.OIDCIssuer == "" {
		add("LLMGATE_OIDC_ISSUER is required: the identity provider's issuer URL, e.g. https://accounts.google.com")
	} else if msg := absoluteURLProblem(c.OIDCIssuer); msg != "" {
		add("LLMGATE_OIDC_ISSUER %s %s: write the issuer exactly as the provider reports it, e.g. https://accounts.google.com", showURL(c.OIDCIssuer), msg)
	}
	if c.OIDCClientID == "" {
		add("LLMGATE_OIDC_CLIENT_ID is required: the client ID of the gateway's registration at the identity provider")
	}
	if c.OIDCClientSecret == "" {
		add("LLMGATE_OIDC_CLIENT_SECRET is required: the client secret of the gateway's registration at the identity provider")
	}
	if !contains(c.OIDCScopes, "openid") {
		add("LLMGATE_OIDC_SCOPES must include openid, e.g. \"openid email profile\"")
	}
	if c.OIDCGroupsClaim == "" {
		add("LLMGATE_OIDC_GROUPS_CLAIM is empty: name the claim holding group names, e.g. groups")
	}

	// Access.
	for _, d := range c.AllowedEmailDomains {
		if msg := domainProblem(d); msg != "" {
			add("LLMGATE_ALLOWED_EMAIL_DOMAINS: %q %s", d, msg)
		}
	}
	for _, e := range c.AdminEmails {
		if local, domain, ok := strings.Cut(e, "@"); !ok || local == "" || domain == "" {
			add("LLMGATE_ADMIN_EMAILS: %q is not an email address", e)
		}
	}

	// Redis.
	rc := redisconn.Config{URL: c.RedisURL, SentinelMaster: c.RedisSentinelMaster, Cluster: c.RedisCluster, Addrs: c.RedisAddrs}
	if c.RedisURL != "" {
		if _, err := url.Parse(c.RedisURL); err != nil {
			// url.Parse's error quotes the whole URL, password included.
			add("LLMGATE_REDIS_URL is not a valid URL (not shown: it may hold a password): write redis://[:PASSWORD@]HOST:6379/DB, or rediss:// for TLS, with special characters in the password percent-encoded")
			rc.URL = "redis://reported-above:6379" // still check the rest
		}
	}
	for _, err := range rc.Validate() {
		p = append(p, err.Error())
	}
	switch c.Failsafe {
	case "closed", "open":
	default:
		add("LLMGATE_FAILSAFE %q is not closed or open", c.Failsafe)
	}

	// Upstream.
	switch {
	case c.UpstreamURL == "" && len(c.Upstreams) == 0:
		add("LLMGATE_UPSTREAM_URL is required (or upstreams in the YAML file): the LLM proxy to forward to, e.g. http://litellm:4000")
	case c.UpstreamURL != "":
		if msg := httpURLProblem(c.UpstreamURL); msg != "" {
			add("LLMGATE_UPSTREAM_URL %s %s, e.g. http://litellm:4000", showURL(c.UpstreamURL), msg)
		}
	}
	if len(c.IdentityHeaders) == 0 {
		add("LLMGATE_IDENTITY_HEADER is empty: name at least one header, e.g. X-LLMGate-User-Email")
	}
	for _, h := range c.IdentityHeaders {
		if msg := headerProblem(h); msg != "" {
			add("LLMGATE_IDENTITY_HEADER: %q %s", h, msg)
		}
	}
	if c.MaxBody <= 0 {
		add("LLMGATE_MAX_BODY must be positive, e.g. 32MiB")
	}
	if c.SSEKeepalive < 0 {
		add("LLMGATE_SSE_KEEPALIVE must not be negative (0 turns it off)")
	}

	// Sessions and tokens.
	positive := func(name string, d time.Duration, example string) {
		if d <= 0 {
			add("%s must be positive, e.g. %s", name, example)
		}
	}
	notNegative := func(name string, d time.Duration) {
		if d < 0 {
			add("%s must not be negative (0 turns it off)", name)
		}
	}
	positive("LLMGATE_SESSION_TTL", c.SessionTTL, "24h")
	positive("LLMGATE_SESSION_IDLE_TIMEOUT", c.SessionIdleTimeout, "8h")
	if c.SessionTTL > 0 && c.SessionIdleTimeout > c.SessionTTL {
		add("LLMGATE_SESSION_IDLE_TIMEOUT (%s) is longer than LLMGATE_SESSION_TTL (%s): a session ends at its TTL anyway; lower the idle timeout or raise the TTL",
			formatDuration(c.SessionIdleTimeout), formatDuration(c.SessionTTL))
	}
	positive("LLMGATE_TOKEN_DEFAULT_TTL", c.TokenDefaultTTL, "30d")
	positive("LLMGATE_TOKEN_MAX_TTL", c.TokenMaxTTL, "90d")
	if c.TokenMaxTTL > 0 && c.TokenDefaultTTL > c.TokenMaxTTL {
		add("LLMGATE_TOKEN_DEFAULT_TTL (%s) is longer than LLMGATE_TOKEN_MAX_TTL (%s): lower the default or raise the maximum",
			formatDuration(c.TokenDefaultTTL), formatDuration(c.TokenMaxTTL))
	}
	positive("LLMGATE_CLI_TOKEN_TTL", c.CLITokenTTL, "30d")
	if c.TokenMaxTTL > 0 && c.CLITokenTTL > c.TokenMaxTTL {
		add("LLMGATE_CLI_TOKEN_TTL (%s) is longer than LLMGATE_TOKEN_MAX_TTL (%s): the credential of llmgate login is an API token; lower it or raise the maximum",
			formatDuration(c.CLITokenTTL), formatDuration(c.TokenMaxTTL))
	}
	positive("LLMGATE_KEY_ROTATION", c.KeyRotation, "30d")
	notNegative("LLMGATE_USER_RECHECK_INTERVAL", c.UserRecheckInterval)
	notNegative("LLMGATE_TOKEN_REQUIRE_LOGIN_WITHIN", c.TokenRequireLoginWithin)

	// Limits and spend.
	if c.UserRPM < 0 {
		add("LLMGATE_USER_RPM must not be negative (0 turns it off)")
	}
	if !(c.UserMonthlyBudgetUSD >= 0) || math.IsInf(c.UserMonthlyBudgetUSD, 0) {
		add("LLMGATE_USER_MONTHLY_BUDGET_USD must be a non-negative amount in USD (0 = no cap)")
	}
	if c.CostHeader != "" {
		if msg := headerProblem(c.CostHeader); msg != "" {
			add("LLMGATE_COST_HEADER: %q %s", c.CostHeader, msg)
		}
	}
	positive("LLMGATE_USAGE_RETENTION", c.UsageRetention, "400d")

	// Claude Code.
	if c.GatewayTokenTTL < minGatewayTokenTTL {
		add("LLMGATE_GATEWAY_TOKEN_TTL (%s) must be at least %s: Claude Code refreshes when less than 5 minutes are left, so a shorter lifetime means a refresh before nearly every request",
			formatDuration(c.GatewayTokenTTL), formatDuration(minGatewayTokenTTL))
	}
	if c.GatewayRefreshTTL < c.GatewayTokenTTL {
		add("LLMGATE_GATEWAY_REFRESH_TTL (%s) must be at least LLMGATE_GATEWAY_TOKEN_TTL (%s)",
			formatDuration(c.GatewayRefreshTTL), formatDuration(c.GatewayTokenTTL))
	}
	if c.TokenMaxTTL > 0 && c.GatewayRefreshTTL > c.TokenMaxTTL {
		add("LLMGATE_GATEWAY_REFRESH_TTL (%s) is longer than LLMGATE_TOKEN_MAX_TTL (%s): a Claude Code sign-in is kept as a token record; lower it or raise the maximum",
			formatDuration(c.GatewayRefreshTTL), formatDuration(c.TokenMaxTTL))
	}
	if c.OTLPEndpoint != "" {
		if msg := httpURLProblem(c.OTLPEndpoint); msg != "" {
			add("LLMGATE_OTLP_ENDPOINT %s %s, e.g. http://otel-collector:4318", showURL(c.OTLPEndpoint), msg)
		}
	}

	// Operations.
	switch c.LogFormat {
	case "json", "text":
	default:
		add("LLMGATE_LOG_FORMAT %q is not json or text", c.LogFormat)
	}
	for _, pr := range c.TrustedProxies {
		if !pr.IsValid() {
			add("LLMGATE_TRUSTED_PROXIES holds an invalid prefix")
		}
	}
	notNegative("LLMGATE_SHUTDOWN_GRACE", c.ShutdownGrace)
	notNegative("LLMGATE_SHUTDOWN_DELAY", c.ShutdownDelay)
	if c.AuditWebhookURL != "" {
		if msg := httpURLProblem(c.AuditWebhookURL); msg != "" {
			add("LLMGATE_AUDIT_WEBHOOK_URL %s %s, e.g. https://siem.example.com/hooks/llmgate", showURL(c.AuditWebhookURL), msg)
		}
	}

	// YAML-only sections.
	p = append(p, c.upstreamProblems()...)
	for _, model := range sortedKeys(c.Prices) {
		pr := c.Prices[model]
		if model == "" {
			add("prices: a model name is empty")
		}
		if !(pr.InputPerMTok >= 0) || !(pr.OutputPerMTok >= 0) || math.IsInf(pr.InputPerMTok, 0) || math.IsInf(pr.OutputPerMTok, 0) {
			add("prices.%s: input_per_mtok and output_per_mtok must be non-negative USD amounts", model)
		}
	}
	for _, g := range sortedKeys(c.Budgets.Groups) {
		if g == "" {
			add("budgets.groups: a group name is empty")
		}
		if v := c.Budgets.Groups[g]; !(v >= 0) || math.IsInf(v, 0) {
			add("budgets.groups.%s must be a non-negative amount in USD", g)
		}
	}
	p = append(p, c.policyProblems()...)
	return p
}

// upstreamProblems checks the YAML upstreams.
func (c *Config) upstreamProblems() []string {
	var p []string
	add := func(format string, args ...any) { p = append(p, fmt.Sprintf(format, args...)) }
	names := map[string]bool{}
	routed := map[string]string{} // path → upstream
	for i, u := range c.Upstreams {
		label := fmt.Sprintf("upstreams[%d]", i)
		if u.Name != "" {
			label = fmt.Sprintf("upstreams[%d] (%s)", i, u.Name)
		}
		switch {
		case u.Name == "":
			add("%s: name is required", label)
		case names[u.Name]:
			add("%s: name %q is used twice", label, u.Name)
		}
		names[u.Name] = true
		if u.URL == "" {
			add("%s: url is required, e.g. http://litellm:4000", label)
		} else if msg := httpURLProblem(u.URL); msg != "" {
			add("%s: url %s %s", label, showURL(u.URL), msg)
		}
		if u.APIKeyEnv != "" && u.APIKey == "" {
			add("%s: api_key_env names %s, which is not set: set that variable to the upstream's key", label, u.APIKeyEnv)
		}
		if len(u.Paths) == 0 {
			add("%s: paths is required: the path prefixes routed here, e.g. [\"/v1/\"]", label)
		}
		for _, path := range u.Paths {
			if !strings.HasPrefix(path, "/") {
				add("%s: path %q must start with /", label, path)
				continue
			}
			if other, ok := routed[path]; ok {
				add("%s: path %q is also routed to %s", label, path, other)
			}
			routed[path] = label
			if u.StripPrefix != "" && !strings.HasPrefix(path, u.StripPrefix) {
				add("%s: strip_prefix %q is not a prefix of path %q", label, u.StripPrefix, path)
			}
		}
		if u.StripPrefix != "" && !strings.HasPrefix(u.StripPrefix, "/") {
			add("%s: strip_prefix %q must start with /", label, u.StripPrefix)
		}
	}
	return p
}

// policyProblems checks the Claude Code policies.
func (c *Config) policyProblems() []string {
	var p []string
	add := func(format string, args ...any) { p = append(p, fmt.Sprintf(format, args...)) }
	policies := c.ClaudeCode.Policies
	for i, pol := range policies {
		label := fmt.Sprintf("claude_code.policies[%d]", i)
		if len(pol.Match.Groups) == 0 && len(pol.Match.EmailDomains) == 0 && i < len(policies)-1 {
			add("%s matches everyone (no match groups or email_domains), so the policies after it never apply: give it a match or move it last", label)
		}
		for _, d := range pol.Match.EmailDomains {
			if msg := domainProblem(d); msg != "" {
				add("%s: match email_domains %q %s", label, d, msg)
			}
		}
		if v := pol.MonthlyBudgetUSD; !(v >= 0) || math.IsInf(v, 0) {
			add("%s: monthly_budget_usd must be a non-negative amount in USD (0 = no cap)", label)
		}
		if pol.Settings != nil {
			if _, err := json.Marshal(pol.Settings); err != nil {
				add("%s: settings cannot be served as JSON (are all keys strings?): %v", label, err)
			}
		}
	}
	return p
}

// publicURLProblems checks LLMGATE_PUBLIC_URL.
func publicURLProblems(raw string) []string {
	const name = "LLMGATE_PUBLIC_URL"
	const fix = "write it like https://llm.example.com"
	if raw == "" {
		return []string{name + " is required: the external base URL of the gateway, e.g. https://llm.example.com"}
	}
	if msg := httpURLProblem(raw); msg != "" {
		return []string{fmt.Sprintf("%s %s %s: %s", name, showURL(raw), msg, fix)}
	}
	u, _ := url.Parse(raw)
	var p []string
	if u.User != nil {
		p = append(p, fmt.Sprintf("%s %s must not hold a user or password: %s", name, showURL(raw), fix))
	}
	if u.RawQuery != "" || u.ForceQuery {
		p = append(p, fmt.Sprintf("%s %s must not have a query (?…): %s", name, showURL(raw), fix))
	}
	if u.Fragment != "" || strings.Contains(raw, "#") {
		p = append(p, fmt.Sprintf("%s %s must not have a fragment (#…): %s", name, showURL(raw), fix))
	}
	if strings.HasSuffix(u.Path, "/") {
		p = append(p, fmt.Sprintf("%s %s must not end with /", name, showURL(raw)))
	}
	return p
}

// httpURLProblem says what keeps raw from being an absolute http(s) URL
// with a host, or "".
func httpURLProblem(raw string) string {
	if msg := absoluteURLProblem(raw); msg != "" {
		return msg
	}
	u, _ := url.Parse(raw)
	if u.Scheme != "http" && u.Scheme != "https" {
		return "must start with http:// or https://"
	}
	return ""
}

// absoluteURLProblem says what keeps raw from being an absolute URL with a
// host, or "".
func absoluteURLProblem(raw string) string {
	u, err := url.Parse(raw)
	switch {
	case err != nil:
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err // without the URL itself, which may hold a password
		}
		return fmt.Sprintf("is not a valid URL (%v)", err)
	case !u.IsAbs():
		return "is not an absolute URL (it needs a scheme such as https://)"
	case u.Host == "":
		return "has no host"
	}
	return ""
}

// showURL renders a URL for a message with any password masked; a URL that
// does not parse is not shown if it might hold credentials.
func showURL(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		if strings.Contains(raw, "@") {
			return "(value not shown: it may hold a password)"
		}
		return strconv.Quote(raw)
	}
	return strconv.Quote(u.Redacted())
}

// domainProblem says what keeps d from being a bare email domain, or "".
func domainProblem(d string) string {
	switch {
	case strings.Contains(d, "@"):
		return "is not a domain: write the part after @, e.g. example.com"
	case strings.ContainsAny(d, " /:"), !strings.Contains(d, "."):
		return "is not a domain, e.g. example.com"
	}
	return ""
}

// headerProblem says what keeps h from being a header we may set, or "".
func headerProblem(h string) string {
	if h == "" {
		return "is empty"
	}
	for _, r := range h {
		if !isTokenRune(r) {
			return "is not a valid header name"
		}
	}
	switch strings.ToLower(h) {
	case "authorization", "proxy-authorization", "x-api-key", "cookie", "host",
		"content-length", "content-type", "transfer-encoding", "connection", "upgrade", "te":
		return "is reserved: choose a header of your own, e.g. X-LLMGate-User-Email"
	}
	return ""
}

// isTokenRune reports whether r may appear in an HTTP header name (RFC 9110 token).
func isTokenRune(r rune) bool {
	return r < 0x80 && (r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' ||
		strings.ContainsRune("!#$%&'*+-.^_`|~", r))
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// Parsers. Each returns an error that quotes the value and says how to fix it.

func parseString(s string) (string, error) { return strings.TrimSpace(s), nil }

// parseWord is a lower-cased single word, for settings with a fixed set of values.
func parseWord(s string) (string, error) { return strings.ToLower(strings.TrimSpace(s)), nil }

// parsePublicURL trims spaces and a trailing slash: PUBLIC_URL/oauth2/callback
// must not get a double slash.
func parsePublicURL(s string) (string, error) {
	return strings.TrimRight(strings.TrimSpace(s), "/"), nil
}

// parseList splits a comma list, trimming spaces and dropping empty items.
func parseList(s string) ([]string, error) {
	var out []string
	for _, item := range strings.Split(s, ",") {
		if item = strings.TrimSpace(item); item != "" {
			out = append(out, item)
		}
	}
	return out, nil
}

// parseLowerList is parseList with every item lower-cased (emails, domains).
func parseLowerList(s string) ([]string, error) {
	return parseList(strings.ToLower(s))
}

// parseScopes splits scopes on spaces or commas, dropping duplicates.
func parseScopes(s string) ([]string, error) {
	var out []string
	for _, f := range strings.FieldsFunc(s, func(r rune) bool { return r == ',' || r == ' ' || r == '\t' }) {
		if !contains(out, f) {
			out = append(out, f)
		}
	}
	return out, nil
}

// parseBool accepts true/false, 1/0 and yes/no, in any case.
func parseBool(s string) (bool, error) {
	switch strings.ToLower(strings.TrimSpace(s)) {
	case "true", "1", "yes":
		return true, nil
	case "false", "0", "no":
		return false, nil
	}
	return false, fmt.Errorf("invalid boolean %q: use true or false (also 1/0, yes/no)", s)
}

// parseFloat parses a finite decimal number.
func parseFloat(s string) (float64, error) {
	f, err := strconv.ParseFloat(strings.TrimSpace(s), 64)
	if err != nil || math.IsNaN(f) || math.IsInf(f, 0) {
		return 0, fmt.Errorf("invalid number %q: use a decimal amount, e.g. 200 or 49.5", s)
	}
	return f, nil
}

// parsePrefixes parses a comma list of CIDRs; a bare IP is a single-address
// prefix (/32 or /128). Every bad entry is named.
func parsePrefixes(s string) ([]netip.Prefix, error) {
	items, _ := parseList(s)
	var out []netip.Prefix
	var bad []string
	for _, item := range items {
		if p, err := netip.ParsePrefix(item); err == nil {
			out = append(out, p.Masked())
			continue
		}
		if a, err := netip.ParseAddr(item); err == nil {
			out = append(out, netip.PrefixFrom(a, a.BitLen()))
			continue
		}
		bad = append(bad, strconv.Quote(item))
	}
	if len(bad) > 0 {
		return nil, fmt.Errorf("not a CIDR or IP address: %s; write e.g. 10.0.0.0/8, 192.168.1.10 or fd00::/8",
			strings.Join(bad, ", "))
	}
	return out, nil
}

// parseDuration parses a duration: Go syntax (90m, 1h30m, 500ms) plus d for
// days of 24 hours, alone or combined (30d, 1d12h, 1.5d). It is
// internal/duration's grammar, so settings and the API read durations alike.
func parseDuration(s string) (time.Duration, error) {
	return duration.Parse(s)
}

// formatDuration renders d the way it is configured: "30d", "1d12h", "90m".
func formatDuration(d time.Duration) string {
	const day = 24 * time.Hour
	out := ""
	if days := d / day; days != 0 {
		out = fmt.Sprintf("%dd", days)
	}
	if rest := d % day; rest != 0 || out == "" {
		r := rest.String()
		if strings.HasSuffix(r, "m0s") {
			r = strings.TrimSuffix(r, "0s")
		}
		if strings.HasSuffix(r, "h0m") {
			r = strings.TrimSuffix(r, "0m")
		}
		out += r
	}
	return out
}

// sizeUnits maps an upper-cased size suffix to its multiplier.
func sizeUnits() map[string]float64 {
	return map[string]float64{
		"": 1, "B": 1,
		"K": 1e3, "KB": 1e3, "KI": 1 << 10, "KIB": 1 << 10,
		"M": 1e6, "MB": 1e6, "MI": 1 << 20, "MIB": 1 << 20,
		"G": 1e9, "GB": 1e9, "GI": 1 << 30, "GIB": 1 << 30,
		"T": 1e12, "TB": 1e12, "TI": 1 << 40, "TIB": 1 << 40,
	}
}

// parseSize parses a byte size: a number of bytes, or with a unit: KiB, MiB,
// GiB, TiB (powers of 1024) or KB, MB, GB, TB (powers of 1000), any case,
// e.g. "32MiB", "1GiB", "512KiB", "1048576", "1.5MB".
func parseSize(s string) (int64, error) {
	orig := s
	fail := func() (int64, error) {
		return 0, fmt.Errorf("invalid size %q: use bytes or a unit, e.g. 1048576, 512KiB, 32MiB, 1GiB (KB/MB/GB are powers of 1000)", orig)
	}
	s = strings.TrimSpace(s)
	i := 0
	for i < len(s) && (s[i] >= '0' && s[i] <= '9' || s[i] == '.') {
		i++
	}
	num, unit := s[:i], strings.ToUpper(strings.TrimSpace(s[i:]))
	mult, ok := sizeUnits()[unit]
	if num == "" || !ok {
		return fail()
	}
	if !strings.Contains(num, ".") {
		n, err := strconv.ParseInt(num, 10, 64)
		if err != nil || (n != 0 && int64(mult) > math.MaxInt64/n) {
			return fail()
		}
		return n * int64(mult), nil
	}
	f, err := strconv.ParseFloat(num, 64)
	if err != nil || f*mult >= math.MaxInt64 {
		return fail()
	}
	return int64(f * mult), nil
}

// yamlExample shows the sections that exist only in the YAML file. --help
// prints it, and a test loads it, so it stays valid.
const yamlExample = `upstreams:                       # several upstreams; longest path prefix wins
  - name: litellm
    url: http://litellm:4000
    api_key_env: LITELLM_KEY       # the key is read from this variable
    paths: ["/v1/"]
  - name: anthropic-direct
    url: https://api.anthropic.com
    paths: ["/anthropic/"]
    strip_prefix: /anthropic
prices:                          # USD per million tokens; longest model-name prefix wins
  claude-sonnet-4-6: {input_per_mtok: 3, output_per_mtok: 15}
budgets:
  groups: {ml-research: 500}     # monthly USD cap for each member of the group
claude_code:
  policies:                      # first match wins; no match = everyone
    - match: {groups: [ml-research]}   # or email_domains: [example.com]
      models: [claude-opus-4-7, claude-sonnet-4-6]
      settings: {permissions: {defaultMode: acceptEdits}}
      monthly_budget_usd: 200
`

// printServeUsage prints `llmgate serve --help`: every setting, grouped,
// with its variable, flag, default and meaning.
func printServeUsage(w io.Writer, table []setting) {
	var b strings.Builder
	b.WriteString(`Usage: llmgate serve [--config FILE] [flags]

Runs the gateway. Every setting is an environment variable, a flag and a key
of the YAML file: LLMGATE_PUBLIC_URL is also --public-url and public_url.
A flag beats the environment, which beats the file, which beats the default.
Durations are Go durations plus d for days (90s, 15m, 24h, 30d, 1d12h); lists
are comma-separated; booleans are true/false, 1/0 or yes/no.

A minimal deployment sets:
`)
	for _, s := range table {
		if s.required {
			v := s.example
			if v == "" {
				v = "..."
			}
			fmt.Fprintf(&b, "  %s=%s\n", s.env, v)
		}
	}
	b.WriteString("\nConfiguration file\n")
	fmt.Fprintf(&b, "  %s, --config FILE\n", configEnv)
	wrap(&b, "YAML file holding any of the settings below (keys in snake_case, e.g. public_url: https://llm.example.com) and the sections that exist only there, shown at the end.")

	group := ""
	for _, s := range table {
		if s.group != group {
			group = s.group
			fmt.Fprintf(&b, "\n%s\n", group)
		}
		var notes []string
		if s.required {
			notes = append(notes, "required")
		}
		if s.def != "" {
			notes = append(notes, "default "+s.def)
		}
		if s.secret {
			notes = append(notes, "secret")
		}
		fmt.Fprintf(&b, "  %s, --%s %s", s.env, s.flagName(), s.arg)
		if len(notes) > 0 {
			fmt.Fprintf(&b, "  (%s)", strings.Join(notes, ", "))
		}
		b.WriteString("\n")
		wrap(&b, s.help)
		if s.example != "" {
			fmt.Fprintf(&b, "      e.g. %s=%s\n", s.env, s.example)
		}
	}
	b.WriteString("\nYAML-only sections (--config FILE or LLMGATE_CONFIG):\n\n")
	for _, line := range strings.SplitAfter(yamlExample, "\n") {
		if line != "" {
			b.WriteString("  " + line)
		}
	}
	io.WriteString(w, b.String())
}

// wrap writes text indented by six spaces, wrapped at 80 columns.
func wrap(b *strings.Builder, text string) {
	const indent, width = "      ", 80
	line := indent
	for _, word := range strings.Fields(text) {
		if len(line) > len(indent) && len(line)+1+len(word) > width {
			b.WriteString(line + "\n")
			line = indent
		}
		if len(line) > len(indent) {
			line += " "
		}
		line += word
	}
	if len(line) > len(indent) {
		b.WriteString(line + "\n")
	}
}
