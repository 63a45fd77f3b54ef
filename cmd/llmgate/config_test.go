package main

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

const day = 24 * time.Hour

// testSecret is a valid LLMGATE_SECRET.
var testSecret = strings.Repeat("k", 32)

// validEnv returns an environment holding every required setting.
func validEnv() map[string]string {
	return map[string]string{
		"LLMGATE_PUBLIC_URL":         "https://llm.example.com",
		"LLMGATE_SECRET":             testSecret,
		"LLMGATE_REDIS_URL":          "redis://redis:6379/0",
		"LLMGATE_OIDC_ISSUER":        "https://sso.example.com",
		"LLMGATE_OIDC_CLIENT_ID":     "llmgate",
		"LLMGATE_OIDC_CLIENT_SECRET": "client-secret",
		"LLMGATE_UPSTREAM_URL":       "http://litellm:4000",
	}
}

// withEnv returns validEnv changed by kv pairs; an empty value deletes.
func withEnv(kv ...string) map[string]string {
	env := validEnv()
	for i := 0; i+1 < len(kv); i += 2 {
		if kv[i+1] == "" {
			delete(env, kv[i])
		} else {
			env[kv[i]] = kv[i+1]
		}
	}
	return env
}

func environ(env map[string]string) []string {
	var out []string
	for k, v := range env {
		out = append(out, k+"="+v)
	}
	sort.Strings(out)
	return out
}

func getenv(env map[string]string) func(string) string {
	return func(k string) string { return env[k] }
}

// load calls LoadConfig with env as the whole environment.
func load(tb testing.TB, args []string, env map[string]string) (*Config, []string, error) {
	tb.Helper()
	return LoadConfig(args, getenv(env), environ(env), io.Discard)
}

// writeYAML writes a configuration file and returns its path.
func writeYAML(tb testing.TB, content string) string {
	tb.Helper()
	path := filepath.Join(tb.TempDir(), "llmgate.yaml")
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		tb.Fatal(err)
	}
	return path
}

// problems returns the problems of a *ConfigError, failing if err is another kind.
func problems(tb testing.TB, err error) []string {
	tb.Helper()
	if err == nil {
		return nil
	}
	var ce *ConfigError
	if !errors.As(err, &ce) {
		tb.Fatalf("error %v (%T) is not a *ConfigError", err, err)
	}
	return ce.Problems
}

// hasProblem reports whether some problem starts with prefix and contains every part.
func hasProblem(ps []string, prefix string, parts ...string) bool {
next:
	for _, p := range ps {
		if !strings.HasPrefix(p, prefix) {
			continue
		}
		for _, part := range parts {
			if !strings.Contains(p, part) {
				continue next
			}
		}
		return true
	}
	return false
}

var prefixComparer = cmp.Comparer(func(a, b netip.Prefix) bool { return a == b })

func TestDefaultConfig(t *testing.T) {
	want := &Config{
		Listen:                ":8080",
		OIDCScopes:            []string{"openid", "email", "profile"},
		OIDCGroupsClaim:       "groups",
		SessionTTL:            24 * time.Hour,
		SessionIdleTimeout:    8 * time.Hour,
		TokenDefaultTTL:       30 * day,
		TokenMaxTTL:           90 * day,
		IdentityHeaders:       []string{"X-LLMGate-User-Email"},
		Failsafe:              "closed",
		LogFormat:             "json",
		KeyRotation:           30 * day,
		CLITokenTTL:           30 * day,
		MaxBody:               32 << 20,
		ShutdownGrace:         30 * time.Second,
		UpstreamHeaderTimeout: 10 * time.Minute,
		GatewayTokenTTL:       time.Hour,
		GatewayRefreshTTL:     14 * day,
		SSEKeepalive:          60 * time.Second,
		CostHeader:            "x-litellm-response-cost",
		UserRecheckInterval:   24 * time.Hour,
		UsageRetention:        400 * day,
	}
	if diff := cmp.Diff(want, DefaultConfig(), prefixComparer); diff != "" {
		t.Errorf("DefaultConfig() mismatch (-want +got):\n%s", diff)
	}

	got, warnings, err := load(t, nil, validEnv())
	if err != nil {
		t.Fatalf("LoadConfig(valid env) error: %v", err)
	}
	if len(warnings) != 0 {
		t.Errorf("LoadConfig(valid env) warnings = %q, want none", warnings)
	}
	want.PublicURL = "https://llm.example.com"
	want.Secret = testSecret
	want.RedisURL = "redis://redis:6379/0"
	want.OIDCIssuer = "https://sso.example.com"
	want.OIDCClientID = "llmgate"
	want.OIDCClientSecret = "client-secret"
	want.UpstreamURL = "http://litellm:4000"
	if diff := cmp.Diff(want, got, prefixComparer); diff != "" {
		t.Errorf("LoadConfig(required env only) mismatch (-want +got):\n%s", diff)
	}
}

func TestLoadConfigPrecedence(t *testing.T) {
	const yamlFile = "listen: ':7000'\nsession_ttl: 12h\nlog_format: text\nallowed_groups: [yaml-a, yaml-b]\n"
	tests := []struct {
		name     string
		yaml     bool
		env      []string
		args     []string
		listen   string
		ttl      time.Duration
		format   string
		groups   []string
		failsafe string
	}{
		{name: "defaults", listen: ":8080", ttl: 24 * time.Hour, format: "json", failsafe: "closed"},
		{name: "yaml over defaults", yaml: true,
			listen: ":7000", ttl: 12 * time.Hour, format: "text", groups: []string{"yaml-a", "yaml-b"}, failsafe: "closed"},
		{name: "env over yaml", yaml: true,
			env:    []string{"LLMGATE_LISTEN", ":7100", "LLMGATE_SESSION_TTL", "1d", "LLMGATE_ALLOWED_GROUPS", " env-a , ,env-b ", "LLMGATE_FAILSAFE", "open"},
			listen: ":7100", ttl: 24 * time.Hour, format: "text", groups: []string{"env-a", "env-b"}, failsafe: "open"},
		{name: "flag over env over yaml", yaml: true,
			env:    []string{"LLMGATE_LISTEN", ":7100", "LLMGATE_SESSION_TTL", "1d", "LLMGATE_FAILSAFE", "open"},
			args:   []string{"--listen", ":7200", "-session-ttl=9h", "--allowed-groups="},
			listen: ":7200", ttl: 9 * time.Hour, format: "text", groups: nil, failsafe: "open"},
		{name: "flag over default", args: []string{"--log-format=TEXT", "--failsafe", "open"},
			listen: ":8080", ttl: 24 * time.Hour, format: "text", failsafe: "open"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			env := withEnv(tt.env...)
			if tt.yaml {
				env[configEnv] = writeYAML(t, yamlFile)
			}
			cfg, _, err := load(t, tt.args, env)
			if err != nil {
				t.Fatalf("LoadConfig(%q) error: %v", tt.args, err)
			}
			got := []any{cfg.Listen, cfg.SessionTTL, cfg.LogFormat, cfg.AllowedGroups, cfg.Failsafe}
			want := []any{tt.listen, tt.ttl, tt.format, tt.groups, tt.failsafe}
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("LoadConfig(%q) [listen ttl format groups failsafe] mismatch (-want +got):\n%s", tt.args, diff)
			}
		})
	}
}

