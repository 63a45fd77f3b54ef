package oidc

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"strings"
	"time"
)

// BackChannelLogoutEvent is the member of a logout token's "events" claim
// that makes it a logout token (OpenID Connect Back-Channel Logout 1.0 §2.4).
const BackChannelLogoutEvent = "http://schemas.openid.net/event/backchannel-logout"

// Limits of VerifyLogoutToken.
const (
	// LogoutTokenMaxAge is how old (by its iat) a logout token may be.
	LogoutTokenMaxAge = 5 * time.Minute
	// LogoutTokenClockSkew is how far the provider's clock may run ahead of
	// ours (iat, nbf) or behind it (exp).
	LogoutTokenClockSkew = time.Minute
	// maxLogoutTokenSize bounds the token before any parsing; real ones are
	// well under 2 KiB.
	maxLogoutTokenSize = 16 << 10
)

// ErrLogoutToken is wrapped by every refusal of VerifyLogoutToken; the
// message says what was wrong. The back-channel logout endpoint answers it
// with 400 (Back-Channel Logout 1.0 §2.8).
var ErrLogoutToken = errors.New("logout token rejected")

// LogoutClaims is a verified back-channel logout token.
type LogoutClaims struct {
	// Issuer is the provider's issuer, as in the ID tokens of its sessions.
	Issuer string
	// Subject ("sub") and SessionID ("sid"): at least one is set. With a
	// SessionID, end the sessions created under that provider session; with
	// only a Subject, end every session of that person.
	Subject   string
	SessionID string
	// JTI is the token's unique id ("jti").
	JTI      string
	IssuedAt time.Time
	// Expiry is when VerifyLogoutToken stops accepting this token (the
	// earlier of IssuedAt + LogoutTokenMaxAge and exp + LogoutTokenClockSkew):
	// a replay cache must remember JTI at least until then.
	Expiry time.Time
}

// VerifyLogoutToken checks a logout_token POSTed to the back-channel logout
// endpoint, per OpenID Connect Back-Channel Logout 1.0 §2.6:
//
//   - its signature against the provider's JWKS, with an algorithm the
//     discovery document lists in id_token_signing_alg_values_supported
//     (never "none", nor HMAC);
//   - its "typ" header, when present, is "logout+jwt" or "JWT";
//   - iss is the provider's issuer and aud contains our client ID;
//   - iat is present, at most LogoutTokenMaxAge old and at most
//     LogoutTokenClockSkew in the future; exp, when present, has not passed
//     (with LogoutTokenClockSkew); nbf, when present, has come;
//   - jti is a non-empty string;
//   - events is a JSON object holding the member BackChannelLogoutEvent,
//     itself a JSON object;
//   - there is no nonce claim, whatever its value (an ID token is not a
//     logout token);
//   - sub, sid or both are non-empty strings.
//
// It does not check replay: the caller remembers JTI (scoped by Issuer)
// until Expiry and refuses a token seen before. Every refusal wraps
// ErrLogoutToken; it returns ErrNotReady before discovery.
func (rp *RelyingParty) VerifyLogoutToken(ctx context.Context, raw string) (LogoutClaims, error) {
	rp.mu.RLock()
	v := rp.logoutVerifier
	rp.mu.RUnlock()
	if v == nil {
		return LogoutClaims{}, ErrNotReady
	}
	if raw == "" {
		return LogoutClaims{}, fmt.Errorf("%w: logout_token is empty", ErrLogoutToken)
	}
	if len(raw) > maxLogoutTokenSize {
		return LogoutClaims{}, fmt.Errorf("%w: %d bytes is too long for a logout token", ErrLogoutToken, len(raw))
	}
	if err := checkLogoutHeader(raw); err != nil {
		return LogoutClaims{}, fmt.Errorf("%w: %w", ErrLogoutToken, err)
	}
	tok, err := v.Verify(rp.ctx(ctx), raw)
	if err != nil {
		return LogoutClaims{}, fmt.Errorf("%w: signature, issuer or audience: %w", ErrLogoutToken, err)
	}
	var claims map[string]json.RawMessage
	if err := tok.Claims(&claims); err != nil {
		return LogoutClaims{}, fmt.Errorf("%w: decode claims: %w", ErrLogoutToken, err)
	}
	c, err := logoutClaims(claims, rp.cfg.Now())
	if err != nil {
		return LogoutClaims{}, fmt.Errorf("%w: %w", ErrLogoutToken, err)
	}
	c.Issuer = tok.Issuer
	return c, nil
}

// checkLogoutHeader refuses a JWS whose header names another kind of token.
// The signature and algorithm are checked by go-oidc.
func checkLogoutHeader(raw string) error {
	head, _, ok := strings.Cut(raw, ".")
	if !ok {
		return errors.New("not a compact JWS")
	}
	b, err := base64.RawURLEncoding.DecodeString(head)
	if err != nil {
		return fmt.Errorf("decode header: %w", err)
	}
	var h struct {
		Alg string  `json:"alg"`
		Typ *string `json:"typ"`
	}
	if err := json.Unmarshal(b, &h); err != nil {
		return fmt.Errorf("decode header: %w", err)
	}
	if h.Alg == "" || strings.EqualFold(h.Alg, "none") {
		return fmt.Errorf("alg %q: logout tokens must be signed", h.Alg)
	}
	if h.Typ != nil {
		switch strings.TrimPrefix(strings.ToLower(*h.Typ), "application/") {
		case "logout+jwt", "jwt":
		default:
			return fmt.Errorf("typ %q is not a logout token's", *h.Typ)
		}
	}
	return nil
}

