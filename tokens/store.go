package tokens

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"
)

// Token records in Redis:
//
//	{prefix}tokens:tok:{id}      HASH meta (Record JSON without the fields
//	                             below), last_used_at, revoked_at (unix ms),
//	                             revoked_by; expires recordRetention after
//	                             the token
//	{prefix}tokens:user:{email}  ZSET id → created (unix ms): the per-user index
//	{prefix}tokens:all           ZSET id → created (unix ms): the admin index
//
// The token string is never stored.

// recordRetention is how long a record outlives its token, so that people
// and admins still see expired tokens for a while.
const recordRetention = 30 * 24 * time.Hour

// listLimit caps List and ListAll.
const listLimit = 1000

func (s *Service) tokKey(id string) string     { return s.cfg.Prefix + "tokens:tok:" + id }
func (s *Service) userKey(email string) string { return s.cfg.Prefix + "tokens:user:" + email }
func (s *Service) allKey() string              { return s.cfg.Prefix + "tokens:all" }

func unavailable(op string, err error) error {
	return fmt.Errorf("%s: %w: %w", op, ErrUnavailable, err)
}

// saveRecord writes a new token's record and index entries in one round trip.
func (s *Service) saveRecord(ctx context.Context, rec Record, now time.Time) error {
	meta, err := json.Marshal(rec)
	if err != nil {
		return fmt.Errorf("save token %s: %w", rec.ID, err)
	}
	created := redis.Z{Score: float64(rec.CreatedAt.UnixMilli()), Member: rec.ID}
	_, err = s.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		p.HSet(ctx, s.tokKey(rec.ID), "meta", meta)
		p.ExpireAt(ctx, s.tokKey(rec.ID), rec.ExpiresAt.Add(recordRetention))
		p.ZAdd(ctx, s.userKey(rec.Email), created)
		// Every token of this person expires before now+MaxTTL.
		p.ExpireAt(ctx, s.userKey(rec.Email), now.Add(s.cfg.MaxTTL+recordRetention))
		p.ZAdd(ctx, s.allKey(), created)
		return nil
	})
	if err != nil {
		s.storeFailed(err)
		return unavailable("save token "+rec.ID, err)
	}
	return nil
}

// parseRecord decodes a record hash; ErrNotFound when it has no meta.
func parseRecord(id string, h map[string]string) (Record, error) {
	meta, ok := h["meta"]
	if !ok {
		return Record{}, fmt.Errorf("token %s: %w", id, ErrNotFound)
	}
	var rec Record
	if err := json.Unmarshal([]byte(meta), &rec); err != nil || rec.ID != id {
		return Record{}, fmt.Errorf("token %s: malformed record", id)
	}
	if ms, err := strconv.ParseInt(h["last_used_at"], 10, 64); err == nil {
		rec.LastUsedAt = time.UnixMilli(ms).UTC()
	}
	if a := h["address"]; a != "" {
		rec.Address = a
	}
	if ms, err := strconv.ParseInt(h["revoked_at"], 10, 64); err == nil {
		rec.RevokedAt = time.UnixMilli(ms).UTC()
		rec.RevokedBy = h["revoked_by"]
	}
	return rec, nil
}

// readRecord reads one record from Redis.
func (s *Service) readRecord(ctx context.Context, id string) (Record, error) {
	h, err := s.rdb.HGetAll(ctx, s.tokKey(id)).Result()
	if err != nil {
		s.storeFailed(err)
		return Record{}, unavailable("read token "+id, err)
	}
	return parseRecord(id, h)
}

// withPending overlays a last-used time not yet written to Redis.
func (s *Service) withPending(rec Record) Record {
	if ms, ok := s.used.get(rec.ID); ok && ms > rec.LastUsedAt.UnixMilli() {
		rec.LastUsedAt = time.UnixMilli(ms).UTC()
	}
	return rec
}

// Get returns the record of token id, or an error wrapping ErrNotFound.
// It does not check ownership: the caller compares Record.Email.
func (s *Service) Get(ctx context.Context, id string) (Record, error) {
	if !validID(id) {
		return Record{}, fmt.Errorf("token %q: %w", id, ErrNotFound)
	}
	rec, err := s.readRecord(ctx, id)
	if err != nil {
		return Record{}, err
	}
	return s.withPending(rec), nil
}

// List returns email's token records, newest first (at most 1000),
// including revoked and expired ones still retained.
func (s *Service) List(ctx context.Context, email string) ([]Record, error) {
	return s.list(ctx, s.userKey(normEmail(email)), listLimit)
}

// ListAll returns every person's token records, newest first, at most
// limit (1000 when limit ≤ 0 or larger).
func (s *Service) ListAll(ctx context.Context, limit int) ([]Record, error) {
	if limit <= 0 || limit > listLimit {
		limit = listLimit
	}
	return s.list(ctx, s.allKey(), limit)
}

