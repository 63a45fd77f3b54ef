package gateway

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/llmgate/llmgate/internal/audit"
	"github.com/llmgate/llmgate/internal/demoupstream"
	"github.com/llmgate/llmgate/internal/redistest"
	"github.com/llmgate/llmgate/internal/usage"
	"github.com/llmgate/llmgate/oidc"
	"github.com/llmgate/llmgate/sessions"
	"github.com/llmgate/llmgate/tokens"
)

// The proxy benchmarks compare llmgate's handler with a bare
// httputil.ReverseProxy (same tuned Transport, same demo upstream on
// loopback), both called in-process through ServeHTTP so that the
// difference is what the gateway adds: verification (a cache hit for a
// seen token), reading the body for replay, header rewriting, metering,
// usage recording, metrics and the per-call log line (JSON, discarded).
//
//	go test -run '^$' -bench 'Proxy' -benchmem -count 8 ./gateway > new.txt
//	benchstat -col /proxy new.txt
//
// Whole-process load (wrk, RSS per idle stream, Redis commands) is in
// bench/.

// benchGateway is a gateway in front of the demo upstream, with a minted
// token and a bare ReverseProxy to the same upstream.
type benchGateway struct {
	gw    *Server
	bare  *httputil.ReverseProxy
	token string
}

func newBenchGateway(b *testing.B) *benchGateway {
	b.Helper()
	return newBenchGatewayWith(b, demoupstream.Options{NoRecord: true}, SpendConfig{})
}

// newBenchGatewayWith is newBenchGateway with the demo upstream's options
// and spend caps.
func newBenchGatewayWith(b *testing.B, upOpts demoupstream.Options, spend SpendConfig) *benchGateway {
	b.Helper()
	rs := redistest.Mini(b)
	const base = "http://127.0.0.1:8080"
	tok := newTokens(b, rs, base, time.Now)
	_, upURL, closeUp, err := demoupstream.Start("127.0.0.1:0", upOpts)
	if err != nil {
		b.Fatalf("start demo upstream: %v", err)
	}
	b.Cleanup(func() { closeUp() })
	u, _ := url.Parse(upURL)
	rec := usage.NewRecorder(rs.Client, usage.Config{Prefix: rs.Prefix})
	b.Cleanup(func() { rec.Close() })
	auditLog := audit.New(rs.Client, audit.Config{Prefix: rs.Prefix})
	b.Cleanup(func() { auditLog.Close() })
	pub, _ := url.Parse(base)
	gw, err := New(Config{
		PublicURL: pub,
		Secret:    []byte("test-secret-test-secret-test-secret-0123456789"),
		// Production logs JSON at Info: one line per call. Discarding it
		// keeps the formatting cost and drops only the write.
		Logger:    slog.New(slog.NewJSONHandler(io.Discard, nil)),
		KeyPrefix: rs.Prefix,
		Proxy: ProxyConfig{Upstreams: []Upstream{{Name: "demo", URL: u, Paths: []string{"/v1/"}, APIKey: "sk-upstream"}},
			CostHeader: "x-litellm-response-cost", Spend: spend},
	}, Deps{
		Sessions: sessions.New(rs.Client, sessions.Config{Prefix: rs.Prefix}),
		RP: oidc.New(oidc.Config{Issuer: "http://127.0.0.1:1", ClientID: "llmgate", ClientSecret: "x",
			RedirectURL: base + "/oauth2/callback", Scopes: []string{"openid"}}),
		Tokens: tok,
		Usage:  rec,
		Audit:  auditLog,
		Users:  newUsers(b, rs, 0, time.Now),
		Redis:  rs.Client,
	})
	if err != nil {
		b.Fatalf("gateway.New: %v", err)
	}
	raw, _, err := tok.Issue(context.Background(), tokens.IssueRequest{
		Name: "bench", Email: "alice@example.com", Subject: "alice-sub", UserName: "Alice"})
	if err != nil {
		b.Fatalf("issue token: %v", err)
	}
	// The bare proxy gets net/http's Transport tuned as the gateway tunes
	// its fallback for TLS upstreams.
	tr := netHTTPTransport(gw.proxyCfg)
	bare := &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.SetURL(u)
			pr.SetXForwarded()
			pr.Out.Header.Del("Authorization")
			pr.Out.Header["Authorization"] = []string{"Bearer sk-upstream"}
		},
		Transport: tr,
	}
	b.Cleanup(tr.CloseIdleConnections)
	return &benchGateway{gw: gw, bare: bare, token: raw}
}

