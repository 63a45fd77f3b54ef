// Package sessions stores browser sessions server-side; callers hold only an
// opaque ID.
//
// The ID is the cookie value: 256 bits from crypto/rand, base64url. Redis
// never sees it. A session is stored under the hex SHA-256 of its ID, its
// Handle, which admins may see and delete by but which cannot be replayed as
// a cookie. Pending SSO logins are likewise stored under a hash of the OAuth
// state. A leaked Redis dump therefore holds no cookie value and no usable
// state. It does hold each session's IDTokenHint, the raw ID token kept for
// RP-initiated logout: whoever accepts ID tokens as credentials must not
// accept these (or must not store them).
//
// Keys, all under Config.Prefix:
//
//	session:HANDLE        JSON Session; Redis TTL = min(IdleTimeout, time to ExpiresAt)
//	user-sessions:EMAIL   sorted set of handles scored by ExpiresAt (Unix ms)
//	session-users         set of emails that have an index entry
//	idp-session:HEX(SHA256(ISS NUL SID))  sorted set of the handles of the
//	                      sessions created under that identity provider
//	                      session, scored by ExpiresAt; lives as long as its
//	                      longest session
//	login:HEX(SHA256(STATE))  JSON LoginFlow, single use
//	seen:KIND:HEX(SHA256(ID)) replay marker written by SeenOnce, TTL as asked
//
// Every operation touches one key at a time or pipelines independent
// single-key commands, never MULTI or Lua across keys, so the store works on
// Redis Cluster. The indexes are therefore only best-effort consistent with
// the session keys; the store keeps two promises regardless: a session key
// is written before its handle enters an index, and a handle leaves an index
// only when its key is gone or its absolute expiry has passed, so
// DeleteByEmail and DeleteByIDPSession reach every session that can still be
// used. (Entries of sessions already gone may linger in an idp-session index
// until it expires; they cost a lookup, never a wrong deletion.)
package sessions
