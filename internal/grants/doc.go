// Package grants keeps the short-lived grants of sign-ins that end in a
// token: the authorization codes of the loopback CLI sign-in (RFC 8252 with
// PKCE), the device grants of the device flow (RFC 8628) with their user
// codes, polling pace and approval, and the count of wrong user codes a
// browser session enters. Everything lives in Redis under the configured
// prefix and expires by itself; secrets (codes, device codes) are stored
// only as SHA-256 hashes, and every take or state change is one atomic
// Redis command or script, so two replicas never both hand out one grant.
//
// The package knows nothing of HTTP or of tokens: the gateway shows
// grants on its pages and turns an approved one into a token.
package grants
