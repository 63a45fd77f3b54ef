package usage

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

// DayModel is one person's usage of one model on one day.
type DayModel struct {
	Day                 string  `json:"day"` // YYYY-MM-DD, UTC
	Model               string  `json:"model"`
	Requests            int64   `json:"requests"`
	InputTokens         int64   `json:"input_tokens"`
	OutputTokens        int64   `json:"output_tokens"`
	CostUSD             float64 `json:"cost_usd"` // of the requests whose cost is known
	CostUnknownRequests int64   `json:"cost_unknown_requests"`
}

// Totals is the lifetime usage of one token.
type Totals struct {
	Requests            int64     `json:"requests"`
	InputTokens         int64     `json:"input_tokens"`
	OutputTokens        int64     `json:"output_tokens"`
	CostUSD             float64   `json:"cost_usd"`
	CostUnknownRequests int64     `json:"cost_unknown_requests"`
	LastUsedAt          time.Time `json:"last_used_at,omitzero"`
}

// Field names. A day hash's field is stat + ":" + model: the stat never
// contains ':', so the first ':' ends it whatever the model is called.
const (
	fReq  = "req"
	fIn   = "in"
	fOut  = "out"
	fCost = "cost" // micro-USD
	fUnk  = "unk"  // calls of unknown cost
	fLast = "last" // token hash: unix ms of the newest call
)

const (
	dayLayout   = "2006-01-02"
	monthLayout = "2006-01"
	// maxDays caps the days a query reads.
	maxDays = 3660
	// readChunk caps the commands of one query pipeline.
	readChunk = 1000
)

func (r *Recorder) dayKey(day, email string) string {
	return r.cfg.Prefix + "usage:day:" + day + ":" + email
}
func (r *Recorder) usersKey(day string) string    { return r.cfg.Prefix + "usage:users:" + day }
func (r *Recorder) tokenKey(id string) string     { return r.cfg.Prefix + "usage:token:" + id }
func (r *Recorder) spendKey(month string) string  { return r.cfg.Prefix + "usage:spend:" + month }
func (r *Recorder) recentKey(email string) string { return r.cfg.Prefix + "usage:recent:" + email }

// cmd is one Redis command's arguments.
type cmd []any

// counts are the sums a batch adds to one hash.
type counts struct {
	req, in, out, cost, unk int64
}

// addKnown adds rec, whose cost microUSD gave as micro, known.
func (c *counts) addKnown(rec *Record, micro int64, known bool) {
	c.req++
	c.in += max(rec.InputTokens, 0)
	c.out += max(rec.OutputTokens, 0)
	if known {
		c.cost += micro
	} else {
		c.unk++
	}
}

// floorDiv is a / b rounded toward negative infinity (b > 0).
func floorDiv(a, b int64) int64 {
	q := a / b
	if a%b < 0 {
		q--
	}
	return q
}

// microUSD is rec's cost in whole micro-dollars, or false when unknown.
func microUSD(rec *Record) (int64, bool) {
	usd := rec.CostUSD
	if !rec.CostKnown || math.IsNaN(usd) || math.IsInf(usd, 0) || usd < 0 {
		return 0, false
	}
	return int64(math.Round(min(usd, 1e9) * 1e6)), true
}

// recentJSON is a call in a recent list.
type recentJSON struct {
	Time      int64  `json:"t"` // unix ms
	TokenID   string `json:"k,omitempty"`
	Model     string `json:"m,omitempty"`
	Path      string `json:"p,omitempty"`
	Status    int    `json:"s,omitempty"`
	In        int64  `json:"i,omitempty"`
	Out       int64  `json:"o,omitempty"`
	Cost      int64  `json:"c,omitempty"` // micro-USD
	CostKnown bool   `json:"ck,omitempty"`
	Latency   int64  `json:"l,omitempty"` // µs
}

