package users

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"time"

	"github.com/redis/go-redis/v9"
)

// Due is a person whose refresh token is due for a re-check, claimed for
// the caller until Config.Lease has passed or the caller calls Checked,
// Postpone or Forget.
type Due struct {
	Person       Person
	RefreshToken string
}

// releaseScript deletes a claim key only if it still holds our value: one
// key, so Redis Cluster allows it.
var releaseScript = redis.NewScript(`
if redis.call("GET", KEYS[1]) == ARGV[1] then
	return redis.call("DEL", KEYS[1])
end
return 0`)

// Due claims and returns up to limit people whose next re-check is due
// (scheduled at or before now) and who have a refresh token, with the
// token decrypted. Each is claimed for this Store (see the package
// documentation): no other Store gets them from Due until this one calls
// Checked, Postpone or Forget, or Config.Lease passes. Due may return fewer
// than limit while more are due (others claimed them meanwhile); call it
// again later. With the re-check off it returns nothing.
//
// A refresh token that does not decrypt (LLMGATE_SECRET changed, or a
// replica with another secret) is not an error: the person is skipped with
// a logged warning and rescheduled a RecheckInterval later, and the token is
// kept (a replica with the right secret may still use it; the person's next
// sign-in replaces it).
func (s *Store) Due(ctx context.Context, limit int) ([]Due, error) {
	if limit <= 0 || s.cfg.RecheckInterval == 0 {
		return nil, nil
	}
	now := s.now()
	cands, err := s.rdb.ZRangeByScore(ctx, s.recheckKey(), &redis.ZRangeBy{
		Min: "-inf", Max: msString(now), Count: 2 * int64(limit),
	}).Result()
	if err != nil {
		return nil, fmt.Errorf("find people due for re-check: %w", err)
	}
	var out []Due
	for len(cands) > 0 && len(out) < limit {
		n := min(limit-len(out), len(cands))
		got, err := s.claim(ctx, cands[:n], now)
		out = append(out, got...)
		if err != nil {
			return out, fmt.Errorf("claim people due for re-check: %w", err)
		}
		cands = cands[n:]
	}
	return out, nil
}

// claim claims the people in emails that are still due at now and returns
// them. On error it returns those fully claimed so far; claims it could
// not finish are released, or lapse after the lease.
func (s *Store) claim(ctx context.Context, emails []string, now time.Time) ([]Due, error) {
	// 1. Take a lease on each.
	vals := make([]string, len(emails))
	sets := make([]*redis.BoolCmd, len(emails))
	for i := range vals {
		b := make([]byte, 16)
		if _, err := rand.Read(b); err != nil {
			return nil, err
		}
		vals[i] = hex.EncodeToString(b)
	}
	_, err := s.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		for i, e := range emails {
			sets[i] = p.SetNX(ctx, s.claimKey(e), vals[i], s.cfg.Lease)
		}
		return nil
	})
	var won []int
	for i, c := range sets {
		if c.Err() == nil && c.Val() {
			won = append(won, i)
		}
	}
	if err != nil {
		s.releaseAll(emails, vals, won)
		return nil, err
	}
	if len(won) == 0 {
		return nil, nil
	}
	// 2. Still due, now that the lease is ours?
	scores := make([]*redis.FloatCmd, len(won))
	_, err = s.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		for j, i := range won {
			scores[j] = p.ZScore(ctx, s.recheckKey(), emails[i])
		}
		return nil
	})
	if err != nil && !errors.Is(err, redis.Nil) {
		s.releaseAll(emails, vals, won)
		return nil, err
	}
	var due, late []int
	for j, i := range won {
		sc, err := scores[j].Result()
		if err == nil && int64(sc) <= now.UnixMilli() {
			due = append(due, i)
		} else {
			late = append(late, i) // re-checked or unscheduled meanwhile
		}
	}
	s.releaseAll(emails, vals, late)
	if len(due) == 0 {
		return nil, nil
	}
	// 3. Push the schedule past the lease, and read the people.
	leaseEnd := float64(now.Add(s.cfg.Lease).UnixMilli())
	people := make([]*redis.MapStringStringCmd, len(due))
	_, err = s.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		for j, i := range due {
			p.ZAddArgs(ctx, s.recheckKey(), redis.ZAddArgs{XX: true, GT: true, Members: []redis.Z{{Score: leaseEnd, Member: emails[i]}}})
			people[j] = p.HGetAll(ctx, s.personKey(emails[i]))
		}
		return nil
	})
	if err != nil {
		s.releaseAll(emails, vals, due)
		return nil, err
	}
	var out []Due
	for j, i := range due {
		email := emails[i]
		h := people[j].Val()
		p, ok, err := decodePerson(h)
		if err != nil || !ok || h[fRefresh] == "" {
			s.log.Warn("re-check schedule names a person with no record or no refresh token; unscheduling", "email", email, "err", err)
			s.unschedule(ctx, email)
			s.release(ctx, email, vals[i])
			continue
		}
		rt, err := s.seal.open(email, []byte(h[fRefresh]))
		if err != nil {
			s.log.Warn("skipping the re-check of a person whose refresh token does not decrypt; trying again after the re-check interval",
				"email", email, "err", err, "retry_in", s.cfg.RecheckInterval)
			next := float64(now.Add(s.cfg.RecheckInterval).UnixMilli())
			if err := s.rdb.ZAddXX(ctx, s.recheckKey(), redis.Z{Score: next, Member: email}).Err(); err != nil {
				s.log.Warn("reschedule re-check", "email", email, "err", err)
			}
			s.release(ctx, email, vals[i])
			continue
		}
		s.claimMu.Lock()
		s.claims[email] = vals[i]
		s.claimMu.Unlock()
		out = append(out, Due{Person: p, RefreshToken: rt})
	}
	return out, nil
}

