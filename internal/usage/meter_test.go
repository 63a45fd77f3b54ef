package usage

import (
	"bytes"
	"encoding/json"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/llmgate/llmgate/internal/demoupstream"
)

// demoCase is a request to the demo upstream; the non-streamed answer to
// body gives the usage the streamed one must report too.
type demoCase struct {
	name         string
	path         string
	body         string // without "stream"
	stream       bool
	includeUsage bool // OpenAI stream_options.include_usage
	anthropic    bool
	chunks       int // demo content deltas (0 = default)
}

var demoCases = []demoCase{
	{name: "chat json", path: "/v1/chat/completions", body: `{"model":"gpt-4o-mini","messages":[{"role":"system","content":"You are terse."},{"role":"user","content":"Say hello"}]}`},
	{name: "chat stream with usage", path: "/v1/chat/completions", body: `{"model":"gpt-4o-mini","messages":[{"role":"user","content":"Say hello"}]}`, stream: true, includeUsage: true},
	{name: "chat stream without usage", path: "/v1/chat/completions", body: `{"model":"gpt-4o","messages":[{"role":"user","content":"Say hello"}]}`, stream: true},
	{name: "chat stream max_tokens", path: "/v1/chat/completions", body: `{"model":"gpt-4.1-mini","max_tokens":2,"messages":[{"role":"user","content":"Say hello"}]}`, stream: true, includeUsage: true},
	{name: "completions json", path: "/v1/completions", body: `{"model":"gpt-4o-mini","prompt":"Once upon a time"}`},
	{name: "completions stream with usage", path: "/v1/completions", body: `{"model":"gpt-4o-mini","prompt":"Once upon a time"}`, stream: true, includeUsage: true},
	{name: "embeddings", path: "/v1/embeddings", body: `{"model":"text-embedding-3-small","input":["one two three","four five six seven"],"dimensions":64}`},
	{name: "messages json", path: "/v1/messages", body: `{"model":"claude-sonnet-4-6","max_tokens":1024,"messages":[{"role":"user","content":"Hello, Claude"}]}`, anthropic: true},
	{name: "messages stream", path: "/v1/messages", body: `{"model":"claude-opus-4-7","max_tokens":1024,"messages":[{"role":"user","content":"Hello, Claude"}]}`, stream: true, anthropic: true},
	{name: "messages stream max_tokens", path: "/v1/messages?beta=true", body: `{"model":"claude-haiku-4-5","max_tokens":3,"messages":[{"role":"user","content":"quota"}]}`, stream: true, anthropic: true},
	{name: "messages stream long", path: "/v1/messages", body: `{"model":"claude-sonnet-4-6","max_tokens":4096,"messages":[{"role":"user","content":"Tell me a long story"}]}`, stream: true, anthropic: true, chunks: 300},
}

// streamBody is c's request body asking for a stream.
func (c demoCase) streamBody() string {
	if !c.stream {
		return c.body
	}
	opts := `"stream":true,`
	if c.includeUsage {
		opts += `"stream_options":{"include_usage":true},`
	}
	return strings.Replace(c.body, "{", "{"+opts, 1)
}

func (c demoCase) server() *demoupstream.Server {
	if c.chunks == 0 {
		return demoServer
	}
	return demoupstream.New(demoupstream.Options{NoRecord: true, Chunks: c.chunks})
}

// want decodes the non-streamed answer with plain structs: the usage both
// answers must report.
func (c demoCase) want(tb testing.TB) Usage {
	tb.Helper()
	_, body := demoCall(tb, c.server(), c.path, c.body)
	var ref struct {
		Model string `json:"model"`
		Usage struct {
			PromptTokens     int64 `json:"prompt_tokens"`
			CompletionTokens int64 `json:"completion_tokens"`
			InputTokens      int64 `json:"input_tokens"`
			CacheCreation    int64 `json:"cache_creation_input_tokens"`
			CacheRead        int64 `json:"cache_read_input_tokens"`
			OutputTokens     int64 `json:"output_tokens"`
		} `json:"usage"`
	}
	if err := json.Unmarshal(body, &ref); err != nil {
		tb.Fatalf("decode demo answer: %v: %s", err, body)
	}
	u := ref.Usage
	if c.stream && !c.anthropic && !c.includeUsage {
		return Usage{Model: ref.Model}
	}
	return Usage{
		Model:        ref.Model,
		InputTokens:  u.PromptTokens + u.InputTokens + u.CacheCreation + u.CacheRead,
		OutputTokens: u.CompletionTokens + u.OutputTokens,
		Found:        true,
	}
}

