package demoupstream

import (
	"context"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"io"
	"math"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

type modelOpenAI struct {
	ID      string `json:"id"`
	Object  string `json:"object"`
	Created int64  `json:"created"`
	OwnedBy string `json:"owned_by"`
}

type modelListOpenAI struct {
	Object string        `json:"object"`
	Data   []modelOpenAI `json:"data"`
}

type modelAnthropic struct {
	Type        string `json:"type"`
	ID          string `json:"id"`
	DisplayName string `json:"display_name"`
	CreatedAt   string `json:"created_at"`
}

type modelListAnthropic struct {
	Data    []modelAnthropic `json:"data"`
	HasMore bool             `json:"has_more"`
	FirstID *string          `json:"first_id"`
	LastID  *string          `json:"last_id"`
}

func ptr[T any](v T) *T { return &v }

func TestModels(t *testing.T) {
	_, base := newServer(t, Options{Models: []string{"gpt-4o-mini", "claude-haiku-4-5-20251001", "local-llama"}})

	t.Run("openai list", func(t *testing.T) {
		a := call(t, http.MethodGet, base+"/v1/models", "", nil)
		if a.status != http.StatusOK || a.header.Get("Content-Type") != "application/json" {
			t.Fatalf("GET /v1/models: status %d, Content-Type %q; want 200 application/json", a.status, a.header.Get("Content-Type"))
		}
		var got modelListOpenAI
		decodeStrict(t, "GET /v1/models", a.body, &got)
		want := modelListOpenAI{Object: "list", Data: []modelOpenAI{
			{ID: "gpt-4o-mini", Object: "model", Created: modelCreated, OwnedBy: "openai"},
			{ID: "claude-haiku-4-5-20251001", Object: "model", Created: modelCreated, OwnedBy: "anthropic"},
			{ID: "local-llama", Object: "model", Created: modelCreated, OwnedBy: "llmgate-demo"},
		}}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("GET /v1/models (-want +got):\n%s", diff)
		}
	})

	t.Run("anthropic list", func(t *testing.T) {
		a := call(t, http.MethodGet, base+"/v1/models?limit=20", "", map[string]string{"anthropic-version": "2023-06-01"})
		var got modelListAnthropic
		decodeStrict(t, "GET /v1/models with anthropic-version", a.body, &got)
		want := modelListAnthropic{
			Data: []modelAnthropic{
				{Type: "model", ID: "gpt-4o-mini", DisplayName: "gpt-4o-mini", CreatedAt: modelCreatedAt},
				{Type: "model", ID: "claude-haiku-4-5-20251001", DisplayName: "Claude Haiku 4.5", CreatedAt: modelCreatedAt},
				{Type: "model", ID: "local-llama", DisplayName: "local-llama", CreatedAt: modelCreatedAt},
			},
			FirstID: ptr("gpt-4o-mini"),
			LastID:  ptr("local-llama"),
		}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("GET /v1/models with anthropic-version (-want +got):\n%s", diff)
		}
	})

	t.Run("retrieve", func(t *testing.T) {
		a := call(t, http.MethodGet, base+"/v1/models/gpt-4o-mini", "", nil)
		var got modelOpenAI
		decodeStrict(t, "GET /v1/models/gpt-4o-mini", a.body, &got)
		if diff := cmp.Diff(modelOpenAI{ID: "gpt-4o-mini", Object: "model", Created: modelCreated, OwnedBy: "openai"}, got); diff != "" {
			t.Errorf("GET /v1/models/gpt-4o-mini (-want +got):\n%s", diff)
		}
		a = call(t, http.MethodGet, base+"/v1/models/claude-haiku-4-5-20251001", "", map[string]string{"anthropic-version": "2023-06-01"})
		var gotA modelAnthropic
		decodeStrict(t, "GET /v1/models/claude-haiku-4-5-20251001", a.body, &gotA)
		if gotA.DisplayName != "Claude Haiku 4.5" || gotA.Type != "model" {
			t.Errorf("GET /v1/models/claude-haiku-4-5-20251001 = %+v, want type model, display name Claude Haiku 4.5", gotA)
		}
	})

	t.Run("retrieve unknown", func(t *testing.T) {
		a := call(t, http.MethodGet, base+"/v1/models/nope", "", nil)
		wantError(t, "GET /v1/models/nope", a, http.StatusNotFound, openAI, "invalid_request_error", "model_not_found")
		a = call(t, http.MethodGet, base+"/v1/models/nope", "", map[string]string{"anthropic-version": "2023-06-01"})
		wantError(t, "GET /v1/models/nope (anthropic)", a, http.StatusNotFound, anthropic, "not_found_error", "")
	})

	t.Run("default list", func(t *testing.T) {
		_, base := newServer(t, Options{})
		var got modelListOpenAI
		decodeStrict(t, "GET /v1/models", call(t, http.MethodGet, base+"/v1/models", "", nil).body, &got)
		ids := map[string]bool{}
		for _, m := range got.Data {
			ids[m.ID] = true
		}
		for _, id := range []string{"gpt-4o-mini", "claude-sonnet-4-6", "claude-haiku-4-5", "claude-opus-4-7"} {
			if !ids[id] {
				t.Errorf("GET /v1/models on the default server lacks %s: %+v", id, got.Data)
			}
		}
	})
}

