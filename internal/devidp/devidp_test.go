package devidp

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"golang.org/x/oauth2"
)

// userClaims are the identity claims of ID tokens and userinfo.
type userClaims struct {
	Subject           string   `json:"sub"`
	Email             string   `json:"email"`
	EmailVerified     *bool    `json:"email_verified"`
	Name              string   `json:"name"`
	PreferredUsername string   `json:"preferred_username"`
	Groups            []string `json:"groups"`
}

func ptr[T any](v T) *T { return &v }

func TestDiscovery(t *testing.T) {
	t.Parallel()
	p := startProvider(t, Config{})
	iss := p.Issuer()
	if !strings.HasPrefix(iss, "http://127.0.0.1:") || strings.HasSuffix(iss, ":0") {
		t.Fatalf("Issuer() = %q, want http://127.0.0.1:<port>", iss)
	}

	var got struct {
		Issuer                 string   `json:"issuer"`
		AuthorizationEndpoint  string   `json:"authorization_endpoint"`
		TokenEndpoint          string   `json:"token_endpoint"`
		UserinfoEndpoint       string   `json:"userinfo_endpoint"`
		JWKSURI                string   `json:"jwks_uri"`
		EndSessionEndpoint     string   `json:"end_session_endpoint"`
		RevocationEndpoint     string   `json:"revocation_endpoint"`
		ScopesSupported        []string `json:"scopes_supported"`
		CodeChallengeMethods   []string `json:"code_challenge_methods_supported"`
		IDTokenSigningAlgs     []string `json:"id_token_signing_alg_values_supported"`
		TokenEndpointAuthMeths []string `json:"token_endpoint_auth_methods_supported"`
		GrantTypes             []string `json:"grant_types_supported"`
		ResponseTypes          []string `json:"response_types_supported"`
		ClaimsSupported        []string `json:"claims_supported"`
		DeviceEndpoint         string   `json:"device_authorization_endpoint"`
		BackChannelLogout      bool     `json:"backchannel_logout_supported"`
		BackChannelSession     bool     `json:"backchannel_logout_session_supported"`
	}
	resp, body := get(t, http.DefaultClient, iss+"/.well-known/openid-configuration")
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET discovery: status %d, want 200; body: %s", resp.StatusCode, body)
	}
	if err := json.Unmarshal(body, &got); err != nil {
		t.Fatalf("decode discovery: %v", err)
	}
	want := got
	want.Issuer = iss
	want.AuthorizationEndpoint = iss + "/authorize"
	want.TokenEndpoint = iss + "/oauth/token"
	want.UserinfoEndpoint = iss + "/userinfo"
	want.JWKSURI = iss + "/keys"
	want.EndSessionEndpoint = iss + "/end_session"
	want.RevocationEndpoint = iss + "/revoke"
	want.ScopesSupported = []string{"openid", "email", "profile", "groups", "offline_access"}
	want.CodeChallengeMethods = []string{"S256"}
	want.IDTokenSigningAlgs = []string{"RS256"}
	want.GrantTypes = []string{"authorization_code", "refresh_token"}
	want.ResponseTypes = []string{"code"}
	want.DeviceEndpoint = ""
	want.BackChannelLogout = true
	want.BackChannelSession = true
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("discovery document mismatch (-want +got):\n%s", diff)
	}
	for _, c := range []struct {
		field string
		list  []string
		want  []string
	}{
		{"token_endpoint_auth_methods_supported", got.TokenEndpointAuthMeths, []string{"client_secret_basic", "client_secret_post", "none"}},
		{"claims_supported", got.ClaimsSupported, []string{"sub", "email", "email_verified", "name", "preferred_username", "groups", "nonce", "sid"}},
	} {
		for _, w := range c.want {
			if !slices.Contains(c.list, w) {
				t.Errorf("discovery %s = %q, want it to contain %q", c.field, c.list, w)
			}
		}
	}

	var jwks struct {
		Keys []struct {
			Kty, Alg, Use, Kid string
			N, E               string
		} `json:"keys"`
	}
	resp, body = get(t, http.DefaultClient, got.JWKSURI)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: status %d, want 200", got.JWKSURI, resp.StatusCode)
	}
	if err := json.Unmarshal(body, &jwks); err != nil {
		t.Fatalf("decode JWKS: %v", err)
	}
	if len(jwks.Keys) != 1 {
		t.Fatalf("JWKS has %d keys, want 1: %s", len(jwks.Keys), body)
	}
	k := jwks.Keys[0]
	if k.Kty != "RSA" || k.Alg != "RS256" || k.Use != "sig" || k.Kid == "" || k.N == "" || k.E == "" {
		t.Errorf("JWKS key = %+v, want an RS256 signing key with a kid", k)
	}
}

