// Package oidc is llmgate's OpenID Connect relying party: it discovers the
// identity provider, builds the authorization URL (state, nonce, PKCE S256),
// exchanges the code, verifies the ID token and maps it to an Identity that
// the login policy (allowed domains and groups, admins) has accepted.
//
// It knows nothing of HTTP routing, cookies or storage: the gateway keeps
// the Flow between the two legs of a login and turns an Identity into a
// session.
package oidc
