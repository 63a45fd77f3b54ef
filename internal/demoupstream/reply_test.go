package demoupstream

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestSnippet(t *testing.T) {
	tests := []struct {
		name string
		in   string
		n    int
		want string
	}{
		{name: "short", in: "hi there", n: 60, want: "hi there"},
		{name: "white space", in: "  a\n\n\tb   c  ", n: 60, want: "a b c"},
		{name: "exact", in: "abcde", n: 5, want: "abcde"},
		{name: "cut", in: "abcdef", n: 5, want: "abcde…"},
		{name: "cut at a space", in: "abcde fgh", n: 5, want: "abcde…"},
		{name: "runes", in: strings.Repeat("é", 70), n: 60, want: strings.Repeat("é", 60) + "…"},
		{name: "trailing space is no more", in: "abcde   ", n: 5, want: "abcde"},
		{name: "empty", in: " \n ", n: 60, want: ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := snippet(tt.in, tt.n); got != tt.want {
				t.Errorf("snippet(%q, %d) = %q, want %q", tt.in, tt.n, got, tt.want)
			}
		})
	}
}

func TestReplyDeltas(t *testing.T) {
	tests := []struct {
		name       string
		chunks     int
		limit      int
		wantDeltas int
		wantWords  int
	}{
		{name: "default", chunks: 8, wantDeltas: 8, wantWords: 13},
		{name: "one", chunks: 1, wantDeltas: 1, wantWords: 13},
		{name: "more chunks than words pads the reply", chunks: 50, wantDeltas: 50, wantWords: 61},
		{name: "max tokens below chunks", chunks: 8, limit: 5, wantDeltas: 5, wantWords: 5},
		{name: "max tokens above words", chunks: 8, limit: 500, wantDeltas: 8, wantWords: 13},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			full := newReply("a@b", "m", "hi", tt.chunks)
			rp, cut := full.truncate(tt.limit)
			if cut != (tt.limit > 0 && tt.limit < full.words()) {
				t.Errorf("truncate(%d) of %d words reported cut %v", tt.limit, full.words(), cut)
			}
			ds := rp.deltas(tt.chunks)
			if len(ds) != tt.wantDeltas || rp.words() != tt.wantWords {
				t.Errorf("newReply(…, %d).truncate(%d): %d deltas, %d words; want %d, %d: %q", tt.chunks, tt.limit, len(ds), rp.words(), tt.wantDeltas, tt.wantWords, ds)
			}
			if got := strings.Join(ds, ""); got != rp.text {
				t.Errorf("deltas join to %q, want the text %q", got, rp.text)
			}
			if n := len(strings.Fields(rp.text)); n != rp.words() {
				t.Errorf("words() = %d, strings.Fields counts %d in %q", rp.words(), n, rp.text)
			}
			for i, d := range ds {
				if strings.TrimSpace(d) == "" {
					t.Errorf("delta %d is empty: %q", i, ds)
				}
			}
		})
	}
}

func TestReadPrompt(t *testing.T) {
	tests := []struct {
		name   string
		system string
		msgs   string
		want   prompt
	}{
		{name: "strings", system: `"sys"`, msgs: `[{"role":"user","content":"abcd"}]`, want: prompt{bytes: 7, ask: "abcd"}},
		{name: "last user wins", msgs: `[{"role":"user","content":"one"},{"role":"assistant","content":"two"},{"role":"user","content":"three"}]`, want: prompt{bytes: 11, ask: "three"}},
		{name: "assistant last", msgs: `[{"role":"user","content":"one"},{"role":"assistant","content":"two"}]`, want: prompt{bytes: 6, ask: "one"}},
		{name: "reminders skipped", msgs: `[{"role":"user","content":[{"type":"text","text":"ask"},{"type":"text","text":"<system-reminder>r</system-reminder>"}]}]`, want: prompt{bytes: 39, ask: "ask"}},
		{name: "tool result", msgs: `[{"role":"user","content":[{"type":"tool_result","tool_use_id":"x","content":"out"}]}]`, want: prompt{bytes: 3, ask: "out"}},
		{name: "image only", msgs: `[{"role":"user","content":[{"type":"image","source":{"type":"base64","data":"AAAA"}}]}]`, want: prompt{}},
		{name: "null content", msgs: `[{"role":"assistant","content":null,"tool_calls":[]}]`, want: prompt{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var msgs []message
			if err := json.Unmarshal([]byte(tt.msgs), &msgs); err != nil {
				t.Fatal(err)
			}
			var system json.RawMessage
			if tt.system != "" {
				system = json.RawMessage(tt.system)
			}
			got, err := readPrompt(system, msgs)
			if err != nil {
				t.Fatalf("readPrompt(%s, %s): %v", tt.system, tt.msgs, err)
			}
			if diff := cmp.Diff(tt.want, got, cmp.AllowUnexported(prompt{})); diff != "" {
				t.Errorf("readPrompt(%s, %s) (-want +got):\n%s", tt.system, tt.msgs, diff)
			}
		})
	}
	if _, err := readPrompt(json.RawMessage(`42`), nil); err == nil {
		t.Errorf("readPrompt(42, nil): no error")
	}
}
