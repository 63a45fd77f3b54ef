package users

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
)

// ErrNotFound is returned for a person who has never signed in.
var ErrNotFound = errors.New("person not found")

// Defaults applied by New to zero Config fields.
const (
	DefaultPrefix = "llmgate:"
	// DefaultRecheckInterval is the default of LLMGATE_USER_RECHECK_INTERVAL.
	// New does not apply it: a zero Config.RecheckInterval means off, and
	// cmd/llmgate applies this default when the variable is unset.
	DefaultRecheckInterval = 24 * time.Hour
	DefaultSyncInterval    = 5 * time.Second
	DefaultLease           = 2 * time.Minute
	// DefaultListLimit is the page size of List when asked for 0 or fewer.
	DefaultListLimit = 100
	// MaxListLimit caps the page size of List.
	MaxListLimit = 1000
)

// Person is someone who has signed in at least once.
type Person struct {
	Email      string    `json:"email"` // lower-cased key
	Name       string    `json:"name"`
	Subject    string    `json:"sub"`
	Issuer     string    `json:"iss"`
	Groups     []string  `json:"groups"`
	Admin      bool      `json:"admin"`
	FirstLogin time.Time `json:"first_login"`
	LastLogin  time.Time `json:"last_login"`
	LastCheck  time.Time `json:"last_check,omitzero"` // last successful re-check at the IdP
}

// Config tunes a Store. Zero fields take the documented defaults.
type Config struct {
	// Prefix starts every key; default "llmgate:".
	Prefix string
	// Secret is LLMGATE_SECRET, at least 32 bytes. The key that encrypts
	// refresh tokens is derived from it with HKDF-SHA-256.
	Secret []byte
	// RecheckInterval is LLMGATE_USER_RECHECK_INTERVAL: how long after a
	// sign-in or a successful re-check a person's refresh token is due
	// again. 0 turns the re-check off: refresh tokens are then not kept and
	// Due returns nothing. (The variable's 24h default,
	// DefaultRecheckInterval, is applied by cmd/llmgate: here 0 is off.)
	RecheckInterval time.Duration
	// SyncInterval is how often the in-process last-login map is reloaded
	// from Redis, in case a pub/sub message was lost; default 5s. A full
	// reload runs every fullSyncEvery, in between only the recent sign-ins
	// are read.
	SyncInterval time.Duration
	// Lease is how long a claim taken by Due lasts; default 2m. The caller
	// must call Checked, Postpone or Forget within it (bound the identity
	// provider call well below it); a claim not settled in time lapses, and
	// the person is due again.
	Lease time.Duration
	// Now is the clock; default time.Now.
	Now func() time.Time
	// Logger receives background errors and skipped people; default discard.
	// It never receives a refresh token.
	Logger *slog.Logger
}