func (s *Service) list(ctx context.Context, index string, limit int) ([]Record, error) {
	ids, err := s.rdb.ZRevRange(ctx, index, 0, int64(limit-1)).Result()
	if err != nil {
		s.storeFailed(err)
		return nil, unavailable("list tokens", err)
	}
	if len(ids) == 0 {
		return []Record{}, nil
	}
	cmds := make([]*redis.MapStringStringCmd, len(ids))
	_, err = s.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		for i, id := range ids {
			cmds[i] = p.HGetAll(ctx, s.tokKey(id))
		}
		return nil
	})
	if err != nil {
		s.storeFailed(err)
		return nil, unavailable("list tokens", err)
	}
	out := make([]Record, 0, len(ids))
	var gone []any
	for i, cmd := range cmds {
		rec, err := parseRecord(ids[i], cmd.Val())
		if errors.Is(err, ErrNotFound) {
			gone = append(gone, ids[i])
			continue
		}
		if err != nil {
			s.log.Warn("list tokens: skipping a record", "err", err)
			continue
		}
		out = append(out, s.withPending(rec))
	}
	if len(gone) > 0 { // records expired: drop them from the index
		if err := s.rdb.ZRem(ctx, index, gone...).Err(); err != nil {
			s.storeFailed(err)
		}
	}
	return out, nil
}

// Revoke revokes token id on every replica (within a second) and returns
// its record. Revoking a revoked token changes nothing and is not an
// error. It does not check ownership: the caller compares Record.Email.
func (s *Service) Revoke(ctx context.Context, id, by string) (Record, error) {
	rec, err := s.Get(ctx, id)
	if err != nil {
		return Record{}, fmt.Errorf("revoke: %w", err)
	}
	if !rec.RevokedAt.IsZero() {
		return rec, nil
	}
	revoked, err := s.markRevoked(ctx, []Record{rec}, by)
	if err != nil {
		return Record{}, fmt.Errorf("revoke: %w", err)
	}
	if len(revoked) == 0 { // someone else was quicker
		return s.Get(ctx, id)
	}
	return revoked[0], nil
}

// markRevoked revokes recs in Redis in one round trip, then applies and
// publishes the revocations. It returns the records this call revoked.
func (s *Service) markRevoked(ctx context.Context, recs []Record, by string) ([]Record, error) {
	now := s.now().UTC()
	ms := now.UnixMilli()
	set := make([]*redis.BoolCmd, len(recs))
	_, err := s.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		for i, rec := range recs {
			key := s.tokKey(rec.ID)
			set[i] = p.HSetNX(ctx, key, "revoked_at", ms)
			p.HSetNX(ctx, key, "revoked_by", by)
			p.ExpireAt(ctx, key, rec.ExpiresAt.Add(recordRetention))
			p.ZAdd(ctx, s.revokedKey(), redis.Z{Score: float64(rec.ExpiresAt.Unix()), Member: rec.ID})
		}
		return nil
	})
	if err != nil {
		s.storeFailed(err)
		return nil, unavailable("revoke tokens", err)
	}
	var out []Record
	var events []event
	for i, rec := range recs {
		ev := event{Type: evRevoke, ID: rec.ID, Exp: rec.ExpiresAt.Unix(), By: by}
		s.rev.apply(ev)
		if set[i].Val() {
			rec.RevokedAt = time.UnixMilli(ms).UTC()
			rec.RevokedBy = by
			out = append(out, rec)
			events = append(events, ev)
		}
	}
	// Publish after the writes, so a replica resyncing in between sees them.
	_, err = s.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		for _, ev := range events {
			data, _ := json.Marshal(ev)
			p.Publish(ctx, s.channel(), data)
		}
		return nil
	})
	if err != nil {
		s.storeFailed(err)
		s.log.Warn("publish revocations; other replicas pick them up at their next resync", "err", err)
	}
	return out, nil
}

// RevokeUser stops every token email holds now, on every replica within a
// second: it sets the person's revoke-since cut-off to now (tokens issued
// before it are refused, even ones this call does not find) and marks each
// of their active records revoked. It returns how many records it revoked.
// Tokens issued afterwards work (unless the person is blocked).
func (s *Service) RevokeUser(ctx context.Context, email, by string) (int, error) {
	email = normEmail(email)
	if email == "" {
		return 0, &ValidationError{Field: "email", Message: "email is required"}
	}
	now := s.now()
	ev := event{Type: evRevokeSince, Email: email, At: now.UnixNano(), By: by}
	if err := s.rdb.HSet(ctx, s.sinceKey(), email, ev.At).Err(); err != nil {
		s.storeFailed(err)
		return 0, unavailable("revoke tokens of "+email, err)
	}
	s.rev.apply(ev)
	s.publish(ctx, ev)

	recs, err := s.list(ctx, s.userKey(email), listLimit)
	if err != nil {
		return 0, fmt.Errorf("revoke tokens of %s: %w", email, err)
	}
	var active []Record
	for _, rec := range recs {
		if rec.RevokedAt.IsZero() && now.Before(rec.ExpiresAt.Add(s.cfg.Leeway)) {
			active = append(active, rec)
		}
	}
	if len(active) == 0 {
		return 0, nil
	}
	revoked, err := s.markRevoked(ctx, active, by)
	if err != nil {
		return 0, fmt.Errorf("revoke tokens of %s: %w", email, err)
	}
	return len(revoked), nil
}
