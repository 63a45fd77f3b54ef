package gateway

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/llmgate/llmgate/internal/redistest"
	"github.com/llmgate/llmgate/internal/usage"
	"github.com/llmgate/llmgate/tokens"
)

// mint issues an API token for alice, changed by req's non-zero fields.
func (h *harness) mint(tb testing.TB, req tokens.IssueRequest) string {
	tb.Helper()
	if req.Name == "" {
		req.Name = "test"
	}
	if req.Email == "" {
		req.Email, req.Subject, req.UserName = "alice@example.com", "alice-sub", "Alice"
	}
	raw, _, err := h.tokens.Issue(context.Background(), req)
	if err != nil {
		tb.Fatalf("issue token: %v", err)
	}
	return raw
}

// api sends one API call and returns the answer with its body read.
func (h *harness) api(tb testing.TB, method, path, body string, header http.Header) (*http.Response, string) {
	tb.Helper()
	req, err := http.NewRequest(method, h.url+path, strings.NewReader(body))
	if err != nil {
		tb.Fatal(err)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	for k, v := range header {
		req.Header[k] = v
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		tb.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, string(b)
}

func bearer(tok string) http.Header { return http.Header{"Authorization": {"Bearer " + tok}} }

const chatBody = `{"model":"gpt-4o-mini","messages":[{"role":"user","content":"hello there"}]}`
const messagesBody = `{"model":"claude-sonnet-4-6","max_tokens":64,"messages":[{"role":"user","content":"hello there"}]}`

// TestProxyHeaderHygiene checks what reaches the upstream: the person's
// identity set by the gateway, never the caller's token or its spoofed
// identity headers, and the upstream's own credential.
func TestProxyHeaderHygiene(t *testing.T) {
	h := newHarness(t, redistest.Mini(t), func(s *setup) {
		s.proxy.IdentityHeaders = []string{"X-LLMGate-User-Email", "x-litellm-end-user-id"}
		s.upstreamKey = "sk-upstream-key"
	})
	tok := h.mint(t, tokens.IssueRequest{})
	spoofed := http.Header{
		"X-Llmgate-User-Email":           {"mallory@evil.example"},
		"X-Llmgate-User-Sub":             {"mallory"},
		"X-Llmgate-Token-Id":             {"forged"},
		"X-Llmgate-Anything":             {"x"},
		"X-Forwarded-Email":              {"mallory@evil.example"},
		"X-Forwarded-User":               {"mallory"},
		"X-Forwarded-Preferred-Username": {"mallory"},
		"X-Forwarded-Groups":             {"admins"},
		"X-Auth-Request-Email":           {"mallory@evil.example"},
		"X-Auth-Request-User":            {"mallory"},
		"X-Litellm-End-User-Id":          {"mallory@evil.example"},
		"Remote-User":                    {"mallory"},
		"Cookie":                         {"llmgate=stolen-session"},
		"X-Forwarded-For":                {"203.0.113.66"},
		"X-Real-Ip":                      {"203.0.113.66"},
		"Anthropic-Beta":                 {"tools-2024-04-04"},
	}
	tests := []struct {
		name   string
		cred   http.Header
		path   string
		body   string
		keyHdr string // where the upstream key must arrive
	}{
		{"bearer, OpenAI", bearer(tok), "/v1/chat/completions", chatBody, "Authorization"},
		{"x-api-key, Anthropic", http.Header{"X-Api-Key": {tok}}, "/v1/messages?beta=true", messagesBody, "X-Api-Key"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h.upstream.Reset()
			hdr := spoofed.Clone()
			for k, v := range tt.cred {
				hdr[k] = v
			}
			resp, body := h.api(t, "POST", tt.path, tt.body, hdr)
			if resp.StatusCode != http.StatusOK {
				t.Fatalf("POST %s: %d %s", tt.path, resp.StatusCode, body)
			}
			reqs := h.upstream.Requests()
			if len(reqs) != 1 {
				t.Fatalf("upstream got %d requests, want 1", len(reqs))
			}
			got := reqs[0].Header
			want := map[string]string{
				"X-Llmgate-User-Email":  "alice@example.com",
				"X-Litellm-End-User-Id": "alice@example.com",
				"X-Llmgate-User-Sub":    "alice-sub",
				"X-Forwarded-For":       "127.0.0.1",
				"X-Forwarded-Proto":     "http",
				"X-Real-Ip":             "127.0.0.1",
				"Anthropic-Beta":        "tools-2024-04-04",
			}
			for k, v := range want {
				if got.Values(k) == nil || strings.Join(got.Values(k), ",") != v {
					t.Errorf("upstream header %s = %q, want %q", k, got.Values(k), v)
				}
			}
			cl, _ := h.tokens.Verify(t.Context(), tok, tokens.ScopeLLM)
			if got.Get("X-Llmgate-Token-Id") != cl.ID {
				t.Errorf("X-LLMGate-Token-Id = %q, want %q", got.Get("X-Llmgate-Token-Id"), cl.ID)
			}
			for _, k := range []string{"X-Forwarded-Email", "X-Forwarded-User", "X-Forwarded-Preferred-Username", "X-Forwarded-Groups",
				"X-Auth-Request-Email", "X-Auth-Request-User", "Remote-User", "Cookie", "X-Llmgate-Anything", "Idempotency-Key"} {
				if v := got.Values(k); v != nil {
					t.Errorf("upstream got spoofed header %s: %q", k, v)
				}
			}
			for k, vs := range got {
				for _, v := range vs {
					if strings.Contains(v, tok) {
						t.Errorf("upstream header %s carries the caller's token", k)
					}
					if strings.Contains(v, "mallory") {
						t.Errorf("upstream header %s carries a spoofed identity: %q", k, v)
					}
				}
			}
			if v := got.Get(tt.keyHdr); v != "sk-upstream-key" && v != "Bearer sk-upstream-key" {
				t.Errorf("upstream credential in %s = %q, want the upstream key", tt.keyHdr, v)
			}
			if strings.Contains(string(reqs[0].Body), tok) {
				t.Error("the request body reaching the upstream contains the token")
			}
		})
	}
}

// TestProxyRefusals: every refusal has the family's shape, the right
// status and headers, and never reaches the upstream.
func TestProxyRefusals(t *testing.T) {
	h := newHarness(t, redistest.Mini(t), func(s *setup) { s.proxy.MaxBody = 1 << 20 })
	good := h.mint(t, tokens.IssueRequest{})
	modelBound := h.mint(t, tokens.IssueRequest{Models: []string{"gpt-4o"}})
	cidrBound := h.mint(t, tokens.IssueRequest{CIDRs: []string{"10.0.0.0/8"}})
	cliOnly := h.mint(t, tokens.IssueRequest{Scopes: []string{tokens.ScopeTokens}})
	revoked := h.mint(t, tokens.IssueRequest{})
	cl, _ := h.tokens.Verify(t.Context(), revoked, tokens.ScopeLLM)
	h.tokens.Revoke(t.Context(), cl.ID, "test")
	expiring := h.mint(t, tokens.IssueRequest{TTL: time.Minute})

	tests := []struct {
		name        string
		path, body  string
		header      http.Header
		before      func()
		status      int
		errType     string
		noRetry     bool
		messagePart string
	}{
		{"no token", "/v1/chat/completions", chatBody, nil, nil, 401, "authentication_error", true, "no API token"},
		{"no token, Anthropic", "/v1/messages", messagesBody, nil, nil, 401, "authentication_error", true, "no API token"},
		{"garbage token", "/v1/chat/completions", chatBody, bearer("abc.def.ghi"), nil, 401, "authentication_error", true, "invalid API token"},
		{"revoked", "/v1/messages", messagesBody, http.Header{"X-Api-Key": {revoked}}, nil, 401, "authentication_error", true, "revoked"},
		{"scope without llm", "/v1/chat/completions", chatBody, bearer(cliOnly), nil, 403, "permission_error", true, "LLM API"},
		{"model not allowed", "/v1/chat/completions", chatBody, bearer(modelBound), nil, 403, "permission_error", true, `"gpt-4o-mini"`},
		{"model not allowed, Anthropic", "/v1/messages", messagesBody, bearer(modelBound), nil, 400, "invalid_request_error", true, "allowed: gpt-4o"},
		{"address not allowed", "/v1/chat/completions", chatBody, bearer(cidrBound), nil, 403, "permission_error", true, "10.0.0.0/8"},
		{"body too large", "/v1/chat/completions", `{"model":"gpt-4o","x":"` + strings.Repeat("a", 1<<20) + `"}`, bearer(good), nil, 413, "request_too_large", false, "LLMGATE_MAX_BODY"},
		{"expired", "/v1/chat/completions", chatBody, bearer(expiring), func() { h.clock.Add(2 * time.Minute) }, 401, "authentication_error", true, "expired"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.before != nil {
				tt.before()
			}
			h.upstream.Reset()
			resp, body := h.api(t, "POST", tt.path, tt.body, tt.header)
			if resp.StatusCode != tt.status {
				t.Errorf("status %d, want %d: %s", resp.StatusCode, tt.status, body)
			}
			var e struct {
				Type  string `json:"type"`
				Error struct {
					Type, Message, Code string
				} `json:"error"`
			}
			if err := json.Unmarshal([]byte(body), &e); err != nil {
				t.Fatalf("body is not JSON: %s", body)
			}
			if anthropicPath(tt.path) && e.Type != "error" {
				t.Errorf("Anthropic refusal without type:error: %s", body)
			}
			if !anthropicPath(tt.path) && e.Error.Code == "" {
				t.Errorf("OpenAI refusal without error.code: %s", body)
			}
			if e.Error.Type != tt.errType || !strings.Contains(e.Error.Message, tt.messagePart) {
				t.Errorf("error %+v, want type %s and a message containing %q", e.Error, tt.errType, tt.messagePart)
			}
			if got := resp.Header.Get("X-Should-Retry") == "false"; got != tt.noRetry {
				t.Errorf("x-should-retry: false present = %v, want %v", got, tt.noRetry)
			}
			if n := len(h.upstream.Requests()); n != 0 {
				t.Errorf("a refused call reached the upstream (%d requests)", n)
			}
		})
	}
}

