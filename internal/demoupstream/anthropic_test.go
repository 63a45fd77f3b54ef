package demoupstream

import (
	"net/http"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

type anthUsage struct {
	InputTokens              int    `json:"input_tokens"`
	CacheCreationInputTokens int    `json:"cache_creation_input_tokens"`
	CacheReadInputTokens     int    `json:"cache_read_input_tokens"`
	OutputTokens             int    `json:"output_tokens"`
	ServiceTier              string `json:"service_tier"`
}

type anthBlock struct {
	Type string `json:"type"`
	Text string `json:"text"`
}

type anthMessage struct {
	ID           string      `json:"id"`
	Type         string      `json:"type"`
	Role         string      `json:"role"`
	Model        string      `json:"model"`
	Content      []anthBlock `json:"content"`
	StopReason   *string     `json:"stop_reason"`
	StopSequence *string     `json:"stop_sequence"`
	Usage        anthUsage   `json:"usage"`
}

func usage(in, out int) anthUsage {
	return anthUsage{InputTokens: in, OutputTokens: out, ServiceTier: "standard"}
}

// claudeCodeBody looks like what Claude Code sends: an attribution block
// first in system, reminders around the prompt, tools, metadata.
const claudeCodeBody = `{
  "model": "claude-sonnet-4-6",
  "max_tokens": 32000,
  "system": [
    {"type": "text", "text": "x-anthropic-billing-header: cc_version=2.1.328"},
    {"type": "text", "text": "You are Claude Code.", "cache_control": {"type": "ephemeral"}}
  ],
  "messages": [
    {"role": "user", "content": [
      {"type": "text", "text": "<system-reminder>\nContext.\n</system-reminder>"},
      {"type": "text", "text": "what is 2+2?", "cache_control": {"type": "ephemeral"}},
      {"type": "text", "text": "  <system-reminder>Todo list is empty.</system-reminder>"}
    ]}
  ],
  "tools": [{"name": "Bash", "description": "Run a command", "input_schema": {"type": "object"}}],
  "metadata": {"user_id": "u1"},
  "thinking": {"type": "enabled", "budget_tokens": 1024},
  "stream": false
}`

// claudeCodeInput is the input token count of claudeCodeBody: its text
// bytes over 4.
var claudeCodeInput = len("x-anthropic-billing-header: cc_version=2.1.328"+
	"You are Claude Code."+
	"<system-reminder>\nContext.\n</system-reminder>"+
	"what is 2+2?"+
	"  <system-reminder>Todo list is empty.</system-reminder>") / 4

func TestMessages(t *testing.T) {
	_, base := newServer(t, Options{})
	alice := map[string]string{"X-LLMGate-User-Email": "alice@example.com", "anthropic-version": "2023-06-01"}
	tests := []struct {
		name string
		path string
		body string
		want anthMessage
	}{
		{
			name: "plain",
			path: "/v1/messages",
			body: `{"model":"claude-sonnet-4-6","max_tokens":1024,"messages":[{"role":"user","content":"Hello, Claude"}]}`,
			want: anthMessage{
				Type: "message", Role: "assistant", Model: "claude-sonnet-4-6",
				Content:    []anthBlock{{Type: "text", Text: "Hello alice@example.com! This is the llmgate demo upstream; you asked model claude-sonnet-4-6: Hello, Claude"}},
				StopReason: ptr("end_turn"),
				Usage:      usage(3, 14),
			},
		},
		{
			name: "claude code request, beta query",
			path: "/v1/messages?beta=true",
			body: claudeCodeBody,
			want: anthMessage{
				Type: "message", Role: "assistant", Model: "claude-sonnet-4-6",
				Content:    []anthBlock{{Type: "text", Text: "Hello alice@example.com! This is the llmgate demo upstream; you asked model claude-sonnet-4-6: what is 2+2?"}},
				StopReason: ptr("end_turn"),
				Usage:      usage(claudeCodeInput, 15),
			},
		},
		{
			name: "haiku probe, max_tokens 1",
			path: "/v1/messages?beta=true",
			body: `{"model":"claude-haiku-4-5","max_tokens":1,"messages":[{"role":"user","content":"quota"}]}`,
			want: anthMessage{
				Type: "message", Role: "assistant", Model: "claude-haiku-4-5",
				Content:    []anthBlock{{Type: "text", Text: "Hello"}},
				StopReason: ptr("max_tokens"),
				Usage:      usage(1, 1),
			},
		},
		{
			name: "only reminders",
			path: "/v1/messages",
			body: `{"model":"m","messages":[{"role":"user","content":[{"type":"text","text":"<system-reminder>x</system-reminder>"}]},{"role":"assistant","content":"ok"},{"role":"user","content":[{"type":"tool_result","tool_use_id":"t1","content":[{"type":"text","text":"done"}]}]}]}`,
			want: anthMessage{
				Type: "message", Role: "assistant", Model: "m",
				Content:    []anthBlock{{Type: "text", Text: "Hello alice@example.com! This is the llmgate demo upstream; you asked model m: done"}},
				StopReason: ptr("end_turn"),
				Usage:      usage(10, 13),
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a := call(t, http.MethodPost, base+tt.path, tt.body, alice)
			if a.status != http.StatusOK || a.header.Get("Content-Type") != "application/json" {
				t.Fatalf("POST %s: status %d, Content-Type %q, want 200 application/json; body %s", tt.path, a.status, a.header.Get("Content-Type"), a.body)
			}
			var got anthMessage
			decodeStrict(t, "POST "+tt.path, a.body, &got)
			if !strings.HasPrefix(got.ID, "msg_") {
				t.Errorf("id %q, want prefix msg_", got.ID)
			}
			got.ID = ""
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("POST %s (-want +got):\n%s", tt.path, diff)
			}
		})
	}
}

