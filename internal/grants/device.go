package grants

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

// Device grants in Redis:
//
//	{prefix}grants:device:{sha256(device_code)}  HASH d (Device JSON), status,
//	                                       exp, interval, last_poll (unix ms),
//	                                       approver (Person JSON), decided_at;
//	                                       expires expiredGrace after the grant
//	{prefix}grants:user_code:{USERCODE}    STRING sha256(device_code); expires
//	                                       with the grant
//
// The device code itself is never stored.

// Statuses of a device grant.
const (
	StatusPending  = "pending"
	StatusApproved = "approved"
	StatusDenied   = "denied"
	// statusTaken: a poll is turning the approval into a token.
	statusTaken = "taken"
)

// UserCodeAlphabet is the alphabet of user codes: 20 consonants, no vowels
// (no words) and nothing that looks like a digit.
const UserCodeAlphabet = "BCDFGHJKLMNPQRSTVWXZ"

// userCodeLen is the length of a user code: 20^8 ≈ 2.6·10^10 codes.
const userCodeLen = 8

// Device is one device grant: what asked for it and, once decided, who
// decided.
type Device struct {
	// ClientID and Surface say what is asking ("llmgate-cli", or
	// "claude-code" with surface "claude_code").
	ClientID string `json:"client_id"`
	Surface  string `json:"surface,omitempty"`
	// Name is the token name the CLI asked for; Host the host it reported.
	Name string `json:"name,omitempty"`
	Host string `json:"host,omitempty"`
	// IP and UserAgent are of the device authorization request.
	IP        string    `json:"ip,omitempty"`
	UserAgent string    `json:"user_agent,omitempty"`
	UserCode  string    `json:"user_code"` // normalized: 8 letters, no dash
	CreatedAt time.Time `json:"created_at"`
	ExpiresAt time.Time `json:"expires_at"`

	// The fields below are the grant's state, not part of the JSON.
	Status    string    `json:"-"`
	Approver  *Person   `json:"-"` // set once approved or denied
	DecidedAt time.Time `json:"-"`
}

// NewDevice stores a new pending device grant for d (its UserCode,
// CreatedAt, ExpiresAt and Status are set here) and returns the device
// code (256 random bits) and the grant.
func (s *Store) NewDevice(ctx context.Context, d Device) (string, Device, error) {
	now := s.cfg.Now()
	d.CreatedAt = now.UTC()
	d.ExpiresAt = now.Add(s.cfg.DeviceTTL).UTC()
	d.Status = StatusPending
	d.Approver = nil
	for range 5 {
		deviceCode := newSecret()
		d.UserCode = newUserCode()
		data, err := json.Marshal(d)
		if err != nil {
			return "", Device{}, fmt.Errorf("new device grant: %w", err)
		}
		hash := hashOf(deviceCode)
		key := s.deviceKey(hash)
		_, err = s.rdb.TxPipelined(ctx, func(p redis.Pipeliner) error {
			p.HSet(ctx, key, "d", data, "status", StatusPending, "exp", d.ExpiresAt.UnixMilli(),
				"interval", s.cfg.Interval.Milliseconds())
			p.PExpire(ctx, key, s.cfg.DeviceTTL+expiredGrace)
			return nil
		})
		if err != nil {
			return "", Device{}, unavailable("new device grant", err)
		}
		ok, err := s.rdb.SetNX(ctx, s.userCodeKey(d.UserCode), hash, s.cfg.DeviceTTL).Result()
		if err != nil {
			s.rdb.Del(ctx, key)
			return "", Device{}, unavailable("new device grant", err)
		}
		if ok {
			d.Status = StatusPending
			return deviceCode, d, nil
		}
		s.rdb.Del(ctx, key) // user code taken: try another
	}
	return "", Device{}, errors.New("new device grant: no free user code after 5 tries")
}

