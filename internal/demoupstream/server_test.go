package demoupstream

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

func TestErrors(t *testing.T) {
	_, base := newServer(t, Options{})
	tests := []struct {
		name    string
		method  string
		path    string
		body    string
		header  map[string]string
		status  int
		fam     family
		errType string
		code    string
	}{
		{name: "unknown path", method: http.MethodGet, path: "/v1/nope", status: 404, fam: openAI, errType: "invalid_request_error"},
		{name: "root", method: http.MethodGet, path: "/", status: 404, fam: openAI, errType: "invalid_request_error"},
		{name: "chat with GET", method: http.MethodGet, path: "/v1/chat/completions", status: 404, fam: openAI, errType: "invalid_request_error"},
		{name: "messages with GET", method: http.MethodGet, path: "/v1/messages", status: 404, fam: anthropic, errType: "not_found_error"},
		{name: "message batches", method: http.MethodPost, path: "/v1/messages/batches", body: `{}`, status: 404, fam: anthropic, errType: "not_found_error"},
		{name: "chat invalid JSON", method: http.MethodPost, path: "/v1/chat/completions", body: `{"model":`, status: 400, fam: openAI, errType: "invalid_request_error"},
		{name: "chat empty body", method: http.MethodPost, path: "/v1/chat/completions", status: 400, fam: openAI, errType: "invalid_request_error"},
		{name: "chat missing model", method: http.MethodPost, path: "/v1/chat/completions", body: `{"messages":[]}`, status: 400, fam: openAI, errType: "invalid_request_error"},
		{name: "chat max_tokens 0", method: http.MethodPost, path: "/v1/chat/completions", body: `{"model":"m","max_tokens":0,"messages":[]}`, status: 400, fam: openAI, errType: "invalid_request_error"},
		{name: "chat content object", method: http.MethodPost, path: "/v1/chat/completions", body: `{"model":"m","messages":[{"role":"user","content":{}}]}`, status: 400, fam: openAI, errType: "invalid_request_error"},
		{name: "completions missing model", method: http.MethodPost, path: "/v1/completions", body: `{"prompt":"x"}`, status: 400, fam: openAI, errType: "invalid_request_error"},
		{name: "embeddings missing input", method: http.MethodPost, path: "/v1/embeddings", body: `{"model":"e"}`, status: 400, fam: openAI, errType: "invalid_request_error"},
		{name: "embeddings bad format", method: http.MethodPost, path: "/v1/embeddings", body: `{"model":"e","input":"x","encoding_format":"int8"}`, status: 400, fam: openAI, errType: "invalid_request_error"},
		{name: "messages invalid JSON", method: http.MethodPost, path: "/v1/messages", body: `not json`, status: 400, fam: anthropic, errType: "invalid_request_error"},
		{name: "messages missing model", method: http.MethodPost, path: "/v1/messages?beta=true", body: `{"max_tokens":1,"messages":[]}`, status: 400, fam: anthropic, errType: "invalid_request_error"},
		{name: "messages max_tokens 0", method: http.MethodPost, path: "/v1/messages", body: `{"model":"m","max_tokens":0,"messages":[]}`, status: 400, fam: anthropic, errType: "invalid_request_error"},
		{name: "count_tokens invalid JSON", method: http.MethodPost, path: "/v1/messages/count_tokens", body: `[`, status: 400, fam: anthropic, errType: "invalid_request_error"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a := call(t, tt.method, base+tt.path, tt.body, tt.header)
			wantError(t, tt.method+" "+tt.path, a, tt.status, tt.fam, tt.errType, tt.code)
		})
	}
}

func TestTooLarge(t *testing.T) {
	s := New(Options{})
	s.maxBody = 1 << 10
	body := bytes.NewReader(make([]byte, s.maxBody+1))
	w := httptest.NewRecorder()
	s.ServeHTTP(w, httptest.NewRequest(http.MethodPost, "/v1/messages", body))
	a := answer{status: w.Code, header: w.Header(), body: w.Body.Bytes()}
	wantError(t, "POST /v1/messages with a body over the limit", a, http.StatusRequestEntityTooLarge, anthropic, "request_too_large", "")
	if got := s.Requests(); len(got) != 1 || int64(len(got[0].Body)) != s.maxBody+1 {
		t.Errorf("recorded %d requests, want 1 with the body read up to the limit", len(got))
	}
}