type oaUsage struct {
	PromptTokens            int            `json:"prompt_tokens"`
	CompletionTokens        int            `json:"completion_tokens"`
	TotalTokens             int            `json:"total_tokens"`
	PromptTokensDetails     map[string]int `json:"prompt_tokens_details"`
	CompletionTokensDetails map[string]int `json:"completion_tokens_details"`
}

func chatUsage(in, out int) *oaUsage {
	return &oaUsage{
		PromptTokens: in, CompletionTokens: out, TotalTokens: in + out,
		PromptTokensDetails:     map[string]int{"cached_tokens": 0, "audio_tokens": 0},
		CompletionTokensDetails: map[string]int{"reasoning_tokens": 0, "audio_tokens": 0, "accepted_prediction_tokens": 0, "rejected_prediction_tokens": 0},
	}
}

type chatMessageOut struct {
	Role        string  `json:"role"`
	Content     string  `json:"content"`
	Refusal     *string `json:"refusal"`
	Annotations []any   `json:"annotations"`
}

type chatChoice struct {
	Index        int            `json:"index"`
	Message      chatMessageOut `json:"message"`
	Logprobs     *any           `json:"logprobs"`
	FinishReason string         `json:"finish_reason"`
}

type chatCompletion struct {
	ID                string       `json:"id"`
	Object            string       `json:"object"`
	Created           int64        `json:"created"`
	Model             string       `json:"model"`
	Choices           []chatChoice `json:"choices"`
	Usage             *oaUsage     `json:"usage"`
	ServiceTier       string       `json:"service_tier"`
	SystemFingerprint string       `json:"system_fingerprint"`
}

const chatBody = `{"model":"gpt-4o-mini","messages":[{"role":"system","content":"You are terse."},{"role":"user","content":"Say hello"}]}`

// chatReply is the reply to chatBody from alice.
const chatReply = "Hello alice@example.com! This is the llmgate demo upstream; you asked model gpt-4o-mini: Say hello"

