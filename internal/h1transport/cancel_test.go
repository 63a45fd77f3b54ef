package h1transport_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptrace"
	"strings"
	"testing"
	"time"

	"github.com/llmgate/llmgate/internal/h1transport"
)

// TestCancellation: when the request's context ends — before sending,
// while dialing, while waiting for headers, or while a streamed body is
// blocked in Read — RoundTrip or Read returns promptly with an error
// wrapping context.Canceled, and the upstream sees its connection
// closed.
func TestCancellation(t *testing.T) {
	t.Run("before sending", func(t *testing.T) {
		eachImpl(t, func(t *testing.T, im impl) {
			srv, reqs := keepAliveServer(t, func(*rawConn, int, seen) (string, bool) { return next, true })
			rt := im.transport(t, h1transport.Config{})
			ctx, cancel := testCtx(t)
			cancel()
			req, _ := http.NewRequestWithContext(ctx, http.MethodGet, srv.url+"/", nil)
			resp, err := roundTrip(t, rt, req)
			checkCanceled(t, resp, err)
			select {
			case s := <-reqs:
				t.Errorf("the upstream got %s %s from a cancelled request", s.req.Method, s.req.URL)
			default:
			}
		})
	})
	t.Run("while dialing", func(t *testing.T) {
		addr := unansweredAddr(t)
		eachImpl(t, func(t *testing.T, im impl) {
			rt := im.transport(t, h1transport.Config{})
			ctx, cancel := testCtx(t)
			// Cancel as the dial starts; should the dialer not report
			// it, shortly after (the dial hangs either way).
			trace := &httptrace.ClientTrace{ConnectStart: func(string, string) { cancel() }}
			timer := time.AfterFunc(100*time.Millisecond, cancel)
			defer timer.Stop()
			req, _ := http.NewRequestWithContext(httptrace.WithClientTrace(ctx, trace), http.MethodGet, "http://"+addr+"/", nil)
			res := wait(t, goRoundTrip(rt, req), "RoundTrip to return after cancelling its dial")
			checkCanceled(t, res.resp, res.err)
		})
	})
	t.Run("while waiting for headers", func(t *testing.T) {
		eachImpl(t, func(t *testing.T, im impl) {
			got := make(chan *rawConn, 1)
			srv := newRawServer(t, func(c *rawConn) {
				if _, _, err := c.readRequest(); err != nil {
					return
				}
				got <- c
				c.drainUntilClosed() // never answers
			})
			rt := im.transport(t, h1transport.Config{})
			ctx, cancel := testCtx(t)
			req, _ := http.NewRequestWithContext(ctx, http.MethodPost, srv.url+"/v1/chat/completions", strings.NewReader(`{}`))
			resc := goRoundTrip(rt, req)
			var c *rawConn
			select {
			case c = <-got:
			case res := <-resc:
				t.Fatalf("RoundTrip returned before the upstream got the request: %v", res.err)
			case <-time.After(waitFor):
				t.Fatal("timed out waiting for the upstream to get the request")
			}
			cancel()
			res := wait(t, resc, "RoundTrip to return after cancel")
			checkCanceled(t, res.resp, res.err)
			c.waitPeerClosed(t)
		})
	})
	t.Run("while a stream is blocked mid-body", func(t *testing.T) {
		eachImpl(t, func(t *testing.T, im impl) {
			got := make(chan *rawConn, 1)
			srv := newRawServer(t, func(c *rawConn) {
				if _, _, err := c.readRequest(); err != nil {
					return
				}
				c.write("HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n9\r\ndata: 1\n\n\r\n")
				got <- c
				c.drainUntilClosed() // event 2 never comes
			})
			rt := im.transport(t, h1transport.Config{})
			ctx, cancel := testCtx(t)
			req, _ := http.NewRequestWithContext(ctx, http.MethodGet, srv.url+"/", nil)
			resp, err := roundTrip(t, rt, req)
			if err != nil {
				t.Fatalf("RoundTrip: %v", err)
			}
			defer resp.Body.Close()
			c := wait(t, got, "the upstream to send event 1")
			buf := make([]byte, 64)
			if n, err := io.ReadFull(resp.Body, buf[:9]); err != nil || string(buf[:n]) != "data: 1\n\n" {
				t.Fatalf("event 1: %q, %v", buf[:n], err)
			}
			reading := make(chan struct{})
			readErr := make(chan error, 1)
			go func() {
				close(reading)
				_, err := resp.Body.Read(buf)
				readErr <- err
			}()
			<-reading
			cancel()
			err = wait(t, readErr, "Body.Read to return after cancel")
			if !errors.Is(err, context.Canceled) {
				t.Errorf("Body.Read after cancel: %v; want an error wrapping context.Canceled", err)
			}
			closed := make(chan error, 1)
			go func() { closed <- resp.Body.Close() }()
			wait(t, closed, "Body.Close after cancel")
			c.waitPeerClosed(t)
		})
	})
}

