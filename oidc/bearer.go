package oidc

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	gooidc "github.com/coreos/go-oidc/v3/oidc"
)

// ErrBearerToken is wrapped by VerifyBearer's refusals of the token itself
// (signature, issuer, audience, times, claims).
var ErrBearerToken = errors.New("identity provider token rejected")

// Bearer is a person vouched for by one of the provider's own tokens that
// a client presented as its API credential.
type Bearer struct {
	Identity
	// IssuedAt and Expiry are the token's iat and exp.
	IssuedAt, Expiry time.Time
}

// VerifyBearer checks raw, an ID token or JWT access token of the
// provider that a client (Claude Desktop) sends as its bearer credential:
// the signature with the provider's published keys and the algorithms its
// discovery document lists (never "none", never a key the token names
// itself), iss equal to the provider's issuer, exp, nbf, and an aud that
// includes one of audiences. The email comes from "email", else
// "preferred_username", else "upn"; email_verified=false, and everyone the
// login policy would not let sign in, are refused with a *PolicyError. It
// returns an error wrapping ErrBearerToken for a token that is not good,
// or ErrNotReady before discovery.
func (rp *RelyingParty) VerifyBearer(ctx context.Context, raw string, audiences []string) (Bearer, error) {
	_, _, provider, _, err := rp.state()
	if err != nil {
		return Bearer{}, err
	}
	if len(audiences) == 0 {
		return Bearer{}, fmt.Errorf("%w: no audience is trusted", ErrBearerToken)
	}
	// The audience is checked below against the list: go-oidc checks one
	// client id only.
	v := provider.Verifier(&gooidc.Config{SkipClientIDCheck: true, Now: rp.cfg.Now})
	tok, err := v.Verify(rp.ctx(ctx), raw)
	if err != nil {
		return Bearer{}, fmt.Errorf("%w: %w", ErrBearerToken, err)
	}
	if !slices.ContainsFunc(tok.Audience, func(a string) bool { return slices.Contains(audiences, a) }) {
		return Bearer{}, fmt.Errorf("%w: audience %q is not one of LLMGATE_IDP_TOKEN_AUDIENCES", ErrBearerToken, strings.Join(tok.Audience, " "))
	}
	claims := map[string]any{}
	if err := tok.Claims(&claims); err != nil {
		return Bearer{}, fmt.Errorf("%w: decode claims: %w", ErrBearerToken, err)
	}
	email := str(claims["email"])
	if email == "" {
		email = str(claims["preferred_username"])
	}
	if email == "" {
		email = str(claims["upn"])
	}
	id := Identity{
		Issuer:  tok.Issuer,
		Subject: tok.Subject,
		Email:   strings.ToLower(strings.TrimSpace(email)),
		Name:    str(claims["name"]),
		Groups:  groups(claims[rp.cfg.GroupsClaim]),
	}
	if err := rp.admit(&id, claims["email_verified"]); err != nil {
		return Bearer{}, err
	}
	return Bearer{Identity: id, IssuedAt: tok.IssuedAt, Expiry: tok.Expiry}, nil
}

// IssuerURL is the provider's issuer as configured (LLMGATE_OIDC_ISSUER),
// without a trailing slash.
func (rp *RelyingParty) IssuerURL() string { return strings.TrimSuffix(rp.cfg.Issuer, "/") }
