// The behaviour table of h1transport. Every case runs against our
// Transport ("ours") and, where net/http behaves the same, against a
// plain *http.Transport ("reference") with the same settings, so each
// expectation is proven against the standard library. Servers are real
// loopback servers: httptest where it will do, raw TCP (rawServer) where
// a case needs byte-level control of the answer or must observe the
// client's connections (accepted, reused, closed).

package h1transport_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httptrace"
	"net/textproto"
	"net/url"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/llmgate/llmgate/internal/h1transport"
)

// observed is what an httptest handler saw of one request.
type observed struct {
	method, requestURI, host string
	header                   http.Header
	body                     []byte
	contentLength            int64
	transferEncoding         []string
}

// TestRequestWriting: the request reaches the server as the caller built
// it — method, path, query, headers, Host, body — framed with
// Content-Length when the length is known and chunked when it is not,
// and without an Accept-Encoding the caller did not ask for.
func TestRequestWriting(t *testing.T) {
	payload := []byte(`{"model":"gpt-4o","messages":[{"role":"user","content":"hi"}]}`)
	tests := []struct {
		name  string
		build func(tb testing.TB, base string) *http.Request
		check func(tb testing.TB, base string, got observed)
	}{
		{
			name: "GET keeps path, query and headers",
			build: func(tb testing.TB, base string) *http.Request {
				req := newRequest(tb, http.MethodGet, base+"/v1/a%2Fb?x=1&y=%20", nil)
				req.Header.Set("Authorization", "Bearer upstream-key")
				req.Header["X-Multi"] = []string{"a", "b"}
				req.Header.Set("User-Agent", "llmgate-test")
				return req
			},
			check: func(tb testing.TB, base string, got observed) {
				want := observed{method: "GET", requestURI: "/v1/a%2Fb?x=1&y=%20", host: strings.TrimPrefix(base, "http://")}
				checkLine(tb, got, want)
				checkHeader(tb, got.header, "Authorization", "Bearer upstream-key")
				checkHeader(tb, got.header, "X-Multi", "a", "b")
				checkHeader(tb, got.header, "User-Agent", "llmgate-test")
				checkHeader(tb, got.header, "Accept-Encoding")
				if len(got.body) != 0 || len(got.transferEncoding) != 0 {
					tb.Errorf("server saw body %q, Transfer-Encoding %v; want none", got.body, got.transferEncoding)
				}
			},
		},
		{
			name: "Host from req.Host",
			build: func(tb testing.TB, base string) *http.Request {
				req := newRequest(tb, http.MethodGet, base+"/", nil)
				req.Host = "litellm.internal:4000"
				return req
			},
			check: func(tb testing.TB, base string, got observed) {
				checkLine(tb, got, observed{method: "GET", requestURI: "/", host: "litellm.internal:4000"})
			},
		},
		{
			name: "Host from the URL when req.Host is empty",
			build: func(tb testing.TB, base string) *http.Request {
				req := newRequest(tb, http.MethodGet, base+"/", nil)
				req.Host = ""
				return req
			},
			check: func(tb testing.TB, base string, got observed) {
				checkLine(tb, got, observed{method: "GET", requestURI: "/", host: strings.TrimPrefix(base, "http://")})
			},
		},
		{
			name: "POST bytes body keeps Content-Length",
			build: func(tb testing.TB, base string) *http.Request {
				req := newRequest(tb, http.MethodPost, base+"/v1/chat/completions", bytes.NewReader(payload))
				req.Header.Set("Content-Type", "application/json")
				return req
			},
			check: func(tb testing.TB, base string, got observed) {
				checkLine(tb, got, observed{method: "POST", requestURI: "/v1/chat/completions", host: strings.TrimPrefix(base, "http://")})
				checkHeader(tb, got.header, "Content-Type", "application/json")
				checkHeader(tb, got.header, "Content-Length", fmt.Sprint(len(payload)))
				if got.contentLength != int64(len(payload)) || len(got.transferEncoding) != 0 {
					tb.Errorf("server saw Content-Length %d, Transfer-Encoding %v; want %d, none", got.contentLength, got.transferEncoding, len(payload))
				}
				if !bytes.Equal(got.body, payload) {
					tb.Errorf("server got body %q, want %q", got.body, payload)
				}
			},
		},
		{
			name: "POST streaming body of unknown length goes chunked",
			build: func(tb testing.TB, base string) *http.Request {
				pr, pw := io.Pipe()
				go func() {
					for _, part := range [][]byte{payload[:10], payload[10:30], payload[30:]} {
						pw.Write(part)
					}
					pw.Close()
				}()
				req := newRequest(tb, http.MethodPost, base+"/stream", pr)
				req.ContentLength = -1
				return req
			},
			check: func(tb testing.TB, base string, got observed) {
				if got.contentLength != -1 || !slices.Equal(got.transferEncoding, []string{"chunked"}) {
					tb.Errorf("server saw Content-Length %d, Transfer-Encoding %v; want -1, [chunked]", got.contentLength, got.transferEncoding)
				}
				if !bytes.Equal(got.body, payload) {
					tb.Errorf("server got body %q, want %q", got.body, payload)
				}
			},
		},
		{
			name: "POST with http.NoBody sends Content-Length 0",
			build: func(tb testing.TB, base string) *http.Request {
				return newRequest(tb, http.MethodPost, base+"/empty", http.NoBody)
			},
			check: func(tb testing.TB, base string, got observed) {
				checkHeader(tb, got.header, "Content-Length", "0")
				if len(got.body) != 0 {
					tb.Errorf("server got body %q, want none", got.body)
				}
			},
		},
		{
			// curl sends this for large bodies and ReverseProxy passes
			// it on; the server's 100 Continue must not be taken for the
			// answer.
			name: "POST with Expect: 100-continue",
			build: func(tb testing.TB, base string) *http.Request {
				req := newRequest(tb, http.MethodPost, base+"/expect", bytes.NewReader(payload))
				req.Header.Set("Expect", "100-continue")
				return req
			},
			check: func(tb testing.TB, base string, got observed) {
				if !bytes.Equal(got.body, payload) {
					tb.Errorf("server got body %q, want %q", got.body, payload)
				}
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			eachImpl(t, func(t *testing.T, im impl) {
				seenc := make(chan observed, 1)
				srv := newCountingServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
					body, _ := io.ReadAll(r.Body)
					seenc <- observed{r.Method, r.RequestURI, r.Host, r.Header.Clone(), body, r.ContentLength, r.TransferEncoding}
					io.WriteString(w, "answered")
				}))
				rt := im.transport(t, h1transport.Config{})
				req := tt.build(t, srv.URL)
				header, host := req.Header.Clone(), req.Host
				resp, err := roundTrip(t, rt, req)
				if err != nil {
					t.Fatalf("RoundTrip: %v", err)
				}
				// A RoundTripper must not modify the request.
				if !reflect.DeepEqual(req.Header, header) || req.Host != host {
					t.Errorf("RoundTrip changed the request: Header %v Host %q, was %v %q", req.Header, req.Host, header, host)
				}
				if body := readClose(t, resp); resp.StatusCode != 200 || body != "answered" {
					t.Errorf("answer %d %q, want 200 %q", resp.StatusCode, body, "answered")
				}
				tt.check(t, srv.URL, wait(t, seenc, "the server to see the request"))
			})
		})
	}
}

