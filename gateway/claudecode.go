package gateway

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode/utf16"
	"unicode/utf8"

	"github.com/gin-gonic/gin"

	"github.com/llmgate/llmgate/internal/users"
	"github.com/llmgate/llmgate/tokens"
)

// ClaudeCodeConfig holds the Claude Code policies (YAML "claude_code",
// SPEC §8).
type ClaudeCodeConfig struct {
	// Policies are tried in order; the first that matches a person applies.
	Policies []Policy
}

// Policy says which models a group of people may use, the managed settings
// Claude Code receives, and their monthly budget.
type Policy struct {
	// Groups and EmailDomains select the people: a person in any of Groups
	// or with an email in any of EmailDomains. Both empty matches everyone.
	Groups       []string
	EmailDomains []string
	// Models are the models these people may call on every proxied route;
	// empty is no restriction.
	Models []string
	// Settings is served at /managed/settings; nil serves {}.
	Settings map[string]any
	// MonthlyBudgetUSD caps each matched person's monthly spend; 0 = no cap.
	MonthlyBudgetUSD float64
}

// policy is a Policy ready to serve: its settings encoded once.
type policy struct {
	Policy
	index    int
	body     []byte // {"uuid","checksum","settings"}
	checksum string // "sha256:" + hex
	etag     string // the checksum, quoted
}

// matches reports whether the person with email and groups falls under p.
func (p *policy) matches(email string, groups []string) bool {
	if len(p.Groups) == 0 && len(p.EmailDomains) == 0 {
		return true
	}
	if slices.ContainsFunc(groups, func(g string) bool { return slices.Contains(p.Groups, g) }) {
		return true
	}
	if at := strings.LastIndexByte(email, '@'); at >= 0 {
		return containsFold(p.EmailDomains, email[at+1:])
	}
	return false
}

// allowsModel reports whether the policy lets its people call model.
func (p *policy) allowsModel(model string) bool {
	return p == nil || len(p.Models) == 0 || slices.Contains(p.Models, model)
}

func containsFold(list []string, s string) bool {
	return slices.ContainsFunc(list, func(x string) bool { return strings.EqualFold(x, s) })
}

// newPolicies prepares the policies of cfg: each one's settings document,
// checksum and stable uuid.
func newPolicies(cfg ClaudeCodeConfig) ([]*policy, error) {
	out := make([]*policy, 0, len(cfg.Policies))
	for i, p := range cfg.Policies {
		settings := any(p.Settings)
		if p.Settings == nil {
			settings = map[string]any{}
		}
		canon, err := canonicalJSON(settings)
		if err != nil {
			return nil, fmt.Errorf("claude_code.policies[%d]: settings: %w", i, err)
		}
		sum := sha256.Sum256(canon)
		checksum := "sha256:" + hex.EncodeToString(sum[:])
		var body []byte
		body = append(body, `{"uuid":"`...)
		body = append(body, policyUUID(i, checksum)...)
		body = append(body, `","checksum":"`...)
		body = append(body, checksum...)
		body = append(body, `","settings":`...)
		body = append(body, canon...)
		body = append(body, '}')
		out = append(out, &policy{Policy: p, index: i, body: body, checksum: checksum, etag: `"` + checksum + `"`})
	}
	return out, nil
}

// policyUUID is a name-based UUID (version 5 layout, SHA-256 based) of a
// policy's place and content: the same configuration always gives the same
// uuid, on every replica, and a changed policy a new one.
func policyUUID(index int, checksum string) string {
	h := sha256.Sum256([]byte("llmgate claude_code policy\x00" + strconv.Itoa(index) + "\x00" + checksum))
	b := h[:16]
	b[6] = b[6]&0x0f | 0x50
	b[8] = b[8]&0x3f | 0x80
	x := hex.EncodeToString(b)
	return x[0:8] + "-" + x[8:12] + "-" + x[12:16] + "-" + x[16:20] + "-" + x[20:32]
}

