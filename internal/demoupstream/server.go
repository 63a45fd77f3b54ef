package demoupstream

import (
	"bytes"
	"context"
	"crypto/subtle"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Options configures a Server. The zero value is a working demo upstream
// that accepts every request.
type Options struct {
	// APIKey, when set, must arrive as "Authorization: Bearer APIKey" or
	// "x-api-key: APIKey"; otherwise the answer is 401 in the API family's
	// error shape. Empty accepts every request.
	APIKey string
	// ChunkDelay is the pause before each content delta of a streamed reply
	// (0 = none). The events that open a stream (the headers, and Anthropic's
	// message_start, content_block_start and ping) go out at once and the
	// closing events follow the last delta at once, as with a real model.
	ChunkDelay time.Duration
	// Chunks is the number of content deltas in a streamed reply (default 8).
	// The reply grows with filler words when it has fewer words than Chunks;
	// a reply cut short by max_tokens has one delta per word when that is fewer.
	Chunks int
	// CostUSD, when > 0, is sent as the x-litellm-response-cost header (as
	// LiteLLM does) on every successful inference answer: chat completions,
	// completions, embeddings and messages (not model lists or token counts).
	CostUSD float64
	// IdentityHeader names the request header whose value the reply greets
	// (default "X-LLMGate-User-Email"); absent, the reply greets "anonymous".
	IdentityHeader string
	// Models is what GET /v1/models lists (default DefaultModels). Requests
	// for other models are answered too, as LiteLLM's wildcard routes do.
	Models []string
	// NoRecord turns off recording for benchmarks: Requests returns nil.
	NoRecord bool
	// IdleTimeout is how long the server of Start keeps an idle keep-alive
	// connection (default 5s, uvicorn's and so LiteLLM's default), so the
	// gateway's handling of upstream keep-alive timeouts gets exercised.
	IdleTimeout time.Duration
	// Now is the clock for "created" timestamps (default time.Now).
	Now func() time.Time
}

// DefaultModels is the model list of a Server whose Options.Models is empty.
var DefaultModels = []string{
	"gpt-4o-mini",
	"gpt-4o",
	"gpt-4.1-mini",
	"text-embedding-3-small",
	"claude-opus-5-5", // Claude Code 2.1.328's default model
	"claude-opus-4-7",
	"claude-sonnet-4-6",
	"claude-haiku-4-5",
}

const (
	defaultChunks         = 8
	defaultIdentityHeader = "X-LLMGate-User-Email"
	defaultIdleTimeout    = 5 * time.Second
	// maxRecorded bounds the requests a Server keeps.
	maxRecorded = 1000
	// maxBody is the largest request body read (Anthropic's own limit);
	// larger ones are refused with 413.
	maxBody = 32 << 20
	// costHeader carries LiteLLM's cost of a response in US dollars.
	costHeader = "X-Litellm-Response-Cost"
)

// Recorded is one request a Server got. Treat its fields as read-only.
type Recorded struct {
	Method   string
	Path     string
	RawQuery string
	Header   http.Header // a clone of the request's headers
	Body     []byte
}

// Server is the demo upstream; it implements http.Handler. Use New.
type Server struct {
	opts       Options
	identity   string // canonical IdentityHeader
	chunks     int
	cost       string // formatted CostUSD, "" for none
	now        func() time.Time
	modelsOA   []byte // pre-encoded GET /v1/models, OpenAI shape
	modelsAnth []byte // pre-encoded GET /v1/models, Anthropic shape
	known      map[string]bool
	maxBody    int64 // maxBody, lowered by tests

	seq atomic.Uint64 // ids of responses

	// beforeDelta, when set (by tests), replaces the ChunkDelay pause before
	// content delta i of a stream; a non-nil error ends the stream.
	beforeDelta func(ctx context.Context, i int) error

	mu   sync.Mutex
	ring []Recorded // the last maxRecorded requests
	next int        // where the next one goes once ring is full
}

// New returns a Server configured by opts, with defaults filled in.
func New(opts Options) *Server {
	s := &Server{
		opts:     opts,
		identity: opts.IdentityHeader,
		chunks:   opts.Chunks,
		now:      opts.Now,
		maxBody:  maxBody,
	}
	if s.identity == "" {
		s.identity = defaultIdentityHeader
	}
	s.identity = http.CanonicalHeaderKey(s.identity)
	if s.chunks <= 0 {
		s.chunks = defaultChunks
	}
	if s.now == nil {
		s.now = time.Now
	}
	if opts.CostUSD > 0 {
		s.cost = strconv.FormatFloat(opts.CostUSD, 'f', -1, 64)
	}
	models := opts.Models
	if len(models) == 0 {
		models = DefaultModels
	}
	s.opts.Models = append([]string(nil), models...)
	s.known = make(map[string]bool, len(models))
	for _, m := range s.opts.Models {
		s.known[m] = true
	}
	s.modelsOA = appendModelListOpenAI(nil, s.opts.Models)
	s.modelsAnth = appendModelListAnthropic(nil, s.opts.Models)
	return s
}

// Start serves a new Server on addr (such as "127.0.0.1:0") in the
// background. It returns the server, its base URL (http://host:port, no
// trailing slash) and a function that closes the listener and every
// connection.
func Start(addr string, opts Options) (*Server, string, func() error, error) {
	s := New(opts)
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, "", nil, fmt.Errorf("demo upstream: listen on %s: %w", addr, err)
	}
	idle := opts.IdleTimeout
	if idle <= 0 {
		idle = defaultIdleTimeout
	}
	hs := &http.Server{
		Handler:           s,
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       idle,
	}
	go func() { _ = hs.Serve(ln) }() // returns http.ErrServerClosed on close
	closeFn := func() error {
		if err := hs.Close(); err != nil {
			return fmt.Errorf("demo upstream: close: %w", err)
		}
		return nil
	}
	return s, "http://" + ln.Addr().String(), closeFn, nil
}