var (
	formTag  = regexp.MustCompile(`(?is)<form\b[^>]*>`)
	inputTag = regexp.MustCompile(`(?is)<input\b[^>]*>`)
	attrRe   = regexp.MustCompile(`(?is)\b(name|value|type|action|method)="([^"]*)"`)
)

func attrs(tag string) map[string]string {
	m := map[string]string{}
	for _, a := range attrRe.FindAllStringSubmatch(tag, -1) {
		m[strings.ToLower(a[1])] = a[2]
	}
	return m
}

// submitLoginForm fills the login page's HTML form the way a person would
// and posts it.
func submitLoginForm(tb testing.TB, hc *http.Client, page *http.Response, body []byte, username, password string) *http.Response {
	tb.Helper()
	form := attrs(formTag.FindString(string(body)))
	if !strings.EqualFold(form["method"], "post") || form["action"] == "" {
		tb.Fatalf("login page has no POST form: %s", body)
	}
	values := url.Values{}
	var names []string
	for _, in := range inputTag.FindAllString(string(body), -1) {
		a := attrs(in)
		names = append(names, a["name"])
		switch a["name"] {
		case "username":
			values.Set("username", username)
		case "password":
			values.Set("password", password)
		default:
			values.Set(a["name"], a["value"])
		}
	}
	slices.Sort(names)
	if diff := cmp.Diff([]string{"authRequestID", "password", "username"}, names); diff != "" {
		tb.Fatalf("login form inputs mismatch (-want +got):\n%s", diff)
	}
	action, err := page.Request.URL.Parse(form["action"])
	if err != nil {
		tb.Fatalf("login form action %q: %v", form["action"], err)
	}
	resp, err := hc.PostForm(action.String(), values)
	if err != nil {
		tb.Fatalf("POST %s: %v", action, err)
	}
	return resp
}

func TestCodeFlow(t *testing.T) {
	t.Parallel()
	p := startProvider(t, Config{})

	tests := []struct {
		name      string
		client    Client
		authStyle oauth2.AuthStyle
	}{
		{"confidential client, client_secret_basic", Client{ID: "gateway", Secret: "gateway-secret"}, oauth2.AuthStyleInHeader},
		{"confidential client, client_secret_post", Client{ID: "gateway-post", Secret: "gateway-secret"}, oauth2.AuthStyleInParams},
		{"public client", Client{ID: "cli"}, oauth2.AuthStyleInParams},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			rp := newRelyingParty(t, p, tt.client)
			rp.conf.Endpoint.AuthStyle = tt.authStyle
			hc := newBrowser(t, p)
			authURL, f := rp.start()

			page, body := get(t, hc, authURL)
			if page.StatusCode != http.StatusOK || page.Request.URL.Path != "/login" {
				t.Fatalf("GET authorization URL ended at %s with status %d, want the login page", page.Request.URL, page.StatusCode)
			}
			resp := submitLoginForm(t, hc, page, body, "alice@example.com", "alice")
			tok, raw := rp.exchange(rp.code(resp, f), f)
			if tok.RefreshToken != "" {
				t.Errorf("Exchange() returned a refresh token without offline_access")
			}

			idToken := rp.verify(raw, f.nonce)
			if err := idToken.VerifyAccessToken(tok.AccessToken); err != nil {
				t.Errorf("VerifyAccessToken() error = %v (at_hash)", err)
			}
			want := userClaims{
				Subject:           subjectFor("alice@example.com"),
				Email:             "alice@example.com",
				EmailVerified:     ptr(true),
				Name:              "Alice Example",
				PreferredUsername: "alice@example.com",
				Groups:            []string{"admins", "engineering"},
			}
			var got userClaims
			if err := idToken.Claims(&got); err != nil {
				t.Fatalf("IDToken.Claims() error = %v", err)
			}
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("ID token claims mismatch (-want +got):\n%s", diff)
			}
			if idToken.Issuer != p.Issuer() || !slices.Equal(idToken.Audience, []string{tt.client.ID}) {
				t.Errorf("ID token iss = %q aud = %q, want %q and [%s]", idToken.Issuer, idToken.Audience, p.Issuer(), tt.client.ID)
			}

			info, err := rp.provider.UserInfo(context.Background(), oauth2.StaticTokenSource(tok))
			if err != nil {
				t.Fatalf("UserInfo() error = %v", err)
			}
			got = userClaims{}
			if err := info.Claims(&got); err != nil {
				t.Fatalf("UserInfo.Claims() error = %v", err)
			}
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("userinfo claims mismatch (-want +got):\n%s", diff)
			}

			// A code is good for one exchange only.
			if _, err := rp.conf.Exchange(context.Background(), rp.code(resp, f), oauth2.VerifierOption(f.verifier)); oauthErrorCode(err) != "invalid_grant" {
				t.Errorf("second Exchange() of the same code error = %v, want invalid_grant", err)
			}
		})
	}
}