func TestAPIKey(t *testing.T) {
	_, base := newServer(t, Options{APIKey: "sk-upstream"})
	const chat = `{"model":"m","messages":[{"role":"user","content":"hi"}]}`
	const msgs = `{"model":"m","max_tokens":5,"messages":[{"role":"user","content":"hi"}]}`
	tests := []struct {
		name    string
		method  string
		path    string
		body    string
		header  map[string]string
		ok      bool
		fam     family
		errType string
	}{
		{name: "openai bearer", method: "POST", path: "/v1/chat/completions", body: chat, header: map[string]string{"Authorization": "Bearer sk-upstream"}, ok: true},
		{name: "openai lower-case bearer", method: "POST", path: "/v1/chat/completions", body: chat, header: map[string]string{"Authorization": "bearer sk-upstream"}, ok: true},
		{name: "openai x-api-key", method: "POST", path: "/v1/chat/completions", body: chat, header: map[string]string{"x-api-key": "sk-upstream"}, ok: true},
		{name: "openai none", method: "POST", path: "/v1/chat/completions", body: chat, fam: openAI, errType: "invalid_request_error"},
		{name: "openai wrong", method: "POST", path: "/v1/chat/completions", body: chat, header: map[string]string{"Authorization": "Bearer sk-other"}, fam: openAI, errType: "invalid_request_error"},
		{name: "openai basic", method: "POST", path: "/v1/chat/completions", body: chat, header: map[string]string{"Authorization": "Basic c2stdXBzdHJlYW0="}, fam: openAI, errType: "invalid_request_error"},
		{name: "models none", method: "GET", path: "/v1/models", fam: openAI, errType: "invalid_request_error"},
		{name: "unknown path none", method: "GET", path: "/v1/nope", fam: openAI, errType: "invalid_request_error"},
		{name: "anthropic x-api-key", method: "POST", path: "/v1/messages", body: msgs, header: map[string]string{"x-api-key": "sk-upstream"}, ok: true},
		{name: "anthropic bearer", method: "POST", path: "/v1/messages?beta=true", body: msgs, header: map[string]string{"Authorization": "Bearer sk-upstream"}, ok: true},
		{name: "anthropic none", method: "POST", path: "/v1/messages", body: msgs, fam: anthropic, errType: "authentication_error"},
		{name: "anthropic wrong", method: "POST", path: "/v1/messages", body: msgs, header: map[string]string{"x-api-key": "sk-other"}, fam: anthropic, errType: "authentication_error"},
		{name: "anthropic wrong x-api-key, right bearer", method: "POST", path: "/v1/messages", body: msgs, header: map[string]string{"x-api-key": "sk-other", "Authorization": "Bearer sk-upstream"}, ok: true},
		{name: "count_tokens none", method: "POST", path: "/v1/messages/count_tokens", body: msgs, fam: anthropic, errType: "authentication_error"},
		{name: "anthropic models none", method: "GET", path: "/v1/models", header: map[string]string{"anthropic-version": "2023-06-01"}, fam: anthropic, errType: "authentication_error"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a := call(t, tt.method, base+tt.path, tt.body, tt.header)
			if tt.ok {
				if a.status != http.StatusOK {
					t.Errorf("%s %s with %v: status %d, want 200; body %s", tt.method, tt.path, tt.header, a.status, a.body)
				}
				return
			}
			code := ""
			if tt.fam == openAI {
				code = "invalid_api_key"
			}
			wantError(t, fmt.Sprintf("%s %s with %v", tt.method, tt.path, tt.header), a, http.StatusUnauthorized, tt.fam, tt.errType, code)
		})
	}
}

