package devidp

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"testing"
	"time"

	gooidc "github.com/coreos/go-oidc/v3/oidc"
	"golang.org/x/oauth2"
)

// testRedirectURI is never contacted: the test browser stops before it.
const testRedirectURI = "http://127.0.0.1:9/oauth2/callback"

// startProvider starts a provider on a free loopback port until the test ends.
func startProvider(tb testing.TB, cfg Config) *Provider {
	tb.Helper()
	p, err := Start("127.0.0.1:0", cfg)
	if err != nil {
		tb.Fatalf("Start() error = %v", err)
	}
	tb.Cleanup(func() {
		if err := p.Close(); err != nil {
			tb.Errorf("Close() error = %v", err)
		}
	})
	return p
}

// newBrowser returns an HTTP client with a cookie jar that follows redirects
// within the provider and stops at any other host, such as the client's
// redirect_uri.
func newBrowser(tb testing.TB, p *Provider) *http.Client {
	tb.Helper()
	jar, err := cookiejar.New(nil)
	if err != nil {
		tb.Fatalf("cookiejar.New() error = %v", err)
	}
	iss, err := url.Parse(p.Issuer())
	if err != nil {
		tb.Fatalf("parse issuer %q: %v", p.Issuer(), err)
	}
	return &http.Client{
		Jar:     jar,
		Timeout: 5 * time.Second,
		CheckRedirect: func(req *http.Request, via []*http.Request) error {
			if req.URL.Host != iss.Host {
				return http.ErrUseLastResponse
			}
			return nil
		},
	}
}

// relyingParty is an OpenID client of the provider, built with go-oidc and
// x/oauth2 as the gateway is.
type relyingParty struct {
	tb       testing.TB
	p        *Provider
	client   Client
	conf     oauth2.Config
	provider *gooidc.Provider
	verifier *gooidc.IDTokenVerifier
}

// newRelyingParty registers c at p with AddClient and discovers p.
func newRelyingParty(tb testing.TB, p *Provider, c Client, scopes ...string) *relyingParty {
	tb.Helper()
	if len(c.RedirectURIs) == 0 {
		c.RedirectURIs = []string{testRedirectURI}
	}
	p.AddClient(c)
	provider, err := gooidc.NewProvider(context.Background(), p.Issuer())
	if err != nil {
		tb.Fatalf("gooidc.NewProvider(%q) error = %v", p.Issuer(), err)
	}
	endpoint := provider.Endpoint()
	endpoint.AuthStyle = oauth2.AuthStyleInHeader
	if c.Secret == "" {
		endpoint.AuthStyle = oauth2.AuthStyleInParams
	}
	if len(scopes) == 0 {
		scopes = []string{gooidc.ScopeOpenID, "email", "profile", ScopeGroups}
	}
	return &relyingParty{
		tb:       tb,
		p:        p,
		client:   c,
		provider: provider,
		verifier: provider.Verifier(&gooidc.Config{ClientID: c.ID}),
		conf: oauth2.Config{
			ClientID:     c.ID,
			ClientSecret: c.Secret,
			Endpoint:     endpoint,
			RedirectURL:  c.RedirectURIs[0],
			Scopes:       scopes,
		},
	}
}

// authFlow holds the secrets of one authorization request.
type authFlow struct {
	state, nonce, verifier string
}

// start returns an authorization URL with state, nonce and PKCE S256.
func (rp *relyingParty) start(opts ...oauth2.AuthCodeOption) (string, authFlow) {
	f := authFlow{state: oauth2.GenerateVerifier(), nonce: oauth2.GenerateVerifier(), verifier: oauth2.GenerateVerifier()}
	opts = append([]oauth2.AuthCodeOption{gooidc.Nonce(f.nonce), oauth2.S256ChallengeOption(f.verifier)}, opts...)
	return rp.conf.AuthCodeURL(f.state, opts...), f
}

// callback returns the query of the redirect to the client's redirect_uri
// that resp is, after checking its state.
func (rp *relyingParty) callback(resp *http.Response, f authFlow) url.Values {
	rp.tb.Helper()
	defer resp.Body.Close()
	loc, err := resp.Location()
	if err != nil {
		body, _ := io.ReadAll(resp.Body)
		rp.tb.Fatalf("response to %s: status %d, no redirect to the client (%v); body:\n%s", resp.Request.URL, resp.StatusCode, err, body)
	}
	if got, want := loc.Scheme+"://"+loc.Host+loc.Path, rp.conf.RedirectURL; got != want {
		rp.tb.Fatalf("redirected to %s, want the redirect_uri %s", loc, want)
	}
	q := loc.Query()
	if got := q.Get("state"); got != f.state {
		rp.tb.Fatalf("callback state = %q, want %q", got, f.state)
	}
	return q
}