// postLogin posts the login form for the auth request id.
func postLogin(tb testing.TB, hc *http.Client, p *Provider, id, username, password string) (*http.Response, string) {
	tb.Helper()
	resp, err := hc.PostForm(p.Issuer()+"/login", url.Values{
		"authRequestID": {id},
		"username":      {username},
		"password":      {password},
	})
	if err != nil {
		tb.Fatalf("POST /login: %v", err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		tb.Fatalf("POST /login: read body: %v", err)
	}
	return resp, string(b)
}

func TestLoginRefused(t *testing.T) {
	t.Parallel()
	users := append(DemoUsers(), User{Email: "mallory@example.com", Password: "mallory", Name: "Mallory"})
	p := startProvider(t, Config{Users: users})
	p.SetDisabled("mallory@example.com", true)
	rp := newRelyingParty(t, p, Client{ID: "gateway", Secret: "s"})

	tests := []struct {
		name, username, password string
		wantStatus               int
		wantMessage              string
		wantErr                  error
	}{
		{"wrong password", "alice@example.com", "bob", http.StatusUnauthorized, "Wrong email or password", ErrBadCredentials},
		{"unknown user", "nobody@example.com", "alice", http.StatusUnauthorized, "Wrong email or password", ErrBadCredentials},
		{"empty password", "alice@example.com", "", http.StatusUnauthorized, "Wrong email or password", ErrBadCredentials},
		{"disabled user", "mallory@example.com", "mallory", http.StatusForbidden, "This account is disabled", ErrUserDisabled},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			hc := newBrowser(t, p)
			authURL, f := rp.start()
			page, _ := get(t, hc, authURL)
			id := page.Request.URL.Query().Get("authRequestID")
			if id == "" {
				t.Fatalf("GET authorization URL ended at %s, want the login page", page.Request.URL)
			}

			resp, body := postLogin(t, hc, p, id, tt.username, tt.password)
			if resp.StatusCode != tt.wantStatus {
				t.Errorf("POST /login as %s: status %d, want %d", tt.username, resp.StatusCode, tt.wantStatus)
			}
			if !strings.Contains(body, tt.wantMessage) || !strings.Contains(body, `name="username"`) {
				t.Errorf("POST /login as %s: body does not show the form with %q:\n%s", tt.username, tt.wantMessage, body)
			}
			if strings.Contains(body, `value="`+tt.password+`"`) && tt.password != "" {
				t.Errorf("POST /login: the refused password is echoed in the page")
			}

			// The same request still signs in with the right credentials.
			resp = postLoginNoFollow(t, hc, p, id, "alice@example.com", "alice")
			rp.exchange(rp.code(resp, f), f)

			// SignIn reports the refusal.
			authURL, _ = rp.start()
			if _, err := p.SignIn(context.Background(), newBrowser(t, p), authURL, tt.username, tt.password); !errors.Is(err, tt.wantErr) {
				t.Errorf("SignIn(%s) error = %v, want %v", tt.username, err, tt.wantErr)
			}
		})
	}

	t.Run("unknown auth request", func(t *testing.T) {
		t.Parallel()
		resp, body := postLogin(t, newBrowser(t, p), p, "no-such-request", "alice@example.com", "alice")
		if resp.StatusCode != http.StatusBadRequest || !strings.Contains(body, "expired") {
			t.Errorf("POST /login for an unknown request: status %d, want 400 with an explanation; body:\n%s", resp.StatusCode, body)
		}
	})
}

