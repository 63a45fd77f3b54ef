package tokens

import (
	"context"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"maps"
	"strings"
	"testing"
	"time"

	"github.com/llmgate/llmgate/internal/redistest"
)

// TestVerifyRefuses is the adversarial table: every token is refused with
// the sentinel the gateway maps to the right answer, and the reason is
// logged.
func TestVerifyRefuses(t *testing.T) {
	redistest.Each(t, func(t *testing.T, srv *redistest.Server) {
		ctx := context.Background()
		clk := newClock()
		s := newService(t, srv, withClock(clk))

		// Retire the first key: rotate, then let every token it could have
		// signed expire, then rotate again (which deletes it).
		retired := s.ring.Load().signer(clk.Now())
		retiredSign := signerOf(t, rawKey(t, retired))
		clk.Advance(s.cfg.Rotation)
		if err := s.rotate(ctx); err != nil {
			t.Fatalf("rotate: %v", err)
		}
		clk.Advance(s.cfg.MaxTTL + s.cfg.Leeway + time.Second)
		if err := s.rotate(ctx); err != nil {
			t.Fatalf("rotate: %v", err)
		}
		cur := s.ring.Load().signer(clk.Now())
		if cur.kid == retired.kid {
			t.Fatalf("signer is still the first key after two rotations")
		}
		curSign := signerOf(t, rawKey(t, cur))

		_, rec := issue(t, s, IssueRequest{})
		claims := func(mod func(map[string]any)) map[string]any {
			now := clk.Now()
			c := map[string]any{
				"iss": testIssuer, "aud": "llmgate", "sub": rec.Subject, "client_id": "llmgate-api",
				"email": rec.Email, "name": "Alice", "jti": rec.ID, "scope": "llm",
				"iat": now.Unix(), "nbf": now.Unix(), "exp": now.Add(time.Hour).Unix(),
			}
			if mod != nil {
				mod(c)
			}
			return c
		}
		header := func(mod func(map[string]any)) map[string]any {
			h := map[string]any{"alg": "EdDSA", "kid": cur.kid, "typ": "at+jwt"}
			if mod != nil {
				mod(h)
			}
			return h
		}

		// The forging helpers are right: an unmodified forged token passes.
		verifyOK(t, s, compact(t, header(nil), claims(nil), curSign))

		_, attacker, _ := ed25519.GenerateKey(rand.Reader)
		attackerSign := signerOf(t, attacker)
		attackerJWK := map[string]any{"kty": "OKP", "crv": "Ed25519", "x": b64.EncodeToString(attacker.Public().(ed25519.PublicKey)), "kid": "attacker"}
		var pub ed25519.PublicKey
		if err := cur.pub.Raw(&pub); err != nil {
			t.Fatalf("public key: %v", err)
		}
		hmacWith := func(key []byte) func([]byte) []byte {
			return func(in []byte) []byte { m := hmac.New(sha256.New, key); m.Write(in); return m.Sum(nil) }
		}
		other := newService(t, &redistest.Server{Client: srv.Client, Prefix: srv.Prefix + "other:"}, func(c *Config) {
			c.Secret = []byte(strings.Repeat("x", 32))
		})
		ecKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)

		tests := []struct {
			name  string
			token func(t *testing.T) string
			scope string
			want  error
		}{
			{"alg none", func(t *testing.T) string {
				return compact(t, header(func(h map[string]any) { h["alg"] = "none" }), claims(nil), nil)
			}, "", ErrSignature},
			{"alg none with a signature", func(t *testing.T) string {
				return compact(t, header(func(h map[string]any) { h["alg"] = "none" }), claims(nil), curSign)
			}, "", ErrSignature},
			{"HS256 keyed with the public key", func(t *testing.T) string {
				return compact(t, header(func(h map[string]any) { h["alg"] = "HS256" }), claims(nil), hmacWith(pub))
			}, "", ErrSignature},
			{"HS256 keyed with the JWKS", func(t *testing.T) string {
				return compact(t, header(func(h map[string]any) { h["alg"] = "HS256" }), claims(nil), hmacWith(s.JWKS()))
			}, "", ErrSignature},
			{"ES256 under an EdDSA kid", func(t *testing.T) string {
				return compact(t, header(func(h map[string]any) { h["alg"] = "ES256" }), claims(nil), signerOf(t, ecKey))
			}, "", ErrSignature},
			{"RS256", func(t *testing.T) string {
				return compact(t, header(func(h map[string]any) { h["alg"] = "RS256" }), claims(nil), curSign)
			}, "", ErrSignature},
			{"unknown kid", func(t *testing.T) string {
				return compact(t, header(func(h map[string]any) { h["kid"] = "no-such-key" }), claims(nil), curSign)
			}, "", ErrSignature},
			{"no kid", func(t *testing.T) string {
				return compact(t, header(func(h map[string]any) { delete(h, "kid") }), claims(nil), curSign)
			}, "", ErrSignature},
			{"kid of a retired and expired key", func(t *testing.T) string {
				return compact(t, header(func(h map[string]any) { h["kid"] = retired.kid }), claims(nil), retiredSign)
			}, "", ErrSignature},
			{"jku to an attacker key set", func(t *testing.T) string {
				return compact(t, header(func(h map[string]any) { h["kid"] = "attacker"; h["jku"] = "https://evil.example/jwks.json" }), claims(nil), attackerSign)
			}, "", ErrSignature},
			{"jwk embedding the attacker key", func(t *testing.T) string {
				return compact(t, header(func(h map[string]any) { h["kid"] = "attacker"; h["jwk"] = attackerJWK }), claims(nil), attackerSign)
			}, "", ErrSignature},
			{"jwk under our kid", func(t *testing.T) string {
				return compact(t, header(func(h map[string]any) { h["jwk"] = attackerJWK }), claims(nil), attackerSign)
			}, "", ErrSignature},
			{"x5u to an attacker certificate", func(t *testing.T) string {
				return compact(t, header(func(h map[string]any) { h["kid"] = "attacker"; h["x5u"] = "https://evil.example/cert.pem" }), claims(nil), attackerSign)
			}, "", ErrSignature},
			{"x5c chain", func(t *testing.T) string {
				return compact(t, header(func(h map[string]any) { h["x5c"] = []string{"MIIB"} }), claims(nil), attackerSign)
			}, "", ErrSignature},
			{"our kid, attacker's signature", func(t *testing.T) string {
				return compact(t, header(nil), claims(nil), attackerSign)
			}, "", ErrSignature},
			{"crit header", func(t *testing.T) string {
				return compact(t, header(func(h map[string]any) { h["crit"] = []string{"b64"}; h["b64"] = false }), claims(nil), curSign)
			}, "", ErrMalformed},
			{"expired", func(t *testing.T) string {
				return compact(t, header(nil), claims(func(c map[string]any) {
					now := clk.Now()
					c["iat"], c["nbf"], c["exp"] = now.Add(-2*time.Hour).Unix(), now.Add(-2*time.Hour).Unix(), now.Add(-time.Hour).Unix()
				}), curSign)
			}, "", ErrExpired},
			{"expired beyond the leeway", func(t *testing.T) string {
				return compact(t, header(nil), claims(func(c map[string]any) {
					c["exp"] = clk.Now().Add(-s.cfg.Leeway - time.Second).Unix()
				}), curSign)
			}, "", ErrExpired},
			{"exp zero", func(t *testing.T) string {
				return compact(t, header(nil), claims(func(c map[string]any) { c["exp"] = 0 }), curSign)
			}, "", ErrClaims},
			{"nbf in the future", func(t *testing.T) string {
				return compact(t, header(nil), claims(func(c map[string]any) { c["nbf"] = clk.Now().Add(time.Hour).Unix() }), curSign)
			}, "", ErrNotYetValid},
			{"iat in the future", func(t *testing.T) string {
				return compact(t, header(nil), claims(func(c map[string]any) { c["iat"] = clk.Now().Add(time.Hour).Unix() }), curSign)
			}, "", ErrNotYetValid},
			{"wrong iss", func(t *testing.T) string {
				return compact(t, header(nil), claims(func(c map[string]any) { c["iss"] = "https://evil.example" }), curSign)
			}, "", ErrClaims},
			{"wrong aud", func(t *testing.T) string {
				return compact(t, header(nil), claims(func(c map[string]any) { c["aud"] = "litellm" }), curSign)
			}, "", ErrClaims},
			{"no email", func(t *testing.T) string {
				return compact(t, header(nil), claims(func(c map[string]any) { delete(c, "email") }), curSign)
			}, "", ErrClaims},
			{"jti not ours", func(t *testing.T) string {
				return compact(t, header(nil), claims(func(c map[string]any) { c["jti"] = "x" }), curSign)
			}, "", ErrClaims},
			{"email differs from the record", func(t *testing.T) string {
				return compact(t, header(nil), claims(func(c map[string]any) { c["email"] = "mallory@example.com" }), curSign)
			}, "", ErrClaims},
			{"no record (deleted)", func(t *testing.T) string {
				return compact(t, header(nil), claims(func(c map[string]any) { c["jti"] = newID() }), curSign)
			}, "", ErrRevoked},
			{"tampered payload (email changed)", func(t *testing.T) string {
				raw, _ := issue(t, s, IssueRequest{})
				p := strings.Split(raw, ".")
				_, c := parts(t, raw)
				c["email"] = "mallory@example.com"
				return p[0] + "." + b64.EncodeToString(mustJSON(t, c)) + "." + p[2]
			}, "", ErrSignature},
			{"truncated signature", func(t *testing.T) string {
				raw, _ := issue(t, s, IssueRequest{})
				i := strings.LastIndexByte(raw, '.')
				sig, _ := b64.DecodeString(raw[i+1:])
				return raw[:i+1] + b64.EncodeToString(sig[:len(sig)-1])
			}, "", ErrSignature},
			{"signature cut mid-character", func(t *testing.T) string {
				raw, _ := issue(t, s, IssueRequest{})
				return raw[:len(raw)-1]
			}, "", ErrMalformed},
			{"no signature", func(t *testing.T) string {
				raw, _ := issue(t, s, IssueRequest{})
				return raw[:strings.LastIndexByte(raw, '.')+1]
			}, "", ErrSignature},
			{"signed by another deployment", func(t *testing.T) string {
				raw, _ := issue(t, other, IssueRequest{})
				return raw
			}, "", ErrSignature},
			{"scope without llm", func(t *testing.T) string {
				raw, _ := issue(t, s, IssueRequest{Scopes: []string{ScopeTokens}})
				return raw
			}, ScopeLLM, ErrScope},
			{"llm token on the tokens API", func(t *testing.T) string {
				raw, _ := issue(t, s, IssueRequest{})
				return raw
			}, ScopeTokens, ErrScope},
			{"typ JWT", func(t *testing.T) string {
				return compact(t, header(func(h map[string]any) { h["typ"] = "JWT" }), claims(nil), curSign)
			}, "", ErrClaims},
			{"no typ", func(t *testing.T) string {
				return compact(t, header(func(h map[string]any) { delete(h, "typ") }), claims(nil), curSign)
			}, "", ErrClaims},
			{"revoked jti", func(t *testing.T) string {
				raw, rec := issue(t, s, IssueRequest{})
				verifyOK(t, s, raw)
				if _, err := s.Revoke(ctx, rec.ID, "alice@example.com"); err != nil {
					t.Fatalf("Revoke: %v", err)
				}
				return raw
			}, "", ErrRevoked},
			{"revoked before first use", func(t *testing.T) string {
				raw, rec := issue(t, s, IssueRequest{})
				if _, err := s.Revoke(ctx, rec.ID, "alice@example.com"); err != nil {
					t.Fatalf("Revoke: %v", err)
				}
				return raw
			}, "", ErrRevoked},
			{"user revoked-since", func(t *testing.T) string {
				raw, _ := issue(t, s, IssueRequest{Email: "carol@example.com"})
				verifyOK(t, s, raw)
				clk.Advance(time.Millisecond)
				if _, err := s.RevokeUser(ctx, "carol@example.com", "admin@example.com"); err != nil {
					t.Fatalf("RevokeUser: %v", err)
				}
				return raw
			}, "", ErrUserRevoked},
			{"blocked user", func(t *testing.T) string {
				raw, _ := issue(t, s, IssueRequest{Email: "dave@example.com"})
				verifyOK(t, s, raw)
				if err := s.Block(ctx, "dave@example.com", "admin@example.com"); err != nil {
					t.Fatalf("Block: %v", err)
				}
				return raw
			}, "", ErrUserBlocked},
			{"empty", func(t *testing.T) string { return "" }, "", ErrMalformed},
			{"garbage", func(t *testing.T) string { return "not a token" }, "", ErrMalformed},
			{"two parts", func(t *testing.T) string { return "eyJhbGciOiJFZERTQSJ9.e30" }, "", ErrMalformed},
			{"JSON serialization", func(t *testing.T) string {
				raw, _ := issue(t, s, IssueRequest{})
				p := strings.Split(raw, ".")
				return `{"payload":"` + p[1] + `","protected":"` + p[0] + `","signature":"` + p[2] + `"}`
			}, "", ErrMalformed},
			{"padded base64", func(t *testing.T) string {
				raw, _ := issue(t, s, IssueRequest{})
				return raw + "=="
			}, "", ErrMalformed},
			{"non-canonical base64 (same bytes)", func(t *testing.T) string {
				raw, _ := issue(t, s, IssueRequest{})
				// The signature's 86th character carries 2 bits of data and 4 of padding.
				last := raw[len(raw)-1]
				i := strings.IndexByte(b64Alphabet, last)
				return raw[:len(raw)-1] + string(b64Alphabet[i|1])
			}, "", ErrMalformed},
			{"oversized", func(t *testing.T) string { return strings.Repeat("a", maxTokenBytes+1) }, "", ErrMalformed},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				scope := tt.scope
				if scope == "" {
					scope = ScopeLLM
				}
				raw := tt.token(t)
				err := wantRefused(t, s, raw, scope, tt.want)
				t.Logf("refused: %v", err)
				// A refused token is not cached: the second answer is the same.
				wantRefused(t, s, raw, scope, tt.want)
			})
		}
	})
}