func (c Config) withDefaults() Config {
	if c.Prefix == "" {
		c.Prefix = DefaultPrefix
	}
	if c.SyncInterval == 0 {
		c.SyncInterval = DefaultSyncInterval
	}
	if c.Lease == 0 {
		c.Lease = DefaultLease
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	return c
}

// Validate reports every problem with c (after defaults), each naming its
// variable.
func (c Config) Validate() []error {
	c = c.withDefaults()
	var errs []error
	if len(c.Secret) < 32 {
		errs = append(errs, fmt.Errorf("LLMGATE_SECRET must be at least 32 bytes, got %d", len(c.Secret)))
	}
	if c.RecheckInterval < 0 {
		errs = append(errs, fmt.Errorf("LLMGATE_USER_RECHECK_INTERVAL must not be negative, got %v (0 turns the re-check off)", c.RecheckInterval))
	}
	if c.SyncInterval < 0 {
		errs = append(errs, fmt.Errorf("users: SyncInterval must not be negative, got %v", c.SyncInterval))
	}
	if c.Lease < 0 {
		errs = append(errs, fmt.Errorf("users: Lease must not be negative, got %v", c.Lease))
	}
	return errs
}

// Store keeps the people who have signed in, in Redis, and a copy of their
// last sign-in times in memory. It is safe for concurrent use. Create it
// with New and stop it with Close.
type Store struct {
	rdb  redis.UniversalClient
	cfg  Config
	log  *slog.Logger
	seal *sealer

	last *lastLogins

	claimMu sync.Mutex
	claims  map[string]string // email → value of the claim this Store holds

	psMu      sync.Mutex // guards ps, which listen replaces when it goes silent
	ps        *redis.PubSub
	psClosed  bool
	reloadNow chan struct{}
	cancel    context.CancelFunc
	wg        sync.WaitGroup
	closeOnce sync.Once
}

// Hash fields of users:person:EMAIL.
const (
	fEmail      = "email"
	fName       = "name"
	fSubject    = "sub"
	fIssuer     = "iss"
	fGroups     = "groups"
	fAdmin      = "admin"
	fFirstLogin = "first_login"
	fLastLogin  = "last_login"
	fLastCheck  = "last_check"
	fRefresh    = "rt"
)

func (s *Store) personKey(email string) string { return s.cfg.Prefix + "users:person:" + email }
func (s *Store) indexKey() string              { return s.cfg.Prefix + "users:index" }
func (s *Store) lastLoginKey() string          { return s.cfg.Prefix + "users:last-login" }
func (s *Store) recheckKey() string            { return s.cfg.Prefix + "users:recheck" }
func (s *Store) claimKey(email string) string  { return s.cfg.Prefix + "users:claim:" + email }
func (s *Store) channel() string               { return s.cfg.Prefix + "users:logins" }

// New starts a Store on rdb. It subscribes to the sign-in channel and loads
// the last-login map, retrying while Redis cannot be reached until ctx is
// done; then it keeps the map current in the background (pub/sub and a
// reload every cfg.SyncInterval) until Close. ctx is used only while New
// runs. New returns an error if cfg is invalid.
func New(ctx context.Context, rdb redis.UniversalClient, cfg Config) (*Store, error) {
	if rdb == nil {
		return nil, errors.New("users: nil Redis client")
	}
	cfg = cfg.withDefaults()
	if errs := cfg.Validate(); len(errs) > 0 {
		return nil, fmt.Errorf("users config: %w", errors.Join(errs...))
	}
	seal, err := newSealer(cfg.Secret)
	if err != nil {
		return nil, fmt.Errorf("users: %w", err)
	}
	s := &Store{
		rdb:       rdb,
		cfg:       cfg,
		log:       cfg.Logger,
		seal:      seal,
		last:      newLastLogins(),
		claims:    map[string]string{},
		reloadNow: make(chan struct{}, 1),
	}
	if err := s.start(ctx); err != nil {
		return nil, err
	}
	if cfg.RecheckInterval == 0 {
		s.log.Info("refresh-token re-check is off (LLMGATE_USER_RECHECK_INTERVAL=0): people removed at the identity provider keep their API tokens until back-channel logout or an admin acts")
	}
	bg, cancel := context.WithCancel(context.Background())
	s.cancel = cancel
	s.wg.Add(2)
	go func() { defer s.wg.Done(); s.listen(bg) }()
	go func() { defer s.wg.Done(); s.maintain(bg) }()
	return s, nil
}

// Close stops the background sync. It does not close the Redis client.
// Claims still held lapse after Config.Lease.
func (s *Store) Close() error {
	s.closeOnce.Do(func() {
		if s.cancel != nil {
			s.cancel()
		}
		s.psMu.Lock()
		s.psClosed = true
		if s.ps != nil {
			s.ps.Close()
		}
		s.psMu.Unlock()
		s.wg.Wait()
	})
	return nil
}

func (s *Store) now() time.Time { return s.cfg.Now().UTC() }

func normEmail(email string) string { return strings.ToLower(strings.TrimSpace(email)) }

// Login records a sign-in of p at now: it creates the person or updates
// their name, subject, issuer, groups and admin flag, keeps FirstLogin,
// sets LastLogin, and announces the sign-in so that every replica's
// LastLogin answers it within about a second. p's time fields are ignored;
// the email is lower-cased and must not be empty.
//
// A non-empty refreshToken replaces the one kept (sealed) and schedules the
// next re-check at now+RecheckInterval. An empty one deletes the one kept
// and the schedule: this sign-in's session has no refresh token, and an
// older one, from a grant the person may since have lost, says nothing
// about them now. With the re-check off no refresh token is kept.
func (s *Store) Login(ctx context.Context, p Person, refreshToken string) error {
	p.Email = normEmail(p.Email)
	if p.Email == "" {
		return errors.New("record login: email is empty")
	}
	groups, err := json.Marshal(p.Groups)
	if err != nil {
		return fmt.Errorf("record login: encode groups: %w", err)
	}
	now := s.now()
	var sealed []byte
	keep := refreshToken != "" && s.cfg.RecheckInterval > 0
	if keep {
		if sealed, err = s.seal.seal(p.Email, refreshToken); err != nil {
			return fmt.Errorf("record login: %w", err)
		}
	}
	key := s.personKey(p.Email)
	stamp := now.Format(time.RFC3339Nano)
	admin := "0"
	if p.Admin {
		admin = "1"
	}
	// The person goes first, in its own round trip (on Cluster the pipeline
	// below may reach other nodes in any order): an index never names a
	// person whose hash is still to be written.
	_, err = s.rdb.Pipelined(ctx, func(pl redis.Pipeliner) error {
		pl.HSet(ctx, key, fEmail, p.Email, fName, p.Name, fSubject, p.Subject, fIssuer, p.Issuer,
			fGroups, groups, fAdmin, admin, fLastLogin, stamp)
		pl.HSetNX(ctx, key, fFirstLogin, stamp)
		if keep {
			pl.HSet(ctx, key, fRefresh, sealed)
		} else {
			pl.HDel(ctx, key, fRefresh)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("record login: %w", err)
	}
	ms := now.UnixMilli()
	msg, _ := json.Marshal(loginEvent{Email: p.Email, At: ms})
	_, err = s.rdb.Pipelined(ctx, func(pl redis.Pipeliner) error {
		pl.ZAdd(ctx, s.indexKey(), redis.Z{Member: p.Email})
		pl.ZAddGT(ctx, s.lastLoginKey(), redis.Z{Score: float64(ms), Member: p.Email})
		if keep {
			pl.ZAdd(ctx, s.recheckKey(), redis.Z{Score: float64(now.Add(s.cfg.RecheckInterval).UnixMilli()), Member: p.Email})
		} else {
			pl.ZRem(ctx, s.recheckKey(), p.Email)
		}
		pl.Publish(ctx, s.channel(), msg)
		return nil
	})
	s.last.merge(p.Email, ms)
	if err != nil {
		return fmt.Errorf("record login: index: %w", err)
	}
	return nil
}

// Get returns the person with email (any case). It returns ErrNotFound if
// they have never signed in.
func (s *Store) Get(ctx context.Context, email string) (Person, error) {
	email = normEmail(email)
	if email == "" {
		return Person{}, ErrNotFound
	}
	h, err := s.rdb.HGetAll(ctx, s.personKey(email)).Result()
	if err != nil {
		return Person{}, fmt.Errorf("load person: %w", err)
	}
	p, ok, err := decodePerson(h)
	if err != nil {
		return Person{}, fmt.Errorf("load person %s: %w", email, err)
	}
	if !ok {
		return Person{}, ErrNotFound
	}
	return p, nil
}

// List returns up to limit people in email order, starting after cursor
// (an email; "" for the first page), and the cursor of the next page, ""
// after the last. A limit of 0 or less means DefaultListLimit; more than
// MaxListLimit means MaxListLimit. It reads the index, not the keyspace.
// Email order, rather than most recent sign-in first, because it is
// stable: a sign-in during paging neither skips nor repeats anyone.
func (s *Store) List(ctx context.Context, cursor string, limit int) ([]Person, string, error) {
	if limit <= 0 {
		limit = DefaultListLimit
	}
	limit = min(limit, MaxListLimit)
	start := "-"
	if cursor != "" {
		start = "(" + normEmail(cursor)
	}
	emails, err := s.rdb.ZRangeByLex(ctx, s.indexKey(), &redis.ZRangeBy{Min: start, Max: "+", Count: int64(limit) + 1}).Result()
	if err != nil {
		return nil, "", fmt.Errorf("list people: %w", err)
	}
	next := ""
	if len(emails) > limit {
		emails = emails[:limit]
		next = emails[limit-1]
	}
	if len(emails) == 0 {
		return nil, "", nil
	}
	cmds := make([]*redis.MapStringStringCmd, len(emails))
	_, err = s.rdb.Pipelined(ctx, func(pl redis.Pipeliner) error {
		for i, e := range emails {
			cmds[i] = pl.HGetAll(ctx, s.personKey(e))
		}
		return nil
	})
	if err != nil {
		return nil, "", fmt.Errorf("list people: %w", err)
	}
	list := make([]Person, 0, len(emails))
	for i, c := range cmds {
		p, ok, err := decodePerson(c.Val())
		if err != nil {
			return nil, "", fmt.Errorf("list people: %s: %w", emails[i], err)
		}
		if ok { // else indexed before its hash was written (or lost): skip
			list = append(list, p)
		}
	}
	return list, next, nil
}

// Count returns how many people have signed in.
func (s *Store) Count(ctx context.Context) (int, error) {
	n, err := s.rdb.ZCard(ctx, s.indexKey()).Result()
	if err != nil {
		return 0, fmt.Errorf("count people: %w", err)
	}
	return int(n), nil
}

// LastLogin returns, from memory and without a Redis round trip, when
// email (any case) last signed in, to the millisecond; ok is false if this
// replica knows of no sign-in. A sign-in on another replica is known here
// within about a second (pub/sub), or at the latest after the next reload
// (Config.SyncInterval).
func (s *Store) LastLogin(email string) (time.Time, bool) {
	ms, ok := s.last.get(normEmail(email))
	if !ok {
		return time.Time{}, false
	}
	return time.UnixMilli(ms).UTC(), true
}

// decodePerson reads a person hash; ok is false when it is empty (no such
// person).
func decodePerson(h map[string]string) (p Person, ok bool, err error) {
	if h[fEmail] == "" {
		return Person{}, false, nil
	}
	p = Person{
		Email:   h[fEmail],
		Name:    h[fName],
		Subject: h[fSubject],
		Issuer:  h[fIssuer],
		Admin:   h[fAdmin] == "1",
	}
	if g := h[fGroups]; g != "" {
		if err := json.Unmarshal([]byte(g), &p.Groups); err != nil {
			return Person{}, false, fmt.Errorf("decode groups: %w", err)
		}
	}
	for _, f := range []struct {
		name string
		dst  *time.Time
	}{{fFirstLogin, &p.FirstLogin}, {fLastLogin, &p.LastLogin}, {fLastCheck, &p.LastCheck}} {
		v := h[f.name]
		if v == "" {
			continue
		}
		t, err := time.Parse(time.RFC3339Nano, v)
		if err != nil {
			return Person{}, false, fmt.Errorf("decode %s: %w", f.name, err)
		}
		*f.dst = t.UTC()
	}
	return p, true, nil
}

// msString formats t as Unix milliseconds, a sorted-set score.
func msString(t time.Time) string { return strconv.FormatInt(t.UnixMilli(), 10) }
