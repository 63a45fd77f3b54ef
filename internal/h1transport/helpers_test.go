package h1transport_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/llmgate/llmgate/internal/h1transport"
)

// waitFor bounds every wait on an event in these tests. It is a failure
// timeout only: passing runs never wait this long.
const waitFor = 5 * time.Second

// impl is one http.RoundTripper under test: ours, or net/http's
// Transport as the reference that proves a case's expectations are the
// standard library's behaviour.
type impl struct {
	name string
	ours bool
}

var impls = []impl{{name: "ours", ours: true}, {name: "reference"}}

// eachImpl runs fn as one subtest per implementation.
func eachImpl(t *testing.T, fn func(t *testing.T, im impl)) {
	t.Helper()
	for _, im := range impls {
		t.Run(im.name, func(t *testing.T) { fn(t, im) })
	}
}

// onlyOurs skips the reference where net/http has no equivalent or
// behaves differently on purpose.
func (im impl) onlyOurs(tb testing.TB, why string) {
	tb.Helper()
	if !im.ours {
		tb.Skip("reference: " + why)
	}
}

// transport builds the RoundTripper under test with cfg; the reference
// gets the equivalent http.Transport settings (DisableCompression, no
// proxy, HTTP/1.1 only). Both are closed when the test ends. Unless
// the test sets one, IdleTimeout is an hour, longer than any wait here,
// so the idle sweeper never hides a connection kept by mistake.
func (im impl) transport(tb testing.TB, cfg h1transport.Config) http.RoundTripper {
	tb.Helper()
	if cfg.IdleTimeout == 0 {
		cfg.IdleTimeout = time.Hour
	}
	if im.ours {
		tr := h1transport.New(cfg)
		tb.Cleanup(func() { tr.Close() })
		return tr
	}
	ref := &http.Transport{
		Proxy:                 nil,
		DisableCompression:    true,
		MaxIdleConnsPerHost:   or(cfg.MaxIdlePerHost, 512),
		IdleConnTimeout:       or(cfg.IdleTimeout, 4*time.Second),
		ResponseHeaderTimeout: or(cfg.ResponseHeaderTimeout, 10*time.Minute),
		DialContext:           (&net.Dialer{Timeout: or(cfg.DialTimeout, 30*time.Second)}).DialContext,
	}
	tb.Cleanup(ref.CloseIdleConnections)
	return ref
}

func or[T comparable](v, def T) T {
	var zero T
	if v == zero {
		return def
	}
	return v
}

// get sends a GET for url through rt, failing the test if RoundTrip
// does not return within waitFor.
func get(tb testing.TB, rt http.RoundTripper, url string) (*http.Response, error) {
	tb.Helper()
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		tb.Fatal(err)
	}
	res := wait(tb, goRoundTrip(rt, req), "RoundTrip GET "+url+" to return")
	return res.resp, res.err
}

// mustGet sends a GET and returns the whole body, failing on any error.
func mustGet(tb testing.TB, rt http.RoundTripper, url string) (*http.Response, string) {
	tb.Helper()
	resp, err := get(tb, rt, url)
	if err != nil {
		tb.Fatalf("GET %s: %v", url, err)
	}
	return resp, readClose(tb, resp)
}

// readClose reads resp's body to its end and closes it, failing the
// test if that does not finish within waitFor.
func readClose(tb testing.TB, resp *http.Response) string {
	tb.Helper()
	type read struct {
		b   []byte
		err error
	}
	done := make(chan read, 1)
	go func() {
		b, err := io.ReadAll(resp.Body)
		if cerr := resp.Body.Close(); err == nil {
			err = cerr
		}
		done <- read{b, err}
	}()
	r := wait(tb, done, "the body to be read to its end and closed")
	if r.err != nil {
		tb.Fatalf("read body: %v (read %q)", r.err, r.b)
	}
	return string(r.b)
}

// wait blocks until ch is closed or yields, failing after waitFor with
// what was awaited.
func wait[T any](tb testing.TB, ch <-chan T, what string) T {
	tb.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(waitFor):
		tb.Fatalf("timed out after %v waiting for %s", waitFor, what)
		panic("unreachable")
	}
}