// unschedule removes email from the re-check schedule, unless a sign-in has
// stored a refresh token meanwhile (then it stays due).
func (s *Store) unschedule(ctx context.Context, email string) {
	if err := s.rdb.ZRem(ctx, s.recheckKey(), email).Err(); err != nil {
		s.log.Warn("unschedule re-check", "email", email, "err", err)
		return
	}
	has, err := s.rdb.HExists(ctx, s.personKey(email), fRefresh).Result()
	if err == nil && has {
		err = s.rdb.ZAddNX(ctx, s.recheckKey(), redis.Z{Score: float64(s.now().UnixMilli()), Member: email}).Err()
	}
	if err != nil {
		s.log.Warn("unschedule re-check", "email", email, "err", err)
	}
}

// Checked records a successful re-check of email: LastCheck is now, the
// next re-check is at now+RecheckInterval, and newRefreshToken, when not
// empty, replaces the one kept (identity providers that rotate refresh
// tokens hand out a new one at each refresh; pass "" when none came back).
// It releases this Store's claim. It returns ErrNotFound if email has never
// signed in.
func (s *Store) Checked(ctx context.Context, email, newRefreshToken string) error {
	email = normEmail(email)
	if err := s.exists(ctx, email); err != nil {
		s.releaseClaim(ctx, email)
		return fmt.Errorf("record re-check: %w", err)
	}
	now := s.now()
	var sealed []byte
	keep := newRefreshToken != "" && s.cfg.RecheckInterval > 0
	if keep {
		var err error
		if sealed, err = s.seal.seal(email, newRefreshToken); err != nil {
			return fmt.Errorf("record re-check: %w", err)
		}
	}
	_, err := s.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		key := s.personKey(email)
		p.HSet(ctx, key, fLastCheck, now.Format(time.RFC3339Nano))
		if keep {
			p.HSet(ctx, key, fRefresh, sealed)
		}
		if s.cfg.RecheckInterval > 0 {
			p.ZAdd(ctx, s.recheckKey(), redis.Z{Score: float64(now.Add(s.cfg.RecheckInterval).UnixMilli()), Member: email})
		} else {
			p.ZRem(ctx, s.recheckKey(), email)
		}
		return nil
	})
	if err != nil {
		// The claim stays: the person is due again when it lapses.
		return fmt.Errorf("record re-check: %w", err)
	}
	s.releaseClaim(ctx, email)
	return nil
}

// Postpone moves the next re-check of email to now+d, after a transient
// failure at the identity provider, and releases this Store's claim. A
// person without a schedule (no refresh token, or forgotten) stays without.
// It returns ErrNotFound if email has never signed in; d must be positive.
func (s *Store) Postpone(ctx context.Context, email string, d time.Duration) error {
	email = normEmail(email)
	if d <= 0 {
		return fmt.Errorf("postpone re-check: delay %v is not positive", d)
	}
	if err := s.exists(ctx, email); err != nil {
		s.releaseClaim(ctx, email)
		return fmt.Errorf("postpone re-check: %w", err)
	}
	next := float64(s.now().Add(d).UnixMilli())
	if err := s.rdb.ZAddXX(ctx, s.recheckKey(), redis.Z{Score: next, Member: email}).Err(); err != nil {
		return fmt.Errorf("postpone re-check: %w", err)
	}
	s.releaseClaim(ctx, email)
	return nil
}

// Forget drops the refresh token of email and its re-check schedule, after
// the identity provider refused it (deprovisioned), and releases this
// Store's claim. The person stays, for the users view, with LastLogin
// unchanged; their next sign-in schedules them again. It returns
// ErrNotFound if email has never signed in.
func (s *Store) Forget(ctx context.Context, email string) error {
	email = normEmail(email)
	if err := s.exists(ctx, email); err != nil {
		s.releaseClaim(ctx, email)
		return fmt.Errorf("forget refresh token: %w", err)
	}
	_, err := s.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		p.HDel(ctx, s.personKey(email), fRefresh)
		p.ZRem(ctx, s.recheckKey(), email)
		return nil
	})
	if err != nil {
		return fmt.Errorf("forget refresh token: %w", err)
	}
	s.releaseClaim(ctx, email)
	return nil
}

// exists returns ErrNotFound unless email has a person record.
func (s *Store) exists(ctx context.Context, email string) error {
	if email == "" {
		return ErrNotFound
	}
	n, err := s.rdb.Exists(ctx, s.personKey(email)).Result()
	if err != nil {
		return err
	}
	if n == 0 {
		return ErrNotFound
	}
	return nil
}

// releaseClaim releases the claim this Store holds on email, if any.
func (s *Store) releaseClaim(ctx context.Context, email string) {
	s.claimMu.Lock()
	val, ok := s.claims[email]
	delete(s.claims, email)
	s.claimMu.Unlock()
	if ok {
		s.release(ctx, email, val)
	}
}

// release deletes the claim on email if it still holds val. A failure is
// logged: the claim then lapses after the lease.
func (s *Store) release(ctx context.Context, email, val string) {
	if err := releaseScript.Run(ctx, s.rdb, []string{s.claimKey(email)}, val).Err(); err != nil {
		s.log.Warn("release re-check claim; it lapses after the lease", "email", email, "err", err)
	}
}

// releaseAll releases the claims of emails[i] for each i in idx, on a
// context of its own (the caller's may be what failed).
func (s *Store) releaseAll(emails, vals []string, idx []int) {
	if len(idx) == 0 {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), opTimeout)
	defer cancel()
	for _, i := range idx {
		s.release(ctx, emails[i], vals[i])
	}
}