func TestChatCompletion(t *testing.T) {
	_, base := newServer(t, Options{})
	alice := map[string]string{"X-LLMGate-User-Email": "alice@example.com"}
	tests := []struct {
		name   string
		body   string
		header map[string]string
		want   chatCompletion
	}{
		{
			name:   "plain",
			body:   chatBody,
			header: alice,
			want: chatCompletion{
				Object: "chat.completion", Created: fixedNow.Unix(), Model: "gpt-4o-mini",
				Choices: []chatChoice{{Message: chatMessageOut{Role: "assistant", Content: chatReply, Annotations: []any{}}, FinishReason: "stop"}},
				// input: ("You are terse." + "Say hello") = 23 bytes / 4; output: 14 words.
				Usage:       chatUsage(5, 14),
				ServiceTier: "default", SystemFingerprint: systemFingerprint,
			},
		},
		{
			name: "content parts, anonymous",
			body: `{"model":"gpt-4o","messages":[{"role":"user","content":[{"type":"text","text":"What is in\n\n this   image?"},{"type":"image_url","image_url":{"url":"https://example.com/a.png"}}]}]}`,
			want: chatCompletion{
				Object: "chat.completion", Created: fixedNow.Unix(), Model: "gpt-4o",
				Choices: []chatChoice{{Message: chatMessageOut{Role: "assistant",
					Content:     "Hello anonymous! This is the llmgate demo upstream; you asked model gpt-4o: What is in this image?",
					Annotations: []any{}}, FinishReason: "stop"}},
				Usage:       chatUsage(6, 17),
				ServiceTier: "default", SystemFingerprint: systemFingerprint,
			},
		},
		{
			name:   "max_completion_tokens wins over max_tokens",
			body:   `{"model":"gpt-4o-mini","max_tokens":50,"max_completion_tokens":3,"messages":[{"role":"user","content":"hi"}]}`,
			header: alice,
			want: chatCompletion{
				Object: "chat.completion", Created: fixedNow.Unix(), Model: "gpt-4o-mini",
				Choices:     []chatChoice{{Message: chatMessageOut{Role: "assistant", Content: "Hello alice@example.com! This", Annotations: []any{}}, FinishReason: "length"}},
				Usage:       chatUsage(1, 3),
				ServiceTier: "default", SystemFingerprint: systemFingerprint,
			},
		},
		{
			name:   "last user message is quoted, long ones cut",
			body:   `{"model":"m","messages":[{"role":"user","content":"first"},{"role":"assistant","content":null},{"role":"user","content":"` + strings.Repeat("x", 70) + `"}]}`,
			header: alice,
			want: chatCompletion{
				Object: "chat.completion", Created: fixedNow.Unix(), Model: "m",
				Choices: []chatChoice{{Message: chatMessageOut{Role: "assistant",
					Content:     "Hello alice@example.com! This is the llmgate demo upstream; you asked model m: " + strings.Repeat("x", 60) + "…",
					Annotations: []any{}}, FinishReason: "stop"}},
				Usage:       chatUsage(18, 13),
				ServiceTier: "default", SystemFingerprint: systemFingerprint,
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a := call(t, http.MethodPost, base+"/v1/chat/completions", tt.body, tt.header)
			if a.status != http.StatusOK || a.header.Get("Content-Type") != "application/json" {
				t.Fatalf("POST /v1/chat/completions: status %d, Content-Type %q, want 200 application/json; body %s", a.status, a.header.Get("Content-Type"), a.body)
			}
			var got chatCompletion
			decodeStrict(t, "POST /v1/chat/completions", a.body, &got)
			if !strings.HasPrefix(got.ID, "chatcmpl-") {
				t.Errorf("id %q, want prefix chatcmpl-", got.ID)
			}
			got.ID = ""
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("POST /v1/chat/completions %s (-want +got):\n%s", tt.body, diff)
			}
		})
	}
}

// chunkChoice is a choice of a chat.completion.chunk.
type chunkChoice struct {
	Index int `json:"index"`
	Delta struct {
		Role    string  `json:"role,omitempty"`
		Content *string `json:"content,omitempty"`
	} `json:"delta"`
	Logprobs     *any    `json:"logprobs"`
	FinishReason *string `json:"finish_reason"`
}

type chatChunk struct {
	ID                string        `json:"id"`
	Object            string        `json:"object"`
	Created           int64         `json:"created"`
	Model             string        `json:"model"`
	SystemFingerprint string        `json:"system_fingerprint"`
	Choices           []chunkChoice `json:"choices"`
	Usage             *oaUsage      `json:"usage"`
}

