package oidc_test

import (
	"context"
	"errors"
	"io"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/llmgate/llmgate/oidc"
)

// checkClaims compares got with want, ignoring JTI (only checked for
// presence) and comparing times within 15 s: the tests' skewed claims are
// 30 s or more apart, and parallel tests on a loaded machine run seconds
// after the "now" their tables were built with.
func checkClaims(tb testing.TB, call string, got, want oidc.LogoutClaims) {
	tb.Helper()
	if got.JTI == "" {
		tb.Errorf("%s: JTI is empty", call)
	}
	if diff := cmp.Diff(want, got, cmpopts.IgnoreFields(oidc.LogoutClaims{}, "JTI"), cmpopts.EquateApproxTime(15*time.Second)); diff != "" {
		tb.Errorf("%s mismatch (-want +got):\n%s", call, diff)
	}
}

func TestVerifyLogoutTokenDelivered(t *testing.T) {
	t.Parallel()
	e := newEnv(t, nil)
	ctx := context.Background()
	hc := e.newBrowser(t)
	alice := e.login(t, hc, "alice@example.com", "alice")
	if alice.SessionID == "" {
		t.Fatalf("Exchange(): Identity.SessionID is empty, want the ID token's sid")
	}
	bob := e.login(t, e.newBrowser(t), "bob@example.com", "bob")
	if bob.SessionID == "" || bob.SessionID == alice.SessionID {
		t.Errorf("bob's SessionID = %q, want one of his own (alice's is %q)", bob.SessionID, alice.SessionID)
	}

	t.Run("end_session", func(t *testing.T) {
		logout := e.rp.LogoutURL(alice.IDToken, postLogoutURI)
		resp, err := hc.Get(logout)
		if err != nil {
			t.Fatalf("GET %s: %v", logout, err)
		}
		resp.Body.Close()
		tokens := e.bcl.take()
		if len(tokens) != 1 {
			t.Fatalf("end_session sent %d logout tokens, want 1", len(tokens))
		}
		got, err := e.rp.VerifyLogoutToken(ctx, tokens[0])
		if err != nil {
			t.Fatalf("VerifyLogoutToken(token sent at end_session) error = %v", err)
		}
		now := time.Now()
		checkClaims(t, "VerifyLogoutToken(token sent at end_session)", got, oidc.LogoutClaims{
			Issuer:    e.idp.Issuer(),
			Subject:   alice.Subject,
			SessionID: alice.SessionID,
			IssuedAt:  now,
			Expiry:    now.Add(2*time.Minute + oidc.LogoutTokenClockSkew), // exp + skew comes before iat + 5 min
		})
	})

	t.Run("LogoutUser", func(t *testing.T) {
		if err := e.idp.LogoutUser("bob@example.com"); err != nil {
			t.Fatalf("LogoutUser(bob) error = %v", err)
		}
		tokens := e.bcl.take()
		if len(tokens) != 1 {
			t.Fatalf("LogoutUser sent %d logout tokens, want 1", len(tokens))
		}
		got, err := e.rp.VerifyLogoutToken(ctx, tokens[0])
		if err != nil {
			t.Fatalf("VerifyLogoutToken(token sent at LogoutUser) error = %v", err)
		}
		if got.Subject != bob.Subject || got.SessionID != bob.SessionID || got.Issuer != bob.Issuer {
			t.Errorf("VerifyLogoutToken() = %+v, want bob's sub %q and sid %q from %s", got, bob.Subject, bob.SessionID, bob.Issuer)
		}
	})
}