// discardWriter is a reusable http.ResponseWriter that counts and drops
// the body.
type discardWriter struct {
	h    http.Header
	code int
	n    int64
}

func (w *discardWriter) Header() http.Header { return w.h }
func (w *discardWriter) WriteHeader(code int) {
	if w.code == 0 {
		w.code = code
	}
}
func (w *discardWriter) Write(p []byte) (int, error) {
	if w.code == 0 {
		w.code = http.StatusOK
	}
	w.n += int64(len(p))
	return len(p), nil
}
func (w *discardWriter) Flush() {}
func (w *discardWriter) reset() {
	clear(w.h)
	w.code, w.n = 0, 0
}

// serve sends one request to h and fails b unless the answer is want.
func serve(b *testing.B, h http.Handler, w *discardWriter, path string, body []byte, hdr http.Header, want int) {
	r, err := http.NewRequest(http.MethodPost, "http://127.0.0.1:8080"+path, bytes.NewReader(body))
	if err != nil {
		b.Fatal(err)
	}
	r.RemoteAddr = "127.0.0.1:40000"
	for k, v := range hdr {
		r.Header[k] = v
	}
	w.reset()
	h.ServeHTTP(w, r)
	if w.code != want {
		b.Fatalf("POST %s: status %d, want %d", path, w.code, want)
	}
}

// BenchmarkProxy measures one non-streamed call through llmgate and
// through the bare ReverseProxy, for a small chat completion and a
// ~100 KB Claude-Code-like /v1/messages body, and one streamed
// /v1/messages call (SSE, 8 deltas).
func BenchmarkProxy(b *testing.B) {
	bg := newBenchGateway(b)
	chat := []byte(benchChatBody)
	large := demoupstream.ClaudeCodeBody(100 << 10)
	stream := []byte(`{"model":"claude-sonnet-4-6","max_tokens":256,"stream":true,"messages":[{"role":"user","content":"hello there"}]}`)
	cases := []struct {
		name, path string
		body       []byte
	}{
		{"body=chat", "/v1/chat/completions", chat},
		{"body=messages100k", "/v1/messages", large},
		{"body=stream", "/v1/messages", stream},
	}
	proxies := []struct {
		name string
		h    http.Handler
	}{{"llmgate", bg.gw}, {"bare", bg.bare}}
	hdr := http.Header{
		"Authorization":     {"Bearer " + bg.token},
		"Content-Type":      {"application/json"},
		"Anthropic-Version": {"2023-06-01"},
		"User-Agent":        {"claude-cli/2.1.0 (external, cli)"},
	}
	for _, c := range cases {
		for _, p := range proxies {
			b.Run(c.name+"/proxy="+p.name, func(b *testing.B) {
				serve(b, p.h, &discardWriter{h: http.Header{}}, c.path, c.body, hdr, http.StatusOK)
				b.SetBytes(int64(len(c.body)))
				b.ReportAllocs()
				b.ResetTimer()
				b.RunParallel(func(pb *testing.PB) {
					w := &discardWriter{h: http.Header{}}
					for pb.Next() {
						serve(b, p.h, w, c.path, c.body, hdr, http.StatusOK)
					}
				})
			})
		}
	}
}

