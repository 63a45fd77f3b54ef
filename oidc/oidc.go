package oidc

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"time"

	gooidc "github.com/coreos/go-oidc/v3/oidc"
	"golang.org/x/oauth2"
)

// Config describes the identity provider and the login policy.
type Config struct {
	// Issuer is the provider's issuer URL; discovery is at
	// Issuer + "/.well-known/openid-configuration".
	Issuer       string
	ClientID     string
	ClientSecret string
	// RedirectURL is ${PUBLIC_URL}/oauth2/callback.
	RedirectURL string
	// Scopes requested; "openid" is added when missing.
	Scopes []string
	// GroupsClaim names the claim holding group names (default "groups").
	GroupsClaim string
	// AllowedEmailDomains, when not empty, are the only email domains let in.
	AllowedEmailDomains []string
	// AllowedGroups, when not empty, requires membership in one of them.
	AllowedGroups []string
	// AdminEmails and AdminGroups name the administrators.
	AdminEmails []string
	AdminGroups []string
	// HTTPClient talks to the provider; nil means a client with a 10 s timeout.
	HTTPClient *http.Client
	// Now is the clock for ID token expiry; nil means time.Now.
	Now func() time.Time
	// Logger receives discovery retries; nil discards.
	Logger *slog.Logger
}

// Identity is a person the provider vouched for and the login policy let in.
type Identity struct {
	Issuer  string
	Subject string
	Email   string // lower-cased
	Name    string
	Groups  []string
	Admin   bool
	// SessionID is the provider's "sid" claim, when it sends one.
	SessionID string
	// IDToken is the raw ID token, kept as the hint for RP-initiated logout.
	IDToken string
	// RefreshToken is present when the provider granted one (offline_access).
	RefreshToken string
}

// Flow is the secret state of one login between its two legs. Every field
// comes from crypto/rand.
type Flow struct {
	State    string
	Nonce    string
	Verifier string // PKCE code verifier
}

// Errors returned by Exchange. A *PolicyError says why a verified person
// was not let in.
var (
	ErrNotReady = errors.New("identity provider discovery has not completed")
	ErrExchange = errors.New("code exchange with the identity provider failed")
	ErrIDToken  = errors.New("ID token rejected")
	ErrNonce    = errors.New("ID token nonce does not match this login")
)

// PolicyError says why the login policy refused a verified identity.
type PolicyError struct {
	Reason string // "email_missing", "email_unverified", "domain", "group"
	Email  string
	msg    string
}

func (e *PolicyError) Error() string { return e.msg }

// RelyingParty performs logins against one provider. It is safe for
// concurrent use.
type RelyingParty struct {
	cfg Config

	mu         sync.RWMutex
	provider   *gooidc.Provider
	verifier   *gooidc.IDTokenVerifier
	oauth      *oauth2.Config
	endSession string
	// logoutVerifier checks the signature (provider JWKS, discovered
	// algorithms), iss and aud of logout tokens; VerifyLogoutToken checks
	// their times itself.
	logoutVerifier *gooidc.IDTokenVerifier
}

// New returns a relying party for cfg. It does not contact the provider:
// call Discover (or Run) before logins.
func New(cfg Config) *RelyingParty {
	if cfg.GroupsClaim == "" {
		cfg.GroupsClaim = "groups"
	}
	if !slices.Contains(cfg.Scopes, gooidc.ScopeOpenID) {
		cfg.Scopes = append([]string{gooidc.ScopeOpenID}, cfg.Scopes...)
	}
	if cfg.HTTPClient == nil {
		cfg.HTTPClient = &http.Client{Timeout: 10 * time.Second}
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	return &RelyingParty{cfg: cfg}
}

func (rp *RelyingParty) ctx(ctx context.Context) context.Context {
	return gooidc.ClientContext(ctx, rp.cfg.HTTPClient)
}

// Discover fetches the provider's discovery document once.
func (rp *RelyingParty) Discover(ctx context.Context) error {
	p, err := gooidc.NewProvider(rp.ctx(ctx), strings.TrimSuffix(rp.cfg.Issuer, "/"))
	if err != nil {
		return fmt.Errorf("discover identity provider %s: %w", rp.cfg.Issuer, err)
	}
	var extra struct {
		EndSession string `json:"end_session_endpoint"`
	}
	if err := p.Claims(&extra); err != nil {
		return fmt.Errorf("read discovery document of %s: %w", rp.cfg.Issuer, err)
	}
	v := p.Verifier(&gooidc.Config{ClientID: rp.cfg.ClientID, Now: rp.cfg.Now})
	// Logout tokens may lack exp (Back-Channel Logout 1.0 as published does
	// not require it); VerifyLogoutToken applies its own iat window and exp
	// check instead of the ID token expiry check.
	lv := p.Verifier(&gooidc.Config{ClientID: rp.cfg.ClientID, Now: rp.cfg.Now, SkipExpiryCheck: true})
	oc := &oauth2.Config{
		ClientID:     rp.cfg.ClientID,
		ClientSecret: rp.cfg.ClientSecret,
		RedirectURL:  rp.cfg.RedirectURL,
		Endpoint:     p.Endpoint(),
		Scopes:       rp.cfg.Scopes,
	}
	rp.mu.Lock()
	rp.provider, rp.verifier, rp.oauth, rp.endSession, rp.logoutVerifier = p, v, oc, extra.EndSession, lv
	rp.mu.Unlock()
	return nil
}

// Run retries Discover with backoff until it succeeds or ctx ends, so a
// gateway can start while its provider is unreachable and say so in /readyz.
func (rp *RelyingParty) Run(ctx context.Context) error {
	delay := 500 * time.Millisecond
	for {
		err := rp.Discover(ctx)
		if err == nil {
			return nil
		}
		rp.cfg.Logger.Warn("identity provider discovery failed; retrying", "issuer", rp.cfg.Issuer, "err", err, "retry_in", delay.String())
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(delay):
		}
		delay = min(delay*2, 30*time.Second)
	}
}