// postLoginNoFollow posts the login form and returns the redirect it answers
// with, unread.
func postLoginNoFollow(tb testing.TB, hc *http.Client, p *Provider, id, username, password string) *http.Response {
	tb.Helper()
	resp, err := hc.PostForm(p.Issuer()+"/login", url.Values{
		"authRequestID": {id},
		"username":      {username},
		"password":      {password},
	})
	if err != nil {
		tb.Fatalf("POST /login: %v", err)
	}
	return resp
}

func TestRefreshToken(t *testing.T) {
	t.Parallel()
	users := append(DemoUsers(), User{Email: "carol@example.com", Password: "carol", Name: "Carol", Groups: []string{"sales"}})
	p := startProvider(t, Config{Users: users})
	rp := newRelyingParty(t, p, Client{ID: "gateway", Secret: "s"}, "openid", "email", "profile", "groups", "offline_access")

	tok, _, _ := rp.login(newBrowser(t, p), "carol@example.com", "carol")
	if tok.RefreshToken == "" {
		t.Fatalf("Exchange() with offline_access returned no refresh token")
	}
	aliceTok, _, _ := rp.login(newBrowser(t, p), "alice@example.com", "alice")

	refreshed, err := rp.refresh(tok.RefreshToken)
	if err != nil {
		t.Fatalf("refresh: %v", err)
	}
	if refreshed.RefreshToken == "" || refreshed.RefreshToken == tok.RefreshToken {
		t.Errorf("refresh did not rotate the refresh token")
	}
	raw, _ := refreshed.Extra("id_token").(string)
	var got userClaims
	if err := rp.verify(raw, "").Claims(&got); err != nil {
		t.Fatalf("refreshed IDToken.Claims() error = %v", err)
	}
	if got.Email != "carol@example.com" || !slices.Equal(got.Groups, []string{"sales"}) {
		t.Errorf("refreshed ID token email = %q groups = %q, want carol@example.com [sales]", got.Email, got.Groups)
	}
	if _, err := rp.refresh(tok.RefreshToken); oauthErrorCode(err) != "invalid_grant" {
		t.Errorf("reusing a rotated refresh token: error = %v, want invalid_grant", err)
	}

	p.SetDisabled("carol@example.com", true)
	if _, err := rp.refresh(refreshed.RefreshToken); oauthErrorCode(err) != "invalid_grant" {
		t.Errorf("refresh after SetDisabled: error = %v, want invalid_grant", err)
	}
	if _, err := rp.provider.UserInfo(context.Background(), oauth2.StaticTokenSource(refreshed)); err == nil {
		t.Errorf("UserInfo() of a disabled user succeeded, want an error")
	}
	if _, err := rp.refresh(aliceTok.RefreshToken); err != nil {
		t.Errorf("refresh of another user after SetDisabled(carol): %v", err)
	}

	p.SetDisabled("carol@example.com", false)
	if _, err := rp.refresh(refreshed.RefreshToken); oauthErrorCode(err) != "invalid_grant" {
		t.Errorf("refresh after re-enabling: error = %v, want invalid_grant (old tokens stay revoked)", err)
	}
	rp.login(newBrowser(t, p), "carol@example.com", "carol")
}

