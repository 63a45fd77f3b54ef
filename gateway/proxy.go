package gateway

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httputil"
	"net/netip"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/llmgate/llmgate/internal/duration"
	"github.com/llmgate/llmgate/internal/h1transport"
	"github.com/llmgate/llmgate/internal/usage"
	"github.com/llmgate/llmgate/tokens"
)

// Upstream is one LLM server the gateway forwards to.
type Upstream struct {
	Name string
	URL  *url.URL
	// APIKey replaces the caller's token upstream (LiteLLM virtual key,
	// provider key); empty sends no credential.
	APIKey string
	// Paths are the path prefixes routed here; the longest match wins.
	Paths []string
	// StripPrefix is removed from the path before forwarding.
	StripPrefix string
}

// ProxyConfig configures the proxied API (SPEC §4).
type ProxyConfig struct {
	Upstreams []Upstream
	// IdentityHeaders carry the caller's email upstream.
	IdentityHeaders []string
	// InjectUser also writes the email into JSON bodies.
	InjectUser bool
	// MaxBody is the largest request body accepted (413 above).
	MaxBody int64
	// FailOpen lets verified tokens through while Redis is down
	// (LLMGATE_FAILSAFE=open); otherwise API calls get 503.
	FailOpen bool
	// UserRPM is the default requests per minute per person; 0 is off.
	UserRPM int
	// CostHeader is the upstream response header holding the cost in USD.
	CostHeader string
	// Spend configures spend caps and the price table.
	Spend SpendConfig
	// HeaderTimeout is how long the upstream may take to send response
	// headers (504 after). Streams are not cut once headers arrived.
	HeaderTimeout time.Duration
	// ReadIdleTimeout ends a response whose upstream has sent nothing for
	// this long (an SSE stream gets a closing error event). There is no
	// total timeout: long streams are not cut while they flow.
	ReadIdleTimeout time.Duration
	// SSEKeepalive, when positive, sends an SSE comment line
	// (": keepalive") between events when a streaming upstream has been
	// silent this long (LLMGATE_SSE_KEEPALIVE); 0 is off.
	SSEKeepalive time.Duration
	// IdleConnTimeout closes idle upstream connections; keep it below the
	// upstream's own keep-alive timeout (uvicorn's is 5 s).
	IdleConnTimeout time.Duration
}

// route is one path prefix and the upstream it goes to.
type route struct {
	prefix string
	up     *upstream
}

// upstream is an Upstream with its reverse proxy.
type upstream struct {
	Upstream
	rp     *httputil.ReverseProxy
	bearer string // "Bearer " + APIKey, built once
}

// identityHeaders are removed from every proxied request, whatever the
// configuration: headers some upstream or proxy reads as "who is calling".
var identityHeaders = []string{
	"X-Forwarded-Email", "X-Forwarded-User", "X-Forwarded-Preferred-Username", "X-Forwarded-Groups",
	"X-Forwarded-Access-Token", "X-Remote-User", "Remote-User", "X-Remote-Email", "X-User", "X-Email",
	"X-Litellm-End-User-Id", "X-Openwebui-User-Email",
}

// identityPrefixes are header prefixes removed the same way.
var identityPrefixes = []string{"X-Auth-Request-", "X-Llmgate-"}