const b64Alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"

// TestVerifyAccepts checks the claims Verify returns and the cached path.
func TestVerifyAccepts(t *testing.T) {
	redistest.Each(t, func(t *testing.T, srv *redistest.Server) {
		clk := newClock()
		s := newService(t, srv, withClock(clk))
		raw, rec := issue(t, s, IssueRequest{
			Name: "ci", Email: "Alice@Example.com", Subject: "00u1", UserName: "Alice Doe", ClientID: ClientCLI,
			TTL: time.Hour, Scopes: []string{ScopeLLM, ScopeTokens}, Models: []string{"gpt-4o", "claude-sonnet-4-6"},
			RPM: 60, CIDRs: []string{"10.1.2.3/8", "2001:db8::/32"}, MaxCostUSD: 12.5,
		})
		c := verifyOK(t, s, raw)
		now := clk.Now()
		want := &Claims{
			ID: rec.ID, Subject: "00u1", Email: "alice@example.com", Name: "Alice Doe", ClientID: ClientCLI,
			Scopes: []string{"llm", "tokens"}, Models: []string{"gpt-4o", "claude-sonnet-4-6"},
			RPM: 60, CIDRs: []string{"10.0.0.0/8", "2001:db8::/32"}, MaxCostUSD: 12.5,
			IssuedAt: now, NotBefore: now, ExpiresAt: now.Add(time.Hour),
		}
		if diff := claimsDiff(want, c); diff != "" {
			t.Errorf("Verify claims mismatch (-want +got):\n%s", diff)
		}
		if !c.AllowsAddr(mustAddr(t, "10.200.0.1")) || c.AllowsAddr(mustAddr(t, "192.168.0.1")) || !c.AllowsAddr(mustAddr(t, "::ffff:10.0.0.1")) {
			t.Errorf("AllowsAddr does not follow cidrs %v", c.CIDRs)
		}
		if !c.AllowsModel("gpt-4o") || c.AllowsModel("gpt-5") {
			t.Errorf("AllowsModel does not follow models %v", c.Models)
		}
		// Seen before: same pointer, and the tokens scope works too.
		c2, err := s.Verify(context.Background(), raw, ScopeTokens)
		if err != nil || c2 != c {
			t.Errorf("second Verify = %p, %v; want the cached %p", c2, err, c)
		}
		// Exactly the header RFC 9068 asks for.
		h, cl := parts(t, raw)
		if diff := mapDiff(map[string]any{"alg": "EdDSA", "typ": "at+jwt", "kid": s.ring.Load().signer(now).kid}, h); diff != "" {
			t.Errorf("header mismatch (-want +got):\n%s", diff)
		}
		for _, k := range []string{"iss", "aud", "sub", "client_id", "email", "name", "jti", "iat", "nbf", "exp", "scope", "models"} {
			if _, ok := cl[k]; !ok {
				t.Errorf("claim %q missing from %v", k, cl)
			}
		}
		if cl["aud"] != "llmgate" || cl["scope"] != "llm tokens" || cl["iss"] != testIssuer {
			t.Errorf("aud, scope, iss = %v, %v, %v", cl["aud"], cl["scope"], cl["iss"])
		}

		// Leeway: valid 30s past exp, refused after; the cached path agrees.
		clk.Advance(time.Hour + 20*time.Second)
		verifyOK(t, s, raw)
		clk.Advance(11 * time.Second)
		wantRefused(t, s, raw, ScopeLLM, ErrExpired)
		s.cache.remove(raw)
		wantRefused(t, s, raw, ScopeLLM, ErrExpired)
	})
}