func TestClaimsHook(t *testing.T) {
	t.Parallel()
	var (
		mu   sync.Mutex
		seen = map[string]string{} // client ID → user email the hook got
	)
	p := startProvider(t, Config{ClaimsHook: func(clientID string, u User, claims map[string]any) {
		mu.Lock()
		seen[clientID] = u.Email
		mu.Unlock()
		switch clientID {
		case "forge-aud":
			claims["aud"] = []any{"someone-else"}
		case "forge-nonce":
			claims["nonce"] = "forged-nonce"
		case "drop-nonce":
			delete(claims, "nonce")
		case "forge-iss":
			claims["iss"] = "https://idp.evil.example"
		case "forge-email-verified", "forge-email-verified-refresh":
			claims["email_verified"] = false
		}
	}})

	tests := []struct {
		clientID string
		// wantVerifyErr: go-oidc's verifier (iss, aud, exp) refuses the token.
		wantVerifyErr bool
		want          func(f authFlow, clientID string) map[string]any
	}{
		{"untouched", false, func(f authFlow, id string) map[string]any {
			return map[string]any{"aud": []any{id}, "nonce": f.nonce, "email_verified": true}
		}},
		{"forge-aud", true, func(f authFlow, id string) map[string]any {
			return map[string]any{"aud": []any{"someone-else"}, "nonce": f.nonce}
		}},
		{"forge-nonce", false, func(f authFlow, id string) map[string]any {
			return map[string]any{"aud": []any{id}, "nonce": "forged-nonce"}
		}},
		{"drop-nonce", false, func(f authFlow, id string) map[string]any {
			return map[string]any{"aud": []any{id}, "nonce": nil}
		}},
		{"forge-iss", true, func(f authFlow, id string) map[string]any {
			return map[string]any{"iss": "https://idp.evil.example"}
		}},
		{"forge-email-verified", false, func(f authFlow, id string) map[string]any {
			return map[string]any{"email_verified": false}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.clientID, func(t *testing.T) {
			t.Parallel()
			rp := newRelyingParty(t, p, Client{ID: tt.clientID, Secret: "s"})
			tok, raw, f := rp.login(newBrowser(t, p), "alice@example.com", "alice")

			claims := rp.signedClaims(raw) // the forged token is properly signed
			got := map[string]any{}
			want := tt.want(f, tt.clientID)
			for k := range want {
				got[k] = claims[k]
			}
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("signed ID token claims mismatch (-want +got):\n%s", diff)
			}

			idToken, err := rp.verifier.Verify(context.Background(), raw)
			if (err != nil) != tt.wantVerifyErr {
				t.Errorf("Verify(id_token) error = %v, want error: %v", err, tt.wantVerifyErr)
			}
			if err == nil {
				if err := idToken.VerifyAccessToken(tok.AccessToken); err != nil {
					t.Errorf("VerifyAccessToken() after the hook: %v", err)
				}
			}
			mu.Lock()
			email := seen[tt.clientID]
			mu.Unlock()
			if email != "alice@example.com" {
				t.Errorf("ClaimsHook got user %q for client %s, want alice@example.com", email, tt.clientID)
			}
		})
	}

	t.Run("refreshed ID token", func(t *testing.T) {
		t.Parallel()
		// Its own client: the hook's record of who signed in is per client,
		// and this parallel test signs in bob.
		rp := newRelyingParty(t, p, Client{ID: "forge-email-verified-refresh", Secret: "s"}, "openid", "email", "offline_access")
		tok, _, _ := rp.login(newBrowser(t, p), "bob@example.com", "bob")
		refreshed, err := rp.refresh(tok.RefreshToken)
		if err != nil {
			t.Fatalf("refresh: %v", err)
		}
		raw, _ := refreshed.Extra("id_token").(string)
		claims := rp.signedClaims(raw)
		if got := claims["email_verified"]; got != false {
			t.Errorf("refreshed ID token email_verified = %v, want false from the hook", got)
		}
		if _, err := rp.verifier.Verify(context.Background(), raw); err != nil {
			t.Errorf("Verify(refreshed id_token) error = %v", err)
		}
	})
}

func TestEmailUnverified(t *testing.T) {
	t.Parallel()
	p := startProvider(t, Config{Users: []User{
		{Email: "verified@example.com", Password: "pw1"},
		{Email: "unverified@example.com", Password: "pw2", EmailUnverified: true},
	}})
	rp := newRelyingParty(t, p, Client{ID: "gateway", Secret: "s"})

	tests := []struct {
		email, password string
		want            bool
	}{
		{"verified@example.com", "pw1", true},
		{"unverified@example.com", "pw2", false},
	}
	for _, tt := range tests {
		t.Run(tt.email, func(t *testing.T) {
			t.Parallel()
			tok, raw, _ := rp.login(newBrowser(t, p), tt.email, tt.password)
			claims := rp.signedClaims(raw)
			if got, ok := claims["email_verified"]; !ok || got != tt.want {
				t.Errorf("ID token email_verified = %v (present: %v), want %v", got, ok, tt.want)
			}
			info, err := rp.provider.UserInfo(context.Background(), oauth2.StaticTokenSource(tok))
			if err != nil {
				t.Fatalf("UserInfo() error = %v", err)
			}
			var uc userClaims
			if err := info.Claims(&uc); err != nil {
				t.Fatalf("UserInfo.Claims() error = %v", err)
			}
			if uc.EmailVerified == nil || *uc.EmailVerified != tt.want {
				t.Errorf("userinfo email_verified = %v, want %v", uc.EmailVerified, tt.want)
			}
		})
	}
}

