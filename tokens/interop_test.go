package tokens

import (
	"testing"
	"time"

	"github.com/lestrrat-go/jwx/v2/jwk"
	"github.com/lestrrat-go/jwx/v2/jws"
	"github.com/lestrrat-go/jwx/v2/jwt"

	"github.com/llmgate/llmgate/internal/redistest"
)

// TestJWKSInterop: an upstream that verifies tokens itself from
// /.well-known/jwks.json, with jwx's own JWT validation, accepts ours and
// reads the same claims; and refuses them once expired.
func TestJWKSInterop(t *testing.T) {
	srv := redistest.Mini(t)
	for _, alg := range []string{AlgEdDSA, AlgES256} {
		t.Run(alg, func(t *testing.T) {
			clk := newClock()
			s := newService(t, &redistest.Server{Client: srv.Client, Prefix: srv.Prefix + alg + ":"}, withClock(clk), quiet, func(c *Config) { c.Algorithm = alg })
			raw, rec := issue(t, s, IssueRequest{TTL: time.Hour, Models: []string{"m1"}})
			set, err := jwk.Parse(s.JWKS())
			if err != nil {
				t.Fatalf("jwk.Parse(JWKS): %v", err)
			}
			opts := []jwt.ParseOption{
				jwt.WithKeySet(set, jws.WithInferAlgorithmFromKey(false), jws.WithRequireKid(true)),
				jwt.WithValidate(true),
				jwt.WithClock(jwt.ClockFunc(clk.Now)),
				jwt.WithAcceptableSkew(30 * time.Second),
				jwt.WithIssuer(testIssuer),
				jwt.WithAudience("llmgate"),
				jwt.WithRequiredClaim("email"),
				jwt.WithRequiredClaim("scope"),
			}
			tok, err := jwt.ParseString(raw, opts...)
			if err != nil {
				t.Fatalf("jwt.ParseString with the published JWKS: %v", err)
			}
			email, _ := tok.Get("email")
			if tok.JwtID() != rec.ID || email != rec.Email || !tok.Expiration().Equal(rec.ExpiresAt) {
				t.Errorf("jwx read jti %s, email %v, exp %v; want %s, %s, %v", tok.JwtID(), email, tok.Expiration(), rec.ID, rec.Email, rec.ExpiresAt)
			}
			clk.Advance(time.Hour + time.Minute)
			if _, err := jwt.ParseString(raw, opts...); err == nil {
				t.Errorf("jwx accepted the token after its expiry")
			}
			wantRefused(t, s, raw, ScopeLLM, ErrExpired)
		})
	}
}
