package gateway

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/llmgate/llmgate/internal/redistest"
	"github.com/llmgate/llmgate/internal/users"
	"github.com/llmgate/llmgate/tokens"
)

// adminsPolicy and corpPolicy are the policies of the Claude Code tests:
// the first matches the group admins (alice), the second the email domain
// corp.example. bob@example.com matches neither.
func claudePolicies(s *setup) {
	s.claudeCode = ClaudeCodeConfig{Policies: []Policy{
		{
			Groups: []string{"ml-research", "admins"},
			Models: []string{"claude-sonnet-4-6", "claude-haiku-4-5"},
			Settings: map[string]any{
				"permissions":       map[string]any{"defaultMode": "acceptEdits", "deny": []any{"Bash(curl:*)"}},
				"env":               map[string]any{"B_VAR": "<&>", "A_VAR": "x"},
				"cleanupPeriodDays": 30,
				"ratio":             0.1,
			},
		},
		{EmailDomains: []string{"Corp.Example"}, Settings: map[string]any{"model": "claude-sonnet-4-6"}},
	}}
}

// signedInAs records a sign-in of email with groups, as the callback does,
// so the gateway knows the groups of the person's API tokens.
func (h *harness) signedInAs(tb testing.TB, email string, groups ...string) {
	tb.Helper()
	if err := h.gw.users.Login(tb.Context(), users.Person{Email: email, Name: email, Subject: email + "-sub", Groups: groups}, ""); err != nil {
		tb.Fatalf("record sign-in of %s: %v", email, err)
	}
}

// mintFor issues an API token for email.
func (h *harness) mintFor(tb testing.TB, email string) string {
	tb.Helper()
	return h.mint(tb, tokens.IssueRequest{Email: email, Subject: email + "-sub", UserName: email})
}

type managedSettings struct {
	UUID     string         `json:"uuid"`
	Checksum string         `json:"checksum"`
	Settings map[string]any `json:"settings"`
}