func TestBrowserSession(t *testing.T) {
	t.Parallel()
	p := startProvider(t, Config{})
	rp := newRelyingParty(t, p, Client{ID: "gateway", Secret: "s"})
	hc := newBrowser(t, p)
	rp.login(hc, "bob@example.com", "bob")

	t.Run("second sign-in skips the form", func(t *testing.T) {
		authURL, f := rp.start()
		resp, err := hc.Get(authURL)
		if err != nil {
			t.Fatalf("GET authorization URL: %v", err)
		}
		_, raw := rp.exchange(rp.code(resp, f), f)
		if got := rp.verify(raw, f.nonce).Subject; got != subjectFor("bob@example.com") {
			t.Errorf("ID token sub = %q, want bob's", got)
		}
	})
	t.Run("prompt=login shows the form", func(t *testing.T) {
		authURL, _ := rp.start(oauth2.SetAuthURLParam("prompt", "login"))
		page, _ := get(t, hc, authURL)
		if page.StatusCode != http.StatusOK || page.Request.URL.Path != "/login" {
			t.Errorf("GET authorization URL with prompt=login ended at %s (%d), want the login page", page.Request.URL, page.StatusCode)
		}
	})
	t.Run("prompt=none with a session", func(t *testing.T) {
		authURL, f := rp.start(oauth2.SetAuthURLParam("prompt", "none"))
		resp, err := hc.Get(authURL)
		if err != nil {
			t.Fatalf("GET authorization URL: %v", err)
		}
		rp.exchange(rp.code(resp, f), f)
	})
	t.Run("prompt=none without a session", func(t *testing.T) {
		authURL, f := rp.start(oauth2.SetAuthURLParam("prompt", "none"))
		resp, err := newBrowser(t, p).Get(authURL)
		if err != nil {
			t.Fatalf("GET authorization URL: %v", err)
		}
		if got := rp.callback(resp, f).Get("error"); got != "login_required" {
			t.Errorf("callback error = %q, want login_required", got)
		}
	})
}

func TestEndSession(t *testing.T) {
	t.Parallel()
	p := startProvider(t, Config{})
	const postLogout = "http://127.0.0.1:9/signed-out"
	rp := newRelyingParty(t, p, Client{ID: "gateway", Secret: "s", PostLogoutRedirectURIs: []string{postLogout}})
	var disc struct {
		EndSession string `json:"end_session_endpoint"`
	}
	if err := rp.provider.Claims(&disc); err != nil || disc.EndSession == "" {
		t.Fatalf("discovery end_session_endpoint = %q (%v), want it advertised", disc.EndSession, err)
	}

	t.Run("redirects to the post_logout_redirect_uri", func(t *testing.T) {
		t.Parallel()
		hc := newBrowser(t, p)
		tok, raw, _ := rp.login(hc, "alice@example.com", "alice")
		q := url.Values{"id_token_hint": {raw}, "post_logout_redirect_uri": {postLogout}, "state": {"xyz"}}
		resp, err := hc.Get(disc.EndSession + "?" + q.Encode())
		if err != nil {
			t.Fatalf("GET end_session: %v", err)
		}
		resp.Body.Close()
		if loc := resp.Header.Get("Location"); resp.StatusCode != http.StatusFound || loc != postLogout+"?state=xyz" {
			t.Errorf("end_session: status %d Location %q, want 302 to %s?state=xyz", resp.StatusCode, loc, postLogout)
		}
		// The browser session ended: the next authorization shows the form.
		authURL, _ := rp.start()
		page, _ := get(t, hc, authURL)
		if page.Request.URL.Path != "/login" {
			t.Errorf("authorization after end_session ended at %s, want the login page", page.Request.URL)
		}
		// And the client's tokens for that user are gone.
		if _, err := rp.provider.UserInfo(context.Background(), oauth2.StaticTokenSource(tok)); err == nil {
			t.Errorf("UserInfo() after end_session succeeded, want an error")
		}
	})
	t.Run("signed out page", func(t *testing.T) {
		t.Parallel()
		hc := newBrowser(t, p)
		rp.login(hc, "alice@example.com", "alice")
		resp, body := get(t, hc, disc.EndSession)
		if resp.StatusCode != http.StatusOK || !strings.Contains(string(body), "signed out") {
			t.Errorf("end_session without parameters: status %d, want 200 and a signed-out page; body:\n%s", resp.StatusCode, body)
		}
		authURL, _ := rp.start()
		if page, _ := get(t, hc, authURL); page.Request.URL.Path != "/login" {
			t.Errorf("authorization after end_session ended at %s, want the login page", page.Request.URL)
		}
	})
	t.Run("unregistered post_logout_redirect_uri", func(t *testing.T) {
		t.Parallel()
		q := url.Values{"client_id": {"gateway"}, "post_logout_redirect_uri": {"https://evil.example/"}}
		resp, _ := get(t, newBrowser(t, p), disc.EndSession+"?"+q.Encode())
		if resp.StatusCode != http.StatusBadRequest {
			t.Errorf("end_session to an unregistered URI: status %d, want 400", resp.StatusCode)
		}
	})
}