func TestProxyModelsFiltered(t *testing.T) {
	h := newHarness(t, redistest.Mini(t))
	tok := h.mint(t, tokens.IssueRequest{Models: []string{"gpt-4o", "claude-sonnet-4-6"}})
	resp, body := h.api(t, "GET", "/v1/models", "", bearer(tok))
	var list struct {
		Data []struct{ ID string } `json:"data"`
	}
	if err := json.Unmarshal([]byte(body), &list); err != nil || resp.StatusCode != 200 {
		t.Fatalf("GET /v1/models: %d %s", resp.StatusCode, body)
	}
	var ids []string
	for _, m := range list.Data {
		ids = append(ids, m.ID)
	}
	if strings.Join(ids, ",") != "gpt-4o,claude-sonnet-4-6" {
		t.Errorf("models listed to a restricted token: %v, want gpt-4o and claude-sonnet-4-6", ids)
	}
	// An unrestricted token sees them all.
	_, body = h.api(t, "GET", "/v1/models", "", bearer(h.mint(t, tokens.IssueRequest{})))
	if !strings.Contains(body, "claude-haiku-4-5") {
		t.Errorf("unrestricted GET /v1/models lacks models: %s", body)
	}
}

// TestProxyRateLimit: a token with rpm 2 gets its third call refused with
// Retry-After and the x-ratelimit headers.
func TestProxyRateLimit(t *testing.T) {
	redistest.Each(t, func(t *testing.T, rs *redistest.Server) {
		h := newHarness(t, rs)
		tok := h.mint(t, tokens.IssueRequest{RPM: 2})
		for i := range 2 {
			if resp, body := h.api(t, "POST", "/v1/chat/completions", chatBody, bearer(tok)); resp.StatusCode != 200 {
				t.Fatalf("call %d within the limit: %d %s", i+1, resp.StatusCode, body)
			}
		}
		resp, body := h.api(t, "POST", "/v1/chat/completions", chatBody, bearer(tok))
		if resp.StatusCode != http.StatusTooManyRequests || resp.Header.Get("Retry-After") == "" ||
			resp.Header.Get("X-Ratelimit-Limit-Requests") != "2" || resp.Header.Get("X-Ratelimit-Remaining-Requests") != "0" {
			t.Errorf("third call: %d %v %s, want 429 with Retry-After and x-ratelimit-*", resp.StatusCode, resp.Header, body)
		}
		// Another token of the same person is not limited by it.
		if resp, _ := h.api(t, "POST", "/v1/chat/completions", chatBody, bearer(h.mint(t, tokens.IssueRequest{}))); resp.StatusCode != 200 {
			t.Errorf("another token: %d, want 200", resp.StatusCode)
		}
	})
}