// TestMeterDemoUpstream meters real answers of the demo upstream, JSON and
// SSE of both API families, whole and cut at every byte.
func TestMeterDemoUpstream(t *testing.T) {
	for _, tc := range demoCases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			want := tc.want(t)
			if want.Found && (want.InputTokens == 0 || want.OutputTokens == 0) && !strings.Contains(tc.path, "embeddings") {
				t.Fatalf("reference usage %+v has a zero count: the test would prove little", want)
			}
			ct, body := demoCall(t, tc.server(), tc.path, tc.streamBody())
			if got := modeOf(ct); (got == modeSSE) != tc.stream {
				t.Fatalf("demo answer Content-Type %q: mode %d, stream %v", ct, got, tc.stream)
			}
			check := func(what string, chunks [][]byte) {
				t.Helper()
				if got := meter(t, ct, chunks); got != want {
					t.Fatalf("%s: Usage() = %+v, want %+v\nbody:\n%s", what, got, want, body)
				}
			}
			check("whole", whole(body))
			check("byte by byte", bytewise(body))
			// Every split point (every few for the long stream, to stay fast).
			step := max(1, len(body)/4000)
			for i := 0; i <= len(body); i += step {
				check("split at "+strconv.Itoa(i), splitAt(body, i))
			}
			for seed := range uint64(20) {
				check("random chunks, seed "+strconv.FormatUint(seed, 10), randomChunks(body, seed))
			}
			if !tc.stream {
				return
			}
			for _, v := range sseVariants(body) {
				check(v.name+", whole", whole(v.body))
				check(v.name+", byte by byte", bytewise(v.body))
				for seed := range uint64(5) {
					check(v.name+", random chunks", randomChunks(v.body, seed))
				}
			}
		})
	}
}

type variant struct {
	name string
	body []byte
}

// sseVariants are equivalent spellings of an event stream.
func sseVariants(body []byte) []variant {
	keepalive := bytes.ReplaceAll(body, []byte("\n\n"), []byte("\n\n: keepalive\n\n"))
	return []variant{
		{"CRLF", bytes.ReplaceAll(body, []byte("\n"), []byte("\r\n"))},
		{"CR", bytes.ReplaceAll(body, []byte("\n"), []byte("\r"))},
		{"comments", append([]byte(": connected\n\n"), keepalive...)},
		{"comment lines inside events", bytes.ReplaceAll(body, []byte("data:"), []byte(": note\ndata:"))},
		{"data without space", bytes.ReplaceAll(body, []byte("data: "), []byte("data:"))},
		{"BOM", append([]byte("\xEF\xBB\xBF"), body...)},
		{"id and retry fields", bytes.ReplaceAll(body, []byte("data:"), []byte("id: 7\nretry: 1000\ndata:"))},
		{"no final blank line", bytes.TrimRight(body, "\n")},
	}
}

