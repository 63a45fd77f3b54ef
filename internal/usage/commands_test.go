package usage

import (
	"encoding/json"
	"math"
	"math/rand/v2"
	"reflect"
	"testing"
	"time"
)

// The flusher's commands were built with maps per record, time.Format and
// encoding/json until they made a 256-call batch cost ≈ 430 µs of the
// processor the requests run on. commandsBefore is that code, kept to
// hold the faster one to exactly the same commands.

func addBefore(c *counts, rec *Record) {
	c.req++
	c.in += max(rec.InputTokens, 0)
	c.out += max(rec.OutputTokens, 0)
	if micro, ok := microUSD(rec); ok {
		c.cost += micro
	} else {
		c.unk++
	}
}

func commandsBefore(r *Recorder, batch []Record) []cmd {
	type dayModel struct{ day, email, model string }
	type monthEmail struct{ month, email string }
	type tokenSum struct {
		counts
		last int64
	}
	days := map[dayModel]*counts{}
	var dayOrder []dayModel
	tokens := map[string]*tokenSum{}
	var tokenOrder []string
	months := map[monthEmail]int64{}
	var monthOrder []monthEmail
	users := map[string][]any{} // day → emails
	seen := map[[2]string]bool{}
	var userDays []string
	recent := map[string][]any{} // email → encoded calls, oldest first
	var recentOrder []string

	for i := range batch {
		rec := &batch[i]
		t := rec.Time.UTC()
		day := t.Format(dayLayout)
		if rec.TokenID != "" {
			ts := tokens[rec.TokenID]
			if ts == nil {
				ts = &tokenSum{}
				tokens[rec.TokenID] = ts
				tokenOrder = append(tokenOrder, rec.TokenID)
			}
			addBefore(&ts.counts, rec)
			ts.last = max(ts.last, t.UnixMilli())
		}
		if rec.Email == "" {
			continue
		}
		dk := dayModel{day, rec.Email, rec.Model}
		c := days[dk]
		if c == nil {
			c = &counts{}
			days[dk] = c
			dayOrder = append(dayOrder, dk)
		}
		addBefore(c, rec)
		if !seen[[2]string{day, rec.Email}] {
			seen[[2]string{day, rec.Email}] = true
			if users[day] == nil {
				userDays = append(userDays, day)
			}
			users[day] = append(users[day], rec.Email)
		}
		micro, known := microUSD(rec)
		if known && micro > 0 {
			mk := monthEmail{t.Format(monthLayout), rec.Email}
			if _, ok := months[mk]; !ok {
				monthOrder = append(monthOrder, mk)
			}
			months[mk] += micro
		}
		b, _ := json.Marshal(recentJSON{
			Time: t.UnixMilli(), TokenID: rec.TokenID, Model: rec.Model, Path: rec.Path, Status: rec.Status,
			In: max(rec.InputTokens, 0), Out: max(rec.OutputTokens, 0), Cost: micro, CostKnown: known,
			Latency: rec.Latency.Microseconds(),
		})
		if recent[rec.Email] == nil {
			recentOrder = append(recentOrder, rec.Email)
		}
		recent[rec.Email] = append(recent[rec.Email], string(b))
	}

	ttl := int64(max(r.cfg.Retention/time.Second, 1))
	wall := time.Now() // EXPIRE is refreshed by real time, whatever cfg.Now says
	var cmds []cmd
	expire := func(key string) {
		if r.fl.needExpire(key, wall) {
			cmds = append(cmds, cmd{"expire", key, ttl})
		}
	}
	hincr := func(key, field string, n int64) {
		if n != 0 {
			cmds = append(cmds, cmd{"hincrby", key, field, n})
		}
	}
	for _, dk := range dayOrder {
		c, key := days[dk], r.dayKey(dk.day, dk.email)
		hincr(key, fReq+":"+dk.model, c.req)
		hincr(key, fIn+":"+dk.model, c.in)
		hincr(key, fOut+":"+dk.model, c.out)
		hincr(key, fCost+":"+dk.model, c.cost)
		hincr(key, fUnk+":"+dk.model, c.unk)
		expire(key)
	}
	for _, day := range userDays {
		key := r.usersKey(day)
		cmds = append(cmds, append(cmd{"sadd", key}, users[day]...))
		expire(key)
	}
	for _, id := range tokenOrder {
		ts, key := tokens[id], r.tokenKey(id)
		hincr(key, fReq, ts.req)
		hincr(key, fIn, ts.in)
		hincr(key, fOut, ts.out)
		hincr(key, fCost, ts.cost)
		hincr(key, fUnk, ts.unk)
		cmds = append(cmds, cmd{"hset", key, fLast, ts.last})
		expire(key)
	}
	for _, mk := range monthOrder {
		key := r.spendKey(mk.month)
		cmds = append(cmds, cmd{"hincrby", key, mk.email, months[mk]})
		expire(key) // once per key: needExpire remembers
	}
	for _, email := range recentOrder {
		key := r.recentKey(email)
		cmds = append(cmds, append(cmd{"lpush", key}, recent[email]...))
		cmds = append(cmds, cmd{"ltrim", key, 0, r.cfg.RecentPerUser - 1})
		expire(key)
	}
	return cmds
}

