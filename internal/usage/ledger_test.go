package usage

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/llmgate/llmgate/internal/redistest"
)

// TestLedgerCountsOwnCallsOnce: a call recorded here counts at once,
// before it is written, and exactly once after the write and a read.
func TestLedgerCountsOwnCallsOnce(t *testing.T) {
	redistest.Each(t, func(t *testing.T, srv *redistest.Server) {
		r := newRecorder(t, srv, func(c *Config) { c.FlushInterval = time.Hour })
		l := r.Ledger()
		r.Record(Record{Time: base, Email: "a@example.com", Model: "m", CostUSD: 0.3, CostKnown: true})
		r.Record(Record{Time: base, Email: "a@example.com", Model: "m"}) // unknown cost
		if got := l.Spent("a@example.com"); got != 0.3 {
			t.Fatalf("Spent right after Record = %v; want 0.3 (counted before the write)", got)
		}
		ctx := context.Background()
		closeRecorder(t, r) // writes what is queued
		if err := l.Refresh(ctx); err != nil {
			t.Fatalf("Refresh: %v", err)
		}
		if got := l.Spent("a@example.com"); got != 0.3 {
			t.Errorf("Spent after the write and a read = %v; want 0.3, counted once", got)
		}
		if got, err := r.MonthSpend(ctx, "a@example.com", base); err != nil || got != 0.3 {
			t.Errorf("MonthSpend = %v, %v; want 0.3", got, err)
		}
	})
}

// TestLedgerSeesOtherReplicas: what one Recorder writes, another's Ledger
// reads; caps set on one are seen by the other.
func TestLedgerSeesOtherReplicas(t *testing.T) {
	redistest.Each(t, func(t *testing.T, srv *redistest.Server) {
		a, b := newRecorder(t, srv), newRecorder(t, srv)
		ctx := context.Background()
		a.Record(Record{Time: base, Email: "a@example.com", CostUSD: 0.25, CostKnown: true})
		a.Record(Record{Time: base, Email: "a@example.com", CostUSD: 0.5, CostKnown: true})
		eventually(t, "replica B sees replica A's spend of 0.75", func() bool {
			b.Ledger().Refresh(ctx)
			return b.Ledger().Spent("a@example.com") == 0.75
		})
		cap := 2.5
		if err := a.Ledger().SetCap(ctx, "a@example.com", &cap); err != nil {
			t.Fatalf("SetCap: %v", err)
		}
		if got, ok := a.Ledger().Cap("a@example.com"); !ok || got != 2.5 {
			t.Errorf("Cap on the replica that set it = %v, %v; want 2.5, true at once", got, ok)
		}
		b.Ledger().Refresh(ctx)
		if got, ok := b.Ledger().Cap("a@example.com"); !ok || got != 2.5 {
			t.Errorf("Cap on the other replica after a read = %v, %v; want 2.5, true", got, ok)
		}
		all := b.Ledger().All()
		if len(all) != 1 || all[0] != (PersonSpend{Email: "a@example.com", SpentUSD: 0.75, CapUSD: 2.5, HasCap: true}) {
			t.Errorf("All = %+v; want a@example.com with 0.75 of 2.5", all)
		}
		if err := b.Ledger().SetCap(ctx, "a@example.com", nil); err != nil {
			t.Fatalf("SetCap(nil): %v", err)
		}
		a.Ledger().Refresh(ctx)
		if _, ok := a.Ledger().Cap("a@example.com"); ok {
			t.Error("Cap after SetCap(nil) and a read: still set; want removed")
		}
		for _, bad := range []float64{-1, nan(), 2e9} {
			if err := a.Ledger().SetCap(ctx, "a@example.com", &bad); !errors.Is(err, ErrInvalidCap) {
				t.Errorf("SetCap(%v) = %v; want ErrInvalidCap", bad, err)
			}
		}
	})
}

