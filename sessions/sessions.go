package sessions

import (
	"cmp"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

// ErrNotFound is returned for a session that is unknown, past its ExpiresAt,
// or idle longer than the idle timeout, and for an unknown, used or expired
// login flow.
var ErrNotFound = errors.New("session not found")

// Defaults applied by New to zero Config fields.
const (
	DefaultPrefix        = "llmgate:"
	DefaultTTL           = 24 * time.Hour
	DefaultIdleTimeout   = 8 * time.Hour
	DefaultTouchInterval = time.Minute
)

// idBytes is the entropy of a session ID: 256 bits.
const idBytes = 32

// idLen is the length of an ID: idBytes in unpadded base64url.
var idLen = base64.RawURLEncoding.EncodedLen(idBytes)

// Session is one signed-in browser.
type Session struct {
	// ID is the opaque cookie value: 256 bits from crypto/rand, base64url.
	// Create sets it and Get echoes it; it is never stored, so sessions
	// read back by handle or email have it empty.
	ID string `json:"-"`
	// Handle is the hex SHA-256 of ID and names the session in Redis. It is
	// safe to show admins and to delete by: it cannot be used as a cookie.
	Handle string `json:"handle"`
	// Email is stored lower-cased.
	Email   string   `json:"email"`
	Subject string   `json:"sub"`
	Name    string   `json:"name"`
	Groups  []string `json:"groups"`
	Admin   bool     `json:"admin"`
	Issuer  string   `json:"iss"`
	// IDPSessionID is the identity provider's sid, for back-channel logout.
	IDPSessionID string `json:"sid,omitempty"`
	// IDTokenHint is the raw ID token, for RP-initiated logout.
	IDTokenHint string    `json:"id_token_hint,omitempty"`
	IP          string    `json:"ip,omitempty"`
	UserAgent   string    `json:"user_agent,omitempty"`
	CreatedAt   time.Time `json:"created_at"`
	// ExpiresAt is the absolute end of the session: CreatedAt + TTL.
	ExpiresAt time.Time `json:"expires_at"`
	// LastSeenAt is when the session was last used, to within the touch
	// interval.
	LastSeenAt time.Time `json:"last_seen_at"`
}

// Config tunes a Store. Zero fields take the documented defaults.
type Config struct {
	// Prefix starts every key; default "llmgate:".
	Prefix string
	// TTL is the absolute lifetime of a session; default 24h
	// (LLMGATE_SESSION_TTL).
	TTL time.Duration
	// IdleTimeout ends a session not used for this long; default 8h
	// (LLMGATE_SESSION_IDLE_TIMEOUT). It never extends a session past its
	// ExpiresAt, and values above TTL act as TTL.
	IdleTimeout time.Duration
	// TouchInterval is how often, at most, Get writes LastSeenAt and slides
	// the idle window; default 1m. It is capped at IdleTimeout/2 so that an
	// active session cannot idle out. Because LastSeenAt lags by up to this
	// much, a session may idle out up to TouchInterval early.
	TouchInterval time.Duration
	// Now is the clock; default time.Now.
	Now func() time.Time
}

// Store keeps sessions and pending logins in Redis.
type Store struct {
	rdb redis.UniversalClient
	cfg Config
}

// New returns a Store on rdb, filling zero fields of cfg with defaults.
func New(rdb redis.UniversalClient, cfg Config) *Store {
	if cfg.Prefix == "" {
		cfg.Prefix = DefaultPrefix
	}
	if cfg.TTL <= 0 {
		cfg.TTL = DefaultTTL
	}
	if cfg.IdleTimeout <= 0 {
		cfg.IdleTimeout = DefaultIdleTimeout
	}
	cfg.IdleTimeout = min(cfg.IdleTimeout, cfg.TTL)
	if cfg.TouchInterval <= 0 {
		cfg.TouchInterval = DefaultTouchInterval
	}
	cfg.TouchInterval = min(cfg.TouchInterval, cfg.IdleTimeout/2)
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	return &Store{rdb: rdb, cfg: cfg}
}

// Create stores a new session for the person described by sess and returns
// it with a fresh random ID (a new one at every login, so a session cannot
// be fixated), its Handle, CreatedAt, ExpiresAt and LastSeenAt; whatever sess
// held in those fields is ignored. The email is lower-cased and must not be
// empty. The session is added to its owner's index and, when IDPSessionID is
// set, to the index of that identity provider session (Issuer, IDPSessionID)
// that DeleteByIDPSession reads.
func (s *Store) Create(ctx context.Context, sess Session) (Session, error) {
	sess.Email = normEmail(sess.Email)
	if sess.Email == "" {
		return Session{}, errors.New("create session: email is empty")
	}
	id, err := newID()
	if err != nil {
		return Session{}, fmt.Errorf("create session: %w", err)
	}
	sess.ID = id
	sess.Handle = handleOf(id)
	now := s.now()
	sess.CreatedAt = now
	sess.LastSeenAt = now
	sess.ExpiresAt = now.Add(s.cfg.TTL)
	val, err := json.Marshal(sess)
	if err != nil {
		return Session{}, fmt.Errorf("create session: encode: %w", err)
	}
	// The session key goes first, in its own round trip: the index must never
	// hold a handle whose key is still to be written, or ListByEmail could
	// drop it as stale and DeleteByEmail would then miss a live session. If
	// the index write fails the caller gets an error and never learns the
	// ID, so the unindexed session is unusable.
	if err := s.rdb.Set(ctx, s.sessionKey(sess.Handle), val, s.keyTTL(sess, now)).Err(); err != nil {
		return Session{}, fmt.Errorf("create session: %w", err)
	}
	idx := s.userKey(sess.Email)
	life := strconv.FormatInt(max(s.cfg.TTL.Milliseconds(), 1), 10)
	_, err = s.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		p.ZRemRangeByScore(ctx, idx, "-inf", s.before(now))
		p.ZAdd(ctx, idx, redis.Z{Score: score(sess.ExpiresAt), Member: sess.Handle})
		// The index lives as long as its longest session: NX sets a TTL on a
		// new index, GT extends an existing one.
		p.Do(ctx, "PEXPIRE", idx, life, "NX")
		p.Do(ctx, "PEXPIRE", idx, life, "GT")
		p.SAdd(ctx, s.usersKey(), sess.Email)
		if sess.IDPSessionID != "" {
			sidx := s.idpSessionKey(sess.Issuer, sess.IDPSessionID)
			p.ZRemRangeByScore(ctx, sidx, "-inf", s.before(now))
			p.ZAdd(ctx, sidx, redis.Z{Score: score(sess.ExpiresAt), Member: sess.Handle})
			p.Do(ctx, "PEXPIRE", sidx, life, "NX")
			p.Do(ctx, "PEXPIRE", sidx, life, "GT")
		}
		return nil
	})
	if err != nil {
		return Session{}, fmt.Errorf("create session: index: %w", err)
	}
	return sess, nil
}

