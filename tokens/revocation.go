package tokens

import (
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
)

// Revocation state in Redis:
//
//	{prefix}tokens:revoked        ZSET  jti → exp (unix seconds); pruned after exp
//	{prefix}tokens:blocked        HASH  email → Block JSON
//	{prefix}tokens:revoked_since  HASH  email → cut-off (unix nanoseconds)
//	{prefix}tokens:events         pub/sub channel of event JSON
//
// Every replica holds a copy in a revocations value, loaded at start,
// updated by events, and replaced by a full reload every ResyncInterval and
// whenever the subscription comes back after a disconnect.

const (
	evRevoke      = "revoke"
	evBlock       = "block"
	evUnblock     = "unblock"
	evRevokeSince = "revoke_since"
	evKeys        = "keys"
)

// event is one message on the channel.
type event struct {
	Type  string `json:"t"`
	ID    string `json:"id,omitempty"`
	Exp   int64  `json:"exp,omitempty"` // unix seconds
	Email string `json:"email,omitempty"`
	At    int64  `json:"at,omitempty"` // unix nanoseconds
	By    string `json:"by,omitempty"`
	// Origin is the publishing Service's instance id: a replica has
	// already applied its own block and unblock, and applying their echo
	// late would undo a newer change it made meanwhile.
	Origin string `json:"o,omitempty"`
}

// Block records that a person is blocked.
type Block struct {
	Email string    `json:"email"`
	By    string    `json:"by"`
	At    time.Time `json:"at"`
}

func (s *Service) revokedKey() string { return s.cfg.Prefix + "tokens:revoked" }
func (s *Service) blockedKey() string { return s.cfg.Prefix + "tokens:blocked" }
func (s *Service) sinceKey() string   { return s.cfg.Prefix + "tokens:revoked_since" }

// revocations is the in-process copy of the revocation state.
type revocations struct {
	mu      sync.RWMutex
	jtis    map[string]int64 // revoked jti → exp (unix seconds)
	blocked map[string]Block // email → block
	since   map[string]int64 // email → revoke-since cut-off (unix nanos)

	// While a resync reads Redis, events are also recorded and replayed on
	// the new maps, so an event whose write the read missed is not lost.
	recording bool
	replay    []event
}

func newRevocations() *revocations {
	return &revocations{jtis: map[string]int64{}, blocked: map[string]Block{}, since: map[string]int64{}}
}

// check answers from memory whether a token (jti, owner email, issued at
// unix nanos) is refused. It allocates nothing.
func (r *revocations) check(jti, email string, issued int64) error {
	r.mu.RLock()
	_, blocked := r.blocked[email]
	cut, hasCut := r.since[email]
	_, revoked := r.jtis[jti]
	r.mu.RUnlock()
	switch {
	case blocked:
		return ErrUserBlocked
	case hasCut && issued < cut:
		return ErrUserRevoked
	case revoked:
		return ErrRevoked
	}
	return nil
}

func (r *revocations) isBlocked(email string) bool {
	r.mu.RLock()
	_, ok := r.blocked[email]
	r.mu.RUnlock()
	return ok
}

func (r *revocations) apply(ev event) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.applyLocked(ev)
	if r.recording {
		r.replay = append(r.replay, ev)
	}
}

func (r *revocations) applyLocked(ev event) {
	switch ev.Type {
	case evRevoke:
		if ev.ID != "" {
			r.jtis[ev.ID] = ev.Exp
		}
	case evBlock:
		r.blocked[ev.Email] = Block{Email: ev.Email, By: ev.By, At: time.Unix(0, ev.At).UTC()}
	case evUnblock:
		delete(r.blocked, ev.Email)
	case evRevokeSince:
		if ev.At > r.since[ev.Email] {
			r.since[ev.Email] = ev.At
		}
	}
}

func (r *revocations) startRecording() {
	r.mu.Lock()
	r.recording, r.replay = true, nil
	r.mu.Unlock()
}

func (r *revocations) stopRecording() {
	r.mu.Lock()
	r.recording, r.replay = false, nil
	r.mu.Unlock()
}

// replace installs a fresh snapshot and replays the events received while
// it was read. Revocations and cut-offs are permanent, so the ones already
// known are kept (until they no longer matter: jtis expired before horizon,
// cut-offs older than oldestCut) even when the snapshot lacks them, as
// after a Redis data loss; blocks are taken from the snapshot, since
// Unblock removes them.
func (r *revocations) replace(jtis map[string]int64, blocked map[string]Block, since map[string]int64, horizon, oldestCut int64) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for id, exp := range r.jtis {
		if _, ok := jtis[id]; !ok && exp >= horizon {
			jtis[id] = exp
		}
	}
	for email, at := range r.since {
		if at >= oldestCut && at > since[email] {
			since[email] = at
		}
	}
	r.jtis, r.blocked, r.since = jtis, blocked, since
	for _, ev := range r.replay {
		r.applyLocked(ev)
	}
	r.recording, r.replay = false, nil
}

// handleEvent applies one message from the channel.
func (s *Service) handleEvent(payload string) {
	var ev event
	if err := json.Unmarshal([]byte(payload), &ev); err != nil {
		s.log.Warn("ignoring a malformed revocation event", "err", err)
		return
	}
	if ev.Type == evKeys {
		s.requestKeyReload()
		return
	}
	if (ev.Type == evBlock || ev.Type == evUnblock) && ev.Origin == s.origin {
		return
	}
	s.rev.apply(ev)
}

