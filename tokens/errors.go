package tokens

import "errors"

// Errors returned by Service. Callers branch on them with errors.Is; the
// wrapped text says why, for logs.
var (
	// ErrNotFound: no token record with that id (or it has been purged).
	ErrNotFound = errors.New("token not found")
	// ErrMalformed: the string is not a compact JWS of the shape llmgate issues.
	ErrMalformed = errors.New("malformed token")
	// ErrSignature: bad signature, unknown or retired key id, an algorithm
	// that is not allowed, or a header that names its own key (jku, jwk, x5u, x5c).
	ErrSignature = errors.New("invalid token signature")
	// ErrExpired: exp has passed (beyond the leeway).
	ErrExpired = errors.New("token expired")
	// ErrNotYetValid: nbf (or iat) is in the future (beyond the leeway).
	ErrNotYetValid = errors.New("token not yet valid")
	// ErrClaims: iss, aud, typ or a required claim is wrong or missing.
	ErrClaims = errors.New("invalid token claims")
	// ErrScope: the token lacks the scope the caller needs.
	ErrScope = errors.New("token lacks the required scope")
	// ErrRevoked: the token was revoked, or its record no longer exists.
	ErrRevoked = errors.New("token revoked")
	// ErrUserBlocked: the token's owner is blocked.
	ErrUserBlocked = errors.New("user blocked")
	// ErrUserRevoked: the token was issued before its owner's revoke-since cut-off.
	ErrUserRevoked = errors.New("user's tokens revoked")
	// ErrWrongSecret: the signing keys stored in Redis cannot be decrypted
	// with this LLMGATE_SECRET. New never creates new keys in that case.
	ErrWrongSecret = errors.New("stored signing keys cannot be decrypted with LLMGATE_SECRET (wrong secret?)")
	// ErrUnavailable: the store (Redis) could not be reached and the answer
	// cannot be given from memory.
	ErrUnavailable = errors.New("token store unavailable")
)

// ValidationError reports a bad IssueRequest field. Message is safe to show
// to the person who made the request (the gateway answers 400 with it).
type ValidationError struct {
	Field   string // the request field, as named in the JSON API: "name", "ttl", "cidrs", …
	Message string // e.g. "ttl 120d exceeds the maximum 90d"
}

func (e *ValidationError) Error() string { return e.Message }
