package tokens

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
)

// opTimeout bounds each background Redis operation.
const opTimeout = 5 * time.Second

// Service issues, verifies and revokes API tokens. It is safe for
// concurrent use. Create it with New and stop it with Close.
type Service struct {
	cfg  Config
	rdb  redis.UniversalClient
	log  *slog.Logger
	now  func() time.Time
	seal *sealer

	ring        atomic.Pointer[keyring]
	keyMu       sync.Mutex   // serializes key loads and rotation
	lastKeyLoad atomic.Int64 // unix nanos of the last key load

	origin string // this instance's id in the events it publishes
	cache  *verifiedCache
	rev    *revocations
	used   *lastUsed

	psMu       sync.Mutex // guards ps, which listen replaces when it goes silent
	ps         *redis.PubSub
	psClosed   bool
	heard      atomic.Int64 // unix nanos (wall clock) of the last message or pong
	resyncMu   sync.Mutex
	storeOK    atomic.Bool // the last Redis round trip succeeded
	subscribed atomic.Bool // the pub/sub connection is up
	ready      atomic.Bool

	resyncNow chan struct{}
	keysNow   chan struct{}
	cancel    context.CancelFunc
	wg        sync.WaitGroup
	closeOnce sync.Once
}

// New starts a Service on rdb. It waits until it has subscribed to the
// revocation channel, loaded the signing keys (creating the first one,
// race-safe, when Redis holds none) and loaded the revocation state,
// retrying while Redis cannot be reached until ctx is done (then it returns
// an error wrapping ErrUnavailable). If the stored keys do not decrypt with
// cfg.Secret it returns an error wrapping ErrWrongSecret at once, and never
// makes new keys. The Service then keeps itself current in the background
// (pub/sub, resync every cfg.ResyncInterval, key rotation, last-used
// writes) until Close. ctx is used only while New runs.
func New(ctx context.Context, rdb redis.UniversalClient, cfg Config) (*Service, error) {
	if rdb == nil {
		return nil, errors.New("tokens: nil Redis client")
	}
	cfg = cfg.withDefaults()
	if errs := cfg.Validate(); len(errs) > 0 {
		return nil, fmt.Errorf("tokens config: %w", errors.Join(errs...))
	}
	seal, err := newSealer(cfg.Secret)
	if err != nil {
		return nil, err
	}
	s := &Service{
		origin:    newID(),
		cfg:       cfg,
		rdb:       rdb,
		log:       cfg.Logger,
		now:       cfg.Now,
		seal:      seal,
		cache:     newVerifiedCache(cfg.CacheSize),
		rev:       newRevocations(),
		used:      newLastUsed(),
		resyncNow: make(chan struct{}, 1),
		keysNow:   make(chan struct{}, 1),
	}
	s.ps = rdb.Subscribe(ctx, s.channel())
	subscribed := false
	backoff := 100 * time.Millisecond
	for {
		err := s.start(ctx, &subscribed)
		if err == nil {
			break
		}
		if errors.Is(err, ErrWrongSecret) || ctx.Err() != nil || !errors.Is(err, ErrUnavailable) {
			s.ps.Close()
			if ctx.Err() != nil && !errors.Is(err, ErrWrongSecret) {
				return nil, fmt.Errorf("start token service: %w (gave up: %w)", err, ctx.Err())
			}
			return nil, fmt.Errorf("start token service: %w", err)
		}
		s.log.Warn("token service waits for Redis", "err", err, "retry_in", backoff)
		select {
		case <-ctx.Done():
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, 2*time.Second)
	}
	s.storeOK.Store(true)
	s.subscribed.Store(true)
	s.ready.Store(true)

	bg, cancel := context.WithCancel(context.Background())
	s.cancel = cancel
	s.wg.Add(2)
	go func() { defer s.wg.Done(); s.listen(bg) }()
	go func() { defer s.wg.Done(); s.maintain(bg) }()
	return s, nil
}

// start subscribes, then loads keys and revocation state: events published
// after the load are received, events before it are in what was loaded.
func (s *Service) start(ctx context.Context, subscribed *bool) error {
	for !*subscribed {
		msg, err := s.ps.ReceiveTimeout(ctx, 2*time.Second)
		if err != nil {
			return fmt.Errorf("subscribe to %s: %w: %w", s.channel(), ErrUnavailable, err)
		}
		if sub, ok := msg.(*redis.Subscription); ok && sub.Kind == "subscribe" {
			*subscribed = true
		}
	}
	if err := touchScript.Load(ctx, s.rdb).Err(); err != nil {
		s.storeFailed(err)
		return fmt.Errorf("load last-used script: %w: %w", ErrUnavailable, err)
	}
	if err := s.loadKeys(ctx, true); err != nil {
		return err
	}
	if err := s.switchAlgorithm(ctx); err != nil {
		return err
	}
	return s.resync(ctx)
}

// Close stops the background work and writes pending last-used times. It
// does not close the Redis client.
func (s *Service) Close() error {
	s.closeOnce.Do(func() {
		s.ready.Store(false)
		s.cancel()
		s.psMu.Lock()
		s.psClosed = true
		s.ps.Close()
		s.psMu.Unlock()
		s.wg.Wait()
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		s.flushLastUsed(ctx)
	})
	return nil
}

// Ready reports whether the signing keys and the revocation state are
// loaded (always, between a successful New and Close).
func (s *Service) Ready() bool { return s.ready.Load() }