func TestLoadConfigFileFlagBeatsVariable(t *testing.T) {
	env := validEnv()
	env[configEnv] = writeYAML(t, "listen: ':7000'\n")
	other := writeYAML(t, "listen: ':7001'\n")
	cfg, _, err := load(t, []string{"--config", other}, env)
	if err != nil {
		t.Fatalf("LoadConfig(--config) error: %v", err)
	}
	if cfg.Listen != ":7001" {
		t.Errorf("LoadConfig(--config FILE, LLMGATE_CONFIG=OTHER).Listen = %q, want %q from --config", cfg.Listen, ":7001")
	}

	_, _, err = load(t, []string{"--config", filepath.Join(t.TempDir(), "missing.yaml")}, validEnv())
	if ps := problems(t, err); !hasProblem(ps, "--config: cannot read the configuration file") {
		t.Errorf("LoadConfig(--config missing) problems = %q, want one about reading the file", ps)
	}
}

func TestLoadConfigRequired(t *testing.T) {
	for _, name := range []string{
		"LLMGATE_PUBLIC_URL", "LLMGATE_SECRET", "LLMGATE_REDIS_URL", "LLMGATE_OIDC_ISSUER",
		"LLMGATE_OIDC_CLIENT_ID", "LLMGATE_OIDC_CLIENT_SECRET", "LLMGATE_UPSTREAM_URL",
	} {
		t.Run(name, func(t *testing.T) {
			_, _, err := load(t, nil, withEnv(name, ""))
			ps := problems(t, err)
			if len(ps) != 1 || !hasProblem(ps, name+" is required") {
				t.Errorf("LoadConfig(without %s) problems = %q, want one saying it is required", name, ps)
			}
		})
	}

	t.Run("upstream url not required with yaml upstreams", func(t *testing.T) {
		env := withEnv("LLMGATE_UPSTREAM_URL", "")
		env[configEnv] = writeYAML(t, "upstreams:\n  - {name: a, url: 'http://a:4000', paths: [/v1/]}\n")
		if _, _, err := load(t, nil, env); err != nil {
			t.Errorf("LoadConfig(upstreams in YAML, no LLMGATE_UPSTREAM_URL) error: %v, want nil", err)
		}
	})
}

func TestLoadConfigReportsEveryProblemAtOnce(t *testing.T) {
	env := map[string]string{
		"LLMGATE_SECRET":       "short",
		"LLMGATE_SESSION_TTL":  "forever",
		"LLMGATE_MAX_BODY":     "lots",
		"LLMGATE_INJECT_USER":  "maybe",
		"LLMGATE_FAILSAFE":     "sideways",
		"LLMGATE_PUBLIC_URL":   "ftp://llm.example.com",
		"LLMGATE_USER_RPM":     "ten",
		"LLMGATE_LOG_FORMAT":   "xml",
		"LLMGATE_REDIS_URL":    "redis://redis:6379/0",
		"LLMGATE_UPSTREAM_URL": "http://litellm:4000",
	}
	_, _, err := load(t, []string{"--gateway-token-ttl=5m"}, env)
	ps := problems(t, err)
	want := []struct{ prefix, part string }{
		{"LLMGATE_SECRET is too short", "llmgate secret"},
		{"LLMGATE_SESSION_TTL: invalid duration", `"forever"`},
		{"LLMGATE_MAX_BODY: invalid size", `"lots"`},
		{"LLMGATE_INJECT_USER: invalid boolean", `"maybe"`},
		{"LLMGATE_USER_RPM:", `"ten"`},
		{"LLMGATE_FAILSAFE", `"sideways"`},
		{"LLMGATE_LOG_FORMAT", `"xml"`},
		{"LLMGATE_PUBLIC_URL", "http"},
		{"LLMGATE_OIDC_ISSUER is required", ""},
		{"LLMGATE_OIDC_CLIENT_ID is required", ""},
		{"LLMGATE_OIDC_CLIENT_SECRET is required", ""},
		{"LLMGATE_GATEWAY_TOKEN_TTL", "10m"},
	}
	for _, w := range want {
		if !hasProblem(ps, w.prefix, w.part) {
			t.Errorf("LoadConfig(many bad values): no problem starting %q containing %q; got:\n%s", w.prefix, w.part, strings.Join(ps, "\n"))
		}
	}
	if len(ps) != len(want) {
		t.Errorf("LoadConfig(many bad values) = %d problems, want %d:\n%s", len(ps), len(want), strings.Join(ps, "\n"))
	}
	if got, want := err.Error(), strings.Join(ps, "\n"); got != want {
		t.Errorf("ConfigError.Error() = %q, want the problems one per line %q", got, want)
	}
}

