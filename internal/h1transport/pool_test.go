package h1transport_test

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/llmgate/llmgate/internal/h1transport"
)

// TestConnectionReuse: sequential requests whose bodies are read to the
// end and closed all go over one connection, which stays open.
func TestConnectionReuse(t *testing.T) {
	eachImpl(t, func(t *testing.T, im impl) {
		srv := newCountingServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			b, _ := io.ReadAll(r.Body)
			fmt.Fprintf(w, "%s %s %s", r.Method, r.URL.Path, b)
		}))
		rt := im.transport(t, h1transport.Config{})
		for i := range 6 {
			method, body := http.MethodGet, io.Reader(nil)
			if i%2 == 1 {
				method, body = http.MethodPost, strings.NewReader(fmt.Sprint("body", i))
			}
			resp, err := roundTrip(t, rt, newRequest(t, method, fmt.Sprintf("%s/r%d", srv.URL, i), body))
			if err != nil {
				t.Fatalf("request %d: %v", i, err)
			}
			want := fmt.Sprintf("%s /r%d ", method, i)
			if i%2 == 1 {
				want += fmt.Sprint("body", i)
			}
			if got := readClose(t, resp); got != want {
				t.Errorf("request %d: body %q, want %q", i, got, want)
			}
		}
		if n := srv.newConns.Load(); n != 1 {
			t.Errorf("server accepted %d connections for 6 sequential requests, want 1", n)
		}
		if n := len(srv.closed); n != 0 {
			t.Errorf("%d connections closed; want the one kept", n)
		}
	})
}

// staleServer answers the first request on connection 1, then closes
// that connection when told (the upstream's keep-alive timeout), and
// answers everything on later connections.
func staleServer(tb testing.TB) (srv *rawServer, reqs <-chan seen, closeIdle func()) {
	tb.Helper()
	closeCh, closedCh := make(chan struct{}), make(chan struct{})
	r := make(chan seen, 16)
	srv = newRawServer(tb, func(c *rawConn) {
		for n := 1; ; n++ {
			req, body, err := c.readRequest()
			if err != nil {
				return
			}
			r <- seen{conn: c.id, req: req, body: body}
			if c.id == 1 {
				c.write(okAnswer("one"))
				select {
				case <-closeCh:
				case <-time.After(waitFor):
				}
				c.Close()
				close(closedCh)
				return
			}
			c.write(okAnswer("two"))
		}
	})
	return srv, r, func() {
		close(closeCh)
		wait(tb, closedCh, "the server to close the idle connection")
	}
}

