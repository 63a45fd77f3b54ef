package h1transport

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptrace"
	"net/textproto"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// Config tunes a Transport. Zero values take the defaults noted.
type Config struct {
	// MaxIdlePerHost caps the idle connections kept per host:port
	// (default 512); more are closed when released.
	MaxIdlePerHost int
	// IdleTimeout closes a pooled connection idle this long (default
	// 4 s); keep it below the upstream's own keep-alive timeout.
	IdleTimeout time.Duration
	// ResponseHeaderTimeout bounds writing the request and reading the
	// response headers (default 10 min); it then fails with an error
	// whose Timeout() is true. It never cuts a body.
	ResponseHeaderTimeout time.Duration
	// DialTimeout bounds connecting (default 30 s).
	DialTimeout time.Duration
	// MaxResponseHeaderBytes bounds an answer's status line and headers
	// (default 10 MiB, as net/http's Transport), so that an upstream
	// sending headers without end fails the call instead of growing the
	// gateway's memory.
	MaxResponseHeaderBytes int64
	// Fallback carries what this transport does not: https URLs,
	// upgrade requests (WebSocket), CONNECT. Nil refuses them.
	Fallback http.RoundTripper
}

const (
	// readBufferSize is each connection's read buffer: response headers
	// and chunk framing pass through it; larger body reads bypass it.
	readBufferSize = 1 << 10
	// writeBufferSize is the pooled buffer a request is written through,
	// so headers and a small body leave in one write.
	writeBufferSize = 4 << 10
	// max1xx bounds the informational answers skipped before the final one.
	max1xx = 16
)

// Transport is an http.RoundTripper for http:// upstreams. It is safe
// for concurrent use; Close stops its idle-connection sweeper.
type Transport struct {
	cfg    Config
	dialer net.Dialer

	mu       sync.Mutex
	idle     map[string][]*conn // per host:port, oldest first
	closed   bool
	sweeping bool
	done     chan struct{}
}

// New returns a Transport with cfg's settings.
func New(cfg Config) *Transport {
	if cfg.MaxIdlePerHost <= 0 {
		cfg.MaxIdlePerHost = 512
	}
	if cfg.IdleTimeout <= 0 {
		cfg.IdleTimeout = 4 * time.Second
	}
	if cfg.ResponseHeaderTimeout <= 0 {
		cfg.ResponseHeaderTimeout = 10 * time.Minute
	}
	if cfg.DialTimeout <= 0 {
		cfg.DialTimeout = 30 * time.Second
	}
	if cfg.MaxResponseHeaderBytes <= 0 {
		cfg.MaxResponseHeaderBytes = 10 << 20
	}
	return &Transport{
		cfg:    cfg,
		dialer: net.Dialer{Timeout: cfg.DialTimeout, KeepAlive: 30 * time.Second},
		idle:   map[string][]*conn{},
		done:   make(chan struct{}),
	}
}

// conn is one upstream connection. Only the goroutine whose request it
// carries touches br; nc may be closed from anywhere.
type conn struct {
	nc     net.Conn
	br     *bufio.Reader // reads from the conn itself (Read below)
	key    string
	reused bool      // it carried an earlier request
	idleAt time.Time // when it was pooled
	// left is what may still be read before the answer's headers end
	// (MaxResponseHeaderBytes); -1 once they ended.
	left int64
	// For alive, set once so that its peek at the socket allocates nothing.
	rc      syscall.RawConn
	peekFn  func(fd uintptr) bool
	peekOK  bool
	peekBuf [1]byte
}

var errHeadersTooLarge = errors.New("h1transport: the answer's headers exceed MaxResponseHeaderBytes")

func (c *conn) Read(p []byte) (int, error) {
	if c.left < 0 {
		return c.nc.Read(p)
	}
	if c.left == 0 {
		return 0, errHeadersTooLarge
	}
	if int64(len(p)) > c.left {
		p = p[:c.left]
	}
	n, err := c.nc.Read(p)
	c.left -= int64(n)
	return n, err
}