func TestVerifyLogoutTokenAccepts(t *testing.T) {
	t.Parallel()
	e := newEnv(t, nil)
	alice := e.login(t, e.newBrowser(t), "alice@example.com", "alice")
	now := time.Now()

	tests := []struct {
		name   string
		mutate func(c map[string]any)
		want   oidc.LogoutClaims
	}{
		{"untouched", nil, oidc.LogoutClaims{
			Subject: alice.Subject, SessionID: alice.SessionID, IssuedAt: now, Expiry: now.Add(3 * time.Minute),
		}},
		{"no exp", func(c map[string]any) { delete(c, "exp") }, oidc.LogoutClaims{
			Subject: alice.Subject, SessionID: alice.SessionID, IssuedAt: now, Expiry: now.Add(oidc.LogoutTokenMaxAge),
		}},
		{"sid only", func(c map[string]any) { delete(c, "sub") }, oidc.LogoutClaims{
			SessionID: alice.SessionID, IssuedAt: now, Expiry: now.Add(3 * time.Minute),
		}},
		{"sub only", func(c map[string]any) { delete(c, "sid") }, oidc.LogoutClaims{
			Subject: alice.Subject, IssuedAt: now, Expiry: now.Add(3 * time.Minute),
		}},
		{"aud as a string among others", func(c map[string]any) { c["aud"] = clientID }, oidc.LogoutClaims{
			Subject: alice.Subject, SessionID: alice.SessionID, IssuedAt: now, Expiry: now.Add(3 * time.Minute),
		}},
		{"several audiences", func(c map[string]any) { c["aud"] = []any{"other-app", clientID} }, oidc.LogoutClaims{
			Subject: alice.Subject, SessionID: alice.SessionID, IssuedAt: now, Expiry: now.Add(3 * time.Minute),
		}},
		{"more events", func(c map[string]any) {
			c["events"].(map[string]any)["https://example.com/other-event"] = map[string]any{"x": 1}
		}, oidc.LogoutClaims{
			Subject: alice.Subject, SessionID: alice.SessionID, IssuedAt: now, Expiry: now.Add(3 * time.Minute),
		}},
		{"iat 4 minutes ago", func(c map[string]any) {
			c["iat"] = now.Add(-4 * time.Minute).Unix()
			c["exp"] = now.Add(time.Hour).Unix()
		}, oidc.LogoutClaims{
			Subject: alice.Subject, SessionID: alice.SessionID, IssuedAt: now.Add(-4 * time.Minute), Expiry: now.Add(time.Minute),
		}},
		{"iat 30 s ahead (clock skew)", func(c map[string]any) { c["iat"] = now.Add(30 * time.Second).Unix() }, oidc.LogoutClaims{
			Subject: alice.Subject, SessionID: alice.SessionID, IssuedAt: now.Add(30 * time.Second), Expiry: now.Add(3 * time.Minute),
		}},
		{"exp 30 s ago (clock skew)", func(c map[string]any) { c["exp"] = now.Add(-30 * time.Second).Unix() }, oidc.LogoutClaims{
			Subject: alice.Subject, SessionID: alice.SessionID, IssuedAt: now, Expiry: now.Add(30 * time.Second),
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			raw, err := e.idp.LogoutToken(clientID, "alice@example.com", tt.mutate)
			if err != nil {
				t.Fatalf("LogoutToken() error = %v", err)
			}
			got, err := e.rp.VerifyLogoutToken(context.Background(), raw)
			if err != nil {
				t.Fatalf("VerifyLogoutToken() error = %v", err)
			}
			tt.want.Issuer = e.idp.Issuer()
			checkClaims(t, "VerifyLogoutToken()", got, tt.want)
		})
	}
}