// TestManagedSettings checks GET /managed/settings as Claude Code reads
// it: the first matching policy's settings with a checksum Claude Code can
// recompute (sorted keys, no whitespace, no HTML escaping), the ETag and
// If-None-Match revalidation, 404 without a policy and 401 without a good
// token.
func TestManagedSettings(t *testing.T) {
	h := newHarness(t, redistest.Mini(t), claudePolicies)
	h.signedInAs(t, "alice@example.com", "admins", "engineering")
	h.signedInAs(t, "bob@example.com", "engineering")
	alice := h.mintFor(t, "alice@example.com")

	// What JSON.stringify gives for the settings with keys sorted.
	const canonical = `{"cleanupPeriodDays":30,"env":{"A_VAR":"x","B_VAR":"<&>"},"permissions":{"defaultMode":"acceptEdits","deny":["Bash(curl:*)"]},"ratio":0.1}`
	sum := sha256.Sum256([]byte(canonical))
	wantChecksum := "sha256:" + hex.EncodeToString(sum[:])

	resp, body := h.api(t, "GET", "/managed/settings", "", bearer(alice))
	if resp.StatusCode != 200 {
		t.Fatalf("GET /managed/settings as alice: %d %s, want 200", resp.StatusCode, body)
	}
	var got managedSettings
	if err := json.Unmarshal([]byte(body), &got); err != nil {
		t.Fatalf("decode %s: %v", body, err)
	}
	if got.Checksum != wantChecksum {
		t.Errorf("checksum = %s, want %s (sha256 of %s)", got.Checksum, wantChecksum, canonical)
	}
	if !strings.Contains(body, canonical) {
		t.Errorf("body %s does not carry the settings in canonical form %s", body, canonical)
	}
	wantSettings := map[string]any{
		"permissions":       map[string]any{"defaultMode": "acceptEdits", "deny": []any{"Bash(curl:*)"}},
		"env":               map[string]any{"B_VAR": "<&>", "A_VAR": "x"},
		"cleanupPeriodDays": float64(30), "ratio": 0.1,
	}
	if diff := cmp.Diff(wantSettings, got.Settings); diff != "" {
		t.Errorf("settings (-want +got):\n%s", diff)
	}
	if len(got.UUID) != 36 || got.UUID[14] != '5' {
		t.Errorf("uuid = %q, want a version-5 layout UUID", got.UUID)
	}
	if etag := resp.Header.Get("ETag"); etag != `"`+wantChecksum+`"` {
		t.Errorf("ETag = %s, want the checksum quoted", etag)
	}

	tests := []struct {
		name, ifNoneMatch string
		want              int
	}{
		{"same etag", `"` + wantChecksum + `"`, 304},
		{"in a list", `"sha256:00", "` + wantChecksum + `"`, 304},
		{"weak", `W/"` + wantChecksum + `"`, 304},
		{"star is treated as absent", "*", 200},
		{"another etag", `"sha256:0000"`, 200},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			hdr := bearer(alice)
			hdr.Set("If-None-Match", tt.ifNoneMatch)
			resp, body := h.api(t, "GET", "/managed/settings", "", hdr)
			if resp.StatusCode != tt.want {
				t.Errorf("If-None-Match %s: %d %s, want %d", tt.ifNoneMatch, resp.StatusCode, body, tt.want)
			}
			if tt.want == 304 && (body != "" || resp.Header.Get("ETag") == "") {
				t.Errorf("304 answer: body %q ETag %q, want no body and the ETag", body, resp.Header.Get("ETag"))
			}
		})
	}

	// Second policy, by email domain (case-insensitive); its own checksum and uuid.
	resp, body = h.api(t, "GET", "/managed/settings", "", bearer(h.mintFor(t, "carol@corp.example")))
	var carol managedSettings
	json.Unmarshal([]byte(body), &carol)
	if resp.StatusCode != 200 || carol.Settings["model"] != "claude-sonnet-4-6" || carol.UUID == got.UUID {
		t.Errorf("carol@corp.example: %d %s, want the corp.example policy with its own uuid", resp.StatusCode, body)
	}

	// No policy: 404, not 200 with {}.
	if resp, body := h.api(t, "GET", "/managed/settings", "", bearer(h.mintFor(t, "bob@example.com"))); resp.StatusCode != 404 {
		t.Errorf("bob (no policy): %d %s, want 404", resp.StatusCode, body)
	}
	// Not signed in: 401 (Claude Code then starts as "Not logged in").
	for name, hdr := range map[string]http.Header{"no token": nil, "bad token": bearer("not-a-token"), "garbage jwt": bearer("eyJhbGciOiJub25lIn0.e30.")} {
		if resp, body := h.api(t, "GET", "/managed/settings", "", hdr); resp.StatusCode != 401 {
			t.Errorf("%s: %d %s, want 401", name, resp.StatusCode, body)
		}
	}
	// A blocked person gets no settings.
	if err := h.tokens.Block(t.Context(), "alice@example.com", "test"); err != nil {
		t.Fatal(err)
	}
	if resp, body := h.api(t, "GET", "/managed/settings", "", bearer(alice)); resp.StatusCode != 403 {
		t.Errorf("blocked alice: %d %s, want 403", resp.StatusCode, body)
	}
}

// TestPolicyUUIDStable: the same configuration gives the same uuid and
// checksum on every replica and restart; a changed one a new uuid.
func TestPolicyUUIDStable(t *testing.T) {
	var a, b setup
	claudePolicies(&a)
	claudePolicies(&b)
	pa, err := newPolicies(a.claudeCode)
	if err != nil {
		t.Fatal(err)
	}
	pb, _ := newPolicies(b.claudeCode)
	if !bytes.Equal(pa[0].body, pb[0].body) {
		t.Errorf("two builds of one configuration differ:\n%s\n%s", pa[0].body, pb[0].body)
	}
	b.claudeCode.Policies[0].Settings["ratio"] = 0.2
	pb, _ = newPolicies(b.claudeCode)
	if pa[0].checksum == pb[0].checksum || string(pa[0].body[:45]) == string(pb[0].body[:45]) {
		t.Errorf("changed settings kept checksum/uuid: %s vs %s", pa[0].body, pb[0].body)
	}
}