// RoundTrip sends req and returns the response once its headers have
// arrived; the body streams from the connection. The connection goes
// back to the pool when the body has been read to its end and closed,
// and is closed instead when the body is closed early, the answer says
// Connection: close, or req's context ends.
func (t *Transport) RoundTrip(req *http.Request) (*http.Response, error) {
	if req.URL == nil {
		closeBody(req)
		return nil, errors.New("h1transport: request has no URL")
	}
	if !handles(req.URL, req.Method, req.Header) {
		if t.cfg.Fallback == nil {
			closeBody(req)
			return nil, fmt.Errorf("h1transport: cannot send %s %s: only plain http:// requests without an upgrade are handled here, and no fallback transport is set", req.Method, req.URL.Redacted())
		}
		return t.cfg.Fallback.RoundTrip(req)
	}
	if req.URL.Host == "" {
		closeBody(req)
		return nil, errors.New("h1transport: request URL has no host")
	}
	ctx := req.Context()
	if err := ctx.Err(); err != nil {
		closeBody(req)
		return nil, err
	}
	key := hostPort(req.URL.Host)
	r := req
	if req.GetBody != nil && req.Body != nil && req.Body != http.NoBody && req.ContentLength > 0 {
		// Send a fresh copy: GetBody's reader is the bare in-memory one,
		// which http.Request.Write sends in the same write as the headers,
		// where the body it was handed (httputil.ReverseProxy wraps it)
		// costs a write of its own.
		if b, err := req.GetBody(); err == nil {
			req.Body.Close()
			r = shallowWithBody(req, b)
		}
	}
	replay := replayable(req)
	for attempt := 0; ; attempt++ {
		c := t.get(key)
		if c != nil && !alive(c) {
			// The upstream closed the pooled connection, or sent bytes
			// nobody asked for (a 408 before closing, a stray answer),
			// while it was idle: those must reach no request.
			c.nc.Close()
			c = nil
		}
		if c == nil {
			var err error
			if c, err = t.dial(ctx, key); err != nil {
				closeBody(r)
				if ctx.Err() != nil {
					return nil, ctx.Err()
				}
				return nil, err
			}
		}
		resp, beforeResponse, err := t.exchange(ctx, c, r, req)
		if err == nil {
			return resp, nil
		}
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		// A pooled connection the upstream had already closed fails
		// before any answer: send again on a new one, as net/http does,
		// when the request may be repeated.
		if attempt > 0 || !c.reused || !beforeResponse || !replay || !peerClosed(err) {
			return nil, err
		}
		if req.Body != nil && req.Body != http.NoBody {
			b, gerr := req.GetBody()
			if gerr != nil {
				return nil, err
			}
			r = shallowWithBody(req, b)
		}
	}
}