// newUserCode draws userCodeLen letters of UserCodeAlphabet uniformly
// from crypto/rand.
func newUserCode() string {
	out := make([]byte, 0, userCodeLen)
	buf := make([]byte, 16)
	for len(out) < userCodeLen {
		if _, err := rand.Read(buf); err != nil {
			panic("grants: crypto/rand failed: " + err.Error())
		}
		for _, b := range buf {
			// 240 = 12·20: reject the rest, so every letter is equally likely.
			if b < 240 && len(out) < userCodeLen {
				out = append(out, UserCodeAlphabet[b%20])
			}
		}
	}
	return string(out)
}

// NormalizeUserCode reads a user code as a person types it: any case,
// with or without the dash and spaces. ok is false when it cannot be a
// user code.
func NormalizeUserCode(in string) (code string, ok bool) {
	if len(in) > 64 {
		return "", false
	}
	var b strings.Builder
	for _, r := range in {
		if 'a' <= r && r <= 'z' {
			r -= 'a' - 'A' // ASCII only: strings.ToUpper maps look-alikes such as U+017F (ſ) to S
		}
		switch {
		case r == '-' || r == ' ' || r == '\t':
			continue
		case strings.ContainsRune(UserCodeAlphabet, r):
			b.WriteRune(r)
		default:
			return "", false
		}
	}
	if b.Len() != userCodeLen {
		return "", false
	}
	return b.String(), true
}

// FormatUserCode writes a normalized user code as people read it: XXXX-XXXX.
func FormatUserCode(code string) string {
	if len(code) != userCodeLen {
		return code
	}
	return code[:4] + "-" + code[4:]
}

// deviceHash resolves a normalized user code to its grant's key hash.
func (s *Store) deviceHash(ctx context.Context, userCode string) (string, error) {
	hash, err := s.rdb.Get(ctx, s.userCodeKey(userCode)).Result()
	switch {
	case errors.Is(err, redis.Nil):
		return "", ErrNotFound
	case err != nil:
		return "", unavailable("look up user code", err)
	}
	return hash, nil
}

// readDevice decodes a device grant hash.
func readDevice(h map[string]string) (Device, error) {
	var d Device
	if err := json.Unmarshal([]byte(h["d"]), &d); err != nil {
		return Device{}, fmt.Errorf("malformed device grant: %w", err)
	}
	d.Status = h["status"]
	if d.Status == statusTaken {
		d.Status = StatusApproved
	}
	if a := h["approver"]; a != "" {
		var p Person
		if err := json.Unmarshal([]byte(a), &p); err == nil {
			d.Approver = &p
		}
	}
	if ms, err := strconv.ParseInt(h["decided_at"], 10, 64); err == nil {
		d.DecidedAt = time.UnixMilli(ms).UTC()
	}
	return d, nil
}

// Lookup returns the device grant of userCode (as typed: NormalizeUserCode
// is applied). It returns ErrNotFound for a code that does not exist (any
// more) and ErrExpired for one whose time is up.
func (s *Store) Lookup(ctx context.Context, userCode string) (Device, error) {
	code, ok := NormalizeUserCode(userCode)
	if !ok {
		return Device{}, fmt.Errorf("look up user code: %w", ErrNotFound)
	}
	hash, err := s.deviceHash(ctx, code)
	if err != nil {
		return Device{}, fmt.Errorf("look up user code: %w", err)
	}
	h, err := s.rdb.HGetAll(ctx, s.deviceKey(hash)).Result()
	if err != nil {
		return Device{}, unavailable("look up user code", err)
	}
	if len(h) == 0 {
		return Device{}, fmt.Errorf("look up user code: %w", ErrNotFound)
	}
	d, err := readDevice(h)
	if err != nil {
		return Device{}, err
	}
	if !s.cfg.Now().Before(d.ExpiresAt) {
		return d, fmt.Errorf("look up user code: %w", ErrExpired)
	}
	return d, nil
}

