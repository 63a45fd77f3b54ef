package sessions

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/redis/go-redis/v9"
)

// LoginFlow is a pending SSO login, kept between /oauth2/start and
// /oauth2/callback under a hash of its OAuth state.
type LoginFlow struct {
	Nonce        string    `json:"nonce"`
	PKCEVerifier string    `json:"pkce_verifier"`
	RedirectPath string    `json:"rd"`
	CreatedAt    time.Time `json:"created_at"`
}

// SaveLogin stores f for ttl under a hash of state; the state itself is not
// stored. A zero f.CreatedAt is set to now. Saving a state that is already
// pending is an error, as is an empty state or a ttl that is not positive.
func (s *Store) SaveLogin(ctx context.Context, state string, f LoginFlow, ttl time.Duration) error {
	if state == "" {
		return errors.New("save login: state is empty")
	}
	if ttl <= 0 {
		return fmt.Errorf("save login: ttl %v is not positive", ttl)
	}
	if f.CreatedAt.IsZero() {
		f.CreatedAt = s.now()
	}
	val, err := json.Marshal(f)
	if err != nil {
		return fmt.Errorf("save login: encode: %w", err)
	}
	ok, err := s.rdb.SetNX(ctx, s.loginKey(state), val, ttl).Result()
	if err != nil {
		return fmt.Errorf("save login: %w", err)
	}
	if !ok {
		return errors.New("save login: state is already pending")
	}
	return nil
}

// TakeLogin returns and removes the login flow saved under state: a flow can
// be taken once. It returns ErrNotFound if the state is unknown, already used
// or expired.
func (s *Store) TakeLogin(ctx context.Context, state string) (LoginFlow, error) {
	if state == "" {
		return LoginFlow{}, ErrNotFound
	}
	val, err := s.rdb.GetDel(ctx, s.loginKey(state)).Bytes()
	if errors.Is(err, redis.Nil) {
		return LoginFlow{}, ErrNotFound
	}
	if err != nil {
		return LoginFlow{}, fmt.Errorf("take login: %w", err)
	}
	var f LoginFlow
	if err := json.Unmarshal(val, &f); err != nil {
		return LoginFlow{}, fmt.Errorf("take login: decode: %w", err)
	}
	return f, nil
}

func (s *Store) loginKey(state string) string { return s.cfg.Prefix + "login:" + handleOf(state) }
