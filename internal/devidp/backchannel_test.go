package devidp

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	gooidc "github.com/coreos/go-oidc/v3/oidc"
	"github.com/google/go-cmp/cmp"
	"golang.org/x/oauth2"
)

func remoteKeys(jwksURI string) *gooidc.RemoteKeySet {
	return gooidc.NewRemoteKeySet(context.Background(), jwksURI)
}

// logoutReceiver is a relying party's back-channel logout endpoint that
// records what the provider POSTs to it.
type logoutReceiver struct {
	URL    string
	status int

	mu    sync.Mutex
	posts []logoutPost
}

type logoutPost struct {
	method, contentType, token string
}

// newLogoutReceiver starts a receiver answering status until the test ends.
func newLogoutReceiver(tb testing.TB, status int) *logoutReceiver {
	tb.Helper()
	r := &logoutReceiver{status: status}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		req.ParseForm()
		r.mu.Lock()
		r.posts = append(r.posts, logoutPost{req.Method, req.Header.Get("Content-Type"), req.PostForm.Get("logout_token")})
		r.mu.Unlock()
		w.Header().Set("Cache-Control", "no-store")
		w.WriteHeader(r.status)
		if r.status != http.StatusOK {
			io.WriteString(w, `{"error":"invalid_request"}`)
		}
	}))
	tb.Cleanup(srv.Close)
	r.URL = srv.URL + "/oauth2/backchannel_logout"
	return r
}

// take returns the posts received so far and forgets them.
func (r *logoutReceiver) take() []logoutPost {
	r.mu.Lock()
	defer r.mu.Unlock()
	p := r.posts
	r.posts = nil
	return p
}

// jwsHeader decodes the protected header of a compact JWS.
func jwsHeader(tb testing.TB, token string) map[string]any {
	tb.Helper()
	head, _, ok := strings.Cut(token, ".")
	if !ok {
		tb.Fatalf("token %q is not a compact JWS", token)
	}
	b, err := base64.RawURLEncoding.DecodeString(head)
	if err != nil {
		tb.Fatalf("decode JWS header: %v", err)
	}
	var h map[string]any
	if err := json.Unmarshal(b, &h); err != nil {
		tb.Fatalf("decode JWS header: %v", err)
	}
	return h
}

// checkLogoutToken checks that raw is a logout token for rp's client about
// subject and sid, signed with the provider's key, issued just now.
func checkLogoutToken(tb testing.TB, rp *relyingParty, raw, subject, sid string) {
	tb.Helper()
	claims := rp.signedClaims(raw)
	if h := jwsHeader(tb, raw); h["alg"] != "RS256" || h["typ"] != "logout+jwt" || h["kid"] == "" {
		tb.Errorf("logout token header = %v, want alg RS256, typ logout+jwt and a kid", h)
	}
	iat, _ := claims["iat"].(float64)
	exp, _ := claims["exp"].(float64)
	if d := time.Since(time.Unix(int64(iat), 0)); d < -time.Second || d > 10*time.Second {
		tb.Errorf("logout token iat = %v, %v ago, want now", iat, d)
	}
	if exp-iat != 120 {
		tb.Errorf("logout token exp - iat = %v, want 120", exp-iat)
	}
	if jti, _ := claims["jti"].(string); len(jti) < 16 {
		tb.Errorf("logout token jti = %q, want a random id", jti)
	}
	got := map[string]any{}
	for _, k := range []string{"iss", "aud", "sub", "sid", "events", "nonce"} {
		got[k] = claims[k]
	}
	want := map[string]any{
		"iss":    rp.p.Issuer(),
		"aud":    []any{rp.client.ID},
		"sub":    subject,
		"sid":    sid,
		"events": map[string]any{BackChannelLogoutEvent: map[string]any{}},
		"nonce":  nil,
	}
	if sid == "" {
		want["sid"] = nil
	}
	if diff := cmp.Diff(want, got); diff != "" {
		tb.Errorf("logout token claims mismatch (-want +got):\n%s", diff)
	}
}