func newRequest(tb testing.TB, method, url string, body io.Reader) *http.Request {
	tb.Helper()
	req, err := http.NewRequest(method, url, body)
	if err != nil {
		tb.Fatal(err)
	}
	return req
}

func checkLine(tb testing.TB, got, want observed) {
	tb.Helper()
	if got.method != want.method || got.requestURI != want.requestURI || got.host != want.host {
		tb.Errorf("server saw %s %s Host %s, want %s %s Host %s", got.method, got.requestURI, got.host, want.method, want.requestURI, want.host)
	}
}

func checkHeader(tb testing.TB, h http.Header, name string, want ...string) {
	tb.Helper()
	if got := h.Values(name); !slices.Equal(got, want) {
		tb.Errorf("server saw %s %q, want %q", name, got, want)
	}
}

// next is the answer to every request after a case's first one.
const next = "HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nnext"

// TestResponseBodies: each framing of an answer is read correctly, and
// the connection is reused afterwards exactly when the framing and the
// answer allow it. The server sees the client close a connection it
// must not reuse.
func TestResponseBodies(t *testing.T) {
	tests := []struct {
		name         string
		method       string
		answer       string // the server's raw bytes for the first request
		serverCloses bool   // the server closes after answer (close-delimited)

		wantStatus  int
		wantBody    string
		wantLength  int64 // resp.ContentLength
		wantTrailer http.Header
		want1xx     []int
		wantClose   bool // resp.Close
		reuse       bool
	}{
		{
			name: "Content-Length", method: "GET",
			answer:     "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello",
			wantStatus: 200, wantBody: "hello", wantLength: 5, reuse: true,
		},
		{
			name: "chunked", method: "POST",
			answer:     "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n",
			wantStatus: 200, wantBody: "hello world", wantLength: -1, reuse: true,
		},
		{
			name: "chunked with trailers", method: "POST",
			answer: "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTrailer: X-Usage\r\n\r\n" +
				"5\r\nhello\r\n0\r\nX-Usage: 42\r\n\r\n",
			wantStatus: 200, wantBody: "hello", wantLength: -1,
			wantTrailer: http.Header{"X-Usage": {"42"}}, reuse: true,
		},
		{
			name: "delimited by close", method: "GET",
			answer: "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\nuntil the end", serverCloses: true,
			wantStatus: 200, wantBody: "until the end", wantLength: -1, wantClose: true, reuse: false,
		},
		{
			name: "HEAD", method: "HEAD",
			answer:     "HTTP/1.1 200 OK\r\nContent-Length: 1234\r\n\r\n",
			wantStatus: 200, wantBody: "", wantLength: 1234, reuse: true,
		},
		{
			name: "204 No Content", method: "DELETE",
			answer:     "HTTP/1.1 204 No Content\r\n\r\n",
			wantStatus: 204, wantBody: "", wantLength: 0, reuse: true,
		},
		{
			name: "304 Not Modified", method: "GET",
			answer:     "HTTP/1.1 304 Not Modified\r\nETag: \"v1\"\r\n\r\n",
			wantStatus: 304, wantBody: "", wantLength: 0, reuse: true,
		},
		{
			name: "100 and 103 before the answer", method: "POST",
			answer: "HTTP/1.1 100 Continue\r\n\r\n" +
				"HTTP/1.1 103 Early Hints\r\nLink: </style.css>; rel=preload\r\n\r\n" +
				"HTTP/1.1 201 Created\r\nContent-Length: 2\r\n\r\nok",
			wantStatus: 201, wantBody: "ok", wantLength: 2, want1xx: []int{100, 103}, reuse: true,
		},
		{
			name: "Connection: close answer", method: "GET",
			answer:     "HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\nok",
			wantStatus: 200, wantBody: "ok", wantLength: 2, wantClose: true, reuse: false,
		},
		{
			name: "HTTP 1.0 answer", method: "GET",
			answer:     "HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok",
			wantStatus: 200, wantBody: "ok", wantLength: 2, wantClose: true, reuse: false,
		},
		{
			// Bytes after a complete answer were never asked for: the
			// connection is out of step and must not carry another
			// request (it would read them as that request's answer).
			name: "bytes after the answer", method: "GET",
			answer:     "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nokHTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nstale",
			wantStatus: 200, wantBody: "ok", wantLength: 2, reuse: false,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			eachImpl(t, func(t *testing.T, im impl) {
				srv, reqs := firstAnswerServer(t, tt.answer, !tt.serverCloses)
				rt := im.transport(t, h1transport.Config{})

				var got1xx []int
				var hints []string
				ctx := httptrace.WithClientTrace(context.WithValue(context.Background(), markerKey{}, tt.name), &httptrace.ClientTrace{
					Got1xxResponse: func(code int, h textproto.MIMEHeader) error {
						got1xx = append(got1xx, code)
						hints = append(hints, h.Values("Link")...)
						return nil
					},
				})
				req, err := http.NewRequestWithContext(ctx, tt.method, srv.url+"/first", nil)
				if err != nil {
					t.Fatal(err)
				}
				resp, err := roundTrip(t, rt, req)
				if err != nil {
					t.Fatalf("RoundTrip: %v", err)
				}
				checkRespRequest(t, resp, req)
				if resp.StatusCode != tt.wantStatus || resp.ContentLength != tt.wantLength || resp.Close != tt.wantClose {
					t.Errorf("answer status %d, ContentLength %d, Close %v; want %d, %d, %v",
						resp.StatusCode, resp.ContentLength, resp.Close, tt.wantStatus, tt.wantLength, tt.wantClose)
				}
				if tt.wantTrailer != nil {
					for k := range tt.wantTrailer {
						if _, declared := resp.Trailer[k]; !declared || resp.Trailer.Get(k) != "" {
							t.Errorf("before the body's end, Trailer = %v; want %s declared with no value yet", resp.Trailer, k)
						}
					}
				}
				if body := readClose(t, resp); body != tt.wantBody {
					t.Errorf("body %q, want %q", body, tt.wantBody)
				}
				for k, v := range tt.wantTrailer {
					if got := resp.Trailer.Values(k); !slices.Equal(got, v) {
						t.Errorf("after EOF, Trailer %s = %q, want %q (Trailer %v)", k, got, v, resp.Trailer)
					}
				}
				if !slices.Equal(got1xx, tt.want1xx) {
					t.Errorf("Got1xxResponse called with %v, want %v", got1xx, tt.want1xx)
				}
				if tt.want1xx != nil && !slices.Equal(hints, []string{"</style.css>; rel=preload"}) {
					t.Errorf("103 Link headers %q, want the early hint", hints)
				}
				first := srv.nextConn(t)
				wait(t, reqs, "the first request")
				checkNextRequest(t, srv, reqs, rt, first, tt.reuse, !tt.serverCloses)
			})
		})
	}
}

