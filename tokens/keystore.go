package tokens

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"time"
)

// Signing keys live in one Redis hash, {prefix}tokens:keys, field = the
// key's generation (1, 2, …), value = keyRecord JSON. A generation is
// written with HSETNX, so replicas racing to create the first key or the
// next one agree on a single winner.

func (s *Service) keysKey() string { return s.cfg.Prefix + "tokens:keys" }

// loadKeys reads every stored key and installs a new keyring. On the first
// load (initial) an empty store gets its first key; a key that does not
// decrypt fails the load with ErrWrongSecret. Later loads skip (and log)
// such keys, keeping the ones they can use.
func (s *Service) loadKeys(ctx context.Context, initial bool) error {
	s.keyMu.Lock()
	defer s.keyMu.Unlock()
	return s.loadKeysLocked(ctx, initial)
}

func (s *Service) loadKeysLocked(ctx context.Context, initial bool) error {
	now := s.now()
	s.lastKeyLoad.Store(now.UnixNano())
	stored, err := s.rdb.HGetAll(ctx, s.keysKey()).Result()
	if err != nil {
		s.storeFailed(err)
		return fmt.Errorf("load signing keys: %w: %w", ErrUnavailable, err)
	}
	if len(stored) == 0 {
		if !initial {
			s.log.Warn("token signing keys are gone from Redis; creating a new one: earlier API tokens stop working", "key", s.keysKey())
		}
		if _, err := s.createKey(ctx, 1, s.cfg.Algorithm, now); err != nil {
			return err
		}
		if stored, err = s.rdb.HGetAll(ctx, s.keysKey()).Result(); err != nil {
			s.storeFailed(err)
			return fmt.Errorf("load signing keys: %w: %w", ErrUnavailable, err)
		}
	}
	old := s.ring.Load()
	keys := make([]*signingKey, 0, len(stored))
	for field, data := range stored {
		var rec keyRecord
		if err := json.Unmarshal([]byte(data), &rec); err != nil || strconv.Itoa(rec.Gen) != field {
			err = fmt.Errorf("load signing keys: %s field %s is not a key record", s.keysKey(), field)
			if initial {
				return err
			}
			s.log.Error("skipping a stored signing key", "err", err)
			continue
		}
		if old != nil {
			if k := old.byKid[rec.Kid]; k != nil && k.gen == rec.Gen {
				keys = append(keys, k)
				continue
			}
		}
		k, err := s.seal.open(&rec)
		if err != nil {
			if errors.Is(err, ErrWrongSecret) {
				err = fmt.Errorf("load signing keys from %s: %w; restore the secret they were created with, or delete that key to start over (every API token issued so far stops working)", s.keysKey(), err)
			}
			if initial {
				return err
			}
			s.log.Error("skipping a stored signing key", "err", err)
			continue
		}
		keys = append(keys, k)
	}
	if len(keys) == 0 {
		return fmt.Errorf("load signing keys: no usable key in %s", s.keysKey())
	}
	ring, err := s.newKeyring(keys, now)
	if err != nil {
		return err
	}
	s.ring.Store(ring)
	if old != nil {
		// A key gone from the store (retired, or lost with Redis's data)
		// takes the tokens it signed out of the cache.
		gone := map[string]bool{}
		for kid := range old.byKid {
			if ring.byKid[kid] == nil {
				gone[kid] = true
			}
		}
		if len(gone) > 0 {
			s.cache.purge(func(e *cacheEntry) bool { return gone[e.claims.kid] })
		}
	}
	return nil
}

// createKey stores a new key of generation gen unless one exists already.
// It reports whether this call created it.
func (s *Service) createKey(ctx context.Context, gen int, alg string, activates time.Time) (bool, error) {
	rec, _, err := s.seal.newKeyRecord(gen, alg, s.now(), activates)
	if err != nil {
		return false, err
	}
	data, err := json.Marshal(rec)
	if err != nil {
		return false, fmt.Errorf("store signing key: %w", err)
	}
	ok, err := s.rdb.HSetNX(ctx, s.keysKey(), strconv.Itoa(gen), data).Result()
	if err != nil {
		s.storeFailed(err)
		return false, fmt.Errorf("store signing key: %w: %w", ErrUnavailable, err)
	}
	if ok {
		s.log.Info("created token signing key", "gen", gen, "kid", rec.Kid, "alg", alg, "activates_at", rec.ActivatesAt)
	}
	return ok, nil
}

