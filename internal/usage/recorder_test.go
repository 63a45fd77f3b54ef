package usage

import (
	"context"
	"math"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/llmgate/llmgate/internal/redistest"
)

const day = 24 * time.Hour

// TestRecorderQueries records calls of several people, tokens, models and
// days (names with ':' and '|') and reads them back through every query.
func TestRecorderQueries(t *testing.T) {
	redistest.Each(t, func(t *testing.T, srv *redistest.Server) {
		r := newRecorder(t, srv)
		const (
			alice  = "alice@example.com"
			bobOps = "bob:ops|x@example.com"
			bob    = "bob"
		)
		recs := []Record{
			{Time: base.Add(-3 * day), Email: alice, TokenID: "tokA", Model: "m", Path: "/v1/messages", Status: 200, InputTokens: 1, OutputTokens: 1, CostUSD: 2, CostKnown: true, Latency: time.Second},
			{Time: base.Add(-day), Email: alice, TokenID: "tokA", Model: "gpt-4o", Path: "/v1/chat/completions", Status: 200, InputTokens: 7, OutputTokens: 3, CostUSD: 0.5, CostKnown: true, Latency: 1500 * time.Microsecond},
			{Time: base.Add(-time.Hour), Email: alice, TokenID: "tokA", Model: "gpt-4o", Path: "/v1/chat/completions", Status: 200, InputTokens: 10, OutputTokens: 5, CostUSD: 0.001, CostKnown: true, Latency: 20 * time.Millisecond},
			{Time: base.Add(-time.Minute), Email: alice, TokenID: "tokA", Model: "gpt-4o", Path: "/v1/chat/completions", Status: 429, InputTokens: 1, OutputTokens: 1},
			{Time: base, Email: alice, TokenID: "tokB", Model: "claude:sonnet|4", Path: "/v1/messages", Status: 200, InputTokens: 100, OutputTokens: 50, CostUSD: 0.25, CostKnown: true, Latency: 3 * time.Second},
			{Time: base, Email: bobOps, TokenID: "tok:C", Model: "gpt-4o", Status: 200, InputTokens: 2, OutputTokens: 2, CostUSD: 0.000001, CostKnown: true},
			{Time: base, Email: bob, TokenID: "tokD", Model: "req:x", Status: 200, InputTokens: 4, OutputTokens: 4, CostUSD: math.NaN(), CostKnown: true},
		}
		for _, rec := range recs {
			r.Record(rec)
		}
		closeRecorder(t, r)
		ctx := context.Background()
		today, yesterday, earlier := "2026-03-14", "2026-03-13", "2026-03-11"

		aliceRows := []DayModel{
			{Day: today, Model: "claude:sonnet|4", Requests: 1, InputTokens: 100, OutputTokens: 50, CostUSD: 0.25},
			{Day: today, Model: "gpt-4o", Requests: 2, InputTokens: 11, OutputTokens: 6, CostUSD: 0.001, CostUnknownRequests: 1},
			{Day: yesterday, Model: "gpt-4o", Requests: 1, InputTokens: 7, OutputTokens: 3, CostUSD: 0.5},
		}
		aliceAll := append(aliceRows[:3:3], DayModel{Day: earlier, Model: "m", Requests: 1, InputTokens: 1, OutputTokens: 1, CostUSD: 2})
		for _, tt := range []struct {
			email string
			days  int
			want  []DayModel
		}{
			{alice, 2, aliceRows},
			{alice, 4, aliceAll},
			{alice, 0, aliceRows[:2]},
			{bobOps, 30, []DayModel{{Day: today, Model: "gpt-4o", Requests: 1, InputTokens: 2, OutputTokens: 2, CostUSD: 0.000001}}},
			{bob, 30, []DayModel{{Day: today, Model: "req:x", Requests: 1, InputTokens: 4, OutputTokens: 4, CostUnknownRequests: 1}}},
			{"nobody@example.com", 30, []DayModel{}},
		} {
			got, err := r.UserUsage(ctx, tt.email, tt.days)
			if err != nil {
				t.Fatalf("UserUsage(%q, %d): %v", tt.email, tt.days, err)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("UserUsage(%q, %d) (-want +got):\n%s", tt.email, tt.days, diff)
			}
		}

		all, err := r.AllUsage(ctx, 2)
		if err != nil {
			t.Fatalf("AllUsage(2): %v", err)
		}
		wantAll := map[string][]DayModel{
			alice:  aliceRows,
			bobOps: {{Day: today, Model: "gpt-4o", Requests: 1, InputTokens: 2, OutputTokens: 2, CostUSD: 0.000001}},
			bob:    {{Day: today, Model: "req:x", Requests: 1, InputTokens: 4, OutputTokens: 4, CostUnknownRequests: 1}},
		}
		if diff := cmp.Diff(wantAll, all); diff != "" {
			t.Errorf("AllUsage(2) (-want +got):\n%s", diff)
		}

		for _, tt := range []struct {
			id   string
			want Totals
		}{
			{"tokA", Totals{Requests: 4, InputTokens: 19, OutputTokens: 10, CostUSD: 2.501, CostUnknownRequests: 1, LastUsedAt: base.Add(-time.Minute)}},
			{"tokB", Totals{Requests: 1, InputTokens: 100, OutputTokens: 50, CostUSD: 0.25, LastUsedAt: base}},
			{"tok:C", Totals{Requests: 1, InputTokens: 2, OutputTokens: 2, CostUSD: 0.000001, LastUsedAt: base}},
			{"tok", Totals{}},
		} {
			got, err := r.TokenUsage(ctx, tt.id)
			if err != nil {
				t.Fatalf("TokenUsage(%q): %v", tt.id, err)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("TokenUsage(%q) (-want +got):\n%s", tt.id, diff)
			}
			spend, err := r.TokenSpend(ctx, tt.id)
			if err != nil || spend != tt.want.CostUSD {
				t.Errorf("TokenSpend(%q) = %v, %v; want %v, nil", tt.id, spend, err, tt.want.CostUSD)
			}
		}

		if got, err := r.MonthSpend(ctx, alice, base); err != nil || got != 2.751 {
			t.Errorf("MonthSpend(alice, March) = %v, %v; want 2.751, nil", got, err)
		}
		if got, err := r.MonthSpend(ctx, alice, base.AddDate(0, -1, 0)); err != nil || got != 0 {
			t.Errorf("MonthSpend(alice, February) = %v, %v; want 0, nil", got, err)
		}

		got, err := r.Recent(ctx, alice, 10)
		if err != nil {
			t.Fatalf("Recent(alice, 10): %v", err)
		}
		var want []Record
		for i := len(recs) - 1; i >= 0; i-- {
			if recs[i].Email == alice {
				w := recs[i]
				if !w.CostKnown {
					w.CostUSD = 0
				}
				want = append(want, w)
			}
		}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("Recent(alice, 10) (-want +got):\n%s", diff)
		}
		got, err = r.Recent(ctx, bob, 10)
		if err != nil || len(got) != 1 || got[0].CostKnown || got[0].CostUSD != 0 {
			t.Errorf("Recent(bob) = %+v, %v; want one call of unknown cost (NaN is not a cost)", got, err)
		}
	})
}

