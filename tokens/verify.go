package tokens

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net/netip"
	"slices"
	"strings"
	"time"

	"github.com/lestrrat-go/jwx/v2/jwa"
	"github.com/lestrrat-go/jwx/v2/jwk"
	"github.com/lestrrat-go/jwx/v2/jws"
)

// Verify checks raw and returns its claims, or an error wrapping one of
// ErrMalformed, ErrSignature, ErrExpired, ErrNotYetValid, ErrClaims,
// ErrScope, ErrRevoked, ErrUserBlocked, ErrUserRevoked or ErrUnavailable.
// scope is the scope the caller needs ("llm" for the proxy, "tokens" for
// the JSON API).
//
// A token seen before is answered from memory: no signature check and no
// Redis round trip; expiry, revocation, blocks, revoke-since cut-offs and
// scope are still checked, against the in-process revocation state. The
// refusals on that path are the bare sentinels (nothing is allocated).
//
// A token seen for the first time is checked in full: compact form with
// canonical base64, header (only alg, kid and typ; typ at+jwt; alg EdDSA
// or ES256 and equal to the key's; kid of one of this deployment's keys,
// not retired), signature (jwx with the explicit key set; a token's own
// jku, jwk, x5u or x5c header is refused, never fetched or used), iss,
// aud, exp, nbf and iat with Config.Leeway, then the in-memory revocation
// state and scope, then its record is read from Redis once: a token with
// no record (deleted) or a revoked record is refused. If Redis cannot be
// reached for that read, Verify returns ErrUnavailable, or with
// Config.FailOpen accepts the token and reads the record once Redis is back.
//
// The returned *Claims is shared; do not modify it.
func (s *Service) Verify(ctx context.Context, raw, scope string) (*Claims, error) {
	now := s.now()
	if e := s.cache.get(raw); e != nil {
		return s.verifySeen(ctx, e, scope, now)
	}
	return s.verifyFirst(ctx, raw, scope, now)
}

func (s *Service) verifySeen(ctx context.Context, e *cacheEntry, scope string, now time.Time) (*Claims, error) {
	n := now.UnixNano()
	if n >= e.until {
		return nil, ErrExpired
	}
	if err := s.rev.check(e.claims.ID, e.claims.Email, e.issued.Load()); err != nil {
		return nil, err
	}
	if !e.claims.HasScope(scope) {
		return nil, ErrScope
	}
	if !e.confirmed.Load() {
		if err := s.confirmLater(ctx, e, n); err != nil {
			return nil, err
		}
	}
	s.touch(e, n)
	return e.claims, nil
}

func (s *Service) verifyFirst(ctx context.Context, raw, scope string, now time.Time) (*Claims, error) {
	c, err := s.parse(ctx, raw, now)
	if err != nil {
		return nil, err
	}
	// Revoke-since is decided after the record read, on its precise
	// creation time: iat has whole seconds, and a token minted in the same
	// second as, but after, a revoke-user must work.
	if err := s.rev.check(c.ID, c.Email, math.MaxInt64); err != nil {
		return nil, fmt.Errorf("verify token %s of %s: %w", c.ID, c.Email, err)
	}
	if !c.HasScope(scope) {
		return nil, fmt.Errorf("verify token %s: %w: has %q, needs %q", c.ID, ErrScope, strings.Join(c.Scopes, " "), scope)
	}
	e := &cacheEntry{raw: raw, claims: c, until: c.ExpiresAt.Add(s.cfg.Leeway).UnixNano()}
	e.issued.Store(c.IssuedAt.UnixNano())
	if err := s.confirm(ctx, e); err != nil {
		if !errors.Is(err, ErrUnavailable) || !s.cfg.FailOpen {
			return nil, err
		}
		// Without the record, iat decides (strictly: a token of the same
		// second as a cut-off is refused).
		if err := s.rev.check(c.ID, c.Email, e.issued.Load()); err != nil {
			return nil, fmt.Errorf("verify token %s of %s: %w", c.ID, c.Email, err)
		}
		s.log.Warn("accepting a token not seen before without its record: Redis is unavailable and LLMGATE_FAILSAFE=open", "jti", c.ID, "email", c.Email)
		e.confirmAt.Store(now.UnixNano())
	}
	s.cache.put(e, now.UnixNano())
	s.touch(e, now.UnixNano())
	return c, nil
}

