package usage

import (
	"bytes"
	"errors"
	"io"
	"strconv"
	"strings"
)

// Usage is what one response reported.
type Usage struct {
	// Model is the response body's "model", empty when it named none.
	Model string
	// InputTokens is OpenAI's prompt_tokens (cached tokens included), or
	// Anthropic's input_tokens plus cache_creation_input_tokens plus
	// cache_read_input_tokens.
	InputTokens int64
	// OutputTokens is OpenAI's completion_tokens or Anthropic's
	// output_tokens (the last, cumulative, value of a stream).
	OutputTokens int64
	// Found reports that a usage object was seen.
	Found bool
}

// Limits on what a Meter keeps in memory.
const (
	// maxLine is the longest SSE line kept; longer lines are skipped and
	// their event ignored.
	maxLine = 4 << 20
	// maxEvent is the most data one SSE event may carry before it is ignored.
	maxEvent = 4 << 20
	// maxCapture is the largest top-level "model" or "usage" value of a JSON
	// body that is decoded.
	maxCapture = 64 << 10
	// maxCount caps a token count, so that sums cannot overflow.
	maxCount = 1 << 50
)

type mode uint8

const (
	modeIgnore mode = iota
	modeSSE
	modeJSON
)

// Meter reads the usage of one response from its body as it is written,
// in any chunking. Write always accepts everything and never blocks; the
// work per chunk is a scan for line ends (SSE) or a scan of the document's
// structure that passes over strings and nested values in bulk (JSON);
// only events that can carry usage or the model, and a JSON body's
// top-level "model" and "usage", are decoded, by a hand-written reader
// that gives what encoding/json gives (decode.go). A Meter is not safe for
// concurrent use. A nil *Meter accepts writes and reports no usage.
type Meter struct {
	mode   mode
	done   bool
	broken bool // a Write panicked: metering stopped (tests check it never happens)
	t      tally
	sse    sseState
	js     jsonScan
}

var _ io.Writer = (*Meter)(nil)

// NewMeter returns a Meter for a body of the given Content-Type:
// "text/event-stream" is read as server-sent events, "application/json"
// (or a "+json" type) as one JSON document; any other type is ignored.
func NewMeter(contentType string) *Meter {
	return &Meter{mode: modeOf(contentType)}
}

func modeOf(ct string) mode {
	if i := strings.IndexByte(ct, ';'); i >= 0 {
		ct = ct[:i]
	}
	ct = strings.TrimSpace(ct)
	switch {
	case strings.EqualFold(ct, "text/event-stream"):
		return modeSSE
	case strings.EqualFold(ct, "application/json"),
		len(ct) > len("application/+json") && strings.EqualFold(ct[:len("application/")], "application/") &&
			strings.EqualFold(ct[len(ct)-len("+json"):], "+json"):
		return modeJSON
	}
	return modeIgnore
}

// Write reads p. It always returns len(p), nil. Writes after Usage are
// ignored.
func (m *Meter) Write(p []byte) (int, error) {
	if m == nil || m.mode == modeIgnore || m.done {
		return len(p), nil
	}
	defer m.guard()
	switch m.mode {
	case modeSSE:
		m.writeSSE(p)
	case modeJSON:
		m.writeJSON(p)
	}
	return len(p), nil
}

// guard turns a panic in the parser into the end of metering: a bug here
// must never break a response.
func (m *Meter) guard() {
	if recover() != nil {
		m.mode = modeIgnore
		m.broken = true
	}
}

// Usage returns what the body reported. Call it once the body has ended:
// it ends the Meter (an SSE event not yet closed by a blank line counts).
func (m *Meter) Usage() Usage {
	if m == nil {
		return Usage{}
	}
	if !m.done {
		m.done = true
		if m.mode == modeSSE {
			func() {
				defer m.guard()
				m.finishSSE()
			}()
		}
	}
	return m.t.usage()
}

// tally accumulates usage objects. Each field present in a later object
// replaces the earlier value: Anthropic's message_delta counts are
// cumulative, and its input counts stay those of message_start unless
// message_delta repeats them.
type tally struct {
	model      string
	found      bool
	prompt     int64 // OpenAI prompt_tokens: every input token, cached or not
	input      int64 // Anthropic (and Responses API) input_tokens
	cacheWrite int64 // cache_creation_input_tokens
	cacheRead  int64 // cache_read_input_tokens
	output     int64 // completion_tokens or output_tokens
	total      int64 // total_tokens
	hasPrompt  bool
	hasInput   bool
	hasTotal   bool
}