func TestSIDClaim(t *testing.T) {
	t.Parallel()
	p := startProvider(t, Config{})
	gw := newRelyingParty(t, p, Client{ID: "gateway", Secret: "s"}, "openid", "email", "offline_access")
	other := newRelyingParty(t, p, Client{ID: "other", Secret: "s"})

	hc := newBrowser(t, p)
	tok, raw, _ := gw.login(hc, "alice@example.com", "alice")
	sid, _ := gw.signedClaims(raw)["sid"].(string)
	if sid == "" {
		t.Fatalf("ID token has no sid claim")
	}
	for _, c := range hc.Jar.Cookies(mustParse(t, p.Issuer())) {
		if c.Value == sid {
			t.Errorf("sid %q is the browser session cookie's value; it must not leak the cookie", sid)
		}
	}

	// Another sign-in of the same browser session, to another client.
	authURL, f := other.start()
	resp, err := hc.Get(authURL)
	if err != nil {
		t.Fatalf("GET authorization URL: %v", err)
	}
	_, raw2 := other.exchange(other.code(resp, f), f)
	if got := other.signedClaims(raw2)["sid"]; got != sid {
		t.Errorf("sid of a second sign-in in the same browser session = %v, want %q", got, sid)
	}

	// Another browser, another session.
	_, raw3, _ := gw.login(newBrowser(t, p), "alice@example.com", "alice")
	if got := gw.signedClaims(raw3)["sid"]; got == sid || got == nil {
		t.Errorf("sid of a sign-in in another browser = %v, want a new one (not %q)", got, sid)
	}

	refreshed, err := gw.refresh(tok.RefreshToken)
	if err != nil {
		t.Fatalf("refresh: %v", err)
	}
	rawRefreshed, _ := refreshed.Extra("id_token").(string)
	if got := gw.signedClaims(rawRefreshed)["sid"]; got != sid {
		t.Errorf("sid of the refreshed ID token = %v, want %q", got, sid)
	}

	info, err := gw.provider.UserInfo(context.Background(), oauth2.StaticTokenSource(refreshed))
	if err != nil {
		t.Fatalf("UserInfo() error = %v", err)
	}
	var ui map[string]any
	if err := info.Claims(&ui); err != nil {
		t.Fatal(err)
	}
	if _, ok := ui["sid"]; ok {
		t.Errorf("userinfo carries sid: %v", ui)
	}
}

func mustParse(tb testing.TB, raw string) *url.URL {
	tb.Helper()
	u, err := url.Parse(raw)
	if err != nil {
		tb.Fatal(err)
	}
	return u
}

