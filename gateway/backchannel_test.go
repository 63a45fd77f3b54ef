package gateway

import (
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/llmgate/llmgate/internal/devidp"
	"github.com/llmgate/llmgate/internal/redistest"
)

func (h *harness) postLogoutToken(tb testing.TB, tok string) (int, string) {
	tb.Helper()
	resp, err := http.PostForm(h.url+"/oauth2/backchannel_logout", url.Values{"logout_token": {tok}})
	if err != nil {
		tb.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// TestBackchannelLogout: the provider ending alice's session ends exactly
// her gateway session; forged logout tokens change nothing.
func TestBackchannelLogout(t *testing.T) {
	redistest.Each(t, func(t *testing.T, rs *redistest.Server) {
		h := newHarness(t, rs)
		users := devidp.DemoUsers()
		alice, _ := signedIn(t, h, users[0])
		bob, _ := signedIn(t, h, users[1])

		forged := []struct {
			name string
			make func() (string, error)
		}{
			{"bad signature", func() (string, error) { return h.idp.ForeignLogoutToken("llmgate", "alice@example.com", nil) }},
			{"wrong audience", func() (string, error) {
				return h.idp.LogoutToken("llmgate", "alice@example.com", func(c map[string]any) { c["aud"] = "another-app" })
			}},
			{"with nonce", func() (string, error) {
				return h.idp.LogoutToken("llmgate", "alice@example.com", func(c map[string]any) { c["nonce"] = "n" })
			}},
			{"missing events", func() (string, error) {
				return h.idp.LogoutToken("llmgate", "alice@example.com", func(c map[string]any) { delete(c, "events") })
			}},
			{"expired", func() (string, error) {
				return h.idp.LogoutToken("llmgate", "alice@example.com", func(c map[string]any) {
					old := time.Now().Add(-time.Hour).Unix()
					c["iat"], c["exp"] = old, old+60
				})
			}},
			{"neither sid nor sub", func() (string, error) {
				return h.idp.LogoutToken("llmgate", "alice@example.com", func(c map[string]any) { delete(c, "sid"); delete(c, "sub") })
			}},
		}
		for _, f := range forged {
			tok, err := f.make()
			if err != nil {
				t.Fatalf("%s: %v", f.name, err)
			}
			if status, body := h.postLogoutToken(t, tok); status != http.StatusBadRequest || !strings.Contains(body, "invalid_request") {
				t.Errorf("%s: %d %s, want 400 invalid_request", f.name, status, body)
			}
			if status, _ := alice.me(h); status != 200 {
				t.Fatalf("%s logout token ended alice's session", f.name)
			}
		}

		// A genuine one, replayed after use.
		tok, err := h.idp.LogoutToken("llmgate", "alice@example.com", nil)
		if err != nil {
			t.Fatal(err)
		}
		if status, body := h.postLogoutToken(t, tok); status != http.StatusOK {
			t.Fatalf("genuine logout token: %d %s", status, body)
		}
		if status, _ := alice.me(h); status != http.StatusUnauthorized {
			t.Errorf("after back-channel logout alice's session answers %d, want 401", status)
		}
		if status, _ := bob.me(h); status != 200 {
			t.Errorf("bob's session ended by alice's logout: %d", status)
		}
		if status, body := h.postLogoutToken(t, tok); status != http.StatusBadRequest || !strings.Contains(body, "replayed") {
			t.Errorf("replayed logout token: %d %s, want 400 replayed", status, body)
		}

		// The provider itself sends one when it signs bob out everywhere.
		if err := h.idp.LogoutUser("bob@example.com"); err != nil {
			t.Fatalf("provider's LogoutUser (it POSTs to the gateway): %v", err)
		}
		if status, _ := bob.me(h); status != http.StatusUnauthorized {
			t.Errorf("after the provider logged bob out, his session answers %d, want 401", status)
		}
	})
}
