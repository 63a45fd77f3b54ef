// Package tokens owns llmgate's API tokens: the signing keys (generated on
// first start, encrypted at rest in Redis, rotated on a schedule and shared
// by every replica), issuing and verifying RFC 9068-style JWT access tokens,
// the token records and per-user index, and revocation — revoked tokens,
// blocked people and revoke-user cut-offs — held in an in-process copy that
// every replica keeps current through Redis pub/sub and periodic resyncs, so
// that verifying a token already seen never waits on Redis.
//
// jwx (lestrrat-go/jwx/v2) is used only here; go-redis only in the store
// files (store.go, keystore.go, revocation.go, lastused.go, service.go).
package tokens