// checkNextRequest sends a GET after a first answer on conn first and
// checks it went over first (reuse) or over a new connection — in which
// case, unless the server closed first itself, the client must have
// closed first.
func checkNextRequest(tb testing.TB, srv *rawServer, reqs <-chan seen, rt http.RoundTripper, first *rawConn, reuse, clientMustClose bool) {
	tb.Helper()
	if !reuse && clientMustClose {
		first.waitPeerClosed(tb)
	}
	before := srv.connCount()
	if _, body := mustGet(tb, rt, srv.url+"/next"); body != "next" {
		tb.Errorf("next request: body %q, want %q", body, "next")
	}
	s := wait(tb, reqs, "the next request")
	switch {
	case reuse && (s.conn != first.id || srv.connCount() != before):
		tb.Errorf("next request went over connection %d (%d accepted before it, %d after); want it to reuse connection %d", s.conn, before, srv.connCount(), first.id)
	case !reuse && s.conn == first.id:
		tb.Errorf("next request reused connection %d; want a new connection", first.id)
	}
	if reuse && first.isPeerClosed() {
		tb.Errorf("client closed connection %d; want it kept for reuse", first.id)
	}
}

// TestBodyClosedEarly: closing a body before its end closes the
// connection rather than draining or reusing it, and Close returns at
// once even when the rest of the body never comes.
func TestBodyClosedEarly(t *testing.T) {
	tests := []struct {
		name   string
		answer string // the server then waits for the client
	}{
		{"rest already sent", "HTTP/1.1 200 OK\r\nContent-Length: 11\r\n\r\nhello world"},
		{"rest never sent", "HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\nhello"},
		{"stream still open", "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			eachImpl(t, func(t *testing.T, im impl) {
				srv, reqs := firstAnswerServer(t, tt.answer, true)
				rt := im.transport(t, h1transport.Config{})
				resp, err := get(t, rt, srv.url+"/first")
				if err != nil {
					t.Fatalf("RoundTrip: %v", err)
				}
				buf := make([]byte, 5)
				if _, err := io.ReadFull(resp.Body, buf); err != nil || string(buf) != "hello" {
					t.Fatalf("read %q, %v; want %q", buf, err, "hello")
				}
				closed := make(chan error, 1)
				go func() { closed <- resp.Body.Close() }()
				wait(t, closed, "Body.Close to return")
				first := srv.nextConn(t)
				wait(t, reqs, "the first request")
				checkNextRequest(t, srv, reqs, rt, first, false, true)
			})
		})
	}
}