func TestLoadConfigNeverEchoesSecrets(t *testing.T) {
	const (
		shortSecret = "s3cr3t-TOO-SHORT"
		redisPass   = "hunter2-redis-pw"
		urlPass     = "upstream-url-pw"
		flagSecret  = "flag-secret-value-that-is-long-enough-0123456789"
	)
	tests := []struct {
		name   string
		env    []string
		args   []string
		prefix string // a problem or warning that must be there
		hidden []string
	}{
		{name: "short secret", env: []string{"LLMGATE_SECRET", shortSecret},
			prefix: "LLMGATE_SECRET is too short", hidden: []string{shortSecret}},
		{name: "redis url that does not parse", env: []string{"LLMGATE_REDIS_URL", "redis://:" + redisPass + "@redis:port/0"},
			prefix: "LLMGATE_REDIS_URL is not a valid URL", hidden: []string{redisPass}},
		{name: "redis url with a bad database", env: []string{"LLMGATE_REDIS_URL", "redis://:" + redisPass + "@redis:6379/db"},
			prefix: "LLMGATE_REDIS_URL", hidden: []string{redisPass}},
		{name: "upstream url with a password", env: []string{"LLMGATE_UPSTREAM_URL", "ftp://user:" + urlPass + "@litellm"},
			prefix: "LLMGATE_UPSTREAM_URL", hidden: []string{urlPass}},
		{name: "upstream url with a password that does not parse", env: []string{"LLMGATE_UPSTREAM_URL", "http://user:" + urlPass + "@litellm:port"},
			prefix: "LLMGATE_UPSTREAM_URL", hidden: []string{urlPass}},
		{name: "secret as a flag", args: []string{"--secret", flagSecret, "--oidc-client-secret=" + flagSecret, "--public-url", "nope"},
			prefix: "--secret puts a secret on the command line", hidden: []string{flagSecret}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, warnings, err := load(t, tt.args, withEnv(tt.env...))
			if err == nil {
				t.Fatalf("LoadConfig(%s) error = nil, want a problem", tt.name)
			}
			all := append(problems(t, err), warnings...)
			if !hasProblem(all, tt.prefix) {
				t.Errorf("LoadConfig(%s): no problem or warning starting %q; got:\n%s", tt.name, tt.prefix, strings.Join(all, "\n"))
			}
			text := strings.Join(all, "\n")
			for _, h := range tt.hidden {
				if strings.Contains(text, h) {
					t.Errorf("LoadConfig(%s) output reveals the secret %q:\n%s", tt.name, h, text)
				}
			}
		})
	}
}

func TestParseDuration(t *testing.T) {
	tests := []struct {
		in      string
		want    time.Duration
		wantErr bool
	}{
		{in: "0", want: 0},
		{in: "90m", want: 90 * time.Minute},
		{in: "1h30m", want: 90 * time.Minute},
		{in: "500ms", want: 500 * time.Millisecond},
		{in: "30d", want: 30 * day},
		{in: "1d12h", want: 36 * time.Hour},
		{in: "1.5d", want: 36 * time.Hour},
		{in: "12h1d", want: 36 * time.Hour},
		{in: " 2d ", want: 2 * day},
		{in: "-1d", want: -day},
		{in: "", wantErr: true},
		{in: "30", wantErr: true},
		{in: "d", wantErr: true},
		{in: "1w", wantErr: true},
		{in: "abc", wantErr: true},
		{in: "1d 2h", wantErr: true},
		{in: "200000000d", wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := parseDuration(tt.in)
			if (err != nil) != tt.wantErr {
				t.Fatalf("parseDuration(%q) error = %v, want error %v", tt.in, err, tt.wantErr)
			}
			if err != nil {
				if tt.in != "" && !strings.Contains(err.Error(), fmt.Sprintf("%q", tt.in)) {
					t.Errorf("parseDuration(%q) error = %q, want it to quote the value", tt.in, err)
				}
				return
			}
			if got != tt.want {
				t.Errorf("parseDuration(%q) = %v, want %v", tt.in, got, tt.want)
			}
		})
	}
}

func TestParseSize(t *testing.T) {
	tests := []struct {
		in      string
		want    int64
		wantErr bool
	}{
		{in: "1048576", want: 1 << 20},
		{in: "0", want: 0},
		{in: "32MiB", want: 32 << 20},
		{in: "1GiB", want: 1 << 30},
		{in: "512KiB", want: 512 << 10},
		{in: "512kib", want: 512 << 10},
		{in: "32 MiB", want: 32 << 20},
		{in: "10MB", want: 10_000_000},
		{in: "64KB", want: 64_000},
		{in: "2GB", want: 2_000_000_000},
		{in: "1.5MiB", want: 3 << 19},
		{in: "100B", want: 100},
		{in: "", wantErr: true},
		{in: "MiB", wantErr: true},
		{in: "32XB", wantErr: true},
		{in: "-1MiB", wantErr: true},
		{in: "lots", wantErr: true},
		{in: "99999999999TiB", wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := parseSize(tt.in)
			if (err != nil) != tt.wantErr {
				t.Fatalf("parseSize(%q) = %d, %v, want error %v", tt.in, got, err, tt.wantErr)
			}
			if err == nil && got != tt.want {
				t.Errorf("parseSize(%q) = %d, want %d", tt.in, got, tt.want)
			}
		})
	}
}