// BenchmarkProxyLoopback is BenchmarkProxy with both proxies behind a
// real http.Server on loopback and a keep-alive client, so that reading
// the request body from a socket (which llmgate does in full before
// dialling, for replay) is part of the measurement. Profile it with
// -cpuprofile to see the whole request path.
func BenchmarkProxyLoopback(b *testing.B) {
	bg := newBenchGateway(b)
	cases := []struct {
		name, path string
		body       []byte
	}{
		{"body=chat", "/v1/chat/completions", []byte(benchChatBody)},
		{"body=messages100k", "/v1/messages", demoupstream.ClaudeCodeBody(100 << 10)},
	}
	proxies := []struct {
		name string
		h    http.Handler
	}{{"llmgate", bg.gw}, {"bare", bg.bare}}
	for _, c := range cases {
		for _, p := range proxies {
			b.Run(c.name+"/proxy="+p.name, func(b *testing.B) {
				srv := httptest.NewServer(p.h)
				defer srv.Close()
				client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 64, DisableCompression: true}}
				defer client.Transport.(*http.Transport).CloseIdleConnections()
				call := func() {
					req, _ := http.NewRequest(http.MethodPost, srv.URL+c.path, bytes.NewReader(c.body))
					req.Header.Set("Authorization", "Bearer "+bg.token)
					req.Header.Set("Content-Type", "application/json")
					resp, err := client.Do(req)
					if err != nil {
						b.Fatal(err)
					}
					io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
					if resp.StatusCode != http.StatusOK {
						b.Fatalf("POST %s: status %d, want 200", c.path, resp.StatusCode)
					}
				}
				call()
				b.SetBytes(int64(len(c.body)))
				b.ReportAllocs()
				b.ResetTimer()
				b.RunParallel(func(pb *testing.PB) {
					for pb.Next() {
						call()
					}
				})
			})
		}
	}
}

// BenchmarkProxyIdleStreams holds streams open through each proxy (the
// upstream sends a stream's opening events, then nothing) and reports the
// Go heap and goroutine stack in use per stream, after a GC. Client and
// upstream run in this process too, so their share is in both numbers;
// the difference between the two proxies is what llmgate adds. RSS per
// stream of whole processes is measured by bench/.
func BenchmarkProxyIdleStreams(b *testing.B) {
	const n = 500
	_, slowURL, closeSlow, err := demoupstream.Start("127.0.0.1:0", demoupstream.Options{NoRecord: true, ChunkDelay: time.Hour})
	if err != nil {
		b.Fatal(err)
	}
	defer closeSlow()
	bg := newBenchGateway(b)
	u, _ := url.Parse(slowURL)
	bg.gw.proxyRoutes[0].up.URL = u
	bg.gw.proxyRoutes[0].up.Upstream.URL = u
	bg.bare.Rewrite = func(pr *httputil.ProxyRequest) { pr.SetURL(u); pr.SetXForwarded() }
	body := `{"model":"claude-sonnet-4-6","max_tokens":256,"stream":true,"messages":[{"role":"user","content":"hello there"}]}`
	for _, p := range []struct {
		name string
		h    http.Handler
	}{{"llmgate", bg.gw}, {"bare", bg.bare}} {
		b.Run("proxy="+p.name, func(b *testing.B) {
			srv := httptest.NewServer(p.h)
			defer srv.Close()
			host := strings.TrimPrefix(srv.URL, "http://")
			req := "POST /v1/messages HTTP/1.1\r\nHost: " + host + "\r\nAuthorization: Bearer " + bg.token +
				"\r\nContent-Type: application/json\r\nContent-Length: " + strconv.Itoa(len(body)) + "\r\n\r\n" + body
			var heap, stack float64
			for b.Loop() {
				before := memNow()
				conns := make([]net.Conn, 0, n)
				for range n {
					c, err := net.Dial("tcp", host)
					if err != nil {
						b.Fatal(err)
					}
					io.WriteString(c, req)
					buf := make([]byte, 4096)
					var got []byte
					for !bytes.Contains(got, []byte("message_start")) || !bytes.Contains(got[bytes.Index(got, []byte("message_start")):], []byte("\n\n")) {
						k, err := c.Read(buf)
						if err != nil {
							b.Fatalf("stream: %v after %q", err, got)
						}
						got = append(got, buf[:k]...)
					}
					conns = append(conns, c)
				}
				time.Sleep(100 * time.Millisecond)
				after := memNow()
				heap = float64(after.HeapInuse-before.HeapInuse) / n
				stack = float64(after.StackInuse-before.StackInuse) / n
				for _, c := range conns {
					c.Close()
				}
				time.Sleep(100 * time.Millisecond)
			}
			b.ReportMetric(heap, "heap-B/stream")
			b.ReportMetric(stack, "stack-B/stream")
		})
	}
}

