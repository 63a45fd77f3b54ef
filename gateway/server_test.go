package gateway

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/llmgate/llmgate/internal/audit"
	"github.com/llmgate/llmgate/internal/devidp"
	"github.com/llmgate/llmgate/internal/redistest"
	"github.com/llmgate/llmgate/internal/usage"
	"github.com/llmgate/llmgate/oidc"
	"github.com/llmgate/llmgate/sessions"
)

func TestCSRFAndOrigin(t *testing.T) {
	h := newHarness(t, redistest.Mini(t))
	b := newBrowser(t)
	b.signIn(h, "/", "alice@example.com", devidp.DemoUsers()[0].Password)
	_, me := b.me(h)
	tests := []struct {
		name   string
		header http.Header
		form   url.Values
		status int
	}{
		{"no token", nil, nil, http.StatusForbidden},
		{"wrong token", http.Header{"X-Csrf-Token": {"AAAA"}}, nil, http.StatusForbidden},
		{"another session's token", http.Header{"X-Csrf-Token": {csrfFor(h.gw.csrfKey, "some-other-session-id")}}, nil, http.StatusForbidden},
		{"right token, foreign origin", http.Header{"X-Csrf-Token": {me.CSRFToken}, "Origin": {"https://evil.example"}}, nil, http.StatusForbidden},
		{"right token in the form, own origin", http.Header{"Origin": {h.url}}, url.Values{"csrf_token": {me.CSRFToken}}, http.StatusOK},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b.StopAt = func(u *url.URL) bool { return true }
			p := b.PostForm(h.url+"/oauth2/sign_out", tt.form, tt.header)
			b.StopAt = nil
			got := p.Status
			if got == http.StatusSeeOther {
				got = http.StatusOK // signed out and sent on
			}
			if got != tt.status {
				t.Errorf("POST /oauth2/sign_out: status %d, want %d\n%s", p.Status, tt.status, p.Body)
			}
		})
	}
}

func TestHealthReadyMetrics(t *testing.T) {
	rs := redistest.Mini(t)
	h := newHarness(t, rs)
	b := newBrowser(t)
	if p := b.Get(h.url + "/healthz"); p.Status != http.StatusOK {
		t.Errorf("GET /healthz: %d, want 200", p.Status)
	}
	p := b.Get(h.url + "/readyz")
	if p.Status != http.StatusOK || !strings.Contains(p.Body, `"redis":"ok"`) || !strings.Contains(p.Body, `"oidc":"ok"`) || !strings.Contains(p.Body, `"tokens":"ok"`) {
		t.Errorf("GET /readyz: %d %s, want 200 with redis and oidc ok", p.Status, p.Body)
	}
	b.Get(h.url + "/api/me") // a 401 to count
	p = b.Get(h.url + "/metrics")
	for _, want := range []string{
		`llmgate_http_requests_total{code="401",method="GET",route="/api/me"} 1`,
		`llmgate_http_request_duration_seconds_bucket{route="/readyz"`,
	} {
		if !strings.Contains(p.Body, want) {
			t.Errorf("GET /metrics lacks %s", want)
		}
	}
	if strings.Contains(p.Body, `route="/nope`) {
		t.Errorf("metrics label raw paths")
	}

	rs.Mini.Close() // Redis goes away
	p = b.Get(h.url + "/readyz")
	var r struct {
		Status string            `json:"status"`
		Checks map[string]string `json:"checks"`
	}
	json.Unmarshal([]byte(p.Body), &r)
	if p.Status != http.StatusServiceUnavailable || r.Checks["redis"] == "ok" {
		t.Errorf("GET /readyz with Redis down: %d %s, want 503 with redis not ok", p.Status, p.Body)
	}
	if p := b.Get(h.url + "/healthz"); p.Status != http.StatusOK {
		t.Errorf("GET /healthz with Redis down: %d, want 200 (the process is alive)", p.Status)
	}
}