// confirm reads the token's record once: it must exist, belong to the same
// person and not be revoked. Its creation time (nanosecond precision,
// unlike iat) then decides revoke-since cut-offs.
func (s *Service) confirm(ctx context.Context, e *cacheEntry) error {
	c := e.claims
	if !s.storeOK.Load() {
		return fmt.Errorf("verify token %s: %w: Redis did not answer the last round trip", c.ID, ErrUnavailable)
	}
	rec, err := s.readRecord(ctx, c.ID)
	switch {
	case errors.Is(err, ErrNotFound):
		return fmt.Errorf("verify token %s: %w: the token has no record (deleted)", c.ID, ErrRevoked)
	case err != nil:
		return fmt.Errorf("verify token %s: %w", c.ID, err)
	case !rec.RevokedAt.IsZero():
		s.rev.apply(event{Type: evRevoke, ID: c.ID, Exp: c.ExpiresAt.Unix()})
		return fmt.Errorf("verify token %s: %w at %s by %s", c.ID, ErrRevoked, rec.RevokedAt.Format(time.RFC3339), rec.RevokedBy)
	case rec.Email != c.Email:
		return fmt.Errorf("verify token %s: %w: email %q does not match its record", c.ID, ErrClaims, c.Email)
	}
	e.issued.Store(rec.CreatedAt.UnixNano())
	if err := s.rev.check(c.ID, c.Email, rec.CreatedAt.UnixNano()); err != nil {
		return fmt.Errorf("verify token %s of %s: %w", c.ID, c.Email, err)
	}
	e.confirmed.Store(true)
	return nil
}

// confirmLater completes an entry accepted without its record (fail-open)
// once Redis answers again, at most once a second per token.
func (s *Service) confirmLater(ctx context.Context, e *cacheEntry, now int64) error {
	if !s.storeOK.Load() {
		return nil
	}
	last := e.confirmAt.Load()
	if now-last < int64(time.Second) || !e.confirmAt.CompareAndSwap(last, now) {
		return nil
	}
	if err := s.confirm(ctx, e); err != nil {
		if errors.Is(err, ErrUnavailable) {
			return nil
		}
		s.cache.remove(e.raw)
		return err
	}
	return nil
}

// header is the protected header of a token, decoded strictly.
type header struct {
	alg, kid, typ string
}

// parse checks everything about raw that does not need the store, and
// returns its claims.
func (s *Service) parse(ctx context.Context, raw string, now time.Time) (*Claims, error) {
	h, sig, err := splitToken(raw)
	if err != nil {
		return nil, err
	}
	hdr, err := decodeHeader(h)
	if err != nil {
		return nil, err
	}
	if hdr.alg != AlgEdDSA && hdr.alg != AlgES256 {
		return nil, fmt.Errorf("verify token: %w: algorithm %q is not allowed", ErrSignature, hdr.alg)
	}
	ring := s.ring.Load()
	key := ring.byKid[hdr.kid]
	if key == nil && hdr.kid != "" {
		key = s.reloadForUnknownKid(ctx, hdr.kid)
		ring = s.ring.Load()
	}
	switch {
	case key == nil:
		return nil, fmt.Errorf("verify token: %w: unknown key id %q", ErrSignature, hdr.kid)
	case key.retired(now):
		return nil, fmt.Errorf("verify token: %w: key %s retired at %s", ErrSignature, hdr.kid, key.retireAt.Format(time.RFC3339))
	case string(key.alg) != hdr.alg:
		return nil, fmt.Errorf("verify token: %w: algorithm %q does not match key %s (%s)", ErrSignature, hdr.alg, hdr.kid, key.alg)
	case !strings.EqualFold(hdr.typ, tokenTypeJWT) && !strings.EqualFold(hdr.typ, "application/"+tokenTypeJWT):
		return nil, fmt.Errorf("verify token: %w: typ %q is not at+jwt", ErrClaims, hdr.typ)
	case sig == "":
		return nil, fmt.Errorf("verify token: %w: no signature", ErrSignature)
	}
	if key.alg == jwa.ES256 {
		b, err := base64.RawURLEncoding.DecodeString(sig)
		if err != nil || isHighS(b) {
			return nil, fmt.Errorf("verify token: %w: not a canonical (low-s) ES256 signature", ErrSignature)
		}
	}
	// jwx checks the signature with the one key of the explicit set whose
	// kid matches, under that key's algorithm (never the token's).
	var used jwk.Key
	payload, err := jws.Verify([]byte(raw), append(ring.verifyOpts[:len(ring.verifyOpts):len(ring.verifyOpts)], jws.WithKeyUsed(&used))...)
	if err != nil {
		return nil, fmt.Errorf("verify token: %w: %w", ErrSignature, err)
	}
	if used == nil || used.KeyID() != key.kid {
		// jwx read another kid than we did (e.g. a duplicated header member).
		return nil, fmt.Errorf("verify token: %w: verified with another key than the header's kid", ErrSignature)
	}
	c, err := s.claimsOf(payload, now)
	if err != nil {
		return nil, err
	}
	c.kid = key.kid
	return c, nil
}