// TestBodyAfterClose: reading to EOF and closing twice releases the
// connection once — two later concurrent requests need two connections —
// and a body read after Close never reads the next answer's bytes.
func TestBodyAfterClose(t *testing.T) {
	eachImpl(t, func(t *testing.T, im impl) {
		both := make(chan struct{})
		arrived := make(chan int, 2)
		srv, _ := keepAliveServer(t, func(c *rawConn, n int, s seen) (string, bool) {
			if s.req.URL.Path == "/first" {
				return okAnswer("one"), true
			}
			arrived <- c.id
			<-both
			return okAnswer("two:" + s.req.URL.Path), true
		})
		t.Cleanup(func() {
			select {
			case <-both:
			default:
				close(both)
			}
		})
		rt := im.transport(t, h1transport.Config{})
		resp1, err := get(t, rt, srv.url+"/first")
		if err != nil {
			t.Fatalf("RoundTrip: %v", err)
		}
		if b, err := io.ReadAll(resp1.Body); err != nil || string(b) != "one" {
			t.Fatalf("body %q, %v; want %q", b, err, "one")
		}
		resp1.Body.Read(make([]byte, 1)) // a second read at EOF
		resp1.Body.Close()
		resp1.Body.Close()

		a := goRoundTrip(rt, newRequest(t, http.MethodGet, srv.url+"/a", nil))
		b := goRoundTrip(rt, newRequest(t, http.MethodGet, srv.url+"/b", nil))
		c1, c2 := wait(t, arrived, "request /a or /b"), wait(t, arrived, "both /a and /b to arrive on their own connections")
		if c1 == c2 {
			t.Fatalf("/a and /b both arrived on connection %d", c1)
		}
		close(both)
		ra, rb := wait(t, a, "answer /a"), wait(t, b, "answer /b")
		if ra.err != nil || rb.err != nil {
			t.Fatalf("RoundTrip /a: %v, /b: %v", ra.err, rb.err)
		}
		if n, err := resp1.Body.Read(make([]byte, 16)); n != 0 || err == nil {
			t.Errorf("Read on the closed first body = %d, %v; want 0 and an error", n, err)
		}
		if body := readClose(t, ra.resp); body != "two:/a" {
			t.Errorf("/a body %q, want %q", body, "two:/a")
		}
		if body := readClose(t, rb.resp); body != "two:/b" {
			t.Errorf("/b body %q, want %q", body, "two:/b")
		}
	})
}