// newProxy builds the routes and reverse proxies of cfg.
func (s *Server) newProxy(cfg ProxyConfig) error {
	if cfg.MaxBody <= 0 {
		cfg.MaxBody = 32 << 20
	}
	if cfg.HeaderTimeout <= 0 {
		cfg.HeaderTimeout = 10 * time.Minute
	}
	if cfg.ReadIdleTimeout <= 0 {
		cfg.ReadIdleTimeout = 5 * time.Minute
	}
	if cfg.IdleConnTimeout <= 0 {
		cfg.IdleConnTimeout = 4 * time.Second
	}
	if len(cfg.IdentityHeaders) == 0 {
		cfg.IdentityHeaders = []string{"X-LLMGate-User-Email"}
	}
	for i, h := range cfg.IdentityHeaders {
		cfg.IdentityHeaders[i] = http.CanonicalHeaderKey(h)
	}
	s.proxyCfg = cfg
	s.strip = append(append([]string{}, identityHeaders...), cfg.IdentityHeaders...)
	for i, h := range s.strip {
		s.strip[i] = http.CanonicalHeaderKey(h) // rewrite deletes them by exact key
	}

	// Plain-HTTP upstreams (LiteLLM beside the gateway) get a transport
	// that holds no goroutine per connection: an open stream then costs
	// its connection and buffers only, and a call no hand-offs between
	// goroutines.
	s.upstreamTransport = h1transport.New(h1transport.Config{
		MaxIdlePerHost:        512,
		IdleTimeout:           cfg.IdleConnTimeout,
		ResponseHeaderTimeout: cfg.HeaderTimeout,
		Fallback:              netHTTPTransport(cfg), // TLS upstreams (HTTP/2 when offered) and upgrades
	})

	for _, u := range cfg.Upstreams {
		if u.URL == nil {
			return fmt.Errorf("upstream %q has no URL", u.Name)
		}
		up := &upstream{Upstream: u}
		if u.APIKey != "" {
			up.bearer = "Bearer " + u.APIKey
		}
		up.rp = &httputil.ReverseProxy{
			Rewrite:        func(pr *httputil.ProxyRequest) { s.rewrite(pr, up) },
			Transport:      s.upstreamTransport,
			BufferPool:     bufferPool{},
			ModifyResponse: s.modifyResponse,
			ErrorHandler:   s.proxyError,
		}
		for _, p := range u.Paths {
			s.proxyRoutes = append(s.proxyRoutes, route{prefix: p, up: up})
		}
	}
	slices.SortStableFunc(s.proxyRoutes, func(a, b route) int { return len(b.prefix) - len(a.prefix) })
	return nil
}

// netHTTPTransport is net/http's Transport tuned for upstreams.
func netHTTPTransport(cfg ProxyConfig) *http.Transport {
	t := http.DefaultTransport.(*http.Transport).Clone()
	t.MaxIdleConns = 2048
	t.MaxIdleConnsPerHost = 512
	t.IdleConnTimeout = cfg.IdleConnTimeout
	t.ResponseHeaderTimeout = cfg.HeaderTimeout
	t.ForceAttemptHTTP2 = true
	t.DisableCompression = true // pass the client's Accept-Encoding through untouched
	t.Proxy = nil               // the upstream is reached directly, never through HTTP_PROXY
	return t
}

// match returns the upstream for path, or nil.
func (s *Server) match(path string) *upstream {
	for _, r := range s.proxyRoutes {
		if strings.HasPrefix(path, r.prefix) {
			return r.up
		}
	}
	return nil
}

// ServeHTTP sends proxied paths down the lean proxy path and everything
// else to the gateway's own routes.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if up := s.match(r.URL.Path); up != nil && !otlpPaths[r.URL.Path] {
		s.proxy(w, r, up)
		return
	}
	s.engine.ServeHTTP(w, r)
}

// call is the per-request state of a proxied call, carried in the
// request's context from the handler to ModifyResponse and the error
// handler.
type call struct {
	start     time.Time
	claims    *tokens.Claims
	up        *upstream
	anthropic bool             // the Anthropic API family (refusal shapes, credential header)
	viaAPIKey bool             // the caller sent x-api-key rather than Authorization
	model     string           // the requested model, when read
	policy    *policy          // the person's Claude Code policy, or nil
	keepalive *keepaliveWriter // the answer's writer: SSE headers at once, keep-alives
	clientIP  string
	status    int
	body      *meteredBody // the answer's body, once headers arrived
	bodyBuf   bodyBuf      // the request's body, held for replay
	// budget is the spend cap that binds the caller, nil without one.
	budget     *budget
	spendGroup string // the llmgate_spend_usd_total label
	method     string
	outPath    string  // the path sent upstream
	cost       float64 // from the upstream's cost header, when costKnown
	costKnown  bool

	// What a call always needs, held here rather than allocated apiece:
	// the writer, the answer's body, the request body's first reader and
	// the values of the headers rewrite sets.
	kw      keepaliveWriter
	mb      meteredBody
	reqBody memBody
	hv      [10]string // seven values, and three identity headers
}

// memBody reads a request body held in memory; Close does nothing.
type memBody struct{ bytes.Reader }

