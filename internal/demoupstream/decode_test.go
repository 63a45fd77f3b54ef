package demoupstream

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// decoded is what a handler takes from a body: a messages body's fields,
// or a chat body's (MaxTokens for messages; IncludeUsage and Limit for
// chat), the prompt, or the error answer.
type decoded struct {
	Model        string
	Stream       bool
	MaxTokens    *int
	IncludeUsage bool
	Limit        int
	Prompt       prompt
	Err          *apiError
}

// decode reads body with decodeMessages, or with decodeChat.
func decode(body []byte, chat bool) decoded {
	if chat {
		req, p, e := decodeChat(body)
		return decoded{Model: req.Model, Stream: req.Stream, IncludeUsage: req.IncludeUsage, Limit: req.Limit, Prompt: p, Err: e}
	}
	req, p, e := decodeMessages(body)
	return decoded{Model: req.Model, Stream: req.Stream, MaxTokens: req.MaxTokens, Prompt: p, Err: e}
}

// decodeStd reads body as this package did with encoding/json, before it
// read bodies by hand: the reference that the reader must match. Its
// types are declared in here under their old names, which encoding/json's
// type errors quote.
func decodeStd(body []byte, chat bool) decoded {
	type message struct {
		Role    string          `json:"role"`
		Content json.RawMessage `json:"content"`
	}
	type block struct {
		Type    string          `json:"type"`
		Text    string          `json:"text"`
		Content json.RawMessage `json:"content"`
	}
	type messagesRequest struct {
		Model     string          `json:"model"`
		Messages  []message       `json:"messages"`
		System    json.RawMessage `json:"system"`
		Stream    bool            `json:"stream"`
		MaxTokens *int            `json:"max_tokens"`
	}
	type streamOptions struct {
		IncludeUsage bool `json:"include_usage"`
	}
	type chatRequest struct {
		Model               string         `json:"model"`
		Messages            []message      `json:"messages"`
		Stream              bool           `json:"stream"`
		StreamOptions       *streamOptions `json:"stream_options"`
		MaxTokens           *int           `json:"max_tokens"`
		MaxCompletionTokens *int           `json:"max_completion_tokens"`
	}

	var walkText func(content json.RawMessage, fn func(string)) error
	walkText = func(content json.RawMessage, fn func(string)) error {
		c := trimSpace(content)
		if len(c) == 0 || string(c) == "null" {
			return nil
		}
		switch c[0] {
		case '"':
			var s string
			if err := json.Unmarshal(c, &s); err != nil {
				return fmt.Errorf("decode content: %w", err)
			}
			fn(s)
			return nil
		case '[':
			var blocks []block
			if err := json.Unmarshal(c, &blocks); err != nil {
				return fmt.Errorf("decode content blocks: %w", err)
			}
			for _, b := range blocks {
				if b.Text != "" {
					fn(b.Text)
				}
				if err := walkText(b.Content, fn); err != nil {
					return err
				}
			}
			return nil
		default:
			return errContent
		}
	}
	readPrompt := func(system json.RawMessage, msgs []message) (prompt, error) {
		var p prompt
		if err := walkText(system, func(t string) { p.bytes += len(t) }); err != nil {
			return prompt{}, fmt.Errorf("system: %w", err)
		}
		for i, m := range msgs {
			var ask, anyText string
			err := walkText(m.Content, func(t string) {
				p.bytes += len(t)
				if m.Role != "user" || strings.TrimSpace(t) == "" {
					return
				}
				anyText = t
				if !strings.HasPrefix(strings.TrimSpace(t), "<system-reminder>") {
					ask = t
				}
			})
			if err != nil {
				return prompt{}, fmt.Errorf("messages.%d: %w", i, err)
			}
			if m.Role == "user" {
				if ask == "" {
					ask = anyText
				}
				p.ask = ask
			}
		}
		return p, nil
	}
	fail := func(e apiError) decoded { return decoded{Err: &e} }

	if !chat { // decodeMessages
		var req messagesRequest
		if err := json.Unmarshal(body, &req); err != nil {
			return fail(errInvalidJSON(err))
		}
		if req.Model == "" {
			return fail(errInvalid("model: Field required"))
		}
		p, err := readPrompt(req.System, req.Messages)
		if err != nil {
			return fail(errInvalid(err.Error()))
		}
		return decoded{Model: req.Model, Stream: req.Stream, MaxTokens: req.MaxTokens, Prompt: p}
	}
	// chatCompletions, up to its reply
	var req chatRequest
	if err := json.Unmarshal(body, &req); err != nil {
		return fail(errInvalidJSON(err))
	}
	if req.Model == "" {
		return fail(errInvalid("you must provide a model parameter"))
	}
	limit, e := maxTokens(namedLimit{"max_completion_tokens", req.MaxCompletionTokens}, namedLimit{"max_tokens", req.MaxTokens})
	if e != nil {
		return fail(*e)
	}
	p, err := readPrompt(nil, req.Messages)
	if err != nil {
		return fail(errInvalid(err.Error()))
	}
	includeUsage := req.StreamOptions != nil && req.StreamOptions.IncludeUsage
	return decoded{Model: req.Model, Stream: req.Stream, IncludeUsage: includeUsage, Limit: limit, Prompt: p}
}