// decideScript moves a pending, unexpired grant to approved or denied.
var decideScript = redis.NewScript(`
local f = redis.call('HMGET', KEYS[1], 'status', 'exp')
if not f[1] then return 'unknown' end
if tonumber(ARGV[1]) >= tonumber(f[2]) then return 'expired' end
if f[1] ~= 'pending' then return 'decided' end
redis.call('HSET', KEYS[1], 'status', ARGV[2], 'approver', ARGV[3], 'decided_at', ARGV[1])
return 'ok'`)

// Decide approves (approve true) or denies the pending device grant of
// userCode, on behalf of by, and returns the grant as decided. It returns
// ErrNotFound, ErrExpired, or ErrDecided when it was decided before.
func (s *Store) Decide(ctx context.Context, userCode string, approve bool, by Person) (Device, error) {
	d, err := s.Lookup(ctx, userCode)
	if err != nil {
		return d, fmt.Errorf("decide device grant: %w", err)
	}
	hash, err := s.deviceHash(ctx, d.UserCode)
	if err != nil {
		return d, fmt.Errorf("decide device grant: %w", err)
	}
	status := StatusDenied
	if approve {
		status = StatusApproved
	}
	who, err := json.Marshal(by)
	if err != nil {
		return d, fmt.Errorf("decide device grant: %w", err)
	}
	now := s.cfg.Now()
	res, err := runScript(ctx, s.rdb, decideScript, []string{s.deviceKey(hash)}, now.UnixMilli(), status, who)
	if err != nil {
		return d, unavailable("decide device grant", err)
	}
	switch res {
	case "ok":
		d.Status, d.Approver, d.DecidedAt = status, &by, time.UnixMilli(now.UnixMilli()).UTC()
		return d, nil
	case "expired":
		return d, fmt.Errorf("decide device grant: %w", ErrExpired)
	case "decided":
		return d, fmt.Errorf("decide device grant: %w", ErrDecided)
	default:
		return d, fmt.Errorf("decide device grant: %w", ErrNotFound)
	}
}

// Poll outcomes (RFC 8628 §3.5).
const (
	PollPending  = "authorization_pending"
	PollSlowDown = "slow_down"
	PollApproved = "approved"
	PollDenied   = "access_denied"
	PollExpired  = "expired_token"
	PollUnknown  = "unknown" // unknown, already used, or being used
)

// Poll is the answer to one poll of a device grant.
type Poll struct {
	Outcome string // one of the Poll* constants
	// Interval is the polling interval from now on (after a slow_down,
	// SlowDownStep longer).
	Interval time.Duration
	// Device is set when Outcome is PollApproved; Device.Approver says who.
	Device Device
}

// pollScript answers one poll; see Poll. An approved grant is moved to
// "taken" so that only one poll gets it.
var pollScript = redis.NewScript(`
local f = redis.call('HMGET', KEYS[1], 'status', 'exp', 'interval', 'last_poll')
local status = f[1]
if not status then return {'unknown'} end
local now = tonumber(ARGV[1])
if now >= tonumber(f[2]) then return {'expired'} end
if status == 'approved' then
  redis.call('HSET', KEYS[1], 'status', 'taken')
  return {'approved', redis.call('HGET', KEYS[1], 'd'), redis.call('HGET', KEYS[1], 'approver'), f[3]}
end
if status == 'denied' then
  redis.call('DEL', KEYS[1])
  return {'denied'}
end
if status ~= 'pending' then return {'unknown'} end
local interval = tonumber(f[3])
local last = tonumber(f[4] or '0')
redis.call('HSET', KEYS[1], 'last_poll', now)
if last > 0 and now - last < interval then
  interval = interval + tonumber(ARGV[2])
  redis.call('HSET', KEYS[1], 'interval', interval)
  return {'slow_down', tostring(interval)}
end
return {'pending', tostring(interval)}`)