func TestMeterSSE(t *testing.T) {
	tests := []struct {
		name string
		body string
		want Usage
	}{
		{
			name: "anthropic cache tokens count as input",
			body: "event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"id\":\"msg_1\",\"type\":\"message\",\"role\":\"assistant\",\"model\":\"claude-sonnet-4-6\",\"content\":[],\"usage\":{\"input_tokens\":10,\"cache_creation_input_tokens\":100,\"cache_read_input_tokens\":1000,\"output_tokens\":1}}}\n\n" +
				"event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":\"Hi\"}}\n\n" +
				"event: message_delta\ndata: {\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"end_turn\"},\"usage\":{\"output_tokens\":50}}\n\n" +
				"event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n",
			want: Usage{Model: "claude-sonnet-4-6", InputTokens: 1110, OutputTokens: 50, Found: true},
		},
		{
			name: "message_delta is cumulative: the last counts",
			body: "data: {\"type\":\"message_start\",\"message\":{\"model\":\"m\",\"usage\":{\"input_tokens\":3,\"output_tokens\":1}}}\n\n" +
				"data: {\"type\":\"message_delta\",\"usage\":{\"output_tokens\":5}}\n\n" +
				"data: {\"type\":\"message_delta\",\"usage\":{\"output_tokens\":9}}\n\n",
			want: Usage{Model: "m", InputTokens: 3, OutputTokens: 9, Found: true},
		},
		{
			name: "message_delta repeating the input counts",
			body: "data: {\"type\":\"message_start\",\"message\":{\"model\":\"m\",\"usage\":{\"input_tokens\":3,\"cache_read_input_tokens\":0,\"output_tokens\":1}}}\n\n" +
				"data: {\"type\":\"message_delta\",\"usage\":{\"input_tokens\":4,\"cache_read_input_tokens\":20,\"output_tokens\":7,\"server_tool_use\":{\"web_search_requests\":1}}}\n\n",
			want: Usage{Model: "m", InputTokens: 24, OutputTokens: 7, Found: true},
		},
		{
			name: "openai usage null in every chunk, usage in the last",
			body: "data: {\"id\":\"c\",\"object\":\"chat.completion.chunk\",\"model\":\"gpt-4o\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"Hi\"}}],\"usage\":null}\n\n" +
				"data: {\"id\":\"c\",\"object\":\"chat.completion.chunk\",\"model\":\"gpt-4o\",\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"stop\"}],\"usage\":null}\n\n" +
				"data: {\"id\":\"c\",\"object\":\"chat.completion.chunk\",\"model\":\"gpt-4o\",\"choices\":[],\"usage\":{\"prompt_tokens\":12,\"completion_tokens\":3,\"total_tokens\":15,\"prompt_tokens_details\":{\"cached_tokens\":8}}}\n\n" +
				"data: [DONE]\n\n",
			want: Usage{Model: "gpt-4o", InputTokens: 12, OutputTokens: 3, Found: true},
		},
		{
			name: "litellm's openai shape for an anthropic model: prompt_tokens already counts the cache",
			body: "data: {\"model\":\"claude-sonnet-4-6\",\"choices\":[],\"usage\":{\"prompt_tokens\":1110,\"completion_tokens\":5,\"total_tokens\":1115,\"prompt_tokens_details\":{\"cached_tokens\":1000},\"cache_creation_input_tokens\":100,\"cache_read_input_tokens\":1000}}\n\ndata: [DONE]\n\n",
			want: Usage{Model: "claude-sonnet-4-6", InputTokens: 1110, OutputTokens: 5, Found: true},
		},
		{
			name: "openai without usage: the model only",
			body: "data: {\"model\":\"gpt-4o\",\"choices\":[{\"delta\":{\"content\":\"Hi\"}}]}\n\ndata: [DONE]\n\n",
			want: Usage{Model: "gpt-4o"},
		},
		{
			name: "responses api",
			body: "event: response.created\ndata: {\"type\":\"response.created\",\"response\":{\"id\":\"resp_1\",\"model\":\"gpt-4.1\",\"status\":\"in_progress\",\"usage\":null}}\n\n" +
				"event: response.output_text.delta\ndata: {\"type\":\"response.output_text.delta\",\"delta\":\"Hi\"}\n\n" +
				"event: response.completed\ndata: {\"type\":\"response.completed\",\"response\":{\"id\":\"resp_1\",\"model\":\"gpt-4.1\",\"usage\":{\"input_tokens\":20,\"input_tokens_details\":{\"cached_tokens\":5},\"output_tokens\":30,\"output_tokens_details\":{\"reasoning_tokens\":10},\"total_tokens\":50}}}\n\n",
			want: Usage{Model: "gpt-4.1", InputTokens: 20, OutputTokens: 30, Found: true},
		},
		{
			name: "json split over data lines",
			body: "data: {\"model\": \"m\",\ndata:  \"usage\":\ndata: {\"prompt_tokens\": 4,\ndata: \"completion_tokens\": 2}}\n\n",
			want: Usage{Model: "m", InputTokens: 4, OutputTokens: 2, Found: true},
		},
		{
			name: "last event without a blank line",
			body: "data: {\"model\":\"m\",\"usage\":{\"prompt_tokens\":4,\"completion_tokens\":2}}",
			want: Usage{Model: "m", InputTokens: 4, OutputTokens: 2, Found: true},
		},
		{
			name: "usage text inside a string is not usage",
			body: "data: {\"type\":\"content_block_delta\",\"delta\":{\"type\":\"text_delta\",\"text\":\"\\\"usage\\\":{\\\"input_tokens\\\":5}\"}}\n\n",
			want: Usage{},
		},
		{
			name: "a string value usage is not an object",
			body: "data: {\"type\":\"usage\",\"model\":\"m\"}\n\n",
			want: Usage{Model: "m"},
		},
		{
			name: "error event",
			body: "event: error\ndata: {\"type\":\"error\",\"error\":{\"type\":\"overloaded_error\",\"message\":\"Overloaded\"}}\n\n",
			want: Usage{},
		},
		{
			name: "a field of another type is skipped, the rest read",
			body: "data: {\"message\":\"not an object\",\"model\":\"m\",\"usage\":{\"prompt_tokens\":\"many\",\"completion_tokens\":2}}\n\n",
			want: Usage{Model: "m", OutputTokens: 2, Found: true},
		},
		{
			name: "float, negative and huge counts",
			body: "data: {\"usage\":{\"input_tokens\":3.0,\"cache_read_input_tokens\":-4,\"cache_creation_input_tokens\":1e2,\"output_tokens\":1e300}}\n\n",
			want: Usage{InputTokens: 103, OutputTokens: maxCount, Found: true},
		},
		{
			name: "total_tokens only",
			body: "data: {\"usage\":{\"total_tokens\":7}}\n\n",
			want: Usage{InputTokens: 7, Found: true},
		},
		{
			name: "garbage",
			body: "\x00\xff{{{\"usage\":{\n\n:::\ndata\ndata:\ndata: {\"usage\":{\"prompt_tokens\":\n\nevent\n\n\r\r\n",
			want: Usage{},
		},
		{
			name: "comments only",
			body: ": keepalive\n\n: keepalive\n\n",
			want: Usage{},
		},
		{
			name: "an overlong line is skipped, the next event read",
			body: "data: {\"usage\":{\"prompt_tokens\":1},\"pad\":\"" + strings.Repeat("x", maxLine) + "\"}\n\n" +
				"data: {\"usage\":{\"prompt_tokens\":2,\"completion_tokens\":3}}\n\n",
			want: Usage{InputTokens: 2, OutputTokens: 3, Found: true},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			body := []byte(tt.body)
			chunkings := map[string][][]byte{"whole": whole(body), "random": randomChunks(body, 1)}
			if len(body) < 10_000 {
				chunkings["byte by byte"] = bytewise(body)
				for _, v := range sseVariants(body) {
					chunkings[v.name] = randomChunks(v.body, 2)
				}
			}
			for how, chunks := range chunkings {
				if got := meter(t, "text/event-stream", chunks); got != tt.want {
					t.Errorf("%s: Usage() = %+v, want %+v", how, got, tt.want)
				}
			}
		})
	}
}