// TestVerifyES256 runs issue and verify with ES256 keys and checks that the
// high-s twin of a signature is refused.
func TestVerifyES256(t *testing.T) {
	redistest.Each(t, func(t *testing.T, srv *redistest.Server) {
		s := newService(t, srv, func(c *Config) { c.Algorithm = AlgES256 })
		raw, _ := issue(t, s, IssueRequest{})
		h, _ := parts(t, raw)
		if h["alg"] != "ES256" {
			t.Fatalf("alg = %v, want ES256", h["alg"])
		}
		verifyOK(t, s, raw)
		i := strings.LastIndexByte(raw, '.')
		sig, _ := b64.DecodeString(raw[i+1:])
		twin := raw[:i+1] + b64.EncodeToString(highS(sig))
		err := wantRefused(t, s, twin, ScopeLLM, ErrSignature)
		t.Logf("high-s twin refused: %v", err)
		if !strings.Contains(string(s.JWKS()), `"crv":"P-256"`) {
			t.Errorf("JWKS %s has no P-256 key", s.JWKS())
		}
	})
}

// TestVerifyUnknownRecord: a token whose record was deleted is refused
// the first time it is seen.
func TestVerifyUnknownRecord(t *testing.T) {
	redistest.Each(t, func(t *testing.T, srv *redistest.Server) {
		s := newService(t, srv)
		raw, rec := issue(t, s, IssueRequest{})
		if err := srv.Client.Del(context.Background(), s.tokKey(rec.ID)).Err(); err != nil {
			t.Fatalf("DEL: %v", err)
		}
		err := wantRefused(t, s, raw, ScopeLLM, ErrRevoked)
		t.Logf("refused: %v", err)
	})
}

func claimsDiff(want, got *Claims) string {
	w, g := *want, *got
	w.prefixes, g.prefixes = nil, nil
	return cmpDiff(w, g)
}

func mapDiff(want, got map[string]any) string {
	if maps.EqualFunc(want, got, func(a, b any) bool { return a == b }) {
		return ""
	}
	return cmpDiff(want, got)
}