func TestAuthorizationRefused(t *testing.T) {
	t.Parallel()
	p := startProvider(t, Config{})
	public := newRelyingParty(t, p, Client{ID: "cli"})
	confidential := newRelyingParty(t, p, Client{ID: "gateway", Secret: "s"})
	wrongSecret := *confidential
	wrongSecret.conf.ClientSecret = "not-the-secret"

	t.Run("public client without code_challenge", func(t *testing.T) {
		t.Parallel()
		f := authFlow{state: "st"}
		resp, err := newBrowser(t, p).Get(public.conf.AuthCodeURL(f.state))
		if err != nil {
			t.Fatalf("GET authorization URL: %v", err)
		}
		if got := public.callback(resp, f).Get("error"); got != "invalid_request" {
			t.Errorf("callback error = %q, want invalid_request", got)
		}
	})
	t.Run("plain code_challenge_method", func(t *testing.T) {
		t.Parallel()
		f := authFlow{state: "st"}
		u := confidential.conf.AuthCodeURL(f.state,
			oauth2.SetAuthURLParam("code_challenge", oauth2.GenerateVerifier()),
			oauth2.SetAuthURLParam("code_challenge_method", "plain"))
		resp, err := newBrowser(t, p).Get(u)
		if err != nil {
			t.Fatalf("GET authorization URL: %v", err)
		}
		if got := confidential.callback(resp, f).Get("error"); got != "invalid_request" {
			t.Errorf("callback error = %q, want invalid_request", got)
		}
	})

	tests := []struct {
		name     string
		rp       *relyingParty
		verifier func(f authFlow) []oauth2.AuthCodeOption
		wantCode string
	}{
		{"wrong verifier", public, func(authFlow) []oauth2.AuthCodeOption {
			return []oauth2.AuthCodeOption{oauth2.VerifierOption(oauth2.GenerateVerifier())}
		}, "invalid_grant"},
		{"confidential client without verifier", confidential, func(authFlow) []oauth2.AuthCodeOption {
			return nil
		}, "invalid_request"},
		{"wrong client secret", &wrongSecret, func(f authFlow) []oauth2.AuthCodeOption {
			return []oauth2.AuthCodeOption{oauth2.VerifierOption(f.verifier)}
		}, "invalid_client"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			authURL, f := tt.rp.start()
			resp, err := p.SignIn(context.Background(), newBrowser(t, p), authURL, "alice@example.com", "alice")
			if err != nil {
				t.Fatalf("SignIn() error = %v", err)
			}
			_, err = tt.rp.conf.Exchange(context.Background(), tt.rp.code(resp, f), tt.verifier(f)...)
			if got := oauthErrorCode(err); got != tt.wantCode {
				t.Errorf("Exchange() error = %v, want %s", err, tt.wantCode)
			}
		})
	}
}

func TestDemoUsers(t *testing.T) {
	t.Parallel()
	p := startProvider(t, Config{}) // nil Users: the demo users
	rp := newRelyingParty(t, p, Client{ID: "gateway", Secret: "s"})
	for _, u := range DemoUsers() {
		t.Run(u.Email, func(t *testing.T) {
			t.Parallel()
			_, raw, f := rp.login(newBrowser(t, p), u.Email, u.Password)
			var got userClaims
			if err := rp.verify(raw, f.nonce).Claims(&got); err != nil {
				t.Fatalf("IDToken.Claims() error = %v", err)
			}
			want := userClaims{
				Subject:           subjectFor(u.Email),
				Email:             u.Email,
				EmailVerified:     ptr(true),
				Name:              u.Name,
				PreferredUsername: u.Email,
				Groups:            u.Groups,
			}
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("ID token claims of %s mismatch (-want +got):\n%s", u.Email, diff)
			}
		})
	}
	if got := DemoUsers(); len(got) < 2 || got[0].Email != "alice@example.com" || !slices.Contains(got[0].Groups, "admins") || got[1].Email != "bob@example.com" {
		t.Errorf("DemoUsers() = %+v, want alice (admins) then bob", got)
	}
}