func (*memBody) Close() error { return nil }

type callKey struct{}

// anthropicPath reports whether path belongs to the Anthropic API family
// (also behind an upstream's path prefix, e.g. /anthropic/v1/messages).
func anthropicPath(path string) bool {
	return strings.Contains(path, "/v1/messages")
}

// proxy verifies and forwards one API call (SPEC §4).
//
// It stays small: its frame sits under every open stream for the stream's
// whole life, so the checks live in admit.
func (s *Server) proxy(w http.ResponseWriter, r *http.Request, up *upstream) {
	c, r := s.admit(w, r, up)
	if c == nil {
		return
	}
	defer c.keepalive.stop()
	defer c.bodyBuf.release()
	w = c.keepalive
	// The call is recorded and logged here, once the answer is out, rather
	// than where its body ends deep inside the reverse proxy: that keeps
	// the connection's goroutine stack small for every later stream it
	// carries. A deferred call also runs when the proxy aborts the
	// handler (the client went away mid-answer).
	defer s.report(c)
	up.rp.ServeHTTP(w, r)
}

// admit runs every check of a proxied call and prepares its request; a
// nil call means it was refused (the answer is written).
func (s *Server) admit(w http.ResponseWriter, r *http.Request, up *upstream) (*call, *http.Request) {
	c := &call{start: time.Now(), up: up, anthropic: anthropicPath(r.URL.Path), clientIP: s.clientIP(r), method: r.Method}
	s.securityHeadersAPI(w)

	if !s.proxyCfg.FailOpen && !s.tokens.Healthy() {
		w.Header().Set("Retry-After", "5")
		s.refuse(w, r, c, http.StatusServiceUnavailable, "overloaded_error", "store_unavailable",
			"the gateway cannot reach its store; try again shortly", "store unavailable")
		return nil, r
	}
	raw := r.Header.Get("Authorization")
	if len(raw) > 7 && strings.EqualFold(raw[:7], "bearer ") {
		raw = strings.TrimSpace(raw[7:])
	} else if k := r.Header.Get("X-Api-Key"); k != "" {
		raw, c.viaAPIKey = strings.TrimSpace(k), true
	} else {
		raw = ""
	}
	if raw == "" {
		s.refuse(w, r, c, http.StatusUnauthorized, "authentication_error", "missing_token",
			fmt.Sprintf("no API token: send it as Authorization: Bearer or x-api-key; create one at %s", s.cfg.PublicURL), "missing token")
		return nil, r
	}
	id, err := s.identify(r.Context(), raw, false)
	if err != nil {
		e := s.identifyError(err)
		s.refuse(w, r, c, e.Status, errorType(e.Status), e.Code, e.Message, err.Error())
		return nil, r
	}
	cl := id.claims
	c.claims = cl
	if cl.ClientID != ClientIDP && !s.recentLogin(cl) {
		s.refuse(w, r, c, http.StatusUnauthorized, "authentication_error", "login_required",
			fmt.Sprintf("API tokens need a sign-in within %s: sign in again at %s, then retry", duration.Format(s.cfg.RequireLoginWithin), s.cfg.PublicURL), "no recent sign-in")
		return nil, r
	}
	c.policy = s.personPolicy(r.Context(), cl.Email, id.groups, id.haveGroups)
	if len(cl.CIDRs) > 0 {
		addr, err := netip.ParseAddr(c.clientIP)
		if err != nil || !cl.AllowsAddr(addr.Unmap()) {
			s.refuse(w, r, c, http.StatusForbidden, "permission_error", "address_not_allowed",
				fmt.Sprintf("this token may only be used from %s; this request came from %s", strings.Join(cl.CIDRs, ", "), c.clientIP), "cidr")
			return nil, r
		}
	}

	bb, ok := s.readBody(w, r, c)
	if !ok {
		return nil, r
	}
	body := bb.b // nil: no body
	if !s.admitBody(w, r, c, body) {
		bb.release()
		return nil, r
	}
	if s.proxyCfg.InjectUser && len(body) > 0 {
		// injectUser returns body itself when it is not a JSON object.
		if in := injectUser(body, cl.Email, c.anthropic); &in[0] != &body[0] {
			bb.release()
			bb, body = bodyBuf{b: in}, in
		}
	}
	if body != nil {
		c.bodyBuf = bb // released by proxy once the call has ended
		c.reqBody.Reset(body)
		r.Body = &c.reqBody
		r.GetBody = func() (io.ReadCloser, error) {
			b := new(memBody)
			b.Reset(body)
			return b, nil
		}
		r.ContentLength = int64(len(body))
	}
	r = r.WithContext(context.WithValue(r.Context(), callKey{}, c))
	c.kw = keepaliveWriter{ResponseWriter: w, every: s.proxyCfg.SSEKeepalive}
	c.keepalive = &c.kw
	return c, r
}