func checkCanceled(tb testing.TB, resp *http.Response, err error) {
	tb.Helper()
	if err == nil {
		resp.Body.Close()
		tb.Fatalf("RoundTrip with a cancelled context: status %d, want an error", resp.StatusCode)
	}
	if !errors.Is(err, context.Canceled) {
		tb.Errorf("RoundTrip with a cancelled context: %v; want an error wrapping context.Canceled", err)
	}
}

// TestTimeouts: ResponseHeaderTimeout fails a request whose headers do
// not come in time with a net.Error whose Timeout() is true (the gateway
// answers 504) and closes the connection — on a new connection and on a
// reused one — but never cuts a body that is merely slow; DialTimeout
// bounds connecting.
func TestTimeouts(t *testing.T) {
	const headerTimeout = 50 * time.Millisecond
	for _, reused := range []bool{false, true} {
		t.Run(fmt.Sprintf("ResponseHeaderTimeout reused=%v", reused), func(t *testing.T) {
			eachImpl(t, func(t *testing.T, im impl) {
				held := make(chan *rawConn, 1)
				srv := newRawServer(t, func(c *rawConn) {
					for n := 1; ; n++ {
						if _, _, err := c.readRequest(); err != nil {
							return
						}
						if n == 1 && reused {
							c.write(next)
							continue
						}
						held <- c
						c.drainUntilClosed() // never answers
						return
					}
				})
				rt := im.transport(t, h1transport.Config{ResponseHeaderTimeout: headerTimeout})
				if reused {
					mustGet(t, rt, srv.url+"/warm")
				}
				start := time.Now()
				resp, err := get(t, rt, srv.url+"/slow") // fails the test after waitFor
				elapsed := time.Since(start)
				if err == nil {
					resp.Body.Close()
					t.Fatalf("no headers within ResponseHeaderTimeout: status %d, want an error", resp.StatusCode)
				}
				var ne net.Error
				if !errors.As(err, &ne) || !ne.Timeout() {
					t.Fatalf("error %v (%T) is not a net.Error with Timeout() true", err, err)
				}
				if elapsed < headerTimeout || elapsed > headerTimeout+3*time.Second {
					t.Errorf("RoundTrip failed after %v; want it at ResponseHeaderTimeout %v (plus slack)", elapsed, headerTimeout)
				}
				c := wait(t, held, "the held request")
				c.waitPeerClosed(t)
				if reused && c.id != 1 {
					t.Errorf("the slow request went over connection %d, want the reused 1", c.id)
				}
			})
		})
	}
	t.Run("slow body is not cut", func(t *testing.T) {
		eachImpl(t, func(t *testing.T, im impl) {
			rest := make(chan struct{})
			srv, reqs := keepAliveServer(t, func(c *rawConn, n int, s seen) (string, bool) {
				if n == 1 {
					c.write("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nfirst\r\n")
					select {
					case <-rest:
					case <-time.After(waitFor):
					}
					return "4\r\nlast\r\n0\r\n\r\n", true
				}
				return next, true
			})
			rt := im.transport(t, h1transport.Config{ResponseHeaderTimeout: headerTimeout})
			resp, err := get(t, rt, srv.url+"/stream")
			if err != nil {
				t.Fatalf("RoundTrip: %v", err)
			}
			buf := make([]byte, 5)
			if _, err := io.ReadFull(resp.Body, buf); err != nil {
				t.Fatalf("first part: %v", err)
			}
			// What is tested is that time passes: three header timeouts
			// between two parts of the body.
			time.Sleep(3 * headerTimeout)
			close(rest)
			if body, err := io.ReadAll(resp.Body); err != nil || string(body) != "last" {
				t.Errorf("body after a pause longer than ResponseHeaderTimeout: %q, %v; want %q", body, err, "last")
			}
			resp.Body.Close()
			first := srv.nextConn(t)
			wait(t, reqs, "/stream")
			// The connection is pooled with no deadline left over.
			checkNextRequest(t, srv, reqs, rt, first, true, false)
		})
	})
	t.Run("DialTimeout", func(t *testing.T) {
		addr := unansweredAddr(t)
		eachImpl(t, func(t *testing.T, im impl) {
			rt := im.transport(t, h1transport.Config{DialTimeout: 100 * time.Millisecond})
			req, _ := http.NewRequest(http.MethodGet, "http://"+addr+"/", nil)
			res := wait(t, goRoundTrip(rt, req), "RoundTrip to give up dialing")
			if res.err == nil {
				res.resp.Body.Close()
				t.Fatalf("dial that never completes: status %d, want an error", res.resp.StatusCode)
			}
		})
	})
}