func memNow() runtime.MemStats {
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m
}

// BenchmarkProxyRefusal measures calls refused before the upstream:
// no token, a malformed token, and a well-formed token whose signature
// does not verify (every such call pays a signature check: the cache
// holds only good tokens). A refusal should cost little and allocate
// little: it is what a misconfigured client or an attacker sends in a loop.
func BenchmarkProxyRefusal(b *testing.B) {
	bg := newBenchGateway(b)
	chat := []byte(benchChatBody)
	// Flip one character in the middle of the signature.
	parts := strings.Split(bg.token, ".")
	sig := []byte(parts[2])
	if sig[10] == 'A' {
		sig[10] = 'B'
	} else {
		sig[10] = 'A'
	}
	badSig := parts[0] + "." + parts[1] + "." + string(sig)
	cases := []struct {
		name string
		hdr  http.Header
	}{
		{"missing", http.Header{}},
		{"malformed", http.Header{"Authorization": {"Bearer sk-not-a-jwt-0123456789abcdef"}}},
		{"badsig", http.Header{"Authorization": {"Bearer " + badSig}}},
	}
	for _, c := range cases {
		b.Run(c.name, func(b *testing.B) {
			b.ReportAllocs()
			w := &discardWriter{h: http.Header{}}
			for b.Loop() {
				serve(b, bg.gw, w, "/v1/chat/completions", chat, c.hdr, http.StatusUnauthorized)
			}
		})
	}
}

const benchChatBody = `{"model":"gpt-4o-mini","messages":[{"role":"system","content":"You are a helpful assistant."},` +
	`{"role":"user","content":"Summarise the following in one sentence: the quick brown fox jumps over the lazy dog, twice."}],` +
	`"temperature":0.2,"max_tokens":128}`

// BenchmarkProxySpendCaps compares the proxy with a spend cap on for every
// person (and every call priced) against the same proxy without caps, in
// the same run: the cap check reads the in-process ledger, so the two
// should stay within a few percent.
//
//	go test -run '^$' -bench 'ProxySpendCaps' -benchmem -count 8 ./gateway > caps.txt
//	benchstat -col /caps caps.txt
func BenchmarkProxySpendCaps(b *testing.B) {
	up := demoupstream.Options{NoRecord: true, CostUSD: 0.000001}
	gateways := []struct {
		name string
		bg   *benchGateway
	}{
		{"off", newBenchGatewayWith(b, up, SpendConfig{})},
		{"on", newBenchGatewayWith(b, up, SpendConfig{DefaultMonthlyUSD: 1e9,
			GroupMonthlyUSD: map[string]float64{"ml": 1e9}})},
	}
	hdr := func(tok string) http.Header {
		return http.Header{
			"Authorization":     {"Bearer " + tok},
			"Content-Type":      {"application/json"},
			"Anthropic-Version": {"2023-06-01"},
		}
	}
	cases := []struct {
		name, path string
		body       []byte
	}{
		{"body=chat", "/v1/chat/completions", []byte(benchChatBody)},
		{"body=messages", "/v1/messages", []byte(`{"model":"claude-sonnet-4-6","max_tokens":64,"messages":[{"role":"user","content":"hello there"}]}`)},
	}
	for _, c := range cases {
		for _, g := range gateways {
			b.Run(c.name+"/caps="+g.name, func(b *testing.B) {
				h := hdr(g.bg.token)
				serve(b, g.bg.gw, &discardWriter{h: http.Header{}}, c.path, c.body, h, http.StatusOK)
				b.ReportAllocs()
				b.ResetTimer()
				b.RunParallel(func(pb *testing.PB) {
					w := &discardWriter{h: http.Header{}}
					for pb.Next() {
						serve(b, g.bg.gw, w, c.path, c.body, h, http.StatusOK)
					}
				})
			})
		}
	}
}
