package gateway

import (
	"encoding/json"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/llmgate/llmgate/internal/devidp"
	"github.com/llmgate/llmgate/internal/redistest"
)

// deviceCode asks for a device code with form and checks the answer's shape.
func (h *harness) deviceCode(tb testing.TB, path string, form url.Values, header http.Header) map[string]any {
	tb.Helper()
	resp, out := h.oauthPost(tb, path, form, header)
	if resp.StatusCode != http.StatusOK || resp.Header.Get("Cache-Control") != "no-store" {
		tb.Fatalf("POST %s %q: %d, Cache-Control %q, %v; want 200, no-store", path, form.Encode(), resp.StatusCode, resp.Header.Get("Cache-Control"), out)
	}
	uc := str(out, "user_code")
	if len(uc) != 9 || uc[4] != '-' || strings.Trim(strings.ReplaceAll(uc, "-", ""), "BCDFGHJKLMNPQRSTVWXZ") != "" {
		tb.Errorf("user_code %q: want XXXX-XXXX of BCDFGHJKLMNPQRSTVWXZ", uc)
	}
	if len(str(out, "device_code")) < 43 || out["verification_uri"] != h.url+"/device" ||
		out["verification_uri_complete"] != h.url+"/device?user_code="+strings.ReplaceAll(uc, "-", "") ||
		out["expires_in"] != float64(600) || out["interval"] != float64(5) {
		tb.Errorf("device authorization answer %v: want a 256-bit device_code, %s/device, the complete URI, 600, 5", out, h.url)
	}
	return out
}

// poll polls the token endpoint once for device code dc.
func (h *harness) poll(tb testing.TB, path, dc string) (*http.Response, map[string]any) {
	tb.Helper()
	return h.oauthPost(tb, path, url.Values{"grant_type": {"urn:ietf:params:oauth:grant-type:device_code"}, "device_code": {dc}}, nil)
}

// decideDevice opens the approval page of code and presses action.
func (b *browser) decideDevice(h *harness, completeURI, action string) string {
	b.t.Helper()
	p := b.Get(completeURI)
	if p.Status != http.StatusOK || !strings.Contains(p.Body, `id="approve"`) {
		b.t.Fatalf("GET %s: %d, want the approval page\n%s", completeURI, p.Status, p.Body)
	}
	p = b.submit(h, formByAction(b.t, p, "/device"), action)
	if p.Status != http.StatusOK {
		b.t.Fatalf("POST /device %s: %d\n%s", action, p.Status, p.Body)
	}
	return p.Body
}

// TestDeviceLoginCLI plays `llmgate login --device`: pending, slow_down,
// approval in a browser, then the CLI credential.
func TestDeviceLoginCLI(t *testing.T) {
	redistest.Each(t, func(t *testing.T, rs *redistest.Server) {
		h := newHarness(t, rs)
		dev := h.deviceCode(t, "/api/device/code", url.Values{"name": {"ci box"}, "host": {"<i>ci-7</i>"}}, http.Header{"User-Agent": {"llmgate/1.0"}})
		dc := str(dev, "device_code")

		if resp, out := h.poll(t, "/api/device/token", dc); resp.StatusCode != 400 || out["error"] != "authorization_pending" {
			t.Errorf("first poll: %d %v, want 400 authorization_pending", resp.StatusCode, out)
		}
		if resp, out := h.poll(t, "/api/device/token", dc); resp.StatusCode != 400 || out["error"] != "slow_down" {
			t.Errorf("immediate second poll: %d %v, want 400 slow_down", resp.StatusCode, out)
		}

		// The browser: SSO, then the approval page, which approves nothing by itself.
		b := newBrowser(t)
		p := b.signIn(h, strings.TrimPrefix(str(dev, "verification_uri_complete"), h.url), "bob@example.com", devidp.DemoUsers()[1].Password)
		if p.Status != http.StatusOK || p.URL.Path != "/device" {
			t.Fatalf("after sign-in: %d at %s, want the approval page", p.Status, p.URL)
		}
		for _, want := range []string{str(dev, "user_code"), "llmgate CLI", "ci box", "&lt;i&gt;ci-7&lt;/i&gt;", "127.0.0.1", "llmgate/1.0", `id="approve"`, `id="deny"`} {
			if !strings.Contains(p.Body, want) {
				t.Errorf("approval page lacks %q:\n%s", want, p.Body)
			}
		}
		h.clock.Add(11 * time.Second)
		if resp, out := h.poll(t, "/api/device/token", dc); resp.StatusCode != 400 || out["error"] != "authorization_pending" {
			t.Errorf("poll after showing the page: %d %v, want still authorization_pending", resp.StatusCode, out)
		}

		f := formByAction(t, p, "/device")
		if r := b.PostForm(h.url+"/device", url.Values{"user_code": f.Values["user_code"], "action": {"approve"}}, sameOrigin(h)); r.Status != http.StatusForbidden {
			t.Errorf("approve without CSRF: %d, want 403", r.Status)
		}
		if r := b.PostForm(h.url+"/device", url.Values{"user_code": f.Values["user_code"], "csrf_token": f.Values["csrf_token"], "action": {"approve"}},
			http.Header{"Origin": {"https://evil.example"}}); r.Status != http.StatusForbidden {
			t.Errorf("approve cross-origin: %d, want 403", r.Status)
		}
		p = b.submit(h, f, "approve")
		if p.Status != http.StatusOK || !strings.Contains(p.Body, "signed in as bob@example.com") {
			t.Errorf("approve: %d, want the signed-in page\n%s", p.Status, p.Body)
		}

		h.clock.Add(11 * time.Second)
		resp, tok := h.poll(t, "/api/device/token", dc)
		if resp.StatusCode != http.StatusOK || resp.Header.Get("Cache-Control") != "no-store" {
			t.Fatalf("poll after approval: %d %v", resp.StatusCode, tok)
		}
		if tok["scope"] != "llm tokens" || tok["email"] != "bob@example.com" || tok["token_type"] != "Bearer" || str(tok, "token_id") == "" {
			t.Errorf("CLI credential answer %v", tok)
		}
		if _, has := tok["refresh_token"]; has {
			t.Errorf("CLI credential answer carries a refresh token: %v", tok)
		}
		resp, body := h.api(t, "GET", "/api/tokens/"+str(tok, "token_id"), "", bearer(str(tok, "access_token")))
		if resp.StatusCode != http.StatusOK || !strings.Contains(body, `"name":"ci box"`) {
			t.Errorf("the credential's record: %d %s, want named ci box", resp.StatusCode, body)
		}
		if resp, out := h.poll(t, "/api/device/token", dc); resp.StatusCode != 400 || out["error"] != "invalid_grant" {
			t.Errorf("poll after the token was issued: %d %v, want 400 invalid_grant", resp.StatusCode, out)
		}
		// The approval page of a used code says so.
		if p := b.Get(str(dev, "verification_uri_complete")); p.Status == http.StatusOK && strings.Contains(p.Body, `id="approve"`) {
			t.Errorf("approval page of a used code still offers Approve")
		}
	})
}