func TestProxyUserRateLimit(t *testing.T) {
	h := newHarness(t, redistest.Mini(t), func(s *setup) { s.proxy.UserRPM = 1 })
	a, b := h.mint(t, tokens.IssueRequest{}), h.mint(t, tokens.IssueRequest{})
	if resp, _ := h.api(t, "POST", "/v1/chat/completions", chatBody, bearer(a)); resp.StatusCode != 200 {
		t.Fatalf("first call: %d", resp.StatusCode)
	}
	if resp, body := h.api(t, "POST", "/v1/messages", messagesBody, bearer(b)); resp.StatusCode != 429 || !strings.Contains(body, "rate_limit_error") {
		t.Errorf("second call of the same person with another token: %d %s, want 429 rate_limit_error", resp.StatusCode, body)
	}
}

// TestProxyBudget: a token with max_cost_usd is refused once the upstream
// reported that much cost.
func TestProxyBudget(t *testing.T) {
	h := newHarness(t, redistest.Mini(t), func(s *setup) {
		s.upstream.CostUSD = 0.3
		s.proxy.CostHeader = "x-litellm-response-cost"
	})
	tok := h.mint(t, tokens.IssueRequest{MaxCostUSD: 1})
	cl, _ := h.tokens.Verify(t.Context(), tok, tokens.ScopeLLM)
	for i := range 4 {
		if resp, body := h.api(t, "POST", "/v1/chat/completions", chatBody, bearer(tok)); resp.StatusCode != 200 {
			t.Fatalf("call %d, under budget: %d %s", i+1, resp.StatusCode, body)
		}
		waitFor(t, "cost recorded", func() bool {
			spent, _ := h.usage.TokenSpend(t.Context(), cl.ID)
			return spent >= 0.3*float64(i+1)-1e-9
		})
	}
	for _, tc := range []struct{ path, body, typ string }{
		{"/v1/chat/completions", chatBody, "insufficient_quota"},
		{"/v1/messages", messagesBody, "billing_error"},
	} {
		resp, body := h.api(t, "POST", tc.path, tc.body, bearer(tok))
		if resp.StatusCode != 429 || resp.Header.Get("X-Should-Retry") != "false" || !strings.Contains(body, tc.typ) || !strings.Contains(body, "budget") {
			t.Errorf("POST %s over budget: %d %s, want 429 %s with x-should-retry false", tc.path, resp.StatusCode, body, tc.typ)
		}
	}
}