// admitBody runs the checks that read the request body: the model
// allowlists and the rate and spend limits. It reports whether the call
// may go on; if not, the refusal is written.
func (s *Server) admitBody(w http.ResponseWriter, r *http.Request, c *call, body []byte) bool {
	cl := c.claims
	policyModels := c.policy != nil && len(c.policy.Models) > 0
	if len(cl.Models) > 0 || policyModels || s.proxyCfg.InjectUser || s.proxyCfg.Spend.Prices != nil {
		c.model, _ = topLevelString(body, "model")
	}
	if c.model != "" && (!cl.AllowsModel(c.model) || !c.policy.allowsModel(c.model)) {
		status, typ := http.StatusForbidden, "permission_error"
		if c.anthropic {
			// Claude Code shows 400 invalid_request_error as a model choice problem.
			status, typ = http.StatusBadRequest, "invalid_request_error"
		}
		msg := fmt.Sprintf("this token may not use model %q; allowed: %s", c.model, strings.Join(cl.Models, ", "))
		if !c.policy.allowsModel(c.model) {
			msg = fmt.Sprintf("model %q is not allowed for %s by the gateway's policy; choose one of: %s", c.model, cl.Email, strings.Join(c.policy.Models, ", "))
		}
		s.refuse(w, r, c, status, typ, "model_not_allowed", msg, "model not allowed")
		return false
	}
	return s.checkLimits(w, r, c)
}

// readBody reads the request body once, within MaxBody, so that it can be
// replayed if a pooled upstream connection turns out to be dead. A buffer
// holding nil means there is no body; the caller releases the buffer.
func (s *Server) readBody(w http.ResponseWriter, r *http.Request, c *call) (bodyBuf, bool) {
	if r.Body == nil || r.Body == http.NoBody {
		return bodyBuf{}, true
	}
	max := s.proxyCfg.MaxBody
	if r.ContentLength > max {
		s.tooLarge(w, r, c)
		return bodyBuf{}, false
	}
	if r.ContentLength > 0 {
		// The reverse proxy forwards the method and the body as they came,
		// and an upgrade only when the caller asked for one.
		reusable := h1transport.WritesInline(c.up.URL, r.Method, r.Header, r.ContentLength)
		bb := newBodyBuf(int(r.ContentLength), reusable)
		if _, err := io.ReadFull(r.Body, bb.b); err != nil {
			bb.release()
			s.refuse(w, r, c, http.StatusBadRequest, "invalid_request_error", "body_read",
				"the request body ended early", "body read: "+err.Error())
			return bodyBuf{}, false
		}
		return bb, true
	}
	buf, err := io.ReadAll(io.LimitReader(r.Body, max+1))
	if err != nil {
		s.refuse(w, r, c, http.StatusBadRequest, "invalid_request_error", "body_read",
			"the request body could not be read", "body read: "+err.Error())
		return bodyBuf{}, false
	}
	if int64(len(buf)) > max {
		s.tooLarge(w, r, c)
		return bodyBuf{}, false
	}
	return bodyBuf{b: buf}, true
}

func (s *Server) tooLarge(w http.ResponseWriter, r *http.Request, c *call) {
	w.Header().Set("Connection", "close")
	s.refuse(w, r, c, http.StatusRequestEntityTooLarge, "request_too_large", "body_too_large",
		fmt.Sprintf("the request body is larger than the gateway's limit of %d MiB (LLMGATE_MAX_BODY)", s.proxyCfg.MaxBody>>20), "body too large")
}