// TestDeviceDeniedExpired: a denied code answers access_denied; an
// unapproved one expires after 600 s.
func TestDeviceDeniedExpired(t *testing.T) {
	redistest.Each(t, func(t *testing.T, rs *redistest.Server) {
		h := newHarness(t, rs)
		b, _ := signedIn(t, h, devidp.DemoUsers()[0])
		dev := h.deviceCode(t, "/api/device/code", nil, nil)
		body := b.decideDevice(h, str(dev, "verification_uri_complete"), "deny")
		if !strings.Contains(body, "denied") {
			t.Errorf("deny page: %s", body)
		}
		if resp, out := h.poll(t, "/oauth/token", str(dev, "device_code")); resp.StatusCode != 400 || out["error"] != "access_denied" {
			t.Errorf("poll after deny: %d %v, want 400 access_denied", resp.StatusCode, out)
		}

		dev = h.deviceCode(t, "/api/device/code", nil, nil)
		h.clock.Add(601 * time.Second)
		if resp, out := h.poll(t, "/oauth/token", str(dev, "device_code")); resp.StatusCode != 400 || out["error"] != "expired_token" {
			t.Errorf("poll after 601s: %d %v, want 400 expired_token", resp.StatusCode, out)
		}
		if p := b.Get(str(dev, "verification_uri_complete")); p.Status != http.StatusGone || strings.Contains(p.Body, `id="approve"`) {
			t.Errorf("approval page of an expired code: %d, want 410 without Approve", p.Status)
		}
		if resp, out := h.poll(t, "/oauth/token", "no-such-device-code"); resp.StatusCode != 400 || out["error"] != "invalid_grant" {
			t.Errorf("poll with an unknown device code: %d %v, want 400 invalid_grant", resp.StatusCode, out)
		}
	})
}

