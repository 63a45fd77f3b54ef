package usage

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
)

// Record is one finished call.
type Record struct {
	// Time is when the call started; it picks the day. Zero means now.
	Time    time.Time
	Email   string // the caller; empty skips the per-person keys
	TokenID string // the API token; empty skips the per-token totals
	// Model is the requested model (from the request) or the response's.
	Model  string
	Path   string // e.g. /v1/chat/completions
	Status int
	// InputTokens and OutputTokens are as Usage reports them.
	InputTokens, OutputTokens int64
	// CostUSD is the call's cost when CostKnown; it is kept in whole
	// micro-dollars (rounded). A negative, NaN or infinite cost is unknown.
	CostUSD   float64
	CostKnown bool
	Latency   time.Duration
}

// Defaults for zero Config fields.
const (
	DefaultPrefix        = "llmgate:"
	DefaultRetention     = 400 * 24 * time.Hour
	DefaultRecentPerUser = 200
	DefaultQueueSize     = 10_000
	DefaultFlushInterval = 250 * time.Millisecond
	DefaultCloseTimeout  = 5 * time.Second
)

const (
	// batchSize is how many waiting records make the flusher write at once.
	batchSize = 256
	// writeTimeout bounds one pipeline.
	writeTimeout = 5 * time.Second
	// logEvery spaces repeated warnings (write failures, drops).
	logEvery = time.Minute
)

// Config configures a Recorder. Zero fields take the documented defaults.
type Config struct {
	// Prefix starts every Redis key. Default "llmgate:".
	Prefix string
	// Retention is how long usage is kept (LLMGATE_USAGE_RETENTION): every
	// key expires this long after its last write. Default 400 days.
	Retention time.Duration
	// RecentPerUser caps each person's list of recent calls. Default 200.
	RecentPerUser int
	// QueueSize bounds the records waiting to be written. Record never
	// blocks: when the queue is full the record is dropped and counted
	// (Dropped). Default 10 000.
	QueueSize int
	// FlushInterval is how often waiting records are written; 256 waiting
	// records are written at once. Default 250ms.
	FlushInterval time.Duration
	// CloseTimeout bounds Close: how long it keeps trying to write what is
	// queued. Default 5s.
	CloseTimeout time.Duration
	// Now is the clock (the day of a record without Time, and "today" of
	// the queries). Default time.Now.
	Now func() time.Time
	// Logger receives write failures and drops. Default: discard.
	Logger *slog.Logger
	// SpendRefresh is how often the Ledger reads the month's spend and the
	// caps from Redis. Default DefaultSpendRefresh.
	SpendRefresh time.Duration
}