// Poll answers a device's poll for deviceCode: pending (and slow_down when
// it polled sooner than its interval since the last poll, which lengthens
// the interval by SlowDownStep), approved (once: the grant is then
// reserved for the caller, who calls Finish after issuing the token or
// Release when issuing failed), denied (once), expired, or unknown.
func (s *Store) Poll(ctx context.Context, deviceCode string) (Poll, error) {
	if deviceCode == "" || len(deviceCode) > 256 {
		return Poll{Outcome: PollUnknown}, nil
	}
	now := s.cfg.Now()
	res, err := runScript(ctx, s.rdb, pollScript, []string{s.deviceKey(hashOf(deviceCode))},
		now.UnixMilli(), SlowDownStep.Milliseconds())
	if err != nil {
		return Poll{}, unavailable("poll device grant", err)
	}
	parts, _ := res.([]any)
	str := func(i int) string {
		if i < len(parts) {
			if v, ok := parts[i].(string); ok {
				return v
			}
		}
		return ""
	}
	ms := func(v string) time.Duration {
		n, _ := strconv.ParseInt(v, 10, 64)
		return time.Duration(n) * time.Millisecond
	}
	switch str(0) {
	case "pending":
		return Poll{Outcome: PollPending, Interval: ms(str(1))}, nil
	case "slow_down":
		return Poll{Outcome: PollSlowDown, Interval: ms(str(1))}, nil
	case "denied":
		return Poll{Outcome: PollDenied}, nil
	case "expired":
		return Poll{Outcome: PollExpired}, nil
	case "approved":
		d, err := readDevice(map[string]string{"d": str(1), "approver": str(2), "status": StatusApproved})
		if err != nil || d.Approver == nil {
			return Poll{}, fmt.Errorf("poll device grant: malformed approval")
		}
		return Poll{Outcome: PollApproved, Device: d, Interval: ms(str(3))}, nil
	default:
		return Poll{Outcome: PollUnknown}, nil
	}
}

// releaseScript gives back an approval a poll took.
var releaseScript = redis.NewScript(`
if redis.call('HGET', KEYS[1], 'status') == 'taken' then
  redis.call('HSET', KEYS[1], 'status', 'approved')
  return 1
end
return 0`)

// Release makes an approved grant that Poll handed out pollable again,
// after issuing its token failed for a reason that was not the device's.
func (s *Store) Release(ctx context.Context, deviceCode string) error {
	if _, err := runScript(ctx, s.rdb, releaseScript, []string{s.deviceKey(hashOf(deviceCode))}); err != nil {
		return unavailable("release device grant", err)
	}
	return nil
}

// Finish deletes a device grant whose token was issued, and its user code.
func (s *Store) Finish(ctx context.Context, deviceCode, userCode string) error {
	_, err := s.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		p.Del(ctx, s.deviceKey(hashOf(deviceCode)))
		p.Del(ctx, s.userCodeKey(userCode))
		return nil
	})
	if err != nil {
		return unavailable("finish device grant", err)
	}
	return nil
}

// wrongScript counts one wrong user code in a fixed window.
var wrongScript = redis.NewScript(`
local n = redis.call('INCR', KEYS[1])
if n == 1 then redis.call('PEXPIRE', KEYS[1], ARGV[1]) end
return n`)

// WrongCodeLimited reports whether session (a browser session's handle)
// has entered WrongCodeLimit wrong user codes in the current window, and
// so may not try another now.
func (s *Store) WrongCodeLimited(ctx context.Context, session string) (bool, error) {
	n, err := s.rdb.Get(ctx, s.wrongKey(session)).Int()
	switch {
	case errors.Is(err, redis.Nil):
		return false, nil
	case err != nil:
		return false, unavailable("count wrong user codes", err)
	}
	return n >= s.cfg.WrongCodeLimit, nil
}

// WrongCode counts a wrong user code entered by session.
func (s *Store) WrongCode(ctx context.Context, session string) error {
	if _, err := runScript(ctx, s.rdb, wrongScript, []string{s.wrongKey(session)}, s.cfg.WrongCodeWindow.Milliseconds()); err != nil {
		return unavailable("count wrong user codes", err)
	}
	return nil
}
