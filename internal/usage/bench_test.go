package usage

import (
	"bytes"
	"context"
	"strconv"
	"testing"
	"time"

	"github.com/llmgate/llmgate/internal/demoupstream"
	"github.com/llmgate/llmgate/internal/redistest"
)

// BenchmarkMeterSSE meters a long Anthropic stream (1000 content deltas,
// from the demo upstream) written an event at a time, as a proxy relays a
// live stream, and in 32 KiB reads, as it relays a fast one.
//
//	go test -run '^$' -bench Meter -benchmem ./internal/usage/
func BenchmarkMeterSSE(b *testing.B) {
	s := demoupstream.New(demoupstream.Options{NoRecord: true, Chunks: 1000})
	ct, body := demoCall(b, s, "/v1/messages", `{"model":"claude-sonnet-4-6","max_tokens":8192,"stream":true,"messages":[{"role":"user","content":"Tell me a long story"}]}`)
	want := meter(b, ct, whole(body))
	if !want.Found || want.OutputTokens < 1000 {
		b.Fatalf("the stream reports %+v, want a usage with at least 1000 output tokens", want)
	}
	for _, bb := range []struct {
		name   string
		chunks [][]byte
	}{
		{"events", bytes.SplitAfter(body, []byte("\n\n"))},
		{"32KiB", chunksOf(body, 32<<10)},
	} {
		b.Run(bb.name, func(b *testing.B) {
			b.SetBytes(int64(len(body)))
			b.ReportAllocs()
			for b.Loop() {
				m := NewMeter(ct)
				for _, c := range bb.chunks {
					m.Write(c)
				}
				if m.Usage() != want {
					b.Fatal("wrong usage")
				}
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/float64(len(bb.chunks)), "ns/write")
		})
	}
}

// BenchmarkMeterJSON meters a chat completion and a 300 KB embeddings answer.
func BenchmarkMeterJSON(b *testing.B) {
	for _, bb := range []struct{ name, path, body string }{
		{"chat", "/v1/chat/completions", `{"model":"gpt-4o-mini","messages":[{"role":"user","content":"Say hello"}]}`},
		{"embeddings", "/v1/embeddings", `{"model":"text-embedding-3-small","input":["a","b","c","d","e","f","g","h","i","j"],"dimensions":1536}`},
	} {
		b.Run(bb.name, func(b *testing.B) {
			ct, body := demoCall(b, demoServer, bb.path, bb.body)
			want := meter(b, ct, whole(body))
			if !want.Found {
				b.Fatalf("no usage in %s", body)
			}
			chunks := chunksOf(body, 32<<10)
			b.SetBytes(int64(len(body)))
			b.ReportAllocs()
			for b.Loop() {
				m := NewMeter(ct)
				for _, c := range chunks {
					m.Write(c)
				}
				if m.Usage() != want {
					b.Fatal("wrong usage")
				}
			}
		})
	}
}

// BenchmarkMeterSmall meters the answers a proxy relays most: a short
// chat answer of each API family as one JSON document written at once, and
// as a stream of 20 content deltas written an event at a time (OpenAI with
// stream_options.include_usage). cpu-ns/op is the CPU time per answer.
func BenchmarkMeterSmall(b *testing.B) {
	s := demoupstream.New(demoupstream.Options{NoRecord: true, Chunks: 20})
	for _, bb := range []struct{ name, path, body string }{
		{"openai-json", "/v1/chat/completions", `{"model":"gpt-4o-mini","messages":[{"role":"user","content":"Say hello"}]}`},
		{"anthropic-json", "/v1/messages", `{"model":"claude-sonnet-4-6","max_tokens":1024,"messages":[{"role":"user","content":"Hello"}]}`},
		{"openai-sse", "/v1/chat/completions", `{"model":"gpt-4o-mini","stream":true,"stream_options":{"include_usage":true},"messages":[{"role":"user","content":"Say hello"}]}`},
		{"anthropic-sse", "/v1/messages", `{"model":"claude-sonnet-4-6","max_tokens":1024,"stream":true,"messages":[{"role":"user","content":"Hello"}]}`},
	} {
		b.Run(bb.name, func(b *testing.B) {
			ct, body := demoCall(b, s, bb.path, bb.body)
			want := meter(b, ct, whole(body))
			if !want.Found || want.Model == "" || want.InputTokens == 0 || want.OutputTokens == 0 {
				b.Fatalf("the answer reports %+v, want a model and both counts: %s", want, body)
			}
			chunks := whole(body)
			if modeOf(ct) == modeSSE {
				chunks = bytes.SplitAfter(body, []byte("\n\n"))
			}
			b.SetBytes(int64(len(body)))
			b.ReportAllocs()
			cpu := cpuTime()
			for b.Loop() {
				m := NewMeter(ct)
				for _, c := range chunks {
					m.Write(c)
				}
				if m.Usage() != want {
					b.Fatal("wrong usage")
				}
			}
			reportCPU(b, cpu)
		})
	}
}