// anthEvent is the union of the data of Anthropic's stream events.
type anthEvent struct {
	Type         string       `json:"type"`
	Message      *anthMessage `json:"message,omitempty"`
	Index        *int         `json:"index,omitempty"`
	ContentBlock *anthBlock   `json:"content_block,omitempty"`
	Delta        *struct {
		Type         string  `json:"type,omitempty"`
		Text         string  `json:"text,omitempty"`
		StopReason   *string `json:"stop_reason,omitempty"`
		StopSequence *string `json:"stop_sequence,omitempty"`
	} `json:"delta,omitempty"`
	Usage *struct {
		OutputTokens int `json:"output_tokens"`
	} `json:"usage,omitempty"`
}

func TestMessagesStream(t *testing.T) {
	tests := []struct {
		name      string
		chunks    int
		maxTokens int
		wantText  string
		wantStop  string
		wantOut   int
	}{
		{name: "default chunks", chunks: 0, maxTokens: 1024, wantText: "Hello bob@example.com! This is the llmgate demo upstream; you asked model claude-opus-4-7: Hello, Claude", wantStop: "end_turn", wantOut: 14},
		{name: "two chunks", chunks: 2, maxTokens: 1024, wantText: "Hello bob@example.com! This is the llmgate demo upstream; you asked model claude-opus-4-7: Hello, Claude", wantStop: "end_turn", wantOut: 14},
		{name: "max_tokens 3", chunks: 8, maxTokens: 3, wantText: "Hello bob@example.com! This", wantStop: "max_tokens", wantOut: 3},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, base := newServer(t, Options{Chunks: tt.chunks})
			body := `{"model":"claude-opus-4-7","max_tokens":` + itoa(tt.maxTokens) + `,"stream":true,"messages":[{"role":"user","content":"Hello, Claude"}]}`
			resp := openStream(t, http.DefaultClient, base+"/v1/messages?beta=true", body, map[string]string{"X-LLMGate-User-Email": "bob@example.com"})
			events := readAllSSE(t, resp.Body)

			wantDeltas := tt.chunks
			if wantDeltas == 0 {
				wantDeltas = defaultChunks
			}
			wantDeltas = min(wantDeltas, tt.wantOut)
			var names []string
			names = append(names, "message_start", "content_block_start", "ping")
			for range wantDeltas {
				names = append(names, "content_block_delta")
			}
			names = append(names, "content_block_stop", "message_delta", "message_stop")
			var gotNames []string
			for _, ev := range events {
				gotNames = append(gotNames, ev.Event)
			}
			if diff := cmp.Diff(names, gotNames); diff != "" {
				t.Fatalf("event order (-want +got):\n%s", diff)
			}

			var text strings.Builder
			for i, ev := range events {
				var got anthEvent
				decodeStrict(t, ev.Event, []byte(ev.Data), &got)
				if got.Type != ev.Event {
					t.Errorf("event %d: event: %s but data type %q", i, ev.Event, got.Type)
				}
				switch ev.Event {
				case "message_start":
					m := got.Message
					if m == nil || !strings.HasPrefix(m.ID, "msg_") {
						t.Fatalf("message_start without a msg_ id: %s", ev.Data)
					}
					m.ID = ""
					want := anthMessage{Type: "message", Role: "assistant", Model: "claude-opus-4-7", Content: []anthBlock{}, Usage: usage(3, 1)}
					if diff := cmp.Diff(want, *m); diff != "" {
						t.Errorf("message_start (-want +got):\n%s", diff)
					}
				case "content_block_start":
					if got.Index == nil || *got.Index != 0 || got.ContentBlock == nil || *got.ContentBlock != (anthBlock{Type: "text"}) {
						t.Errorf("content_block_start %s", ev.Data)
					}
				case "content_block_delta":
					if got.Index == nil || *got.Index != 0 || got.Delta == nil || got.Delta.Type != "text_delta" || got.Delta.Text == "" {
						t.Errorf("content_block_delta %s", ev.Data)
					}
					text.WriteString(got.Delta.Text)
				case "content_block_stop":
					if got.Index == nil || *got.Index != 0 {
						t.Errorf("content_block_stop %s", ev.Data)
					}
				case "message_delta":
					if got.Delta == nil || got.Delta.StopReason == nil || *got.Delta.StopReason != tt.wantStop || got.Delta.StopSequence != nil ||
						got.Usage == nil || got.Usage.OutputTokens != tt.wantOut {
						t.Errorf("message_delta %s, want stop_reason %q, output_tokens %d", ev.Data, tt.wantStop, tt.wantOut)
					}
				}
			}
			if text.String() != tt.wantText {
				t.Errorf("streamed text %q, want %q", text.String(), tt.wantText)
			}
		})
	}
}

func itoa(n int) string { return string(appendInt(nil, n)) }

func TestCountTokens(t *testing.T) {
	_, base := newServer(t, Options{})
	a := call(t, http.MethodPost, base+"/v1/messages/count_tokens?beta=true", claudeCodeBody, nil)
	var got struct {
		InputTokens int `json:"input_tokens"`
	}
	decodeStrict(t, "POST /v1/messages/count_tokens", a.body, &got)
	if a.status != http.StatusOK || got.InputTokens != claudeCodeInput {
		t.Errorf("POST /v1/messages/count_tokens: status %d, input_tokens %d; want 200, %d", a.status, got.InputTokens, claudeCodeInput)
	}
	var msg anthMessage
	decodeStrict(t, "POST /v1/messages", call(t, http.MethodPost, base+"/v1/messages", claudeCodeBody, nil).body, &msg)
	if msg.Usage.InputTokens != got.InputTokens {
		t.Errorf("count_tokens says %d, /v1/messages usage says %d input tokens for the same body", got.InputTokens, msg.Usage.InputTokens)
	}
}
