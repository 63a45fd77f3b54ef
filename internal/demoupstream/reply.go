package demoupstream

import (
	"net/http"
	"strings"
	"unicode"
)

// trimSpace trims JSON white space from both ends of b.
func trimSpace(b []byte) []byte {
	for len(b) > 0 && (b[0] == ' ' || b[0] == '\n' || b[0] == '\r' || b[0] == '\t') {
		b = b[1:]
	}
	for len(b) > 0 && (b[len(b)-1] == ' ' || b[len(b)-1] == '\n' || b[len(b)-1] == '\r' || b[len(b)-1] == '\t') {
		b = b[:len(b)-1]
	}
	return b
}

// prompt is what a reply needs to know about a request's messages.
type prompt struct {
	bytes int    // bytes of all message (and system) text
	ask   string // the text of the last user message worth quoting
}

// inputTokens is the demo's token count of the prompt: bytes / 4, at least 1.
func (p prompt) inputTokens() int { return max(1, p.bytes/4) }

// snippetRunes is how much of the question a reply quotes.
const snippetRunes = 60

// snippet returns the first n runes of s with runs of white space made one
// space, and "…" when s goes on.
func snippet(s string, n int) string {
	var b strings.Builder
	space, count := false, 0
	for _, r := range s { // invalid UTF-8 arrives as U+FFFD
		if unicode.IsSpace(r) {
			space = count > 0
			continue
		}
		need := 1
		if space {
			need = 2
		}
		if count+need > n {
			b.WriteString("…")
			break
		}
		if space {
			b.WriteByte(' ')
			count++
			space = false
		}
		b.WriteRune(r)
		count++
	}
	return b.String()
}

// filler pads a reply that has fewer words than Options.Chunks.
const filler = " This sentence pads the demo reply to the configured number of chunks."

// reply is the demo's answer, split into words for max_tokens and chunks.
type reply struct {
	text   string
	starts []int // byte offset of each word in text
}

// newReply builds the reply to a request from who (the identity header's
// value) asking model the question ask, with at least minWords words.
func newReply(who, model, ask string, minWords int) reply {
	if who == "" {
		who = "anonymous"
	}
	q := snippet(ask, snippetRunes)
	if q == "" {
		q = "(an empty message)"
	}
	text := "Hello " + who + "! This is the llmgate demo upstream; you asked model " + model + ": " + q
	rp := reply{text: text, starts: wordStarts(text)}
	for len(rp.starts) < minWords {
		rp.text += filler
		rp.starts = wordStarts(rp.text)
	}
	return rp
}

// wordStarts returns the byte offset of each white-space-separated word.
func wordStarts(s string) []int {
	starts := make([]int, 0, 32)
	inWord := false
	for i, r := range s {
		if unicode.IsSpace(r) {
			inWord = false
			continue
		}
		if !inWord {
			starts = append(starts, i)
			inWord = true
		}
	}
	return starts
}

// words is the reply's output token count.
func (rp reply) words() int { return len(rp.starts) }

// truncate keeps the first limit words (limit ≤ 0: no limit) and reports
// whether it cut any.
func (rp reply) truncate(limit int) (reply, bool) {
	if limit <= 0 || limit >= len(rp.starts) {
		return rp, false
	}
	end := rp.starts[limit]
	text := strings.TrimRightFunc(rp.text[:end], unicode.IsSpace)
	return reply{text: text, starts: rp.starts[:limit]}, true
}

// deltas splits the reply into at most n pieces of whole words (with the
// space before each word) whose concatenation is the text.
func (rp reply) deltas(n int) []string {
	w := len(rp.starts)
	if w == 0 {
		return []string{rp.text}
	}
	n = min(n, w)
	out := make([]string, n)
	from := 0
	for i := range n {
		to := len(rp.text)
		if i < n-1 {
			to = rp.starts[(i+1)*w/n]
		}
		out[i] = rp.text[from:to]
		from = to
	}
	return out
}

// who is the identity the gateway attached to r.
func (s *Server) who(r *http.Request) string {
	if v := r.Header[s.identity]; len(v) > 0 {
		return v[0]
	}
	return ""
}