// TestCommandsLikeBefore compares the commands of random batches: people,
// tokens and models interleaved or in runs, calls across midnight, month
// ends and 1970, costs known, unknown and invalid, names that need JSON
// escaping.
func TestCommandsLikeBefore(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	pick := func(xs ...string) string { return xs[rng.IntN(len(xs))] }
	starts := []time.Time{
		time.Date(2026, 3, 14, 12, 0, 0, 0, time.UTC),
		time.Date(2026, 3, 31, 23, 59, 59, 0, time.UTC),
		time.Date(2026, 12, 31, 23, 59, 58, 0, time.FixedZone("CET", 3600)),
		time.Date(1969, 12, 31, 23, 59, 59, 500e6, time.UTC),
	}
	for n := range 400 {
		batch := make([]Record, 1+rng.IntN(300))
		at := starts[n%len(starts)]
		run := rng.IntN(2) == 0 // long runs of the same caller, as in practice
		var prev Record
		for i := range batch {
			at = at.Add(time.Duration(rng.IntN(20)) * time.Millisecond)
			if rng.IntN(50) == 0 {
				at = at.Add(time.Duration(rng.IntN(48)) * time.Hour)
			}
			rec := Record{
				Time:        at,
				Email:       pick("alice@example.com", "bob@example.com", "", "carol@example.com"),
				TokenID:     pick("tok_a", "tok_b", "", "tok_\"c"),
				Model:       pick("gpt-4o-mini", "claude-sonnet-4-6", "", "m<&>", "modèle", "\x00\xff", "a\u2028b", "x\x1fy"),
				Path:        pick("/v1/chat/completions", "/v1/messages", "/v1/x?\"y\"", "/v1/a<b", "/v1/a>b", "/v1/a&b", "/v1/a\\b"),
				Status:      []int{200, 0, 429, 500}[rng.IntN(4)],
				InputTokens: int64(rng.IntN(3000)) - 5, OutputTokens: int64(rng.IntN(900)),
				Latency: time.Duration(rng.IntN(5e9)),
			}
			switch rng.IntN(5) {
			case 0:
				rec.CostUSD, rec.CostKnown = rng.Float64()/100, true
			case 1:
				rec.CostUSD, rec.CostKnown = []float64{math.NaN(), math.Inf(1), -1, 0, 2e9}[rng.IntN(5)], true
			case 2:
				rec.CostUSD = 0.5 // not known: ignored
			}
			if run && i > 0 && rng.IntN(10) != 0 {
				rec.Email, rec.TokenID, rec.Model = prev.Email, prev.TokenID, prev.Model
			}
			batch[i], prev = rec, rec
		}
		fresh := func() *Recorder {
			cfg := Config{}.withDefaults()
			return &Recorder{cfg: cfg, fl: flusher{expireEvery: time.Hour, expired: map[string]time.Time{}}}
		}
		want := commandsBefore(fresh(), batch)
		got := fresh().commands(queueAll(batch), base)
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("batch %d (%d calls): commands differ\n got %v\nwant %v", n, len(batch), got, want)
		}
	}
}

// queueAll is what Record makes of each of batch.
func queueAll(batch []Record) []queued {
	q := make([]queued, len(batch))
	for i, rec := range batch {
		q[i] = newQueued(rec)
	}
	return q
}

// FuzzRecentEntry holds appendRecent to encoding/json's bytes.
func FuzzRecentEntry(f *testing.F) {
	f.Add(int64(1773489600000), "tok_a", "gpt-4o-mini", "/v1/chat/completions", 200, int64(12), int64(20), int64(4200), true, int64(150))
	f.Add(int64(-1), "", "", "", 0, int64(0), int64(0), int64(0), false, int64(0))
	f.Add(int64(0), "\"\\", "<&>", "\u2028\x7f\xff\x01", -3, int64(-1), int64(math.MaxInt64), int64(math.MinInt64), false, int64(-7))
	f.Fuzz(func(t *testing.T, ms int64, tok, model, path string, status int, in, out, cost int64, ck bool, lat int64) {
		j := recentJSON{Time: ms, TokenID: tok, Model: model, Path: path, Status: status, In: in, Out: out, Cost: cost, CostKnown: ck, Latency: lat}
		want, err := json.Marshal(j)
		if err != nil {
			t.Fatal(err)
		}
		if got := appendRecent([]byte("x"), j); string(got) != "x"+string(want) {
			t.Fatalf("appendRecent = %s\nencoding/json %s", got[1:], want)
		}
	})
}