func TestConcurrentSignIns(t *testing.T) {
	t.Parallel()
	p := startProvider(t, Config{})
	rp := newRelyingParty(t, p, Client{ID: "gateway", Secret: "s"}, "openid", "email", "offline_access")
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Go(func() {
			email, password := "alice@example.com", "alice"
			if i%2 == 1 {
				email, password = "bob@example.com", "bob"
			}
			hc := newBrowser(t, p)
			authURL, f := rp.start()
			resp, err := p.SignIn(context.Background(), hc, authURL, email, password)
			if err != nil {
				t.Errorf("SignIn(%s) error = %v", email, err)
				return
			}
			loc, err := resp.Location()
			resp.Body.Close()
			if err != nil {
				t.Errorf("SignIn(%s): no redirect: %v", email, err)
				return
			}
			tok, err := rp.conf.Exchange(context.Background(), loc.Query().Get("code"), oauth2.VerifierOption(f.verifier))
			if err != nil {
				t.Errorf("Exchange() for %s error = %v", email, err)
				return
			}
			if _, err := rp.refresh(tok.RefreshToken); err != nil {
				t.Errorf("refresh for %s error = %v", email, err)
			}
		})
	}
	wg.Wait()
}

func TestClose(t *testing.T) {
	t.Parallel()
	p, err := Start("127.0.0.1:0", Config{})
	if err != nil {
		t.Fatalf("Start() error = %v", err)
	}
	discovery := p.Issuer() + "/.well-known/openid-configuration"
	hc := &http.Client{Transport: &http.Transport{}, Timeout: 2 * time.Second} // keeps its connection open
	if resp, _ := get(t, hc, discovery); resp.StatusCode != http.StatusOK {
		t.Fatalf("GET discovery: status %d, want 200", resp.StatusCode)
	}

	start := time.Now()
	if err := p.Close(); err != nil {
		t.Errorf("Close() error = %v", err)
	}
	if d := time.Since(start); d > time.Second {
		t.Errorf("Close() took %v, want it prompt", d)
	}
	if _, err := hc.Get(discovery); err == nil {
		t.Errorf("GET discovery after Close() succeeded, want an error")
	}
	if err := p.Close(); err != nil {
		t.Errorf("second Close() error = %v, want nil", err)
	}
}

func TestStartConfigErrors(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		cfg  Config
		want []string
	}{
		{"user without email or password", Config{Users: []User{{Name: "x"}}}, []string{"Users[0].Email is empty", "Users[0].Password is empty"}},
		{"duplicate email", Config{Users: []User{
			{Email: "a@example.com", Password: "p"}, {Email: "A@example.com", Password: "p"},
		}}, []string{`Users[1].Email "A@example.com" repeats Users[0]`}},
		{"duplicate subject", Config{Users: []User{
			{Subject: "s1", Email: "a@example.com", Password: "p"}, {Subject: "s1", Email: "b@example.com", Password: "p"},
		}}, []string{`Users[1].Subject "s1" repeats Users[0]`}},
		{"bad clients", Config{Clients: []Client{
			{Secret: "s"},
			{ID: "c", RedirectURIs: []string{"/relative"}},
			{ID: "c", RedirectURIs: []string{"http://127.0.0.1/cb"}},
		}}, []string{"Clients[0]: ID is empty", "Clients[0]: RedirectURIs is empty", `Clients[1]: redirect URI "/relative" is not an absolute URL`, `Clients[2].ID "c" repeats Clients[1]`}},
		{"bad back-channel logout URIs", Config{Clients: []Client{
			{ID: "a", RedirectURIs: []string{"http://127.0.0.1/cb"}, BackChannelLogoutURI: "/relative"},
			{ID: "b", RedirectURIs: []string{"http://127.0.0.1/cb"}, BackChannelLogoutURI: "http://127.0.0.1/bcl#frag"},
		}}, []string{`Clients[0]: BackChannelLogoutURI "/relative"`, `Clients[1]: BackChannelLogoutURI "http://127.0.0.1/bcl#frag"`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			p, err := Start("127.0.0.1:0", tt.cfg)
			if err == nil {
				p.Close()
				t.Fatalf("Start() error = nil, want %q", tt.want)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("Start() error = %q, want it to contain %q", err, w)
				}
			}
		})
	}
	if _, err := Start("127.0.0.1:-1", Config{}); err == nil {
		t.Errorf("Start() on a bad address: error = nil, want one")
	}
}