// Get returns the session whose cookie value is id, with ID set to id. It
// returns ErrNotFound if the session is unknown, past its ExpiresAt, or idle
// for IdleTimeout or longer. When LastSeenAt is older than TouchInterval, Get
// records the use and slides the idle window (one extra round trip); it
// returns ErrNotFound if the session was deleted meanwhile.
func (s *Store) Get(ctx context.Context, id string) (Session, error) {
	if !validID(id) {
		return Session{}, ErrNotFound
	}
	handle := handleOf(id)
	key := s.sessionKey(handle)
	val, err := s.rdb.Get(ctx, key).Bytes()
	if errors.Is(err, redis.Nil) {
		return Session{}, ErrNotFound
	}
	if err != nil {
		return Session{}, fmt.Errorf("load session: %w", err)
	}
	var sess Session
	if err := json.Unmarshal(val, &sess); err != nil {
		return Session{}, fmt.Errorf("load session: decode: %w", err)
	}
	now := s.now()
	if !s.live(sess, now) {
		return Session{}, ErrNotFound
	}
	sess.ID = id
	sess.Handle = handle
	if now.Sub(sess.LastSeenAt) < s.cfg.TouchInterval {
		return sess, nil
	}
	sess.LastSeenAt = now
	val, err = json.Marshal(sess)
	if err != nil {
		return Session{}, fmt.Errorf("touch session: encode: %w", err)
	}
	// XX: a session deleted since the GET must stay deleted.
	ok, err := s.rdb.SetXX(ctx, key, val, s.keyTTL(sess, now)).Result()
	if err != nil {
		return Session{}, fmt.Errorf("touch session: %w", err)
	}
	if !ok {
		return Session{}, ErrNotFound
	}
	return sess, nil
}

// Delete ends the session whose cookie value is id. Deleting a session that
// does not exist is not an error.
func (s *Store) Delete(ctx context.Context, id string) error {
	if !validID(id) {
		return nil
	}
	if _, err := s.deleteHandle(ctx, handleOf(id)); err != nil && !errors.Is(err, ErrNotFound) {
		return err
	}
	return nil
}

// DeleteHandle ends the session with the given handle (an admin's
// force-logout) and returns it, without ID. It returns ErrNotFound if there
// is no such session.
func (s *Store) DeleteHandle(ctx context.Context, handle string) (Session, error) {
	if !validHandle(handle) {
		return Session{}, ErrNotFound
	}
	return s.deleteHandle(ctx, handle)
}

