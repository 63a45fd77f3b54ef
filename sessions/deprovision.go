package sessions

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/redis/go-redis/v9"
)

// DeleteByIDPSession ends every session created under the identity
// provider's session sid of issuer (a back-channel logout token's iss and
// sid) and returns how many existed. It reads the index that Create keeps
// for sessions with an IDPSessionID, not the keyspace. Sessions of other
// issuers with the same sid are untouched. An IdP session with no sessions
// left is not an error (0, nil); an empty sid is an error.
func (s *Store) DeleteByIDPSession(ctx context.Context, issuer, sid string) (int, error) {
	if sid == "" {
		return 0, errors.New("delete sessions of identity provider session: sid is empty")
	}
	idx := s.idpSessionKey(issuer, sid)
	handles, err := s.rdb.ZRange(ctx, idx, 0, -1).Result()
	if err != nil {
		return 0, fmt.Errorf("delete sessions of identity provider session: %w", err)
	}
	if len(handles) == 0 {
		return 0, nil
	}
	dels := make([]*redis.StringCmd, len(handles))
	_, err = s.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		for i, h := range handles {
			dels[i] = p.GetDel(ctx, s.sessionKey(h))
		}
		return nil
	})
	if err != nil && !errors.Is(err, redis.Nil) {
		return 0, fmt.Errorf("delete sessions of identity provider session: %w", err)
	}
	n := 0
	owner := map[string]string{} // handle → email, of the sessions deleted
	for i, d := range dels {
		val, err := d.Bytes()
		if errors.Is(err, redis.Nil) {
			continue // expired or deleted already
		}
		if err != nil {
			return n, fmt.Errorf("delete sessions of identity provider session: %w", err)
		}
		n++
		var sess Session
		if json.Unmarshal(val, &sess) == nil && sess.Email != "" {
			owner[handles[i]] = sess.Email
		} // else its user-index entry is dropped by the next ListByEmail
	}
	// Only the handles just read leave the indexes: a login racing with this
	// call keeps its entries.
	var emails []string
	seen := map[string]bool{}
	_, err = s.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		for h, email := range owner {
			p.ZRem(ctx, s.userKey(email), h)
			if !seen[email] {
				seen[email] = true
				emails = append(emails, email)
			}
		}
		p.ZRem(ctx, idx, anys(handles)...)
		return nil
	})
	if err != nil {
		return n, fmt.Errorf("delete sessions of identity provider session: index: %w", err)
	}
	if err := s.forgetIfEmpty(ctx, emails); err != nil {
		return n, fmt.Errorf("delete sessions of identity provider session: %w", err)
	}
	return n, nil
}

// SeenOnce records that id of kind (for example "logout-jti" and a logout
// token's issuer and jti) was seen, for ttl, and reports whether this is the
// first time within ttl: false means a replay. Only a hash of id is stored.
// Two calls racing on the same id, from any replica, get true exactly once.
// On error first is false, so a caller that refuses on !first fails closed.
// kind and id must not be empty and ttl must be positive.
func (s *Store) SeenOnce(ctx context.Context, kind, id string, ttl time.Duration) (first bool, err error) {
	switch {
	case kind == "":
		return false, errors.New("seen once: kind is empty")
	case id == "":
		return false, errors.New("seen once: id is empty")
	case ttl <= 0:
		return false, fmt.Errorf("seen once: ttl %v is not positive", ttl)
	}
	ok, err := s.rdb.SetNX(ctx, s.seenKey(kind, id), 1, ttl).Result()
	if err != nil {
		return false, fmt.Errorf("seen once %s: %w", kind, err)
	}
	return ok, nil
}

// idpSessionKey is the index of the sessions created under the identity
// provider session sid of issuer. Both are chosen by the provider, so the
// key holds their hash.
func (s *Store) idpSessionKey(issuer, sid string) string {
	return s.cfg.Prefix + "idp-session:" + handleOf(issuer+"\x00"+sid)
}

func (s *Store) seenKey(kind, id string) string {
	return s.cfg.Prefix + "seen:" + kind + ":" + handleOf(id)
}