// TestStalePooledConnection: when the upstream has closed a pooled
// connection while it sat idle, the next request goes through on a new
// connection: a GET, and a POST whose body can be replayed (GetBody, as
// the gateway sends). A POST whose body cannot be replayed either fails
// or arrives whole — never with its body lost.
func TestStalePooledConnection(t *testing.T) {
	payload := []byte(`{"model":"m","stream":true}`)
	tests := []struct {
		name     string
		build    func(tb testing.TB, url string) *http.Request
		mayFail  bool
		wantBody []byte
		refSkip  string
	}{
		{name: "GET", build: func(tb testing.TB, url string) *http.Request {
			return markedRequest(tb, http.MethodGet, url, nil)
		}},
		{name: "POST with GetBody", wantBody: payload, refSkip: "net/http takes the dead connection before its readLoop " +
			"sees the close, writes the POST and, a POST not being idempotent, does not retry it (EOF)", build: func(tb testing.TB, url string) *http.Request {
			req := markedRequest(tb, http.MethodPost, url, bytes.NewReader(payload))
			if req.GetBody == nil {
				tb.Fatal("NewRequest set no GetBody")
			}
			return req
		}},
		{name: "POST without GetBody", wantBody: payload, mayFail: true, build: func(tb testing.TB, url string) *http.Request {
			req := newRequest(tb, http.MethodPost, url, io.NopCloser(bytes.NewReader(payload)))
			req.ContentLength = int64(len(payload))
			req.GetBody = nil
			return req
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			eachImpl(t, func(t *testing.T, im impl) {
				if tt.refSkip != "" {
					im.onlyOurs(t, tt.refSkip)
				}
				srv, reqs, closeIdle := staleServer(t)
				rt := im.transport(t, h1transport.Config{})
				if _, body := mustGet(t, rt, srv.url+"/first"); body != "one" {
					t.Fatalf("first body %q, want %q", body, "one")
				}
				wait(t, reqs, "the first request")
				closeIdle()

				req := tt.build(t, srv.url+"/second")
				resp, err := roundTrip(t, rt, req)
				if err != nil && !tt.mayFail {
					t.Fatalf("request after the upstream closed the idle connection: %v; want it sent on a new connection", err)
				}
				if err == nil {
					if req.Context().Value(markerKey{}) != nil {
						checkRespRequest(t, resp, req)
					}
					if body := readClose(t, resp); body != "two" {
						t.Errorf("body %q, want %q from a new connection", body, "two")
					}
				}
				// Whatever reached the server on a live connection must
				// carry the whole body.
				for {
					select {
					case s := <-reqs:
						if s.conn == 1 {
							t.Errorf("request read on the closed connection")
						}
						if !bytes.Equal(s.body, tt.wantBody) {
							t.Errorf("server got %s %s with body %q, want %q", s.req.Method, s.req.URL.Path, s.body, tt.wantBody)
						}
						continue
					default:
					}
					break
				}
				if err == nil && srv.connCount() != 2 {
					t.Errorf("server accepted %d connections, want 2", srv.connCount())
				}
			})
		})
	}
}

// TestDeadAfterWrite: the upstream reads a request on a reused
// connection and closes it without answering (its keep-alive timeout
// racing the request). A POST without GetBody cannot be sent again and
// must fail; a GET is retried on a new connection, as net/http does.
func TestDeadAfterWrite(t *testing.T) {
	payload := []byte(`{"model":"m"}`)
	server := func(tb testing.TB) (*rawServer, <-chan seen) {
		return keepAliveServer(tb, func(c *rawConn, n int, s seen) (string, bool) {
			if c.id == 1 && n == 2 {
				return "", false // read it, close, never answer
			}
			return okAnswer("answer"), true
		})
	}
	t.Run("POST without GetBody fails", func(t *testing.T) {
		eachImpl(t, func(t *testing.T, im impl) {
			srv, reqs := server(t)
			rt := im.transport(t, h1transport.Config{})
			mustGet(t, rt, srv.url+"/first")
			wait(t, reqs, "the first request")
			req := newRequest(t, http.MethodPost, srv.url+"/second", io.NopCloser(bytes.NewReader(payload)))
			req.ContentLength = int64(len(payload))
			req.GetBody = nil
			resp, err := roundTrip(t, rt, req)
			if err == nil {
				body := readClose(t, resp)
				t.Fatalf("POST whose connection died after it was sent: %d %q, want an error", resp.StatusCode, body)
			}
			if s := wait(t, reqs, "the POST"); s.conn != 1 || !bytes.Equal(s.body, payload) {
				t.Errorf("POST arrived on connection %d with %q, want connection 1 with %q", s.conn, s.body, payload)
			}
			select {
			case s := <-reqs:
				t.Errorf("POST sent again on connection %d with body %q", s.conn, s.body)
			default:
			}
		})
	})
	t.Run("GET is retried", func(t *testing.T) {
		eachImpl(t, func(t *testing.T, im impl) {
			srv, reqs := server(t)
			rt := im.transport(t, h1transport.Config{})
			mustGet(t, rt, srv.url+"/first")
			wait(t, reqs, "the first request")
			req := markedRequest(t, http.MethodGet, srv.url+"/second", nil)
			resp, err := roundTrip(t, rt, req)
			if err != nil {
				t.Fatalf("GET whose reused connection died unanswered: %v; want it retried on a new connection", err)
			}
			checkRespRequest(t, resp, req)
			if body := readClose(t, resp); body != "answer" {
				t.Errorf("body %q, want %q", body, "answer")
			}
			if srv.connCount() != 2 {
				t.Errorf("server accepted %d connections, want 2", srv.connCount())
			}
		})
	})
}