func TestChatCompletionStream(t *testing.T) {
	tests := []struct {
		name         string
		chunks       int
		body         string
		includeUsage bool
		wantDeltas   int
		wantFinish   string
		wantText     string
		wantOut      int
	}{
		{name: "without usage", chunks: 8, body: `"stream":true`, wantDeltas: 8, wantFinish: "stop", wantText: chatReply, wantOut: 14},
		{name: "with include_usage", chunks: 8, body: `"stream":true,"stream_options":{"include_usage":true}`, includeUsage: true, wantDeltas: 8, wantFinish: "stop", wantText: chatReply, wantOut: 14},
		{name: "include_usage false", chunks: 3, body: `"stream":true,"stream_options":{"include_usage":false}`, wantDeltas: 3, wantFinish: "stop", wantText: chatReply, wantOut: 14},
		{name: "one chunk", chunks: 1, body: `"stream":true`, wantDeltas: 1, wantFinish: "stop", wantText: chatReply, wantOut: 14},
		{name: "max_tokens", chunks: 8, body: `"stream":true,"max_tokens":2,"stream_options":{"include_usage":true}`, includeUsage: true, wantDeltas: 2, wantFinish: "length", wantText: "Hello alice@example.com!", wantOut: 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, base := newServer(t, Options{Chunks: tt.chunks})
			body := strings.Replace(chatBody, `{"model"`, `{`+tt.body+`,"model"`, 1)
			resp := openStream(t, http.DefaultClient, base+"/v1/chat/completions", body, map[string]string{"X-LLMGate-User-Email": "alice@example.com"})
			events := readAllSSE(t, resp.Body)

			// Layout: deltas, the finishing chunk, the usage chunk (with
			// include_usage), [DONE].
			n := tt.wantDeltas + 2
			if tt.includeUsage {
				n++
			}
			if len(events) != n {
				t.Fatalf("got %d events, want %d: %+v", len(events), n, events)
			}
			if last := events[len(events)-1]; last != (sseEvent{Data: "[DONE]"}) {
				t.Fatalf("last event %+v, want data: [DONE]", last)
			}
			var text strings.Builder
			var id string
			for i, ev := range events[:len(events)-1] {
				var c chatChunk
				decodeStrict(t, "chunk "+ev.Data, []byte(ev.Data), &c)
				var keys map[string]json.RawMessage
				decodeStrict(t, "chunk", []byte(ev.Data), &keys)
				_, hasUsage := keys["usage"]
				if hasUsage != tt.includeUsage {
					t.Errorf("chunk %d has usage key: %v, want %v: %s", i, hasUsage, tt.includeUsage, ev.Data)
				}
				if id == "" {
					id = c.ID
				}
				if c.ID != id || c.Object != "chat.completion.chunk" || c.Model != "gpt-4o-mini" || c.Created != fixedNow.Unix() || c.SystemFingerprint != systemFingerprint {
					t.Errorf("chunk %d header: %s", i, ev.Data)
				}
				switch {
				case i < tt.wantDeltas:
					if len(c.Choices) != 1 || c.Choices[0].Delta.Content == nil || *c.Choices[0].Delta.Content == "" || c.Choices[0].FinishReason != nil || c.Usage != nil {
						t.Fatalf("content chunk %d: %s", i, ev.Data)
					}
					wantRole := ""
					if i == 0 {
						wantRole = "assistant"
					}
					if c.Choices[0].Delta.Role != wantRole {
						t.Errorf("chunk %d: delta.role %q, want %q", i, c.Choices[0].Delta.Role, wantRole)
					}
					text.WriteString(*c.Choices[0].Delta.Content)
				case i == tt.wantDeltas:
					if len(c.Choices) != 1 || c.Choices[0].Delta.Content != nil || c.Choices[0].Delta.Role != "" ||
						c.Choices[0].FinishReason == nil || *c.Choices[0].FinishReason != tt.wantFinish || c.Usage != nil {
						t.Errorf("finishing chunk %d: %s, want empty delta and finish_reason %q", i, ev.Data, tt.wantFinish)
					}
				default:
					if len(c.Choices) != 0 {
						t.Errorf("usage chunk: choices %+v, want []", c.Choices)
					}
					if diff := cmp.Diff(chatUsage(5, tt.wantOut), c.Usage); diff != "" {
						t.Errorf("usage chunk (-want +got):\n%s", diff)
					}
				}
			}
			if text.String() != tt.wantText {
				t.Errorf("streamed text %q, want %q", text.String(), tt.wantText)
			}
		})
	}
}

