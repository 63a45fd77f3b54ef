package tokens

import (
	"context"
	"errors"
	"testing"

	"github.com/llmgate/llmgate/internal/redistest"
)

// refusals is every sentinel Verify may answer with.
var refusals = []error{ErrMalformed, ErrSignature, ErrExpired, ErrNotYetValid, ErrClaims, ErrScope,
	ErrRevoked, ErrUserBlocked, ErrUserRevoked, ErrUnavailable}

// fuzzFixture is a Service per algorithm with one valid token each.
type fuzzFixture struct {
	svcs  []*Service
	valid map[string]bool
}

func newFuzzFixture(tb testing.TB) *fuzzFixture {
	srv := redistest.Mini(tb)
	ed := newService(tb, srv, quiet)
	es := newService(tb, &redistest.Server{Client: srv.Client, Prefix: srv.Prefix + "es:"}, quiet, func(c *Config) { c.Algorithm = AlgES256 })
	f := &fuzzFixture{svcs: []*Service{ed, es}, valid: map[string]bool{}}
	for _, s := range f.svcs {
		raw, _ := issue(tb, s, IssueRequest{Models: []string{"gpt-4o"}, CIDRs: []string{"10.0.0.0/8"}, RPM: 10})
		f.valid[raw] = true
	}
	return f
}

// check verifies raw on every service: no panic, a known refusal, and
// nothing accepted but the exact valid tokens.
func (f *fuzzFixture) check(t *testing.T, raw string) {
	for _, s := range f.svcs {
		c, err := s.Verify(context.Background(), raw, ScopeLLM)
		if err == nil {
			if !f.valid[raw] {
				t.Fatalf("Verify accepted a token that is not one issued: %q", raw)
			}
			if c == nil {
				t.Fatalf("Verify returned nil claims and no error")
			}
			continue
		}
		known := false
		for _, r := range refusals {
			known = known || errors.Is(err, r)
		}
		if !known {
			t.Fatalf("Verify(%q) = %v: not one of the documented refusals", raw, err)
		}
	}
}

// FuzzVerify: random bytes and mutations of valid tokens never panic and
// are never accepted. go test -fuzz=FuzzVerify ./tokens/
func FuzzVerify(f *testing.F) {
	fx := newFuzzFixture(f)
	for raw := range fx.valid {
		f.Add(raw)
		f.Add(raw[:len(raw)-1])
		f.Add(raw + "A")
	}
	for _, s := range []string{"", ".", "..", "a.b.c", "e30.e30.", "eyJhbGciOiJub25lIn0.e30.", "{}", "\x00\xff"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, raw string) { fx.check(t, raw) })
}

// TestVerifyMutations runs every single-character mutation of valid EdDSA
// and ES256 tokens (substitutions at every position, and every alphabet
// character at the end of each part, where base64 could be non-canonical)
// through Verify: none is accepted.
func TestVerifyMutations(t *testing.T) {
	fx := newFuzzFixture(t)
	for raw := range fx.valid {
		seen := map[string]bool{}
		try := func(m string) {
			if m != raw && !seen[m] {
				seen[m] = true
				fx.check(t, m)
			}
		}
		for i := 0; i < len(raw); i++ {
			c := raw[i]
			for _, r := range []byte{c ^ 1, c ^ 0x20, '.', '=', '+'} {
				try(raw[:i] + string(r) + raw[i+1:])
			}
			try(raw[:i] + raw[i+1:])
			if i+1 == len(raw) || raw[i+1] == '.' { // the last character of a part
				for j := 0; j < len(b64Alphabet); j++ {
					try(raw[:i] + string(b64Alphabet[j]) + raw[i+1:])
				}
			}
		}
		t.Logf("%d mutations refused", len(seen))
	}
}