// TestCanonicalJSON pins the encoding to JSON.stringify's.
func TestCanonicalJSON(t *testing.T) {
	tests := []struct {
		in   any
		want string
	}{
		{map[string]any{"b": 1, "a": []any{true, nil, "x"}}, `{"a":[true,null,"x"],"b":1}`},
		{"<a href='x'>&</a>", `"<a href='x'>&</a>"`},
		{"line\nsep\u2028tab\t\x01\"\\", `"line\nsep` + "\u2028" + `tab\t\u0001\"\\"`},
		{1e21, `1e+21`},
		{1.5, `1.5`},
		{float64(100), `100`},
		{map[string]any{"\uff01": 1, "\U0001F600": 2}, `{"` + "\U0001F600" + `":2,"` + "\uff01" + `":1}`},
	}
	for _, tt := range tests {
		got, err := canonicalJSON(tt.in)
		if err != nil || string(got) != tt.want {
			t.Errorf("canonicalJSON(%#v) = %s, %v; want %s", tt.in, got, err, tt.want)
		}
	}
}

// TestManagedSettingsRedisDown: Claude Code refuses to start when
// /managed/settings fails, so it is answered while Redis is down — also
// for a token this replica has not seen before.
func TestManagedSettingsRedisDown(t *testing.T) {
	p := redistest.Process(t)
	h := newHarness(t, p.Server, claudePolicies)
	h.signedInAs(t, "alice@example.com", "admins")
	seen := h.mintFor(t, "alice@example.com")
	unseen := h.mintFor(t, "alice@example.com")
	carol := h.mintFor(t, "carol@corp.example")
	if resp, body := h.api(t, "GET", "/managed/settings", "", bearer(seen)); resp.StatusCode != 200 {
		t.Fatalf("before the outage: %d %s", resp.StatusCode, body)
	}
	p.Stop()
	waitFor(t, "the token service to notice the outage", func() bool { return !h.tokens.Healthy() })
	for name, tok := range map[string]string{"seen token": seen, "unseen token": unseen, "domain policy, unseen token": carol} {
		if resp, body := h.api(t, "GET", "/managed/settings", "", bearer(tok)); resp.StatusCode != 200 {
			t.Errorf("Redis down, %s: %d %s, want 200", name, resp.StatusCode, body)
		}
	}
	if resp, body := h.api(t, "GET", "/managed/settings", "", bearer("x.y.z")); resp.StatusCode != 401 {
		t.Errorf("Redis down, bad token: %d %s, want 401", resp.StatusCode, body)
	}
	p.Start()
}