// TestStreamingNotHeldBack: each SSE event reaches the caller as soon as
// the server sent it, whatever the framing — the server writes event 2
// only after the client has read event 1.
func TestStreamingNotHeldBack(t *testing.T) {
	const ev1, ev2 = "data: 1\n\n", "data: 2\n\n"
	tests := []struct {
		name                  string
		head, part1, part2    string
		serverClosesAfterPart bool
	}{
		{
			name:  "chunked",
			head:  "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n",
			part1: "9\r\n" + ev1 + "\r\n", part2: "9\r\n" + ev2 + "\r\n0\r\n\r\n",
		},
		{
			name:  "Content-Length",
			head:  "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nContent-Length: 18\r\n\r\n",
			part1: ev1, part2: ev2,
		},
		{
			name:  "delimited by close",
			head:  "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n\r\n",
			part1: ev1, part2: ev2, serverClosesAfterPart: true,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			eachImpl(t, func(t *testing.T, im impl) {
				gotEv1 := make(chan struct{})
				srv := newRawServer(t, func(c *rawConn) {
					if _, _, err := c.readRequest(); err != nil {
						return
					}
					c.write(tt.head + tt.part1)
					select {
					case <-gotEv1:
					case <-time.After(waitFor):
						return
					}
					c.write(tt.part2)
					if !tt.serverClosesAfterPart {
						c.drainUntilClosed()
					}
				})
				rt := im.transport(t, h1transport.Config{})
				resp, err := get(t, rt, srv.url+"/v1/chat/completions")
				if err != nil {
					t.Fatalf("RoundTrip: %v", err)
				}
				defer resp.Body.Close()
				got := make(chan string, 1)
				go func() {
					buf := make([]byte, len(ev1))
					n, err := io.ReadFull(resp.Body, buf)
					got <- fmt.Sprintf("%s%v", buf[:n], errString(err))
				}()
				if s := wait(t, got, "event 1 before the server sends event 2"); s != ev1 {
					t.Fatalf("first read %q, want %q", s, ev1)
				}
				close(gotEv1)
				rest, err := io.ReadAll(resp.Body)
				if err != nil || string(rest) != ev2 {
					t.Errorf("rest of the stream %q, %v; want %q", rest, err, ev2)
				}
			})
		})
	}
}

func errString(err error) string {
	if err == nil {
		return ""
	}
	return " (error: " + err.Error() + ")"
}

// TestLargeBodies: requests of 100 KiB (written inline, through the
// pooled copy buffer) and 1 MiB (written by a goroutine of its own), and
// a 4 MiB answer, arrive intact in both framings, and the connection is
// reused after them.
func TestLargeBodies(t *testing.T) {
	for _, size := range []int{100 << 10, 1 << 20} {
		t.Run(fmt.Sprintf("request=%dKiB", size>>10), func(t *testing.T) { testLargeBodies(t, size) })
	}
}

