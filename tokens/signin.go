package tokens

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

// Sign-ins (Claude Code's gateway sign-in, SPEC §8) are token records
// whose id is the sign-in's id: every access token of the sign-in carries
// that id as its jti, so revoking the record — by id, by a revoke-user
// cut-off, by a block — stops the current access token through the
// revocation state every replica already keeps. The record's ExpiresAt is
// the end of the refresh-token family; each access token expires sooner.
//
// Refresh-token families in Redis:
//
//	{prefix}tokens:family:{id}  HASH cur (hex SHA-256 of the current refresh
//	                            token), gen, exp (unix ms), user_name,
//	                            revoked (unix ms, after a replay),
//	                            u:{hash} → unix ms when that token was rotated;
//	                            expires with the family
//
// A refresh token is "{id}.{secret}" (256 random bits); only its hash is
// stored.

// DefaultRefreshGrace is how long after a refresh token was rotated its
// reuse counts as two clients racing (refused, the family kept) rather
// than as a replay (the family revoked).
const DefaultRefreshGrace = 30 * time.Second

// ErrInvalidGrant: the refresh token is unknown, used, expired, or its
// sign-in was revoked, or its owner may no longer sign in.
var ErrInvalidGrant = errors.New("refresh token not valid")

// ErrReplay: a refresh token rotated longer than the grace ago was used
// again; the whole sign-in has been revoked. It wraps ErrInvalidGrant.
var ErrReplay = fmt.Errorf("%w: replayed after rotation", ErrInvalidGrant)

func (s *Service) familyKey(id string) string { return s.cfg.Prefix + "tokens:family:" + id }

// SignInRequest describes a sign-in to start.
type SignInRequest struct {
	Name     string // shown in the token list, e.g. "Claude Code"
	Email    string
	Subject  string
	UserName string
	ClientID string   // e.g. ClientClaudeCode
	Scopes   []string // default ["llm"]
	// AccessTTL is the lifetime of each access token; RefreshTTL that of
	// the sign-in (its refresh-token family). Both are required.
	AccessTTL, RefreshTTL time.Duration
	// Address is the client's address, shown in the token list.
	Address string
}

// SignIn is a sign-in's current credentials.
type SignIn struct {
	Record          Record
	AccessToken     string
	AccessExpiresAt time.Time
	RefreshToken    string
}

// StartSignIn makes a sign-in for req: its record, a first access token
// and a first refresh token. Errors: *ValidationError, ErrUserBlocked,
// ErrUnavailable.
func (s *Service) StartSignIn(ctx context.Context, req SignInRequest) (SignIn, error) {
	if !s.ready.Load() {
		return SignIn{}, fmt.Errorf("start sign-in: %w: service not started", ErrUnavailable)
	}
	if req.AccessTTL < minTTL || req.RefreshTTL < req.AccessTTL {
		return SignIn{}, &ValidationError{Field: "ttl", Message: fmt.Sprintf("sign-in lifetimes %s (access) and %s (refresh) are not valid",
			formatDuration(req.AccessTTL), formatDuration(req.RefreshTTL))}
	}
	now := s.now()
	rec, err := s.newRecord(IssueRequest{Name: req.Name, Email: req.Email, Subject: req.Subject, ClientID: req.ClientID,
		TTL: req.RefreshTTL, Scopes: req.Scopes}, now)
	if err != nil {
		return SignIn{}, err
	}
	rec.Address = truncateAddr(req.Address)
	if s.rev.isBlocked(rec.Email) {
		return SignIn{}, fmt.Errorf("start sign-in for %s: %w", rec.Email, ErrUserBlocked)
	}
	userName := sanitize(req.UserName, maxUserName)
	refresh, hash := newRefreshToken(rec.ID)
	_, err = s.rdb.TxPipelined(ctx, func(p redis.Pipeliner) error {
		key := s.familyKey(rec.ID)
		p.HSet(ctx, key, "cur", hash, "gen", 1, "exp", rec.ExpiresAt.UnixMilli(), "user_name", userName)
		p.PExpireAt(ctx, key, rec.ExpiresAt)
		return nil
	})
	if err != nil {
		s.storeFailed(err)
		return SignIn{}, unavailable("start sign-in", err)
	}
	if err := s.saveRecord(ctx, rec, now); err != nil {
		return SignIn{}, err
	}
	access, exp, err := s.signAccess(rec, userName, req.AccessTTL, now)
	if err != nil {
		return SignIn{}, err
	}
	return SignIn{Record: rec, AccessToken: access, AccessExpiresAt: exp, RefreshToken: refresh}, nil
}

// signAccess signs an access token of sign-in rec: jti rec.ID, expiring
// after ttl or with the sign-in, whichever is first.
func (s *Service) signAccess(rec Record, userName string, ttl time.Duration, now time.Time) (string, time.Time, error) {
	exp := now.Truncate(time.Second).Add(ttl).UTC()
	if exp.After(rec.ExpiresAt) {
		exp = rec.ExpiresAt
	}
	r := rec
	r.ExpiresAt = exp
	raw, err := s.sign(r, userName, now)
	return raw, exp, err
}