// Ready reports whether discovery has completed.
func (rp *RelyingParty) Ready() bool {
	rp.mu.RLock()
	defer rp.mu.RUnlock()
	return rp.provider != nil
}

func (rp *RelyingParty) state() (*oauth2.Config, *gooidc.IDTokenVerifier, *gooidc.Provider, string, error) {
	rp.mu.RLock()
	defer rp.mu.RUnlock()
	if rp.provider == nil {
		return nil, nil, nil, "", ErrNotReady
	}
	return rp.oauth, rp.verifier, rp.provider, rp.endSession, nil
}

// NewFlow makes the secrets of one login.
func NewFlow() Flow {
	return Flow{State: random(), Nonce: random(), Verifier: oauth2.GenerateVerifier()}
}

func random() string {
	b := make([]byte, 32)
	rand.Read(b) // never fails (crypto/rand panics rather than return an error)
	return base64.RawURLEncoding.EncodeToString(b)
}

// AuthCodeURL is where the browser goes to sign in for f.
func (rp *RelyingParty) AuthCodeURL(f Flow) (string, error) {
	oc, _, _, _, err := rp.state()
	if err != nil {
		return "", err
	}
	return oc.AuthCodeURL(f.State, gooidc.Nonce(f.Nonce), oauth2.S256ChallengeOption(f.Verifier)), nil
}

// Exchange finishes the login of f with the code the provider sent back:
// it redeems the code with the PKCE verifier, verifies the ID token
// (signature, issuer, audience, expiry, nonce) and applies the login policy.
func (rp *RelyingParty) Exchange(ctx context.Context, code string, f Flow) (Identity, error) {
	oc, verifier, provider, _, err := rp.state()
	if err != nil {
		return Identity{}, err
	}
	ctx = rp.ctx(ctx)
	tok, err := oc.Exchange(ctx, code, oauth2.VerifierOption(f.Verifier))
	if err != nil {
		return Identity{}, fmt.Errorf("%w: %w", ErrExchange, err)
	}
	raw, _ := tok.Extra("id_token").(string)
	if raw == "" {
		return Identity{}, fmt.Errorf("%w: the token response has no id_token (is the \"openid\" scope granted?)", ErrIDToken)
	}
	idt, err := verifier.Verify(ctx, raw)
	if err != nil {
		return Identity{}, fmt.Errorf("%w: %w", ErrIDToken, err)
	}
	if idt.Nonce != f.Nonce {
		return Identity{}, ErrNonce
	}
	claims := map[string]any{}
	if err := idt.Claims(&claims); err != nil {
		return Identity{}, fmt.Errorf("%w: decode claims: %w", ErrIDToken, err)
	}
	// Some providers (Auth0, Okta without claim mapping) put email or groups
	// only in userinfo: ask it when the ID token lacks them.
	if claims["email"] == nil || claims[rp.cfg.GroupsClaim] == nil {
		if ui, err := provider.UserInfo(ctx, oauth2.StaticTokenSource(tok)); err == nil {
			extra := map[string]any{}
			if ui.Subject == idt.Subject && ui.Claims(&extra) == nil {
				for k, v := range extra {
					if _, ok := claims[k]; !ok {
						claims[k] = v
					}
				}
			}
		}
	}
	id := Identity{
		Issuer:       idt.Issuer,
		Subject:      idt.Subject,
		Email:        strings.ToLower(strings.TrimSpace(str(claims["email"]))),
		Name:         str(claims["name"]),
		Groups:       groups(claims[rp.cfg.GroupsClaim]),
		SessionID:    str(claims["sid"]),
		IDToken:      raw,
		RefreshToken: tok.RefreshToken,
	}
	if id.Name == "" {
		id.Name = str(claims["preferred_username"])
	}
	if err := rp.admit(&id, claims["email_verified"]); err != nil {
		return Identity{}, err
	}
	return id, nil
}