// splitToken checks that raw is a compact JWS whose three parts are
// canonical unpadded base64url (jwx would also accept padded, standard
// and non-canonical encodings, letting one token be written many ways),
// and returns the header and signature parts.
func splitToken(raw string) (hdr, sig string, err error) {
	if len(raw) == 0 || len(raw) > maxTokenBytes {
		return "", "", fmt.Errorf("verify token: %w: length %d", ErrMalformed, len(raw))
	}
	i := strings.IndexByte(raw, '.')
	j := strings.LastIndexByte(raw, '.')
	if i <= 0 || j == i || j == i+1 {
		return "", "", fmt.Errorf("verify token: %w: not three dot-separated parts", ErrMalformed)
	}
	hdr, payload, sig := raw[:i], raw[i+1:j], raw[j+1:]
	for _, part := range [...]string{hdr, payload, sig} {
		if !canonicalB64(part) {
			return "", "", fmt.Errorf("verify token: %w: a part is not canonical base64url", ErrMalformed)
		}
	}
	return hdr, sig, nil
}

// canonicalB64 reports whether s is unpadded base64url that decodes and
// re-encodes to itself.
func canonicalB64(s string) bool {
	if len(s)%4 == 1 {
		return false
	}
	v := byte(0)
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c >= 'A' && c <= 'Z':
			v = c - 'A'
		case c >= 'a' && c <= 'z':
			v = c - 'a' + 26
		case c >= '0' && c <= '9':
			v = c - '0' + 52
		case c == '-':
			v = 62
		case c == '_':
			v = 63
		default:
			return false
		}
	}
	switch len(s) % 4 {
	case 2:
		return v&0x0f == 0
	case 3:
		return v&0x03 == 0
	}
	return true
}

// decodeHeader decodes the protected header and refuses any parameter
// besides alg, kid and typ. Parameters that would make a verifier take the
// key from the token itself are reported as ErrSignature.
func decodeHeader(part string) (header, error) {
	var hdr header
	data, err := base64.RawURLEncoding.Strict().DecodeString(part)
	if err != nil {
		return hdr, fmt.Errorf("verify token: %w: header: %w", ErrMalformed, err)
	}
	var fields map[string]json.RawMessage
	if err := json.Unmarshal(data, &fields); err != nil || fields == nil {
		return hdr, fmt.Errorf("verify token: %w: header is not a JSON object", ErrMalformed)
	}
	str := func(name string, v json.RawMessage) (string, error) {
		var s string
		if err := json.Unmarshal(v, &s); err != nil {
			return "", fmt.Errorf("verify token: %w: header %s is not a string", ErrMalformed, name)
		}
		return s, nil
	}
	for name, v := range fields {
		switch name {
		case "alg":
			hdr.alg, err = str(name, v)
		case "kid":
			hdr.kid, err = str(name, v)
		case "typ":
			hdr.typ, err = str(name, v)
		case "jku", "jwk", "x5u", "x5c", "x5t", "x5t#S256":
			return hdr, fmt.Errorf("verify token: %w: header %q names a key; only this gateway's keys are trusted", ErrSignature, name)
		default:
			return hdr, fmt.Errorf("verify token: %w: unexpected header %q", ErrMalformed, name)
		}
		if err != nil {
			return hdr, err
		}
	}
	return hdr, nil
}

// tokenClaims is the payload of a token, decoded once the signature has
// been verified.
type tokenClaims struct {
	Iss        string   `json:"iss"`
	Aud        audience `json:"aud"`
	Sub        string   `json:"sub"`
	Jti        string   `json:"jti"`
	Iat        float64  `json:"iat"`
	Nbf        float64  `json:"nbf"`
	Exp        float64  `json:"exp"`
	ClientID   string   `json:"client_id"`
	Email      string   `json:"email"`
	Name       string   `json:"name"`
	Scope      string   `json:"scope"`
	Models     []string `json:"models"`
	RPM        float64  `json:"rpm"`
	CIDRs      []string `json:"cidrs"`
	MaxCostUSD float64  `json:"max_cost_usd"`
}