// TestLedgerMonthTurns: spend counts per calendar month (UTC): on the 1st
// a person starts again from zero.
func TestLedgerMonthTurns(t *testing.T) {
	srv := redistest.Mini(t)
	clk := &clock{t: time.Date(2026, 3, 31, 23, 59, 0, 0, time.UTC)}
	r := newRecorder(t, srv, func(c *Config) { c.Now = clk.Now })
	r.Record(Record{Email: "a@example.com", CostUSD: 1, CostKnown: true})
	ctx := context.Background()
	eventually(t, "the March spend is written", func() bool {
		n, _ := r.MonthSpend(ctx, "a@example.com", clk.Now())
		return n == 1
	})
	// Redis may hold the write a moment before the recorder has taken its
	// answer: a read then counts it twice (once read, once pending), the
	// safe side for a cap, until the answer is taken.
	eventually(t, "the ledger counts the March spend once", func() bool {
		r.Ledger().Refresh(ctx)
		return r.Ledger().Spent("a@example.com") == 1
	})
	clk.mu.Lock()
	clk.t = time.Date(2026, 4, 1, 0, 0, 1, 0, time.UTC)
	clk.mu.Unlock()
	if got := r.Ledger().Spent("a@example.com"); got != 0 {
		t.Errorf("Spent on April 1 before a read = %v; want 0", got)
	}
	r.Ledger().Refresh(ctx)
	if got := r.Ledger().Spent("a@example.com"); got != 0 {
		t.Errorf("Spent on April 1 after a read = %v; want 0", got)
	}
}

// TestPrices: the longest model-name prefix wins; the response's model
// before the requested one; no usage or no price is unknown.
func TestPrices(t *testing.T) {
	p := NewPrices(map[string]Price{
		"claude":            {InputPerMTok: 1, OutputPerMTok: 1},
		"claude-sonnet-4-6": {InputPerMTok: 3, OutputPerMTok: 15},
		"gpt-4o":            {InputPerMTok: 2.5, OutputPerMTok: 10},
	})
	for _, tt := range []struct {
		name      string
		requested string
		u         Usage
		want      float64
		known     bool
	}{
		{"longest prefix", "", Usage{Model: "claude-sonnet-4-6-20260101", InputTokens: 1_000_000, OutputTokens: 100_000, Found: true}, 4.5, true},
		{"shorter prefix", "", Usage{Model: "claude-haiku-4-5", InputTokens: 2_000_000, Found: true}, 2, true},
		{"requested model when the response names none", "gpt-4o-mini", Usage{InputTokens: 1000, OutputTokens: 1000, Found: true}, 0.0125, true},
		{"no price", "", Usage{Model: "llama-3", InputTokens: 5, Found: true}, 0, false},
		{"no usage", "gpt-4o", Usage{Model: "gpt-4o"}, 0, false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			got, known := p.Cost(tt.requested, tt.u)
			if known != tt.known || (known && !near(got, tt.want)) {
				t.Errorf("Cost(%q, %+v) = %v, %v; want %v, %v", tt.requested, tt.u, got, known, tt.want, tt.known)
			}
		})
	}
	var none *Prices
	if _, known := none.Cost("gpt-4o", Usage{Model: "gpt-4o", InputTokens: 1, Found: true}); known {
		t.Error("nil Prices priced a call; want unknown")
	}
}

func near(a, b float64) bool { return a-b < 1e-9 && b-a < 1e-9 }

func nan() float64 { z := 0.0; return z / z }

// TestLedgerForgetsRefusedWrites: a spend that Redis refuses for good is
// not counted forever as pending.
func TestLedgerForgetsRefusedWrites(t *testing.T) {
	redistest.Each(t, func(t *testing.T, srv *redistest.Server) {
		r := newRecorder(t, srv)
		ctx := context.Background()
		// The month's hash is a string: HINCRBY fails with WRONGTYPE.
		if err := srv.Client.Set(ctx, r.spendKey("2026-03"), "x", 0).Err(); err != nil {
			t.Fatal(err)
		}
		r.Record(Record{Time: base, Email: "a@example.com", CostUSD: 0.5, CostKnown: true})
		eventually(t, "the refused spend no longer counted", func() bool { return r.Ledger().Spent("a@example.com") == 0 })
	})
}