func waitFor(tb testing.TB, what string, cond func() bool) {
	tb.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			tb.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestProxyUsage: usage from JSON and SSE answers of both families is
// recorded per person, model and day, and per token.
func TestProxyUsage(t *testing.T) {
	redistest.Each(t, func(t *testing.T, rs *redistest.Server) {
		h := newHarness(t, rs)
		tok := h.mint(t, tokens.IssueRequest{})
		calls := []struct{ path, body string }{
			{"/v1/chat/completions", chatBody},
			{"/v1/chat/completions", `{"model":"gpt-4o-mini","stream":true,"stream_options":{"include_usage":true},"messages":[{"role":"user","content":"hello there"}]}`},
			{"/v1/messages", messagesBody},
			{"/v1/messages?beta=true", `{"model":"claude-sonnet-4-6","max_tokens":64,"stream":true,"messages":[{"role":"user","content":"hello there"}]}`},
		}
		for _, c := range calls {
			if resp, body := h.api(t, "POST", c.path, c.body, bearer(tok)); resp.StatusCode != 200 {
				t.Fatalf("POST %s: %d %s", c.path, resp.StatusCode, body)
			}
		}
		cl, _ := h.tokens.Verify(t.Context(), tok, tokens.ScopeLLM)
		var tot usage.Totals
		waitFor(t, "4 calls recorded", func() bool {
			tot, _ = h.usage.TokenUsage(t.Context(), cl.ID)
			return tot.Requests == 4
		})
		days, err := h.usage.UserUsage(t.Context(), "alice@example.com", 1)
		if err != nil {
			t.Fatal(err)
		}
		per := map[string]usage.DayModel{}
		for _, d := range days {
			per[d.Model] = d
		}
		for _, m := range []string{"gpt-4o-mini", "claude-sonnet-4-6"} {
			d := per[m]
			if d.Requests != 2 || d.InputTokens <= 0 || d.OutputTokens <= 0 {
				t.Errorf("usage of %s today = %+v, want 2 requests with input and output tokens", m, d)
			}
		}
		if tot.InputTokens != per["gpt-4o-mini"].InputTokens+per["claude-sonnet-4-6"].InputTokens {
			t.Errorf("token totals %+v do not add up to the per-model days %+v", tot, per)
		}

		// The same figures through the JSON API, with alice's CLI credential.
		cli := h.mint(t, tokens.IssueRequest{Scopes: []string{tokens.ScopeTokens}})
		b := newBrowser(t)
		status, out, _ := b.call("GET", h.url+"/api/usage?days=7", "", bearer(cli))
		rows, _ := out["usage"].([]any)
		if status != 200 || len(rows) != 2 || out["email"] != "alice@example.com" {
			t.Errorf("GET /api/usage: %d %v, want alice's two models", status, out)
		}
		status, out, _ = b.call("GET", h.url+"/api/requests?limit=3", "", bearer(cli))
		reqs, _ := out["requests"].([]any)
		if status != 200 || len(reqs) != 3 {
			t.Fatalf("GET /api/requests?limit=3: %d %v, want 3 requests", status, out)
		}
		newest := reqs[0].(map[string]any)
		if newest["model"] != "claude-sonnet-4-6" || newest["status"] != float64(200) || newest["token_id"] != cl.ID || newest["output_tokens"].(float64) <= 0 {
			t.Errorf("newest request %v, want the streamed claude-sonnet-4-6 call of token %s", newest, cl.ID)
		}
		status, out, _ = b.call("GET", h.url+"/api/tokens/"+cl.ID+"/usage", "", bearer(cli))
		if u, _ := out["usage"].(map[string]any); status != 200 || u["requests"] != float64(4) {
			t.Errorf("GET /api/tokens/{id}/usage: %d %v, want 4 requests", status, out)
		}
		if status, _, _ := b.call("GET", h.url+"/api/usage?days=0", "", bearer(cli)); status != 400 {
			t.Errorf("GET /api/usage?days=0: %d, want 400", status)
		}
	})
}

// TestProxySSEStreams: each event reaches the client before the upstream
// sends the next (ordering by channels, not sleeps), and a client that
// goes away stops the upstream request.
func TestProxySSEStreams(t *testing.T) {
	got1 := make(chan struct{})
	upstreamDone := make(chan error, 1)
	var calls atomic.Int32
	up := newRawUpstream(t, func(w http.ResponseWriter, r *http.Request) {
		calls.Add(1)
		w.Header().Set("Content-Type", "text/event-stream")
		fl := w.(http.Flusher)
		io.WriteString(w, "data: {\"n\":1}\n\n")
		fl.Flush()
		if r.URL.Query().Get("hang") != "" {
			<-r.Context().Done()
			upstreamDone <- r.Context().Err()
			return
		}
		<-got1
		io.WriteString(w, "data: {\"n\":2}\n\ndata: [DONE]\n\n")
	})
	h := newHarness(t, redistest.Mini(t), func(s *setup) {
		s.proxy.Upstreams = []Upstream{{Name: "raw", URL: up, Paths: []string{"/v1/"}}}
	})
	tok := h.mint(t, tokens.IssueRequest{})

	req, _ := http.NewRequest("POST", h.url+"/v1/chat/completions", strings.NewReader(`{"model":"m","stream":true}`))
	req.Header.Set("Authorization", "Bearer "+tok)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	rd := bufio.NewReader(resp.Body)
	line, _ := rd.ReadString('\n')
	if line != "data: {\"n\":1}\n" {
		t.Fatalf("first line %q", line)
	}
	close(got1) // only now may the upstream send event 2
	rest, _ := io.ReadAll(rd)
	resp.Body.Close()
	if !strings.Contains(string(rest), `{"n":2}`) || !strings.HasSuffix(string(rest), "data: [DONE]\n\n") {
		t.Errorf("rest of the stream %q", rest)
	}

	// Client disconnect cancels the upstream request.
	ctx, cancel := context.WithCancel(context.Background())
	req, _ = http.NewRequestWithContext(ctx, "POST", h.url+"/v1/chat/completions?hang=1", strings.NewReader(`{"model":"m","stream":true}`))
	req.Header.Set("Authorization", "Bearer "+tok)
	resp, err = http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	rd = bufio.NewReader(resp.Body)
	if line, _ := rd.ReadString('\n'); !strings.HasPrefix(line, "data:") {
		t.Fatalf("hanging stream's first line %q", line)
	}
	cancel()
	resp.Body.Close()
	select {
	case err := <-upstreamDone:
		if err == nil {
			t.Error("upstream request ended without its context being cancelled")
		}
	case <-time.After(5 * time.Second):
		t.Error("the upstream request was not cancelled within 5 s of the client leaving")
	}
}

// TestProxySSEHeadersFirst: a stream's status and headers reach the
// client as soon as the upstream sends them, before its first event (a
// model that thinks for a minute must not look like a hung gateway).
func TestProxySSEHeadersFirst(t *testing.T) {
	for _, keepalive := range []time.Duration{0, time.Minute} {
		t.Run(fmt.Sprintf("keepalive=%s", keepalive), func(t *testing.T) {
			release := make(chan struct{})
			up := newRawUpstream(t, func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Content-Type", "text/event-stream")
				w.WriteHeader(http.StatusOK)
				w.(http.Flusher).Flush()
				select {
				case <-release:
				case <-r.Context().Done():
					return
				}
				io.WriteString(w, "event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n")
			})
			h := newHarness(t, redistest.Mini(t), func(s *setup) {
				s.proxy.Upstreams = []Upstream{{Name: "raw", URL: up, Paths: []string{"/v1/"}}}
				s.proxy.SSEKeepalive = keepalive
			})
			tok := h.mint(t, tokens.IssueRequest{})
			req, _ := http.NewRequest("POST", h.url+"/v1/messages", strings.NewReader(`{"model":"m","stream":true}`))
			req.Header.Set("Authorization", "Bearer "+tok)
			type answer struct {
				resp *http.Response
				err  error
			}
			got := make(chan answer, 1)
			go func() {
				resp, err := http.DefaultClient.Do(req)
				got <- answer{resp, err}
			}()
			var a answer
			select {
			case a = <-got:
			case <-time.After(5 * time.Second):
				close(release)
				t.Fatal("no response headers while the upstream held its first event")
			}
			close(release)
			if a.err != nil {
				t.Fatal(a.err)
			}
			defer a.resp.Body.Close()
			if a.resp.StatusCode != http.StatusOK || a.resp.Header.Get("Content-Type") != "text/event-stream" {
				t.Fatalf("status %d, Content-Type %q", a.resp.StatusCode, a.resp.Header.Get("Content-Type"))
			}
			body, _ := io.ReadAll(a.resp.Body)
			if !strings.Contains(string(body), "message_stop") {
				t.Errorf("stream %q, want the event sent after the headers", body)
			}
		})
	}
}

