package oidc_test

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/llmgate/llmgate/internal/devidp"
	"github.com/llmgate/llmgate/oidc"
)

const (
	clientID     = "llmgate"
	clientSecret = "test-client-secret"
	// redirectURI is never contacted: the test browser stops before it.
	redirectURI   = "http://127.0.0.1:9/oauth2/callback"
	postLogoutURI = "http://127.0.0.1:9/oauth2/signed_out"
)

// env is a relying party of a running dev provider whose client registers a
// back-channel logout endpoint.
type env struct {
	idp *devidp.Provider
	rp  *oidc.RelyingParty
	bcl *logoutReceiver
}

// newEnv starts a dev provider and a relying party that has discovered it;
// tune, when not nil, may change the relying party's Config first.
func newEnv(tb testing.TB, tune func(*oidc.Config)) *env {
	tb.Helper()
	bcl := newLogoutReceiver(tb)
	idp, err := devidp.Start("127.0.0.1:0", devidp.Config{
		Clients: []devidp.Client{{
			ID:                     clientID,
			Secret:                 clientSecret,
			RedirectURIs:           []string{redirectURI},
			PostLogoutRedirectURIs: []string{postLogoutURI},
			BackChannelLogoutURI:   bcl.URL,
		}},
	})
	if err != nil {
		tb.Fatalf("devidp.Start() error = %v", err)
	}
	tb.Cleanup(func() { idp.Close() })
	cfg := oidc.Config{
		Issuer:       idp.Issuer(),
		ClientID:     clientID,
		ClientSecret: clientSecret,
		RedirectURL:  redirectURI,
		Scopes:       []string{"openid", "email", "profile", "groups", "offline_access"},
	}
	if tune != nil {
		tune(&cfg)
	}
	rp := oidc.New(cfg)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := rp.Discover(ctx); err != nil {
		tb.Fatalf("Discover() error = %v", err)
	}
	return &env{idp: idp, rp: rp, bcl: bcl}
}

// newBrowser returns an HTTP client with a cookie jar that follows redirects
// within the provider only.
func (e *env) newBrowser(tb testing.TB) *http.Client {
	tb.Helper()
	jar, err := cookiejar.New(nil)
	if err != nil {
		tb.Fatal(err)
	}
	iss, _ := url.Parse(e.idp.Issuer())
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

// login signs email in at the provider in browser hc and finishes the login
// with Exchange.
func (e *env) login(tb testing.TB, hc *http.Client, email, password string) oidc.Identity {
	tb.Helper()
	ctx := context.Background()
	f := oidc.NewFlow()
	authURL, err := e.rp.AuthCodeURL(f)
	if err != nil {
		tb.Fatalf("AuthCodeURL() error = %v", err)
	}
	resp, err := e.idp.SignIn(ctx, hc, authURL, email, password)
	if err != nil {
		tb.Fatalf("SignIn(%s) error = %v", email, err)
	}
	resp.Body.Close()
	loc, err := resp.Location()
	if err != nil {
		tb.Fatalf("SignIn(%s): status %d, no redirect to the client: %v", email, resp.StatusCode, err)
	}
	if got := loc.Query().Get("state"); got != f.State {
		tb.Fatalf("callback state = %q, want %q", got, f.State)
	}
	id, err := e.rp.Exchange(ctx, loc.Query().Get("code"), f)
	if err != nil {
		tb.Fatalf("Exchange() for %s error = %v", email, err)
	}
	return id
}

// logoutReceiver is the relying party's back-channel logout endpoint: it
// records the logout tokens the provider POSTs.
type logoutReceiver struct {
	URL string

	mu     sync.Mutex
	tokens []string
}

func newLogoutReceiver(tb testing.TB) *logoutReceiver {
	tb.Helper()
	r := &logoutReceiver{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		if req.Method != http.MethodPost || req.Header.Get("Content-Type") != "application/x-www-form-urlencoded" {
			http.Error(w, "want a form POST", http.StatusBadRequest)
			return
		}
		tok := req.PostFormValue("logout_token")
		r.mu.Lock()
		r.tokens = append(r.tokens, tok)
		r.mu.Unlock()
	}))
	tb.Cleanup(srv.Close)
	r.URL = srv.URL + "/oauth2/backchannel_logout"
	return r
}

// take returns the logout tokens received so far and forgets them.
func (r *logoutReceiver) take() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	t := r.tokens
	r.tokens = nil
	return t
}

// withHeader returns token's payload under header, signed with HMAC-SHA256
// by key, or unsigned when key is nil.
func withHeader(tb testing.TB, token, header string, key []byte) string {
	tb.Helper()
	parts := strings.Split(token, ".")
	if len(parts) != 3 {
		tb.Fatalf("token %q is not a compact JWS", token)
	}
	input := base64.RawURLEncoding.EncodeToString([]byte(header)) + "." + parts[1]
	if key == nil {
		return input + "."
	}
	mac := hmac.New(sha256.New, key)
	mac.Write([]byte(input))
	return input + "." + base64.RawURLEncoding.EncodeToString(mac.Sum(nil))
}
