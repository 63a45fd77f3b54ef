package tokens

import (
	"net/netip"
	"slices"
	"time"
)

// Names of the private claims in a token (besides the registered ones).
const (
	claimClientID   = "client_id"
	claimEmail      = "email"
	claimName       = "name"
	claimScope      = "scope"
	claimModels     = "models"
	claimRPM        = "rpm"
	claimCIDRs      = "cidrs"
	claimMaxCostUSD = "max_cost_usd"
)

// Scopes a token can carry.
const (
	ScopeLLM    = "llm"    // call the proxied LLM API
	ScopeTokens = "tokens" // manage one's tokens through the JSON API (CLI credentials)
)

// Client ids (RFC 9068 client_id): where a token was minted.
const (
	ClientUI         = "llmgate-ui"
	ClientCLI        = "llmgate-cli"
	ClientAPI        = "llmgate-api"
	ClientClaudeCode = "claude-code"
)

// Claims is the verified content of a token. Verify returns the same
// *Claims for every use of a token it has seen, so callers must treat it
// as read-only.
type Claims struct {
	ID       string // jti: the token id
	Subject  string // sub: the person's subject at the identity provider
	Email    string // the owner, lower-case
	Name     string // the owner's display name
	ClientID string // where the token was minted
	Scopes   []string
	Models   []string // models the token may call; empty means any
	// RPM, CIDRs and MaxCostUSD are the token's limits, signed into it
	// (claims rpm, cidrs, max_cost_usd) so they hold even when Redis is
	// down. Zero values mean no limit.
	RPM        int
	CIDRs      []string
	MaxCostUSD float64

	IssuedAt, NotBefore, ExpiresAt time.Time

	prefixes []netip.Prefix
	kid      string // the key that signed it
}

// HasScope reports whether the token carries scope.
func (c *Claims) HasScope(scope string) bool {
	return scope != "" && slices.Contains(c.Scopes, scope)
}

// AllowsModel reports whether the token may call model (exact match; a
// token without a model list may call any).
func (c *Claims) AllowsModel(model string) bool {
	return len(c.Models) == 0 || slices.Contains(c.Models, model)
}

// AllowsAddr reports whether a request from addr may use the token (a
// token without CIDRs may be used from anywhere).
func (c *Claims) AllowsAddr(addr netip.Addr) bool {
	if len(c.prefixes) == 0 {
		return true
	}
	addr = addr.Unmap()
	for _, p := range c.prefixes {
		if p.Contains(addr) {
			return true
		}
	}
	return false
}

// Record is what the store keeps about a token: never the token itself.
type Record struct {
	ID         string    `json:"id"`
	Name       string    `json:"name"`
	Email      string    `json:"email"`
	Subject    string    `json:"subject"`
	ClientID   string    `json:"client_id"`
	Scopes     []string  `json:"scopes"`
	Models     []string  `json:"models,omitempty"`
	RPM        int       `json:"rpm,omitempty"`
	CIDRs      []string  `json:"cidrs,omitempty"`
	MaxCostUSD float64   `json:"max_cost_usd,omitempty"`
	CreatedAt  time.Time `json:"created_at"`
	ExpiresAt  time.Time `json:"expires_at"`
	LastUsedAt time.Time `json:"last_used_at,omitzero"`
	RevokedAt  time.Time `json:"revoked_at,omitzero"`
	RevokedBy  string    `json:"revoked_by,omitempty"`
	// Address is the client address of a sign-in: where it was approved
	// for, then where it last refreshed from.
	Address string `json:"address,omitempty"`
}

// Token statuses, as Record.Status reports them.
const (
	StatusActive  = "active"
	StatusRevoked = "revoked"
	StatusExpired = "expired"
)

// Status says whether r is active, revoked or expired at now.
func (r Record) Status(now time.Time) string {
	switch {
	case !r.RevokedAt.IsZero():
		return StatusRevoked
	case !now.Before(r.ExpiresAt):
		return StatusExpired
	}
	return StatusActive
}

// IssueRequest describes a token to mint. Issue validates every field and
// answers a *ValidationError naming the first bad one.
type IssueRequest struct {
	Name     string // the token's name, 1–100 printable characters
	Email    string // owner (required)
	Subject  string // owner's IdP subject (required)
	UserName string // owner's display name (claim "name"), optional
	ClientID string // default "llmgate-api"
	TTL      time.Duration
	// Scopes default to ["llm"]; allowed: "llm", "tokens".
	Scopes     []string
	Models     []string
	RPM        int
	CIDRs      []string
	MaxCostUSD float64
}