// TestIdleConnections: pooled connections are closed after IdleTimeout,
// by CloseIdleConnections and by Close (ours), and beyond
// MaxIdlePerHost; busy connections are left alone.
func TestIdleConnections(t *testing.T) {
	t.Run("IdleTimeout", func(t *testing.T) {
		eachImpl(t, func(t *testing.T, im impl) {
			srv, reqs := keepAliveServer(t, func(*rawConn, int, seen) (string, bool) { return next, true })
			rt := im.transport(t, h1transport.Config{IdleTimeout: 200 * time.Millisecond})
			mustGet(t, rt, srv.url+"/1")
			first := srv.nextConn(t)
			wait(t, reqs, "request 1")
			// At once, the connection is still pooled...
			checkNextRequest(t, srv, reqs, rt, first, true, false)
			// ...and after IdleTimeout the client closes it.
			first.waitPeerClosed(t)
		})
	})
	closers := []struct {
		name  string
		ours  bool
		close func(http.RoundTripper)
	}{
		{"CloseIdleConnections", false, func(rt http.RoundTripper) {
			rt.(interface{ CloseIdleConnections() }).CloseIdleConnections()
		}},
		{"Close", true, func(rt http.RoundTripper) { rt.(*h1transport.Transport).Close() }},
	}
	for _, cl := range closers {
		t.Run(cl.name, func(t *testing.T) {
			eachImpl(t, func(t *testing.T, im impl) {
				if cl.ours {
					im.onlyOurs(t, "Close is ours")
				}
				release := make(chan struct{})
				srv, reqs := keepAliveServer(t, func(c *rawConn, n int, s seen) (string, bool) {
					if s.req.URL.Path == "/stream" {
						c.write("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nfirst\r\n")
						<-release
						return "4\r\nlast\r\n0\r\n\r\n", true
					}
					return next, true
				})
				t.Cleanup(func() {
					select {
					case <-release:
					default:
						close(release)
					}
				})
				rt := im.transport(t, h1transport.Config{})
				stream, err := get(t, rt, srv.url+"/stream")
				if err != nil {
					t.Fatalf("GET /stream: %v", err)
				}
				busy := srv.nextConn(t)
				wait(t, reqs, "/stream")
				mustGet(t, rt, srv.url+"/idle")
				idle := srv.nextConn(t)
				wait(t, reqs, "/idle")
				cl.close(rt)
				idle.waitPeerClosed(t)
				if busy.isPeerClosed() {
					t.Errorf("%s closed the connection of a stream in flight", cl.name)
				}
				close(release)
				// The stream in flight goes on to its end.
				if body, err := io.ReadAll(stream.Body); err != nil || string(body) != "firstlast" {
					t.Errorf("stream after %s: %q, %v; want %q", cl.name, body, err, "firstlast")
				}
				stream.Body.Close()
			})
		})
	}
	t.Run("MaxIdlePerHost", func(t *testing.T) {
		eachImpl(t, func(t *testing.T, im impl) {
			var arrived sync.WaitGroup
			arrived.Add(2)
			srv, reqs := keepAliveServer(t, func(c *rawConn, n int, s seen) (string, bool) {
				if n == 1 && c.id <= 2 {
					arrived.Done()
					arrived.Wait() // answer once both requests are in flight
				}
				return next, true
			})
			rt := im.transport(t, h1transport.Config{MaxIdlePerHost: 1})
			a := goRoundTrip(rt, newRequest(t, http.MethodGet, srv.url+"/a", nil))
			b := goRoundTrip(rt, newRequest(t, http.MethodGet, srv.url+"/b", nil))
			for _, r := range []result{wait(t, a, "/a"), wait(t, b, "/b")} {
				if r.err != nil {
					t.Fatalf("RoundTrip: %v", r.err)
				}
				readClose(t, r.resp)
			}
			c1, c2 := srv.nextConn(t), srv.nextConn(t)
			wait(t, reqs, "/a or /b")
			wait(t, reqs, "/a and /b")
			var kept, dropped *rawConn
			select {
			case <-c1.peerClosed:
				kept, dropped = c2, c1
			case <-c2.peerClosed:
				kept, dropped = c1, c2
			case <-time.After(waitFor):
				t.Fatalf("neither connection closed with MaxIdlePerHost 1")
			}
			checkNextRequest(t, srv, reqs, rt, kept, true, false)
			if srv.connCount() != 2 || dropped.id == kept.id {
				t.Errorf("accepted %d connections; want the third request on the kept one", srv.connCount())
			}
		})
	})
}