// Requests returns the requests the server got, oldest first: the last 1000
// since New or Reset. It returns nil when Options.NoRecord is set.
func (s *Server) Requests() []Recorded {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.ring) == 0 {
		return nil
	}
	out := make([]Recorded, 0, len(s.ring))
	out = append(out, s.ring[s.next:]...)
	return append(out, s.ring[:s.next]...)
}

// Reset forgets the recorded requests.
func (s *Server) Reset() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.ring = nil
	s.next = 0
}

func (s *Server) record(r *http.Request, body []byte) {
	rec := Recorded{
		Method:   r.Method,
		Path:     r.URL.Path,
		RawQuery: r.URL.RawQuery,
		Header:   r.Header.Clone(),
		Body:     bytes.Clone(body),
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.ring) < maxRecorded {
		s.ring = append(s.ring, rec)
		return
	}
	s.ring[s.next] = rec
	s.next = (s.next + 1) % maxRecorded
}

var bufPool = sync.Pool{New: func() any { return new(bytes.Buffer) }}

// ServeHTTP answers one request; see the package documentation for routes.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if id := r.Header.Get("X-Request-Id"); id != "" {
		w.Header().Set("X-Request-Id", id)
	}
	buf := bufPool.Get().(*bytes.Buffer)
	buf.Reset()
	defer func() {
		if buf.Cap() <= 1<<20 { // do not pin huge bodies in the pool
			bufPool.Put(buf)
		}
	}()
	if r.ContentLength > 0 && r.ContentLength <= s.maxBody {
		buf.Grow(int(r.ContentLength))
	}
	_, readErr := buf.ReadFrom(io.LimitReader(r.Body, s.maxBody+1))
	body := buf.Bytes()
	if !s.opts.NoRecord {
		s.record(r, body)
	}
	fam := familyOf(r)
	switch {
	case readErr != nil:
		s.fail(w, fam, apiError{status: http.StatusBadRequest, oaType: "invalid_request_error", antType: "invalid_request_error",
			msg: "could not read the request body: " + readErr.Error()})
		return
	case int64(len(body)) > s.maxBody:
		s.fail(w, fam, apiError{status: http.StatusRequestEntityTooLarge, oaType: "invalid_request_error", antType: "request_too_large",
			msg: "request body is larger than " + strconv.FormatInt(s.maxBody, 10) + " bytes"})
		return
	}
	if e, ok := s.checkKey(r, fam); !ok {
		s.fail(w, fam, e)
		return
	}

	path := r.URL.Path
	switch {
	case path == "/v1/chat/completions" && r.Method == http.MethodPost:
		s.chatCompletions(w, r, body)
	case path == "/v1/messages" && r.Method == http.MethodPost:
		s.messages(w, r, body)
	case path == "/v1/messages/count_tokens" && r.Method == http.MethodPost:
		s.countTokens(w, body)
	case path == "/v1/completions" && r.Method == http.MethodPost:
		s.completions(w, r, body)
	case path == "/v1/embeddings" && r.Method == http.MethodPost:
		s.embeddings(w, body)
	case path == "/v1/models" && r.Method == http.MethodGet:
		if fam == anthropic {
			writeJSON(w, http.StatusOK, s.modelsAnth)
		} else {
			writeJSON(w, http.StatusOK, s.modelsOA)
		}
	case strings.HasPrefix(path, "/v1/models/") && r.Method == http.MethodGet:
		s.model(w, fam, strings.TrimPrefix(path, "/v1/models/"))
	default:
		s.fail(w, fam, errNotFound(r))
	}
}

