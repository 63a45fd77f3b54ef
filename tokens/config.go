package tokens

import (
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"time"
)

// Defaults for zero Config fields.
const (
	DefaultAudience       = "llmgate"
	DefaultAlgorithm      = "EdDSA"
	DefaultRotation       = 30 * 24 * time.Hour
	DefaultTTL            = 30 * 24 * time.Hour
	DefaultMaxTTL         = 90 * 24 * time.Hour
	DefaultPrefix         = "llmgate:"
	DefaultLeeway         = 30 * time.Second
	DefaultCacheSize      = 100_000
	DefaultResyncInterval = 30 * time.Second
)

// Algorithms a Service can sign with.
const (
	AlgEdDSA = "EdDSA" // Ed25519
	AlgES256 = "ES256" // ECDSA P-256 with SHA-256
)

// Config configures a Service. Zero fields take the documented defaults.
type Config struct {
	// Issuer is the iss of every token: LLMGATE_PUBLIC_URL. Required.
	Issuer string
	// Audience is the aud of every token. Default "llmgate".
	Audience string
	// Algorithm signs new keys: "EdDSA" (Ed25519, default) or "ES256".
	// Tokens signed with keys of either algorithm keep verifying. When the
	// newest stored key has another algorithm, New makes a key of this one.
	Algorithm string
	// Secret is LLMGATE_SECRET (at least 32 bytes). The key that encrypts
	// the signing keys at rest is derived from it with HKDF-SHA-256.
	Secret []byte
	// Rotation is how often a new signing key is made
	// (LLMGATE_KEY_ROTATION). Default 30 days.
	Rotation time.Duration
	// DefaultTTL is a token's lifetime when the request names none
	// (LLMGATE_TOKEN_DEFAULT_TTL). Default 30 days.
	DefaultTTL time.Duration
	// MaxTTL is the longest lifetime Issue grants (LLMGATE_TOKEN_MAX_TTL).
	// Default 90 days. A retired key stays published for MaxTTL after the
	// next key replaced it.
	MaxTTL time.Duration
	// Prefix starts every Redis key and the pub/sub channel. Default "llmgate:".
	Prefix string
	// Leeway is the clock skew allowed on exp, nbf and iat. Default 30s.
	Leeway time.Duration
	// CacheSize bounds the verified-token cache. Default 100 000 entries.
	CacheSize int
	// ResyncInterval is how often the whole revocation state is reloaded
	// from Redis, in case pub/sub messages were lost. Default 30s.
	ResyncInterval time.Duration
	// FailOpen is LLMGATE_FAILSAFE=open: when Redis cannot be reached,
	// Verify accepts a first-seen token whose signature and claims verify,
	// using the last known revocation state, instead of returning
	// ErrUnavailable. Tokens already seen are answered from memory either way.
	FailOpen bool
	// Now is the clock. Default time.Now.
	Now func() time.Time
	// Logger receives background errors and refusals worth noting. Default: discard.
	Logger *slog.Logger

	// Intervals of the background loops; zero means the defaults below.
	// Unexported: tests shorten them.
	healthInterval        time.Duration // PING, 1s
	flushInterval         time.Duration // last_used_at batch write, 5s
	rotationCheckInterval time.Duration // min(Rotation/20, 1m)
}

func (c Config) withDefaults() Config {
	if c.Audience == "" {
		c.Audience = DefaultAudience
	}
	if c.Algorithm == "" {
		c.Algorithm = DefaultAlgorithm
	}
	if c.Rotation == 0 {
		c.Rotation = DefaultRotation
	}
	if c.DefaultTTL == 0 {
		c.DefaultTTL = DefaultTTL
	}
	if c.MaxTTL == 0 {
		c.MaxTTL = DefaultMaxTTL
	}
	if c.Prefix == "" {
		c.Prefix = DefaultPrefix
	}
	if c.Leeway == 0 {
		c.Leeway = DefaultLeeway
	}
	if c.CacheSize == 0 {
		c.CacheSize = DefaultCacheSize
	}
	if c.ResyncInterval == 0 {
		c.ResyncInterval = DefaultResyncInterval
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.healthInterval == 0 {
		c.healthInterval = time.Second
	}
	if c.flushInterval == 0 {
		c.flushInterval = lastUsedEvery
	}
	if c.rotationCheckInterval == 0 {
		c.rotationCheckInterval = min(c.Rotation/20, time.Minute)
		c.rotationCheckInterval = max(c.rotationCheckInterval, time.Second)
	}
	return c
}

// Validate reports every problem with c (after defaults), each naming its variable.
func (c Config) Validate() []error {
	c = c.withDefaults()
	var errs []error
	if c.Issuer == "" {
		errs = append(errs, errors.New("LLMGATE_PUBLIC_URL is required: it is the issuer (iss) of API tokens"))
	}
	if len(c.Secret) < 32 {
		errs = append(errs, fmt.Errorf("LLMGATE_SECRET must be at least 32 bytes, got %d: generate one with `llmgate secret`", len(c.Secret)))
	}
	if c.Algorithm != AlgEdDSA && c.Algorithm != AlgES256 {
		errs = append(errs, fmt.Errorf("token signing algorithm %q is not supported: use EdDSA or ES256", c.Algorithm))
	}
	if c.Rotation < time.Minute {
		errs = append(errs, fmt.Errorf("LLMGATE_KEY_ROTATION must be at least 1m, got %s", formatDuration(c.Rotation)))
	}
	if c.MaxTTL < minTTL {
		errs = append(errs, fmt.Errorf("LLMGATE_TOKEN_MAX_TTL must be at least %s, got %s", formatDuration(minTTL), formatDuration(c.MaxTTL)))
	}
	if c.DefaultTTL < minTTL || c.DefaultTTL > c.MaxTTL {
		errs = append(errs, fmt.Errorf("LLMGATE_TOKEN_DEFAULT_TTL must be between %s and LLMGATE_TOKEN_MAX_TTL (%s), got %s", formatDuration(minTTL), formatDuration(c.MaxTTL), formatDuration(c.DefaultTTL)))
	}
	if c.Leeway < 0 || c.Leeway > 5*time.Minute {
		errs = append(errs, fmt.Errorf("token clock leeway must be between 0 and 5m, got %s", c.Leeway))
	}
	if c.CacheSize < 0 {
		errs = append(errs, fmt.Errorf("token cache size must not be negative, got %d", c.CacheSize))
	}
	if c.ResyncInterval < 100*time.Millisecond {
		errs = append(errs, fmt.Errorf("token revocation resync interval must be at least 100ms, got %s", c.ResyncInterval))
	}
	return errs
}

// formatDuration writes whole days as "90d" (the form the configuration
// accepts) and anything else as Go does.
func formatDuration(d time.Duration) string {
	const day = 24 * time.Hour
	if d != 0 && d%day == 0 {
		return strconv.FormatInt(int64(d/day), 10) + "d"
	}
	return d.String()
}