// newConnUpstream serves each connection accepted on loopback with serve,
// for upstreams that misbehave below HTTP (dropping a kept-alive
// connection), and returns its URL.
func newConnUpstream(tb testing.TB, serve func(conn net.Conn, rd *bufio.Reader)) *url.URL {
	tb.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { ln.Close() })
	go func() {
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer conn.Close()
				serve(conn, bufio.NewReader(conn))
			}()
		}
	}()
	u, _ := url.Parse("http://" + ln.Addr().String())
	return u
}

// newRawUpstream serves handler on loopback and returns its URL.
func newRawUpstream(tb testing.TB, handler http.HandlerFunc) *url.URL {
	tb.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	srv := &http.Server{Handler: handler}
	go srv.Serve(ln)
	tb.Cleanup(func() { srv.Close() })
	u, _ := url.Parse("http://" + ln.Addr().String())
	return u
}

// TestProxyUpstreamFailures: unreachable → 502, no headers in time → 504,
// failure mid-stream → a terminating error event in the family's shape,
// upstream errors passed through unchanged.
func TestProxyUpstreamFailures(t *testing.T) {
	dead := &url.URL{Scheme: "http", Host: "127.0.0.1:1"}
	slow := newRawUpstream(t, func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-r.Context().Done():
		case <-time.After(5 * time.Second):
		}
	})
	cut := newRawUpstream(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		io.WriteString(w, "event: message_start\ndata: {\"type\":\"message_start\"}\n\n")
		w.(http.Flusher).Flush()
		conn, buf, _ := w.(http.Hijacker).Hijack()
		buf.Flush()
		conn.(*net.TCPConn).SetLinger(0)
		conn.Close() // reset mid-stream
	})
	tooLong := newRawUpstream(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(400)
		io.WriteString(w, `{"type":"error","error":{"type":"invalid_request_error","message":"prompt is too long: 250000 tokens > 200000 maximum"}}`)
	})
	silent := newRawUpstream(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		io.WriteString(w, "data: {\"id\":\"1\",\"choices\":[]}\n\n")
		w.(http.Flusher).Flush()
		<-r.Context().Done() // then nothing, until the gateway gives up
	})
	h := newHarness(t, redistest.Mini(t), func(s *setup) {
		s.proxy.HeaderTimeout = 300 * time.Millisecond
		s.proxy.ReadIdleTimeout = 300 * time.Millisecond
		s.proxy.Upstreams = []Upstream{
			{Name: "silent", URL: silent, Paths: []string{"/silent/"}, StripPrefix: "/silent"},
			{Name: "dead", URL: dead, Paths: []string{"/dead/"}, StripPrefix: "/dead"},
			{Name: "slow", URL: slow, Paths: []string{"/slow/"}, StripPrefix: "/slow"},
			{Name: "cut", URL: cut, Paths: []string{"/cut/"}, StripPrefix: "/cut"},
			{Name: "long", URL: tooLong, Paths: []string{"/long/"}, StripPrefix: "/long"},
		}
	})
	tok := h.mint(t, tokens.IssueRequest{})
	resp, body := h.api(t, "POST", "/dead/v1/chat/completions", chatBody, bearer(tok))
	if resp.StatusCode != 502 || !strings.Contains(body, `"code":"upstream_error"`) {
		t.Errorf("unreachable upstream: %d %s, want 502 upstream_error", resp.StatusCode, body)
	}
	resp, body = h.api(t, "POST", "/slow/v1/messages", messagesBody, bearer(tok))
	if resp.StatusCode != 504 || !strings.Contains(body, `"type":"error"`) {
		t.Errorf("slow upstream: %d %s, want 504 in Anthropic shape", resp.StatusCode, body)
	}
	resp, body = h.api(t, "POST", "/cut/v1/messages", messagesBody, bearer(tok))
	if resp.StatusCode != 200 || !strings.Contains(body, "message_start") || !strings.Contains(body, "event: error") || !strings.Contains(body, `"type":"api_error"`) {
		t.Errorf("stream cut mid-way: %d %q, want the first event then an error event", resp.StatusCode, body)
	}
	resp, body = h.api(t, "POST", "/silent/v1/chat/completions", chatBody, bearer(tok))
	if resp.StatusCode != 200 || !strings.Contains(body, `"code":"upstream_stream_error"`) || !strings.HasSuffix(body, "data: [DONE]\n\n") {
		t.Errorf("stream gone silent: %d %q, want an OpenAI error event and [DONE]", resp.StatusCode, body)
	}
	resp, body = h.api(t, "POST", "/long/v1/messages", messagesBody, bearer(tok))
	if resp.StatusCode != 400 || !strings.Contains(body, "prompt is too long") {
		t.Errorf("upstream 400: %d %s, want it passed through unchanged", resp.StatusCode, body)
	}
}

