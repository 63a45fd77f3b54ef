package devidp

import (
	"crypto/rand"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"strings"

	jose "github.com/go-jose/go-jose/v4"
)

// IDToken mints an ID token for the user with email and the audience
// clientID, as the token endpoint would issue one after a sign-in with the
// openid, email, profile and groups scopes: iss, sub, aud, iat, exp (in an
// hour), email, email_verified, name, preferred_username and groups,
// signed with the provider's key. Clients such as Claude Desktop send such
// a token to a gateway as their bearer credential. mutate, when not nil,
// may change, add or delete any claim before signing (iat and exp are
// int64 Unix seconds, aud is []any). The client need not be registered.
// It returns an error wrapping ErrUnknownUser for an unknown email.
func (p *Provider) IDToken(clientID, email string, mutate func(claims map[string]any)) (string, error) {
	return p.mintID(clientID, email, mutate, p.store.key.key, "RS256")
}

// ForeignIDToken is IDToken signed with another RSA key that carries the
// provider's kid: a token with a bad signature.
func (p *Provider) ForeignIDToken(clientID, email string, mutate func(claims map[string]any)) (string, error) {
	p.foreignOnce.Do(func() { p.foreignKey, p.foreignErr = rsa.GenerateKey(rand.Reader, 2048) })
	if p.foreignErr != nil {
		return "", fmt.Errorf("devidp: generate foreign key: %w", p.foreignErr)
	}
	return p.mintID(clientID, email, mutate, p.foreignKey, "RS256")
}

// UnsignedIDToken is IDToken with "alg":"none" and no signature, which
// every verifier must refuse.
func (p *Provider) UnsignedIDToken(clientID, email string, mutate func(claims map[string]any)) (string, error) {
	return p.mintID(clientID, email, mutate, nil, "none")
}

func (p *Provider) mintID(clientID, email string, mutate func(map[string]any), key *rsa.PrivateKey, alg string) (string, error) {
	p.store.mu.Lock()
	rec, ok := p.store.users[p.store.emails[strings.ToLower(email)]]
	var u User
	if ok {
		u = rec.User
	}
	p.store.mu.Unlock()
	if !ok {
		return "", fmt.Errorf("devidp: ID token for %s: %w", email, ErrUnknownUser)
	}
	now := p.store.now()
	groups := make([]any, len(u.Groups))
	for i, g := range u.Groups {
		groups[i] = g
	}
	claims := map[string]any{
		"iss":                p.issuer,
		"sub":                u.Subject,
		"aud":                []any{clientID},
		"iat":                now.Unix(),
		"exp":                now.Add(idTokenTTL).Unix(),
		"email":              u.Email,
		"email_verified":     !u.EmailUnverified,
		"name":               u.Name,
		"preferred_username": u.Email,
		"groups":             groups,
	}
	if mutate != nil {
		mutate(claims)
	}
	payload, err := json.Marshal(claims)
	if err != nil {
		return "", fmt.Errorf("devidp: ID token: encode claims: %w", err)
	}
	if alg == "none" {
		hdr, _ := json.Marshal(map[string]string{"alg": "none", "typ": "JWT", "kid": p.store.key.id})
		return b64(hdr) + "." + b64(payload) + ".", nil
	}
	signer, err := jose.NewSigner(
		jose.SigningKey{Algorithm: jose.RS256, Key: jose.JSONWebKey{Key: key, KeyID: p.store.key.id}},
		(&jose.SignerOptions{}).WithType("JWT"),
	)
	if err != nil {
		return "", fmt.Errorf("devidp: ID token: signer: %w", err)
	}
	jws, err := signer.Sign(payload)
	if err != nil {
		return "", fmt.Errorf("devidp: ID token: sign: %w", err)
	}
	return jws.CompactSerialize()
}

func b64(b []byte) string { return base64.RawURLEncoding.EncodeToString(b) }