// rotationLead is how long before it signs anything a new key is published
// (in the JWKS of every replica), so that caches of the JWKS elsewhere have
// time to pick it up.
func (s *Service) rotationLead() time.Duration { return min(s.cfg.Rotation/4, 24*time.Hour) }

// rotate makes the next key when the newest one is due for rotation,
// deletes keys whose tokens have all expired, and reloads the ring (which
// also drops retired keys from the JWKS). Replicas learn of a change by
// pub/sub and, failing that, by the next resync or rotation check.
func (s *Service) rotate(ctx context.Context) error {
	s.keyMu.Lock()
	defer s.keyMu.Unlock()
	ring := s.ring.Load()
	now := s.now()
	changed := false
	if newest := ring.newest(); !newest.activatesAt.After(now) {
		due := newest.activatesAt.Add(s.cfg.Rotation)
		if !now.Before(due.Add(-s.rotationLead())) {
			activates := due
			if activates.Before(now) { // overdue (no replica ran): at once
				activates = now
			}
			created, err := s.createKey(ctx, newest.gen+1, s.cfg.Algorithm, activates)
			if err != nil {
				return fmt.Errorf("rotate signing keys: %w", err)
			}
			changed = changed || created
		}
	}
	var retired []string
	for _, k := range ring.keys {
		if k.retired(now) {
			retired = append(retired, strconv.Itoa(k.gen))
		}
	}
	if len(retired) > 0 {
		if err := s.rdb.HDel(ctx, s.keysKey(), retired...).Err(); err != nil {
			s.storeFailed(err)
			return fmt.Errorf("rotate signing keys: delete retired keys: %w: %w", ErrUnavailable, err)
		}
		s.log.Info("deleted retired token signing keys", "gens", retired)
		changed = true
	}
	if err := s.loadKeysLocked(ctx, false); err != nil {
		return fmt.Errorf("rotate signing keys: %w", err)
	}
	if changed {
		s.publish(ctx, event{Type: evKeys})
	}
	return nil
}

// switchAlgorithm makes a key of the configured algorithm, active at once,
// when the newest stored key has another one (Config.Algorithm changed).
func (s *Service) switchAlgorithm(ctx context.Context) error {
	s.keyMu.Lock()
	defer s.keyMu.Unlock()
	newest := s.ring.Load().newest()
	if string(newest.alg) == s.cfg.Algorithm {
		return nil
	}
	if _, err := s.createKey(ctx, newest.gen+1, s.cfg.Algorithm, s.now()); err != nil {
		return fmt.Errorf("switch signing algorithm: %w", err)
	}
	if err := s.loadKeysLocked(ctx, false); err != nil {
		return fmt.Errorf("switch signing algorithm: %w", err)
	}
	s.publish(ctx, event{Type: evKeys})
	return nil
}

// reloadForUnknownKid reloads the keys when a token names a kid this
// replica does not know (another replica may just have rotated). It first
// waits for a load already under way (a rotation event being applied),
// then reloads at most once a second, so that forged kids cannot make
// every request hit Redis.
func (s *Service) reloadForUnknownKid(ctx context.Context, kid string) *signingKey {
	s.keyMu.Lock()
	defer s.keyMu.Unlock()
	if k := s.ring.Load().byKid[kid]; k != nil {
		return k
	}
	now := s.now().UnixNano()
	if now-s.lastKeyLoad.Load() < int64(time.Second) {
		return nil
	}
	if err := s.loadKeysLocked(ctx, false); err != nil {
		s.log.Warn("reload signing keys for an unknown kid", "err", err)
		return nil
	}
	return s.ring.Load().byKid[kid]
}

// JWKS returns the public keys as a JWK Set (RFC 7517): the current key,
// a next key published ahead of use, and retired keys until every token
// they signed has expired. The bytes are shared: do not modify them.
func (s *Service) JWKS() []byte {
	ring := s.ring.Load()
	if ring == nil {
		return []byte(`{"keys":[]}`)
	}
	return ring.jwks
}
