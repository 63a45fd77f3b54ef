// Package users remembers every person who has signed in — for the admin's
// users view, for the periodic re-check of refresh tokens at the identity
// provider, and for the rule that API tokens need a recent sign-in.
//
// Login records a sign-in. Get, List and Count serve the users view.
// LastLogin answers from an in-process map, without a Redis round trip, so
// the proxy may call it per request (LLMGATE_TOKEN_REQUIRE_LOGIN_WITHIN);
// every replica keeps that map current through pub/sub (within about a
// second of a login) and a periodic reload. Due, Checked, Postpone and
// Forget drive the re-check of SPEC §6: the gateway asks for the people whose
// refresh token is due, redeems each at the identity provider, and reports
// the outcome.
//
// People are never deleted: a deprovisioned person stays listed, without a
// refresh token and without a re-check schedule.
//
// # Refresh tokens
//
// A refresh token is never stored in clear and never logged. It is sealed
// with AES-256-GCM under a key derived from Config.Secret by HKDF-SHA-256
// (info "llmgate refresh tokens v1"), with a fresh random nonce per write and
// the lower-cased email as additional data, so a sealed token copied to
// another person does not open. Stored as version byte 1, the 12-byte nonce,
// then the ciphertext. With Config.RecheckInterval 0 (re-check off) refresh
// tokens are not kept at all, and Login deletes any kept before.
//
// # Claims
//
// Several replicas may call Due at once, and an identity provider that
// rotates refresh tokens treats a token redeemed twice as stolen and revokes
// the grant. So Due claims each person before handing out the token:
//
//  1. SET users:claim:EMAIL RANDOM NX PX Lease — whoever wins holds the
//     person until the lease ends;
//  2. ZSCORE users:recheck EMAIL — read after winning: if the person is no
//     longer due (another replica finished a re-check between our range read
//     and our claim), the claim is released and the person skipped;
//  3. ZADD users:recheck XX GT now+Lease — so that other replicas stop
//     seeing the person as due, and so that if this replica dies mid-check
//     the person is due again when the lease runs out.
//
// Checked, Postpone and Forget write the new schedule first and then release
// the claim with a compare-and-delete on the one claim key (a one-key Lua
// script, which Redis Cluster allows), so a claim that has expired and been
// taken by another replica is never released by the first. A replica that
// wins a claim after that release reads the new schedule in step 2 and backs
// off. The one unprotected case is a re-check that outlives its lease: the
// caller must bound the identity provider call well within Config.Lease.
//
// # Keys
//
// All under Config.Prefix:
//
//	users:person:EMAIL  HASH  email, name, sub, iss, groups (JSON), admin (0|1),
//	                          first_login, last_login, last_check (RFC 3339),
//	                          rt (sealed refresh token, binary)
//	users:index         ZSET  every email, score 0: List reads it in email order
//	users:last-login    ZSET  email → last sign-in (Unix ms): the LastLogin map's source
//	users:recheck       ZSET  email → next re-check (Unix ms), only people with a token
//	users:claim:EMAIL   STRING random claim value, expires after Config.Lease
//	users:logins        pub/sub channel: {"e":EMAIL,"t":UNIX_MS} per sign-in
//
// Every command touches one key; several are pipelined, never wrapped in
// MULTI or a multi-key script, so the store works on Redis Cluster. The
// person hash is written before the indexes; a reader that finds an index
// entry without its hash skips it. go-redis is used in store.go, recheck.go
// and sync.go; seal.go holds the cryptography.
package users
