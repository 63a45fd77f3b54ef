package tokens

import (
	"context"
	"crypto/ed25519"
	"encoding/json"
	"errors"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/llmgate/llmgate/internal/redistest"
)

// jwksKids returns the kids in a JWKS document and fails on private material.
func jwksKids(tb testing.TB, doc []byte) []string {
	tb.Helper()
	var set struct {
		Keys []map[string]any `json:"keys"`
	}
	if err := json.Unmarshal(doc, &set); err != nil {
		tb.Fatalf("JWKS %s: %v", doc, err)
	}
	var kids []string
	for _, k := range set.Keys {
		if _, ok := k["d"]; ok {
			tb.Fatalf("JWKS publishes a private key: %v", k)
		}
		if k["use"] != "sig" || k["alg"] == nil || k["kid"] == nil {
			tb.Errorf("JWKS key without use/alg/kid: %v", k)
		}
		kids = append(kids, k["kid"].(string))
	}
	slices.Sort(kids)
	return kids
}

func sorted(s ...string) []string { slices.Sort(s); return s }

// TestRotation: new tokens use the newest key, old-key tokens keep working
// until they expire, the JWKS holds both, a new replica loads both, other
// replicas pick up a rotation without restart, and a key leaves the JWKS
// (and Redis) once every token it signed has expired.
func TestRotation(t *testing.T) {
	redistest.Each(t, func(t *testing.T, srv *redistest.Server) {
		ctx := context.Background()
		clk := newClock()
		t0 := clk.Now()
		s1 := newService(t, srv, withClock(clk))
		cfg := s1.cfg
		k1 := s1.ring.Load().signer(t0)
		tokA, _ := issue(t, s1, IssueRequest{TTL: cfg.MaxTTL})
		if got := jwksKids(t, s1.JWKS()); !slices.Equal(got, []string{k1.kid}) {
			t.Fatalf("JWKS kids = %v, want [%s]", got, k1.kid)
		}

		// Not yet due: nothing happens.
		clk.Advance(cfg.Rotation / 2)
		if err := s1.rotate(ctx); err != nil {
			t.Fatalf("rotate: %v", err)
		}
		if n := len(s1.ring.Load().keys); n != 1 {
			t.Fatalf("keys after an early rotation check = %d, want 1", n)
		}

		// Within the lead time: the next key is published but not used yet.
		clk.Advance(cfg.Rotation/2 - s1.rotationLead() + time.Second)
		if err := s1.rotate(ctx); err != nil {
			t.Fatalf("rotate: %v", err)
		}
		ring := s1.ring.Load()
		k2 := ring.newest()
		if k2.kid == k1.kid || !k2.activatesAt.Equal(t0.Add(cfg.Rotation)) {
			t.Fatalf("next key %s activates at %v, want a new key at %v", k2.kid, k2.activatesAt, t0.Add(cfg.Rotation))
		}
		if got := ring.signer(clk.Now()); got.kid != k1.kid {
			t.Fatalf("signer before activation = %s, want the old key %s", got.kid, k1.kid)
		}
		if got, want := jwksKids(t, s1.JWKS()), sorted(k1.kid, k2.kid); !slices.Equal(got, want) {
			t.Fatalf("JWKS kids = %v, want %v (next key published ahead)", got, want)
		}

		// A new replica loads both keys.
		s2 := newService(t, srv, withClock(clk))
		if got, want := jwksKids(t, s2.JWKS()), sorted(k1.kid, k2.kid); !slices.Equal(got, want) {
			t.Fatalf("new replica JWKS kids = %v, want %v", got, want)
		}

		// Activation: new tokens use the new key; both verify everywhere.
		clk.Advance(s1.rotationLead())
		tokB, _ := issue(t, s1, IssueRequest{})
		if h, _ := parts(t, tokB); h["kid"] != k2.kid {
			t.Fatalf("token issued after activation has kid %v, want %s", h["kid"], k2.kid)
		}
		for _, s := range []*Service{s1, s2} {
			verifyOK(t, s, tokA)
			verifyOK(t, s, tokB)
		}
		s3 := newService(t, srv, withClock(clk))
		verifyOK(t, s3, tokA)
		verifyOK(t, s3, tokB)

		// tokA expires at t0+MaxTTL; its key stays published until every
		// token it could have signed has expired.
		clk.Advance(cfg.MaxTTL - cfg.Rotation + cfg.Leeway + time.Second)
		wantRefused(t, s1, tokA, ScopeLLM, ErrExpired)
		s3.cache.remove(tokA)
		wantRefused(t, s3, tokA, ScopeLLM, ErrExpired)
		if got := jwksKids(t, s1.JWKS()); !slices.Contains(got, k1.kid) {
			t.Fatalf("JWKS %v dropped the old key before its last token could expire", got)
		}

		// Past k1's retirement: refused even before the key is deleted.
		clk.Advance(cfg.Rotation)
		late := compact(t, map[string]any{"alg": "EdDSA", "kid": k1.kid, "typ": "at+jwt"}, map[string]any{
			"iss": testIssuer, "aud": "llmgate", "sub": "s", "client_id": "llmgate-api", "email": "alice@example.com",
			"jti": newID(), "scope": "llm", "iat": clk.Now().Unix(), "nbf": clk.Now().Unix(), "exp": clk.Now().Add(time.Hour).Unix(),
		}, signerOf(t, rawKey(t, k1)))
		err := wantRefused(t, s2, late, ScopeLLM, ErrSignature)
		t.Logf("retired key refused: %v", err)

		// The next rotation check deletes k1 and (overdue) makes k3 at once;
		// the other replicas pick it up by pub/sub, without a restart.
		if err := s1.rotate(ctx); err != nil {
			t.Fatalf("rotate: %v", err)
		}
		k3 := s1.ring.Load().newest()
		want := sorted(k2.kid, k3.kid)
		if got := jwksKids(t, s1.JWKS()); !slices.Equal(got, want) {
			t.Fatalf("JWKS after retirement = %v, want %v", got, want)
		}
		s1.cache.purge(func(e *cacheEntry) bool {
			if e.claims.kid == k1.kid {
				t.Errorf("token %s of the deleted key %s is still cached", e.claims.ID, k1.kid)
			}
			return false
		})
		n, err := srv.Client.HLen(ctx, s1.keysKey()).Result()
		if err != nil || n != 2 {
			t.Fatalf("stored keys = %d, %v; want 2 (the retired one deleted)", n, err)
		}
		start := time.Now()
		for !slices.Equal(jwksKids(t, s2.JWKS()), want) {
			if time.Since(start) > 2*time.Second {
				t.Fatalf("replica JWKS = %v after 2s, want %v", jwksKids(t, s2.JWKS()), want)
			}
			time.Sleep(5 * time.Millisecond)
		}
		t.Logf("replica picked up the rotation after %v", time.Since(start))
		tokC, _ := issue(t, s1, IssueRequest{})
		verifyOK(t, s3, tokC) // s3 may not have the event yet: an unknown kid triggers a reload
		tokD, _ := issue(t, s2, IssueRequest{})
		if h, _ := parts(t, tokD); h["kid"] != k3.kid {
			t.Fatalf("replica signs with %v after the rotation, want %s", h["kid"], k3.kid)
		}
		verifyOK(t, s1, tokD)
	})
}