// TestRecorderCostExact: many small costs add up exactly.
func TestRecorderCostExact(t *testing.T) {
	redistest.Each(t, func(t *testing.T, srv *redistest.Server) {
		r := newRecorder(t, srv)
		const n = 3000
		for i := range n {
			cost := 0.000001
			if i%1000 == 0 {
				cost = 0.1
			}
			r.Record(Record{Time: base, Email: "a@example.com", TokenID: "t", Model: "m", CostUSD: cost, CostKnown: true})
		}
		r.Record(Record{Time: base, Email: "a@example.com", TokenID: "t", Model: "m", CostUSD: 0.2, CostKnown: true})
		closeRecorder(t, r)
		if d := r.Dropped(); d != 0 {
			t.Fatalf("Dropped() = %d, want 0", d)
		}
		// 2997 × $0.000001 + 3 × $0.1 + $0.2
		ctx := context.Background()
		if got, err := r.TokenSpend(ctx, "t"); err != nil || got != 0.502997 {
			t.Errorf("TokenSpend = %v, %v; want exactly 0.502997 (naive float sum: %v)", got, err, naiveSum(n))
		}
		rows, err := r.UserUsage(ctx, "a@example.com", 1)
		if err != nil || len(rows) != 1 || rows[0].CostUSD != 0.502997 || rows[0].Requests != n+1 {
			t.Errorf("UserUsage = %+v, %v; want one row of %d requests costing exactly 0.502997", rows, err, n+1)
		}
		if got, err := r.MonthSpend(ctx, "a@example.com", base); err != nil || got != 0.502997 {
			t.Errorf("MonthSpend = %v, %v; want exactly 0.502997", got, err)
		}
	})
}

func naiveSum(n int) float64 {
	var s float64
	for i := range n {
		if i%1000 == 0 {
			s += 0.1
		} else {
			s += 0.000001
		}
	}
	return s + 0.2
}