// appendRecent appends j as encoding/json would marshal it, without
// reflection: it runs once per call (FuzzRecentEntry holds the two to the
// same bytes).
func appendRecent(b []byte, j recentJSON) []byte {
	b = append(b, `{"t":`...)
	b = strconv.AppendInt(b, j.Time, 10)
	if j.TokenID != "" {
		b = appendJSONString(append(b, `,"k":`...), j.TokenID)
	}
	if j.Model != "" {
		b = appendJSONString(append(b, `,"m":`...), j.Model)
	}
	if j.Path != "" {
		b = appendJSONString(append(b, `,"p":`...), j.Path)
	}
	if j.Status != 0 {
		b = strconv.AppendInt(append(b, `,"s":`...), int64(j.Status), 10)
	}
	if j.In != 0 {
		b = strconv.AppendInt(append(b, `,"i":`...), j.In, 10)
	}
	if j.Out != 0 {
		b = strconv.AppendInt(append(b, `,"o":`...), j.Out, 10)
	}
	if j.Cost != 0 {
		b = strconv.AppendInt(append(b, `,"c":`...), j.Cost, 10)
	}
	if j.CostKnown {
		b = append(b, `,"ck":true`...)
	}
	if j.Latency != 0 {
		b = strconv.AppendInt(append(b, `,"l":`...), j.Latency, 10)
	}
	return append(b, '}')
}

// appendJSONString appends s quoted as encoding/json quotes it. Printable
// ASCII other than encoding/json's escaped characters is copied; anything
// else (rare in model names, paths and token ids) goes through
// encoding/json itself.
func appendJSONString(b []byte, s string) []byte {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c > 0x7e || c == '"' || c == '\\' || c == '<' || c == '>' || c == '&' {
			q, _ := json.Marshal(s)
			return append(b, q...)
		}
	}
	b = append(b, '"')
	b = append(b, s...)
	return append(b, '"')
}

// commands turns a batch into Redis commands, adding up the calls that
// go to the same hash field.
//
// It runs on the flusher goroutine, which shares the processor with the
// requests: with one CPU a request that arrives meanwhile waits for it,
// so a batch's work is kept small. Record has encoded each call's
// recent-list entry already (see newQueued); consecutive records almost
// always share the day, the person, the token and the model, so each map
// is looked up only when the key changes, and the day and month are
// formatted once per day.
func (r *Recorder) commands(batch []queued, now time.Time) []cmd {
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
	months := map[monthEmail]*int64{}
	var monthOrder []monthEmail
	users := map[string][]any{} // day → emails
	seen := map[[2]string]bool{}
	var userDays []string
	recent := map[string]*cmd{} // email → LPUSH of the entries, oldest first
	var recentOrder []string

	// The previous record's keys and the sums they found.
	var (
		unixDay          = int64(math.MinInt64)
		day, month       string
		lastToken        string
		lastTS           *tokenSum
		lastDK           dayModel
		lastCounts       *counts
		lastSeen         [2]string
		lastME           monthEmail
		lastMonthSum     *int64
		lastRecentEmail  string
		lastRecent       *cmd
		haveDK, haveSeen bool
	)
	for i := range batch {
		q := &batch[i]
		rec := &q.Record
		t := rec.Time.UTC()
		if d := floorDiv(t.Unix(), 86400); d != unixDay {
			unixDay = d
			day, month = t.Format(dayLayout), t.Format(monthLayout)
		}
		if rec.TokenID != "" {
			if lastTS == nil || rec.TokenID != lastToken {
				lastToken = rec.TokenID
				lastTS = tokens[rec.TokenID]
				if lastTS == nil {
					lastTS = &tokenSum{}
					tokens[rec.TokenID] = lastTS
					tokenOrder = append(tokenOrder, rec.TokenID)
				}
			}
			lastTS.addKnown(rec, q.micro, q.known)
			lastTS.last = max(lastTS.last, t.UnixMilli())
		}
		if rec.Email == "" {
			continue
		}
		if dk := (dayModel{day, rec.Email, rec.Model}); !haveDK || dk != lastDK {
			lastDK, haveDK = dk, true
			lastCounts = days[dk]
			if lastCounts == nil {
				lastCounts = &counts{}
				days[dk] = lastCounts
				dayOrder = append(dayOrder, dk)
			}
		}
		lastCounts.addKnown(rec, q.micro, q.known)
		if de := [2]string{day, rec.Email}; !haveSeen || de != lastSeen {
			lastSeen, haveSeen = de, true
			if !seen[de] {
				seen[de] = true
				if users[day] == nil {
					userDays = append(userDays, day)
				}
				users[day] = append(users[day], rec.Email)
			}
		}
		if q.known && q.micro > 0 {
			if me := (monthEmail{month, rec.Email}); lastMonthSum == nil || me != lastME {
				lastME = me
				lastMonthSum = months[me]
				if lastMonthSum == nil {
					lastMonthSum = new(int64)
					months[me] = lastMonthSum
					monthOrder = append(monthOrder, me)
				}
			}
			*lastMonthSum += q.micro
		}
		if lastRecent == nil || rec.Email != lastRecentEmail {
			lastRecentEmail = rec.Email
			lastRecent = recent[rec.Email]
			if lastRecent == nil {
				lastRecent = &cmd{"lpush", r.recentKey(rec.Email)}
				recent[rec.Email] = lastRecent
				recentOrder = append(recentOrder, rec.Email)
			}
		}
		*lastRecent = append(*lastRecent, q.entry)
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
		cmds = append(cmds, cmd{"hincrby", key, mk.email, *months[mk]})
		expire(key) // once per key: needExpire remembers
	}
	for _, email := range recentOrder {
		c := *recent[email]
		key := c[1].(string)
		cmds = append(cmds, c)
		cmds = append(cmds, cmd{"ltrim", key, 0, r.cfg.RecentPerUser - 1})
		expire(key)
	}
	return cmds
}