func TestBackChannelLogout(t *testing.T) {
	t.Parallel()
	const postLogout = "http://127.0.0.1:9/signed-out"
	tests := []struct {
		name string
		// end ends alice's session in browser hc whose ID token for the
		// gateway is idToken.
		end func(t *testing.T, p *Provider, gw *relyingParty, hc *http.Client, idToken string)
		// disabled: alice may not sign in again afterwards.
		disabled bool
	}{
		{"end_session", func(t *testing.T, p *Provider, gw *relyingParty, hc *http.Client, idToken string) {
			q := url.Values{"id_token_hint": {idToken}, "post_logout_redirect_uri": {postLogout}}
			resp, err := hc.Get(p.Issuer() + "/end_session?" + q.Encode())
			if err != nil {
				t.Fatalf("GET end_session: %v", err)
			}
			resp.Body.Close()
			if resp.StatusCode != http.StatusFound {
				t.Errorf("end_session: status %d, want 302", resp.StatusCode)
			}
		}, false},
		{"end_session by id_token_hint sid without the cookie", func(t *testing.T, p *Provider, gw *relyingParty, hc *http.Client, idToken string) {
			q := url.Values{"id_token_hint": {idToken}, "post_logout_redirect_uri": {postLogout}}
			resp, err := newBrowser(t, p).Get(p.Issuer() + "/end_session?" + q.Encode())
			if err != nil {
				t.Fatalf("GET end_session: %v", err)
			}
			resp.Body.Close()
		}, false},
		{"SetDisabled", func(t *testing.T, p *Provider, gw *relyingParty, hc *http.Client, idToken string) {
			p.SetDisabled("alice@example.com", true)
		}, true},
		{"LogoutUser", func(t *testing.T, p *Provider, gw *relyingParty, hc *http.Client, idToken string) {
			if err := p.LogoutUser("Alice@Example.com"); err != nil {
				t.Errorf("LogoutUser() error = %v", err)
			}
		}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			p := startProvider(t, Config{})
			gwRecv := newLogoutReceiver(t, http.StatusOK)
			idleRecv := newLogoutReceiver(t, http.StatusOK)
			gw := newRelyingParty(t, p, Client{ID: "gateway", Secret: "s", BackChannelLogoutURI: gwRecv.URL, PostLogoutRedirectURIs: []string{postLogout}},
				"openid", "email", "offline_access")
			noBCL := newRelyingParty(t, p, Client{ID: "no-bcl", Secret: "s"})
			newRelyingParty(t, p, Client{ID: "idle", Secret: "s", BackChannelLogoutURI: idleRecv.URL}) // nobody signs in

			alice := newBrowser(t, p)
			aliceTok, raw, _ := gw.login(alice, "alice@example.com", "alice")
			aliceSID, _ := gw.signedClaims(raw)["sid"].(string)
			authURL, f := noBCL.start()
			resp, err := alice.Get(authURL) // same browser session, a client without back-channel logout
			if err != nil {
				t.Fatal(err)
			}
			noBCL.code(resp, f)
			bobTok, _, _ := gw.login(newBrowser(t, p), "bob@example.com", "bob")

			tt.end(t, p, gw, alice, raw)

			posts := gwRecv.take()
			if len(posts) != 1 {
				t.Fatalf("the gateway's back-channel logout URI got %d POSTs, want 1: %+v", len(posts), posts)
			}
			if got := posts[0]; got.method != http.MethodPost || got.contentType != "application/x-www-form-urlencoded" || got.token == "" {
				t.Errorf("back-channel logout request = %s %q with logout_token %q, want a form POST with a token", got.method, got.contentType, got.token)
			}
			checkLogoutToken(t, gw, posts[0].token, subjectFor("alice@example.com"), aliceSID)
			if got := idleRecv.take(); len(got) != 0 {
				t.Errorf("a client nobody signed into got %d back-channel logouts, want none", len(got))
			}

			if _, err := gw.refresh(aliceTok.RefreshToken); oauthErrorCode(err) != "invalid_grant" {
				t.Errorf("alice's refresh after the logout: error = %v, want invalid_grant", err)
			}
			if _, err := gw.refresh(bobTok.RefreshToken); err != nil {
				t.Errorf("bob's refresh after alice's logout: %v", err)
			}
			authURL, _ = gw.start()
			if page, _ := get(t, alice, authURL); page.Request.URL.Path != "/login" {
				t.Errorf("alice's browser after the logout ended at %s, want the login page", page.Request.URL)
			}
			authURL, _ = gw.start()
			resp, err = p.SignIn(context.Background(), newBrowser(t, p), authURL, "alice@example.com", "alice")
			if err == nil {
				resp.Body.Close()
			}
			if tt.disabled != errors.Is(err, ErrUserDisabled) || (!tt.disabled && err != nil) {
				t.Errorf("SignIn(alice) after the logout: error = %v, want disabled: %v", err, tt.disabled)
			}
		})
	}
}

