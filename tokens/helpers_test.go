package tokens

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"math/big"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/llmgate/llmgate/internal/redistest"
)

// testSecret is 32 bytes, the minimum.
var testSecret = []byte("0123456789abcdef0123456789abcdef")

const testIssuer = "https://llmgate.example.com"

// clock is a settable clock for tests.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func newClock() *clock { return &clock{t: time.Now().Truncate(time.Second)} }

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// newService starts a Service on srv (with srv's prefix) and closes it when
// the test ends.
func newService(tb testing.TB, srv *redistest.Server, mods ...func(*Config)) *Service {
	tb.Helper()
	cfg := Config{Issuer: testIssuer, Secret: testSecret, Prefix: srv.Prefix}
	for _, m := range mods {
		m(&cfg)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	s, err := New(ctx, srv.Client, cfg)
	if err != nil {
		tb.Fatalf("New: %v", err)
	}
	tb.Cleanup(func() { s.Close() })
	return s
}

func withClock(c *clock) func(*Config) { return func(cfg *Config) { cfg.Now = c.Now } }

// issue mints a token with sensible defaults for req's empty fields.
func issue(tb testing.TB, s *Service, req IssueRequest) (string, Record) {
	tb.Helper()
	if req.Name == "" {
		req.Name = "laptop"
	}
	if req.Email == "" {
		req.Email = "alice@example.com"
	}
	if req.Subject == "" {
		req.Subject = "sub-" + req.Email
	}
	raw, rec, err := s.Issue(context.Background(), req)
	if err != nil {
		tb.Fatalf("Issue(%+v): %v", req, err)
	}
	return raw, rec
}

// verifyOK verifies raw for scope "llm" and fails the test if it is refused.
func verifyOK(tb testing.TB, s *Service, raw string) *Claims {
	tb.Helper()
	c, err := s.Verify(context.Background(), raw, ScopeLLM)
	if err != nil {
		tb.Fatalf("Verify(token) = %v, want it accepted", err)
	}
	return c
}

// wantRefused verifies raw and fails unless it is refused with want.
func wantRefused(tb testing.TB, s *Service, raw, scope string, want error) error {
	tb.Helper()
	c, err := s.Verify(context.Background(), raw, scope)
	if !errors.Is(err, want) {
		tb.Fatalf("Verify(%.60q…, %q) = %v, %v; want error %v", raw, scope, c, err, want)
	}
	return err
}

var b64 = base64.RawURLEncoding

func mustJSON(tb testing.TB, v any) []byte {
	tb.Helper()
	data, err := json.Marshal(v)
	if err != nil {
		tb.Fatalf("json.Marshal: %v", err)
	}
	return data
}

// compact assembles header.payload.signature, signing with sign (nil: no signature).
func compact(tb testing.TB, header, claims map[string]any, sign func([]byte) []byte) string {
	tb.Helper()
	input := b64.EncodeToString(mustJSON(tb, header)) + "." + b64.EncodeToString(mustJSON(tb, claims))
	var sig []byte
	if sign != nil {
		sig = sign([]byte(input))
	}
	return input + "." + b64.EncodeToString(sig)
}

// signerOf returns a signing function for a raw private key.
func signerOf(tb testing.TB, key crypto.Signer) func([]byte) []byte {
	tb.Helper()
	switch k := key.(type) {
	case ed25519.PrivateKey:
		return func(in []byte) []byte { return ed25519.Sign(k, in) }
	case *ecdsa.PrivateKey:
		return func(in []byte) []byte {
			h := sha256.Sum256(in)
			r, s, err := ecdsa.Sign(rand.Reader, k, h[:])
			if err != nil {
				tb.Fatalf("ecdsa.Sign: %v", err)
			}
			out := make([]byte, 64)
			r.FillBytes(out[:32])
			s.FillBytes(out[32:])
			return lowS(out)
		}
	}
	tb.Fatalf("signerOf: unsupported key %T", key)
	return nil
}

// rawKey returns the private key of k.
func rawKey(tb testing.TB, k *signingKey) crypto.Signer {
	tb.Helper()
	var raw any
	if err := k.priv.Raw(&raw); err != nil {
		tb.Fatalf("Raw: %v", err)
	}
	switch r := raw.(type) {
	case ed25519.PrivateKey:
		return r
	case *ecdsa.PrivateKey:
		return r
	case ecdsa.PrivateKey:
		return &r
	}
	tb.Fatalf("rawKey: %T", raw)
	return nil
}

// parts decodes the header and claims of a token without verifying it.
func parts(tb testing.TB, raw string) (header, claims map[string]any) {
	tb.Helper()
	p := strings.Split(raw, ".")
	if len(p) != 3 {
		tb.Fatalf("token has %d parts", len(p))
	}
	for i, dst := range []*map[string]any{&header, &claims} {
		data, err := b64.DecodeString(p[i])
		if err != nil {
			tb.Fatalf("decode part %d: %v", i, err)
		}
		if err := json.Unmarshal(data, dst); err != nil {
			tb.Fatalf("decode part %d: %v", i, err)
		}
	}
	return header, claims
}

// highS flips an ES256 signature to its high-s twin.
func highS(sig []byte) []byte {
	n := new(big.Int).Set(p256HalfOrder)
	n.Lsh(n, 1).Add(n, big.NewInt(1)) // the order
	s := new(big.Int).SetBytes(sig[32:])
	s.Sub(n, s)
	out := append([]byte(nil), sig...)
	s.FillBytes(out[32:])
	return out
}