func TestMeterJSON(t *testing.T) {
	big := `{"model":"text-embedding-3-large","data":[` + strings.Repeat(`{"embedding":[0.1,0.2,-0.3e-5],"usage":{"prompt_tokens":1}},`, 80_000) +
		`{}],"usage":{"prompt_tokens":800,"total_tokens":800}}`
	tests := []struct {
		name string
		body string
		want Usage
	}{
		{
			name: "anthropic tool_use input with a usage key before the real usage",
			body: `{"id":"msg_1","type":"message","model":"claude-sonnet-4-6","content":[{"type":"tool_use","input":{"usage":{"input_tokens":999},"model":"fake"}}],"usage":{"input_tokens":5,"cache_read_input_tokens":7,"output_tokens":2}}`,
			want: Usage{Model: "claude-sonnet-4-6", InputTokens: 12, OutputTokens: 2, Found: true},
		},
		{
			name: "litellm's openai shape for an anthropic model",
			body: `{"id":"chatcmpl-1","object":"chat.completion","model":"claude-sonnet-4-6","choices":[],"usage":{"prompt_tokens":1110,"completion_tokens":5,"total_tokens":1115,"prompt_tokens_details":{"cached_tokens":1000},"cache_creation_input_tokens":100,"cache_read_input_tokens":1000}}`,
			want: Usage{Model: "claude-sonnet-4-6", InputTokens: 1110, OutputTokens: 5, Found: true},
		},
		{
			name: "nested usage only",
			body: `{"model":"m","data":{"usage":{"input_tokens":999}}}`,
			want: Usage{Model: "m"},
		},
		{
			name: "pretty printed, usage first",
			body: "{\n  \"usage\" : {\n    \"prompt_tokens\" : 9,\n    \"completion_tokens\" : 4\n  },\n  \"model\" : \"gpt-4o\"\n}\n",
			want: Usage{Model: "gpt-4o", InputTokens: 9, OutputTokens: 4, Found: true},
		},
		{
			name: "usage null",
			body: `{"model":"m","usage":null}`,
			want: Usage{Model: "m"},
		},
		{
			name: "repeated keys: the last counts",
			body: `{"model":"a","usage":{"prompt_tokens":1,"completion_tokens":1},"model":"b","usage":{"prompt_tokens":2}}`,
			want: Usage{Model: "b", InputTokens: 2, Found: true},
		},
		{
			name: "escaped key",
			body: `{"\u006dodel":"m","\u0075sage":{"prompt_tokens":3}}`,
			want: Usage{Model: "m", InputTokens: 3, Found: true},
		},
		{
			name: "strings with quotes and brackets",
			body: `{"content":"}]}\"{[\\","model":"m\"x\u00e9","usage":{"note":"}\"}","prompt_tokens":3}}`,
			want: Usage{Model: "m\"xé", InputTokens: 3, Found: true},
		},
		{
			name: "truncated",
			body: `{"model":"m","usage":{"prompt_tokens":3,"completion_tok`,
			want: Usage{Model: "m"},
		},
		{
			name: "top-level array",
			body: `[{"model":"m","usage":{"prompt_tokens":3}}]`,
			want: Usage{},
		},
		{
			name: "model not a string",
			body: `{"model":7,"usage":{"prompt_tokens":3}}`,
			want: Usage{InputTokens: 3, Found: true},
		},
		{
			name: "error body",
			body: `{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}`,
			want: Usage{},
		},
		{
			name: "bigger than 4 MiB",
			body: big,
			want: Usage{Model: "text-embedding-3-large", InputTokens: 800, Found: true},
		},
		{
			name: "garbage",
			body: "\x00\xff}}]]\"\\",
			want: Usage{},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			body := []byte(tt.body)
			if ref, ok := referenceJSON(body); ok && ref != tt.want {
				t.Fatalf("test table disagrees with encoding/json: want %+v, encoding/json says %+v", tt.want, ref)
			}
			chunkings := map[string][][]byte{"whole": whole(body), "random": randomChunks(body, 1)}
			if len(body) < 10_000 {
				chunkings["byte by byte"] = bytewise(body)
			}
			for how, chunks := range chunkings {
				if got := meter(t, "application/json", chunks); got != tt.want {
					t.Errorf("%s: Usage() = %+v, want %+v", how, got, tt.want)
				}
			}
		})
	}
}

