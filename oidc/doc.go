// Package oidc is llmgate's OpenID Connect relying party: it discovers the
// identity provider, builds the authorization URL (state, nonce, PKCE S256),
// exchanges the code, verifies the ID token and maps it to an Identity that
// the login policy (allowed domains and groups, admins) has accepted.
//
// It also serves deprovisioning (SPEC §6): VerifyLogoutToken checks the
// logout tokens of OpenID Connect Back-Channel Logout 1.0, and Refresh
// redeems a kept refresh token so that a periodic re-check learns, from
// ErrInvalidGrant, that the provider no longer vouches for a person.
//
// It knows nothing of HTTP routing, cookies or storage: the gateway keeps
// the Flow between the two legs of a login and turns an Identity into a
// session, and it remembers the JTIs of logout tokens to refuse replays.
package oidc