func testLargeBodies(t *testing.T, size int) {
	reqBody := randomBytes(size)
	respBody := randomBytes(4 << 20)
	eachImpl(t, func(t *testing.T, im impl) {
		got := make(chan [32]byte, 4)
		srv := newCountingServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			h := sha256.New()
			io.Copy(h, r.Body)
			got <- [32]byte(h.Sum(nil))
			if r.URL.Query().Get("length") == "known" {
				w.Header().Set("Content-Length", fmt.Sprint(len(respBody)))
			}
			for rest := respBody; len(rest) > 0; rest = rest[min(len(rest), 32<<10):] {
				w.Write(rest[:min(len(rest), 32<<10)])
			}
		}))
		rt := im.transport(t, h1transport.Config{})
		for _, length := range []string{"known", "unknown"} {
			var body io.Reader = bytes.NewReader(reqBody)
			if length == "unknown" {
				body = io.MultiReader(body) // hides the length: chunked
			}
			req := newRequest(t, http.MethodPost, srv.URL+"/?length="+length, body)
			resp, err := roundTrip(t, rt, req)
			if err != nil {
				t.Fatalf("RoundTrip (%s length): %v", length, err)
			}
			b, err := io.ReadAll(resp.Body)
			resp.Body.Close()
			if err != nil || !bytes.Equal(b, respBody) {
				t.Errorf("%s length: answer of %d bytes (%v), want the %d bytes sent", length, len(b), err, len(respBody))
			}
			if h := wait(t, got, "the server to read the request body"); h != sha256.Sum256(reqBody) {
				t.Errorf("%s length: the server got a different request body", length)
			}
		}
		if n := srv.newConns.Load(); n != 1 {
			t.Errorf("server accepted %d connections for two sequential requests, want 1", n)
		}
	})
}

// TestInlineBodyDone: when RoundTrip returns, every reader of a body of at
// most InlineWriteMax bytes it was handed or opened (GetBody) is read to
// its end or closed: on a new connection, after the pooled one died, and
// on a pooled one. It fails on a reader left open or half read; it cannot
// tell an inline write from a background one that happened to finish
// first (the socket buffers take these bodies whole), which the gateway's
// TestProxyBodiesArriveIntact covers under the race detector.
func TestInlineBodyDone(t *testing.T) {
	for _, size := range []int{1, 100 << 10, h1transport.InlineWriteMax} {
		t.Run(fmt.Sprintf("size=%d", size), func(t *testing.T) {
			srv, _, closeIdle := staleServer(t)
			defer srv.close()
			rt := impl{ours: true}.transport(t, h1transport.Config{})
			body := randomBytes(size)
			var mu sync.Mutex
			var readers []*trackedBody
			newReq := func() *http.Request {
				req := newRequest(t, http.MethodPost, srv.url+"/", nil)
				req.Header["Idempotency-Key"] = nil // may be replayed
				req.ContentLength = int64(size)
				req.GetBody = func() (io.ReadCloser, error) {
					mu.Lock()
					defer mu.Unlock()
					tb := &trackedBody{r: bytes.NewReader(body)}
					readers = append(readers, tb)
					return tb, nil
				}
				req.Body, _ = req.GetBody()
				return req
			}
			for call := range 3 {
				resp, err := roundTrip(t, rt, newReq())
				if err != nil {
					t.Fatalf("call %d: RoundTrip: %v", call+1, err)
				}
				mu.Lock()
				for i, r := range readers {
					if !r.finished() {
						t.Errorf("call %d: body reader %d of %d is still open and unread when RoundTrip returned", call+1, i+1, len(readers))
					}
				}
				mu.Unlock()
				readClose(t, resp)
				if call == 0 {
					closeIdle() // the next call finds its pooled connection dead
				}
			}
		})
	}
}

// TestWritesInline: which requests RoundTrip writes itself before reading
// the answer, so that their callers may reuse the body's buffer. Clients
// that name keep-alive in Connection (Node's, so Claude Code's) are among
// them; what goes to the fallback transport is not.
func TestWritesInline(t *testing.T) {
	plain := &url.URL{Scheme: "http", Host: "127.0.0.1:4000", Path: "/v1/messages"}
	tls := &url.URL{Scheme: "https", Host: "api.example.com", Path: "/v1/messages"}
	for _, tc := range []struct {
		name   string
		u      *url.URL
		method string
		size   int64
		hdr    http.Header
		want   bool
	}{
		{"plain", plain, "POST", 100 << 10, http.Header{}, true},
		{"keep-alive named", plain, "POST", 100 << 10, http.Header{"Connection": {"keep-alive"}}, true},
		{"largest inline", plain, "POST", h1transport.InlineWriteMax, http.Header{}, true},
		{"written by its own goroutine", plain, "POST", h1transport.InlineWriteMax + 1, http.Header{}, false},
		{"length unknown", plain, "POST", -1, http.Header{}, false},
		{"TLS upstream (fallback)", tls, "POST", 100 << 10, http.Header{}, false},
		{"upgrade (fallback)", plain, "GET", 100 << 10, http.Header{"Connection": {"Upgrade"}, "Upgrade": {"websocket"}}, false},
		{"CONNECT (fallback)", plain, "CONNECT", 100 << 10, http.Header{}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := h1transport.WritesInline(tc.u, tc.method, tc.hdr, tc.size); got != tc.want {
				t.Errorf("WritesInline = %v, want %v", got, tc.want)
			}
		})
	}
}