// checkDecode fails tb unless both decoders read body alike, as a messages
// body and as a chat body.
func checkDecode(tb testing.TB, body []byte) {
	tb.Helper()
	for _, chat := range []bool{false, true} {
		want, got := decodeStd(body, chat), decode(body, chat)
		if diff := cmp.Diff(want, got, cmp.AllowUnexported(prompt{}, apiError{})); diff != "" {
			tb.Errorf("decode(%q, chat %v) differs from encoding/json's (-want +got):\n%s", body, chat, diff)
		}
	}
}

// decodeCases are bodies on which the reader must do what encoding/json
// did: the tests' bodies, and the corners of JSON and of encoding/json.
var decodeCases = []struct{ name, body string }{
	{"claude code", claudeCodeBody},
	{"claude code 4k", string(ClaudeCodeBody(4 << 10))},
	{"chat", chatBody},
	{"chat parts", `{"model":"gpt-4o","messages":[{"role":"user","content":[{"type":"text","text":"What is in\n\n this   image?"},{"type":"image_url","image_url":{"url":"https://example.com/a.png"}}]}]}`},
	{"chat limits", `{"model":"gpt-4o-mini","max_tokens":50,"max_completion_tokens":3,"messages":[{"role":"user","content":"hi"}]}`},
	{"chat stream options", `{"stream":true,"max_tokens":2,"stream_options":{"include_usage":true},"model":"m","messages":[]}`},
	{"stream options merge", `{"model":"m","stream_options":{"include_usage":true},"stream_options":{}}`},
	{"stream options null", `{"model":"m","stream_options":{"include_usage":true},"stream_options":null,"stream_options":{}}`},
	{"stream options wrong", `{"model":"m","stream_options":[true],"stream_options":{"include_usage":1}}`},
	{"include_usage wrong", `{"model":"m","stream_options":{"include_usage":"yes"}}`},
	{"include_usage null", `{"model":"m","stream_options":{"include_usage":true},"stream_options":{"include_usage":null,"x":1}}`},
	{"null content", `{"model":"m","messages":[{"role":"user","content":"first"},{"role":"assistant","content":null},{"role":"user","content":"last"}]}`},
	{"reminders only", `{"model":"m","messages":[{"role":"user","content":[{"type":"text","text":"<system-reminder>x</system-reminder>"}]},{"role":"assistant","content":"ok"},{"role":"user","content":[{"type":"tool_result","tool_use_id":"t1","content":[{"type":"text","text":"done"}]}]}]}`},
	{"reminder escaped", `{"model":"m","messages":[{"role":"user","content":[{"text":"ask"},{"text":" \u000b\u00a0\u003csystem-reminder>r"},{"text":"\u2028"}]}]}`},
	{"blank texts", `{"model":"m","messages":[{"role":"user","content":[{"text":"\u0085 \t"},{"text":""}]},{"role":"user","content":"  "}]}`},
	{"image only", `{"model":"m","messages":[{"role":"user","content":[{"type":"image","source":{"type":"base64","data":"AAAA"}}]}]}`},
	{"system string", `{"model":"m","system":"sys","messages":[{"role":"user","content":"abcd"}]}`},
	{"system number", `{"model":"m","system":42}`},
	{"system blocks error", `{"model":"m","system":[{"text":1}],"messages":[{"role":"user","content":{}}]}`},
	{"content object", `{"model":"m","messages":[{"role":"user","content":{}}]}`},
	{"content true", `{"model":"m","messages":[{"role":"user","content":"a"},{"role":"user","content":true}]}`},
	{"block not an object", `{"model":"m","messages":[{"role":"user","content":["a",1,true,[],null]}]}`},
	{"block field types", `{"model":"m","messages":[{"role":"user","content":[{"type":1,"text":{}},{"text":[1]}]}]}`},
	{"nested error comes after direct one", `{"model":"m","messages":[{"role":"user","content":[{"content":{}},{"text":false}]}]}`},
	{"nested error", `{"model":"m","messages":[{"role":"user","content":[{"text":"a","content":[{"text":"b","content":[{"content":5}]}]}]}]}`},
	{"nested texts", `{"model":"m","messages":[{"role":"user","content":[{"content":[{"text":"inner"}],"text":"outer"},{"type":"tool_result","content":"  "}]}]}`},
	{"duplicate keys", `{"model":"a","model":"b","stream":true,"stream":false,"max_tokens":1,"max_tokens":2,"system":"x","system":null}`},
	{"duplicate messages", `{"model":"m","messages":[{"role":"user","content":"a"},{"role":"user","content":"b"},{"role":"assistant","content":"c"}],"messages":[{"content":"d"}],"messages":[null,{"content":"e"},{}]}`},
	{"messages emptied", `{"model":"m","messages":[{"role":"user","content":"a"}],"messages":[],"messages":[{"content":"b"}]}`},
	{"messages nulled", `{"model":"m","messages":[{"role":"user","content":"a"}],"messages":null,"messages":[{"content":"b"}]}`},
	{"duplicate block keys", `{"model":"m","messages":[{"role":"user","content":[{"text":"a","text":null,"content":"b","content":null}],"role":"assistant","role":null,"role":"user"}]}`},
	{"case variants", `{"Model":"m","MESSAGES":[{"Role":"user","CONTENT":[{"TEXT":"hi","Content":"there"}]}],"Stream":true,"Max_Tokens":3}`},
	{"unicode case", "{\"model\":\"m\",\"max_to\u212aens\":3,\"\u017ftream\":true,\"me\u017f\u017fages\":[{\"role\":\"user\",\"content\":\"k\"}]}"},
	{"escaped keys", `{"\u006dodel":"m","mess\u0061ges":[{"r\u006fle":"\u0075ser","cont\u0065nt":"x"}],"max_to\u212aens":2}`},
	{"keys not quite", `{"model ":"x","model":"m","modeł":"y","messages\u0000":1}`},
	{"escapes", `{"model":"m\"\\\/\b\f\n\r\t","messages":[{"role":"user","content":"a\u00e9\u20ac\ud83d\ude00\u0000"}]}`},
	{"lone surrogates", `{"model":"\ud800","messages":[{"role":"user","content":"\udc00x\ud83d\ud83d\ude00\ud800\u0041\ud800\\u"}]}`},
	{"surrogate then bad escape", `{"model":"m","messages":[{"role":"user","content":"\ud800\u12G4"}]}`},
	{"invalid utf-8", "{\"model\":\"m\xff\",\"messages\":[{\"role\":\"user\",\"content\":\"a\xffb\xed\xa0\x80c\xc3\"},{\"role\":\"us\xc3\",\"content\":\"x\"}]}"},
	{"invalid utf-8 key", "{\"model\":\"m\",\"messages\xff\":1}"},
	{"max_tokens 1e2", `{"model":"m","max_tokens":1e2}`},
	{"max_tokens 1.0", `{"model":"m","max_tokens":1.0}`},
	{"max_tokens -1", `{"model":"m","max_tokens":-1,"messages":[]}`},
	{"max_tokens -0", `{"model":"m","max_tokens":-0,"max_completion_tokens":7}`},
	{"max_tokens huge", `{"model":"m","max_tokens":9223372036854775808}`},
	{"max_tokens min", `{"model":"m","max_tokens":-9223372036854775808}`},
	{"max_tokens string", `{"model":"m","max_tokens":"5"}`},
	{"max_completion_tokens 0", `{"model":"m","max_completion_tokens":0,"max_tokens":5}`},
	{"null values", `{"model":null,"messages":null,"system":null,"stream":null,"max_tokens":null,"stream_options":null}`},
	{"nulls keep values", `{"model":"m","model":null,"stream":true,"stream":null,"max_tokens":4,"max_tokens":null}`},
	{"top-level null", `null`},
	{"top-level array", `[{"model":"m"}]`},
	{"top-level string", `"x"`},
	{"top-level number", `12`},
	{"top-level false", ` false `},
	{"wrong types", `{"model":1,"messages":{},"stream":"yes","max_tokens":true}`},
	{"model object", `{"model":{"a":1}}`},
	{"model array", `{"model":[],"stream":[]}`},
	{"messages string", `{"model":"m","messages":"hi"}`},
	{"message not an object", `{"model":"m","messages":[1,"x",true,[]]}`},
	{"role not a string", `{"model":"m","messages":[{"role":7,"content":"x"}]}`},
	{"type error then syntax error", `{"model":1,"x":tru}`},
	{"missing model", `{"messages":[]}`},
	{"empty", ``},
	{"space", " \t\r\n"},
	{"trailing data", `{"model":"m"} x`},
	{"two values", `{"model":"m"}{}`},
	{"trailing space", "{\"model\":\"m\"}\n\t "},
	{"spaced out", " {\n \"model\" :\t\"m\" ,\r\n\"messages\" : [ { \"role\" : \"user\" , \"content\" : [ { \"text\" : \"a\" } ] } ] } "},
	{"byte order mark", "\xef\xbb\xbf{\"model\":\"m\"}"},
	{"form feed is not space", "{\"model\":\"m\"\f}"},
	{"not json", `not json`},
	{"open", `{"model":`},
	{"open array", `[`},
	{"trailing comma", `{"model":"m",}`},
	{"array trailing comma", `{"model":"m","x":[1,2,]}`},
	{"leading zero", `{"model":"m","x":01}`},
	{"minus", `{"model":"m","x":-}`},
	{"dot", `{"model":"m","x":1.}`},
	{"exponent", `{"model":"m","x":1e}`},
	{"exponent sign", `{"model":"m","x":1e+}`},
	{"number forms", `{"model":"m","x":[0,-0,1.5e+10,2E-3,-0.0e0]}`},
	{"bad literal", `{"model":"m","x":tru}`},
	{"bad literal null", `{"model":"m","x":nul`},
	{"control char", "{\"model\":\"m\x01\"}"},
	{"bad escape", `{"model":"m\a"}`},
	{"short unicode escape", `{"model":"m\u12"}`},
	{"end in escape", `{"model":"m\`},
	{"end in unicode escape", `{"model":"m\u00`},
	{"end in string", `{"model":"m`},
	{"colon missing", `{"model" "m"}`},
	{"comma missing", `{"model":"m" "x":1}`},
	{"key not a string", `{model:"m"}`},
	{"single quote", `{'model':'m'}`},
	{"high byte", "{\"model\":\"m\",\"x\":\xff}"},
	{"deep", `{"model":"m","x":` + strings.Repeat("[", 200) + strings.Repeat("]", 200) + `}`},
	{"deep content", `{"model":"m","messages":[{"role":"user","content":` + strings.Repeat(`[{"content":`, 50) + `"deep"` + strings.Repeat(`}]`, 50) + `}]}`},
	{"max depth", `{"x":` + strings.Repeat("[", maxDepth-1) + strings.Repeat("]", maxDepth-1) + `,"model":"m"}`},
	{"beyond max depth", `{"x":` + strings.Repeat("[", maxDepth) + strings.Repeat("]", maxDepth) + `,"model":"m"}`},
	{"beyond max depth in content", `{"model":"m","messages":[{"content":` + strings.Repeat(`[{"content":`, maxDepth/2) + `0` + strings.Repeat(`}]`, maxDepth/2) + `}]}`},
}

func TestDecodeLikeEncodingJSON(t *testing.T) {
	for _, tt := range decodeCases {
		t.Run(tt.name, func(t *testing.T) {
			checkDecode(t, []byte(tt.body))
		})
	}
	t.Run("bench body", func(t *testing.T) {
		checkDecode(t, ClaudeCodeBody(100<<10))
	})
}

// FuzzDecodeMessages checks that decodeMessages and decodeChat read every
// body as encoding/json did: the same fields, prompt and error answer.
func FuzzDecodeMessages(f *testing.F) {
	for _, tt := range decodeCases {
		if len(tt.body) < 8<<10 { // keep mutating cheap
			f.Add([]byte(tt.body))
		}
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		checkDecode(t, body)
	})
}