// admit applies the login policy and decides who is admin.
func (rp *RelyingParty) admit(id *Identity, verified any) error {
	if id.Email == "" || !strings.Contains(id.Email, "@") {
		return &PolicyError{Reason: "email_missing", msg: "the identity provider did not send an email address (is the \"email\" scope granted?)"}
	}
	if v, ok := verified.(bool); ok && !v {
		return &PolicyError{Reason: "email_unverified", Email: id.Email, msg: fmt.Sprintf("the email address %s is not verified at the identity provider", id.Email)}
	}
	if s, ok := verified.(string); ok && s == "false" {
		return &PolicyError{Reason: "email_unverified", Email: id.Email, msg: fmt.Sprintf("the email address %s is not verified at the identity provider", id.Email)}
	}
	domain := id.Email[strings.LastIndexByte(id.Email, '@')+1:]
	if len(rp.cfg.AllowedEmailDomains) > 0 && !containsFold(rp.cfg.AllowedEmailDomains, domain) {
		return &PolicyError{Reason: "domain", Email: id.Email, msg: fmt.Sprintf("accounts of %s may not sign in here", domain)}
	}
	if len(rp.cfg.AllowedGroups) > 0 && !slices.ContainsFunc(id.Groups, func(g string) bool { return slices.Contains(rp.cfg.AllowedGroups, g) }) {
		return &PolicyError{Reason: "group", Email: id.Email, msg: fmt.Sprintf("%s is in none of the groups allowed to sign in here", id.Email)}
	}
	id.Admin = rp.IsAdmin(id.Email, id.Groups)
	return nil
}

// Admits applies the sign-in policy (LLMGATE_ALLOWED_EMAIL_DOMAINS,
// LLMGATE_ALLOWED_GROUPS) to a person already known, when a sign-in is
// renewed without the identity provider: it returns a *PolicyError when
// they may no longer sign in.
func (rp *RelyingParty) Admits(email string, groups []string) error {
	id := Identity{Email: email, Groups: groups}
	return rp.admit(&id, nil)
}

// IsAdmin reports whether a person with email and groups is an
// administrator (LLMGATE_ADMIN_EMAILS or LLMGATE_ADMIN_GROUPS).
func (rp *RelyingParty) IsAdmin(email string, groups []string) bool {
	return containsFold(rp.cfg.AdminEmails, email) ||
		slices.ContainsFunc(groups, func(g string) bool { return slices.Contains(rp.cfg.AdminGroups, g) })
}

// LogoutURL is the provider's end_session_endpoint with the hint and the
// return address, or "" when the provider does not support RP-initiated
// logout.
func (rp *RelyingParty) LogoutURL(idTokenHint, postLogoutRedirect string) string {
	_, _, _, end, err := rp.state()
	if err != nil || end == "" {
		return ""
	}
	u, err := url.Parse(end)
	if err != nil {
		return ""
	}
	q := u.Query()
	if idTokenHint != "" {
		q.Set("id_token_hint", idTokenHint)
	}
	q.Set("client_id", rp.cfg.ClientID)
	if postLogoutRedirect != "" {
		q.Set("post_logout_redirect_uri", postLogoutRedirect)
	}
	u.RawQuery = q.Encode()
	return u.String()
}

func str(v any) string {
	s, _ := v.(string)
	return s
}

// groups reads a groups claim that providers send as a list of strings or,
// with a single group, as one string.
func groups(v any) []string {
	switch g := v.(type) {
	case string:
		if g == "" {
			return nil
		}
		return []string{g}
	case []any:
		out := make([]string, 0, len(g))
		for _, x := range g {
			if s, ok := x.(string); ok && s != "" {
				out = append(out, s)
			}
		}
		return out
	}
	return nil
}

func containsFold(list []string, s string) bool {
	return slices.ContainsFunc(list, func(x string) bool { return strings.EqualFold(x, s) })
}