// exchange writes r on c and reads the answer's headers. On failure c
// is closed; beforeResponse reports that no byte of an answer arrived.
// The response names orig as its request.
func (t *Transport) exchange(ctx context.Context, c *conn, r, orig *http.Request) (resp *http.Response, beforeResponse bool, err error) {
	stop := context.AfterFunc(ctx, func() { c.nc.Close() })
	fail := func(before bool, err error) (*http.Response, bool, error) {
		stop()
		c.nc.Close()
		return nil, before, err
	}
	c.nc.SetDeadline(time.Now().Add(t.cfg.ResponseHeaderTimeout))

	c.left = t.cfg.MaxResponseHeaderBytes
	early := false           // answered before taking the whole request
	var writing <-chan error // a large request's writer, still running
	if inline(r.ContentLength) {
		// The socket takes a small request whole: write, then wait.
		if err := writeRequest(c, r); err != nil {
			// The upstream may have answered and closed before taking
			// the request (a 413, say): that answer is the one to relay.
			if !peerClosed(err) || !answered(c) {
				return fail(true, fmt.Errorf("h1transport: write request to %s: %w", c.key, err))
			}
			early = true
		} else if _, err := c.br.Peek(1); err != nil {
			return fail(true, fmt.Errorf("h1transport: read response from %s: %w", c.key, err))
		}
	} else {
		// A large body may block in the socket while the upstream has
		// already answered and stopped reading; if it then closes, the
		// reset discards an answer not yet read. So a large request is
		// written by a goroutine of its own while this one waits for
		// the answer, as net/http's Transport always does.
		werr := make(chan error, 1)
		go func() { werr <- writeRequest(c, r) }()
		_, perr := c.br.Peek(1)
		select {
		case err := <-werr:
			if err != nil && (perr != nil || !peerClosed(err)) {
				return fail(true, fmt.Errorf("h1transport: write request to %s: %w", c.key, err))
			}
			early = err != nil
		default:
			if perr != nil {
				c.nc.Close()
				err := <-werr
				if err == nil || !peerClosed(err) {
					err = perr
				}
				return fail(true, fmt.Errorf("h1transport: read response from %s: %w", c.key, err))
			}
			// Answered before the writer reported back: it may have
			// finished just now, or the upstream answered early and the
			// writer ends when the connection is closed after this
			// answer. The body's end tells which.
			writing = werr
		}
		if perr != nil {
			return fail(true, fmt.Errorf("h1transport: read response from %s: %w", c.key, perr))
		}
	}
	trace := httptrace.ContextClientTrace(ctx)
	for n := 0; ; n++ {
		resp, err = http.ReadResponse(c.br, r)
		if err != nil {
			return fail(false, fmt.Errorf("h1transport: read response from %s: %w", c.key, err))
		}
		if resp.StatusCode >= 200 {
			break
		}
		if resp.StatusCode == http.StatusSwitchingProtocols {
			return fail(false, fmt.Errorf("h1transport: %s answered 101 Switching Protocols to a request that asked for no upgrade", c.key))
		}
		if n == max1xx {
			return fail(false, fmt.Errorf("h1transport: %s sent more than %d informational (1xx) answers", c.key, max1xx))
		}
		if trace != nil && trace.Got1xxResponse != nil {
			if err := trace.Got1xxResponse(resp.StatusCode, textproto.MIMEHeader(resp.Header)); err != nil {
				return fail(false, err)
			}
		}
	}
	c.left = -1
	c.nc.SetDeadline(time.Time{})
	resp.Request = orig
	resp.Body = &body{t: t, c: c, rc: resp.Body, ctx: ctx, stop: stop, writing: writing,
		keep: !resp.Close && !r.Close && !early}
	return resp, false, nil
}

// body is a response body reading from its connection. At its end the
// connection is pooled (or closed); Close before the end closes it.
// Close may run while Read is blocked (an idle timer ending a stream).
type body struct {
	t    *Transport
	c    *conn
	rc   io.ReadCloser
	ctx  context.Context
	stop func() bool
	keep bool
	// writing is the request's writer when it had not reported back as
	// the answer came; the connection is reused only if it finished.
	writing <-chan error
	state   atomic.Int32 // open, ended, closed
}

const (
	open int32 = iota
	ended
	closed
)

var errBodyClosed = errors.New("h1transport: read on closed response body")

func (b *body) Read(p []byte) (int, error) {
	switch b.state.Load() {
	case ended:
		return 0, io.EOF
	case closed:
		return 0, errBodyClosed
	}
	n, err := b.rc.Read(p)
	switch {
	case err == io.EOF:
		b.end()
	case err != nil:
		if b.state.Load() == closed {
			err = errBodyClosed
		} else if cerr := b.ctx.Err(); cerr != nil {
			err = cerr
		}
		b.abort()
	}
	return n, err
}

func (b *body) Close() error {
	if b.rc == http.NoBody {
		b.end()
		return nil
	}
	b.abort()
	return nil
}

// end pools the connection after a complete answer, when it may carry
// another request.
func (b *body) end() {
	if !b.state.CompareAndSwap(open, ended) {
		return
	}
	if b.writing != nil {
		select {
		case err := <-b.writing:
			b.keep = b.keep && err == nil
		default: // the upstream answered before taking the whole request
			b.keep = false
		}
	}
	if b.keep && b.c.br.Buffered() == 0 && b.stop() {
		b.t.put(b.c)
		return
	}
	b.stop()
	b.c.nc.Close()
}

// abort closes the connection of an answer not read to its end.
func (b *body) abort() {
	if !b.state.CompareAndSwap(open, closed) {
		return
	}
	b.stop()
	b.c.nc.Close()
}