func TestVerifyLogoutTokenRejects(t *testing.T) {
	t.Parallel()
	e := newEnv(t, nil)
	alice := e.login(t, e.newBrowser(t), "alice@example.com", "alice")
	now := time.Now()
	real := func(t *testing.T, mutate func(map[string]any)) string {
		t.Helper()
		raw, err := e.idp.LogoutToken(clientID, "alice@example.com", mutate)
		if err != nil {
			t.Fatalf("LogoutToken() error = %v", err)
		}
		return raw
	}
	mutated := func(mutate func(c map[string]any)) func(t *testing.T) string {
		return func(t *testing.T) string { return real(t, mutate) }
	}

	tests := []struct {
		name  string
		token func(t *testing.T) string
		// wantMsg is part of the error message saying what was wrong.
		wantMsg string
	}{
		{"bad signature (another key, same kid)", func(t *testing.T) string {
			raw, err := e.idp.ForeignLogoutToken(clientID, "alice@example.com", nil)
			if err != nil {
				t.Fatalf("ForeignLogoutToken() error = %v", err)
			}
			return raw
		}, "signature"},
		{"alg none", func(t *testing.T) string {
			return withHeader(t, real(t, nil), `{"alg":"none","typ":"logout+jwt"}`, nil)
		}, `alg "none"`},
		{"alg HS256", func(t *testing.T) string {
			return withHeader(t, real(t, nil), `{"alg":"HS256","typ":"logout+jwt"}`, []byte(alice.IDToken))
		}, "signature"},
		{"tampered payload", func(t *testing.T) string {
			parts := strings.Split(real(t, nil), ".")
			other := strings.Split(real(t, func(c map[string]any) { c["sub"] = "someone-else" }), ".")
			return parts[0] + "." + other[1] + "." + parts[2]
		}, "signature"},
		{"typ of an access token", func(t *testing.T) string {
			return withHeader(t, real(t, nil), `{"alg":"RS256","typ":"at+jwt"}`, nil)
		}, `typ "at+jwt"`},
		{"wrong aud", mutated(func(c map[string]any) { c["aud"] = []any{"some-other-app"} }), "audience"},
		{"no aud", mutated(func(c map[string]any) { delete(c, "aud") }), "audience"},
		{"wrong iss", mutated(func(c map[string]any) { c["iss"] = "https://idp.evil.example" }), "different provider"},
		{"with nonce", mutated(func(c map[string]any) { c["nonce"] = "n-0S6_WzA2Mj" }), "nonce"},
		{"with a null nonce", mutated(func(c map[string]any) { c["nonce"] = nil }), "nonce"},
		{"an ID token", func(t *testing.T) string { return alice.IDToken }, "nonce"},
		{"missing events", mutated(func(c map[string]any) { delete(c, "events") }), "events is missing"},
		{"events without the back-channel member", mutated(func(c map[string]any) {
			c["events"] = map[string]any{"https://example.com/other-event": map[string]any{}}
		}), "no " + oidc.BackChannelLogoutEvent + " member"},
		{"events as an array (draft format)", mutated(func(c map[string]any) {
			c["events"] = []any{oidc.BackChannelLogoutEvent}
		}), "not a JSON object"},
		{"event member not an object", mutated(func(c map[string]any) {
			c["events"] = map[string]any{oidc.BackChannelLogoutEvent: "yes"}
		}), "not a JSON object"},
		{"null events", mutated(func(c map[string]any) { c["events"] = nil }), "not a JSON object"},
		{"neither sid nor sub", mutated(func(c map[string]any) { delete(c, "sub"); delete(c, "sid") }), "neither sub nor sid"},
		{"empty sid and sub", mutated(func(c map[string]any) { c["sub"] = ""; c["sid"] = "" }), "neither sub nor sid"},
		{"sid not a string", mutated(func(c map[string]any) { c["sid"] = 42 }), "sid is 42, not a string"},
		{"missing jti", mutated(func(c map[string]any) { delete(c, "jti") }), "jti is missing"},
		{"iat too old", mutated(func(c map[string]any) {
			c["iat"] = now.Add(-6 * time.Minute).Unix()
			c["exp"] = now.Add(time.Hour).Unix()
		}), "before now"},
		{"iat in the future", mutated(func(c map[string]any) {
			c["iat"] = now.Add(5 * time.Minute).Unix()
			c["exp"] = now.Add(time.Hour).Unix()
		}), "in the future"},
		{"missing iat", mutated(func(c map[string]any) { delete(c, "iat") }), "iat is missing"},
		{"iat not a number", mutated(func(c map[string]any) { c["iat"] = "yesterday" }), "signature, issuer or audience"},
		{"expired exp", mutated(func(c map[string]any) { c["exp"] = now.Add(-2 * time.Minute).Unix() }), "expired"},
		{"nbf in the future", mutated(func(c map[string]any) { c["nbf"] = now.Add(10 * time.Minute).Unix() }), "not valid before"},
		{"empty", func(*testing.T) string { return "" }, "empty"},
		{"not a JWT", func(*testing.T) string { return "logout" }, "not a compact JWS"},
		{"oversized", func(t *testing.T) string {
			return real(t, func(c map[string]any) { c["pad"] = strings.Repeat("x", 20<<10) })
		}, "too long"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			raw := tt.token(t)
			got, err := e.rp.VerifyLogoutToken(context.Background(), raw)
			if !errors.Is(err, oidc.ErrLogoutToken) {
				t.Fatalf("VerifyLogoutToken() = %+v, %v; want an error wrapping ErrLogoutToken", got, err)
			}
			if !strings.Contains(err.Error(), tt.wantMsg) {
				t.Errorf("VerifyLogoutToken() error = %q, want it to say %q", err, tt.wantMsg)
			}
		})
	}
}

// TestVerifyLogoutTokenClock: the iat window and exp follow the injected
// clock, not the wall clock.
func TestVerifyLogoutTokenClock(t *testing.T) {
	t.Parallel()
	var offset time.Duration
	e := newEnv(t, func(c *oidc.Config) { c.Now = func() time.Time { return time.Now().Add(offset) } })
	raw, err := e.idp.LogoutToken(clientID, "alice@example.com", func(c map[string]any) { delete(c, "exp") })
	if err != nil {
		t.Fatalf("LogoutToken() error = %v", err)
	}
	if _, err := e.rp.VerifyLogoutToken(context.Background(), raw); err != nil {
		t.Fatalf("VerifyLogoutToken() now: %v", err)
	}
	offset = oidc.LogoutTokenMaxAge + time.Second
	if _, err := e.rp.VerifyLogoutToken(context.Background(), raw); !errors.Is(err, oidc.ErrLogoutToken) {
		t.Errorf("VerifyLogoutToken() %v later: error = %v, want ErrLogoutToken (too old)", offset, err)
	}
}

