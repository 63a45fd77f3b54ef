package users

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
)

// opTimeout bounds each background Redis operation.
const opTimeout = 5 * time.Second

// pubsubSilence is how long the sign-in channel may stay silent (no
// message, no answer to our pings every 2s) before its connection is
// considered dead and replaced.
const pubsubSilence = 6 * time.Second

// fullSyncEvery is how often the reload reads every last-login time; the
// reloads in between read only those from syncLookback before the newest
// one known, which covers sign-ins recorded by replicas whose clocks lag.
const (
	fullSyncEvery = 5 * time.Minute
	syncLookback  = 5 * time.Minute
)

// loginEvent is one message on the channel.
type loginEvent struct {
	Email string `json:"e"`
	At    int64  `json:"t"` // unix ms
}

// lastLogins is the in-process copy of users:last-login. Sign-in times only
// move forward and people are never deleted, so every update keeps the
// later time, whatever order events and reloads arrive in.
type lastLogins struct {
	mu     sync.RWMutex
	m      map[string]int64 // email → unix ms
	newest atomic.Int64     // the latest time in m
}

func newLastLogins() *lastLogins { return &lastLogins{m: map[string]int64{}} }

func (l *lastLogins) get(email string) (int64, bool) {
	l.mu.RLock()
	ms, ok := l.m[email]
	l.mu.RUnlock()
	return ms, ok
}

func (l *lastLogins) merge(email string, ms int64) {
	l.mu.Lock()
	l.mergeLocked(email, ms)
	l.mu.Unlock()
}

func (l *lastLogins) mergeLocked(email string, ms int64) {
	if cur, ok := l.m[email]; !ok || ms > cur {
		l.m[email] = ms
	}
	if ms > l.newest.Load() {
		l.newest.Store(ms)
	}
}

func (l *lastLogins) mergeAll(zs []redis.Z) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, z := range zs {
		if e, ok := z.Member.(string); ok {
			l.mergeLocked(e, int64(z.Score))
		}
	}
}

// start subscribes, then loads the whole map, retrying while Redis cannot
// be reached until ctx is done: sign-ins announced after the load are
// received, those before it are in what was loaded.
func (s *Store) start(ctx context.Context) error {
	s.ps = s.rdb.Subscribe(ctx, s.channel())
	subscribed := false
	backoff := 100 * time.Millisecond
	for {
		err := s.startOnce(ctx, &subscribed)
		if err == nil {
			return nil
		}
		if ctx.Err() != nil {
			s.ps.Close()
			return fmt.Errorf("start user store: %w (gave up: %w)", err, ctx.Err())
		}
		s.log.Warn("user store waits for Redis", "err", err, "retry_in", backoff)
		select {
		case <-ctx.Done():
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, 2*time.Second)
	}
}

func (s *Store) startOnce(ctx context.Context, subscribed *bool) error {
	for !*subscribed {
		msg, err := s.ps.ReceiveTimeout(ctx, 2*time.Second)
		if err != nil {
			return fmt.Errorf("subscribe to %s: %w", s.channel(), err)
		}
		if sub, ok := msg.(*redis.Subscription); ok && sub.Kind == "subscribe" {
			*subscribed = true
		}
	}
	return s.reload(ctx, true)
}

// reload reads sign-in times from Redis into the map: all of them, or
// those since syncLookback before the newest known.
func (s *Store) reload(ctx context.Context, full bool) error {
	by := &redis.ZRangeBy{Min: "-inf", Max: "+inf"}
	if !full {
		if newest := s.last.newest.Load(); newest > 0 {
			by.Min = strconv.FormatInt(newest-syncLookback.Milliseconds(), 10)
		}
	}
	zs, err := s.rdb.ZRangeByScoreWithScores(ctx, s.lastLoginKey(), by).Result()
	if err != nil {
		return fmt.Errorf("load last sign-in times: %w", err)
	}
	s.last.mergeAll(zs)
	return nil
}

func (s *Store) requestReload() {
	select {
	case s.reloadNow <- struct{}{}:
	default:
	}
}

// maintain reloads the map every SyncInterval (fully every fullSyncEvery,
// and whenever listen asks).
func (s *Store) maintain(ctx context.Context) {
	tick := time.NewTicker(s.cfg.SyncInterval)
	defer tick.Stop()
	lastFull := time.Now()
	run := func(full bool) {
		ctx, cancel := context.WithTimeout(ctx, opTimeout)
		defer cancel()
		if err := s.reload(ctx, full); err != nil {
			if ctx.Err() == nil {
				s.log.Warn("user store: reload last sign-in times", "err", err)
			}
			return
		}
		if full {
			lastFull = time.Now()
		}
	}
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
			run(time.Since(lastFull) >= fullSyncEvery)
		case <-s.reloadNow:
			run(true)
		}
	}
}

// listen applies sign-ins announced by every replica (this one included)
// and asks for a full reload whenever the subscription is re-established,
// since messages published while it was down are lost.
func (s *Store) listen(ctx context.Context) {
	backoff := 50 * time.Millisecond
	heard := time.Now()
	up := true
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
				if time.Since(heard) > pubsubSilence {
					if up {
						s.log.Warn("sign-in channel silent; resubscribing", "silent_for", pubsubSilence)
					}
					up = false
					s.resubscribe(ctx)
					heard = time.Now()
				} else {
					_ = ps.Ping(ctx)
				}
				continue
			}
			if up {
				s.log.Warn("sign-in channel lost; reconnecting", "err", err)
				up = false
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
		heard = time.Now()
		switch m := msg.(type) {
		case *redis.Subscription:
			if m.Kind == "subscribe" && !up {
				up = true
				s.log.Info("sign-in channel re-established; reloading last sign-in times")
				s.requestReload()
			}
		case *redis.Message:
			var ev loginEvent
			if err := json.Unmarshal([]byte(m.Payload), &ev); err != nil || ev.Email == "" {
				s.log.Warn("ignoring a malformed sign-in event", "err", err)
				continue
			}
			s.last.merge(ev.Email, ev.At)
		case *redis.Pong:
		}
	}
}

// resubscribe drops a silent pub/sub connection for a new one; its
// confirmation triggers a reload.
func (s *Store) resubscribe(ctx context.Context) {
	s.psMu.Lock()
	defer s.psMu.Unlock()
	if s.psClosed {
		return
	}
	s.ps.Close()
	s.ps = s.rdb.Subscribe(ctx, s.channel())
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.Is(err, os.ErrDeadlineExceeded) || (errors.As(err, &ne) && ne.Timeout())
}