// trackedBody reports whether it was read to its end or closed.
type trackedBody struct {
	mu     sync.Mutex
	r      *bytes.Reader
	eof    bool
	closed bool
}

func (b *trackedBody) Read(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	n, err := b.r.Read(p)
	if err == io.EOF {
		b.eof = true
	}
	return n, err
}

func (b *trackedBody) Close() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.closed = true
	return nil
}

func (b *trackedBody) finished() bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.eof || b.closed || b.r.Len() == 0
}

func randomBytes(n int) []byte {
	b := make([]byte, n)
	rand.NewChaCha8([32]byte{1}).Read(b)
	return b
}

// TestUpstreamFailures: an unreachable upstream or a malformed answer is
// an error that is not a timeout (the gateway answers 502, not 504),
// and the connection of a malformed answer is closed, not pooled.
func TestUpstreamFailures(t *testing.T) {
	t.Run("closed port", func(t *testing.T) {
		eachImpl(t, func(t *testing.T, im impl) {
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			addr := ln.Addr().String()
			ln.Close()
			rt := im.transport(t, h1transport.Config{})
			resp, err := get(t, rt, "http://"+addr+"/")
			if err == nil {
				resp.Body.Close()
				t.Fatalf("GET to a closed port succeeded with %d, want an error", resp.StatusCode)
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				t.Errorf("error %v is a timeout; want a plain failure (502, not 504)", err)
			}
		})
	})
	malformed := []struct {
		name         string
		answer       string
		serverCloses bool
	}{
		{"status not a number", "HTTP/1.1 abc\r\n\r\n", false},
		{"not HTTP", "SSH-2.0-OpenSSH_9.6\r\n\r\n", false},
		{"bad Content-Length", "HTTP/1.1 200 OK\r\nContent-Length: ten\r\n\r\n0123456789", false},
		{"headers cut short", "HTTP/1.1 200 OK\r\nContent-Le", true},
		{"nothing at all", "", true},
	}
	for _, tt := range malformed {
		t.Run(tt.name, func(t *testing.T) {
			eachImpl(t, func(t *testing.T, im impl) {
				srv, reqs := firstAnswerServer(t, tt.answer, !tt.serverCloses)
				rt := im.transport(t, h1transport.Config{})
				resp, err := get(t, rt, srv.url+"/first")
				if err == nil {
					resp.Body.Close()
					t.Fatalf("answer %q gave status %d and no error; want an error", tt.answer, resp.StatusCode)
				}
				var ne net.Error
				if errors.As(err, &ne) && ne.Timeout() {
					t.Errorf("error %v is a timeout; want a plain failure (502, not 504)", err)
				}
				select {
				case <-reqs: // the answer came after the request, so it is here
				default:
					t.Fatalf("error %v before the upstream got the request", err)
				}
				first := srv.nextConn(t)
				checkNextRequest(t, srv, reqs, rt, first, false, !tt.serverCloses)
			})
		})
	}
	t.Run("body cut short", func(t *testing.T) {
		eachImpl(t, func(t *testing.T, im impl) {
			srv, reqs := firstAnswerServer(t, "HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nhello", false)
			rt := im.transport(t, h1transport.Config{})
			resp, err := get(t, rt, srv.url+"/first")
			if err != nil {
				t.Fatalf("RoundTrip: %v", err)
			}
			b, err := io.ReadAll(resp.Body)
			resp.Body.Close()
			if !errors.Is(err, io.ErrUnexpectedEOF) {
				t.Errorf("reading a body cut short: %q, %v; want io.ErrUnexpectedEOF", b, err)
			}
			first := srv.nextConn(t)
			wait(t, reqs, "the first request")
			checkNextRequest(t, srv, reqs, rt, first, false, false)
		})
	})
	t.Run("request body fails", func(t *testing.T) {
		errBoom := errors.New("client went away")
		eachImpl(t, func(t *testing.T, im impl) {
			srv, reqs := keepAliveServer(t, func(c *rawConn, n int, _ seen) (string, bool) { return next, true })
			rt := im.transport(t, h1transport.Config{})
			if _, body := mustGet(t, rt, srv.url+"/warm"); body != "next" {
				t.Fatalf("warm-up body %q", body)
			}
			first := srv.nextConn(t)
			wait(t, reqs, "the warm-up request")
			req := newRequest(t, http.MethodPost, srv.url+"/upload", io.MultiReader(strings.NewReader("0123456789"), errReader{errBoom}))
			req.ContentLength = 100
			resp, err := roundTrip(t, rt, req)
			if err == nil {
				resp.Body.Close()
				t.Fatalf("POST whose body failed after 10 of 100 bytes: status %d, want an error", resp.StatusCode)
			}
			// The connection carries half a request: it must be closed,
			// never pooled.
			checkNextRequest(t, srv, reqs, rt, first, false, true)
		})
	})
}

