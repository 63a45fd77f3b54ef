package demoupstream

import (
	"encoding/json"
	"strings"
	"testing"
)

func TestAppendString(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want string
	}{
		{name: "plain", in: "hello", want: `"hello"`},
		{name: "empty", in: "", want: `""`},
		{name: "quotes and backslash", in: `a"b\c`, want: `"a\"b\\c"`},
		{name: "control", in: "a\nb\tc\rd\x00e\x1f", want: `"a\nb\tc\rd\u0000e\u001f"`},
		{name: "html kept", in: "<a>&", want: `"<a>&"`},
		{name: "unicode", in: "héllo …", want: `"héllo …"`},
		{name: "line separators", in: "a\u2028b\u2029c", want: `"a\u2028b\u2029c"`},
		{name: "invalid utf-8", in: "a\xffb", want: `"a\ufffdb"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := string(appendString(nil, tt.in)); got != tt.want {
				t.Errorf("appendString(%q) = %s, want %s", tt.in, got, tt.want)
			}
		})
	}
}

// FuzzAppendString checks that every string comes back from encoding/json
// as itself, with each invalid byte made U+FFFD.
func FuzzAppendString(f *testing.F) {
	for _, s := range []string{"", "x", "\"\\\n", "\xff\xfe", "\u2028", "ü€😀", "\x00\x7f"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		enc := appendString(nil, s)
		var got string
		if err := json.Unmarshal(enc, &got); err != nil {
			t.Fatalf("appendString(%q) = %s: not JSON: %v", s, enc, err)
		}
		if want := validRunes(s); got != want {
			t.Errorf("appendString(%q) decodes to %q, want %q", s, got, want)
		}
	})
}

// validRunes replaces each invalid byte of s with U+FFFD, as encoding/json does.
func validRunes(s string) string {
	var b strings.Builder
	for _, r := range s {
		b.WriteRune(r)
	}
	return b.String()
}

func TestDisplayName(t *testing.T) {
	tests := []struct{ id, want string }{
		{"claude-sonnet-4-6", "Claude Sonnet 4.6"},
		{"claude-opus-4-7", "Claude Opus 4.7"},
		{"claude-haiku-4-5-20251001", "Claude Haiku 4.5"},
		{"gpt-4o-mini", "gpt-4o-mini"},
	}
	for _, tt := range tests {
		t.Run(tt.id, func(t *testing.T) {
			if got := displayName(tt.id); got != tt.want {
				t.Errorf("displayName(%q) = %q, want %q", tt.id, got, tt.want)
			}
		})
	}
}
