package tokens

import (
	"context"
	"testing"
	"time"

	"github.com/llmgate/llmgate/internal/redistest"
)

// BenchmarkVerifyCached measures Verify of a token seen before: the
// request path of nearly every API call. Target < 1 µs, ≤ 2 allocs.
func BenchmarkVerifyCached(b *testing.B) {
	s := newService(b, redistest.Mini(b), quiet)
	raw, _ := issue(b, s, IssueRequest{Models: []string{"gpt-4o"}})
	verifyOK(b, s, raw)
	ctx := context.Background()
	b.Run("serial", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := s.Verify(ctx, raw, ScopeLLM); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("parallel", func(b *testing.B) {
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				if _, err := s.Verify(ctx, raw, ScopeLLM); err != nil {
					b.Fatal(err)
				}
			}
		})
	})
}

// BenchmarkVerifyFirstSeen measures Verify of a token not seen before:
// parse, header checks, signature (jwx, explicit key set), claims, and the
// one read of its record, on miniredis and on a real Redis; "no-store"
// is everything but that read. Target < 80 µs.
func BenchmarkVerifyFirstSeen(b *testing.B) {
	for _, alg := range []string{AlgEdDSA, AlgES256} {
		b.Run(alg, func(b *testing.B) {
			b.Run("miniredis", func(b *testing.B) { benchFirstSeen(b, redistest.Mini(b), alg, true) })
			b.Run("redis", func(b *testing.B) { benchFirstSeen(b, redistest.Real(b), alg, true) })
			b.Run("no-store", func(b *testing.B) { benchFirstSeen(b, redistest.Mini(b), alg, false) })
		})
	}
}

func benchFirstSeen(b *testing.B, srv *redistest.Server, alg string, store bool) {
	s := newService(b, srv, quiet, func(c *Config) { c.Algorithm = alg })
	const n = 64
	toks := make([]string, n)
	for i := range toks {
		toks[i], _ = issue(b, s, IssueRequest{})
	}
	ctx := context.Background()
	now := time.Now()
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		raw := toks[i%n]
		i++
		if !store {
			if _, err := s.parse(ctx, raw, now); err != nil {
				b.Fatal(err)
			}
			continue
		}
		s.cache.remove(raw)
		if _, err := s.Verify(ctx, raw, ScopeLLM); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkIssue measures minting a token (sign + one pipelined write).
func BenchmarkIssue(b *testing.B) {
	s := newService(b, redistest.Mini(b), quiet)
	ctx := context.Background()
	req := IssueRequest{Name: "bench", Email: "alice@example.com", Subject: "s"}
	b.ReportAllocs()
	for b.Loop() {
		if _, _, err := s.Issue(ctx, req); err != nil {
			b.Fatal(err)
		}
	}
}