// canonicalJSON encodes v as JavaScript's JSON.stringify does, with the
// keys of every object sorted (by UTF-16 code units, as Array.prototype.sort
// compares strings) and no whitespace: the form Claude Code hashes to check
// the managed settings it receives.
func canonicalJSON(v any) ([]byte, error) {
	var b []byte
	var enc func(v any) error
	enc = func(v any) error {
		switch x := v.(type) {
		case nil:
			b = append(b, "null"...)
		case bool:
			b = strconv.AppendBool(b, x)
		case string:
			b = appendJSString(b, x)
		case int:
			b = strconv.AppendInt(b, int64(x), 10)
		case int64:
			b = strconv.AppendInt(b, x, 10)
		case uint64:
			b = strconv.AppendUint(b, x, 10)
		case float64, float32, json.Number:
			// encoding/json formats floats as ECMAScript does.
			n, err := json.Marshal(x)
			if err != nil {
				return err
			}
			b = append(b, n...)
		case []any:
			b = append(b, '[')
			for i, e := range x {
				if i > 0 {
					b = append(b, ',')
				}
				if err := enc(e); err != nil {
					return err
				}
			}
			b = append(b, ']')
		case map[string]any:
			keys := make([]string, 0, len(x))
			for k := range x {
				keys = append(keys, k)
			}
			sort.Slice(keys, func(i, j int) bool { return lessUTF16(keys[i], keys[j]) })
			b = append(b, '{')
			for i, k := range keys {
				if i > 0 {
					b = append(b, ',')
				}
				b = appendJSString(b, k)
				b = append(b, ':')
				if err := enc(x[k]); err != nil {
					return err
				}
			}
			b = append(b, '}')
		case map[any]any:
			m := make(map[string]any, len(x))
			for k, e := range x {
				ks, ok := k.(string)
				if !ok {
					return fmt.Errorf("key %v is not a string", k)
				}
				m[ks] = e
			}
			return enc(m)
		default:
			// Anything else (times, typed slices): through encoding/json and back.
			raw, err := json.Marshal(x)
			if err != nil {
				return err
			}
			var generic any
			d := json.NewDecoder(strings.NewReader(string(raw)))
			d.UseNumber()
			if err := d.Decode(&generic); err != nil {
				return err
			}
			return enc(generic)
		}
		return nil
	}
	if err := enc(v); err != nil {
		return nil, err
	}
	return b, nil
}

// appendJSString appends s as JSON.stringify quotes it: only ", \ and
// control characters are escaped (no HTML escaping, U+2028 and U+2029 as
// they are).
func appendJSString(b []byte, s string) []byte {
	const hexDigits = "0123456789abcdef"
	b = append(b, '"')
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			switch {
			case c == '"':
				b = append(b, '\\', '"')
			case c == '\\':
				b = append(b, '\\', '\\')
			case c == '\b':
				b = append(b, '\\', 'b')
			case c == '\f':
				b = append(b, '\\', 'f')
			case c == '\n':
				b = append(b, '\\', 'n')
			case c == '\r':
				b = append(b, '\\', 'r')
			case c == '\t':
				b = append(b, '\\', 't')
			case c < 0x20:
				b = append(b, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xf])
			default:
				b = append(b, c)
			}
			i++
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			b = append(b, "\ufffd"...)
		} else {
			b = append(b, s[i:i+size]...)
		}
		i += size
	}
	return append(b, '"')
}

// lessUTF16 orders strings by their UTF-16 code units, as JavaScript does.
func lessUTF16(a, b string) bool {
	ua, ub := utf16.Encode([]rune(a)), utf16.Encode([]rune(b))
	return slices.Compare(ua, ub) < 0
}

// policyFor returns the first policy matching the person, or nil.
func (s *Server) policyFor(email string, groups []string) *policy {
	for _, p := range s.policies {
		if p.matches(email, groups) {
			return p
		}
	}
	return nil
}

// policiesNeedGroups reports whether any policy matches on groups, so that
// a person's groups must be known to choose one.
func (s *Server) policiesNeedGroups() bool {
	for _, p := range s.policies {
		if len(p.Groups) > 0 {
			return true
		}
	}
	return false
}