// newRefreshToken returns a refresh token of sign-in id and its hash.
func newRefreshToken(id string) (token, hash string) {
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		panic("tokens: crypto/rand failed: " + err.Error())
	}
	token = id + "." + base64.RawURLEncoding.EncodeToString(b)
	return token, refreshHash(token)
}

func refreshHash(token string) string {
	h := sha256.Sum256([]byte(token))
	return hex.EncodeToString(h[:])
}

// splitRefresh returns the sign-in id of a refresh token, or false when
// raw does not have a refresh token's shape.
func splitRefresh(raw string) (string, bool) {
	id, secret, ok := strings.Cut(raw, ".")
	if !ok || !validID(id) || len(secret) != 43 || strings.Contains(secret, ".") || !canonicalB64(secret) {
		return "", false
	}
	return id, true
}

// RefreshRequest is one use of a refresh token.
type RefreshRequest struct {
	Token     string
	AccessTTL time.Duration
	Address   string
	// Check, when set, re-checks the sign-in's owner (still allowed to
	// sign in?) before anything is consumed. An error wrapping
	// ErrUnavailable is returned as is; any other refuses the refresh
	// with ErrInvalidGrant.
	Check func(ctx context.Context, rec Record) error
}

// rotateScript rotates a family's refresh token; see Refresh.
var rotateScript = redis.NewScript(`
local f = redis.call('HMGET', KEYS[1], 'cur', 'exp', 'revoked', 'gen', 'user_name')
if not f[1] then return {'unknown'} end
if f[3] then return {'revoked'} end
local now = tonumber(ARGV[3])
if now >= tonumber(f[2]) then return {'expired'} end
if f[1] == ARGV[1] then
  local gen = tonumber(f[4]) + 1
  redis.call('HSET', KEYS[1], 'cur', ARGV[2], 'gen', gen, 'u:' .. ARGV[1], now)
  return {'ok', tostring(gen), f[5] or ''}
end
local at = redis.call('HGET', KEYS[1], 'u:' .. ARGV[1])
if not at then return {'unknown'} end
if now - tonumber(at) <= tonumber(ARGV[4]) then return {'raced'} end
redis.call('HSET', KEYS[1], 'revoked', now)
return {'replay'}`)

// Refresh uses a refresh token: it re-checks the sign-in (not revoked, not
// expired, owner not blocked and not cut off by a revoke-user, and
// req.Check), then rotates the refresh token — atomically, so of two
// clients presenting the same token one wins — and signs a new access
// token with the same jti. Errors: ErrInvalidGrant (nothing changed),
// ErrReplay (a token rotated longer than DefaultRefreshGrace ago: the
// sign-in is now revoked), ErrUnavailable (nothing consumed), or what
// req.Check returned wrapping ErrUnavailable.
func (s *Service) Refresh(ctx context.Context, req RefreshRequest) (SignIn, error) {
	if !s.ready.Load() {
		return SignIn{}, fmt.Errorf("refresh: %w: service not started", ErrUnavailable)
	}
	id, ok := splitRefresh(req.Token)
	if !ok {
		return SignIn{}, fmt.Errorf("refresh: %w: not a refresh token", ErrInvalidGrant)
	}
	rec, err := s.readRecord(ctx, id)
	switch {
	case errors.Is(err, ErrNotFound):
		return SignIn{}, fmt.Errorf("refresh: %w: no sign-in %s", ErrInvalidGrant, id)
	case err != nil:
		return SignIn{}, fmt.Errorf("refresh: %w", err)
	}
	now := s.now()
	switch {
	case !rec.RevokedAt.IsZero():
		return rec.signIn(), fmt.Errorf("refresh: %w: sign-in %s revoked at %s by %s", ErrInvalidGrant, id, rec.RevokedAt.Format(time.RFC3339), rec.RevokedBy)
	case !now.Before(rec.ExpiresAt):
		return rec.signIn(), fmt.Errorf("refresh: %w: sign-in %s ended at %s", ErrInvalidGrant, id, rec.ExpiresAt.Format(time.RFC3339))
	}
	if err := s.rev.check(rec.ID, rec.Email, rec.CreatedAt.UnixNano()); err != nil {
		return rec.signIn(), fmt.Errorf("refresh: %w: %w", ErrInvalidGrant, err)
	}
	if req.Check != nil {
		if err := req.Check(ctx, rec); err != nil {
			if errors.Is(err, ErrUnavailable) {
				return rec.signIn(), fmt.Errorf("refresh: %w", err)
			}
			return rec.signIn(), fmt.Errorf("refresh: %w: %w", ErrInvalidGrant, err)
		}
	}
	next, nextHash := newRefreshToken(id)
	res, err := rotateScript.Run(ctx, s.rdb, []string{s.familyKey(id)},
		refreshHash(req.Token), nextHash, now.UnixMilli(), DefaultRefreshGrace.Milliseconds()).StringSlice()
	if err != nil {
		s.storeFailed(err)
		return rec.signIn(), unavailable("refresh", err)
	}
	switch res[0] {
	case "ok":
	case "replay":
		if _, err := s.Revoke(ctx, id, "refresh-token replay"); err != nil {
			s.log.Warn("revoke a replayed sign-in; its family is closed but the record is not marked", "jti", id, "err", err)
		}
		return rec.signIn(), fmt.Errorf("refresh: sign-in %s: %w", id, ErrReplay)
	case "raced":
		return rec.signIn(), fmt.Errorf("refresh: %w: sign-in %s: token already rotated (another client refreshed first)", ErrInvalidGrant, id)
	default:
		return rec.signIn(), fmt.Errorf("refresh: %w: sign-in %s: token %s", ErrInvalidGrant, id, res[0])
	}
	userName := ""
	if len(res) > 2 {
		userName = res[2]
	}
	if addr := truncateAddr(req.Address); addr != "" && addr != rec.Address {
		if err := s.rdb.HSet(ctx, s.tokKey(id), "address", addr).Err(); err != nil {
			s.storeFailed(err)
		} else {
			rec.Address = addr
		}
	}
	access, exp, err := s.signAccess(rec, userName, req.AccessTTL, now)
	if err != nil {
		return SignIn{}, err
	}
	return SignIn{Record: s.withPending(rec), AccessToken: access, AccessExpiresAt: exp, RefreshToken: next}, nil
}