func TestModeOf(t *testing.T) {
	tests := []struct {
		contentType string
		want        mode
	}{
		{"text/event-stream", modeSSE},
		{"text/event-stream; charset=utf-8", modeSSE},
		{" TEXT/Event-Stream ;charset=utf-8", modeSSE},
		{"application/json", modeJSON},
		{"application/json; charset=utf-8", modeJSON},
		{"Application/JSON", modeJSON},
		{"application/problem+json", modeJSON},
		{"application/+json", modeIgnore},
		{"application/jsonx", modeIgnore},
		{"application/x-ndjson", modeIgnore},
		{"text/plain", modeIgnore},
		{"application/x-protobuf", modeIgnore},
		{"", modeIgnore},
	}
	for _, tt := range tests {
		t.Run(tt.contentType, func(t *testing.T) {
			if got := modeOf(tt.contentType); got != tt.want {
				t.Errorf("modeOf(%q) = %d, want %d", tt.contentType, got, tt.want)
			}
		})
	}
}

func TestMeterIgnoresOtherTypes(t *testing.T) {
	body := []byte(`{"model":"m","usage":{"prompt_tokens":3}}`)
	if got := meter(t, "text/plain", whole(body)); got != (Usage{}) {
		t.Errorf("text/plain: Usage() = %+v, want zero", got)
	}
	var m *Meter
	if n, err := m.Write(body); n != len(body) || err != nil {
		t.Errorf("nil Meter: Write = %d, %v; want %d, nil", n, err, len(body))
	}
	if got := m.Usage(); got != (Usage{}) {
		t.Errorf("nil Meter: Usage() = %+v, want zero", got)
	}
}