func TestParseValues(t *testing.T) {
	tests := []struct {
		name string
		env  []string
		get  func(*Config) any
		want any
	}{
		{"bool yes", []string{"LLMGATE_INJECT_USER", "yes"}, func(c *Config) any { return c.InjectUser }, true},
		{"bool 1", []string{"LLMGATE_INJECT_USER", "1"}, func(c *Config) any { return c.InjectUser }, true},
		{"bool TRUE", []string{"LLMGATE_INJECT_USER", "TRUE"}, func(c *Config) any { return c.InjectUser }, true},
		{"bool no", []string{"LLMGATE_INJECT_USER", "no"}, func(c *Config) any { return c.InjectUser }, false},
		{"bool 0", []string{"LLMGATE_REDIS_CLUSTER", "0"}, func(c *Config) any { return c.RedisCluster }, false},
		{"list trims and drops empties", []string{"LLMGATE_ADMIN_GROUPS", " a, ,b,, c "}, func(c *Config) any { return c.AdminGroups }, []string{"a", "b", "c"}},
		{"emails lower-cased", []string{"LLMGATE_ADMIN_EMAILS", "Alice@Example.COM"}, func(c *Config) any { return c.AdminEmails }, []string{"alice@example.com"}},
		{"scopes with spaces", []string{"LLMGATE_OIDC_SCOPES", "openid  email offline_access"}, func(c *Config) any { return c.OIDCScopes }, []string{"openid", "email", "offline_access"}},
		{"scopes with commas", []string{"LLMGATE_OIDC_SCOPES", "openid, email,profile"}, func(c *Config) any { return c.OIDCScopes }, []string{"openid", "email", "profile"}},
		{"public url trailing slash", []string{"LLMGATE_PUBLIC_URL", "https://llm.example.com/"}, func(c *Config) any { return c.PublicURL }, "https://llm.example.com"},
		{"public url with path", []string{"LLMGATE_PUBLIC_URL", "https://example.com/llm/"}, func(c *Config) any { return c.PublicURL }, "https://example.com/llm"},
		{"identity headers", []string{"LLMGATE_IDENTITY_HEADER", "X-LLMGate-User-Email, x-litellm-end-user-id"}, func(c *Config) any { return c.IdentityHeaders }, []string{"X-LLMGate-User-Email", "x-litellm-end-user-id"}},
		{"trusted proxies", []string{"LLMGATE_TRUSTED_PROXIES", "10.0.0.0/8, 192.168.1.10,fd00::1,172.16.5.4/12"}, func(c *Config) any { return c.TrustedProxies }, []netip.Prefix{
			netip.MustParsePrefix("10.0.0.0/8"), netip.MustParsePrefix("192.168.1.10/32"),
			netip.MustParsePrefix("fd00::1/128"), netip.MustParsePrefix("172.16.0.0/12")}},
		{"budget", []string{"LLMGATE_USER_MONTHLY_BUDGET_USD", "49.5"}, func(c *Config) any { return c.UserMonthlyBudgetUSD }, 49.5},
		{"max body", []string{"LLMGATE_MAX_BODY", "1GiB"}, func(c *Config) any { return c.MaxBody }, int64(1 << 30)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg, _, err := load(t, nil, withEnv(tt.env...))
			if err != nil {
				t.Fatalf("LoadConfig(%s=%q) error: %v", tt.env[0], tt.env[1], err)
			}
			if diff := cmp.Diff(tt.want, tt.get(cfg), prefixComparer); diff != "" {
				t.Errorf("LoadConfig(%s=%q) mismatch (-want +got):\n%s", tt.env[0], tt.env[1], diff)
			}
		})
	}
}

func TestValidateRefuses(t *testing.T) {
	tests := []struct {
		name   string
		env    []string
		prefix string
		part   string
	}{
		{"public url relative", []string{"LLMGATE_PUBLIC_URL", "llm.example.com"}, "LLMGATE_PUBLIC_URL", "absolute"},
		{"public url path only", []string{"LLMGATE_PUBLIC_URL", "/gateway"}, "LLMGATE_PUBLIC_URL", "absolute"},
		{"public url ftp", []string{"LLMGATE_PUBLIC_URL", "ftp://llm.example.com"}, "LLMGATE_PUBLIC_URL", "http"},
		{"public url query", []string{"LLMGATE_PUBLIC_URL", "https://llm.example.com?x=1"}, "LLMGATE_PUBLIC_URL", "query"},
		{"public url fragment", []string{"LLMGATE_PUBLIC_URL", "https://llm.example.com#top"}, "LLMGATE_PUBLIC_URL", "fragment"},
		{"public url no host", []string{"LLMGATE_PUBLIC_URL", "https:///path"}, "LLMGATE_PUBLIC_URL", "no host"},
		{"public url user", []string{"LLMGATE_PUBLIC_URL", "https://me@llm.example.com"}, "LLMGATE_PUBLIC_URL", "user"},
		{"issuer relative", []string{"LLMGATE_OIDC_ISSUER", "sso.example.com"}, "LLMGATE_OIDC_ISSUER", "absolute"},
		{"upstream not http", []string{"LLMGATE_UPSTREAM_URL", "litellm:4000"}, "LLMGATE_UPSTREAM_URL", "http"},
		{"listen", []string{"LLMGATE_LISTEN", "8080"}, "LLMGATE_LISTEN", "host:port"},
		{"scopes without openid", []string{"LLMGATE_OIDC_SCOPES", "email profile"}, "LLMGATE_OIDC_SCOPES", "openid"},
		{"idle over ttl", []string{"LLMGATE_SESSION_IDLE_TIMEOUT", "2d"}, "LLMGATE_SESSION_IDLE_TIMEOUT", "LLMGATE_SESSION_TTL"},
		{"default over max", []string{"LLMGATE_TOKEN_DEFAULT_TTL", "100d"}, "LLMGATE_TOKEN_DEFAULT_TTL", "LLMGATE_TOKEN_MAX_TTL"},
		{"zero session ttl", []string{"LLMGATE_SESSION_TTL", "0"}, "LLMGATE_SESSION_TTL", "positive"},
		{"negative token ttl", []string{"LLMGATE_TOKEN_MAX_TTL", "-1d"}, "LLMGATE_TOKEN_MAX_TTL", "positive"},
		{"gateway token under 10m", []string{"LLMGATE_GATEWAY_TOKEN_TTL", "9m"}, "LLMGATE_GATEWAY_TOKEN_TTL", "10m"},
		{"refresh under token", []string{"LLMGATE_GATEWAY_TOKEN_TTL", "2h", "LLMGATE_GATEWAY_REFRESH_TTL", "1h"}, "LLMGATE_GATEWAY_REFRESH_TTL", "at least"},
		{"refresh over token max", []string{"LLMGATE_GATEWAY_REFRESH_TTL", "100d"}, "LLMGATE_GATEWAY_REFRESH_TTL", "LLMGATE_TOKEN_MAX_TTL"},
		{"cli token over token max", []string{"LLMGATE_CLI_TOKEN_TTL", "100d"}, "LLMGATE_CLI_TOKEN_TTL", "LLMGATE_TOKEN_MAX_TTL"},
		{"failsafe", []string{"LLMGATE_FAILSAFE", "half"}, "LLMGATE_FAILSAFE", "closed or open"},
		{"log format", []string{"LLMGATE_LOG_FORMAT", "xml"}, "LLMGATE_LOG_FORMAT", "json or text"},
		{"trusted proxies", []string{"LLMGATE_TRUSTED_PROXIES", "10.0.0.0/8,10.0.0.300,bogus"}, "LLMGATE_TRUSTED_PROXIES", `"10.0.0.300", "bogus"`},
		{"negative budget", []string{"LLMGATE_USER_MONTHLY_BUDGET_USD", "-5"}, "LLMGATE_USER_MONTHLY_BUDGET_USD", "non-negative"},
		{"budget NaN", []string{"LLMGATE_USER_MONTHLY_BUDGET_USD", "NaN"}, "LLMGATE_USER_MONTHLY_BUDGET_USD", "NaN"},
		{"negative rpm", []string{"LLMGATE_USER_RPM", "-1"}, "LLMGATE_USER_RPM", "negative"},
		{"zero max body", []string{"LLMGATE_MAX_BODY", "0"}, "LLMGATE_MAX_BODY", "positive"},
		{"reserved identity header", []string{"LLMGATE_IDENTITY_HEADER", "Authorization"}, "LLMGATE_IDENTITY_HEADER", "reserved"},
		{"bad identity header", []string{"LLMGATE_IDENTITY_HEADER", "X User"}, "LLMGATE_IDENTITY_HEADER", "header name"},
		{"email domain with @", []string{"LLMGATE_ALLOWED_EMAIL_DOMAINS", "@example.com"}, "LLMGATE_ALLOWED_EMAIL_DOMAINS", "after @"},
		{"admin email", []string{"LLMGATE_ADMIN_EMAILS", "alice"}, "LLMGATE_ADMIN_EMAILS", "email"},
		{"sentinel and cluster", []string{"LLMGATE_REDIS_SENTINEL_MASTER", "m", "LLMGATE_REDIS_CLUSTER", "true", "LLMGATE_REDIS_ADDRS", "a:1"}, "LLMGATE_REDIS_SENTINEL_MASTER", "CLUSTER"},
		{"sentinel without addrs", []string{"LLMGATE_REDIS_SENTINEL_MASTER", "m"}, "LLMGATE_REDIS_ADDRS is required", ""},
		{"cluster without addrs", []string{"LLMGATE_REDIS_CLUSTER", "yes"}, "LLMGATE_REDIS_ADDRS is required", ""},
		{"redis scheme", []string{"LLMGATE_REDIS_URL", "http://redis:6379"}, "LLMGATE_REDIS_URL", "redis"},
		{"audit webhook", []string{"LLMGATE_AUDIT_WEBHOOK_URL", "siem"}, "LLMGATE_AUDIT_WEBHOOK_URL", "absolute"},
		{"otlp endpoint", []string{"LLMGATE_OTLP_ENDPOINT", "grpc://otel:4317"}, "LLMGATE_OTLP_ENDPOINT", "http"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, _, err := load(t, nil, withEnv(tt.env...))
			if ps := problems(t, err); !hasProblem(ps, tt.prefix, tt.part) {
				t.Errorf("LoadConfig(%q): no problem starting %q containing %q; got %q", tt.env, tt.prefix, tt.part, ps)
			}
		})
	}
}