// TestRecorderRetention: every key expires Retention after its write.
func TestRecorderRetention(t *testing.T) {
	redistest.Each(t, func(t *testing.T, srv *redistest.Server) {
		retention := 48 * time.Hour
		if srv.Real() {
			retention = time.Second // real time passes on a real server
		}
		r := newRecorder(t, srv, func(c *Config) { c.Retention = retention })
		r.Record(Record{Time: base, Email: "a@example.com", TokenID: "t", Model: "m", InputTokens: 1, CostUSD: 1, CostKnown: true})
		closeRecorder(t, r)
		ctx := context.Background()
		keys := []string{
			r.dayKey("2026-03-14", "a@example.com"), r.usersKey("2026-03-14"), r.tokenKey("t"),
			r.spendKey("2026-03"), r.recentKey("a@example.com"),
		}
		for _, k := range keys {
			ttl, err := srv.Client.TTL(ctx, k).Result()
			if err != nil || ttl <= 0 || ttl > retention {
				t.Errorf("TTL %s = %v, %v; want in (0, %v]", strings.TrimPrefix(k, srv.Prefix), ttl, err, retention)
			}
		}
		srv.FastForward(retention + 500*time.Millisecond)
		rows, err := r.UserUsage(ctx, "a@example.com", 1)
		if err != nil || len(rows) != 0 {
			t.Errorf("UserUsage after the retention = %+v, %v; want none", rows, err)
		}
		all, err := r.AllUsage(ctx, 1)
		if err != nil || len(all) != 0 {
			t.Errorf("AllUsage after the retention = %+v, %v; want none", all, err)
		}
		if tot, err := r.TokenUsage(ctx, "t"); err != nil || tot != (Totals{}) {
			t.Errorf("TokenUsage after the retention = %+v, %v; want zero", tot, err)
		}
		if recent, err := r.Recent(ctx, "a@example.com", 10); err != nil || len(recent) != 0 {
			t.Errorf("Recent after the retention = %+v, %v; want none", recent, err)
		}
	})
}

// TestRecorderRecentCapped: the recent list keeps RecentPerUser calls,
// newest first, across batches.
func TestRecorderRecentCapped(t *testing.T) {
	redistest.Each(t, func(t *testing.T, srv *redistest.Server) {
		r := newRecorder(t, srv, func(c *Config) { c.RecentPerUser = 5 })
		for i := range 12 {
			r.Record(Record{Time: base.Add(time.Duration(i) * time.Second), Email: "a@example.com", Status: 200 + i})
			if i == 6 {
				eventually(t, "the first calls are written", func() bool {
					n, _ := srv.Client.LLen(context.Background(), r.recentKey("a@example.com")).Result()
					return n == 5
				})
			}
		}
		closeRecorder(t, r)
		ctx := context.Background()
		if n, err := srv.Client.LLen(ctx, r.recentKey("a@example.com")).Result(); err != nil || n != 5 {
			t.Errorf("LLEN of the recent list = %d, %v; want 5", n, err)
		}
		for _, tt := range []struct{ limit, want int }{{0, 5}, {3, 3}, {5, 5}, {100, 5}} {
			got, err := r.Recent(ctx, "a@example.com", tt.limit)
			if err != nil {
				t.Fatalf("Recent(%d): %v", tt.limit, err)
			}
			var status []int
			for _, rec := range got {
				status = append(status, rec.Status)
			}
			want := []int{211, 210, 209, 208, 207}[:tt.want]
			if diff := cmp.Diff(want, status); diff != "" {
				t.Errorf("Recent(%d) statuses (-want +got):\n%s", tt.limit, diff)
			}
		}
	})
}