// Healthy reports whether Redis answered the last round trip and the
// revocation channel is subscribed. While it is false, tokens already seen
// still verify from memory with the last known revocation state, and
// first-seen tokens get ErrUnavailable unless Config.FailOpen is set; a
// gateway with LLMGATE_FAILSAFE=closed answers 503 to API calls instead.
func (s *Service) Healthy() bool {
	return s.ready.Load() && s.storeOK.Load() && s.subscribed.Load()
}

func (s *Service) channel() string { return s.cfg.Prefix + "tokens:events" }

// storeFailed notes a failed Redis round trip (for Healthy). redis.Nil is
// an answer, not a failure, and a caller's cancelled or expired context
// says nothing about Redis.
func (s *Service) storeFailed(err error) {
	if err == nil || errors.Is(err, redis.Nil) || errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return
	}
	s.storeOK.Store(false)
}

// pubsubSilence is how long the revocation channel may stay silent (no
// message, no answer to our pings every 2s) before its connection is
// considered dead and replaced.
const pubsubSilence = 6 * time.Second

// listen applies revocation events from other replicas (and this one) and
// asks for a resync whenever the subscription is re-established, since
// messages published while it was down are lost.
func (s *Service) listen(ctx context.Context) {
	backoff := 50 * time.Millisecond
	s.heard.Store(time.Now().UnixNano())
	for ctx.Err() == nil {
		s.psMu.Lock()
		ps := s.ps
		s.psMu.Unlock()
		msg, err := ps.ReceiveTimeout(ctx, 2*time.Second)
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			if isTimeout(err) {
				if time.Since(time.Unix(0, s.heard.Load())) > pubsubSilence {
					s.replaceSubscription(ctx)
				} else if err := ps.Ping(ctx); err != nil {
					s.subscribed.Store(false)
				}
				continue
			}
			if s.subscribed.Swap(false) {
				s.log.Warn("revocation channel lost; reconnecting", "err", err)
			}
			select {
			case <-ctx.Done():
				return
			case <-time.After(backoff):
			}
			backoff = min(2*backoff, time.Second)
			continue
		}
		backoff = 50 * time.Millisecond
		s.heard.Store(time.Now().UnixNano())
		switch m := msg.(type) {
		case *redis.Subscription:
			if m.Kind == "subscribe" && !s.subscribed.Swap(true) {
				s.log.Info("revocation channel re-established; resyncing")
				s.requestResync()
			}
		case *redis.Message:
			s.handleEvent(m.Payload)
		case *redis.Pong:
			s.subscribed.Store(true)
		}
	}
}

// replaceSubscription drops a silent pub/sub connection for a new one; its
// confirmation triggers a resync.
func (s *Service) replaceSubscription(ctx context.Context) {
	if s.subscribed.Swap(false) {
		s.log.Warn("revocation channel silent; resubscribing", "silent_for", pubsubSilence)
	}
	s.psMu.Lock()
	defer s.psMu.Unlock()
	if s.psClosed {
		return
	}
	s.ps.Close()
	s.ps = s.rdb.Subscribe(ctx, s.channel())
	s.heard.Store(time.Now().UnixNano())
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.Is(err, os.ErrDeadlineExceeded) || (errors.As(err, &ne) && ne.Timeout())
}

func (s *Service) requestResync() {
	select {
	case s.resyncNow <- struct{}{}:
	default:
	}
}

func (s *Service) requestKeyReload() {
	select {
	case s.keysNow <- struct{}{}:
	default:
	}
}

// maintain runs the periodic work: health ping, last-used writes,
// revocation resync, key reloads and rotation.
func (s *Service) maintain(ctx context.Context) {
	health := time.NewTicker(s.cfg.healthInterval)
	defer health.Stop()
	flush := time.NewTicker(s.cfg.flushInterval)
	defer flush.Stop()
	resync := time.NewTicker(s.cfg.ResyncInterval)
	defer resync.Stop()
	rotate := time.NewTicker(s.cfg.rotationCheckInterval)
	defer rotate.Stop()
	run := func(name string, f func(context.Context) error) {
		ctx, cancel := context.WithTimeout(ctx, opTimeout)
		defer cancel()
		if err := f(ctx); err != nil && ctx.Err() == nil {
			s.log.Warn("token service: "+name, "err", err)
		}
	}
	for {
		select {
		case <-ctx.Done():
			return
		case <-health.C:
			run("ping Redis", s.ping)
		case <-flush.C:
			run("write last-used times", func(ctx context.Context) error { s.flushLastUsed(ctx); return nil })
		case <-resync.C:
			run("resync revocations", s.resync)
		case <-s.resyncNow:
			run("resync revocations", s.resync)
		case <-s.keysNow:
			run("reload signing keys", func(ctx context.Context) error { return s.loadKeys(ctx, false) })
		case <-rotate.C:
			run("rotate signing keys", s.rotate)
		}
	}
}

// ping checks Redis; when it answers again after failing, the revocation
// state is reloaded.
func (s *Service) ping(ctx context.Context) error {
	if err := s.rdb.Ping(ctx).Err(); err != nil {
		s.storeOK.Store(false)
		return fmt.Errorf("%w: %w", ErrUnavailable, err)
	}
	if !s.storeOK.Swap(true) {
		s.log.Info("Redis answers again; resyncing revocations")
		s.requestResync()
	}
	return nil
}