// rewrite turns the caller's request into the upstream's: the caller's
// credentials and every identity header it sent go; ours come in.
//
// Only proxy reaches it, with the call in the request's context.
func (s *Server) rewrite(pr *httputil.ProxyRequest, up *upstream) {
	c := pr.In.Context().Value(callKey{}).(*call)
	out := pr.Out
	if up.StripPrefix != "" {
		out.URL.Path = strings.TrimPrefix(out.URL.Path, up.StripPrefix)
		out.URL.RawPath = ""
		if !strings.HasPrefix(out.URL.Path, "/") {
			out.URL.Path = "/" + out.URL.Path
		}
	}
	pr.SetURL(up.URL)
	out.Host = up.URL.Host

	// Header names arrive canonical (the server parsed them), and every
	// name here is canonical: delete needs no canonicalizing Del.
	h := out.Header
	delete(h, "Authorization")
	delete(h, "X-Api-Key")
	delete(h, "Proxy-Authorization")
	delete(h, "Cookie")
	for _, name := range s.strip {
		delete(h, name)
	}
	for name := range h {
		for _, p := range identityPrefixes {
			if strings.HasPrefix(name, p) {
				delete(h, name)
			}
		}
	}

	// Each value set below is a list of one, taken from the call's own
	// store while it lasts; its capacity is one, so an Add copies rather
	// than writing into the next value.
	vals := c.hv[:0]
	one := func(v string) []string {
		if len(vals) == cap(vals) {
			return []string{v}
		}
		vals = append(vals, v)
		return vals[len(vals)-1 : len(vals) : len(vals)]
	}

	// X-Forwarded-*: the chain the caller claims is kept only when its
	// peer is a trusted proxy.
	if s.trusted(pr.In) {
		pr.SetXForwarded()
	} else {
		h["X-Forwarded-For"] = one(c.clientIP)
		h["X-Forwarded-Host"] = one(pr.In.Host)
		proto := "http"
		if pr.In.TLS != nil {
			proto = "https"
		}
		h["X-Forwarded-Proto"] = one(proto)
	}
	// The body is in memory (GetBody), so the transport may send it again
	// when a pooled connection turns out to be dead — which net/http does
	// for a POST only when it is marked idempotent. A nil value marks it
	// without sending the header.
	if _, ok := h["Idempotency-Key"]; !ok {
		if _, ok := h["X-Idempotency-Key"]; !ok {
			h["Idempotency-Key"] = nil
		}
	}
	// Responses are metered as they pass: ask for them uncompressed (the
	// upstream is a neighbour; the bytes saved would cost the metering).
	h.Del("Accept-Encoding")
	h["X-Real-Ip"] = one(c.clientIP)
	if c.claims != nil {
		for _, name := range s.proxyCfg.IdentityHeaders {
			h[name] = one(c.claims.Email)
		}
		h["X-Llmgate-User-Sub"] = one(c.claims.Subject)
		h["X-Llmgate-Token-Id"] = one(c.claims.ID)
	}
	if up.APIKey != "" {
		if c.viaAPIKey {
			h["X-Api-Key"] = one(up.APIKey)
		} else {
			h["Authorization"] = one(up.bearer)
		}
	}
}

// modifyResponse tees the response body into the usage meter and records
// the call when the body ends. Bytes reach the client as they come.
func (s *Server) modifyResponse(resp *http.Response) error {
	c, _ := resp.Request.Context().Value(callKey{}).(*call)
	if c == nil {
		return nil
	}
	c.status = resp.StatusCode
	if resp.StatusCode == http.StatusOK && (len(c.claims.Models) > 0 || c.policy != nil && len(c.policy.Models) > 0) &&
		resp.Request.Method == http.MethodGet && strings.HasSuffix(resp.Request.URL.Path, "/models") {
		filterModels(resp, func(m string) bool { return c.claims.AllowsModel(m) && c.policy.allowsModel(m) })
	}
	s.spendHeaders(resp, c)
	if s.proxyCfg.CostHeader != "" {
		if v := resp.Header.Get(s.proxyCfg.CostHeader); v != "" {
			if f, err := strconv.ParseFloat(v, 64); err == nil && f >= 0 {
				c.cost, c.costKnown = f, true
			}
		}
	}
	ct := resp.Header.Get("Content-Type")
	sse := strings.HasPrefix(ct, "text/event-stream")
	c.outPath = resp.Request.URL.Path
	c.mb = meteredBody{ReadCloser: resp.Body, meter: usage.NewMeter(ct), sse: sse, anthropic: c.anthropic,
		idle: s.proxyCfg.ReadIdleTimeout}
	mb := &c.mb
	upstreamBody := resp.Body
	mb.timer = time.AfterFunc(mb.idle, func() { upstreamBody.Close() }) // unblocks a Read waiting on a silent upstream
	resp.Body = mb
	if sse {
		c.keepalive.stream()
		s.streams.add(mb)
	}
	c.body = mb
	return nil
}