// logoutClaims checks the claims of a logout token whose signature, iss and
// aud have been verified, at now.
func logoutClaims(claims map[string]json.RawMessage, now time.Time) (LogoutClaims, error) {
	if _, ok := claims["nonce"]; ok {
		return LogoutClaims{}, errors.New("it has a nonce claim, which logout tokens must not have (is it an ID token?)")
	}
	if err := checkEvents(claims["events"]); err != nil {
		return LogoutClaims{}, err
	}
	var c LogoutClaims
	var err error
	if c.JTI, err = stringClaim(claims, "jti"); err != nil {
		return LogoutClaims{}, err
	}
	if c.JTI == "" {
		return LogoutClaims{}, errors.New("jti is missing")
	}
	if c.Subject, err = stringClaim(claims, "sub"); err != nil {
		return LogoutClaims{}, err
	}
	if c.SessionID, err = stringClaim(claims, "sid"); err != nil {
		return LogoutClaims{}, err
	}
	if c.Subject == "" && c.SessionID == "" {
		return LogoutClaims{}, errors.New("it has neither sub nor sid")
	}

	iat, ok, err := timeClaim(claims, "iat")
	switch {
	case err != nil:
		return LogoutClaims{}, err
	case !ok:
		return LogoutClaims{}, errors.New("iat is missing")
	case now.Sub(iat) > LogoutTokenMaxAge:
		return LogoutClaims{}, fmt.Errorf("iat %s is more than %v before now (%s)", iat.UTC().Format(time.RFC3339), LogoutTokenMaxAge, now.UTC().Format(time.RFC3339))
	case iat.Sub(now) > LogoutTokenClockSkew:
		return LogoutClaims{}, fmt.Errorf("iat %s is in the future (now %s)", iat.UTC().Format(time.RFC3339), now.UTC().Format(time.RFC3339))
	}
	c.IssuedAt = iat
	c.Expiry = iat.Add(LogoutTokenMaxAge)

	exp, ok, err := timeClaim(claims, "exp")
	if err != nil {
		return LogoutClaims{}, err
	}
	if ok {
		if now.Sub(exp) > LogoutTokenClockSkew {
			return LogoutClaims{}, fmt.Errorf("it expired at %s (now %s)", exp.UTC().Format(time.RFC3339), now.UTC().Format(time.RFC3339))
		}
		c.Expiry = minTime(c.Expiry, exp.Add(LogoutTokenClockSkew))
	}
	nbf, ok, err := timeClaim(claims, "nbf")
	if err != nil {
		return LogoutClaims{}, err
	}
	if ok && nbf.Sub(now) > LogoutTokenClockSkew {
		return LogoutClaims{}, fmt.Errorf("it is not valid before %s (now %s)", nbf.UTC().Format(time.RFC3339), now.UTC().Format(time.RFC3339))
	}
	return c, nil
}

// checkEvents checks that events is a JSON object holding the back-channel
// logout event, itself a JSON object.
func checkEvents(raw json.RawMessage) error {
	if raw == nil {
		return errors.New("events is missing")
	}
	var events map[string]json.RawMessage
	if err := json.Unmarshal(raw, &events); err != nil || events == nil {
		return fmt.Errorf("events is %s, not a JSON object", raw)
	}
	ev, ok := events[BackChannelLogoutEvent]
	if !ok {
		return fmt.Errorf("events has no %s member", BackChannelLogoutEvent)
	}
	var obj map[string]json.RawMessage
	if err := json.Unmarshal(ev, &obj); err != nil || obj == nil {
		return fmt.Errorf("events member %s is %s, not a JSON object", BackChannelLogoutEvent, ev)
	}
	return nil
}

// stringClaim returns claim name, "" when absent, or an error when it is not
// a string.
func stringClaim(claims map[string]json.RawMessage, name string) (string, error) {
	raw, ok := claims[name]
	if !ok || bytes.Equal(raw, []byte("null")) {
		return "", nil
	}
	var s string
	if err := json.Unmarshal(raw, &s); err != nil {
		return "", fmt.Errorf("%s is %s, not a string", name, raw)
	}
	return s, nil
}

// timeClaim returns the NumericDate claim name and whether it is present.
func timeClaim(claims map[string]json.RawMessage, name string) (time.Time, bool, error) {
	raw, ok := claims[name]
	if !ok {
		return time.Time{}, false, nil
	}
	var f float64
	if err := json.Unmarshal(raw, &f); err != nil || math.IsNaN(f) || math.IsInf(f, 0) || f < 0 || f > 1e11 {
		return time.Time{}, false, fmt.Errorf("%s is %s, not a NumericDate", name, raw)
	}
	sec, frac := math.Modf(f)
	return time.Unix(int64(sec), int64(frac*1e9)), true, nil
}

func minTime(a, b time.Time) time.Time {
	if b.Before(a) {
		return b
	}
	return a
}