func TestMeterUsageEnds(t *testing.T) {
	m := NewMeter("application/json")
	m.Write([]byte(`{"usage":{"prompt_tokens":3}}`))
	first := m.Usage()
	if n, err := m.Write([]byte(`{"usage":{"prompt_tokens":5}}`)); n != 29 || err != nil {
		t.Fatalf("Write after Usage = %d, %v; want 29, nil", n, err)
	}
	if second := m.Usage(); second != first {
		t.Errorf("Usage() after a later Write = %+v, want the first answer %+v", second, first)
	}
}

func TestParseCount(t *testing.T) {
	tests := []struct {
		in     string
		want   int64
		wantOK bool
	}{
		{"0", 0, true},
		{"123", 123, true},
		{"99999999999999999999999", maxCount, true},
		{"-3", 0, true},
		{"2.9", 2, true},
		{"1e3", 1000, true},
		{"1e999", maxCount, true},
		{"-1e999", 0, true},
		{"null", 0, false},
		{`"12"`, 0, false},
		{"{}", 0, false},
		{"", 0, false},
		{"-", 0, false},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, ok := parseCount([]byte(tt.in))
			if got != tt.want || ok != tt.wantOK {
				t.Errorf("parseCount(%q) = %d, %v; want %d, %v", tt.in, got, ok, tt.want, tt.wantOK)
			}
		})
	}
}

// TestMeterCopiesLittle checks that complete lines are read where they lie:
// a stream written an event at a time leaves nothing carried over.
func TestMeterCopiesLittle(t *testing.T) {
	tc := demoCases[slices.IndexFunc(demoCases, func(c demoCase) bool { return c.name == "messages stream" })]
	_, body := demoCall(t, demoServer, tc.path, tc.streamBody())
	m := NewMeter("text/event-stream")
	for _, ev := range bytes.SplitAfter(body, []byte("\n\n")) {
		m.Write(ev)
		if len(m.sse.carry) != 0 {
			t.Fatalf("after writing a whole event, %d bytes are carried over", len(m.sse.carry))
		}
	}
	if diff := cmp.Diff(tc.want(t), m.Usage()); diff != "" {
		t.Errorf("Usage() (-want +got):\n%s", diff)
	}
}

// checkChunkings meters body cut every way that matters to the parser's
// fast paths (whole, byte by byte, at every split point, in random
// chunks), and against the reference decoder of its content type.
func checkChunkings(t *testing.T, ct string, body []byte, want Usage) {
	t.Helper()
	ref, ok := referenceJSON(body)
	if modeOf(ct) == modeSSE {
		ref, ok = referenceSSE(body)
	}
	if ok && ref != want {
		t.Fatalf("test table disagrees with the reference: want %+v, reference says %+v", want, ref)
	}
	chunkings := map[string][][]byte{"whole": whole(body), "byte by byte": bytewise(body)}
	for i := 1; i < len(body); i++ {
		chunkings["split at "+strconv.Itoa(i)] = splitAt(body, i)
	}
	for seed := range uint64(5) {
		chunkings["random chunks "+strconv.FormatUint(seed, 10)] = randomChunks(body, seed)
	}
	for how, chunks := range chunkings {
		if got := meter(t, ct, chunks); got != want {
			t.Errorf("%s: Usage() = %+v, want %+v", how, got, want)
		}
	}
}