// code returns the authorization code of a successful callback.
func (rp *relyingParty) code(resp *http.Response, f authFlow) string {
	rp.tb.Helper()
	q := rp.callback(resp, f)
	if q.Get("error") != "" || q.Get("code") == "" {
		rp.tb.Fatalf("callback error = %q (%q), want a code", q.Get("error"), q.Get("error_description"))
	}
	return q.Get("code")
}

// exchange redeems code and checks that the answer carries an ID token.
func (rp *relyingParty) exchange(code string, f authFlow) (*oauth2.Token, string) {
	rp.tb.Helper()
	tok, err := rp.conf.Exchange(context.Background(), code, oauth2.VerifierOption(f.verifier))
	if err != nil {
		rp.tb.Fatalf("Exchange() error = %v", err)
	}
	raw, _ := tok.Extra("id_token").(string)
	if raw == "" {
		rp.tb.Fatalf("Exchange() returned no id_token")
	}
	return tok, raw
}

// login signs email in with p.SignIn and redeems the code.
func (rp *relyingParty) login(hc *http.Client, email, password string, opts ...oauth2.AuthCodeOption) (*oauth2.Token, string, authFlow) {
	rp.tb.Helper()
	authURL, f := rp.start(opts...)
	resp, err := rp.p.SignIn(context.Background(), hc, authURL, email, password)
	if err != nil {
		rp.tb.Fatalf("SignIn(%s) error = %v", email, err)
	}
	tok, raw := rp.exchange(rp.code(resp, f), f)
	return tok, raw, f
}

// verify checks the ID token as the gateway does: signature against the
// JWKS, iss, aud, exp, then the nonce.
func (rp *relyingParty) verify(raw, nonce string) *gooidc.IDToken {
	rp.tb.Helper()
	tok, err := rp.verifier.Verify(context.Background(), raw)
	if err != nil {
		rp.tb.Fatalf("Verify(id_token) error = %v", err)
	}
	if tok.Nonce != nonce {
		rp.tb.Fatalf("id_token nonce = %q, want %q", tok.Nonce, nonce)
	}
	return tok
}

// refresh runs the refresh_token grant.
func (rp *relyingParty) refresh(refreshToken string) (*oauth2.Token, error) {
	ts := rp.conf.TokenSource(context.Background(), &oauth2.Token{RefreshToken: refreshToken})
	return ts.Token()
}

// signedClaims checks raw's signature against the provider's JWKS alone (no
// iss, aud or exp checks) and returns its claims.
func (rp *relyingParty) signedClaims(raw string) map[string]any {
	rp.tb.Helper()
	var disc struct {
		JWKSURI string `json:"jwks_uri"`
	}
	if err := rp.provider.Claims(&disc); err != nil {
		rp.tb.Fatalf("discovery claims: %v", err)
	}
	keys := gooidc.NewRemoteKeySet(context.Background(), disc.JWKSURI)
	payload, err := keys.VerifySignature(context.Background(), raw)
	if err != nil {
		rp.tb.Fatalf("VerifySignature(id_token) error = %v", err)
	}
	var claims map[string]any
	if err := json.Unmarshal(payload, &claims); err != nil {
		rp.tb.Fatalf("decode id_token claims: %v", err)
	}
	return claims
}

// oauthErrorCode returns the OAuth error code of a failed token request.
func oauthErrorCode(err error) string {
	var re *oauth2.RetrieveError
	if errors.As(err, &re) {
		return re.ErrorCode
	}
	return ""
}

// get fetches u with hc and returns the response with its body read.
func get(tb testing.TB, hc *http.Client, u string) (*http.Response, []byte) {
	tb.Helper()
	resp, err := hc.Get(u)
	if err != nil {
		tb.Fatalf("GET %s: %v", u, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		tb.Fatalf("GET %s: read body: %v", u, err)
	}
	resp.Body = io.NopCloser(bytes.NewReader(body))
	return resp, body
}