var writers = sync.Pool{New: func() any { return bufio.NewWriterSize(nil, writeBufferSize) }}

// writeSide is a conn as a request's writer sees it. A body larger than
// the write buffer is copied through a pooled buffer, where net.TCPConn's
// ReadFrom would allocate 32 KiB for each (http.Request.Write hands it the
// body inside an io.LimitedReader, which hides any WriterTo).
type writeSide conn

func (w *writeSide) Write(p []byte) (int, error) { return w.nc.Write(p) }

func (w *writeSide) ReadFrom(r io.Reader) (int64, error) {
	bp := bodyCopyBuffers.Get().(*[]byte)
	defer bodyCopyBuffers.Put(bp)
	return io.CopyBuffer((*writeOnly)(w), r, *bp)
}

// writeOnly hides writeSide's ReadFrom from io.CopyBuffer.
type writeOnly conn

func (w *writeOnly) Write(p []byte) (int, error) { return w.nc.Write(p) }

var bodyCopyBuffers = sync.Pool{New: func() any { b := make([]byte, 64<<10); return &b }}

func (t *Transport) dial(ctx context.Context, key string) (*conn, error) {
	nc, err := t.dialer.DialContext(ctx, "tcp", key)
	if err != nil {
		return nil, fmt.Errorf("h1transport: %w", err)
	}
	c := &conn{nc: nc, key: key, left: -1}
	c.br = bufio.NewReaderSize(c, readBufferSize)
	if sc, ok := nc.(syscall.Conn); ok {
		c.rc, _ = sc.SyscallConn()
	}
	return c, nil
}

// get takes the most recently pooled connection to key, or nil.
func (t *Transport) get(key string) *conn {
	t.mu.Lock()
	s := t.idle[key]
	if len(s) == 0 {
		t.mu.Unlock()
		return nil
	}
	c := s[len(s)-1]
	s[len(s)-1] = nil
	s = s[:len(s)-1]
	if time.Since(c.idleAt) < t.cfg.IdleTimeout {
		t.idle[key] = s
		t.mu.Unlock()
		return c
	}
	// Expired, and every connection below it is older.
	stale := append([]*conn{c}, s...)
	clear(s)
	t.idle[key] = s[:0]
	t.mu.Unlock()
	for _, c := range stale {
		c.nc.Close()
	}
	return nil
}

// put pools c, or closes it when the pool is full or closed.
func (t *Transport) put(c *conn) {
	c.reused = true
	c.idleAt = time.Now()
	t.mu.Lock()
	if t.closed || len(t.idle[c.key]) >= t.cfg.MaxIdlePerHost {
		t.mu.Unlock()
		c.nc.Close()
		return
	}
	t.idle[c.key] = append(t.idle[c.key], c)
	if !t.sweeping {
		t.sweeping = true
		go t.sweep()
	}
	t.mu.Unlock()
}

// sweep closes connections idle longer than IdleTimeout, so that none
// lingers half-closed after the upstream gave up on it. It ends when the
// pool is empty; put starts it again.
func (t *Transport) sweep() {
	tick := time.NewTicker(max(t.cfg.IdleTimeout/2, 10*time.Millisecond))
	defer tick.Stop()
	for {
		select {
		case <-t.done:
			return
		case now := <-tick.C:
			var stale []*conn
			t.mu.Lock()
			pooled := 0
			for key, s := range t.idle {
				i := 0
				for i < len(s) && now.Sub(s[i].idleAt) >= t.cfg.IdleTimeout {
					i++
				}
				if i > 0 {
					stale = append(stale, s[:i]...)
					n := copy(s, s[i:])
					clear(s[n:])
					s = s[:n]
					t.idle[key] = s
				}
				if len(s) == 0 {
					delete(t.idle, key)
				}
				pooled += len(s)
			}
			if pooled == 0 {
				t.sweeping = false
			}
			t.mu.Unlock()
			for _, c := range stale {
				c.nc.Close()
			}
			if pooled == 0 {
				return
			}
		}
	}
}