// TestConcurrentRequests: 50 goroutines × 20 requests on a keep-alive
// server all get their own answers; ours never opens more connections
// than there are requests in flight.
func TestConcurrentRequests(t *testing.T) {
	const workers, each = 50, 20
	eachImpl(t, func(t *testing.T, im impl) {
		srv, _ := keepAliveServer(t, func(_ *rawConn, _ int, s seen) (string, bool) {
			return okAnswer(s.req.URL.Query().Get("id") + "|" + string(s.body)), true
		})
		rt := im.transport(t, h1transport.Config{})
		var wg sync.WaitGroup
		errs := make(chan error, workers*each)
		for w := range workers {
			wg.Go(func() {
				for i := range each {
					id := fmt.Sprintf("%d-%d", w, i)
					method, body := http.MethodGet, io.Reader(nil)
					if i%2 == 0 {
						method, body = http.MethodPost, strings.NewReader("payload-"+id)
					}
					req, _ := http.NewRequest(method, srv.url+"/?id="+id, body)
					resp, err := rt.RoundTrip(req)
					if err != nil {
						errs <- fmt.Errorf("%s %s: %w", method, id, err)
						return
					}
					b, err := io.ReadAll(resp.Body)
					resp.Body.Close()
					want := id + "|"
					if i%2 == 0 {
						want += "payload-" + id
					}
					if err != nil || string(b) != want {
						errs <- fmt.Errorf("%s %s: body %q (%v), want %q", method, id, b, err, want)
					}
				}
			})
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Error(err)
		}
		n := srv.connCount()
		t.Logf("%d connections for %d requests from %d goroutines", n, workers*each, workers)
		if im.ours && n > workers {
			t.Errorf("server accepted %d connections for at most %d requests in flight", n, workers)
		}
	})
}

// TestNoGoroutinePerConnection: 200 open streams cost ours no goroutine
// each. (The reference, net/http, runs readLoop and writeLoop per
// connection: it grows by about 2 per stream, ~400 here; the subtest
// logs its count.)
func TestNoGoroutinePerConnection(t *testing.T) {
	const streams = 200
	eachImpl(t, func(t *testing.T, im impl) {
		// A server without a goroutine per connection either: one accept
		// loop that reads each request, answers headers and a first
		// event, and keeps the connection open.
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		var mu sync.Mutex
		var conns []net.Conn
		done := make(chan struct{})
		go func() {
			defer close(done)
			for {
				c, err := ln.Accept()
				if err != nil {
					return
				}
				mu.Lock()
				conns = append(conns, c)
				mu.Unlock()
				if _, err := http.ReadRequest(bufio.NewReader(c)); err != nil {
					continue
				}
				io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n9\r\ndata: 1\n\n\r\n")
			}
		}()
		t.Cleanup(func() {
			ln.Close()
			<-done
			mu.Lock()
			for _, c := range conns {
				c.Close()
			}
			mu.Unlock()
		})
		rt := im.transport(t, h1transport.Config{})
		before := runtime.NumGoroutine()
		bodies := make([]io.ReadCloser, 0, streams)
		defer func() {
			for _, b := range bodies {
				b.Close()
			}
		}()
		buf := make([]byte, len("data: 1\n\n"))
		for i := range streams {
			ctx, cancel := context.WithCancel(context.Background()) // as a server request's
			defer cancel()
			req, _ := http.NewRequestWithContext(ctx, http.MethodPost, "http://"+ln.Addr().String()+"/v1/chat/completions", strings.NewReader(`{"stream":true}`))
			resp, err := rt.RoundTrip(req)
			if err != nil {
				t.Fatalf("stream %d: %v", i, err)
			}
			bodies = append(bodies, resp.Body)
			if _, err := io.ReadFull(resp.Body, buf); err != nil {
				t.Fatalf("stream %d: first event: %v", i, err)
			}
		}
		grew := runtime.NumGoroutine() - before
		for try := 0; grew >= streams/4 && try < 20; try++ {
			time.Sleep(10 * time.Millisecond) // let dial helpers exit
			grew = runtime.NumGoroutine() - before
		}
		if !im.ours {
			t.Skipf("reference: %d open streams grew the goroutine count by %d", streams, grew)
		}
		t.Logf("%d open streams grew the goroutine count by %d", streams, grew)
		if grew >= streams/4 {
			t.Errorf("%d open streams grew the goroutine count by %d; want well under %d", streams, grew, streams/4)
		}
	})
}