// needExpire reports whether key's EXPIRE is due: at its first write by
// this process, then at most every expireEvery.
func (f *flusher) needExpire(key string, now time.Time) bool {
	if t, ok := f.expired[key]; ok && now.Sub(t) < f.expireEvery {
		return false
	}
	if len(f.expired) >= 100_000 {
		for k, t := range f.expired {
			if now.Sub(t) >= f.expireEvery {
				delete(f.expired, k)
			}
		}
		if len(f.expired) >= 100_000 {
			clear(f.expired)
		}
	}
	f.expired[key] = now
	return true
}

// exec runs cmds in one pipeline. On failure it returns the commands worth
// trying again: those that failed for a reason that may pass (the network,
// a failover). Commands Redis refused for good are dropped.
func (r *Recorder) exec(ctx context.Context, cmds []cmd) ([]cmd, error) {
	if len(cmds) == 0 {
		return nil, nil
	}
	res, err := r.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		for _, c := range cmds {
			p.Do(ctx, c...)
		}
		return nil
	})
	if len(res) == len(cmds) {
		r.noteSpend(cmds, res)
	}
	if err == nil {
		return nil, nil
	}
	if len(res) != len(cmds) {
		return cmds, fmt.Errorf("write usage: %w", err)
	}
	var failed []cmd
	for i, c := range res {
		if e := c.Err(); e != nil && retryable(e) {
			failed = append(failed, cmds[i])
		}
	}
	return failed, fmt.Errorf("write usage: %w", err)
}

// noteSpend tells the Ledger what became of the month-spend increments
// among cmds: written (with the new total), given up, or to be retried
// (still pending).
func (r *Recorder) noteSpend(cmds []cmd, res []redis.Cmder) {
	prefix := r.spendKey("")
	for i, c := range cmds {
		if len(c) != 4 || c[0] != "hincrby" {
			continue
		}
		key, _ := c[1].(string)
		month, ok := strings.CutPrefix(key, prefix)
		if !ok {
			continue
		}
		email, _ := c[2].(string)
		micro, _ := c[3].(int64)
		total := int64(-1)
		if e := res[i].Err(); e == nil {
			if rc, ok := res[i].(*redis.Cmd); ok {
				total, _ = rc.Int64()
			}
		} else if retryable(e) {
			continue
		}
		r.ledger.written(month, email, micro, total)
	}
}