func (c Config) withDefaults() Config {
	if c.Prefix == "" {
		c.Prefix = DefaultPrefix
	}
	if c.Retention <= 0 {
		c.Retention = DefaultRetention
	}
	if c.RecentPerUser <= 0 {
		c.RecentPerUser = DefaultRecentPerUser
	}
	if c.QueueSize <= 0 {
		c.QueueSize = DefaultQueueSize
	}
	if c.FlushInterval <= 0 {
		c.FlushInterval = DefaultFlushInterval
	}
	if c.CloseTimeout <= 0 {
		c.CloseTimeout = DefaultCloseTimeout
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.SpendRefresh <= 0 {
		c.SpendRefresh = DefaultSpendRefresh
	}
	return c
}

// Recorder writes finished calls to Redis in the background and answers
// usage queries. Use NewRecorder; Close it at shutdown.
type Recorder struct {
	rdb redis.UniversalClient
	cfg Config
	log *slog.Logger
	// ledger mirrors the month's spend per person; the flusher feeds it.
	ledger *Ledger

	// The queue is a slice under a mutex rather than a channel: a send on
	// a channel with a waiting receiver wakes the flusher on the caller's
	// P after every call, in front of the next request. The flusher takes
	// the whole queue on its tick, or when Record says batchSize are
	// waiting (full).
	mu     sync.Mutex
	queue  []queued // waiting records, at most cfg.QueueSize
	closed bool
	full   chan struct{} // capacity 1: batchSize records are waiting

	dropped   atomic.Uint64
	ctx       context.Context // of every write; canceled CloseTimeout after Close
	cancel    context.CancelFunc
	stop      chan struct{}
	result    chan error // the flusher's last word
	closeOnce sync.Once
	closeErr  error

	// Owned by the flusher goroutine.
	fl flusher
}

// NewRecorder returns a Recorder writing to rdb and starts its flusher.
func NewRecorder(rdb redis.UniversalClient, cfg Config) *Recorder {
	cfg = cfg.withDefaults()
	r := &Recorder{
		rdb:    rdb,
		cfg:    cfg,
		log:    cfg.Logger,
		full:   make(chan struct{}, 1),
		stop:   make(chan struct{}),
		result: make(chan error, 1),
	}
	r.ledger = newLedger(rdb, cfg)
	r.ctx, r.cancel = context.WithCancel(context.Background())
	r.fl = flusher{
		expireEvery: min(time.Hour, cfg.Retention/4),
		expired:     map[string]time.Time{},
	}
	go r.run()
	return r
}

// Record queues rec for writing. It never blocks: when the queue is full,
// or the Recorder is closed, rec is dropped and counted in Dropped.
func (r *Recorder) Record(rec Record) {
	if rec.Time.IsZero() {
		rec.Time = r.cfg.Now()
	}
	var month string
	q := newQueued(rec)
	pend := q.known && q.micro > 0 && rec.Email != ""
	if pend {
		month = rec.Time.UTC().Format(monthLayout)
	}
	r.mu.Lock()
	if r.closed || len(r.queue) >= r.cfg.QueueSize {
		r.mu.Unlock()
		r.dropped.Add(1)
		return
	}
	if pend {
		// Counted before it is queued: the flusher may write it at once.
		r.ledger.pend(month, rec.Email, q.micro)
	}
	r.queue = append(r.queue, q)
	n := len(r.queue)
	r.mu.Unlock()
	if n == batchSize {
		select {
		case r.full <- struct{}{}:
		default:
		}
	}
}

// queued is a Record waiting to be written, with what the flusher needs
// of it worked out by Record, on the caller's goroutine: the flusher runs
// on the processor the requests share, so its work per batch is kept
// small (see commands).
type queued struct {
	Record
	micro int64  // the cost in micro-dollars, when known
	known bool   // whether the cost is known
	entry string // the call in a recent list: recentJSON, encoded
}

// newQueued works out rec's cost and recent-list entry.
func newQueued(rec Record) queued {
	q := queued{Record: rec}
	q.micro, q.known = microUSD(&rec)
	var buf [192]byte
	q.entry = string(appendRecent(buf[:0], recentJSON{
		Time: rec.Time.UnixMilli(), TokenID: rec.TokenID, Model: rec.Model, Path: rec.Path, Status: rec.Status,
		In: max(rec.InputTokens, 0), Out: max(rec.OutputTokens, 0), Cost: q.micro, CostKnown: q.known,
		Latency: rec.Latency.Microseconds(),
	}))
	return q
}

// take moves up to limit waiting records to the end of batch and returns it
// with how many are still waiting.
func (r *Recorder) take(batch []queued, limit int) ([]queued, int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(batch) == 0 && len(r.queue) <= limit {
		// The common case: swap the slices instead of copying.
		batch, r.queue = r.queue, batch[:0]
		return batch, 0
	}
	n := min(limit, len(r.queue))
	batch = append(batch, r.queue[:n]...)
	rest := copy(r.queue, r.queue[n:])
	clear(r.queue[rest:])
	r.queue = r.queue[:rest]
	if rest <= batchSize && cap(r.queue) > 4*batchSize {
		r.queue = append(make([]queued, 0, batchSize), r.queue...)
	}
	return batch, rest
}

// waiting returns how many records are queued.
func (r *Recorder) waiting() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.queue)
}

// Ledger returns the in-process mirror of this month's spend per person,
// which this Recorder's writes keep current.
func (r *Recorder) Ledger() *Ledger { return r.ledger }

// Dropped returns how many records were dropped because the queue was full
// (or the Recorder closed), for /metrics.
func (r *Recorder) Dropped() uint64 { return r.dropped.Load() }

// Close writes what is queued, for at most Config.CloseTimeout, and stops
// the flusher. It returns an error when records could not be written.
// Record drops records after Close; the queries keep working.
func (r *Recorder) Close() error {
	r.closeOnce.Do(func() {
		r.mu.Lock()
		r.closed = true
		r.mu.Unlock()
		close(r.stop)
		defer r.ledger.close()
		hardStop := time.AfterFunc(r.cfg.CloseTimeout, r.cancel)
		defer hardStop.Stop()
		defer r.cancel()
		select {
		case r.closeErr = <-r.result:
		case <-time.After(r.cfg.CloseTimeout + time.Second):
			r.closeErr = errors.New("close usage recorder: flusher did not stop in time")
		}
	})
	return r.closeErr
}