// TestUnknownKidReload: a replica that missed a rotation (no pub/sub
// message) still verifies a token of the new key, by reloading the keys.
func TestUnknownKidReload(t *testing.T) {
	redistest.Each(t, func(t *testing.T, srv *redistest.Server) {
		clk := newClock()
		s1 := newService(t, srv, withClock(clk))
		s2 := newService(t, srv, withClock(clk))
		clk.Advance(s1.cfg.Rotation)
		// Rotate behind s2's back: create the key without publishing.
		if _, err := s1.createKey(context.Background(), 2, AlgEdDSA, clk.Now()); err != nil {
			t.Fatalf("createKey: %v", err)
		}
		if err := s1.loadKeys(context.Background(), false); err != nil {
			t.Fatalf("loadKeys: %v", err)
		}
		raw, _ := issue(t, s1, IssueRequest{})
		verifyOK(t, s2, raw)
	})
}

// TestWrongSecret: a Service whose secret does not decrypt the stored keys
// does not start and does not replace them.
func TestWrongSecret(t *testing.T) {
	redistest.Each(t, func(t *testing.T, srv *redistest.Server) {
		ctx := context.Background()
		s1 := newService(t, srv)
		before, err := srv.Client.HGetAll(ctx, s1.keysKey()).Result()
		if err != nil {
			t.Fatalf("HGETALL: %v", err)
		}
		s2, err := New(ctx, srv.Client, Config{Issuer: testIssuer, Secret: []byte(strings.Repeat("w", 32)), Prefix: srv.Prefix})
		if err == nil {
			s2.Close()
			t.Fatalf("New with another secret succeeded, want ErrWrongSecret")
		}
		if !errors.Is(err, ErrWrongSecret) {
			t.Fatalf("New with another secret = %v, want ErrWrongSecret", err)
		}
		t.Logf("refused: %v", err)
		after, _ := srv.Client.HGetAll(ctx, s1.keysKey()).Result()
		if diff := cmpDiff(before, after); diff != "" {
			t.Fatalf("stored keys changed (-before +after):\n%s", diff)
		}
	})
}

