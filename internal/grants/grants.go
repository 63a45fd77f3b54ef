package grants

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"time"

	"github.com/redis/go-redis/v9"
)

// Errors returned by Store. Callers branch on them with errors.Is.
var (
	// ErrNotFound: no such grant — unknown, already used, or gone.
	ErrNotFound = errors.New("grant not found")
	// ErrExpired: the grant exists but its time is up.
	ErrExpired = errors.New("grant expired")
	// ErrDecided: the device grant was already approved or denied.
	ErrDecided = errors.New("grant already decided")
	// ErrUnavailable: Redis could not be reached; nothing was changed
	// that the caller can see.
	ErrUnavailable = errors.New("grant store unavailable")
)

// Defaults applied by New to zero Config fields.
const (
	DefaultPrefix          = "llmgate:"
	DefaultCodeTTL         = 60 * time.Second
	DefaultDeviceTTL       = 600 * time.Second
	DefaultInterval        = 5 * time.Second
	DefaultWrongCodeLimit  = 5
	DefaultWrongCodeWindow = time.Minute
)

// SlowDownStep is what a poll that came too soon adds to a device grant's
// interval (RFC 8628 §3.5).
const SlowDownStep = 5 * time.Second

// expiredGrace is how long a device grant is kept after it expired, so
// that a late poll hears expired_token rather than an unknown code.
const expiredGrace = 5 * time.Minute

// Config tunes a Store. Zero fields take the defaults above.
type Config struct {
	// Prefix starts every key. Default "llmgate:".
	Prefix string
	// CodeTTL is the lifetime of a loopback authorization code. Default 60s.
	CodeTTL time.Duration
	// DeviceTTL is the lifetime of a device grant and its user code.
	// Default 600s.
	DeviceTTL time.Duration
	// Interval is the polling interval a device grant starts with. Default 5s.
	Interval time.Duration
	// WrongCodeLimit wrong user codes per WrongCodeWindow are allowed to a
	// browser session before it is refused. Defaults 5 per minute.
	WrongCodeLimit  int
	WrongCodeWindow time.Duration
	// Now is the clock. Default time.Now.
	Now func() time.Time
}

// Store keeps grants in Redis. It is safe for concurrent use.
type Store struct {
	rdb redis.UniversalClient
	cfg Config
}

// New returns a Store on rdb.
func New(rdb redis.UniversalClient, cfg Config) *Store {
	if cfg.Prefix == "" {
		cfg.Prefix = DefaultPrefix
	}
	if cfg.CodeTTL <= 0 {
		cfg.CodeTTL = DefaultCodeTTL
	}
	if cfg.DeviceTTL <= 0 {
		cfg.DeviceTTL = DefaultDeviceTTL
	}
	if cfg.Interval <= 0 {
		cfg.Interval = DefaultInterval
	}
	if cfg.WrongCodeLimit <= 0 {
		cfg.WrongCodeLimit = DefaultWrongCodeLimit
	}
	if cfg.WrongCodeWindow <= 0 {
		cfg.WrongCodeWindow = DefaultWrongCodeWindow
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	return &Store{rdb: rdb, cfg: cfg}
}

// DeviceTTL is the lifetime of a device grant.
func (s *Store) DeviceTTL() time.Duration { return s.cfg.DeviceTTL }

// Interval is the polling interval a device grant starts with.
func (s *Store) Interval() time.Duration { return s.cfg.Interval }

// Person is who approved a grant, as the identity provider named them.
type Person struct {
	Email   string   `json:"email"`
	Subject string   `json:"sub"`
	Name    string   `json:"name,omitempty"`
	Groups  []string `json:"groups,omitempty"`
}

func (s *Store) codeKey(hash string) string     { return s.cfg.Prefix + "grants:code:" + hash }
func (s *Store) deviceKey(hash string) string   { return s.cfg.Prefix + "grants:device:" + hash }
func (s *Store) userCodeKey(code string) string { return s.cfg.Prefix + "grants:user_code:" + code }
func (s *Store) wrongKey(session string) string { return s.cfg.Prefix + "grants:wrong_code:" + session }

// hashOf is the hex SHA-256 of a secret: what names it in Redis.
func hashOf(secret string) string {
	h := sha256.Sum256([]byte(secret))
	return hex.EncodeToString(h[:])
}

// newSecret returns 256 bits from crypto/rand, base64url.
func newSecret() string {
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		panic("grants: crypto/rand failed: " + err.Error())
	}
	return base64.RawURLEncoding.EncodeToString(b)
}

func unavailable(op string, err error) error {
	return fmt.Errorf("%s: %w: %w", op, ErrUnavailable, err)
}

// runScript runs sc, loading it again when Redis forgot it.
func runScript(ctx context.Context, rdb redis.UniversalClient, sc *redis.Script, keys []string, args ...any) (any, error) {
	return sc.Run(ctx, rdb, keys, args...).Result()
}
