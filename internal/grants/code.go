package grants

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/redis/go-redis/v9"
)

// Loopback authorization codes in Redis:
//
//	{prefix}grants:code:{sha256(code)}  STRING Code JSON, expires after CodeTTL
//
// The code itself is never stored.

// Code is what an authorization code of the loopback CLI sign-in stands
// for: who approved it and what it is bound to.
type Code struct {
	// Challenge is the PKCE S256 code_challenge the code is bound to.
	Challenge string `json:"challenge"`
	// RedirectURI is the loopback redirect URI the code was sent to; the
	// token request must name the same.
	RedirectURI string `json:"redirect_uri"`
	// Person approved the sign-in.
	Person Person `json:"person"`
	// TokenName and Host are what the CLI asked for and reported.
	TokenName string `json:"name,omitempty"`
	Host      string `json:"host,omitempty"`
	// ExpiresAt is set by NewCode.
	ExpiresAt time.Time `json:"expires_at"`
}

// NewCode stores c under a new code (256 random bits) for CodeTTL and
// returns the code.
func (s *Store) NewCode(ctx context.Context, c Code) (string, error) {
	code := newSecret()
	c.ExpiresAt = s.cfg.Now().Add(s.cfg.CodeTTL).UTC()
	data, err := json.Marshal(c)
	if err != nil {
		return "", fmt.Errorf("new code: %w", err)
	}
	if err := s.rdb.Set(ctx, s.codeKey(hashOf(code)), data, s.cfg.CodeTTL).Err(); err != nil {
		return "", unavailable("new code", err)
	}
	return code, nil
}

// TakeCode returns what code stands for and deletes it, in one step: a
// code is taken once. It returns ErrNotFound for an unknown, used or
// expired code.
func (s *Store) TakeCode(ctx context.Context, code string) (Code, error) {
	if code == "" || len(code) > 256 {
		return Code{}, fmt.Errorf("take code: %w", ErrNotFound)
	}
	data, err := s.rdb.GetDel(ctx, s.codeKey(hashOf(code))).Bytes()
	switch {
	case errors.Is(err, redis.Nil):
		return Code{}, fmt.Errorf("take code: %w", ErrNotFound)
	case err != nil:
		return Code{}, unavailable("take code", err)
	}
	var c Code
	if err := json.Unmarshal(data, &c); err != nil {
		return Code{}, fmt.Errorf("take code: malformed grant: %w", err)
	}
	if !s.cfg.Now().Before(c.ExpiresAt) {
		return Code{}, fmt.Errorf("take code: %w: expired at %s", ErrNotFound, c.ExpiresAt.Format(time.RFC3339))
	}
	return c, nil
}

// RestoreCode puts a code taken by TakeCode back for the rest of its
// lifetime, when what it was taken for failed for a reason that was not
// the caller's (the store was down). It does nothing for an expired code.
func (s *Store) RestoreCode(ctx context.Context, code string, c Code) error {
	left := c.ExpiresAt.Sub(s.cfg.Now())
	if left <= 0 {
		return nil
	}
	data, err := json.Marshal(c)
	if err != nil {
		return fmt.Errorf("restore code: %w", err)
	}
	if err := s.rdb.SetNX(ctx, s.codeKey(hashOf(code)), data, left).Err(); err != nil {
		return unavailable("restore code", err)
	}
	return nil
}
