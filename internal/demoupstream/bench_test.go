package demoupstream

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// BenchmarkChatCompletion measures the demo upstream as the baseline of
// proxy benchmarks: over loopback HTTP (JSON and a streamed reply with
// usage) and the handler alone.
func BenchmarkChatCompletion(b *testing.B) {
	const body = `{"model":"gpt-4o-mini","messages":[{"role":"system","content":"You are terse."},{"role":"user","content":"Say hello"}]}`
	streamBody := strings.Replace(body, "{", `{"stream":true,"stream_options":{"include_usage":true},`, 1)
	s := New(Options{NoRecord: true, CostUSD: 0.001})
	ts := httptest.NewServer(s)
	b.Cleanup(ts.Close)
	client := ts.Client()

	post := func(b *testing.B, body string) {
		req, err := http.NewRequest(http.MethodPost, ts.URL+"/v1/chat/completions", strings.NewReader(body))
		if err != nil {
			b.Fatal(err)
		}
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("X-LLMGate-User-Email", "alice@example.com")
		resp, err := client.Do(req)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := io.Copy(io.Discard, resp.Body); err != nil {
			b.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			b.Fatalf("status %d", resp.StatusCode)
		}
	}

	b.Run("json", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			post(b, body)
		}
	})
	b.Run("stream", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			post(b, streamBody)
		}
	})
	b.Run("json-parallel", func(b *testing.B) {
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				post(b, body)
			}
		})
	})
	b.Run("handler", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			w := httptest.NewRecorder()
			s.ServeHTTP(w, httptest.NewRequest(http.MethodPost, "/v1/chat/completions", strings.NewReader(body)))
			if w.Code != http.StatusOK {
				b.Fatalf("status %d", w.Code)
			}
		}
	})
}

// BenchmarkMessagesStream measures an Anthropic stream of 8 deltas.
func BenchmarkMessagesStream(b *testing.B) {
	const body = `{"model":"claude-sonnet-4-6","max_tokens":1024,"stream":true,"messages":[{"role":"user","content":"Hello, Claude"}]}`
	s := New(Options{NoRecord: true})
	ts := httptest.NewServer(s)
	b.Cleanup(ts.Close)
	client := ts.Client()
	b.ReportAllocs()
	for b.Loop() {
		resp, err := client.Post(ts.URL+"/v1/messages", "application/json", strings.NewReader(body))
		if err != nil {
			b.Fatal(err)
		}
		if _, err := io.Copy(io.Discard, resp.Body); err != nil {
			b.Fatal(err)
		}
		resp.Body.Close()
	}
}

// BenchmarkDecodeMessages measures reading a Claude-Code-sized
// /v1/messages body, the demo upstream's main cost in proxy benchmarks.
func BenchmarkDecodeMessages(b *testing.B) {
	body := ClaudeCodeBody(100 << 10)
	b.SetBytes(int64(len(body)))
	b.ReportAllocs()
	for b.Loop() {
		if _, _, e := decodeMessages(body); e != nil {
			b.Fatalf("decodeMessages: %s", e.msg)
		}
	}
}
