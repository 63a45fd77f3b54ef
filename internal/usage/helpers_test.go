package usage

import (
	"bytes"
	"encoding/json"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/llmgate/llmgate/internal/demoupstream"
	"github.com/llmgate/llmgate/internal/redistest"
)

// base is "now" in Recorder tests: the middle of a UTC day.
var base = time.Date(2026, 3, 14, 12, 0, 0, 0, time.UTC)

// clock is a settable clock.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

// newRecorder starts a Recorder on srv with srv's prefix, a clock fixed at
// base and a short flush interval; it is closed when the test ends.
func newRecorder(tb testing.TB, srv *redistest.Server, mods ...func(*Config)) *Recorder {
	tb.Helper()
	clk := &clock{t: base}
	cfg := Config{Prefix: srv.Prefix, FlushInterval: 5 * time.Millisecond, Now: clk.Now}
	for _, m := range mods {
		m(&cfg)
	}
	r := NewRecorder(srv.Client, cfg)
	tb.Cleanup(func() { r.Close() })
	return r
}

// closeRecorder flushes r by closing it, failing tb on error.
func closeRecorder(tb testing.TB, r *Recorder) {
	tb.Helper()
	if err := r.Close(); err != nil {
		tb.Fatalf("Close: %v", err)
	}
}

// eventually polls cond until it holds or 5 seconds pass.
func eventually(tb testing.TB, what string, cond func() bool) {
	tb.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			tb.Fatalf("after 5s: %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// demoServer is the demo upstream, with its clock fixed.
var demoServer = demoupstream.New(demoupstream.Options{NoRecord: true, Now: func() time.Time { return base }})

// demoCall answers one POST from the demo upstream in-process and returns
// the Content-Type and body.
func demoCall(tb testing.TB, s *demoupstream.Server, path, body string) (string, []byte) {
	tb.Helper()
	req := httptest.NewRequest(http.MethodPost, path, strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("X-LLMGate-User-Email", "alice@example.com")
	w := httptest.NewRecorder()
	s.ServeHTTP(w, req)
	if w.Code != http.StatusOK {
		tb.Fatalf("demo upstream POST %s %s: status %d: %s", path, body, w.Code, w.Body.Bytes())
	}
	return w.Header().Get("Content-Type"), w.Body.Bytes()
}

// meter runs body through a new Meter in the given chunks and returns its
// Usage, failing tb if a Write does not accept everything.
func meter(tb testing.TB, contentType string, chunks [][]byte) Usage {
	tb.Helper()
	m := NewMeter(contentType)
	for _, c := range chunks {
		if n, err := m.Write(c); n != len(c) || err != nil {
			tb.Fatalf("Meter.Write(%d bytes) = %d, %v; want %d, nil", len(c), n, err, len(c))
		}
	}
	u := m.Usage()
	if m.broken {
		tb.Fatalf("Meter panicked inside Write or Usage on %q", bytes.Join(chunks, nil))
	}
	return u
}

// Chunkings of a body.

func whole(b []byte) [][]byte { return [][]byte{b} }

func bytewise(b []byte) [][]byte {
	out := make([][]byte, len(b))
	for i := range b {
		out[i] = b[i : i+1]
	}
	return out
}

func splitAt(b []byte, i int) [][]byte { return [][]byte{b[:i], b[i:]} }

// randomChunks cuts b into chunks of 1 to 64 bytes (sometimes empty).
func randomChunks(b []byte, seed uint64) [][]byte {
	rng := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	var out [][]byte
	for len(b) > 0 {
		n := min(rng.IntN(65), len(b))
		out = append(out, b[:n])
		b = b[n:]
	}
	return out
}

// referenceJSON is what a Meter in JSON mode must report for body, computed
// with encoding/json alone; false when body is not a JSON object.
func referenceJSON(body []byte) (Usage, bool) {
	var top map[string]json.RawMessage
	if json.Unmarshal(body, &top) != nil {
		return Usage{}, false
	}
	var t tally
	if raw, ok := top["model"]; ok {
		var s string
		if json.Unmarshal(raw, &s) == nil {
			t.model = s
		}
	}
	if raw, ok := top["usage"]; ok && len(raw) > 0 && raw[0] == '{' {
		var u usageJSON
		if json.Unmarshal(raw, &u) == nil {
			t.add(&u)
		}
	}
	return t.usage(), true
}

var (
	sseLineEnd  = regexp.MustCompile(`\r\n|\r|\n`)
	usageObject = regexp.MustCompile(`"usage"[ \t\r\n]*:[ \t\r\n]*\{`)
)

// referenceSSE is what a Meter in SSE mode must report for body, computed
// from the whole body at once: the lines split with a regular expression,
// each event that carries a usage object (or a model while none is known)
// decoded with encoding/json. False for bodies with lines or events too
// long to be read.
func referenceSSE(body []byte) (Usage, bool) {
	if len(body) > maxLine {
		return Usage{}, false
	}
	var t tally
	var data []byte
	hasData := false
	dispatch := func() {
		if hasData && (usageObject.Match(data) || t.model == "" && bytes.Contains(data, []byte(`"model"`))) {
			t.takeEventJSON(data)
		}
		data, hasData = nil, false
	}
	for _, line := range sseLineEnd.Split(strings.TrimPrefix(string(body), "\xEF\xBB\xBF"), -1) {
		if line == "" {
			dispatch()
			continue
		}
		name, value, _ := strings.Cut(line, ":")
		if name != "data" {
			continue
		}
		if hasData {
			data = append(data, '\n')
		}
		data = append(data, strings.TrimPrefix(value, " ")...)
		hasData = true
	}
	dispatch()
	return t.usage(), true
}