// CloseIdleConnections closes every pooled connection.
func (t *Transport) CloseIdleConnections() {
	t.mu.Lock()
	var all []*conn
	for key, s := range t.idle {
		all = append(all, s...)
		delete(t.idle, key)
	}
	t.mu.Unlock()
	for _, c := range all {
		c.nc.Close()
	}
	if t.cfg.Fallback != nil {
		if ci, ok := t.cfg.Fallback.(interface{ CloseIdleConnections() }); ok {
			ci.CloseIdleConnections()
		}
	}
}

// Close closes the pooled connections and stops the sweeper. Requests
// still in flight finish; their connections are closed when they end.
func (t *Transport) Close() error {
	t.mu.Lock()
	if !t.closed {
		t.closed = true
		close(t.done)
	}
	t.mu.Unlock()
	t.CloseIdleConnections()
	return nil
}

// replayable reports whether req may be sent again after a connection
// failed before answering: net/http's rule (idempotent method or an
// Idempotency-Key header, and a body that can be had again).
func replayable(req *http.Request) bool {
	if req.Body != nil && req.Body != http.NoBody && req.GetBody == nil {
		return false
	}
	switch req.Method {
	case "", http.MethodGet, http.MethodHead, http.MethodOptions, http.MethodTrace:
		return true
	}
	_, k1 := req.Header["Idempotency-Key"]
	_, k2 := req.Header["X-Idempotency-Key"]
	return k1 || k2
}

// InlineWriteMax is the largest body RoundTrip writes itself, before it
// reads the answer; a larger one is written by a goroutine of its own
// (see exchange) that may still read it after RoundTrip has returned.
const InlineWriteMax = 256 << 10

// handles reports whether RoundTrip sends a request itself rather than
// through the fallback transport.
func handles(u *url.URL, method string, h http.Header) bool {
	return u.Scheme == "http" && method != http.MethodConnect && !isUpgrade(h)
}

func inline(contentLength int64) bool { return contentLength >= 0 && contentLength <= InlineWriteMax }

// WritesInline reports whether RoundTrip writes the body of a request to
// u, with this method, header and body length, before it reads the
// answer, so that nothing reads the body once RoundTrip has returned and
// the caller may reuse its buffer. The fallback transport (TLS, upgrades,
// CONNECT) and a body above InlineWriteMax give no such promise.
func WritesInline(u *url.URL, method string, h http.Header, contentLength int64) bool {
	return handles(u, method, h) && inline(contentLength)
}

// writeRequest writes r on c through a pooled buffer: headers and a
// small body leave in one write.
func writeRequest(c *conn, r *http.Request) error {
	bw := writers.Get().(*bufio.Writer)
	bw.Reset((*writeSide)(c))
	err := r.Write(bw)
	if err == nil {
		err = bw.Flush()
	}
	bw.Reset(nil)
	writers.Put(bw)
	return err
}

// answered reports whether an answer is waiting on c, looking no longer
// than a moment.
func answered(c *conn) bool {
	c.nc.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
	_, err := c.br.Peek(1)
	return err == nil
}

// peerClosed reports whether err says the upstream closed the
// connection (rather than, say, a timeout).
func peerClosed(err error) bool {
	return errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) ||
		errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE)
}

func shallowWithBody(req *http.Request, b io.ReadCloser) *http.Request {
	r := new(http.Request)
	*r = *req
	r.Body = b
	return r
}

func isUpgrade(h http.Header) bool {
	if _, ok := h["Upgrade"]; ok {
		return true
	}
	for _, v := range h["Connection"] {
		for tok := range strings.SplitSeq(v, ",") {
			if strings.EqualFold(strings.TrimSpace(tok), "upgrade") {
				return true
			}
		}
	}
	return false
}

// hostPort adds port 80 to a host without one.
func hostPort(host string) string {
	if _, _, err := net.SplitHostPort(host); err == nil {
		return host
	}
	if strings.HasPrefix(host, "[") && strings.HasSuffix(host, "]") {
		return host + ":80"
	}
	return net.JoinHostPort(host, "80")
}

func closeBody(req *http.Request) {
	if req.Body != nil {
		req.Body.Close()
	}
}
