package devidp

import (
	"log/slog"
	"net/url"
	"slices"
	"time"

	"github.com/zitadel/oidc/v3/pkg/oidc"
	"github.com/zitadel/oidc/v3/pkg/op"
)

var (
	_ op.AuthRequest         = (*authRequest)(nil)
	_ op.LogAuthRequest      = (*authRequest)(nil)
	_ op.RefreshTokenRequest = (*refreshTokenRequest)(nil)
	_ op.Client              = (*opClient)(nil)
)

// authRequest is an authorization request between /authorize and the code
// exchange; it implements op.AuthRequest.
type authRequest struct {
	id            string
	createdAt     time.Time
	clientID      string
	redirectURI   string
	state         string
	nonce         string
	scopes        []string
	responseType  oidc.ResponseType
	responseMode  oidc.ResponseMode
	prompt        []string
	maxAge        *time.Duration
	loginHint     string
	codeChallenge *oidc.CodeChallenge

	// Set by the login.
	subject  string
	authTime time.Time
	sid      string // public id of the browser session that signed in
	done     bool
}

func (r *authRequest) clone() *authRequest {
	c := *r
	c.scopes = slices.Clone(r.scopes)
	c.prompt = slices.Clone(r.prompt)
	if r.maxAge != nil {
		d := *r.maxAge
		c.maxAge = &d
	}
	if r.codeChallenge != nil {
		cc := *r.codeChallenge
		c.codeChallenge = &cc
	}
	return &c
}

func (r *authRequest) GetID() string         { return r.id }
func (r *authRequest) GetACR() string        { return "" }
func (r *authRequest) GetAudience() []string { return []string{r.clientID} }
func (r *authRequest) GetAuthTime() time.Time {
	return r.authTime
}
func (r *authRequest) GetClientID() string                   { return r.clientID }
func (r *authRequest) GetCodeChallenge() *oidc.CodeChallenge { return r.codeChallenge }
func (r *authRequest) GetNonce() string                      { return r.nonce }
func (r *authRequest) GetRedirectURI() string                { return r.redirectURI }
func (r *authRequest) GetResponseType() oidc.ResponseType    { return r.responseType }
func (r *authRequest) GetResponseMode() oidc.ResponseMode    { return r.responseMode }
func (r *authRequest) GetScopes() []string                   { return r.scopes }
func (r *authRequest) GetState() string                      { return r.state }
func (r *authRequest) GetSubject() string                    { return r.subject }
func (r *authRequest) Done() bool                            { return r.done }

// GetAMR says the user signed in with a password.
func (r *authRequest) GetAMR() []string {
	if r.done {
		return []string{"pwd"}
	}
	return nil
}

// LogValue keeps state, nonce and the code challenge out of zitadel's logs.
func (r *authRequest) LogValue() slog.Value {
	return slog.GroupValue(
		slog.String("id", r.id),
		slog.String("client_id", r.clientID),
		slog.String("redirect_uri", r.redirectURI),
		slog.Any("scopes", r.scopes),
	)
}

// hasPrompt reports whether the request asked for prompt p.
func (r *authRequest) hasPrompt(p string) bool { return slices.Contains(r.prompt, p) }

// refreshTokenRequest is what a refresh token stands for; it implements
// op.RefreshTokenRequest.
type refreshTokenRequest struct {
	clientID string
	subject  string
	audience []string
	scopes   []string
	amr      []string
	authTime time.Time
	sid      string
}

func (r *refreshTokenRequest) GetAMR() []string                 { return r.amr }
func (r *refreshTokenRequest) GetAudience() []string            { return r.audience }
func (r *refreshTokenRequest) GetAuthTime() time.Time           { return r.authTime }
func (r *refreshTokenRequest) GetClientID() string              { return r.clientID }
func (r *refreshTokenRequest) GetScopes() []string              { return r.scopes }
func (r *refreshTokenRequest) GetSubject() string               { return r.subject }
func (r *refreshTokenRequest) SetCurrentScopes(scopes []string) { r.scopes = scopes }

// opClient adapts a Client to op.Client: a confidential client is a web
// application with client_secret_basic (client_secret_post is accepted too),
// a public client a native application with auth method none. Both may use
// the code flow and refresh tokens only.
type opClient struct {
	c      Client
	issuer string
}

func (c *opClient) GetID() string                    { return c.c.ID }
func (c *opClient) RedirectURIs() []string           { return slices.Clone(c.c.RedirectURIs) }
func (c *opClient) PostLogoutRedirectURIs() []string { return slices.Clone(c.c.PostLogoutRedirectURIs) }

func (c *opClient) ApplicationType() op.ApplicationType {
	if c.c.Secret == "" {
		return op.ApplicationTypeNative
	}
	return op.ApplicationTypeWeb
}

func (c *opClient) AuthMethod() oidc.AuthMethod {
	if c.c.Secret == "" {
		return oidc.AuthMethodNone
	}
	return oidc.AuthMethodBasic
}

func (c *opClient) ResponseTypes() []oidc.ResponseType {
	return []oidc.ResponseType{oidc.ResponseTypeCode}
}

func (c *opClient) GrantTypes() []oidc.GrantType {
	return []oidc.GrantType{oidc.GrantTypeCode, oidc.GrantTypeRefreshToken}
}

func (c *opClient) LoginURL(id string) string {
	return c.issuer + loginPath + "?" + url.Values{formAuthRequestID: {id}}.Encode()
}

func (c *opClient) AccessTokenType() op.AccessTokenType { return op.AccessTokenTypeBearer }
func (c *opClient) IDTokenLifetime() time.Duration      { return idTokenTTL }
func (c *opClient) DevMode() bool                       { return false }

func (c *opClient) RestrictAdditionalIdTokenScopes() func([]string) []string {
	return func(scopes []string) []string { return scopes }
}

func (c *opClient) RestrictAdditionalAccessTokenScopes() func([]string) []string {
	return func(scopes []string) []string { return scopes }
}

// IsScopeAllowed allows the one scope beyond the standard ones.
func (c *opClient) IsScopeAllowed(scope string) bool { return scope == ScopeGroups }

// IDTokenUserinfoClaimsAssertion puts the email and profile claims into the
// ID token even though an access token is issued too, as Okta, Entra ID,
// Keycloak and Dex do; relying parties read them from the ID token.
func (c *opClient) IDTokenUserinfoClaimsAssertion() bool { return true }

func (c *opClient) ClockSkew() time.Duration { return 0 }