// report records and logs the call once its answer has ended, when an
// answer came.
func (s *Server) report(c *call) {
	b := c.body
	if b == nil || b.reported {
		return
	}
	b.reported = true
	b.timer.Stop()
	if b.sse {
		s.streams.remove(b)
	}
	u := b.meter.Usage()
	model := u.Model
	if model == "" {
		model = c.model
	}
	cost, costKnown := s.callCost(c, c.cost, c.costKnown, u)
	s.usage.Record(usage.Record{
		Time: c.start, Email: c.claims.Email, TokenID: c.claims.ID, Model: model, Path: c.outPath,
		Status: c.status, InputTokens: u.InputTokens, OutputTokens: u.OutputTokens,
		CostUSD: cost, CostKnown: costKnown, Latency: time.Since(c.start),
	})
	s.metrics.proxied.WithLabelValues(c.up.Name, strconv.Itoa(c.status)).Inc()
	s.metrics.upLatency.WithLabelValues(c.up.Name).Observe(time.Since(c.start).Seconds())
	switch {
	case b.shutdown.Load():
		s.log.Info("stream ended by shutdown after the grace period", "upstream", c.up.Name, "user", c.claims.Email)
	case b.err != nil && !errors.Is(b.err, context.Canceled):
		s.log.Warn("upstream stream failed", "upstream", c.up.Name, "user", c.claims.Email, "err", b.err)
	}
	s.log.LogAttrs(context.Background(), slog.LevelInfo, "api call",
		slog.String("method", c.method), slog.String("path", c.outPath), slog.Int("status", c.status),
		slog.String("upstream", c.up.Name), slog.String("model", model), slog.String("user", c.claims.Email),
		slog.String("token_id", c.claims.ID), slog.Int64("input_tokens", u.InputTokens),
		slog.Int64("output_tokens", u.OutputTokens),
		slog.Int64("duration_us", time.Since(c.start).Microseconds()), slog.String("client_ip", c.clientIP))
}

// meteredBody feeds the meter as the client reads, and ends an SSE stream
// whose upstream failed with an error event of the API family instead of
// a cut connection. The handler reports the call (done) after the body
// has ended.
type meteredBody struct {
	io.ReadCloser
	meter     *usage.Meter
	sse       bool
	anthropic bool
	reported  bool // the call is recorded and logged
	ended     bool
	err       error // why the upstream's body ended early, if it did
	tail      *bytes.Reader
	idle      time.Duration
	timer     *time.Timer
	// shutdown is set when the gateway ends the stream at the end of
	// its shutdown grace period.
	shutdown atomic.Bool
}

func (b *meteredBody) Read(p []byte) (int, error) {
	if b.tail != nil {
		n, err := b.tail.Read(p)
		if err == io.EOF {
			b.finish(nil)
		}
		return n, err
	}
	b.timer.Reset(b.idle)
	n, err := b.ReadCloser.Read(p)
	if n > 0 {
		b.meter.Write(p[:n])
	}
	switch {
	case err == io.EOF:
		b.finish(nil)
	case err != nil && b.sse && !errors.Is(err, context.Canceled):
		b.finish(err)
		end := upstreamFailedEnd
		if b.shutdown.Load() {
			end = restartingEnd
		}
		b.tail = bytes.NewReader(end.event(b.anthropic))
		return n, nil
	case err != nil:
		b.finish(err)
	}
	return n, err
}

func (b *meteredBody) Close() error {
	b.finish(nil)
	return b.ReadCloser.Close()
}