// TestPolicyModels: a policy's models hold on every proxied call of its
// people, before the upstream: 400 invalid_request_error on /v1/messages
// (what Claude Code expects), 403 elsewhere; model lists are filtered.
func TestPolicyModels(t *testing.T) {
	h := newHarness(t, redistest.Mini(t), claudePolicies)
	h.signedInAs(t, "alice@example.com", "admins")
	h.signedInAs(t, "bob@example.com", "engineering")
	alice, bob := h.mintFor(t, "alice@example.com"), h.mintFor(t, "bob@example.com")
	opus := strings.Replace(messagesBody, "claude-sonnet-4-6", "claude-opus-4-7", 1)

	h.upstream.Reset()
	for _, path := range []string{"/v1/messages", "/v1/messages?beta=true", "/v1/messages/count_tokens"} {
		resp, body := h.api(t, "POST", path, opus, bearer(alice))
		var e struct {
			Type  string `json:"type"`
			Error struct{ Type, Message string }
		}
		json.Unmarshal([]byte(body), &e)
		if resp.StatusCode != 400 || e.Type != "error" || e.Error.Type != "invalid_request_error" || !strings.Contains(e.Error.Message, "claude-sonnet-4-6") {
			t.Errorf("POST %s opus as alice: %d %s, want 400 invalid_request_error naming the allowed models", path, resp.StatusCode, body)
		}
	}
	resp, body := h.api(t, "POST", "/v1/chat/completions", chatBody, bearer(alice))
	if resp.StatusCode != 403 || !strings.Contains(body, `"code":"model_not_allowed"`) {
		t.Errorf("chat completions gpt-4o-mini as alice: %d %s, want 403 model_not_allowed", resp.StatusCode, body)
	}
	if n := len(h.upstream.Requests()); n != 0 {
		t.Errorf("refused calls reached the upstream %d times", n)
	}
	if resp, body := h.api(t, "POST", "/v1/messages?beta=true", messagesBody, bearer(alice)); resp.StatusCode != 200 {
		t.Errorf("allowed model as alice: %d %s", resp.StatusCode, body)
	}
	if resp, body := h.api(t, "POST", "/v1/messages", opus, bearer(bob)); resp.StatusCode != 200 {
		t.Errorf("opus as bob (no policy): %d %s, want 200", resp.StatusCode, body)
	}

	for name, tc := range map[string]struct {
		tok  string
		want []string
	}{
		"alice": {alice, []string{"claude-sonnet-4-6", "claude-haiku-4-5"}},
		"bob":   {bob, nil},
	} {
		hdr := bearer(tc.tok)
		hdr.Set("Anthropic-Version", "2023-06-01")
		resp, body := h.api(t, "GET", "/v1/models", "", hdr)
		var list struct{ Data []struct{ ID string } }
		json.Unmarshal([]byte(body), &list)
		var ids []string
		for _, m := range list.Data {
			ids = append(ids, m.ID)
		}
		if resp.StatusCode != 200 || tc.want != nil && !cmp.Equal(ids, tc.want) || tc.want == nil && len(ids) < 5 {
			t.Errorf("GET /v1/models as %s: %d %v, want %v (nil: everything)", name, resp.StatusCode, ids, tc.want)
		}
	}
}

// TestHello: Claude Code probes the gateway with HEAD /api/hello.
func TestHello(t *testing.T) {
	h := newHarness(t, redistest.Mini(t))
	resp, _ := h.api(t, "HEAD", "/api/hello", "", nil)
	if resp.StatusCode != 200 {
		t.Errorf("HEAD /api/hello: %d, want 200", resp.StatusCode)
	}
}

// TestClaudeCodePassThrough: what Claude Code sends reaches the upstream
// unchanged: the query, anthropic-* and Claude Code headers, and body
// fields the gateway does not know; the call is metered as /v1/messages.
func TestClaudeCodePassThrough(t *testing.T) {
	h := newHarness(t, redistest.Mini(t))
	tok := h.mint(t, tokens.IssueRequest{})
	body := `{"model":"claude-sonnet-4-6","max_tokens":64,"safeguards":{"mode":"auto","x":[1,2]},"future_field":true,` +
		`"system":[{"type":"text","text":"x-anthropic-billing-header: cc_version=2.1.328"}],"messages":[{"role":"user","content":"hi"}]}`
	hdr := bearer(tok)
	hdr.Set("Anthropic-Version", "2023-06-01")
	hdr.Set("Anthropic-Beta", "claude-code-20250219,oauth-2025-04-20,interleaved-thinking-2025-05-14")
	hdr.Set("X-Claude-Code-Session-Id", "0b5f0d3e-session")
	hdr.Set("X-App", "cli")
	hdr.Set("X-Stainless-Lang", "js")
	h.upstream.Reset()
	resp, got := h.api(t, "POST", "/v1/messages?beta=true", body, hdr)
	if resp.StatusCode != 200 {
		t.Fatalf("POST /v1/messages?beta=true: %d %s", resp.StatusCode, got)
	}
	reqs := h.upstream.Requests()
	if len(reqs) != 1 {
		t.Fatalf("upstream got %d requests, want 1", len(reqs))
	}
	r := reqs[0]
	if r.Path != "/v1/messages" || r.RawQuery != "beta=true" {
		t.Errorf("upstream path %s?%s, want /v1/messages?beta=true", r.Path, r.RawQuery)
	}
	if string(r.Body) != body {
		t.Errorf("upstream body changed:\n got %s\nwant %s", r.Body, body)
	}
	for _, name := range []string{"Anthropic-Version", "Anthropic-Beta", "X-Claude-Code-Session-Id", "X-App", "X-Stainless-Lang"} {
		if g := r.Header.Get(name); g != hdr.Get(name) {
			t.Errorf("upstream header %s = %q, want %q", name, g, hdr.Get(name))
		}
	}
	if g := r.Header.Get("X-Llmgate-User-Email"); g != "alice@example.com" {
		t.Errorf("identity header = %q, want alice@example.com", g)
	}
}

