package audit

import (
	"errors"
	"strings"
	"time"
)

// Event is one audited happening. Record fills Time when it is zero; ID is
// set by List from the stream entry id.
//
// No field may carry a secret: an API token is named by its TokenID (the
// jti), never by its value. Details values under keys that usually hold
// secrets ("token", "password", "authorization", …) are replaced by
// "[redacted]" before the event is logged, stored or sent.
type Event struct {
	ID      string            `json:"id"`                 // the stream entry id, set when stored
	Time    time.Time         `json:"time"`               // when it happened; Record fills it when zero
	Type    string            `json:"type"`               // dotted, e.g. "token.create", "api.refused"; see the Type constants
	Actor   string            `json:"actor,omitempty"`    // who did it (email), empty for the system
	Email   string            `json:"email,omitempty"`    // whom it concerns
	TokenID string            `json:"token_id,omitempty"` // the token concerned, never its value
	IP      string            `json:"ip,omitempty"`       // client IP
	Status  int               `json:"status,omitempty"`   // HTTP status of a refusal
	Reason  string            `json:"reason,omitempty"`   // why, in words an admin understands
	Details map[string]string `json:"details,omitempty"`  // anything else, never secrets
}

// Event types the gateway records. Types outside this list are stored and
// listed like any other, but counted under type="other" in
// llmgate_audit_events_total so that the label stays bounded.
const (
	TypeLogin             = "login"
	TypeLoginRefused      = "login.refused"
	TypeLogout            = "logout"
	TypeTokenCreate       = "token.create"
	TypeTokenRevoke       = "token.revoke"
	TypeSessionRevoke     = "session.revoke"
	TypeUserRevoke        = "user.revoke"
	TypeUserBlock         = "user.block"
	TypeUserUnblock       = "user.unblock"
	TypeUserBudget        = "user.budget" // an admin set or removed a person's spend cap
	TypeAPIRefused        = "api.refused"
	TypeAdminDenied       = "admin.denied"
	TypeDeprovision       = "deprovision"
	TypeBackchannelLogout = "backchannel.logout"
	// CLI and device sign-ins, and the sign-ins of Claude Code (SPEC §8).
	TypeCLIAuthorize    = "cli.authorize"    // loopback consent approved or denied
	TypeDeviceAuthorize = "device.authorize" // a device asked for a code
	TypeDeviceApprove   = "device.approve"   // a device code approved or denied
	TypeSessionMint     = "session.mint"     // a sign-in started
	TypeSessionRefresh  = "session.refresh"  // a sign-in's tokens rotated
	TypeRefreshReplay   = "refresh.replay"   // a rotated refresh token reused: sign-in revoked
	TypeAuthDenied      = "auth.denied"      // a token request refused
)

// knownTypes are the values of the type label; anything else is "other".
var knownTypes = []string{
	TypeLogin, TypeLoginRefused, TypeLogout, TypeTokenCreate, TypeTokenRevoke,
	TypeSessionRevoke, TypeUserRevoke, TypeUserBlock, TypeUserUnblock, TypeUserBudget,
	TypeAPIRefused, TypeAdminDenied, TypeDeprovision, TypeBackchannelLogout,
	TypeCLIAuthorize, TypeDeviceAuthorize, TypeDeviceApprove, TypeSessionMint,
	TypeSessionRefresh, TypeRefreshReplay, TypeAuthDenied,
}

// otherType is the type label of events whose Type is not in knownTypes.
const otherType = "other"

func typeLabel(t string) string {
	for _, k := range knownTypes {
		if t == k {
			return k
		}
	}
	return otherType
}

// IsRefusal reports whether e is a refusal (type "*.refused" or
// "*.denied"). Refusals are logged at level Warn, everything else at Info.
func IsRefusal(e Event) bool {
	return strings.HasSuffix(e.Type, ".refused") || strings.HasSuffix(e.Type, ".denied")
}

// DefaultSecurity is the default Config.Security: it selects the events an
// on-call security team wants pushed to them — refusals ("*.refused",
// "*.denied"), revocations ("*.revoke": a token, a session, all of a
// person's), blocks and unblocks, deprovisioning ("deprovision*") and
// back-channel logouts. Logins, logouts and token creation are not
// security events; they are only stored and logged.
func DefaultSecurity(e Event) bool {
	t := e.Type
	switch {
	case IsRefusal(e),
		strings.HasSuffix(t, ".revoke"),
		strings.HasSuffix(t, ".block"),
		strings.HasSuffix(t, ".unblock"),
		t == TypeDeprovision || strings.HasPrefix(t, TypeDeprovision+"."),
		t == TypeBackchannelLogout, t == TypeRefreshReplay:
		return true
	}
	return false
}

// secretKeys are Details keys whose values are redacted.
var secretKeys = map[string]bool{
	"token": true, "access_token": true, "refresh_token": true, "id_token": true,
	"id_token_hint": true, "logout_token": true, "authorization": true,
	"cookie": true, "password": true, "secret": true, "client_secret": true,
	"api_key": true, "apikey": true, "x-api-key": true, "code_verifier": true,
}

// redacted replaces the value of a secret-looking Details key.
const redacted = "[redacted]"

// normalize returns a copy of e that no longer shares memory with the
// caller (Record is asynchronous), with Time filled and in UTC and
// secret-looking Details redacted.
func normalize(e Event, now func() time.Time) Event {
	e.ID = ""
	if e.Time.IsZero() {
		e.Time = now()
	}
	e.Time = e.Time.UTC()
	if len(e.Details) > 0 {
		d := make(map[string]string, len(e.Details))
		for k, v := range e.Details {
			if secretKeys[strings.ToLower(k)] {
				v = redacted
			}
			d[k] = v
		}
		e.Details = d
	} else {
		e.Details = nil
	}
	return e
}

// Filter selects events for List. The zero Filter lists everything.
type Filter struct {
	// Email selects events whose Email or Actor is this address (compared
	// case-insensitively): what was done to a person and what they did.
	Email string
	// Type selects events of exactly this type or, when it ends with ".",
	// every type it prefixes: "token." matches "token.create" and
	// "token.revoke".
	Type string
	// Cursor continues a listing: Page.Next of the previous call with the
	// same filter. Empty starts at the newest event.
	Cursor string
	// Limit is the most events returned. Default 50, at most 500.
	Limit int
}

// Limits of Filter.Limit.
const (
	DefaultLimit = 50
	MaxLimit     = 500
)

// Page is one page of List, newest first.
type Page struct {
	Events []Event `json:"events"`
	// Next is the cursor of the following page; empty when the history has
	// been read to its end. A page may hold fewer than Limit events — even
	// none — and still have a Next: clients keep paging until Next is empty.
	Next string `json:"next_cursor,omitempty"`
}

// ErrInvalidCursor is returned by List when Filter.Cursor is not a cursor
// List handed out (the gateway answers 400).
var ErrInvalidCursor = errors.New("invalid audit cursor")

func (f Filter) match(e Event) bool {
	if f.Email != "" && !strings.EqualFold(e.Email, f.Email) && !strings.EqualFold(e.Actor, f.Email) {
		return false
	}
	if f.Type != "" {
		if strings.HasSuffix(f.Type, ".") {
			return strings.HasPrefix(e.Type, f.Type)
		}
		return e.Type == f.Type
	}
	return true
}
