package audit

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"
)

// Log records audit events. It is safe for concurrent use. Create it with
// New and stop it with Close.
type Log struct {
	cfg Config
	rdb redis.UniversalClient
	key string // the stream
	log *slog.Logger
	m   *metrics

	storeDropped prometheus.Counter
	hookDropped  prometheus.Counter

	// hookURL is the full webhook URL, never logged; hookName is it without
	// user info and query, for logs. hookQ is nil when the webhook is off.
	hookURL  string
	hookName string
	client   *http.Client

	// mu guards closed against Record sending on the queues Close closes.
	// The queues hold pointers: a channel's whole buffer is scanned by
	// every garbage collection, and 10 000 Events inline are 1.5 MB of it,
	// a cost every proxied call would share.
	mu     sync.RWMutex
	closed bool
	storeQ chan *Event
	hookQ  chan *Event

	// closing is closed when Close starts: the writer stops retrying.
	closing chan struct{}
	// storeCtx ends when Close's flush deadline passes; hookCtx when the
	// webhook grace does. Both bound every request the goroutines make.
	storeCtx, hookCtx       context.Context
	storeCancel, hookCancel context.CancelFunc
	storeDone               chan struct{}
	hookWG                  sync.WaitGroup

	// Written by the writer goroutine, read by Close after storeDone.
	lostAtClose  int
	lastStoreErr error

	lastDropWarn [2]atomic.Int64 // unix nanos of the last "queue full" line, store and webhook

	closeOnce sync.Once
	closeErr  error
}

// dropWarnEvery rate-limits the "queue full" log line.
const dropWarnEvery = 10 * time.Second

// New returns a Log writing to the stream Config.Prefix+"audit" of rdb and,
// when Config.WebhookURL is set, posting security events to it. It starts
// the background writer and webhook workers; Close stops them. rdb is not
// closed by the Log. An invalid WebhookURL (see Config.Validate) turns the
// webhook off with an error log line.
func New(rdb redis.UniversalClient, cfg Config) *Log {
	cfg = cfg.withDefaults()
	l := &Log{
		cfg:       cfg,
		rdb:       rdb,
		key:       cfg.Prefix + "audit",
		log:       cfg.Logger,
		m:         newMetrics(),
		storeQ:    make(chan *Event, cfg.StoreQueueSize),
		closing:   make(chan struct{}),
		storeDone: make(chan struct{}),
	}
	l.storeDropped = l.m.dropped.WithLabelValues(queueStore)
	l.hookDropped = l.m.dropped.WithLabelValues(queueWebhook)
	l.storeCtx, l.storeCancel = context.WithCancel(context.Background())
	l.hookCtx, l.hookCancel = context.WithCancel(context.Background())

	if cfg.WebhookURL != "" {
		u, err := parseWebhookURL(cfg.WebhookURL)
		if err != nil {
			l.log.Error("audit webhook disabled: LLMGATE_AUDIT_WEBHOOK_URL is invalid", "err", err)
		} else {
			l.hookURL = cfg.WebhookURL
			l.hookName = redactURL(u)
			// A copy that does not follow redirects: a receiver that
			// redirects gets a failed delivery, not a silent GET or a copy
			// of the event sent elsewhere.
			c := *cfg.HTTPClient
			c.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
			l.client = &c
			l.hookQ = make(chan *Event, cfg.QueueSize)
		}
	}

	go l.storeLoop()
	if l.hookQ != nil {
		for range cfg.workers {
			l.hookWG.Add(1)
			go l.hookLoop()
		}
	}
	return l
}

// Record records e: it fills e.Time when zero, writes the log line, counts
// the event and queues it for Redis and, when Config.Security selects it,
// for the webhook. It never blocks: an event that finds a queue full (or
// the Log closed) is dropped there and counted in
// llmgate_audit_dropped_total; its log line remains.
func (l *Log) Record(e Event) {
	e = normalize(e, l.cfg.Now)
	l.logLine(e)
	l.m.events.WithLabelValues(typeLabel(e.Type)).Inc()
	hook := l.hookQ != nil && l.cfg.Security(e)

	l.mu.RLock()
	defer l.mu.RUnlock()
	if l.closed {
		l.storeDropped.Inc()
		if hook {
			l.hookDropped.Inc()
		}
		return
	}
	ep := &e
	select {
	case l.storeQ <- ep:
	default:
		l.storeDropped.Inc()
		l.warnDrop(0, queueStore)
	}
	if hook {
		select {
		case l.hookQ <- ep:
		default:
			l.hookDropped.Inc()
			l.warnDrop(1, queueWebhook)
		}
	}
}

// warnDrop logs that queue q is full, at most once per dropWarnEvery.
func (l *Log) warnDrop(i int, q string) {
	now := time.Now().UnixNano()
	last := l.lastDropWarn[i].Load()
	if now-last < int64(dropWarnEvery) || !l.lastDropWarn[i].CompareAndSwap(last, now) {
		return
	}
	l.log.Warn("audit queue full: dropping events (see llmgate_audit_dropped_total)", "queue", q)
}

// logLine writes e's slog line: Info, or Warn for refusals.
func (l *Log) logLine(e Event) {
	level := slog.LevelInfo
	if IsRefusal(e) {
		level = slog.LevelWarn
	}
	ctx := context.Background()
	if !l.log.Enabled(ctx, level) {
		return
	}
	attrs := make([]slog.Attr, 0, 9)
	attrs = append(attrs, slog.String("type", e.Type))
	add := func(k, v string) {
		if v != "" {
			attrs = append(attrs, slog.String(k, v))
		}
	}
	add("actor", e.Actor)
	add("email", e.Email)
	add("token_id", e.TokenID)
	add("ip", e.IP)
	if e.Status != 0 {
		attrs = append(attrs, slog.Int("status", e.Status))
	}
	add("reason", e.Reason)
	if len(e.Details) > 0 {
		keys := make([]string, 0, len(e.Details))
		for k := range e.Details {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		d := make([]any, 0, len(keys))
		for _, k := range keys {
			d = append(d, slog.String(k, e.Details[k]))
		}
		attrs = append(attrs, slog.Group("details", d...))
	}
	l.log.LogAttrs(ctx, level, "audit", attrs...)
}

// Close stops the Log: Record keeps logging but queues nothing more. Close
// writes the queued events to Redis (for at most 5 s) and gives queued and
// retrying webhook deliveries a short grace (2 s); what is left is dropped
// and counted. It returns an error if queued events could not be written.
// Close is idempotent. List keeps working after Close while rdb is open.
func (l *Log) Close() error {
	l.closeOnce.Do(func() {
		l.mu.Lock()
		l.closed = true
		close(l.storeQ)
		if l.hookQ != nil {
			close(l.hookQ)
		}
		close(l.closing)
		l.mu.Unlock()

		flush := time.AfterFunc(l.cfg.flushTimeout, l.storeCancel)
		grace := time.AfterFunc(l.cfg.webhookGrace, l.hookCancel)
		<-l.storeDone
		l.hookWG.Wait()
		flush.Stop()
		grace.Stop()
		l.storeCancel()
		l.hookCancel()
		if l.lostAtClose > 0 {
			l.closeErr = fmt.Errorf("close audit log: %d events not written: %w", l.lostAtClose, l.lastStoreErr)
		}
	})
	return l.closeErr
}