// TestProxyFailsafe stops Redis under a gateway: closed refuses with 503
// and Retry-After; open keeps serving tokens whose signature verifies and
// still refuses those revoked before the outage.
func TestProxyFailsafe(t *testing.T) {
	for _, open := range []bool{false, true} {
		name := map[bool]string{false: "closed", true: "open"}[open]
		t.Run(name, func(t *testing.T) {
			p := redistest.Process(t)
			h := newHarness(t, p.Server, func(s *setup) { s.proxy.FailOpen = open })
			seen := h.mint(t, tokens.IssueRequest{})
			revoked := h.mint(t, tokens.IssueRequest{})
			for _, tok := range []string{seen, revoked} {
				if resp, body := h.api(t, "POST", "/v1/chat/completions", chatBody, bearer(tok)); resp.StatusCode != 200 {
					t.Fatalf("before the outage: %d %s", resp.StatusCode, body)
				}
			}
			cl, _ := h.tokens.Verify(t.Context(), revoked, tokens.ScopeLLM)
			if _, err := h.tokens.Revoke(t.Context(), cl.ID, "test"); err != nil {
				t.Fatal(err)
			}
			waitFor(t, "revocation applied", func() bool {
				_, err := h.tokens.Verify(t.Context(), revoked, tokens.ScopeLLM)
				return err != nil
			})
			p.Stop()
			waitFor(t, "the token service to notice the outage", func() bool { return !h.tokens.Healthy() })

			resp, body := h.api(t, "POST", "/v1/chat/completions", chatBody, bearer(seen))
			if !open && (resp.StatusCode != 503 || resp.Header.Get("Retry-After") == "") {
				t.Errorf("failsafe closed, Redis down: %d %s, want 503 with Retry-After", resp.StatusCode, body)
			}
			if open && resp.StatusCode != 200 {
				t.Errorf("failsafe open, Redis down, seen token: %d %s, want 200", resp.StatusCode, body)
			}
			if resp, body := h.api(t, "POST", "/v1/chat/completions", chatBody, bearer(revoked)); open && resp.StatusCode != 401 {
				t.Errorf("failsafe open, token revoked before the outage: %d %s, want 401", resp.StatusCode, body)
			}

			p.Start()
			waitFor(t, "recovery", func() bool {
				resp, _ := h.api(t, "POST", "/v1/chat/completions", chatBody, bearer(seen))
				return resp.StatusCode == 200
			})
		})
	}
}