// TestMeterJSONFastPaths covers what the bulk scanner and the hand-written
// decoder pass over or take in place: a value wanted lying in one write or
// split across several must give the same answer.
func TestMeterJSONFastPaths(t *testing.T) {
	long := strings.Repeat("k", maxKey)
	tests := []struct {
		name string
		body string
		want Usage
	}{
		{"usage first", `{"usage":{"prompt_tokens":7,"completion_tokens":3},"model":"m","choices":[]}`, Usage{Model: "m", InputTokens: 7, OutputTokens: 3, Found: true}},
		{"usage last", `{"model":"m","choices":[{"message":{"content":"hi"}}],"usage":{"input_tokens":7,"output_tokens":3}}`, Usage{Model: "m", InputTokens: 7, OutputTokens: 3, Found: true}},
		{"usage nested in objects and arrays does not count", `{"model":"m","a":{"usage":{"prompt_tokens":1}},"b":[{"usage":{"prompt_tokens":2}}],"c":[[{"usage":{}}]]}`, Usage{Model: "m"}},
		{"nested usage around the real one", `{"a":{"usage":{"prompt_tokens":1}},"usage":{"prompt_tokens":5},"b":{"usage":{"prompt_tokens":2}}}`, Usage{InputTokens: 5, Found: true}},
		{"braces, brackets and escaped quotes in strings", `{"content":"{\"usage\":{\"prompt_tokens\":9}} ]}[{ \\","model":"m","usage":{"note":"}{][\"\\\"","prompt_tokens":4,"x":"\\\\"}}`, Usage{Model: "m", InputTokens: 4, Found: true}},
		{"escapes of every kind in a skipped string", `{"t":"\b\f\n\r\t\/\\\"\u00e9\ud83d\ude00","usage":{"prompt_tokens":1}}`, Usage{InputTokens: 1, Found: true}},
		{"floats and exponents", `{"usage":{"prompt_tokens":1.5e1,"completion_tokens":2E2,"total_tokens":-0.0}}`, Usage{InputTokens: 15, OutputTokens: 200, Found: true}},
		{"nulls", `{"model":null,"usage":{"prompt_tokens":null,"completion_tokens":4,"input_tokens":null}}`, Usage{OutputTokens: 4, Found: true}},
		{"usage null after a usage", `{"usage":{"prompt_tokens":1},"usage":null}`, Usage{}},
		{"keys in any ASCII case", `{"usage":{"PROMPT_TOKENS":3,"Completion_Tokens":2}}`, Usage{InputTokens: 3, OutputTokens: 2, Found: true}},
		{"a Kelvin sign folds to k", "{\"usage\":{\"prompt_to\u212aens\":3}}", Usage{InputTokens: 3, Found: true}},
		{"escaped key inside usage", `{"usage":{"\u0070rompt_tokens":3}}`, Usage{InputTokens: 3, Found: true}},
		{"invalid usage object counts nothing", `{"model":"m","usage":{"prompt_tokens":3,}}`, Usage{Model: "m"}},
		{"control character in usage", "{\"usage\":{\"a\":\"\x01\",\"prompt_tokens\":3}}", Usage{}},
		{"model with escapes", `{"model":"gpt-\u0034o\"x"}`, Usage{Model: "gpt-4o\"x"}},
		{"model with invalid UTF-8", "{\"model\":\"m\xff\"}", Usage{Model: "m\uFFFD"}},
		{"model not a string", `{"model":["m"],"usage":{"prompt_tokens":1}}`, Usage{InputTokens: 1, Found: true}},
		{"key of maxKey bytes", `{"` + long + `":1,"usage":{"prompt_tokens":1}}`, Usage{InputTokens: 1, Found: true}},
		{"key longer than maxKey", `{"` + long + `x":{"usage":1},"model":"m"}`, Usage{Model: "m"}},
		{"whitespace everywhere", " \n{ \"model\" :\t\"m\" ,\r\n \"usage\" : { \"prompt_tokens\" : 2 } } \n", Usage{Model: "m", InputTokens: 2, Found: true}},
		{"scalar values at the top level", `{"n":12345,"t":true,"f":false,"z":null,"model":"m","usage":{"prompt_tokens":1}}`, Usage{Model: "m", InputTokens: 1, Found: true}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			checkChunkings(t, "application/json", []byte(tt.body), tt.want)
		})
	}
	t.Run("usage larger than maxCapture", func(t *testing.T) {
		body := `{"model":"m","usage":{"pad":"` + strings.Repeat("x", maxCapture) + `","prompt_tokens":1}}`
		want := Usage{Model: "m"}
		for how, chunks := range map[string][][]byte{"whole": whole([]byte(body)), "random": randomChunks([]byte(body), 1)} {
			if got := meter(t, "application/json", chunks); got != want {
				t.Errorf("%s: Usage() = %+v, want %+v", how, got, want)
			}
		}
	})
}