// TestSSEKeepalive: a silent streaming upstream gets keep-alive comments
// between events, never inside one, and the events arrive unchanged.
func TestSSEKeepalive(t *testing.T) {
	t.Run("demo upstream", func(t *testing.T) {
		h := newHarness(t, redistest.Mini(t), func(s *setup) {
			s.proxy.SSEKeepalive = 20 * time.Millisecond
			s.upstream.ChunkDelay = 150 * time.Millisecond
			s.upstream.Chunks = 3
		})
		tok := h.mint(t, tokens.IssueRequest{})
		stream := strings.Replace(messagesBody, `"max_tokens":64`, `"max_tokens":64,"stream":true`, 1)
		resp, body := h.api(t, "POST", "/v1/messages?beta=true", stream, bearer(tok))
		if resp.StatusCode != 200 {
			t.Fatalf("stream: %d %s", resp.StatusCode, body)
		}
		if !strings.Contains(body, ": keepalive\n\n") {
			t.Fatalf("no keep-alive in a stream silent for 150 ms with a 20 ms keep-alive:\n%s", body)
		}
		for _, block := range strings.Split(strings.TrimSuffix(body, "\n\n"), "\n\n") {
			if block != ": keepalive" && !strings.HasPrefix(block, "event: ") {
				t.Errorf("block %q is neither a keep-alive nor a whole event", block)
			}
		}
		if !strings.Contains(body, "event: message_stop") {
			t.Errorf("stream did not end with message_stop:\n%s", body)
		}
	})
	t.Run("mid-event silence", func(t *testing.T) {
		first, second := "event: content_block_delta\ndata: {\"type\":", "\"content_block_delta\",\"index\":0}\n\nevent: message_stop\ndata: {\"type\":\"message_stop\"}\n\n"
		up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			io.Copy(io.Discard, r.Body)
			w.Header().Set("Content-Type", "text/event-stream")
			rc := http.NewResponseController(w)
			io.WriteString(w, first)
			rc.Flush()
			time.Sleep(200 * time.Millisecond)
			io.WriteString(w, second)
		}))
		defer up.Close()
		u, _ := url.Parse(up.URL)
		h := newHarness(t, redistest.Mini(t), func(s *setup) {
			s.proxy.SSEKeepalive = 20 * time.Millisecond
			s.proxy.Upstreams = []Upstream{{Name: "split", URL: u, Paths: []string{"/v1/"}}}
		})
		resp, body := h.api(t, "POST", "/v1/messages", messagesBody, bearer(h.mint(t, tokens.IssueRequest{})))
		if resp.StatusCode != 200 {
			t.Fatalf("stream: %d %s", resp.StatusCode, body)
		}
		if !strings.Contains(body, first+second) {
			t.Errorf("an event was cut by a keep-alive:\n%q\nwant it to contain %q", body, first+second)
		}
		if strings.Count(body, ": keepalive") > 1 {
			t.Errorf("more than the one keep-alive before the first byte:\n%q", body)
		}
	})
	t.Run("off", func(t *testing.T) {
		h := newHarness(t, redistest.Mini(t), func(s *setup) {
			s.upstream.ChunkDelay = 60 * time.Millisecond
			s.upstream.Chunks = 2
		})
		stream := strings.Replace(messagesBody, `"max_tokens":64`, `"max_tokens":64,"stream":true`, 1)
		_, body := h.api(t, "POST", "/v1/messages", stream, bearer(h.mint(t, tokens.IssueRequest{})))
		if strings.Contains(body, "keepalive") {
			t.Errorf("keep-alive sent while off:\n%s", body)
		}
	})
}