// TestProxyInjectUser: with LLMGATE_INJECT_USER the email is written where
// each API family reads the end user, and OpenAI streams ask for usage.
func TestProxyInjectUser(t *testing.T) {
	h := newHarness(t, redistest.Mini(t), func(s *setup) { s.proxy.InjectUser = true })
	tok := h.mint(t, tokens.IssueRequest{})
	tests := []struct {
		path, body string
		check      func(t *testing.T, got map[string]any)
	}{
		{"/v1/chat/completions", `{"model":"gpt-4o-mini","user":"mallory","stream":true,"messages":[{"role":"user","content":"hi"}]}`,
			func(t *testing.T, got map[string]any) {
				opts, _ := got["stream_options"].(map[string]any)
				if got["user"] != "alice@example.com" || opts["include_usage"] != true {
					t.Errorf("upstream body user=%v stream_options=%v, want alice and include_usage true", got["user"], got["stream_options"])
				}
			}},
		{"/v1/messages", `{"model":"claude-sonnet-4-6","max_tokens":8,"metadata":{"user_id":"mallory","x":1},"messages":[{"role":"user","content":"hi"}],"safeguards":{"mode":"auto"}}`,
			func(t *testing.T, got map[string]any) {
				meta, _ := got["metadata"].(map[string]any)
				if meta["user_id"] != "alice@example.com" || meta["x"] != float64(1) || got["safeguards"] == nil {
					t.Errorf("upstream body metadata=%v safeguards=%v, want user_id alice, x kept, unknown fields kept", meta, got["safeguards"])
				}
			}},
	}
	for _, tt := range tests {
		h.upstream.Reset()
		if resp, body := h.api(t, "POST", tt.path, tt.body, bearer(tok)); resp.StatusCode != 200 {
			t.Fatalf("POST %s: %d %s", tt.path, resp.StatusCode, body)
		}
		var got map[string]any
		if err := json.Unmarshal(h.upstream.Requests()[0].Body, &got); err != nil {
			t.Fatal(err)
		}
		tt.check(t, got)
	}
}