// finish notes how the body ended (first call wins) and stops the idle
// timer.
func (b *meteredBody) finish(err error) {
	if b.ended {
		return
	}
	b.ended, b.err = true, err
	b.timer.Stop()
}

// streamEnd is the last event of a stream the gateway ends itself, in
// each API family's shape.
type streamEnd struct{ anthropic, openai string }

func (e streamEnd) event(anthropic bool) []byte {
	if anthropic {
		return []byte(e.anthropic)
	}
	return []byte(e.openai)
}

func newStreamEnd(message, code string) streamEnd {
	return streamEnd{
		anthropic: "\n\nevent: error\ndata: {\"type\":\"error\",\"error\":{\"type\":\"api_error\",\"message\":\"" + message + "\"}}\n\n",
		openai:    "\n\ndata: {\"error\":{\"message\":\"" + message + "\",\"type\":\"api_error\",\"code\":\"" + code + "\"}}\n\ndata: [DONE]\n\n",
	}
}

var (
	// upstreamFailedEnd ends a stream whose upstream failed mid-answer.
	upstreamFailedEnd = newStreamEnd("the upstream connection failed mid-stream; retry the request", "upstream_stream_error")
	// restartingEnd ends a stream still open when the shutdown grace
	// period is over.
	restartingEnd = newStreamEnd("the gateway is restarting and ended the stream; retry the request", "gateway_restarting")
)

// streamEndWait bounds how long the gateway waits, after ending the
// streams still open at the end of the grace period, for their last
// event to be written before it closes every connection.
const streamEndWait = time.Second

// openStreams are the SSE answers in flight.
type openStreams struct {
	mu    sync.Mutex
	open  map[*meteredBody]struct{}
	ended bool // end ran: streams that start now end at once
}

func (o *openStreams) add(b *meteredBody) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.ended {
		b.shutdown.Store(true)
		b.ReadCloser.Close()
		return
	}
	if o.open == nil {
		o.open = map[*meteredBody]struct{}{}
	}
	o.open[b] = struct{}{}
}

func (o *openStreams) remove(b *meteredBody) {
	o.mu.Lock()
	delete(o.open, b)
	o.mu.Unlock()
}

// end makes every open stream end with restartingEnd, by closing its
// upstream body under the Read that waits on it, and returns how many
// there were.
func (o *openStreams) end() int {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.ended = true
	for b := range o.open {
		b.shutdown.Store(true)
		b.ReadCloser.Close()
	}
	return len(o.open)
}

// proxyError answers when the upstream could not be reached or did not
// send headers in time.
func (s *Server) proxyError(w http.ResponseWriter, r *http.Request, err error) {
	c, _ := r.Context().Value(callKey{}).(*call)
	if c == nil {
		c = &call{start: time.Now(), anthropic: anthropicPath(r.URL.Path), clientIP: s.clientIP(r)}
	}
	if errors.Is(r.Context().Err(), context.Canceled) {
		// The client went away; nobody is listening.
		c.status = 499
		s.logCall(r, c, "client closed the request")
		return
	}
	status, msg := http.StatusBadGateway, "the upstream could not be reached"
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() || errors.Is(err, context.DeadlineExceeded) {
		status, msg = http.StatusGatewayTimeout, "the upstream did not answer in time"
	}
	s.log.Warn("upstream failed", "upstream", c.upName(), "path", r.URL.Path, "err", err)
	s.refuse(w, r, c, status, "api_error", "upstream_error", msg, err.Error())
}

func (c *call) upName() string {
	if c.up == nil {
		return ""
	}
	return c.up.Name
}

// bufferPool reuses the copy buffers of the reverse proxy. A stream holds
// its buffer for its whole life while it waits for the upstream's next
// event, so the buffer is sized for events (an LLM stream's are a few
// hundred bytes) rather than for bulk: 2 KiB instead of ReverseProxy's
// default 32 KiB. A large non-streamed answer takes a few more reads.
type bufferPool struct{}

var copyBuffers = sync.Pool{New: func() any { b := make([]byte, 2<<10); return &b }}

func (bufferPool) Get() []byte  { return *(copyBuffers.Get().(*[]byte)) }
func (bufferPool) Put(b []byte) { copyBuffers.Put(&b) }
