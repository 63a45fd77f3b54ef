package usage

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"strconv"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
)

// DefaultSpendRefresh is how often a Ledger reads the month's spend from
// Redis by default. Together with the Recorder's flush interval it bounds
// how long another replica's spend takes to count here.
const DefaultSpendRefresh = 500 * time.Millisecond

// Ledger keeps in process what every person has spent in the current
// calendar month (UTC) and the monthly caps set for people, so that a
// spend check before a request costs no Redis round trip. It is the
// month's spend hash and the caps hash read every Config.SpendRefresh,
// plus what this process has recorded and not yet written. Spend only
// grows within a month, so what a write answers and what a read returns
// are merged by taking the larger value: a slow read never lowers a
// total that a newer write reported.
//
// A Ledger belongs to its Recorder (Recorder.Ledger): the Recorder's
// pipeline writes the spend and tells the Ledger the new totals.
type Ledger struct {
	rdb     redis.UniversalClient
	prefix  string
	refresh time.Duration
	now     func() time.Time
	log     *slog.Logger

	mu      sync.RWMutex
	month   string           // of spent, "2006-01"
	spent   map[string]int64 // micro-USD this month, by email
	pending map[monthEmail]int64
	caps    map[string]int64 // micro-USD, by email
	capGen  uint64           // bumped by SetCap: a read begun before is stale for caps
	loaded  time.Time        // last successful read
	failing bool
	lastLog time.Time

	ctx    context.Context // of the reads; canceled by close
	cancel context.CancelFunc
	done   chan struct{}
}

type monthEmail struct{ month, email string }

func newLedger(rdb redis.UniversalClient, cfg Config) *Ledger {
	l := &Ledger{
		rdb: rdb, prefix: cfg.Prefix, refresh: cfg.SpendRefresh, now: cfg.Now, log: cfg.Logger,
		month:   cfg.Now().UTC().Format(monthLayout),
		spent:   map[string]int64{},
		pending: map[monthEmail]int64{},
		caps:    map[string]int64{},
		done:    make(chan struct{}),
	}
	l.ctx, l.cancel = context.WithCancel(context.Background())
	go l.run()
	return l
}

func (l *Ledger) spendKey(month string) string { return l.prefix + "usage:spend:" + month }
func (l *Ledger) capsKey() string              { return l.prefix + "usage:caps" }

// run reads the spend and caps every refresh until close.
func (l *Ledger) run() {
	defer close(l.done)
	t := time.NewTicker(l.refresh)
	defer t.Stop()
	for {
		ctx, cancel := context.WithTimeout(l.ctx, max(l.refresh*4, 2*time.Second))
		l.Refresh(ctx)
		cancel()
		select {
		case <-l.ctx.Done():
			return
		case <-t.C:
		}
	}
}

func (l *Ledger) close() {
	l.cancel()
	<-l.done
}

// Refresh reads this month's spend and the caps from Redis now. The
// Ledger does it by itself every Config.SpendRefresh.
func (l *Ledger) Refresh(ctx context.Context) error {
	l.mu.RLock()
	gen := l.capGen
	l.mu.RUnlock()
	month := l.now().UTC().Format(monthLayout)
	var spendCmd, capsCmd *redis.MapStringStringCmd
	_, err := l.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		spendCmd = p.HGetAll(ctx, l.spendKey(month))
		capsCmd = p.HGetAll(ctx, l.capsKey())
		return nil
	})
	if err != nil {
		if l.ctx.Err() != nil {
			return err
		}
		l.mu.Lock()
		now := time.Now()
		if !l.failing || now.Sub(l.lastLog) >= logEvery {
			l.log.Warn("read spend from Redis; spend caps use the last known totals", "err", err)
			l.failing, l.lastLog = true, now
		}
		l.mu.Unlock()
		return fmt.Errorf("read spend: %w", err)
	}
	spent := parseMicros(spendCmd.Val())
	caps := parseMicros(capsCmd.Val())
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.failing {
		l.failing = false
		l.log.Info("spend reads from Redis work again")
	}
	if month == l.month {
		for email, v := range l.spent {
			if v > spent[email] {
				spent[email] = v
			}
		}
	} else {
		for k := range l.pending {
			if k.month < month {
				delete(l.pending, k)
			}
		}
	}
	l.month, l.spent = month, spent
	if gen == l.capGen {
		l.caps = caps
	}
	l.loaded = time.Now()
	return nil
}