func TestErrorsAndHeaders(t *testing.T) {
	h := newHarness(t, redistest.Mini(t))
	b := newBrowser(t)
	tests := []struct {
		path        string
		accept      string
		status      int
		contentType string
		contains    string
	}{
		{"/api/me", "", http.StatusUnauthorized, "application/json", `"type":"authentication_error"`},
		{"/api/nope", "text/html", http.StatusNotFound, "application/json", `"code":"not_found"`},
		{"/no/such/page", "text/html,application/xhtml+xml", http.StatusNotFound, "text/html", "Page not found"},
		{"/no/such/route", "", http.StatusNotFound, "application/json", `"code":"not_found"`},
	}
	for _, tt := range tests {
		req, _ := http.NewRequest(http.MethodGet, h.url+tt.path, nil)
		if tt.accept != "" {
			req.Header.Set("Accept", tt.accept)
		}
		p := b.Do(req)
		if p.Status != tt.status || !strings.HasPrefix(p.Header.Get("Content-Type"), tt.contentType) || !strings.Contains(p.Body, tt.contains) {
			t.Errorf("GET %s: %d %s %q, want %d %s containing %s", tt.path, p.Status, p.Header.Get("Content-Type"), p.Body, tt.status, tt.contentType, tt.contains)
		}
		for _, hdr := range []string{"Content-Security-Policy", "X-Frame-Options", "X-Content-Type-Options", "Referrer-Policy"} {
			if p.Header.Get(hdr) == "" {
				t.Errorf("GET %s: no %s header", tt.path, hdr)
			}
		}
		if csp := p.Header.Get("Content-Security-Policy"); strings.Contains(csp, "unsafe-inline") {
			t.Errorf("CSP allows inline code: %s", csp)
		}
		if p.Header.Get("Strict-Transport-Security") != "" {
			t.Errorf("GET %s over http sent HSTS", tt.path)
		}
	}
	var e struct {
		Error struct{ Message, Type, Code string }
	}
	p := b.Get(h.url + "/api/me")
	if err := json.Unmarshal([]byte(p.Body), &e); err != nil || e.Error.Message == "" || e.Error.Code != "not_signed_in" {
		t.Errorf("GET /api/me error body %s: want {error:{message,type,code:not_signed_in}}", p.Body)
	}
}

// TestHTTPSPublicURL checks what changes behind an https public URL: the
// __Host- cookie with Secure, and HSTS.
func TestHTTPSPublicURL(t *testing.T) {
	rs := redistest.Mini(t)
	pub, _ := url.Parse("https://llm.example.com")
	gw, err := New(Config{PublicURL: pub, Secret: []byte(strings.Repeat("s", 32))},
		Deps{Sessions: sessions.New(rs.Client, sessions.Config{Prefix: rs.Prefix}), RP: oidc.New(oidc.Config{}),
			Tokens: newTokens(t, rs, pub.String(), time.Now), Redis: rs.Client,
			Usage: usage.NewRecorder(rs.Client, usage.Config{Prefix: rs.Prefix}), Audit: audit.New(rs.Client, audit.Config{Prefix: rs.Prefix}),
			Users: newUsers(t, rs, 0, time.Now)})
	if err != nil {
		t.Fatal(err)
	}
	w := httptest.NewRecorder()
	gw.Handler().ServeHTTP(w, httptest.NewRequest(http.MethodGet, "https://llm.example.com/healthz", nil))
	if got := w.Header().Get("Strict-Transport-Security"); !strings.Contains(got, "max-age=") {
		t.Errorf("HSTS over https = %q, want max-age", got)
	}
	if gw.sessionCookieName() != "__Host-llmgate" {
		t.Errorf("cookie name on https = %q, want __Host-llmgate", gw.sessionCookieName())
	}
	w = httptest.NewRecorder()
	gw.Handler().ServeHTTP(w, httptest.NewRequest(http.MethodGet, "https://llm.example.com/oauth2/start?rd=/", nil))
	if w.Code != http.StatusServiceUnavailable {
		t.Errorf("/oauth2/start before discovery: %d, want 503", w.Code)
	}
}