func (s *Store) deleteHandle(ctx context.Context, handle string) (Session, error) {
	val, err := s.rdb.GetDel(ctx, s.sessionKey(handle)).Bytes()
	if errors.Is(err, redis.Nil) {
		return Session{}, ErrNotFound
	}
	if err != nil {
		return Session{}, fmt.Errorf("delete session: %w", err)
	}
	var sess Session
	if err := json.Unmarshal(val, &sess); err != nil {
		// The key is gone; its index entry is dropped by the next ListByEmail.
		return Session{}, fmt.Errorf("delete session: decode: %w", err)
	}
	sess.Handle = handle
	_, err = s.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		p.ZRem(ctx, s.userKey(sess.Email), handle)
		if sess.IDPSessionID != "" {
			p.ZRem(ctx, s.idpSessionKey(sess.Issuer, sess.IDPSessionID), handle)
		}
		return nil
	})
	if err != nil {
		return Session{}, fmt.Errorf("delete session: index: %w", err)
	}
	return sess, nil
}

// ListByEmail returns the live sessions of one person, newest first, without
// IDs. Index entries whose session has expired or vanished are removed as it
// goes. A person with no sessions has none, and no error.
func (s *Store) ListByEmail(ctx context.Context, email string) ([]Session, error) {
	email = normEmail(email)
	idx := s.userKey(email)
	now := s.now()
	var rng *redis.StringSliceCmd
	_, err := s.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		p.ZRemRangeByScore(ctx, idx, "-inf", s.before(now))
		rng = p.ZRange(ctx, idx, 0, -1)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("list sessions: %w", err)
	}
	handles := rng.Val()
	if len(handles) == 0 {
		return nil, nil
	}
	gets := make([]*redis.StringCmd, len(handles))
	_, err = s.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		for i, h := range handles {
			gets[i] = p.Get(ctx, s.sessionKey(h))
		}
		return nil
	})
	if err != nil && !errors.Is(err, redis.Nil) {
		return nil, fmt.Errorf("list sessions: %w", err)
	}
	var list []Session
	var stale []any
	for i, g := range gets {
		val, err := g.Bytes()
		if errors.Is(err, redis.Nil) {
			stale = append(stale, handles[i])
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("list sessions: %w", err)
		}
		var sess Session
		if err := json.Unmarshal(val, &sess); err != nil {
			return nil, fmt.Errorf("list sessions: decode %s: %w", handles[i], err)
		}
		// A key Redis still holds but the clock calls expired stays indexed,
		// so DeleteByEmail still reaches it; it is just not listed.
		if !s.live(sess, now) {
			continue
		}
		sess.Handle = handles[i]
		list = append(list, sess)
	}
	if len(stale) > 0 {
		if err := s.rdb.ZRem(ctx, idx, stale...).Err(); err != nil {
			return nil, fmt.Errorf("list sessions: prune index: %w", err)
		}
	}
	slices.SortFunc(list, func(a, b Session) int {
		if c := b.CreatedAt.Compare(a.CreatedAt); c != 0 {
			return c
		}
		return cmp.Compare(a.Handle, b.Handle)
	})
	return list, nil
}

// DeleteByEmail ends every session of one person and returns how many
// existed.
func (s *Store) DeleteByEmail(ctx context.Context, email string) (int, error) {
	email = normEmail(email)
	idx := s.userKey(email)
	handles, err := s.rdb.ZRange(ctx, idx, 0, -1).Result()
	if err != nil {
		return 0, fmt.Errorf("delete user sessions: %w", err)
	}
	if len(handles) == 0 {
		return 0, s.forgetIfEmpty(ctx, []string{email})
	}
	dels := make([]*redis.IntCmd, len(handles))
	_, err = s.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		for i, h := range handles {
			dels[i] = p.Del(ctx, s.sessionKey(h))
		}
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("delete user sessions: %w", err)
	}
	n := 0
	for _, d := range dels {
		n += int(d.Val())
	}
	// Only the handles just deleted leave the index: a login racing with
	// this call keeps its entry.
	members := make([]any, len(handles))
	for i, h := range handles {
		members[i] = h
	}
	if err := s.rdb.ZRem(ctx, idx, members...).Err(); err != nil {
		return n, fmt.Errorf("delete user sessions: index: %w", err)
	}
	if err := s.forgetIfEmpty(ctx, []string{email}); err != nil {
		return n, fmt.Errorf("delete user sessions: %w", err)
	}
	return n, nil
}