// reportCPU reports the CPU time per op since start (GC included), which
// other processes on a busy machine disturb less than ns/op.
func reportCPU(b *testing.B, start time.Duration) {
	if d := cpuTime() - start; d > 0 {
		b.ReportMetric(float64(d.Nanoseconds())/float64(b.N), "cpu-ns/op")
	}
}

func chunksOf(b []byte, n int) [][]byte {
	var out [][]byte
	for len(b) > 0 {
		k := min(n, len(b))
		out = append(out, b[:k])
		b = b[k:]
	}
	return out
}

// BenchmarkRecord is the cost of Record on the request path (the flusher
// writes to miniredis meanwhile; what it cannot take is dropped, and
// counted in drops/op).
func BenchmarkRecord(b *testing.B) {
	srv := redistest.Mini(b)
	r := newRecorder(b, srv, func(c *Config) { c.FlushInterval = 10 * time.Millisecond })
	rec := Record{Email: "alice@example.com", TokenID: "tok", Model: "claude-sonnet-4-6", Path: "/v1/messages",
		Status: 200, InputTokens: 1000, OutputTokens: 200, CostUSD: 0.0042, CostKnown: true, Latency: time.Second}
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			r.Record(rec)
		}
	})
	b.ReportMetric(float64(r.Dropped())/float64(b.N), "drops/op")
}

// BenchmarkFlush writes one full batch (256 calls of 16 people, 4 tokens,
// 2 models) in one pipeline: the Redis work behind 256 requests.
func BenchmarkFlush(b *testing.B) {
	servers := map[string]func(testing.TB) *redistest.Server{"miniredis": redistest.Mini, "redis": redistest.Real}
	for _, name := range []string{"miniredis", "redis"} {
		b.Run(name, func(b *testing.B) {
			srv := servers[name](b)
			r := newRecorder(b, srv, func(c *Config) { c.FlushInterval = time.Hour })
			batch := make([]Record, batchSize)
			for i := range batch {
				batch[i] = Record{Time: base, Email: "user" + strconv.Itoa(i%16) + "@example.com", TokenID: "tok" + strconv.Itoa(i%4),
					Model: "model" + strconv.Itoa(i%2), Path: "/v1/messages", Status: 200, InputTokens: 1000, OutputTokens: 200,
					CostUSD: 0.0042, CostKnown: true, Latency: time.Second}
			}
			qs := queueAll(batch)
			fl := flusher{expireEvery: time.Hour, expired: map[string]time.Time{}}
			r2 := &Recorder{rdb: r.rdb, cfg: r.cfg, fl: fl, ledger: r.ledger}
			var cmds int
			b.ReportAllocs()
			for b.Loop() {
				c := r2.commands(qs, base)
				cmds = len(c)
				if failed, err := r2.exec(context.Background(), c); err != nil {
					b.Fatalf("exec: %v (%d failed)", err, len(failed))
				}
			}
			b.ReportMetric(float64(cmds), "cmds/batch")
		})
	}
}

// BenchmarkCommands is the flusher's work on one batch before it talks to
// Redis: work that holds up a request arriving meanwhile when llmgate has
// one CPU. "one" is a batch of one person's calls on one token and model
// (one busy client); "mixed" interleaves 16 people, 4 tokens, 2 models.
func BenchmarkCommands(b *testing.B) {
	for _, shape := range []string{"one", "mixed"} {
		b.Run(shape, func(b *testing.B) {
			batch := make([]Record, batchSize)
			for i := range batch {
				batch[i] = Record{Time: base.Add(time.Duration(i) * time.Millisecond), Email: "alice@example.com",
					TokenID: "tok_0123456789abcdef", Model: "gpt-4o-mini", Path: "/v1/chat/completions", Status: 200,
					InputTokens: 12, OutputTokens: 20, Latency: 150 * time.Microsecond}
				if shape == "mixed" {
					batch[i].Email = "user" + strconv.Itoa(i%16) + "@example.com"
					batch[i].TokenID = "tok" + strconv.Itoa(i%4)
					batch[i].Model = "model" + strconv.Itoa(i%2)
					batch[i].CostUSD, batch[i].CostKnown = 0.0042, true
				}
			}
			qs := queueAll(batch)
			r := &Recorder{cfg: Config{}.withDefaults(), fl: flusher{expireEvery: time.Hour, expired: map[string]time.Time{}}}
			b.ReportAllocs()
			for b.Loop() {
				r.commands(qs, base)
			}
		})
	}
}