// flusher is the state of the goroutine that writes records.
type flusher struct {
	batch        []queued
	retry        []cmd // commands of a failed write, to try again
	retryRecords int   // records whose writes are in retry
	expireEvery  time.Duration
	expired      map[string]time.Time // when EXPIRE was last sent per key
	failing      bool
	lastLog      time.Time // of the last write-failure warning
	lastDropLog  time.Time
	loggedDrops  uint64
}

// run is the flusher: it writes the waiting records every FlushInterval,
// or at once when Record reports batchSize waiting. While a write is
// failing it takes no more records, so the queue fills and Record starts
// dropping.
func (r *Recorder) run() {
	tick := time.NewTicker(r.cfg.FlushInterval)
	defer tick.Stop()
	f := &r.fl
	f.batch = make([]queued, 0, batchSize)
	for {
		select {
		case <-r.full:
			r.drain(r.ctx)
		case <-tick.C:
			r.drain(r.ctx)
			r.noteDrops()
		case <-r.stop:
			r.result <- r.finish()
			return
		}
	}
}

// drain retries a failed write, then writes the waiting records, batchSize
// per pipeline. It reports whether nothing is left to write; after a failed
// write it stops, keeping the failed commands in retry.
func (r *Recorder) drain(ctx context.Context) bool {
	f := &r.fl
	for {
		if len(f.retry) > 0 && !r.write(ctx, f.retry, f.retryRecords) {
			return false
		}
		var rest int
		f.batch, rest = r.take(f.batch[:0], batchSize)
		n := len(f.batch)
		if n == 0 {
			return true
		}
		cmds := r.commands(f.batch, r.cfg.Now())
		clear(f.batch)
		f.batch = f.batch[:0]
		if cap(f.batch) > 4*batchSize {
			// Grown while Redis was away: let the garbage collector
			// stop scanning it.
			f.batch = make([]queued, 0, batchSize)
		}
		if !r.write(ctx, cmds, n) {
			return false
		}
		if rest == 0 {
			return true
		}
	}
}

// write runs cmds in one pipeline; commands that failed for a reason that
// may pass are kept in retry.
func (r *Recorder) write(ctx context.Context, cmds []cmd, records int) bool {
	ctx, cancel := context.WithTimeout(ctx, writeTimeout)
	defer cancel()
	failed, err := r.exec(ctx, cmds)
	f := &r.fl
	f.retry, f.retryRecords = failed, 0
	if len(failed) > 0 {
		f.retryRecords = records
	}
	now := time.Now()
	switch {
	case err == nil:
		if f.failing {
			f.failing = false
			r.log.Info("usage writes to Redis work again")
		}
		return true
	case len(failed) == 0:
		r.log.Error("usage write refused by Redis; dropped", "records", records, "err", err)
		return true
	case !f.failing || now.Sub(f.lastLog) >= logEvery:
		f.failing, f.lastLog = true, now
		r.log.Warn("write usage to Redis; will retry", "records", records, "commands", len(failed), "err", err)
	}
	return false
}

// noteDrops logs, at most every logEvery, that records were dropped.
func (r *Recorder) noteDrops() {
	f := &r.fl
	d := r.dropped.Load()
	if d == f.loggedDrops {
		return
	}
	if now := time.Now(); now.Sub(f.lastDropLog) >= logEvery {
		f.lastDropLog = now
		r.log.Warn("usage queue full: records dropped", "dropped_total", d, "queue_size", r.cfg.QueueSize)
		f.loggedDrops = d
	}
}

// finish writes what is left, trying again until Close cancels r.ctx
// (CloseTimeout after it began). Record takes no more records by now.
func (r *Recorder) finish() error {
	ctx := r.ctx
	f := &r.fl
	for !r.drain(ctx) {
		t := time.NewTimer(r.cfg.FlushInterval)
		select {
		case <-ctx.Done():
			t.Stop()
			lost := f.retryRecords + r.waiting()
			return fmt.Errorf("close usage recorder: records not written: %d: %w", lost, ctx.Err())
		case <-t.C:
		}
	}
	return nil
}