// TestMeterSSEFastPaths covers events read where they lie in a write and
// events copied because they have several data lines or span writes.
func TestMeterSSEFastPaths(t *testing.T) {
	tests := []struct {
		name string
		body string
		want Usage
	}{
		{"usage object with whitespace before its brace", "data: {\"model\":\"m\",\"usage\" :\t{\"prompt_tokens\":2}}\n\n", Usage{Model: "m", InputTokens: 2, Found: true}},
		{"usage object split over data lines", "data: {\"usage\":\ndata: {\"prompt_tokens\":2}}\n\n", Usage{InputTokens: 2, Found: true}},
		{"usage text in a string with a brace", "data: {\"model\":\"m\",\"text\":\"\\\"usage\\\":{\\\"prompt_tokens\\\":5}\"}\n\ndata: {\"type\":\"x\"}\n\n", Usage{Model: "m"}},
		{"the model of a later event without usage is not read", "data: {\"model\":\"a\"}\n\ndata: {\"model\":\"b\"}\n\n", Usage{Model: "a"}},
		{"a usage event names the model again", "data: {\"model\":\"a\"}\n\ndata: {\"model\":\"b\",\"usage\":{\"prompt_tokens\":1}}\n\n", Usage{Model: "b", InputTokens: 1, Found: true}},
		{"keys in another case are not looked for", "data: {\"MODEL\":\"m\",\"Usage\":{\"PROMPT_TOKENS\":4}}\n\n", Usage{}},
		{"keys in another case in an event that is read", "data: {\"MODEL\":\"m\",\"usage\":{\"PROMPT_TOKENS\":4}}\n\n", Usage{Model: "m", InputTokens: 4, Found: true}},
		{"escaped key", "data: {\"\\u006dodel\":\"m\",\"usage\":{\"prompt_tokens\":4}}\n\n", Usage{Model: "m", InputTokens: 4, Found: true}},
		{"invalid event counts nothing", "data: {\"model\":\"m\",\"usage\":{\"prompt_tokens\":4}}x\n\n", Usage{}},
		{"usage of another type in a usage event", "data: {\"usage\":{\"prompt_tokens\":1},\"message\":{\"usage\":\"x\"}}\n\n", Usage{InputTokens: 1, Found: true}},
		{"message null after a message", "data: {\"message\":{\"model\":\"m\",\"usage\":{\"input_tokens\":2}},\"message\":null,\"usage\":{}}\n\n", Usage{Found: true}},
		{"CRLF lines", "event: message_start\r\ndata: {\"message\":{\"model\":\"m\",\"usage\":{\"input_tokens\":2,\"output_tokens\":1}}}\r\n\r\ndata: {\"usage\":{\"output_tokens\":9}}\r\n\r\n", Usage{Model: "m", InputTokens: 2, OutputTokens: 9, Found: true}},
		{"CR lines", "data: {\"usage\":{\"prompt_tokens\":1}}\r\rdata: {\"usage\":{\"completion_tokens\":2}}\r\r", Usage{InputTokens: 1, OutputTokens: 2, Found: true}},
		{"a field named like data", "datax: {\"usage\":{\"prompt_tokens\":1}}\ndata\n\n", Usage{}},
		{"data without a colon is an empty data line", "data\ndata: {\"usage\":{\"prompt_tokens\":1}}\n\n", Usage{InputTokens: 1, Found: true}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			checkChunkings(t, "text/event-stream", []byte(tt.body), tt.want)
		})
	}
}
