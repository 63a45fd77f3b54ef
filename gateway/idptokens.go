package gateway

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/llmgate/llmgate/oidc"
	"github.com/llmgate/llmgate/tokens"
)

// ClientIDP is the client id given to the identity provider's own tokens
// used as API credentials (Claude Desktop's gateway sign-in).
const ClientIDP = "idp"

// idpCache remembers verified identity provider tokens by the SHA-256 of
// the token until they expire, so a token seen before costs no signature
// check and no Redis round trip.
type idpCache struct {
	mu    sync.Mutex
	m     map[[32]byte]*idpEntry
	swept time.Time
}

type idpEntry struct {
	claims *tokens.Claims
	groups []string
}

// idpCacheMax bounds the remembered tokens; past it the cache starts again.
const idpCacheMax = 100_000

func (c *idpCache) get(key [32]byte) *idpEntry {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.m[key]
}

func (c *idpCache) put(key [32]byte, e *idpEntry, now time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.m == nil {
		c.m = map[[32]byte]*idpEntry{}
	}
	if now.Sub(c.swept) > time.Minute || len(c.m) >= idpCacheMax {
		for k, v := range c.m {
			if !now.Before(v.claims.ExpiresAt) {
				delete(c.m, k)
			}
		}
		if len(c.m) >= idpCacheMax {
			clear(c.m)
		}
		c.swept = now
	}
	c.m[key] = e
}

// isIDPToken reports, cheaply and without trusting it, whether raw says it
// was issued by the identity provider: a JWT whose payload's iss is
// LLMGATE_OIDC_ISSUER. Only then is it verified as one; everything else is
// an llmgate token.
func (s *Server) isIDPToken(raw string) bool {
	if len(s.cfg.IDPTokenAudiences) == 0 {
		return false
	}
	first := strings.IndexByte(raw, '.')
	if first < 0 {
		return false
	}
	rest := raw[first+1:]
	second := strings.IndexByte(rest, '.')
	if second < 0 || second > 16<<10 {
		return false
	}
	payload, err := base64.RawURLEncoding.DecodeString(rest[:second])
	if err != nil {
		return false
	}
	var p struct {
		Iss string `json:"iss"`
	}
	if json.Unmarshal(payload, &p) != nil {
		return false
	}
	return p.Iss != "" && strings.TrimSuffix(p.Iss, "/") == s.rp.IssuerURL()
}

// errIDPRefused wraps the refusals of an identity provider token.
type idpError struct {
	status int
	code   string
	msg    string
	err    error
}

func (e *idpError) Error() string { return e.err.Error() }
func (e *idpError) Unwrap() error { return e.err }

// verifyIDPToken checks an identity provider token (SPEC §8, Claude
// Desktop) and returns its claims in llmgate's shape: the same person,
// limits and cut-offs as their API tokens. A token seen before is
// answered from memory; the person's block and revoke-since cut-off are
// checked every time.
func (s *Server) verifyIDPToken(ctx context.Context, raw string) (*identity, error) {
	key := sha256.Sum256([]byte(raw))
	now := s.cfg.Now()
	e := s.idp.get(key)
	if e == nil {
		b, err := s.rp.VerifyBearer(ctx, raw, s.cfg.IDPTokenAudiences)
		var pe *oidc.PolicyError
		switch {
		case errors.As(err, &pe):
			code := "login_refused"
			if pe.Reason == "email_unverified" {
				code = "email_unverified"
			}
			return nil, &idpError{status: http.StatusForbidden, code: code, msg: pe.Error() + ": ask your administrator", err: err}
		case errors.Is(err, oidc.ErrNotReady):
			return nil, &idpError{status: http.StatusServiceUnavailable, code: "unavailable",
				msg: "the gateway has not reached the identity provider yet; try again shortly", err: err}
		case err != nil:
			return nil, &idpError{status: http.StatusUnauthorized, code: "invalid_token",
				msg: "the identity provider's token was not accepted (expired, or not meant for this gateway): sign in again", err: err}
		}
		id := hex.EncodeToString(key[:8])
		e = &idpEntry{
			claims: &tokens.Claims{
				ID: "idp-" + id, Subject: b.Subject, Email: b.Email, Name: b.Name, ClientID: ClientIDP,
				Scopes: []string{tokens.ScopeLLM}, IssuedAt: b.IssuedAt, NotBefore: b.IssuedAt, ExpiresAt: b.Expiry,
			},
			groups: b.Groups,
		}
		s.idp.put(key, e, now)
	}
	cl := e.claims
	if !now.Before(cl.ExpiresAt) {
		return nil, &idpError{status: http.StatusUnauthorized, code: "token_expired",
			msg: "the identity provider's token expired: sign in again", err: tokens.ErrExpired}
	}
	if s.tokens.Blocked(cl.Email) {
		return nil, &idpError{status: http.StatusForbidden, code: "user_blocked",
			msg: "this person is blocked by an administrator", err: tokens.ErrUserBlocked}
	}
	if cut, ok := s.tokens.RevokedSince(cl.Email); ok && cl.IssuedAt.Before(cut) {
		return nil, &idpError{status: http.StatusUnauthorized, code: "token_revoked",
			msg: "this person's credentials were revoked by an administrator: sign in again", err: tokens.ErrUserRevoked}
	}
	return &identity{claims: cl, groups: e.groups, haveGroups: true}, nil
}

// identify verifies an API credential: an llmgate token with scope llm, or
// — when LLMGATE_IDP_TOKEN_AUDIENCES is set and the token says it comes
// from the identity provider — the provider's own token. local answers
// llmgate tokens from this process's state alone (no Redis).
func (s *Server) identify(ctx context.Context, raw string, local bool) (*identity, error) {
	if s.isIDPToken(raw) {
		return s.verifyIDPToken(ctx, raw)
	}
	verify := s.tokens.Verify
	if local {
		verify = s.tokens.VerifyLocal
	}
	cl, err := verify(ctx, raw, tokens.ScopeLLM)
	if err != nil {
		return nil, err
	}
	return &identity{claims: cl}, nil
}

// identifyError maps an error of identify to the answer.
func (s *Server) identifyError(err error) *apiError {
	var ie *idpError
	if errors.As(err, &ie) {
		e := refuse(ie.status, ie.code, "%s", ie.msg)
		if ie.status >= 500 {
			e.cause = fmt.Errorf("verify identity provider token: %w", err)
		}
		return e
	}
	return tokenError("verify token", err)
}