// TestStreamFlushesEachEvent holds each content delta back until the client
// has received everything before it: the test only passes if every event is
// flushed as soon as it is written, whatever the timing.
func TestStreamFlushesEachEvent(t *testing.T) {
	tests := []struct {
		name   string
		path   string
		body   string
		before int // events to read before the first delta
	}{
		{name: "openai", path: "/v1/chat/completions", body: `{"model":"gpt-4o-mini","stream":true,"messages":[{"role":"user","content":"hi"}]}`},
		{name: "openai completions", path: "/v1/completions", body: `{"model":"gpt-3.5-turbo-instruct","stream":true,"prompt":"hi"}`},
		{name: "anthropic", path: "/v1/messages", body: `{"model":"claude-sonnet-4-6","max_tokens":100,"stream":true,"messages":[{"role":"user","content":"hi"}]}`, before: 3},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			const chunks = 4
			s := New(Options{Chunks: chunks})
			released := make(chan int)
			s.beforeDelta = func(ctx context.Context, i int) error {
				select {
				case got := <-released:
					if got != i {
						t.Errorf("delta %d released as %d", i, got)
					}
					return nil
				case <-ctx.Done():
					return ctx.Err()
				}
			}
			base := serve(t, s)
			// A stream that is not flushed would stall here, not hang.
			client := &http.Client{Timeout: 10 * time.Second}
			resp := openStream(t, client, base+tt.path, tt.body, nil) // headers arrive before any delta
			sr := newSSEReader(resp.Body)
			for i := range tt.before {
				if _, err := sr.next(); err != nil {
					t.Fatalf("event %d before the first delta: %v", i, err)
				}
			}
			for i := range chunks {
				released <- i
				ev, err := sr.next()
				if err != nil {
					t.Fatalf("delta %d: %v", i, err)
				}
				if i == chunks-1 && !strings.Contains(ev.Data, `: hi"`) {
					t.Errorf("last delta %q does not quote the question", ev.Data)
				}
			}
			if _, err := io.Copy(io.Discard, resp.Body); err != nil {
				t.Errorf("rest of the stream: %v", err)
			}
		})
	}
}

// TestStreamChunkDelay checks with real time that deltas are spread out by
// ChunkDelay and reach the client as they are sent. Timers never fire
// early, so the lower bounds cannot flake; the gap between the first and
// the last delta has a whole ChunkDelay of slack.
func TestStreamChunkDelay(t *testing.T) {
	const delay = 100 * time.Millisecond
	_, base := newServer(t, Options{Chunks: 3, ChunkDelay: delay})
	start := time.Now()
	resp := openStream(t, http.DefaultClient, base+"/v1/chat/completions", `{"model":"m","stream":true,"messages":[{"role":"user","content":"hi"}]}`, nil)
	sr := newSSEReader(resp.Body)
	var arrived []time.Time
	for {
		ev, err := sr.next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("read stream: %v", err)
		}
		if strings.Contains(ev.Data, `"content"`) {
			arrived = append(arrived, time.Now())
		}
	}
	if len(arrived) != 3 {
		t.Fatalf("got %d content chunks, want 3", len(arrived))
	}
	if total := time.Since(start); total < 3*delay {
		t.Errorf("stream took %v, want at least 3 × ChunkDelay = %v", total, 3*delay)
	}
	if gap := arrived[2].Sub(arrived[0]); gap < delay {
		t.Errorf("first content chunk arrived %v before the last, want at least %v (2 × ChunkDelay sent apart): chunks are not flushed as sent", gap, delay)
	}
}