func TestCostHeader(t *testing.T) {
	_, base := newServer(t, Options{CostUSD: 0.0125})
	_, free := newServer(t, Options{})
	tests := []struct {
		name   string
		base   string
		method string
		path   string
		body   string
		want   string
	}{
		{name: "chat", base: base, method: "POST", path: "/v1/chat/completions", body: `{"model":"m","messages":[]}`, want: "0.0125"},
		{name: "chat stream", base: base, method: "POST", path: "/v1/chat/completions", body: `{"model":"m","stream":true,"messages":[]}`, want: "0.0125"},
		{name: "completions", base: base, method: "POST", path: "/v1/completions", body: `{"model":"m","prompt":"x"}`, want: "0.0125"},
		{name: "embeddings", base: base, method: "POST", path: "/v1/embeddings", body: `{"model":"m","input":"x"}`, want: "0.0125"},
		{name: "messages", base: base, method: "POST", path: "/v1/messages", body: `{"model":"m","max_tokens":9,"messages":[]}`, want: "0.0125"},
		{name: "messages stream", base: base, method: "POST", path: "/v1/messages", body: `{"model":"m","max_tokens":9,"stream":true,"messages":[]}`, want: "0.0125"},
		{name: "error", base: base, method: "POST", path: "/v1/messages", body: `{}`},
		{name: "not found", base: base, method: "GET", path: "/v1/nope"},
		{name: "models", base: base, method: "GET", path: "/v1/models"},
		{name: "count_tokens", base: base, method: "POST", path: "/v1/messages/count_tokens", body: `{"model":"m","messages":[]}`},
		{name: "no cost configured", base: free, method: "POST", path: "/v1/chat/completions", body: `{"model":"m","messages":[]}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a := call(t, tt.method, tt.base+tt.path, tt.body, nil)
			got, present := a.header.Get("x-litellm-response-cost"), len(a.header.Values("x-litellm-response-cost")) > 0
			if got != tt.want || present != (tt.want != "") {
				t.Errorf("%s %s (status %d): x-litellm-response-cost %q (present %v), want %q", tt.method, tt.path, a.status, got, present, tt.want)
			}
		})
	}
}

func TestRequestID(t *testing.T) {
	_, base := newServer(t, Options{})
	for _, path := range []string{"/v1/models", "/v1/nope"} {
		a := call(t, http.MethodGet, base+path, "", map[string]string{"X-Request-Id": "req-123"})
		if got := a.header.Get("X-Request-Id"); got != "req-123" {
			t.Errorf("GET %s with X-Request-Id req-123: answer has %q", path, got)
		}
	}
	if a := call(t, http.MethodGet, base+"/v1/models", "", nil); a.header.Get("X-Request-Id") != "" {
		t.Errorf("GET /v1/models without X-Request-Id: answer has %q, want none", a.header.Get("X-Request-Id"))
	}
}

func TestRequests(t *testing.T) {
	s, base := newServer(t, Options{APIKey: "k"})
	body := `{"model":"claude-sonnet-4-6","max_tokens":5,"messages":[{"role":"user","content":"hi"}]}`
	call(t, http.MethodPost, base+"/v1/messages?beta=true", body, map[string]string{
		"x-api-key": "k", "X-LLMGate-User-Email": "alice@example.com", "anthropic-beta": "a,b",
	})
	call(t, http.MethodGet, base+"/v1/models", "", nil) // refused: recorded all the same

	got := s.Requests()
	if len(got) != 2 {
		t.Fatalf("Requests() has %d requests, want 2: %+v", len(got), got)
	}
	r := got[0]
	if r.Method != "POST" || r.Path != "/v1/messages" || r.RawQuery != "beta=true" || string(r.Body) != body {
		t.Errorf("Requests()[0] = %s %s ? %s body %q; want POST /v1/messages ? beta=true body %q", r.Method, r.Path, r.RawQuery, r.Body, body)
	}
	for k, want := range map[string]string{"X-Api-Key": "k", "X-Llmgate-User-Email": "alice@example.com", "Anthropic-Beta": "a,b", "Content-Type": "application/json"} {
		if v := r.Header.Get(k); v != want {
			t.Errorf("Requests()[0].Header[%s] = %q, want %q", k, v, want)
		}
	}
	if got[1].Method != "GET" || got[1].Path != "/v1/models" || len(got[1].Body) != 0 {
		t.Errorf("Requests()[1] = %+v, want GET /v1/models with no body", got[1])
	}

	s.Reset()
	if got := s.Requests(); got != nil {
		t.Errorf("Requests() after Reset = %+v, want nil", got)
	}
}

func TestRequestsBounded(t *testing.T) {
	s := New(Options{})
	const n = maxRecorded + 5
	for i := range n {
		w := httptest.NewRecorder()
		s.ServeHTTP(w, httptest.NewRequest(http.MethodGet, fmt.Sprintf("/v1/models?i=%d", i), nil))
	}
	got := s.Requests()
	if len(got) != maxRecorded {
		t.Fatalf("after %d requests Requests() has %d, want %d", n, len(got), maxRecorded)
	}
	for i, r := range got {
		if want := fmt.Sprintf("i=%d", i+5); r.RawQuery != want {
			t.Fatalf("Requests()[%d].RawQuery = %q, want %q (oldest first)", i, r.RawQuery, want)
		}
	}

	quiet := New(Options{NoRecord: true})
	quiet.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest(http.MethodGet, "/v1/models", nil))
	if got := quiet.Requests(); got != nil {
		t.Errorf("Requests() with NoRecord = %+v, want nil", got)
	}
}

// TestRecordedHeaderIsACopy checks that a handler further down cannot
// change what was recorded.
func TestRecordedHeaderIsACopy(t *testing.T) {
	s := New(Options{})
	req := httptest.NewRequest(http.MethodGet, "/v1/models", nil)
	req.Header.Set("X-A", "1")
	s.ServeHTTP(httptest.NewRecorder(), req)
	req.Header.Set("X-A", "2")
	if got := s.Requests()[0].Header.Get("X-A"); got != "1" {
		t.Errorf("recorded X-A = %q after the request changed, want 1", got)
	}
}

// TestClientDisconnect checks that a stream stops, and its handler returns,
// when the client goes away in the middle of it.
func TestClientDisconnect(t *testing.T) {
	tests := []struct {
		name   string
		path   string
		body   string
		before int // events to read before going away
	}{
		{name: "openai", path: "/v1/chat/completions", body: `{"model":"m","stream":true,"messages":[]}`},
		{name: "anthropic", path: "/v1/messages", body: `{"model":"m","max_tokens":9,"stream":true,"messages":[]}`, before: 3},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := New(Options{ChunkDelay: time.Hour})
			returned := make(chan struct{})
			ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				s.ServeHTTP(w, r)
				close(returned)
			}))
			t.Cleanup(ts.Close)

			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			req, err := http.NewRequestWithContext(ctx, http.MethodPost, ts.URL+tt.path, strings.NewReader(tt.body))
			if err != nil {
				t.Fatal(err)
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatalf("POST %s: %v", tt.path, err)
			}
			defer resp.Body.Close()
			sr := newSSEReader(resp.Body)
			for i := range tt.before {
				if _, err := sr.next(); err != nil {
					t.Fatalf("event %d: %v", i, err)
				}
			}
			cancel()
			select {
			case <-returned:
			case <-time.After(10 * time.Second):
				t.Fatal("handler still running 10s after the client went away")
			}
			if _, err := io.ReadAll(resp.Body); !errors.Is(err, context.Canceled) {
				t.Errorf("reading the cancelled stream: %v, want context.Canceled", err)
			}
		})
	}
}

func TestStart(t *testing.T) {
	s, base, closeFn, err := Start("127.0.0.1:0", Options{Models: []string{"only"}})
	if err != nil {
		t.Fatalf("Start: %v", err)
	}
	if !strings.HasPrefix(base, "http://127.0.0.1:") {
		t.Errorf("Start base URL %q, want http://127.0.0.1:PORT", base)
	}
	a := call(t, http.MethodGet, base+"/v1/models", "", nil)
	var got modelListOpenAI
	decodeStrict(t, "GET /v1/models", a.body, &got)
	if len(got.Data) != 1 || got.Data[0].ID != "only" || len(s.Requests()) != 1 {
		t.Errorf("GET %s/v1/models = %s with %d recorded, want the one model and one record", base, a.body, len(s.Requests()))
	}
	if err := closeFn(); err != nil {
		t.Fatalf("close: %v", err)
	}
	client := &http.Client{Transport: &http.Transport{}} // no pooled connection
	if resp, err := client.Get(base + "/v1/models"); err == nil {
		resp.Body.Close()
		t.Errorf("GET after close: status %d, want a connection error", resp.StatusCode)
	}

	if _, _, _, err := Start("127.0.0.1:-1", Options{}); err == nil {
		t.Errorf("Start(127.0.0.1:-1): no error")
	}
}

func TestIdentityHeader(t *testing.T) {
	tests := []struct {
		name   string
		opts   Options
		header map[string]string
		want   string
	}{
		{name: "default header", header: map[string]string{"X-LLMGate-User-Email": "alice@example.com"}, want: "Hello alice@example.com!"},
		{name: "absent", want: "Hello anonymous!"},
		{name: "custom header, lower case", opts: Options{IdentityHeader: "x-forwarded-email"}, header: map[string]string{"X-Forwarded-Email": "bob@example.com", "X-LLMGate-User-Email": "alice@example.com"}, want: "Hello bob@example.com!"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, base := newServer(t, tt.opts)
			a := call(t, http.MethodPost, base+"/v1/chat/completions", chatBody, tt.header)
			var got chatCompletion
			decodeStrict(t, "POST /v1/chat/completions", a.body, &got)
			if !strings.HasPrefix(got.Choices[0].Message.Content, tt.want) {
				t.Errorf("reply %q, want it to start %q", got.Choices[0].Message.Content, tt.want)
			}
		})
	}
}

func TestIDsAreUnique(t *testing.T) {
	_, base := newServer(t, Options{})
	seen := map[string]bool{}
	for range 3 {
		var c chatCompletion
		decodeStrict(t, "chat", call(t, http.MethodPost, base+"/v1/chat/completions", chatBody, nil).body, &c)
		var m anthMessage
		decodeStrict(t, "messages", call(t, http.MethodPost, base+"/v1/messages", `{"model":"m","messages":[]}`, nil).body, &m)
		for _, id := range []string{c.ID, m.ID} {
			if seen[id] {
				t.Errorf("id %s given twice", id)
			}
			seen[id] = true
		}
	}
	if len(seen) != 6 {
		t.Errorf("got %d distinct ids from 6 answers, want 6", len(seen))
	}
}
