package oidc

import (
	"context"
	"errors"
	"fmt"

	"golang.org/x/oauth2"
)

// ErrInvalidGrant is returned by Refresh when the provider answers
// invalid_grant: the refresh token was revoked, or the person was disabled
// or removed.
var ErrInvalidGrant = errors.New("refresh token refused by the identity provider")

// Refresh redeems refreshToken at the provider's token endpoint, for the
// periodic re-check of a person (SPEC §6). It returns the refresh token to
// keep: the new one when the provider rotated it, else refreshToken. When
// the provider answers invalid_grant (the grant was revoked, or the person
// disabled or removed) the error wraps ErrInvalidGrant; every other failure
// (network, 5xx, invalid_client, …) is transient and must not be taken as
// the person being gone. It returns ErrNotReady before discovery. An empty
// refreshToken is an error that does not wrap ErrInvalidGrant.
func (rp *RelyingParty) Refresh(ctx context.Context, refreshToken string) (string, error) {
	oc, _, _, _, err := rp.state()
	if err != nil {
		return "", err
	}
	if refreshToken == "" {
		return "", errors.New("refresh: no refresh token")
	}
	tok, err := oc.TokenSource(rp.ctx(ctx), &oauth2.Token{RefreshToken: refreshToken}).Token()
	if err != nil {
		var re *oauth2.RetrieveError
		if errors.As(err, &re) && re.ErrorCode == "invalid_grant" {
			return "", fmt.Errorf("%w: %w", ErrInvalidGrant, err)
		}
		return "", fmt.Errorf("refresh with the identity provider: %w", err)
	}
	if tok.RefreshToken != "" {
		return tok.RefreshToken, nil
	}
	return refreshToken, nil
}