func TestNotReady(t *testing.T) {
	t.Parallel()
	rp := oidc.New(oidc.Config{Issuer: "http://127.0.0.1:9", ClientID: clientID})
	if _, err := rp.VerifyLogoutToken(context.Background(), "x.y.z"); !errors.Is(err, oidc.ErrNotReady) {
		t.Errorf("VerifyLogoutToken() before discovery: error = %v, want ErrNotReady", err)
	}
	if _, err := rp.Refresh(context.Background(), "rt"); !errors.Is(err, oidc.ErrNotReady) {
		t.Errorf("Refresh() before discovery: error = %v, want ErrNotReady", err)
	}
}

func TestRefresh(t *testing.T) {
	t.Parallel()
	e := newEnv(t, nil)
	ctx := context.Background()
	alice := e.login(t, e.newBrowser(t), "alice@example.com", "alice")
	bob := e.login(t, e.newBrowser(t), "bob@example.com", "bob")
	if alice.RefreshToken == "" || bob.RefreshToken == "" {
		t.Fatalf("Exchange() with offline_access returned no refresh token")
	}

	next, err := e.rp.Refresh(ctx, alice.RefreshToken)
	if err != nil {
		t.Fatalf("Refresh(active user) error = %v", err)
	}
	if next == "" || next == alice.RefreshToken {
		t.Errorf("Refresh() = %q, want the rotated refresh token", next)
	}
	if _, err := e.rp.Refresh(ctx, alice.RefreshToken); !errors.Is(err, oidc.ErrInvalidGrant) {
		t.Errorf("Refresh(rotated-away token) error = %v, want ErrInvalidGrant", err)
	}

	e.idp.SetDisabled("alice@example.com", true)
	if _, err := e.rp.Refresh(ctx, next); !errors.Is(err, oidc.ErrInvalidGrant) {
		t.Errorf("Refresh() after SetDisabled error = %v, want ErrInvalidGrant", err)
	}
	if _, err := e.rp.Refresh(ctx, bob.RefreshToken); err != nil {
		t.Errorf("Refresh(bob) after alice was disabled: %v", err)
	}
	if _, err := e.rp.Refresh(ctx, ""); err == nil || errors.Is(err, oidc.ErrInvalidGrant) {
		t.Errorf("Refresh(\"\") error = %v, want an error that is not ErrInvalidGrant", err)
	}
}

// TestRefreshTransient: a provider that is down or failing is not a person
// removed.
func TestRefreshTransient(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		// status and body answer token requests once fail is set; status 0
		// closes the provider instead.
		status int
		body   string
	}{
		{"provider down", 0, ""},
		{"server error", http.StatusInternalServerError, `{"error":"server_error"}`},
		{"temporarily unavailable", http.StatusServiceUnavailable, `{"error":"temporarily_unavailable"}`},
		{"client misconfigured", http.StatusUnauthorized, `{"error":"invalid_client"}`},
		{"not JSON", http.StatusBadGateway, `<html>bad gateway</html>`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			var fail atomic.Bool
			ft := &failingTransport{fail: &fail, status: tt.status, body: tt.body}
			e := newEnv(t, func(c *oidc.Config) { c.HTTPClient = &http.Client{Transport: ft, Timeout: 5 * time.Second} })
			id := e.login(t, e.newBrowser(t), "bob@example.com", "bob")
			if tt.status == 0 {
				e.idp.Close()
			}
			fail.Store(true)
			_, err := e.rp.Refresh(context.Background(), id.RefreshToken)
			if err == nil || errors.Is(err, oidc.ErrInvalidGrant) {
				t.Errorf("Refresh() with %s: error = %v, want a transient error (not ErrInvalidGrant)", tt.name, err)
			}
		})
	}
}

// failingTransport answers token requests itself once fail is set (unless
// status is 0) and passes everything else to the default transport.
type failingTransport struct {
	fail   *atomic.Bool
	status int
	body   string
}

func (f *failingTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	if f.status == 0 || !f.fail.Load() || !strings.HasSuffix(req.URL.Path, "/oauth/token") {
		return http.DefaultTransport.RoundTrip(req)
	}
	if req.Body != nil {
		req.Body.Close()
	}
	return &http.Response{
		StatusCode: f.status,
		Header:     http.Header{"Content-Type": {"application/json"}},
		Body:       io.NopCloser(strings.NewReader(f.body)),
		Request:    req,
	}, nil
}