type completion struct {
	ID      string `json:"id"`
	Object  string `json:"object"`
	Created int64  `json:"created"`
	Model   string `json:"model"`
	Choices []struct {
		Text         string  `json:"text"`
		Index        int     `json:"index"`
		Logprobs     *any    `json:"logprobs"`
		FinishReason *string `json:"finish_reason"`
	} `json:"choices"`
	Usage *struct {
		PromptTokens     int `json:"prompt_tokens"`
		CompletionTokens int `json:"completion_tokens"`
		TotalTokens      int `json:"total_tokens"`
	} `json:"usage"`
	SystemFingerprint string `json:"system_fingerprint"`
}

func TestCompletions(t *testing.T) {
	_, base := newServer(t, Options{IdentityHeader: "X-Forwarded-Email"})
	body := `{"model":"gpt-3.5-turbo-instruct","prompt":"Once upon a time","max_tokens":100}`
	wantText := "Hello bob@example.com! This is the llmgate demo upstream; you asked model gpt-3.5-turbo-instruct: Once upon a time"
	bob := map[string]string{"X-Forwarded-Email": "bob@example.com", "X-LLMGate-User-Email": "not-this@example.com"}

	t.Run("json", func(t *testing.T) {
		a := call(t, http.MethodPost, base+"/v1/completions", body, bob)
		var got completion
		decodeStrict(t, "POST /v1/completions", a.body, &got)
		if got.Object != "text_completion" || len(got.Choices) != 1 || got.Choices[0].Text != wantText ||
			got.Choices[0].FinishReason == nil || *got.Choices[0].FinishReason != "stop" {
			t.Errorf("POST /v1/completions = %s, want text_completion with text %q, finish_reason stop", a.body, wantText)
		}
		if got.Usage == nil || got.Usage.PromptTokens != 4 || got.Usage.CompletionTokens != 16 || got.Usage.TotalTokens != 20 {
			t.Errorf("usage %+v, want 4 + 16 = 20", got.Usage)
		}
	})

	t.Run("stream", func(t *testing.T) {
		resp := openStream(t, http.DefaultClient, base+"/v1/completions", strings.Replace(body, "{", `{"stream":true,"stream_options":{"include_usage":true},`, 1), bob)
		events := readAllSSE(t, resp.Body)
		if len(events) != 8+3 || events[len(events)-1].Data != "[DONE]" {
			t.Fatalf("got %d events ending %+v, want 8 deltas, finish, usage, [DONE]", len(events), events[len(events)-1])
		}
		var text strings.Builder
		for i, ev := range events[:len(events)-1] {
			var c completion
			decodeStrict(t, "completion chunk", []byte(ev.Data), &c)
			switch {
			case i < 8:
				text.WriteString(c.Choices[0].Text)
			case i == 8:
				if c.Choices[0].FinishReason == nil || *c.Choices[0].FinishReason != "stop" {
					t.Errorf("finishing chunk %s", ev.Data)
				}
			default:
				if len(c.Choices) != 0 || c.Usage == nil || c.Usage.CompletionTokens != 16 {
					t.Errorf("usage chunk %s", ev.Data)
				}
			}
		}
		if text.String() != wantText {
			t.Errorf("streamed text %q, want %q", text.String(), wantText)
		}
	})
}

type embeddingList struct {
	Object string `json:"object"`
	Data   []struct {
		Object    string          `json:"object"`
		Index     int             `json:"index"`
		Embedding json.RawMessage `json:"embedding"`
	} `json:"data"`
	Model string `json:"model"`
	Usage struct {
		PromptTokens int `json:"prompt_tokens"`
		TotalTokens  int `json:"total_tokens"`
	} `json:"usage"`
}

// vectors decodes every embedding, float arrays or base64.
func (l embeddingList) vectors(tb testing.TB) [][]float32 {
	tb.Helper()
	var out [][]float32
	for _, d := range l.Data {
		var v []float32
		if err := json.Unmarshal(d.Embedding, &v); err != nil {
			var s string
			if err := json.Unmarshal(d.Embedding, &s); err != nil {
				tb.Fatalf("embedding %s is neither floats nor a string", d.Embedding)
			}
			raw, err := base64.StdEncoding.DecodeString(s)
			if err != nil || len(raw)%4 != 0 {
				tb.Fatalf("embedding %q is not base64 float32s: %v", s, err)
			}
			for i := 0; i < len(raw); i += 4 {
				v = append(v, math.Float32frombits(binary.LittleEndian.Uint32(raw[i:])))
			}
		}
		out = append(out, v)
	}
	return out
}