// retryable reports whether a command that failed with err may succeed
// later: anything but an error reply, and the error replies of a server
// that is loading, failing over or read-only.
func retryable(err error) bool {
	var re redis.Error
	if !errors.As(err, &re) {
		return true
	}
	for _, p := range []string{"LOADING", "READONLY", "CLUSTERDOWN", "TRYAGAIN", "MASTERDOWN", "BUSY"} {
		if redis.HasErrorPrefix(err, p) {
			return true
		}
	}
	return false
}

// dayList returns the last n days up to today (UTC), newest first.
func (r *Recorder) dayList(n int) []string {
	n = min(max(n, 1), maxDays)
	today := r.cfg.Now().UTC()
	out := make([]string, n)
	for i := range out {
		out[i] = today.AddDate(0, 0, -i).Format(dayLayout)
	}
	return out
}

// UserUsage returns email's usage per day and model over the last days
// days (today, UTC, is the first), newest day first, then by model.
// days is taken as at least 1.
func (r *Recorder) UserUsage(ctx context.Context, email string, days int) ([]DayModel, error) {
	list := r.dayList(days)
	keys := make([]string, len(list))
	for i, d := range list {
		keys[i] = r.dayKey(d, email)
	}
	hashes, err := r.hgetall(ctx, keys)
	if err != nil {
		return nil, fmt.Errorf("read usage of %s: %w", email, err)
	}
	out := []DayModel{}
	for i, h := range hashes {
		out = append(out, parseDay(list[i], h)...)
	}
	return out, nil
}

// AllUsage returns every person's usage per day and model over the last
// days days, by email, each as UserUsage orders it.
func (r *Recorder) AllUsage(ctx context.Context, days int) (map[string][]DayModel, error) {
	list := r.dayList(days)
	var members []*redis.StringSliceCmd
	_, err := r.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		for _, d := range list {
			members = append(members, p.SMembers(ctx, r.usersKey(d)))
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("read usage of everyone: %w", err)
	}
	type dayEmail struct{ day, email string }
	var pairs []dayEmail
	var keys []string
	for i, d := range list {
		emails := members[i].Val()
		slices.Sort(emails)
		for _, e := range emails {
			pairs = append(pairs, dayEmail{d, e})
			keys = append(keys, r.dayKey(d, e))
		}
	}
	hashes, err := r.hgetall(ctx, keys)
	if err != nil {
		return nil, fmt.Errorf("read usage of everyone: %w", err)
	}
	out := map[string][]DayModel{}
	for i, h := range hashes {
		if rows := parseDay(pairs[i].day, h); len(rows) > 0 {
			out[pairs[i].email] = append(out[pairs[i].email], rows...)
		}
	}
	return out, nil
}

// hgetall reads hashes, readChunk per pipeline.
func (r *Recorder) hgetall(ctx context.Context, keys []string) ([]map[string]string, error) {
	out := make([]map[string]string, 0, len(keys))
	for start := 0; start < len(keys); start += readChunk {
		chunk := keys[start:min(start+readChunk, len(keys))]
		cmds := make([]*redis.MapStringStringCmd, len(chunk))
		_, err := r.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
			for i, k := range chunk {
				cmds[i] = p.HGetAll(ctx, k)
			}
			return nil
		})
		if err != nil {
			return nil, err
		}
		for _, c := range cmds {
			out = append(out, c.Val())
		}
	}
	return out, nil
}

