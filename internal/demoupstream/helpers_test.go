package demoupstream

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

// fixedNow is the clock of test servers.
var fixedNow = time.Unix(1700000000, 0)

// serve starts s on loopback for tb and returns its base URL.
func serve(tb testing.TB, s *Server) string {
	tb.Helper()
	ts := httptest.NewServer(s)
	tb.Cleanup(ts.Close)
	return ts.URL
}

// newServer returns a Server with opts (clock fixed) served on loopback.
func newServer(tb testing.TB, opts Options) (*Server, string) {
	tb.Helper()
	if opts.Now == nil {
		opts.Now = func() time.Time { return fixedNow }
	}
	s := New(opts)
	return s, serve(tb, s)
}

// answer is a complete response.
type answer struct {
	status int
	header http.Header
	body   []byte
}

// call sends one request and reads the whole answer.
func call(tb testing.TB, method, url, body string, header map[string]string) answer {
	tb.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, url, rd)
	if err != nil {
		tb.Fatalf("NewRequest(%s %s): %v", method, url, err)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	for k, v := range header {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		tb.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		tb.Fatalf("%s %s: read body: %v", method, url, err)
	}
	return answer{status: resp.StatusCode, header: resp.Header, body: b}
}

// decodeStrict decodes data into v, failing on fields v does not have, so
// a struct in a test pins the whole shape of an answer.
func decodeStrict(tb testing.TB, what string, data []byte, v any) {
	tb.Helper()
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		tb.Fatalf("%s: decode %T: %v\nbody: %s", what, v, err, data)
	}
	if dec.More() {
		tb.Fatalf("%s: trailing data after JSON: %s", what, data)
	}
}

// sseEvent is one server-sent event.
type sseEvent struct {
	Event string // the event: line, "" when absent
	Data  string
}

// sseReader reads server-sent events one at a time.
type sseReader struct{ r *bufio.Reader }

func newSSEReader(r io.Reader) *sseReader { return &sseReader{r: bufio.NewReader(r)} }

// next returns the next event, or io.EOF at the clean end of the stream.
func (sr *sseReader) next() (sseEvent, error) {
	var ev sseEvent
	seen := false
	for {
		line, err := sr.r.ReadString('\n')
		if err != nil {
			if errors.Is(err, io.EOF) && !seen && line == "" {
				return ev, io.EOF
			}
			if errors.Is(err, io.EOF) {
				return ev, io.ErrUnexpectedEOF
			}
			return ev, err
		}
		line = strings.TrimSuffix(line, "\n")
		switch {
		case line == "":
			if seen {
				return ev, nil
			}
		case strings.HasPrefix(line, "event: "):
			ev.Event = strings.TrimPrefix(line, "event: ")
			seen = true
		case strings.HasPrefix(line, "data: "):
			if ev.Data != "" {
				ev.Data += "\n"
			}
			ev.Data += strings.TrimPrefix(line, "data: ")
			seen = true
		default:
			return ev, errors.New("unexpected SSE line " + line)
		}
	}
}

// readAllSSE reads every event of a stream.
func readAllSSE(tb testing.TB, r io.Reader) []sseEvent {
	tb.Helper()
	sr := newSSEReader(r)
	var out []sseEvent
	for {
		ev, err := sr.next()
		if errors.Is(err, io.EOF) {
			return out
		}
		if err != nil {
			tb.Fatalf("read SSE after %d events: %v", len(out), err)
		}
		out = append(out, ev)
	}
}

// openStream posts body to url and returns the streaming response, which
// the test must close.
func openStream(tb testing.TB, client *http.Client, url, body string, header map[string]string) *http.Response {
	tb.Helper()
	req, err := http.NewRequest(http.MethodPost, url, strings.NewReader(body))
	if err != nil {
		tb.Fatalf("NewRequest(POST %s): %v", url, err)
	}
	req.Header.Set("Content-Type", "application/json")
	for k, v := range header {
		req.Header.Set(k, v)
	}
	resp, err := client.Do(req)
	if err != nil {
		tb.Fatalf("POST %s: %v", url, err)
	}
	tb.Cleanup(func() { resp.Body.Close() })
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(resp.Body)
		tb.Fatalf("POST %s: status %d, want 200; body %s", url, resp.StatusCode, b)
	}
	if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "text/event-stream") {
		tb.Fatalf("POST %s: Content-Type %q, want text/event-stream", url, ct)
	}
	if cc := resp.Header.Get("Cache-Control"); cc != "no-cache" {
		tb.Fatalf("POST %s: Cache-Control %q, want no-cache", url, cc)
	}
	return resp
}

// Error bodies of both families.
type openAIError struct {
	Error struct {
		Message string  `json:"message"`
		Type    string  `json:"type"`
		Param   *string `json:"param"`
		Code    *string `json:"code"`
	} `json:"error"`
}

type anthropicError struct {
	Type  string `json:"type"`
	Error struct {
		Type    string `json:"type"`
		Message string `json:"message"`
	} `json:"error"`
}

// wantError checks that a is an error answer with status in the family's
// shape with the given error type (OpenAI: error.type, Anthropic:
// error.type) and, for OpenAI, code ("" for null).
func wantError(tb testing.TB, what string, a answer, status int, fam family, errType, code string) {
	tb.Helper()
	if a.status != status {
		tb.Errorf("%s: status %d, want %d; body %s", what, a.status, status, a.body)
	}
	if ct := a.header.Get("Content-Type"); ct != "application/json" {
		tb.Errorf("%s: Content-Type %q, want application/json", what, ct)
	}
	if fam == anthropic {
		var e anthropicError
		decodeStrict(tb, what, a.body, &e)
		if e.Type != "error" || e.Error.Type != errType || e.Error.Message == "" {
			tb.Errorf("%s: Anthropic error %+v, want type error, error.type %q and a message", what, e, errType)
		}
		return
	}
	var e openAIError
	decodeStrict(tb, what, a.body, &e)
	gotCode := ""
	if e.Error.Code != nil {
		gotCode = *e.Error.Code
	}
	if e.Error.Type != errType || gotCode != code || e.Error.Message == "" || e.Error.Param != nil {
		tb.Errorf("%s: OpenAI error %s, want type %q, code %q, param null and a message", what, a.body, errType, code)
	}
}