// publish sends ev to every replica. A lost message is repaired by the
// next resync; the write it announces is already in Redis.
func (s *Service) publish(ctx context.Context, ev event) {
	ev.Origin = s.origin
	data, _ := json.Marshal(ev)
	if err := s.rdb.Publish(ctx, s.channel(), data).Err(); err != nil {
		s.storeFailed(err)
		s.log.Warn("publish revocation event; other replicas pick it up at their next resync", "type", ev.Type, "err", err)
	}
}

// resync reloads the whole revocation state from Redis and prunes entries
// that can no longer matter: revoked jtis past their exp, and revoke-since
// cut-offs older than the longest token lifetime.
func (s *Service) resync(ctx context.Context) error {
	s.resyncMu.Lock()
	defer s.resyncMu.Unlock()
	now := s.now()
	s.rev.startRecording()
	horizon := now.Add(-s.cfg.Leeway - time.Minute).Unix()
	var revoked *redis.ZSliceCmd
	var blocked, since *redis.MapStringStringCmd
	_, err := s.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		p.ZRemRangeByScore(ctx, s.revokedKey(), "-inf", "("+strconv.FormatInt(horizon, 10))
		revoked = p.ZRangeByScoreWithScores(ctx, s.revokedKey(), &redis.ZRangeBy{Min: strconv.FormatInt(horizon, 10), Max: "+inf"})
		blocked = p.HGetAll(ctx, s.blockedKey())
		since = p.HGetAll(ctx, s.sinceKey())
		p.ZRemRangeByScore(ctx, s.allKey(), "-inf", "("+strconv.FormatInt(now.Add(-s.cfg.MaxTTL-recordRetention).UnixMilli(), 10))
		return nil
	})
	if err != nil {
		s.rev.stopRecording()
		s.storeFailed(err)
		return fmt.Errorf("resync revocations: %w: %w", ErrUnavailable, err)
	}
	jtis := make(map[string]int64, len(revoked.Val()))
	for _, z := range revoked.Val() {
		if id, ok := z.Member.(string); ok {
			jtis[id] = int64(z.Score)
		}
	}
	blocks := make(map[string]Block, len(blocked.Val()))
	for email, data := range blocked.Val() {
		b := Block{Email: email}
		if err := json.Unmarshal([]byte(data), &b); err != nil {
			s.log.Warn("malformed block record; treating the person as blocked", "email", email, "err", err)
		}
		b.Email = email
		blocks[email] = b
	}
	cuts := make(map[string]int64, len(since.Val()))
	var stale []string
	oldest := now.Add(-s.cfg.MaxTTL - s.cfg.Leeway).UnixNano()
	for email, v := range since.Val() {
		at, err := strconv.ParseInt(v, 10, 64)
		if err != nil {
			s.log.Warn("malformed revoke-since record; ignoring it", "email", email, "value", v)
			continue
		}
		if at < oldest {
			stale = append(stale, email)
			continue
		}
		cuts[email] = at
	}
	s.rev.replace(jtis, blocks, cuts, horizon, oldest)
	if len(stale) > 0 {
		if err := s.rdb.HDel(ctx, s.sinceKey(), stale...).Err(); err != nil {
			s.storeFailed(err)
		}
	}
	return nil
}

// Block stops every token and session of email at once, on every replica.
// by names the admin, for the record.
func (s *Service) Block(ctx context.Context, email, by string) error {
	email = normEmail(email)
	if email == "" {
		return &ValidationError{Field: "email", Message: "email is required"}
	}
	ev := event{Type: evBlock, Email: email, By: by, At: s.now().UnixNano()}
	data, _ := json.Marshal(Block{Email: email, By: by, At: time.Unix(0, ev.At).UTC()})
	if err := s.rdb.HSet(ctx, s.blockedKey(), email, data).Err(); err != nil {
		s.storeFailed(err)
		return fmt.Errorf("block %s: %w: %w", email, ErrUnavailable, err)
	}
	s.rev.apply(ev)
	s.publish(ctx, ev)
	return nil
}

// Unblock lets email's tokens work again (those not otherwise revoked).
func (s *Service) Unblock(ctx context.Context, email, by string) error {
	email = normEmail(email)
	if email == "" {
		return &ValidationError{Field: "email", Message: "email is required"}
	}
	if err := s.rdb.HDel(ctx, s.blockedKey(), email).Err(); err != nil {
		s.storeFailed(err)
		return fmt.Errorf("unblock %s: %w: %w", email, ErrUnavailable, err)
	}
	ev := event{Type: evUnblock, Email: email, By: by, At: s.now().UnixNano()}
	s.rev.apply(ev)
	s.publish(ctx, ev)
	return nil
}

// Blocked reports, from memory, whether email is blocked.
func (s *Service) Blocked(email string) bool { return s.rev.isBlocked(normEmail(email)) }

// BlockedUsers lists, from memory, every blocked person, by email.
func (s *Service) BlockedUsers() []Block {
	s.rev.mu.RLock()
	out := make([]Block, 0, len(s.rev.blocked))
	for _, b := range s.rev.blocked {
		out = append(out, b)
	}
	s.rev.mu.RUnlock()
	slices.SortFunc(out, func(a, b Block) int { return cmp.Compare(a.Email, b.Email) })
	return out
}

// RevokedSince returns, from memory, email's revoke-since cut-off: tokens
// issued before it are refused. ok is false when there is none.
func (s *Service) RevokedSince(email string) (cutoff time.Time, ok bool) {
	s.rev.mu.RLock()
	at, ok := s.rev.since[normEmail(email)]
	s.rev.mu.RUnlock()
	if !ok {
		return time.Time{}, false
	}
	return time.Unix(0, at).UTC(), true
}