func (t *tally) add(u *usageJSON) {
	t.found = true
	if u.PromptTokens.ok {
		t.prompt, t.hasPrompt = u.PromptTokens.n, true
	}
	if u.InputTokens.ok {
		t.input, t.hasInput = u.InputTokens.n, true
	}
	if u.CacheCreation.ok {
		t.cacheWrite = u.CacheCreation.n
	}
	if u.CacheRead.ok {
		t.cacheRead = u.CacheRead.n
	}
	if u.CompletionTokens.ok {
		t.output = u.CompletionTokens.n
	}
	if u.OutputTokens.ok {
		t.output = u.OutputTokens.n
	}
	if u.TotalTokens.ok {
		t.total, t.hasTotal = u.TotalTokens.n, true
	}
}

// setModel takes the model of a JSON string as written, unless the string
// is empty or not a string.
func (t *tally) setModel(tok []byte) {
	if len(tok) <= 2 {
		return
	}
	if len(tok) == len(t.model)+2 && string(tok[1:len(tok)-1]) == t.model && bytes.IndexByte(tok, '\\') < 0 {
		return // the same model again (t.model is valid UTF-8, and so is tok)
	}
	if s, ok := decodeString(tok); ok && s != "" {
		t.model = s
	}
}

// resetUsage forgets the usage seen so far (a JSON body's later top-level
// "usage" replaces an earlier one).
func (t *tally) resetUsage() { *t = tally{model: t.model} }

// usage sums the input. OpenAI's prompt_tokens already counts cached
// tokens — also in LiteLLM's OpenAI-shaped answers for Anthropic models,
// which carry cache_creation_input_tokens and cache_read_input_tokens
// beside it — so the cache counts are added only to Anthropic's
// input_tokens, which excludes them.
func (t *tally) usage() Usage {
	var in int64
	switch {
	case t.hasPrompt:
		in = t.prompt
	case t.hasInput:
		in = t.input + t.cacheWrite + t.cacheRead
	case t.hasTotal:
		in = max(t.total-t.output, 0)
	default:
		in = t.cacheWrite + t.cacheRead
	}
	return Usage{Model: t.model, InputTokens: in, OutputTokens: t.output, Found: t.found}
}

// usageJSON is the union of the usage objects of both API families.
type usageJSON struct {
	PromptTokens     count `json:"prompt_tokens"`
	CompletionTokens count `json:"completion_tokens"`
	TotalTokens      count `json:"total_tokens"`
	InputTokens      count `json:"input_tokens"`
	OutputTokens     count `json:"output_tokens"`
	CacheCreation    count `json:"cache_creation_input_tokens"`
	CacheRead        count `json:"cache_read_input_tokens"`
}

// count is a token count: any JSON number, clamped to [0, maxCount]; other
// values (null, strings, objects) leave it unset.
type count struct {
	n  int64
	ok bool
}

// UnmarshalJSON never fails, so an odd field never hides the others.
func (c *count) UnmarshalJSON(b []byte) error {
	if n, ok := parseCount(b); ok {
		c.n, c.ok = n, true
	}
	return nil
}

func parseCount(b []byte) (int64, bool) {
	if len(b) == 0 {
		return 0, false
	}
	var n int64
	digits := true
	for _, c := range b {
		if c < '0' || c > '9' {
			digits = false
			break
		}
		if n < maxCount {
			n = n*10 + int64(c-'0')
		}
	}
	if digits {
		return min(n, maxCount), true
	}
	if b[0] != '-' && (b[0] < '0' || b[0] > '9') {
		return 0, false
	}
	f, err := strconv.ParseFloat(string(b), 64)
	if err != nil && !errors.Is(err, strconv.ErrRange) {
		return 0, false
	}
	switch {
	case f != f: // NaN
		return 0, false
	case f <= 0:
		return 0, true
	case f >= maxCount:
		return maxCount, true
	}
	return int64(f), true
}