// family is an API family: it decides the shape of error bodies.
type family int

const (
	openAI family = iota
	anthropic
)

// familyOf is Anthropic for /v1/messages and everything under it, and for
// the model routes when the caller sent anthropic-version (the Anthropic SDK
// always does); OpenAI otherwise.
func familyOf(r *http.Request) family {
	p := r.URL.Path
	if p == "/v1/messages" || strings.HasPrefix(p, "/v1/messages/") {
		return anthropic
	}
	if (p == "/v1/models" || strings.HasPrefix(p, "/v1/models/")) && r.Header.Get("Anthropic-Version") != "" {
		return anthropic
	}
	return openAI
}

// checkKey reports whether r carries Options.APIKey, and the error to send
// when it does not.
func (s *Server) checkKey(r *http.Request, fam family) (apiError, bool) {
	if s.opts.APIKey == "" {
		return apiError{}, true
	}
	key := r.Header.Get("X-Api-Key")
	bearer := ""
	if a := r.Header.Get("Authorization"); len(a) > 7 && strings.EqualFold(a[:7], "bearer ") {
		bearer = strings.TrimSpace(a[7:])
	}
	if s.isKey(key) || s.isKey(bearer) {
		return apiError{}, true
	}
	got := key + bearer
	e := apiError{status: http.StatusUnauthorized, oaType: "invalid_request_error", oaCode: "invalid_api_key", antType: "authentication_error"}
	switch {
	case got == "" && fam == anthropic:
		e.msg = "x-api-key header is required"
	case got == "":
		e.msg = "You didn't provide an API key. You need to provide your API key in an Authorization header using Bearer auth (i.e. Authorization: Bearer YOUR_KEY)."
	case fam == anthropic:
		e.msg = "invalid x-api-key"
	default:
		e.msg = "Incorrect API key provided."
	}
	return e, false
}

func (s *Server) isKey(v string) bool {
	return v != "" && subtle.ConstantTimeCompare([]byte(v), []byte(s.opts.APIKey)) == 1
}

// apiError is an error answer; fail renders it in the family's shape.
type apiError struct {
	status  int
	oaType  string // OpenAI error.type
	oaCode  string // OpenAI error.code, "" for null
	antType string // Anthropic error.type
	msg     string
}

func errNotFound(r *http.Request) apiError {
	return apiError{status: http.StatusNotFound, oaType: "invalid_request_error", antType: "not_found_error",
		msg: "Invalid URL (" + r.Method + " " + r.URL.Path + ")"}
}