func TestValidateOnAStruct(t *testing.T) {
	c := DefaultConfig()
	if ps := problems(t, c.Validate()); !hasProblem(ps, "LLMGATE_PUBLIC_URL is required") || !hasProblem(ps, "LLMGATE_SECRET is required") {
		t.Errorf("DefaultConfig().Validate() problems = %q, want the required settings named", ps)
	}
	c.PublicURL = "https://llm.example.com/"
	c.Secret = testSecret
	c.RedisURL = "redis://localhost:6379"
	c.OIDCIssuer, c.OIDCClientID, c.OIDCClientSecret = "http://127.0.0.1:5556", "id", "secret"
	c.UpstreamURL = "http://127.0.0.1:4000"
	if ps := problems(t, c.Validate()); len(ps) != 1 || !hasProblem(ps, "LLMGATE_PUBLIC_URL", "end with /") {
		t.Errorf("Validate() with PublicURL ending in / = %q, want one problem about it", ps)
	}
	c.PublicURL = "https://llm.example.com"
	if err := c.Validate(); err != nil {
		t.Errorf("Validate() of a complete config = %v, want nil", err)
	}
}

func TestUnknownVariables(t *testing.T) {
	tests := []struct {
		name, variable, suggest string
	}{
		{"typo", "LLMGATE_PUBLIC_ULR", "LLMGATE_PUBLIC_URL"},
		{"missing letter", "LLMGATE_SESION_TTL", "LLMGATE_SESSION_TTL"},
		{"singular", "LLMGATE_IDENTITY_HEADERS", "LLMGATE_IDENTITY_HEADER"},
		{"no underscore", "LLMGATE_OIDC_CLIENTID", "LLMGATE_OIDC_CLIENT_ID"},
		{"unrelated", "LLMGATE_FOO_BAR", closest("LLMGATE_FOO_BAR", knownEnvNames())},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, warnings, err := load(t, nil, withEnv(tt.variable, "x"))
			if err != nil {
				t.Fatalf("LoadConfig(%s set) error: %v", tt.variable, err)
			}
			want := []string{fmt.Sprintf("%s is not a known variable (a typo?): did you mean %s?", tt.variable, tt.suggest)}
			if diff := cmp.Diff(want, warnings); diff != "" {
				t.Errorf("LoadConfig(%s set) warnings mismatch (-want +got):\n%s", tt.variable, diff)
			}
		})
	}

	t.Run("known and foreign variables", func(t *testing.T) {
		env := withEnv("LLMGATE_LITELLM_KEY", "k", "PATH", "/bin", "LLMGATE_CONFIG", writeYAML(t,
			"upstreams:\n  - {name: a, url: 'http://a', api_key_env: LLMGATE_LITELLM_KEY, paths: [/v1/]}\n"))
		_, warnings, err := load(t, nil, env)
		if err != nil {
			t.Fatalf("LoadConfig error: %v", err)
		}
		if len(warnings) != 0 {
			t.Errorf("LoadConfig(LLMGATE_CONFIG, an api_key_env variable, PATH) warnings = %q, want none", warnings)
		}
	})

	t.Run("warnings come with errors", func(t *testing.T) {
		_, warnings, err := load(t, nil, withEnv("LLMGATE_PUBLIC_URL", "", "LLMGATE_PUBLIC_ULR", "https://x"))
		if err == nil || len(warnings) != 1 {
			t.Errorf("LoadConfig(typo for a required variable) = %v, %q; want an error and the warning", err, warnings)
		}
	})
}

func knownEnvNames() []string {
	names := []string{configEnv}
	for _, s := range settings() {
		names = append(names, s.env)
	}
	return names
}