// groupCache remembers the groups of each person's last sign-in, read from
// the users store, so that choosing a policy costs no Redis round trip on
// most requests and still works, with what was last known, while Redis is
// down.
type groupCache struct {
	mu sync.Mutex
	m  map[string]groupEntry
}

type groupEntry struct {
	groups  []string
	fetched time.Time
}

// groupCacheTTL is how long a person's groups are used before they are
// read again: a changed group membership (at the next sign-in) applies
// within this.
const groupCacheTTL = 30 * time.Second

// groupsOf returns email's groups: from memory when read within
// groupCacheTTL, else from the users store; when that fails, what was last
// known (nil if nothing).
func (s *Server) groupsOf(ctx context.Context, email string) []string {
	now := s.cfg.Now()
	s.groups.mu.Lock()
	e, ok := s.groups.m[email]
	s.groups.mu.Unlock()
	if ok && now.Sub(e.fetched) < groupCacheTTL {
		return e.groups
	}
	if !s.tokens.Healthy() && ok {
		return e.groups // Redis is known to be down: do not wait for it
	}
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	p, err := s.users.Get(ctx, email)
	if err != nil && !errors.Is(err, users.ErrNotFound) {
		return e.groups
	}
	s.groups.mu.Lock()
	if s.groups.m == nil {
		s.groups.m = map[string]groupEntry{}
	}
	if len(s.groups.m) > 100_000 { // bound memory: start again
		clear(s.groups.m)
	}
	s.groups.m[email] = groupEntry{groups: p.Groups, fetched: now}
	s.groups.mu.Unlock()
	return p.Groups
}

// personPolicy is the policy of the person a token belongs to.
func (s *Server) personPolicy(ctx context.Context, email string, groups []string, haveGroups bool) *policy {
	if len(s.policies) == 0 {
		return nil
	}
	if !haveGroups && s.policiesNeedGroups() {
		groups = s.groupsOf(ctx, email)
	}
	return s.policyFor(email, groups)
}

// handleHello answers Claude Code's reachability probe.
func (s *Server) handleHello(c *gin.Context) {
	c.Header("Cache-Control", "no-store")
	c.Status(http.StatusOK)
}

// handleManagedSettings serves the managed settings of the caller's policy
// (SPEC §8). It is answered from the configuration and a local check of
// the token alone, so Claude Code can start while Redis is down.
func (s *Server) handleManagedSettings(c *gin.Context) {
	raw := bearerToken(c.Request)
	if raw == "" {
		c.Header("WWW-Authenticate", `Bearer`)
		s.fail(c, refuse(http.StatusUnauthorized, "missing_token",
			"not logged in: run /login in Claude Code, or send an API token as Authorization: Bearer"))
		return
	}
	id, err := s.identify(c.Request.Context(), raw, true)
	if err != nil {
		e := s.identifyError(err)
		if e.Status == http.StatusUnauthorized {
			c.Header("WWW-Authenticate", `Bearer error="invalid_token"`)
		}
		s.fail(c, e)
		return
	}
	p := s.personPolicy(c.Request.Context(), id.claims.Email, id.groups, id.haveGroups)
	c.Header("Cache-Control", "private, no-cache")
	if p == nil {
		s.fail(c, refuse(http.StatusNotFound, "no_policy", "no Claude Code policy applies to %s", id.claims.Email))
		return
	}
	c.Header("ETag", p.etag)
	if etagMatches(c.GetHeader("If-None-Match"), p.etag) {
		c.Status(http.StatusNotModified)
		return
	}
	c.Data(http.StatusOK, "application/json", p.body)
}

// etagMatches reports whether an If-None-Match value names etag. "*" is
// treated as absent: Claude Code sends it to mean "nothing cached".
func etagMatches(header, etag string) bool {
	for _, v := range strings.Split(header, ",") {
		v = strings.TrimPrefix(strings.TrimSpace(v), "W/")
		if v == etag {
			return true
		}
	}
	return false
}

// identity is who an API credential belongs to, with what the proxy needs.
type identity struct {
	claims *tokens.Claims
	// groups are known when the credential carried them (identity
	// provider tokens); otherwise they are looked up when needed.
	groups     []string
	haveGroups bool
}