// TestUnsolicitedWhileIdle: bytes the upstream sends on a connection
// while it sits in the pool — a 408 Request Timeout before it hangs up
// (as some servers do at their keep-alive timeout), or a stray answer —
// were asked for by no request. The next request must get its own
// answer on a new connection, never those bytes.
func TestUnsolicitedWhileIdle(t *testing.T) {
	tests := []struct {
		name         string
		stray        string
		serverCloses bool
	}{
		{"408 then close", "HTTP/1.1 408 Request Timeout\r\nConnection: close\r\nContent-Length: 0\r\n\r\n", true},
		{"stray answer, connection left open", "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nstray", false},
	}
	methods := []struct {
		name  string
		build func(tb testing.TB, url string) *http.Request
	}{
		{"GET", func(tb testing.TB, url string) *http.Request { return newRequest(tb, http.MethodGet, url, nil) }},
		{"POST with GetBody", func(tb testing.TB, url string) *http.Request {
			return newRequest(tb, http.MethodPost, url, strings.NewReader(`{"model":"m"}`))
		}},
	}
	for _, tt := range tests {
		for _, m := range methods {
			t.Run(tt.name+"/"+m.name, func(t *testing.T) {
				eachImpl(t, func(t *testing.T, im impl) {
					im.onlyOurs(t, "net/http hands such bytes to the next request when that request wins the race "+
						"with its readLoop (seen here: a 408 returned to a GET, a stray 200 to a POST)")
					sendStray, sent := make(chan struct{}), make(chan struct{})
					srv, reqs := keepAliveServer(t, func(c *rawConn, n int, s seen) (string, bool) {
						if c.id == 1 && n == 1 {
							go func() {
								select {
								case <-sendStray:
								case <-time.After(waitFor):
									return
								}
								c.write(tt.stray)
								if tt.serverCloses {
									c.Close()
								}
								close(sent)
							}()
							return okAnswer("one"), true
						}
						return next, true
					})
					rt := im.transport(t, h1transport.Config{})
					mustGet(t, rt, srv.url+"/first")
					first := srv.nextConn(t)
					wait(t, reqs, "the first request")
					close(sendStray)
					wait(t, sent, "the upstream to send its unsolicited bytes")

					resp, err := roundTrip(t, rt, m.build(t, srv.url+"/second"))
					if err != nil {
						t.Fatalf("request after unsolicited bytes on the pooled connection: %v; want it sent on a new connection", err)
					}
					if body := readClose(t, resp); resp.StatusCode != 200 || body != "next" {
						t.Fatalf("answer %d %q; want the upstream's own answer 200 %q, not the unsolicited bytes", resp.StatusCode, body, "next")
					}
					s := wait(t, reqs, "the second request")
					if s.conn == first.id {
						t.Errorf("second request went over connection %d, which had unsolicited bytes", first.id)
					}
					if !tt.serverCloses {
						first.waitPeerClosed(t)
					}
				})
			})
		}
	}
}