type errReader struct{ err error }

func (r errReader) Read([]byte) (int, error) { return 0, r.err }

// TestFallback: what this transport does not carry — https, upgrades,
// CONNECT — goes to Config.Fallback untouched; without a Fallback it is
// refused with an error naming why, and nothing reaches the upstream.
func TestFallback(t *testing.T) {
	upgrade := func(req *http.Request) {
		req.Header.Set("Connection", "Upgrade")
		req.Header.Set("Upgrade", "websocket")
	}
	tests := []struct {
		name    string
		method  string
		https   bool
		prepare func(*http.Request)
		reason  string // a word the error must contain without Fallback
	}{
		{name: "https URL", method: "GET", https: true, reason: "https"},
		{name: "websocket upgrade", method: "GET", prepare: upgrade, reason: "upgrade"},
		{name: "upgrade among Connection tokens", method: "GET", reason: "upgrade", prepare: func(req *http.Request) {
			req.Header.Set("Connection", "keep-alive, upgrade")
			req.Header.Set("Upgrade", "websocket")
		}},
		{name: "CONNECT", method: "CONNECT", reason: "connect"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			eachImpl(t, func(t *testing.T, im impl) {
				im.onlyOurs(t, "http.Transport has no fallback; it carries these itself")
				srv, reqs := keepAliveServer(t, func(*rawConn, int, seen) (string, bool) { return next, true })
				build := func() *http.Request {
					url := srv.url + "/ws"
					if tt.https {
						url = "https://" + srv.addr + "/ws"
					}
					req := newRequest(t, tt.method, url, nil)
					if tt.prepare != nil {
						tt.prepare(req)
					}
					return req
				}

				fb := &recordingRT{}
				rt := im.transport(t, h1transport.Config{Fallback: fb})
				req := build()
				resp, err := roundTrip(t, rt, req)
				if err != nil {
					t.Fatalf("RoundTrip with a Fallback: %v", err)
				}
				resp.Body.Close()
				if resp.StatusCode != fallbackStatus || len(fb.got) != 1 || fb.got[0] != req {
					t.Errorf("status %d, Fallback got %d requests; want the Fallback's %d for this very request", resp.StatusCode, len(fb.got), fallbackStatus)
				}

				rt = im.transport(t, h1transport.Config{})
				resp, err = roundTrip(t, rt, build())
				if err == nil {
					resp.Body.Close()
					t.Fatalf("RoundTrip without a Fallback: status %d, want an error", resp.StatusCode)
				}
				if !strings.Contains(strings.ToLower(err.Error()), tt.reason) {
					t.Errorf("error %q does not name the reason (%s)", err, tt.reason)
				}
				select {
				case s := <-reqs:
					t.Errorf("the upstream got %s %s over plain HTTP/1.1", s.req.Method, s.req.RequestURI)
				default:
				}
			})
		})
	}
	t.Run("plain http does not fall back", func(t *testing.T) {
		eachImpl(t, func(t *testing.T, im impl) {
			im.onlyOurs(t, "http.Transport has no fallback")
			srv, _ := keepAliveServer(t, func(*rawConn, int, seen) (string, bool) { return next, true })
			fb := &recordingRT{}
			rt := im.transport(t, h1transport.Config{Fallback: fb})
			if _, body := mustGet(t, rt, srv.url+"/"); body != "next" || len(fb.got) != 0 {
				t.Errorf("body %q, Fallback got %d requests; want the upstream's %q and none", body, len(fb.got), "next")
			}
		})
	})
}

const fallbackStatus = 299

// recordingRT is a Fallback that records what it is given.
type recordingRT struct{ got []*http.Request }

func (r *recordingRT) RoundTrip(req *http.Request) (*http.Response, error) {
	r.got = append(r.got, req)
	return &http.Response{StatusCode: fallbackStatus, Header: http.Header{}, Body: http.NoBody, Request: req}, nil
}