// parseDay reads a day hash into rows sorted by model.
func parseDay(day string, h map[string]string) []DayModel {
	per := map[string]*DayModel{}
	for field, v := range h {
		stat, model, ok := strings.Cut(field, ":")
		n, err := strconv.ParseInt(v, 10, 64)
		if !ok || err != nil {
			continue
		}
		dm := per[model]
		if dm == nil {
			dm = &DayModel{Day: day, Model: model}
			per[model] = dm
		}
		switch stat {
		case fReq:
			dm.Requests = n
		case fIn:
			dm.InputTokens = n
		case fOut:
			dm.OutputTokens = n
		case fCost:
			dm.CostUSD = usd(n)
		case fUnk:
			dm.CostUnknownRequests = n
		}
	}
	rows := make([]DayModel, 0, len(per))
	for _, dm := range per {
		rows = append(rows, *dm)
	}
	slices.SortFunc(rows, func(a, b DayModel) int { return strings.Compare(a.Model, b.Model) })
	return rows
}

func usd(micro int64) float64 { return float64(micro) / 1e6 }

// TokenUsage returns the lifetime usage of token id (zero when it has none).
func (r *Recorder) TokenUsage(ctx context.Context, tokenID string) (Totals, error) {
	h, err := r.rdb.HGetAll(ctx, r.tokenKey(tokenID)).Result()
	if err != nil {
		return Totals{}, fmt.Errorf("read usage of token %s: %w", tokenID, err)
	}
	num := func(f string) int64 {
		n, _ := strconv.ParseInt(h[f], 10, 64)
		return n
	}
	t := Totals{
		Requests:            num(fReq),
		InputTokens:         num(fIn),
		OutputTokens:        num(fOut),
		CostUSD:             usd(num(fCost)),
		CostUnknownRequests: num(fUnk),
	}
	if ms := num(fLast); ms > 0 {
		t.LastUsedAt = time.UnixMilli(ms).UTC()
	}
	return t, nil
}

// TokenSpend returns what token id has cost so far (calls of known cost),
// in one HGET.
func (r *Recorder) TokenSpend(ctx context.Context, tokenID string) (float64, error) {
	n, err := r.rdb.HGet(ctx, r.tokenKey(tokenID), fCost).Int64()
	if errors.Is(err, redis.Nil) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("read spend of token %s: %w", tokenID, err)
	}
	return usd(n), nil
}

// MonthSpend returns what email's calls of known cost cost in the calendar
// month (UTC) of at, in one HGET. Ledger answers the same for the current
// month without a round trip.
func (r *Recorder) MonthSpend(ctx context.Context, email string, at time.Time) (float64, error) {
	n, err := r.rdb.HGet(ctx, r.spendKey(at.UTC().Format(monthLayout)), email).Int64()
	if errors.Is(err, redis.Nil) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("read month spend of %s: %w", email, err)
	}
	return usd(n), nil
}

// Recent returns email's most recent calls, newest first: at most limit,
// and at most Config.RecentPerUser (also when limit < 1).
func (r *Recorder) Recent(ctx context.Context, email string, limit int) ([]Record, error) {
	if limit < 1 || limit > r.cfg.RecentPerUser {
		limit = r.cfg.RecentPerUser
	}
	vals, err := r.rdb.LRange(ctx, r.recentKey(email), 0, int64(limit-1)).Result()
	if err != nil {
		return nil, fmt.Errorf("read recent calls of %s: %w", email, err)
	}
	out := make([]Record, 0, len(vals))
	for _, v := range vals {
		var j recentJSON
		if json.Unmarshal([]byte(v), &j) != nil {
			continue
		}
		out = append(out, Record{
			Time: time.UnixMilli(j.Time).UTC(), Email: email, TokenID: j.TokenID, Model: j.Model, Path: j.Path,
			Status: j.Status, InputTokens: j.In, OutputTokens: j.Out, CostUSD: usd(j.Cost), CostKnown: j.CostKnown,
			Latency: time.Duration(j.Latency) * time.Microsecond,
		})
	}
	// Several replicas push in the order they flush; show the order of the calls.
	slices.SortStableFunc(out, func(a, b Record) int { return cmp.Compare(b.Time.UnixMilli(), a.Time.UnixMilli()) })
	return out, nil
}