// result is a RoundTrip's outcome delivered over a channel.
type result struct {
	resp *http.Response
	err  error
}

// roundTrip is rt.RoundTrip(req), failing the test if it does not
// return within waitFor.
func roundTrip(tb testing.TB, rt http.RoundTripper, req *http.Request) (*http.Response, error) {
	tb.Helper()
	res := wait(tb, goRoundTrip(rt, req), fmt.Sprintf("RoundTrip %s %s to return", req.Method, req.URL))
	return res.resp, res.err
}

// goRoundTrip runs rt.RoundTrip(req) on another goroutine.
func goRoundTrip(rt http.RoundTripper, req *http.Request) <-chan result {
	ch := make(chan result, 1)
	go func() {
		resp, err := rt.RoundTrip(req)
		ch <- result{resp, err}
	}()
	return ch
}

// rawServer is a loopback TCP server driven byte by byte, for answers
// httptest cannot produce and for observing what the client does with
// its connections. handle runs once per accepted connection on its own
// goroutine; the connection is closed when it returns.
type rawServer struct {
	tb     testing.TB
	ln     net.Listener
	addr   string
	url    string
	handle func(c *rawConn)

	accepted chan *rawConn // every accepted connection, in order
	count    atomic.Int32

	mu    sync.Mutex
	conns []*rawConn
	wg    sync.WaitGroup
}

// rawConn is the server's side of one connection.
type rawConn struct {
	net.Conn
	id int // 1-based, in accept order
	br *bufio.Reader

	peerClosedOnce sync.Once
	peerClosed     chan struct{} // closed when a read saw the client close
}

func newRawServer(tb testing.TB, handle func(c *rawConn)) *rawServer {
	tb.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	s := &rawServer{
		tb: tb, ln: ln, addr: ln.Addr().String(), url: "http://" + ln.Addr().String(),
		handle: handle, accepted: make(chan *rawConn, 1024),
	}
	s.wg.Add(1)
	go s.serve()
	tb.Cleanup(s.close)
	return s
}

func (s *rawServer) serve() {
	defer s.wg.Done()
	for {
		nc, err := s.ln.Accept()
		if err != nil {
			return
		}
		c := &rawConn{Conn: nc, id: int(s.count.Add(1)), br: bufio.NewReader(nc), peerClosed: make(chan struct{})}
		s.mu.Lock()
		s.conns = append(s.conns, c)
		s.mu.Unlock()
		s.accepted <- c
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			defer c.Close()
			s.handle(c)
		}()
	}
}

func (s *rawServer) close() {
	s.ln.Close()
	s.mu.Lock()
	for _, c := range s.conns {
		c.Close()
	}
	s.mu.Unlock()
	s.wg.Wait()
}

// conns returns how many connections the server has accepted.
func (s *rawServer) connCount() int { return int(s.count.Load()) }

// nextConn waits for the next accepted connection.
func (s *rawServer) nextConn(tb testing.TB) *rawConn {
	tb.Helper()
	return wait(tb, s.accepted, "the server to accept a connection")
}

// readRequest reads one request and its whole body. A read that sees
// the client close marks peerClosed.
func (c *rawConn) readRequest() (*http.Request, []byte, error) {
	req, err := http.ReadRequest(c.br)
	if err != nil {
		c.sawErr(err)
		return nil, nil, err
	}
	body, err := io.ReadAll(req.Body)
	if err != nil {
		c.sawErr(err)
		return nil, nil, fmt.Errorf("read request body: %w", err)
	}
	return req, body, nil
}

// drainUntilClosed discards what the client sends until it closes the
// connection (or the server shuts down).
func (c *rawConn) drainUntilClosed() {
	_, err := io.Copy(io.Discard, c.br)
	if err == nil {
		err = io.EOF
	}
	c.sawErr(err)
}

// sawErr marks peerClosed when err says the client closed or reset the
// connection, as opposed to the server closing its own side.
func (c *rawConn) sawErr(err error) {
	if errors.Is(err, net.ErrClosed) {
		return
	}
	c.peerClosedOnce.Do(func() { close(c.peerClosed) })
}