// audience is aud: one string or a list (RFC 7519 §4.1.3).
type audience []string

func (a *audience) UnmarshalJSON(data []byte) error {
	if len(data) > 0 && data[0] == '"' {
		var s string
		if err := json.Unmarshal(data, &s); err != nil {
			return err
		}
		*a = audience{s}
		return nil
	}
	return json.Unmarshal(data, (*[]string)(a))
}

// numericDate converts a NumericDate (seconds, maybe fractional).
func numericDate(v float64) time.Time {
	sec, frac := math.Modf(v)
	return time.Unix(int64(sec), int64(frac*1e9))
}

// claimsOf decodes and validates the claims of a verified payload: iss,
// aud, exp, nbf and iat (with Config.Leeway), the required claims, and the
// shape of the optional ones.
func (s *Service) claimsOf(payload []byte, now time.Time) (*Claims, error) {
	bad := func(format string, args ...any) (*Claims, error) {
		return nil, fmt.Errorf("verify token: %w: %s", ErrClaims, fmt.Sprintf(format, args...))
	}
	var tc tokenClaims
	if err := json.Unmarshal(payload, &tc); err != nil {
		return bad("payload: %v", err)
	}
	leeway := s.cfg.Leeway
	exp, nbf, iat := numericDate(tc.Exp), numericDate(tc.Nbf), numericDate(tc.Iat)
	switch {
	case tc.Iss != s.cfg.Issuer:
		return bad("iss %q is not %q", tc.Iss, s.cfg.Issuer)
	case !slices.Contains(tc.Aud, s.cfg.Audience):
		return bad("aud %q does not include %q", tc.Aud, s.cfg.Audience)
	case tc.Exp <= 0 || tc.Iat <= 0 || tc.Nbf <= 0:
		return bad("exp, iat and nbf must be set")
	case !now.Before(exp.Add(leeway)):
		return nil, fmt.Errorf("verify token: %w at %s", ErrExpired, exp.UTC().Format(time.RFC3339))
	case now.Before(nbf.Add(-leeway)):
		return nil, fmt.Errorf("verify token: %w before %s (nbf)", ErrNotYetValid, nbf.UTC().Format(time.RFC3339))
	case now.Before(iat.Add(-leeway)):
		return nil, fmt.Errorf("verify token: %w: iat %s is in the future", ErrNotYetValid, iat.UTC().Format(time.RFC3339))
	case !validID(tc.Jti):
		return bad("jti %q is not a token id", tc.Jti)
	case tc.Sub == "":
		return bad("sub is missing")
	case tc.Email == "" || tc.Email != normEmail(tc.Email):
		return bad("email %q is missing or not normalized", tc.Email)
	case tc.ClientID == "":
		return bad("client_id is missing")
	case tc.Scope == "":
		return bad("scope is missing")
	case tc.RPM < 0 || tc.RPM > maxRPM || tc.RPM != math.Trunc(tc.RPM):
		return bad("rpm %v is not a whole number from 0 to %d", tc.RPM, maxRPM)
	case tc.MaxCostUSD < 0:
		return bad("max_cost_usd %v is negative", tc.MaxCostUSD)
	case slices.Contains(tc.Models, ""):
		return bad("models holds an empty name")
	}
	c := &Claims{
		ID:         tc.Jti,
		Subject:    tc.Sub,
		Email:      tc.Email,
		Name:       tc.Name,
		ClientID:   tc.ClientID,
		Scopes:     strings.Fields(tc.Scope),
		Models:     tc.Models,
		RPM:        int(tc.RPM),
		CIDRs:      tc.CIDRs,
		MaxCostUSD: tc.MaxCostUSD,
		IssuedAt:   iat,
		NotBefore:  nbf,
		ExpiresAt:  exp,
	}
	for _, cidr := range c.CIDRs {
		p, err := netip.ParsePrefix(cidr)
		if err != nil {
			return bad("cidr %q: %v", cidr, err)
		}
		c.prefixes = append(c.prefixes, p)
	}
	return c, nil
}