// TestDeviceCodeForms: the device authorization accepts an empty body,
// unknown fields, and Claude Code's surface; typed codes are read in any
// case with or without the dash.
func TestDeviceCodeForms(t *testing.T) {
	h := newHarness(t, redistest.Mini(t))
	h.deviceCode(t, "/api/device/code", nil, nil)
	h.deviceCode(t, "/oauth/device_authorization", url.Values{"surface": {"claude_code"}}, nil)
	h.deviceCode(t, "/api/device/code", url.Values{"client_id": {"llmgate-cli"}, "scope": {"whatever"}, "x-unknown": {"1"}}, nil)
	if resp, out := h.oauthPost(t, "/api/device/code", url.Values{"client_id": {"someone-else"}}, nil); resp.StatusCode != http.StatusUnauthorized || out["error"] != "invalid_client" {
		t.Errorf("unknown client_id: %d %v, want 401 invalid_client", resp.StatusCode, out)
	}

	b, _ := signedIn(t, h, devidp.DemoUsers()[0])
	dev := h.deviceCode(t, "/api/device/code", nil, nil)
	uc := str(dev, "user_code")
	defer func() {
		// One address may start 60 sign-ins a minute (four were made above;
		// the limit refills at one a second while the test runs).
		n := 4
		for ; n < 80; n++ {
			resp, _ := h.oauthPost(t, "/api/device/code", nil, nil)
			if resp.StatusCode == http.StatusTooManyRequests {
				if resp.Header.Get("Retry-After") == "" {
					t.Errorf("429 without Retry-After")
				}
				break
			}
		}
		if n < 60 || n > 75 {
			t.Errorf("device codes from one address were refused after %d, want after 60 (a minute's worth)", n)
		}
	}()
	for _, typed := range []string{uc, strings.ToLower(uc), strings.ReplaceAll(uc, "-", " "), strings.ToLower(strings.ReplaceAll(uc, "-", ""))} {
		p := b.Get(h.url + "/device?user_code=" + url.QueryEscape(typed))
		if p.Status != http.StatusOK || !strings.Contains(p.Body, uc) || !strings.Contains(p.Body, `id="approve"`) {
			t.Errorf("GET /device?user_code=%q: %d, want the approval page of %s", typed, p.Status, uc)
		}
	}
	if p := b.Get(h.url + "/device"); p.Status != http.StatusOK || !strings.Contains(p.Body, `name="user_code"`) {
		t.Errorf("GET /device: %d, want the form to type a code", p.Status)
	}
}

// TestDeviceWrongCodeLimit: five wrong codes a minute per session, then
// "too many attempts", even for the right code.
func TestDeviceWrongCodeLimit(t *testing.T) {
	redistest.Each(t, func(t *testing.T, rs *redistest.Server) {
		h := newHarness(t, rs)
		b, _ := signedIn(t, h, devidp.DemoUsers()[0])
		dev := h.deviceCode(t, "/api/device/code", nil, nil)
		for i, wrong := range []string{"BBBB-BBBB", "CCCC-CCCC", "not a code", "DDDD-DDDD", "FFFF-FFFF"} {
			if p := b.Get(h.url + "/device?user_code=" + url.QueryEscape(wrong)); p.Status != http.StatusNotFound || !strings.Contains(p.Body, "No sign-in is waiting") {
				t.Fatalf("wrong code %d: %d, want 404 saying no sign-in waits for it\n%s", i+1, p.Status, p.Body)
			}
		}
		p := b.Get(str(dev, "verification_uri_complete"))
		if p.Status != http.StatusTooManyRequests || !strings.Contains(p.Body, "Too many attempts") || strings.Contains(p.Body, `id="approve"`) {
			t.Errorf("right code after 5 wrong ones: %d, want 429 too many attempts\n%s", p.Status, p.Body)
		}
		// Another session of the same gateway is not limited.
		other, _ := signedIn(t, h, devidp.DemoUsers()[1])
		if p := other.Get(str(dev, "verification_uri_complete")); p.Status != http.StatusOK {
			t.Errorf("another session: %d, want the approval page", p.Status)
		}
	})
}

// TestOAuthMetadata: the RFC 8414 document is built from the public URL,
// whatever Host or forwarding headers the request carries.
func TestOAuthMetadata(t *testing.T) {
	h := newHarness(t, redistest.Mini(t))
	resp, body := h.api(t, "GET", "/.well-known/oauth-authorization-server", "", http.Header{
		"X-Forwarded-Host": {"evil.example"}, "X-Forwarded-Proto": {"https"}, "Forwarded": {"host=evil.example"},
	})
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET metadata: %d %s", resp.StatusCode, body)
	}
	var m map[string]any
	if err := json.Unmarshal([]byte(body), &m); err != nil {
		t.Fatal(err)
	}
	want := map[string]string{
		"issuer":                        h.url,
		"device_authorization_endpoint": h.url + "/api/device/code",
		"token_endpoint":                h.url + "/oauth/token",
		"revocation_endpoint":           h.url + "/oauth/revoke",
		"authorization_endpoint":        h.url + "/cli/authorize",
	}
	for k, v := range want {
		if m[k] != v {
			t.Errorf("%s = %v, want %s", k, m[k], v)
		}
	}
	if strings.Contains(body, "evil.example") {
		t.Errorf("metadata reflects request headers: %s", body)
	}
	for _, want := range []string{`"urn:ietf:params:oauth:grant-type:device_code"`, `"refresh_token"`, `"token_endpoint_auth_methods_supported":["none"]`, `"response_types_supported":["code"]`, `"scopes_supported":["llm","tokens"]`} {
		if !strings.Contains(body, want) {
			t.Errorf("metadata lacks %s: %s", want, body)
		}
	}
	req, _ := http.NewRequest("GET", h.url+"/.well-known/oauth-authorization-server", nil)
	req.Host = "evil.example"
	r2, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer r2.Body.Close()
	var m2 map[string]any
	json.NewDecoder(r2.Body).Decode(&m2)
	if m2["issuer"] != h.url {
		t.Errorf("with Host: evil.example, issuer = %v, want %s", m2["issuer"], h.url)
	}
}