func TestLogoutUserDeliveryFails(t *testing.T) {
	t.Parallel()
	p := startProvider(t, Config{})
	refusing := newLogoutReceiver(t, http.StatusBadRequest)
	gw := newRelyingParty(t, p, Client{ID: "gateway", Secret: "s", BackChannelLogoutURI: refusing.URL})
	dead := newRelyingParty(t, p, Client{ID: "dead", Secret: "s", BackChannelLogoutURI: "http://127.0.0.1:9/bcl"})
	hc := newBrowser(t, p)
	gw.login(hc, "bob@example.com", "bob")
	dead.login(hc, "bob@example.com", "bob")

	err := p.LogoutUser("bob@example.com")
	for _, want := range []string{"client gateway", "status 400", "client dead"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("LogoutUser() with failing receivers: error = %v, want it to mention %q", err, want)
		}
	}
	if n := len(refusing.take()); n != 1 {
		t.Errorf("refusing receiver got %d POSTs, want 1", n)
	}
	if err := p.LogoutUser("bob@example.com"); err != nil {
		t.Errorf("second LogoutUser() with no sessions left: %v, want nil", err)
	}
	if err := p.LogoutUser("nobody@example.com"); !errors.Is(err, ErrUnknownUser) {
		t.Errorf("LogoutUser(unknown) error = %v, want ErrUnknownUser", err)
	}
}

func TestLogoutToken(t *testing.T) {
	t.Parallel()
	p := startProvider(t, Config{})
	gw := newRelyingParty(t, p, Client{ID: "gateway", Secret: "s"})

	// No browser session yet: sub only.
	raw, err := p.LogoutToken("gateway", "alice@example.com", nil)
	if err != nil {
		t.Fatalf("LogoutToken() error = %v", err)
	}
	checkLogoutToken(t, gw, raw, subjectFor("alice@example.com"), "")

	gw.login(newBrowser(t, p), "alice@example.com", "alice")
	_, idToken, _ := gw.login(newBrowser(t, p), "alice@example.com", "alice")
	latest, _ := gw.signedClaims(idToken)["sid"].(string)
	raw, err = p.LogoutToken("gateway", "ALICE@example.com", nil)
	if err != nil {
		t.Fatalf("LogoutToken() error = %v", err)
	}
	checkLogoutToken(t, gw, raw, subjectFor("alice@example.com"), latest)

	raw, err = p.LogoutToken("gateway", "alice@example.com", func(c map[string]any) {
		c["aud"] = []any{"someone-else"}
		c["nonce"] = "n"
		delete(c, "events")
		c["iat"] = c["iat"].(int64) - 3600
	})
	if err != nil {
		t.Fatalf("LogoutToken(mutated) error = %v", err)
	}
	claims := gw.signedClaims(raw) // still properly signed
	got := map[string]any{"aud": claims["aud"], "nonce": claims["nonce"], "events": claims["events"], "exp-iat": claims["exp"].(float64) - claims["iat"].(float64)}
	want := map[string]any{"aud": []any{"someone-else"}, "nonce": "n", "events": nil, "exp-iat": float64(3600 + 120)}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("mutated logout token claims mismatch (-want +got):\n%s", diff)
	}

	foreign, err := p.ForeignLogoutToken("gateway", "alice@example.com", nil)
	if err != nil {
		t.Fatalf("ForeignLogoutToken() error = %v", err)
	}
	if got, want := jwsHeader(t, foreign)["kid"], jwsHeader(t, raw)["kid"]; got != want {
		t.Errorf("ForeignLogoutToken kid = %v, want the provider's %v", got, want)
	}
	var disc struct {
		JWKSURI string `json:"jwks_uri"`
	}
	if err := gw.provider.Claims(&disc); err != nil {
		t.Fatal(err)
	}
	if _, err := remoteKeys(disc.JWKSURI).VerifySignature(context.Background(), foreign); err == nil {
		t.Errorf("ForeignLogoutToken verified against the provider's JWKS, want a bad signature")
	}

	for _, mint := range []func(string, string, func(map[string]any)) (string, error){p.LogoutToken, p.ForeignLogoutToken} {
		if _, err := mint("gateway", "nobody@example.com", nil); !errors.Is(err, ErrUnknownUser) {
			t.Errorf("minting for an unknown user: error = %v, want ErrUnknownUser", err)
		}
	}
}