// Emails returns, sorted, every email with at least one unexpired index
// entry, removing the others from the set of users. It reads that set, not
// the keyspace (no KEYS or SCAN).
func (s *Store) Emails(ctx context.Context) ([]string, error) {
	all, err := s.rdb.SMembers(ctx, s.usersKey()).Result()
	if err != nil {
		return nil, fmt.Errorf("list session users: %w", err)
	}
	if len(all) == 0 {
		return nil, nil
	}
	now := s.now()
	cards := make([]*redis.IntCmd, len(all))
	_, err = s.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		for i, e := range all {
			idx := s.userKey(e)
			p.ZRemRangeByScore(ctx, idx, "-inf", s.before(now))
			cards[i] = p.ZCard(ctx, idx)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("list session users: %w", err)
	}
	var live, empty []string
	for i, c := range cards {
		if c.Val() > 0 {
			live = append(live, all[i])
		} else {
			empty = append(empty, all[i])
		}
	}
	if err := s.forgetIfEmpty(ctx, empty); err != nil {
		return nil, fmt.Errorf("list session users: %w", err)
	}
	slices.Sort(live)
	return live, nil
}

// forgetIfEmpty removes from the set of users those emails whose index is
// empty. A login may add an entry between the check and the removal, so the
// indexes are checked again afterwards and such emails put back.
func (s *Store) forgetIfEmpty(ctx context.Context, emails []string) error {
	if len(emails) == 0 {
		return nil
	}
	check := func() ([]string, []string, error) {
		cards := make([]*redis.IntCmd, len(emails))
		_, err := s.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
			for i, e := range emails {
				cards[i] = p.ZCard(ctx, s.userKey(e))
			}
			return nil
		})
		if err != nil {
			return nil, nil, err
		}
		var empty, full []string
		for i, c := range cards {
			if c.Val() == 0 {
				empty = append(empty, emails[i])
			} else {
				full = append(full, emails[i])
			}
		}
		return empty, full, nil
	}
	empty, _, err := check()
	if err != nil {
		return fmt.Errorf("prune users: %w", err)
	}
	if len(empty) == 0 {
		return nil
	}
	if err := s.rdb.SRem(ctx, s.usersKey(), anys(empty)...).Err(); err != nil {
		return fmt.Errorf("prune users: %w", err)
	}
	emails = empty
	_, full, err := check()
	if err != nil {
		return fmt.Errorf("prune users: %w", err)
	}
	if len(full) > 0 {
		if err := s.rdb.SAdd(ctx, s.usersKey(), anys(full)...).Err(); err != nil {
			return fmt.Errorf("prune users: %w", err)
		}
	}
	return nil
}

// live reports whether sess may still be used at now.
func (s *Store) live(sess Session, now time.Time) bool {
	return now.Before(sess.ExpiresAt) && now.Sub(sess.LastSeenAt) < s.cfg.IdleTimeout
}

// keyTTL is the Redis TTL of sess written at now: the idle window, cut
// short by the absolute expiry.
func (s *Store) keyTTL(sess Session, now time.Time) time.Duration {
	return max(min(s.cfg.IdleTimeout, sess.ExpiresAt.Sub(now)), time.Millisecond)
}

// now is the clock in UTC, without monotonic reading, as stored.
func (s *Store) now() time.Time { return s.cfg.Now().UTC() }

// before is the exclusive upper bound of the index scores of sessions that
// have certainly expired at now (ExpiresAt truncated to a millisecond before
// now's millisecond).
func (s *Store) before(now time.Time) string {
	return "(" + strconv.FormatInt(now.UnixMilli(), 10)
}

func (s *Store) sessionKey(handle string) string { return s.cfg.Prefix + "session:" + handle }
func (s *Store) userKey(email string) string     { return s.cfg.Prefix + "user-sessions:" + email }
func (s *Store) usersKey() string                { return s.cfg.Prefix + "session-users" }

// score is an index score: the absolute expiry in Unix milliseconds.
func score(t time.Time) float64 { return float64(t.UnixMilli()) }

func normEmail(email string) string { return strings.ToLower(strings.TrimSpace(email)) }

// newID returns a fresh session ID.
func newID() (string, error) {
	b := make([]byte, idBytes)
	if _, err := rand.Read(b); err != nil {
		return "", fmt.Errorf("random id: %w", err)
	}
	return base64.RawURLEncoding.EncodeToString(b), nil
}

// handleOf returns the handle of a session ID, or the key of a login state.
func handleOf(id string) string {
	sum := sha256.Sum256([]byte(id))
	return hex.EncodeToString(sum[:])
}

// validID reports whether id can be a session ID, sparing Redis the
// garbage cookies.
func validID(id string) bool {
	if len(id) != idLen {
		return false
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-' || c == '_') {
			return false
		}
	}
	return true
}

// validHandle reports whether h can be a handle: 64 lower-case hex digits.
func validHandle(h string) bool {
	if len(h) != 2*sha256.Size {
		return false
	}
	for i := 0; i < len(h); i++ {
		c := h[i]
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f') {
			return false
		}
	}
	return true
}

func anys(ss []string) []any {
	out := make([]any, len(ss))
	for i, s := range ss {
		out[i] = s
	}
	return out
}