func TestLoadConfigFlagErrors(t *testing.T) {
	tests := []struct {
		name string
		args []string
		want string
	}{
		{"unknown flag", []string{"--pubic-url", "https://x"}, "unknown flag --pubic-url: did you mean --public-url?"},
		{"missing value", []string{"--listen"}, "flag needs an argument"},
		{"positional", []string{"extra"}, `unexpected argument "extra"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, _, err := load(t, tt.args, validEnv())
			if ps := problems(t, err); !hasProblem(ps, "", tt.want) {
				t.Errorf("LoadConfig(%q) problems = %q, want one containing %q", tt.args, ps, tt.want)
			}
		})
	}

	t.Run("bool flag without value", func(t *testing.T) {
		cfg, _, err := load(t, []string{"--inject-user"}, validEnv())
		if err != nil || !cfg.InjectUser {
			t.Errorf("LoadConfig(--inject-user) = %v; want InjectUser true", err)
		}
	})
}

func TestLoadConfigYAML(t *testing.T) {
	env := withEnv("LLMGATE_UPSTREAM_URL", "", "LLMGATE_PUBLIC_URL", "")
	env["LITELLM_KEY"] = "sk-litellm"
	env[configEnv] = writeYAML(t, "public_url: https://yaml.example.com/\nmax_body: 1048576\ninject_user: true\noidc_scopes: [openid, email]\n"+yamlExample)
	cfg, warnings, err := load(t, nil, env)
	if err != nil {
		t.Fatalf("LoadConfig(yamlExample) error: %v", err)
	}
	if len(warnings) != 0 {
		t.Errorf("LoadConfig(yamlExample) warnings = %q, want none", warnings)
	}
	want := &Config{
		PublicURL:  "https://yaml.example.com",
		MaxBody:    1 << 20,
		InjectUser: true,
		OIDCScopes: []string{"openid", "email"},
		Upstreams: []UpstreamConfig{
			{Name: "litellm", URL: "http://litellm:4000", APIKeyEnv: "LITELLM_KEY", APIKey: "sk-litellm", Paths: []string{"/v1/"}},
			{Name: "anthropic-direct", URL: "https://api.anthropic.com", Paths: []string{"/anthropic/"}, StripPrefix: "/anthropic"},
		},
		Prices:  map[string]Price{"claude-sonnet-4-6": {InputPerMTok: 3, OutputPerMTok: 15}},
		Budgets: BudgetConfig{Groups: map[string]float64{"ml-research": 500}},
		ClaudeCode: ClaudeCodeConfig{Policies: []ClaudeCodePolicy{{
			Match:            PolicyMatch{Groups: []string{"ml-research"}},
			Models:           []string{"claude-opus-4-7", "claude-sonnet-4-6"},
			Settings:         map[string]any{"permissions": map[string]any{"defaultMode": "acceptEdits"}},
			MonthlyBudgetUSD: 200,
		}}},
	}
	got := &Config{
		PublicURL: cfg.PublicURL, MaxBody: cfg.MaxBody, InjectUser: cfg.InjectUser, OIDCScopes: cfg.OIDCScopes,
		Upstreams: cfg.Upstreams, Prices: cfg.Prices, Budgets: cfg.Budgets, ClaudeCode: cfg.ClaudeCode,
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("LoadConfig(yamlExample) mismatch (-want +got):\n%s", diff)
	}
}

func TestLoadConfigYAMLProblems(t *testing.T) {
	tests := []struct {
		name  string
		yaml  string
		count int      // problems expected
		want  []string // each in some problem
	}{
		{"unknown top-level key", "public_ur: https://x\n", 1, []string{"line 1: unknown key \"public_ur\": did you mean public_url?"}},
		{"unknown upstream key", "upstreams:\n  - {name: a, url: 'http://a', paths: [/v1/], api_key: sk-123}\n", 1,
			[]string{"line 2: unknown key \"api_key\" in an upstreams entry", "api_key_env"}},
		{"unknown price key", "prices:\n  m: {input: 3}\n", 1, []string{"unknown key \"input\" in a prices entry: did you mean input_per_mtok?"}},
		{"unknown policy key", "claude_code:\n  policies:\n    - {match: {group: [x]}}\n", 1, []string{"unknown key \"group\" in a claude_code policy's match"}},
		{"bad setting value", "session_ttl: soon\n", 1, []string{"session_ttl in ", "line 1 (LLMGATE_SESSION_TTL): invalid duration \"soon\""}},
		{"mapping for a setting", "listen: {port: 80}\n", 1, []string{"listen in ", "(LLMGATE_LISTEN): want a single value"}},
		{"syntax error", "listen: [\n", 1, []string{"llmgate.yaml: yaml:"}},
		{"wrong type", "prices:\n  m: {input_per_mtok: lots}\n", 1, []string{"line 2: a value is not a number", "e.g. 200"}},
		{"group cap not a number", "budgets:\n  groups:\n    ml-research: lots\n", 1, []string{"line 3: ml-research: lots is not a number: write an amount in USD"}},
		{"policy budget not a number", "claude_code:\n  policies:\n    - match: {groups: [g]}\n      monthly_budget_usd: 20 dollars\n", 1, []string{
			"line 4: monthly_budget_usd: 20 dollars is not a number"}},
		{"group caps as a list", "budgets:\n  groups: [ml-research]\n", 1, []string{"line 2: groups must map group names to monthly caps in USD, e.g. groups: {ml-research: 500}"}},
		{"group caps without groups", "budgets:\n  ml-research: 500\n", 1, []string{"unknown key \"ml-research\" in budgets: did you mean groups?"}},
		{"default budget not a number", "user_monthly_budget_usd: lots\n", 1, []string{"LLMGATE_USER_MONTHLY_BUDGET_USD", "invalid number \"lots\""}},
		{"default budget negative", "user_monthly_budget_usd: -5\n", 1, []string{"LLMGATE_USER_MONTHLY_BUDGET_USD must be a non-negative amount"}},
		{"upstream without name url paths", "upstreams:\n  - {api_key_env: NOT_SET_ANYWHERE}\n", 4, []string{
			"upstreams[0]: name is required", "upstreams[0]: url is required", "upstreams[0]: paths is required",
			"upstreams[0]: api_key_env names NOT_SET_ANYWHERE, which is not set"}},
		{"upstream bad path and url", "upstreams:\n  - {name: a, url: 'ftp://a', paths: [v1/], strip_prefix: /x}\n", 2, []string{
			"upstreams[0] (a): url \"ftp://a\" must start with http", "upstreams[0] (a): path \"v1/\" must start with /"}},
		{"upstream duplicate", "upstreams:\n  - {name: a, url: 'http://a', paths: [/v1/]}\n  - {name: a, url: 'http://b', paths: [/v1/]}\n", 2, []string{
			"upstreams[1] (a): name \"a\" is used twice", "upstreams[1] (a): path \"/v1/\" is also routed to upstreams[0] (a)"}},
		{"strip prefix", "upstreams:\n  - {name: a, url: 'http://a', paths: [/v1/], strip_prefix: /anthropic}\n", 1, []string{
			"strip_prefix \"/anthropic\" is not a prefix of path \"/v1/\""}},
		{"negative prices and budgets", "prices:\n  m: {input_per_mtok: -1}\nbudgets:\n  groups: {g: -5}\nclaude_code:\n  policies:\n    - {match: {groups: [g]}, monthly_budget_usd: -1}\n", 3, []string{
			"prices.m: input_per_mtok and output_per_mtok must be non-negative", "budgets.groups.g must be a non-negative",
			"claude_code.policies[0]: monthly_budget_usd must be a non-negative"}},
		{"catch-all policy not last", "claude_code:\n  policies:\n    - {models: [a]}\n    - {match: {groups: [g]}}\n", 1, []string{
			"claude_code.policies[0] matches everyone"}},
		{"policy settings not JSON", "claude_code:\n  policies:\n    - {match: {groups: [g]}, settings: {a: {1: x}}}\n", 1, []string{
			"claude_code.policies[0]: settings cannot be served as JSON"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			env := validEnv()
			env[configEnv] = writeYAML(t, tt.yaml)
			_, _, err := load(t, nil, env)
			ps := problems(t, err)
			for _, part := range tt.want {
				if !hasProblem(ps, "", part) {
					t.Errorf("LoadConfig(%q): no problem containing %q; got:\n%s", tt.yaml, part, strings.Join(ps, "\n"))
				}
			}
			if len(ps) != tt.count {
				t.Errorf("LoadConfig(%q) = %d problems, want %d:\n%s", tt.yaml, len(ps), tt.count, strings.Join(ps, "\n"))
			}
		})
	}
}

func TestLoadConfigYAMLProblemsInLineOrder(t *testing.T) {
	env := validEnv()
	path := writeYAML(t, "lisen: ':80'\nprices:\n  m: {input_per_mtok: lots}\nupstreams:\n  - {nme: a}\n")
	env[configEnv] = path
	_, _, err := load(t, nil, env)
	ps := problems(t, err)
	var lines []int
	for _, p := range ps {
		if strings.HasPrefix(p, path) {
			lines = append(lines, lineOf(p, path))
		}
	}
	if want := []int{1, 3, 5}; !cmp.Equal(lines, want) {
		t.Errorf("LoadConfig(file with 3 problems) lines = %v, want %v; problems:\n%s", lines, want, strings.Join(ps, "\n"))
	}
}

func TestLoadConfigHelp(t *testing.T) {
	for _, arg := range []string{"--help", "-h", "-help"} {
		t.Run(arg, func(t *testing.T) {
			var out bytes.Buffer
			cfg, _, err := LoadConfig([]string{arg}, getenv(validEnv()), nil, &out)
			if !errors.Is(err, flag.ErrHelp) || cfg != nil {
				t.Fatalf("LoadConfig(%s) = %v, %v; want nil, flag.ErrHelp", arg, cfg, err)
			}
			help := out.String()
			mentions := []string{configEnv, "--config", "upstreams:", "claude_code:", "e.g. LLMGATE_REDIS_URL=redis://", "e.g. LLMGATE_PUBLIC_URL=https://"}
			for _, s := range settings() {
				line := fmt.Sprintf("%s, --%s %s", s.env, s.flagName(), s.arg)
				if s.def != "" {
					line += "  (default " + s.def
				}
				mentions = append(mentions, line)
			}
			for _, m := range mentions {
				if !strings.Contains(help, m) {
					t.Errorf("LoadConfig(%s) help does not contain %q", arg, m)
				}
			}
		})
	}
}

// coverage names, for every Config setting, its field, its variable and a
// value different from the default. TestSettingsCoverage sets each through
// the environment, a flag and the YAML file, so the three never drift apart.
var coverage = []struct{ field, env, value string }{
	{"Listen", "LLMGATE_LISTEN", "127.0.0.1:9090"},
	{"PublicURL", "LLMGATE_PUBLIC_URL", "https://gw.example.com"},
	{"Secret", "LLMGATE_SECRET", strings.Repeat("z", 40)},
	{"RedisURL", "LLMGATE_REDIS_URL", "redis://redis:6379/1"},
	{"RedisSentinelMaster", "LLMGATE_REDIS_SENTINEL_MASTER", "mymaster"},
	{"RedisAddrs", "LLMGATE_REDIS_ADDRS", "a:1,b:2"},
	{"RedisCluster", "LLMGATE_REDIS_CLUSTER", "true"},
	{"OIDCIssuer", "LLMGATE_OIDC_ISSUER", "https://idp.example.com"},
	{"OIDCClientID", "LLMGATE_OIDC_CLIENT_ID", "cid"},
	{"OIDCClientSecret", "LLMGATE_OIDC_CLIENT_SECRET", "csecret"},
	{"OIDCScopes", "LLMGATE_OIDC_SCOPES", "openid,email"},
	{"OIDCGroupsClaim", "LLMGATE_OIDC_GROUPS_CLAIM", "roles"},
	{"AllowedEmailDomains", "LLMGATE_ALLOWED_EMAIL_DOMAINS", "example.com"},
	{"AllowedGroups", "LLMGATE_ALLOWED_GROUPS", "eng"},
	{"AdminEmails", "LLMGATE_ADMIN_EMAILS", "alice@example.com"},
	{"AdminGroups", "LLMGATE_ADMIN_GROUPS", "admins"},
	{"SessionTTL", "LLMGATE_SESSION_TTL", "12h"},
	{"SessionIdleTimeout", "LLMGATE_SESSION_IDLE_TIMEOUT", "2h"},
	{"TokenDefaultTTL", "LLMGATE_TOKEN_DEFAULT_TTL", "7d"},
	{"TokenMaxTTL", "LLMGATE_TOKEN_MAX_TTL", "60d"},
	{"UpstreamURL", "LLMGATE_UPSTREAM_URL", "http://litellm:4000"},
	{"UpstreamAPIKey", "LLMGATE_UPSTREAM_API_KEY", "sk-x"},
	{"IdentityHeaders", "LLMGATE_IDENTITY_HEADER", "X-User"},
	{"InjectUser", "LLMGATE_INJECT_USER", "yes"},
	{"Failsafe", "LLMGATE_FAILSAFE", "open"},
	{"TrustedProxies", "LLMGATE_TRUSTED_PROXIES", "10.0.0.0/8"},
	{"LogFormat", "LLMGATE_LOG_FORMAT", "text"},
	{"KeyRotation", "LLMGATE_KEY_ROTATION", "7d"},
	{"CLITokenTTL", "LLMGATE_CLI_TOKEN_TTL", "1d"},
	{"UserRPM", "LLMGATE_USER_RPM", "60"},
	{"MaxBody", "LLMGATE_MAX_BODY", "1MiB"},
	{"ShutdownGrace", "LLMGATE_SHUTDOWN_GRACE", "10s"},
	{"ShutdownDelay", "LLMGATE_SHUTDOWN_DELAY", "5s"},
	{"UpstreamHeaderTimeout", "LLMGATE_UPSTREAM_HEADER_TIMEOUT", "30s"},
	{"AuditWebhookURL", "LLMGATE_AUDIT_WEBHOOK_URL", "https://siem.example.com/hook"},
	{"GatewayTokenTTL", "LLMGATE_GATEWAY_TOKEN_TTL", "30m"},
	{"GatewayRefreshTTL", "LLMGATE_GATEWAY_REFRESH_TTL", "7d"},
	{"SSEKeepalive", "LLMGATE_SSE_KEEPALIVE", "15s"},
	{"OTLPEndpoint", "LLMGATE_OTLP_ENDPOINT", "http://otel:4318"},
	{"IDPTokenAudiences", "LLMGATE_IDP_TOKEN_AUDIENCES", "aud1,aud2"},
	{"UserMonthlyBudgetUSD", "LLMGATE_USER_MONTHLY_BUDGET_USD", "25.5"},
	{"CostHeader", "LLMGATE_COST_HEADER", "x-cost"},
	{"UserRecheckInterval", "LLMGATE_USER_RECHECK_INTERVAL", "12h"},
	{"TokenRequireLoginWithin", "LLMGATE_TOKEN_REQUIRE_LOGIN_WITHIN", "30d"},
	{"UsageRetention", "LLMGATE_USAGE_RETENTION", "90d"},
}

func TestSettingsCoverage(t *testing.T) {
	yamlOnly := map[string]bool{"Upstreams": true, "Prices": true, "Budgets": true, "ClaudeCode": true}
	var fields, covered, envs, tableEnvs []string
	for _, f := range reflect.VisibleFields(reflect.TypeOf(Config{})) {
		if !yamlOnly[f.Name] {
			fields = append(fields, f.Name)
		}
	}
	for _, c := range coverage {
		covered = append(covered, c.field)
		envs = append(envs, c.env)
	}
	for _, s := range settings() {
		tableEnvs = append(tableEnvs, s.env)
		if !strings.HasPrefix(s.env, envPrefix) || s.help == "" || s.set == nil || s.group == "" || s.arg == "" {
			t.Errorf("setting %s lacks a prefix, help, setter, group or arg", s.env)
		}
	}
	sort.Strings(fields)
	sort.Strings(covered)
	sort.Strings(envs)
	sort.Strings(tableEnvs)
	if diff := cmp.Diff(fields, covered); diff != "" {
		t.Errorf("Config fields vs coverage table (-fields +covered):\n%s", diff)
	}
	if diff := cmp.Diff(tableEnvs, envs); diff != "" {
		t.Errorf("settings() vs coverage table (-settings +covered):\n%s", diff)
	}

	s := setting{env: "LLMGATE_PUBLIC_URL"}
	if got := []string{s.flagName(), s.yamlKey()}; !cmp.Equal(got, []string{"public-url", "public_url"}) {
		t.Errorf("flagName, yamlKey of LLMGATE_PUBLIC_URL = %q, want public-url, public_url", got)
	}

	byEnv := map[string]setting{}
	for _, s := range settings() {
		byEnv[s.env] = s
	}
	for _, c := range coverage {
		t.Run(c.env, func(t *testing.T) {
			s := byEnv[c.env]
			field := func(cfg *Config) any { return reflect.ValueOf(cfg).Elem().FieldByName(c.field).Interface() }
			def := field(DefaultConfig())
			sources := []struct {
				name string
				args []string
				env  map[string]string
				yaml string
			}{
				{name: "env", env: map[string]string{c.env: c.value}},
				{name: "flag", args: []string{"--" + s.flagName() + "=" + c.value}},
				{name: "yaml", yaml: fmt.Sprintf("%s: %q\n", s.yamlKey(), c.value)},
			}
			var first any
			for i, src := range sources {
				env := src.env
				if env == nil {
					env = map[string]string{}
				}
				if src.yaml != "" {
					env[configEnv] = writeYAML(t, src.yaml)
				}
				cfg, warnings, ps, err := loadConfig(src.args, getenv(env), environ(env), io.Discard)
				if err != nil || len(ps) > 0 || len(warnings) > 0 && !s.secret {
					t.Fatalf("%s: loadConfig = %v, problems %q, warnings %q", src.name, err, ps, warnings)
				}
				got := field(cfg)
				if cmp.Equal(got, def, prefixComparer) {
					t.Errorf("%s: %s=%q left %s at its default %v", src.name, c.env, c.value, c.field, def)
				}
				if i == 0 {
					first = got
				} else if diff := cmp.Diff(first, got, prefixComparer); diff != "" {
					t.Errorf("%s gives %s a different value than env (-env +%s):\n%s", src.name, c.field, src.name, diff)
				}
			}
		})
	}
}