// TestKeysEncryptedAtRest: Redis holds only ciphertext of the private key.
func TestKeysEncryptedAtRest(t *testing.T) {
	redistest.Each(t, func(t *testing.T, srv *redistest.Server) {
		s := newService(t, srv)
		stored, err := srv.Client.HGetAll(context.Background(), s.keysKey()).Result()
		if err != nil || len(stored) != 1 {
			t.Fatalf("HGETALL keys = %v, %v; want one key", stored, err)
		}
		priv := rawKey(t, s.ring.Load().newest()).(ed25519.PrivateKey)
		var rec keyRecord
		if err := json.Unmarshal([]byte(stored["1"]), &rec); err != nil {
			t.Fatalf("stored key: %v", err)
		}
		for _, secret := range [][]byte{priv.Seed(), priv} {
			for _, enc := range []string{string(secret), b64.EncodeToString(secret), stdB64(secret)} {
				if strings.Contains(stored["1"], enc) {
					t.Fatalf("stored key record contains the private key in the clear")
				}
			}
		}
		if len(rec.Nonce) != 12 || len(rec.Sealed) < 48 || rec.Kid != s.ring.Load().newest().kid {
			t.Fatalf("stored record = %+v; want a 12-byte nonce, sealed PKCS #8 and the kid", rec)
		}
		// Tampering with the clear metadata breaks authentication.
		rec.Alg = AlgES256
		if _, err := s.seal.open(&rec); !errors.Is(err, ErrWrongSecret) {
			t.Fatalf("open with altered metadata = %v, want ErrWrongSecret", err)
		}
	})
}

// TestConcurrentStart: replicas starting together on an empty store agree
// on one first key.
func TestConcurrentStart(t *testing.T) {
	redistest.Each(t, func(t *testing.T, srv *redistest.Server) {
		const n = 6
		kids := make([]string, n)
		var wg sync.WaitGroup
		for i := range n {
			wg.Go(func() {
				s, err := New(context.Background(), srv.Client, Config{Issuer: testIssuer, Secret: testSecret, Prefix: srv.Prefix})
				if err != nil {
					t.Errorf("New: %v", err)
					return
				}
				defer s.Close()
				kids[i] = s.ring.Load().signer(time.Now()).kid
			})
		}
		wg.Wait()
		for i := range kids {
			if kids[i] != kids[0] {
				t.Fatalf("replicas sign with different keys: %v", kids)
			}
		}
		if n, _ := srv.Client.HLen(context.Background(), srv.Prefix+"tokens:keys").Result(); n != 1 {
			t.Fatalf("stored keys = %d, want 1", n)
		}
	})
}

// TestAlgorithmSwitch: a replica configured for ES256 over EdDSA keys makes
// an ES256 key at once; EdDSA tokens keep verifying.
func TestAlgorithmSwitch(t *testing.T) {
	redistest.Each(t, func(t *testing.T, srv *redistest.Server) {
		s1 := newService(t, srv)
		old, _ := issue(t, s1, IssueRequest{})
		s2 := newService(t, srv, func(c *Config) { c.Algorithm = AlgES256 })
		raw, _ := issue(t, s2, IssueRequest{})
		if h, _ := parts(t, raw); h["alg"] != AlgES256 {
			t.Fatalf("alg after switch = %v, want ES256", h["alg"])
		}
		verifyOK(t, s2, old)
		// s1 learns of the new key by pub/sub (it reloaded its keys less
		// than a second ago, so an unknown kid does not reload them again).
		h, _ := parts(t, raw)
		waitFor(t, func() bool { return s1.ring.Load().byKid[h["kid"].(string)] != nil })
		verifyOK(t, s1, raw)
	})
}

// waitFor polls cond for up to two seconds.
func waitFor(tb testing.TB, cond func() bool) {
	tb.Helper()
	deadline := time.Now().Add(2 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			tb.Fatalf("condition not met after 2s")
		}
		time.Sleep(2 * time.Millisecond)
	}
}