func parseMicros(h map[string]string) map[string]int64 {
	out := make(map[string]int64, len(h))
	for k, v := range h {
		if n, err := strconv.ParseInt(v, 10, 64); err == nil {
			out[k] = n
		}
	}
	return out
}

// Spent returns what email has spent in the calendar month (UTC) of now:
// the last totals read or written, plus what this process recorded and
// has not written yet.
func (l *Ledger) Spent(email string) float64 {
	month := l.now().UTC().Format(monthLayout)
	l.mu.RLock()
	defer l.mu.RUnlock()
	var n int64
	if month == l.month {
		n = l.spent[email]
	}
	return usd(n + l.pending[monthEmail{month, email}])
}

// Cap returns the monthly cap in USD set for email (SetCap), and whether
// one is set.
func (l *Ledger) Cap(email string) (float64, bool) {
	l.mu.RLock()
	defer l.mu.RUnlock()
	n, ok := l.caps[email]
	return usd(n), ok
}

// PersonSpend is one person's spend this month and the cap set for them.
type PersonSpend struct {
	Email    string
	SpentUSD float64
	CapUSD   float64
	HasCap   bool
}

// All returns everyone who has spent something this month or has a cap
// set, unsorted.
func (l *Ledger) All() []PersonSpend {
	month := l.now().UTC().Format(monthLayout)
	l.mu.RLock()
	defer l.mu.RUnlock()
	by := map[string]*PersonSpend{}
	get := func(email string) *PersonSpend {
		p := by[email]
		if p == nil {
			p = &PersonSpend{Email: email}
			by[email] = p
		}
		return p
	}
	if month == l.month {
		for e, n := range l.spent {
			get(e).SpentUSD += usd(n)
		}
	}
	for k, n := range l.pending {
		if k.month == month {
			get(k.email).SpentUSD += usd(n)
		}
	}
	for e, n := range l.caps {
		p := get(e)
		p.CapUSD, p.HasCap = usd(n), true
	}
	out := make([]PersonSpend, 0, len(by))
	for _, p := range by {
		out = append(out, *p)
	}
	return out
}

// ErrInvalidCap is returned by SetCap for a negative, NaN or infinite cap.
var ErrInvalidCap = errors.New("a cap must be a non-negative amount in USD")

// SetCap sets email's monthly cap in USD, or removes it when usd is nil.
// Every replica sees it within Config.SpendRefresh; this one at once.
func (l *Ledger) SetCap(ctx context.Context, email string, capUSD *float64) error {
	var err error
	var micro int64
	if capUSD == nil {
		err = l.rdb.HDel(ctx, l.capsKey(), email).Err()
	} else {
		v := *capUSD
		if math.IsNaN(v) || math.IsInf(v, 0) || v < 0 || v > 1e9 {
			return ErrInvalidCap
		}
		micro = int64(math.Round(v * 1e6))
		err = l.rdb.HSet(ctx, l.capsKey(), email, micro).Err()
	}
	if err != nil {
		return fmt.Errorf("set spend cap of %s: %w", email, err)
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	l.capGen++
	caps := make(map[string]int64, len(l.caps)+1)
	for k, v := range l.caps {
		caps[k] = v
	}
	if capUSD == nil {
		delete(caps, email)
	} else {
		caps[email] = micro
	}
	l.caps = caps
	return nil
}

// pend counts a recorded call before it is written.
func (l *Ledger) pend(month, email string, micro int64) {
	l.mu.Lock()
	l.pending[monthEmail{month, email}] += micro
	l.mu.Unlock()
}

// written takes a write of micro to email's month: its pending amount
// goes, and total (the new sum Redis answered, or -1 when the write was
// given up) is merged.
func (l *Ledger) written(month, email string, micro, total int64) {
	l.mu.Lock()
	defer l.mu.Unlock()
	k := monthEmail{month, email}
	if n := l.pending[k] - micro; n > 0 {
		l.pending[k] = n
	} else {
		delete(l.pending, k)
	}
	if total >= 0 && month == l.month && total > l.spent[email] {
		l.spent[email] = total
	}
}
