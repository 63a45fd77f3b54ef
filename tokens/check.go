package tokens

import (
	"context"
	"fmt"
	"strings"
)

// VerifyLocal checks raw from this process's own state alone, never
// reading Redis: a token seen before as Verify answers it from memory
// (expiry, revocation, blocks, revoke-since cut-offs, scope); a token not
// seen before by its signature, header, claims and times, then the
// in-memory revocation state (the revoke-since cut-off against its iat,
// strictly) and scope — but not its record, so a token whose record was
// deleted or revoked on a replica this one has not heard from is accepted.
//
// It is for answers that must not depend on Redis and reveal nothing but
// configuration, such as Claude Code's managed settings; the proxy uses
// Verify. It returns the same errors as Verify, and does not remember a
// token it had not seen.
func (s *Service) VerifyLocal(ctx context.Context, raw, scope string) (*Claims, error) {
	now := s.now()
	if e := s.cache.get(raw); e != nil {
		if now.UnixNano() >= e.until {
			return nil, ErrExpired
		}
		if err := s.rev.check(e.claims.ID, e.claims.Email, e.issued.Load()); err != nil {
			return nil, err
		}
		if !e.claims.HasScope(scope) {
			return nil, ErrScope
		}
		return e.claims, nil
	}
	c, err := s.parse(ctx, raw, now)
	if err != nil {
		return nil, err
	}
	if err := s.rev.check(c.ID, c.Email, c.IssuedAt.UnixNano()); err != nil {
		return nil, fmt.Errorf("verify token %s of %s: %w", c.ID, c.Email, err)
	}
	if !c.HasScope(scope) {
		return nil, fmt.Errorf("verify token %s: %w: has %q, needs %q", c.ID, ErrScope, strings.Join(c.Scopes, " "), scope)
	}
	return c, nil
}