func TestEmbeddings(t *testing.T) {
	_, base := newServer(t, Options{})
	get := func(t *testing.T, body string) embeddingList {
		t.Helper()
		a := call(t, http.MethodPost, base+"/v1/embeddings", body, nil)
		if a.status != http.StatusOK {
			t.Fatalf("POST /v1/embeddings %s: status %d, body %s", body, a.status, a.body)
		}
		var l embeddingList
		decodeStrict(t, "POST /v1/embeddings", a.body, &l)
		return l
	}
	tests := []struct {
		name       string
		body       string
		wantN      int
		wantDims   int
		wantTokens int
	}{
		{name: "string", body: `{"model":"text-embedding-3-small","input":"hello world"}`, wantN: 1, wantDims: defaultDimensions, wantTokens: 2},
		{name: "strings", body: `{"model":"text-embedding-3-small","input":["a","bbbbbbbb"]}`, wantN: 2, wantDims: defaultDimensions, wantTokens: 3},
		{name: "tokens", body: `{"model":"text-embedding-3-small","input":[1,2,3]}`, wantN: 1, wantDims: defaultDimensions, wantTokens: 3},
		{name: "token arrays", body: `{"model":"text-embedding-3-small","input":[[1,2],[3]]}`, wantN: 2, wantDims: defaultDimensions, wantTokens: 3},
		{name: "dimensions", body: `{"model":"text-embedding-3-small","input":"x","dimensions":32}`, wantN: 1, wantDims: 32, wantTokens: 1},
		{name: "base64", body: `{"model":"text-embedding-3-small","input":"hello world","encoding_format":"base64"}`, wantN: 1, wantDims: defaultDimensions, wantTokens: 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l := get(t, tt.body)
			if l.Object != "list" || l.Model != "text-embedding-3-small" || l.Usage.PromptTokens != tt.wantTokens || l.Usage.TotalTokens != tt.wantTokens {
				t.Errorf("POST /v1/embeddings %s: object %q, model %q, usage %+v; want list, text-embedding-3-small, %d tokens", tt.body, l.Object, l.Model, l.Usage, tt.wantTokens)
			}
			vs := l.vectors(t)
			if len(vs) != tt.wantN {
				t.Fatalf("got %d embeddings, want %d", len(vs), tt.wantN)
			}
			for i, v := range vs {
				if l.Data[i].Index != i || l.Data[i].Object != "embedding" {
					t.Errorf("data[%d]: index %d, object %q", i, l.Data[i].Index, l.Data[i].Object)
				}
				if len(v) != tt.wantDims {
					t.Errorf("embedding %d has %d dimensions, want %d", i, len(v), tt.wantDims)
				}
				var norm float64
				for _, f := range v {
					norm += float64(f) * float64(f)
				}
				if math.Abs(norm-1) > 1e-4 {
					t.Errorf("embedding %d has squared norm %v, want 1", i, norm)
				}
			}
		})
	}

	t.Run("deterministic", func(t *testing.T) {
		a := get(t, `{"model":"text-embedding-3-small","input":"hello world"}`).vectors(t)
		b := get(t, `{"model":"text-embedding-3-small","input":"hello world","encoding_format":"base64"}`).vectors(t)
		c := get(t, `{"model":"text-embedding-3-small","input":"hello there"}`).vectors(t)
		if diff := cmp.Diff(a, b); diff != "" {
			t.Errorf("float and base64 embeddings of the same input differ (-float +base64):\n%s", diff)
		}
		if cmp.Equal(a, c) {
			t.Errorf("different inputs gave the same embedding %v", a)
		}
	})
}