// waitPeerClosed fails unless the client closes this connection within
// waitFor.
func (c *rawConn) waitPeerClosed(tb testing.TB) {
	tb.Helper()
	wait(tb, c.peerClosed, fmt.Sprintf("the client to close connection %d", c.id))
}

// isPeerClosed reports whether the client has closed this connection.
func (c *rawConn) isPeerClosed() bool {
	select {
	case <-c.peerClosed:
		return true
	default:
		return false
	}
}

// write writes s, ignoring errors (the client may be gone on purpose).
func (c *rawConn) write(s string) { io.WriteString(c.Conn, s) }

// seen is one request as a server observed it.
type seen struct {
	conn int // the rawConn id, or the httptest connection's number
	req  *http.Request
	body []byte
}

// keepAliveServer answers every request on every connection with
// answer(conn, n, req) — n counts requests on that connection from 1 —
// reporting each request on the returned channel and marking
// peerClosed when the client closes.
func keepAliveServer(tb testing.TB, answer func(c *rawConn, n int, s seen) (raw string, keep bool)) (*rawServer, <-chan seen) {
	tb.Helper()
	reqs := make(chan seen, 1024)
	s := newRawServer(tb, func(c *rawConn) {
		for n := 1; ; n++ {
			req, body, err := c.readRequest()
			if err != nil {
				return
			}
			sn := seen{conn: c.id, req: req, body: body}
			reqs <- sn
			raw, keep := answer(c, n, sn)
			c.write(raw)
			if !keep {
				return
			}
		}
	})
	return s, reqs
}

// firstAnswerServer answers the first request on the first connection with
// raw, keeping the connection open when keep, and every other request with
// next.
func firstAnswerServer(tb testing.TB, raw string, keep bool) (*rawServer, <-chan seen) {
	tb.Helper()
	return keepAliveServer(tb, func(c *rawConn, n int, _ seen) (string, bool) {
		if c.id == 1 && n == 1 {
			return raw, keep
		}
		return next, true
	})
}

// okAnswer is a plain keep-alive 200 with body.
func okAnswer(body string) string {
	return fmt.Sprintf("HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s", len(body), body)
}

// countingServer is an httptest server that counts the connections it
// accepted and reports each one that closed.
type countingServer struct {
	*httptest.Server
	newConns atomic.Int32
	closed   chan struct{} // one value per closed connection
}

func newCountingServer(tb testing.TB, h http.Handler) *countingServer {
	tb.Helper()
	cs := &countingServer{Server: httptest.NewUnstartedServer(h), closed: make(chan struct{}, 4096)}
	cs.Config.ConnState = func(_ net.Conn, st http.ConnState) {
		switch st {
		case http.StateNew:
			cs.newConns.Add(1)
		case http.StateClosed, http.StateHijacked:
			cs.closed <- struct{}{}
		}
	}
	cs.Start()
	tb.Cleanup(cs.Close)
	return cs
}

// markerKey marks a request's context so that a test can recognise it
// on resp.Request.
type markerKey struct{}

// markedRequest is a request whose context carries a marker; the
// gateway finds its per-call state through resp.Request.Context().
func markedRequest(tb testing.TB, method, url string, body io.Reader) *http.Request {
	tb.Helper()
	ctx := context.WithValue(context.Background(), markerKey{}, url)
	req, err := http.NewRequestWithContext(ctx, method, url, body)
	if err != nil {
		tb.Fatal(err)
	}
	return req
}

// checkRespRequest fails unless resp.Request is req or a copy of it
// with its context.
func checkRespRequest(tb testing.TB, resp *http.Response, req *http.Request) {
	tb.Helper()
	switch {
	case resp.Request == nil:
		tb.Errorf("resp.Request is nil; want the request (the gateway reads its context)")
	case resp.Request.Context().Value(markerKey{}) != req.Context().Value(markerKey{}) ||
		resp.Request.Method != req.Method || resp.Request.URL.String() != req.URL.String():
		tb.Errorf("resp.Request is %s %s without the request's context; want the request sent", resp.Request.Method, resp.Request.URL)
	}
}

// testCtx returns a cancellable context that ends with the test.
func testCtx(tb testing.TB) (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithCancel(context.Background())
	tb.Cleanup(cancel)
	return ctx, cancel
}