// signIn is a SignIn holding only rec, for callers that audit a refusal.
func (r Record) signIn() SignIn { return SignIn{Record: r} }

func truncateAddr(a string) string {
	if len(a) > 64 {
		return a[:64]
	}
	return a
}

// RevokeCredential revokes what raw is a credential of (RFC 7009): an
// access or API token this gateway signed (its signature is checked; its
// expiry is not, so an expired access token still ends its sign-in), or a
// refresh token of a sign-in. It returns the record revoked (or found
// revoked before), ErrNotFound when raw is neither, or ErrUnavailable.
func (s *Service) RevokeCredential(ctx context.Context, raw, by string) (Record, error) {
	if id, ok := splitRefresh(raw); ok {
		ok, err := s.issuedRefresh(ctx, id, refreshHash(raw))
		if err != nil {
			return Record{}, err
		}
		if !ok {
			return Record{}, fmt.Errorf("revoke credential: %w", ErrNotFound)
		}
		return s.Revoke(ctx, id, by)
	}
	c, err := s.parseAnyTime(ctx, raw)
	if err != nil {
		if errors.Is(err, ErrUnavailable) {
			return Record{}, err
		}
		return Record{}, fmt.Errorf("revoke credential: %w: %w", ErrNotFound, err)
	}
	rec, err := s.Get(ctx, c.ID)
	if err != nil {
		return Record{}, fmt.Errorf("revoke credential: %w", err)
	}
	if rec.Email != c.Email {
		return Record{}, fmt.Errorf("revoke credential: %w: owner does not match", ErrNotFound)
	}
	return s.Revoke(ctx, c.ID, by)
}

// issuedRefresh reports whether hash is a refresh token family id issued
// (the current one or one rotated since).
func (s *Service) issuedRefresh(ctx context.Context, id, hash string) (bool, error) {
	vals, err := s.rdb.HMGet(ctx, s.familyKey(id), "cur", "u:"+hash).Result()
	if err != nil {
		s.storeFailed(err)
		return false, unavailable("look up refresh token", err)
	}
	cur, _ := vals[0].(string)
	return cur == hash || vals[1] != nil, nil
}

// parseAnyTime checks raw's signature and claims as of its own issue
// time: it is a token this gateway signed, expired or not.
func (s *Service) parseAnyTime(ctx context.Context, raw string) (*Claims, error) {
	if _, _, err := splitToken(raw); err != nil {
		return nil, err
	}
	parts := strings.Split(raw, ".")
	payload, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		return nil, fmt.Errorf("parse token: %w", ErrMalformed)
	}
	var t struct {
		Iat json.Number `json:"iat"`
		Nbf json.Number `json:"nbf"`
	}
	if err := json.Unmarshal(payload, &t); err != nil {
		return nil, fmt.Errorf("parse token: %w", ErrMalformed)
	}
	at := int64(0)
	for _, n := range []json.Number{t.Iat, t.Nbf} {
		if v, err := strconv.ParseFloat(string(n), 64); err == nil && int64(v) > at {
			at = int64(v)
		}
	}
	if at <= 0 {
		return nil, fmt.Errorf("parse token: %w: no iat", ErrClaims)
	}
	return s.parse(ctx, raw, time.Unix(at, 0))
}