// TestRecorderRedisDown: with Redis gone Record returns at once, the queue
// fills, drops are counted, and what was held is written when Redis is
// back; Close gives up after CloseTimeout.
func TestRecorderRedisDown(t *testing.T) {
	srv := redistest.Mini(t)
	r := newRecorder(t, srv, func(c *Config) {
		c.QueueSize = 10
		c.FlushInterval = 10 * time.Millisecond
		c.CloseTimeout = 300 * time.Millisecond
	})
	srv.Mini.Close()
	const n = 1000
	start := time.Now()
	var slowest time.Duration
	for range n {
		t0 := time.Now()
		r.Record(Record{Time: base, Email: "a@example.com", TokenID: "t", Model: "m"})
		slowest = max(slowest, time.Since(t0))
	}
	if el := time.Since(start); el > time.Second || slowest > 100*time.Millisecond {
		t.Errorf("%d Records with Redis down took %v (slowest %v): Record must not wait", n, el, slowest)
	}
	dropped := r.Dropped()
	if dropped < n-batchSize-10 {
		t.Errorf("Dropped() = %d, want at least %d (queue 10, one batch of %d held)", dropped, n-batchSize-10, batchSize)
	}

	if err := srv.Mini.Restart(); err != nil {
		t.Fatalf("restart miniredis: %v", err)
	}
	ctx := context.Background()
	eventually(t, "the held records are written once Redis is back", func() bool {
		tot, err := r.TokenUsage(ctx, "t")
		return err == nil && uint64(tot.Requests)+r.Dropped() == n
	})
	if r.Dropped() != dropped {
		t.Errorf("Dropped() went from %d to %d after Redis came back", dropped, r.Dropped())
	}

	srv.Mini.Close()
	r.Record(Record{Time: base, Email: "a@example.com", TokenID: "t", Model: "m"})
	start = time.Now()
	err := r.Close()
	if el := time.Since(start); el > 2*time.Second {
		t.Errorf("Close with Redis down took %v, want about CloseTimeout (300ms)", el)
	}
	if err == nil || !strings.Contains(err.Error(), "records not written: ") {
		t.Errorf("Close with Redis down = %v, want an error saying records were not written", err)
	}
	r.Record(Record{Email: "a@example.com"})
	if got := r.Dropped(); got != dropped+1 {
		t.Errorf("Record after Close: Dropped() = %d, want %d", got, dropped+1)
	}
}

// TestRecorderFlushes: 256 waiting records are written without waiting
// for the interval, and Close writes the rest.
func TestRecorderFlushes(t *testing.T) {
	redistest.Each(t, func(t *testing.T, srv *redistest.Server) {
		r := newRecorder(t, srv, func(c *Config) { c.FlushInterval = time.Hour })
		ctx := context.Background()
		requests := func() int64 {
			tot, err := r.TokenUsage(ctx, "t")
			if err != nil {
				t.Fatalf("TokenUsage: %v", err)
			}
			return tot.Requests
		}
		for range batchSize {
			r.Record(Record{Email: "a@example.com", TokenID: "t"})
		}
		eventually(t, "a full batch is written before the interval", func() bool { return requests() == batchSize })
		for range 600 {
			r.Record(Record{Email: "a@example.com", TokenID: "t"})
		}
		closeRecorder(t, r)
		if got := requests(); got != batchSize+600 {
			t.Errorf("after Close: %d requests written, want %d", got, batchSize+600)
		}
		rows, err := r.UserUsage(ctx, "a@example.com", 1)
		if err != nil || len(rows) != 1 || rows[0].Requests != batchSize+600 {
			t.Errorf("UserUsage = %+v, %v; want %d requests today (Time zero is now)", rows, err, batchSize+600)
		}
		if err := r.Close(); err != nil {
			t.Errorf("second Close = %v, want nil", err)
		}
	})
}

func TestConfigDefaults(t *testing.T) {
	got := Config{}.withDefaults()
	if got.Prefix != "llmgate:" || got.Retention != 400*day || got.RecentPerUser != 200 || got.QueueSize != 10_000 ||
		got.FlushInterval != 250*time.Millisecond || got.CloseTimeout != 5*time.Second || got.Now == nil || got.Logger == nil {
		t.Errorf("Config{}.withDefaults() = %+v", got)
	}
}

func TestMicroUSD(t *testing.T) {
	tests := []struct {
		name   string
		rec    Record
		want   int64
		wantOK bool
	}{
		{"unknown", Record{CostUSD: 1}, 0, false},
		{"zero", Record{CostKnown: true}, 0, true},
		{"one micro", Record{CostUSD: 0.000001, CostKnown: true}, 1, true},
		{"rounds", Record{CostUSD: 0.0000014, CostKnown: true}, 1, true},
		{"0.1+0.2", Record{CostUSD: 0.1 + 0.2, CostKnown: true}, 300_000, true},
		{"negative", Record{CostUSD: -1, CostKnown: true}, 0, false},
		{"NaN", Record{CostUSD: math.NaN(), CostKnown: true}, 0, false},
		{"Inf", Record{CostUSD: math.Inf(1), CostKnown: true}, 0, false},
		{"huge", Record{CostUSD: 1e30, CostKnown: true}, 1e15, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, ok := microUSD(&tt.rec)
			if got != tt.want || ok != tt.wantOK {
				t.Errorf("microUSD(%+v) = %d, %v; want %d, %v", tt.rec, got, ok, tt.want, tt.wantOK)
			}
		})
	}
}