func errInvalidJSON(err error) apiError {
	return apiError{status: http.StatusBadRequest, oaType: "invalid_request_error", antType: "invalid_request_error",
		msg: "We could not parse the JSON body of your request: " + err.Error()}
}

func errInvalid(msg string) apiError {
	return apiError{status: http.StatusBadRequest, oaType: "invalid_request_error", antType: "invalid_request_error", msg: msg}
}

// fail writes e as OpenAI's {"error":{"message","type","param","code"}} or
// Anthropic's {"type":"error","error":{"type","message"}}.
func (s *Server) fail(w http.ResponseWriter, fam family, e apiError) {
	var b []byte
	if fam == anthropic {
		b = append(b, `{"type":"error","error":{"type":`...)
		b = appendString(b, e.antType)
		b = append(b, `,"message":`...)
		b = appendString(b, e.msg)
		b = append(b, `}}`...)
	} else {
		b = append(b, `{"error":{"message":`...)
		b = appendString(b, e.msg)
		b = append(b, `,"type":`...)
		b = appendString(b, e.oaType)
		b = append(b, `,"param":null,"code":`...)
		if e.oaCode == "" {
			b = append(b, "null"...)
		} else {
			b = appendString(b, e.oaCode)
		}
		b = append(b, `}}`...)
	}
	writeJSON(w, e.status, b)
}

// writeJSON sends body as a complete JSON answer.
func writeJSON(w http.ResponseWriter, status int, body []byte) {
	h := w.Header()
	h["Content-Type"] = []string{"application/json"}
	h["Content-Length"] = []string{strconv.Itoa(len(body))}
	w.WriteHeader(status)
	_, _ = w.Write(body) // a failed write means the client went away
}

// setCost adds the LiteLLM cost header to a successful inference answer.
func (s *Server) setCost(w http.ResponseWriter) {
	if s.cost != "" {
		w.Header()[costHeader] = []string{s.cost}
	}
}

// newID returns prefix followed by a number unique to this server.
func (s *Server) newID(prefix string) string {
	n := s.seq.Add(1)
	b := make([]byte, 0, len(prefix)+20)
	b = append(b, prefix...)
	b = append(b, "demo"...)
	digits := strconv.AppendUint(nil, n, 10)
	for i := len(digits); i < 16; i++ {
		b = append(b, '0')
	}
	return string(append(b, digits...))
}

// stream writes server-sent events, flushing each one.
type stream struct {
	w  http.ResponseWriter
	rc *http.ResponseController
	s  *Server
}

// openStream sends the headers of an event stream.
func (s *Server) openStream(w http.ResponseWriter, r *http.Request) *stream {
	h := w.Header()
	h["Content-Type"] = []string{"text/event-stream; charset=utf-8"}
	h["Cache-Control"] = []string{"no-cache"}
	h["X-Accel-Buffering"] = []string{"no"}
	s.setCost(w)
	w.WriteHeader(http.StatusOK)
	st := &stream{w: w, rc: http.NewResponseController(w), s: s}
	_ = st.flush() // headers now, before the first token
	return st
}

// send writes one event and flushes it; it fails once the client is gone.
func (st *stream) send(ctx context.Context, event []byte) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("send event: %w", err)
	}
	if _, err := st.w.Write(event); err != nil {
		return fmt.Errorf("send event: %w", err)
	}
	return st.flush()
}

func (st *stream) flush() error {
	if err := st.rc.Flush(); err != nil && !errors.Is(err, http.ErrNotSupported) {
		return fmt.Errorf("flush event: %w", err)
	}
	return nil
}

// pause waits before content delta i: ChunkDelay, or until the client
// goes away.
func (st *stream) pause(ctx context.Context, i int) error {
	if st.s.beforeDelta != nil {
		return st.s.beforeDelta(ctx, i)
	}
	d := st.s.opts.ChunkDelay
	if d <= 0 {
		return nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return fmt.Errorf("pause before delta %d: %w", i, ctx.Err())
	case <-t.C:
		return nil
	}
}