// TestProxyPassThrough: without INJECT_USER the body reaches the upstream
// byte for byte, query string and unknown fields included.
func TestProxyPassThrough(t *testing.T) {
	h := newHarness(t, redistest.Mini(t))
	tok := h.mint(t, tokens.IssueRequest{})
	body := `{"model": "claude-sonnet-4-6",  "max_tokens":8, "system":[{"type":"text","text":"x-anthropic-billing-header: cc"}],"messages":[{"role":"user","content":"hi"}],"safeguards":{}}`
	if resp, out := h.api(t, "POST", "/v1/messages?beta=true", body, http.Header{"X-Api-Key": {tok}, "Anthropic-Version": {"2023-06-01"}}); resp.StatusCode != 200 {
		t.Fatalf("POST /v1/messages?beta=true: %d %s", resp.StatusCode, out)
	}
	r := h.upstream.Requests()[0]
	if string(r.Body) != body || r.RawQuery != "beta=true" || r.Header.Get("Anthropic-Version") != "2023-06-01" {
		t.Errorf("upstream got body %q query %q anthropic-version %q; want them unchanged", r.Body, r.RawQuery, r.Header.Get("Anthropic-Version"))
	}
}

// TestProxyStaleKeepAlive: an upstream that drops a kept-alive connection
// just as a request arrives on it (the stale keep-alive race) must not lose
// the request: the body was read before dialling, so the gateway sends it
// again on a fresh connection.
func TestProxyStaleKeepAlive(t *testing.T) {
	var served atomic.Int32
	up := newConnUpstream(t, func(conn net.Conn, rd *bufio.Reader) {
		// Answer the first request and keep the connection alive...
		req, err := http.ReadRequest(rd)
		if err != nil {
			return
		}
		b, _ := io.ReadAll(req.Body)
		served.Add(1)
		resp := &http.Response{StatusCode: 200, ProtoMajor: 1, ProtoMinor: 1, Header: http.Header{"Content-Type": {"application/json"}},
			ContentLength: int64(len(b)), Body: io.NopCloser(strings.NewReader(string(b)))}
		resp.Write(conn)
		// ...then drop it when the next request comes, unanswered.
		if req, err := http.ReadRequest(rd); err == nil {
			io.ReadAll(req.Body)
		}
	})
	h := newHarness(t, redistest.Mini(t), func(s *setup) {
		s.proxy.Upstreams = []Upstream{{Name: "flaky-keepalive", URL: up, Paths: []string{"/v1/"}}}
	})
	tok := h.mint(t, tokens.IssueRequest{})
	for i := range 4 {
		resp, body := h.api(t, "POST", "/v1/chat/completions", chatBody, bearer(tok))
		if resp.StatusCode != 200 || body != chatBody {
			t.Fatalf("call %d on a connection the upstream drops: %d %q", i+1, resp.StatusCode, body)
		}
	}
	if served.Load() != 4 {
		t.Errorf("upstream answered %d calls, want 4 (each exactly once)", served.Load())
	}
}

func TestClientIP(t *testing.T) {
	trusted := []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8"), netip.MustParsePrefix("fd00::/8")}
	tests := []struct {
		name, peer string
		header     http.Header
		trusted    []netip.Prefix
		want       string
	}{
		{"no proxies trusted: the peer, whatever the headers", "203.0.113.5:1234", http.Header{"X-Forwarded-For": {"1.2.3.4"}, "X-Real-Ip": {"1.2.3.4"}}, nil, "203.0.113.5"},
		{"untrusted peer's XFF ignored", "203.0.113.5:1234", http.Header{"X-Forwarded-For": {"1.2.3.4"}}, trusted, "203.0.113.5"},
		{"trusted peer: last untrusted hop", "10.0.0.2:80", http.Header{"X-Forwarded-For": {"1.2.3.4, 198.51.100.7, 10.0.0.9"}}, trusted, "198.51.100.7"},
		{"trusted peer, spoofed first hop ignored", "10.0.0.2:80", http.Header{"X-Forwarded-For": {"6.6.6.6", "198.51.100.7"}}, trusted, "198.51.100.7"},
		{"trusted peer, X-Real-IP", "10.0.0.2:80", http.Header{"X-Real-Ip": {"198.51.100.8"}}, trusted, "198.51.100.8"},
		{"trusted peer, garbage XFF", "10.0.0.2:80", http.Header{"X-Forwarded-For": {"not-an-ip"}}, trusted, "10.0.0.2"},
		{"IPv6 trusted peer", "[fd00::1]:80", http.Header{"X-Forwarded-For": {"2001:db8::5"}}, trusted, "2001:db8::5"},
		{"all hops trusted: the first", "10.0.0.2:80", http.Header{"X-Forwarded-For": {"10.1.1.1, 10.2.2.2"}}, trusted, "10.1.1.1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := &Server{cfg: Config{TrustedProxies: tt.trusted}}
			r := &http.Request{RemoteAddr: tt.peer, Header: tt.header}
			if got := s.clientIP(r); got != tt.want {
				t.Errorf("clientIP(peer %s, %v) = %s, want %s", tt.peer, tt.header, got, tt.want)
			}
		})
	}
}
