package grants

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/llmgate/llmgate/internal/redistest"
)

// testClock is real time plus the jumps a test makes.
type testClock struct {
	mu     sync.Mutex
	offset time.Duration
}

func (c *testClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return time.Now().Add(c.offset)
}

func (c *testClock) Add(d time.Duration) {
	c.mu.Lock()
	c.offset += d
	c.mu.Unlock()
}

func newStore(t *testing.T, rs *redistest.Server) (*Store, *testClock) {
	t.Helper()
	clk := &testClock{}
	return New(rs.Client, Config{Prefix: rs.Prefix, Now: clk.Now}), clk
}

var alice = Person{Email: "alice@example.com", Subject: "sub-alice", Name: "Alice", Groups: []string{"eng"}}

func TestCode(t *testing.T) {
	redistest.Each(t, func(t *testing.T, rs *redistest.Server) {
		ctx := context.Background()
		s, clk := newStore(t, rs)
		want := Code{Challenge: strings.Repeat("a", 43), RedirectURI: "http://127.0.0.1:5000/callback", Person: alice, TokenName: "cli", Host: "laptop"}
		code, err := s.NewCode(ctx, want)
		if err != nil {
			t.Fatalf("NewCode: %v", err)
		}
		if len(code) < 43 {
			t.Errorf("NewCode returned %q: want at least 256 bits in base64url (43 characters)", code)
		}
		if dump := rs.Dump(t); strings.Contains(dump, code) {
			t.Errorf("Redis holds the code itself:\n%s", dump)
		}
		got, err := s.TakeCode(ctx, code)
		if err != nil || got.Challenge != want.Challenge || got.RedirectURI != want.RedirectURI || got.Person.Email != alice.Email || got.Host != "laptop" {
			t.Fatalf("TakeCode = %+v, %v; want %+v", got, err, want)
		}
		if _, err := s.TakeCode(ctx, code); !errors.Is(err, ErrNotFound) {
			t.Errorf("second TakeCode: err %v, want ErrNotFound (single use)", err)
		}
		if _, err := s.TakeCode(ctx, "not-a-code"); !errors.Is(err, ErrNotFound) {
			t.Errorf("TakeCode(unknown): err %v, want ErrNotFound", err)
		}

		// Restored after a failure, it can be taken once more.
		if err := s.RestoreCode(ctx, code, got); err != nil {
			t.Fatalf("RestoreCode: %v", err)
		}
		if _, err := s.TakeCode(ctx, code); err != nil {
			t.Errorf("TakeCode after RestoreCode: %v", err)
		}

		// Expiry by the clock (and by Redis on miniredis).
		code, _ = s.NewCode(ctx, want)
		clk.Add(61 * time.Second)
		if rs.Mini != nil {
			rs.Mini.FastForward(61 * time.Second)
		}
		if _, err := s.TakeCode(ctx, code); !errors.Is(err, ErrNotFound) {
			t.Errorf("TakeCode after 61s: err %v, want ErrNotFound", err)
		}
	})
}

func TestCodeTakenOnce(t *testing.T) {
	redistest.Each(t, func(t *testing.T, rs *redistest.Server) {
		ctx := context.Background()
		s, _ := newStore(t, rs)
		code, err := s.NewCode(ctx, Code{Challenge: "c", RedirectURI: "r", Person: alice})
		if err != nil {
			t.Fatal(err)
		}
		var wg sync.WaitGroup
		var mu sync.Mutex
		wins := 0
		for range 8 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				if _, err := s.TakeCode(ctx, code); err == nil {
					mu.Lock()
					wins++
					mu.Unlock()
				}
			}()
		}
		wg.Wait()
		if wins != 1 {
			t.Errorf("8 concurrent TakeCode: %d succeeded, want exactly 1", wins)
		}
	})
}

func TestUserCode(t *testing.T) {
	seen := map[byte]int{}
	for range 2000 {
		c := newUserCode()
		if len(c) != 8 {
			t.Fatalf("newUserCode() = %q: want 8 letters", c)
		}
		for i := 0; i < len(c); i++ {
			if !strings.ContainsRune(UserCodeAlphabet, rune(c[i])) {
				t.Fatalf("newUserCode() = %q: %q is not in %s", c, c[i], UserCodeAlphabet)
			}
			seen[c[i]]++
		}
	}
	if len(seen) != 20 {
		t.Errorf("2000 user codes used %d letters, want all 20", len(seen))
	}
	tests := []struct {
		in   string
		want string
		ok   bool
	}{
		{"BCDF-GHJK", "BCDFGHJK", true},
		{"bcdfghjk", "BCDFGHJK", true},
		{" bcdf ghjk ", "BCDFGHJK", true},
		{"bcdf-ghj", "", false},
		{"BCDF-GHJA", "", false}, // vowel
		{"BCDF-GHJ1", "", false},
		{"BCDF-GHJKL", "", false},
		{"", "", false},
	}
	for _, tt := range tests {
		got, ok := NormalizeUserCode(tt.in)
		if got != tt.want || ok != tt.ok {
			t.Errorf("NormalizeUserCode(%q) = %q, %v; want %q, %v", tt.in, got, ok, tt.want, tt.ok)
		}
	}
	if got := FormatUserCode("BCDFGHJK"); got != "BCDF-GHJK" {
		t.Errorf("FormatUserCode = %q, want BCDF-GHJK", got)
	}
}

func TestDevice(t *testing.T) {
	redistest.Each(t, func(t *testing.T, rs *redistest.Server) {
		ctx := context.Background()
		s, clk := newStore(t, rs)
		dc, d, err := s.NewDevice(ctx, Device{ClientID: "claude-code", Surface: "claude_code", IP: "10.0.0.1"})
		if err != nil {
			t.Fatalf("NewDevice: %v", err)
		}
		if len(dc) < 43 || len(d.UserCode) != 8 || d.Status != StatusPending {
			t.Fatalf("NewDevice = %q, %+v: want a 256-bit device code and a pending grant with an 8-letter user code", dc, d)
		}
		if dump := rs.Dump(t); strings.Contains(dump, dc) {
			t.Errorf("Redis holds the device code itself:\n%s", dump)
		}

		// First poll: pending; an immediate second one: slow_down, +5s.
		if p, err := s.Poll(ctx, dc); err != nil || p.Outcome != PollPending || p.Interval != 5*time.Second {
			t.Fatalf("first Poll = %+v, %v; want pending, 5s", p, err)
		}
		if p, err := s.Poll(ctx, dc); err != nil || p.Outcome != PollSlowDown || p.Interval != 10*time.Second {
			t.Fatalf("immediate Poll = %+v, %v; want slow_down, 10s", p, err)
		}
		clk.Add(6 * time.Second)
		if p, _ := s.Poll(ctx, dc); p.Outcome != PollSlowDown || p.Interval != 15*time.Second {
			t.Errorf("Poll after 6s with a 10s interval = %+v; want slow_down, 15s", p)
		}
		clk.Add(16 * time.Second)
		if p, _ := s.Poll(ctx, dc); p.Outcome != PollPending {
			t.Errorf("Poll after 16s with a 15s interval = %+v; want pending", p)
		}

		// Lookup accepts what a person types.
		typed := strings.ToLower(FormatUserCode(d.UserCode))
		got, err := s.Lookup(ctx, typed)
		if err != nil || got.IP != "10.0.0.1" || got.Surface != "claude_code" || got.Status != StatusPending {
			t.Fatalf("Lookup(%q) = %+v, %v", typed, got, err)
		}
		if _, err := s.Lookup(ctx, "BCDF-GHJK"); !errors.Is(err, ErrNotFound) && d.UserCode != "BCDFGHJK" {
			t.Errorf("Lookup(unknown): err %v, want ErrNotFound", err)
		}

		got, err = s.Decide(ctx, d.UserCode, true, alice)
		if err != nil || got.Status != StatusApproved || got.Approver.Email != alice.Email {
			t.Fatalf("Decide(approve) = %+v, %v", got, err)
		}
		if _, err := s.Decide(ctx, d.UserCode, false, alice); !errors.Is(err, ErrDecided) {
			t.Errorf("second Decide: err %v, want ErrDecided", err)
		}

		// One poll takes the approval; Release gives it back; Finish ends it.
		p, err := s.Poll(ctx, dc)
		if err != nil || p.Outcome != PollApproved || p.Device.Approver == nil || p.Device.Approver.Subject != alice.Subject || len(p.Device.Approver.Groups) != 1 {
			t.Fatalf("Poll after approval = %+v, %v; want approved by alice with her groups", p, err)
		}
		if p, _ := s.Poll(ctx, dc); p.Outcome != PollUnknown {
			t.Errorf("Poll while taken = %+v; want unknown", p)
		}
		if err := s.Release(ctx, dc); err != nil {
			t.Fatal(err)
		}
		if p, _ := s.Poll(ctx, dc); p.Outcome != PollApproved {
			t.Errorf("Poll after Release = %+v; want approved", p)
		}
		if err := s.Finish(ctx, dc, d.UserCode); err != nil {
			t.Fatal(err)
		}
		if p, _ := s.Poll(ctx, dc); p.Outcome != PollUnknown {
			t.Errorf("Poll after Finish = %+v; want unknown", p)
		}
		if _, err := s.Lookup(ctx, d.UserCode); !errors.Is(err, ErrNotFound) {
			t.Errorf("Lookup after Finish: err %v, want ErrNotFound", err)
		}
	})
}

func TestDeviceDeniedAndExpired(t *testing.T) {
	redistest.Each(t, func(t *testing.T, rs *redistest.Server) {
		ctx := context.Background()
		s, clk := newStore(t, rs)
		dc, d, _ := s.NewDevice(ctx, Device{ClientID: "llmgate-cli"})
		if _, err := s.Decide(ctx, d.UserCode, false, alice); err != nil {
			t.Fatal(err)
		}
		if p, _ := s.Poll(ctx, dc); p.Outcome != PollDenied {
			t.Errorf("Poll after deny = %+v; want access_denied", p)
		}
		if p, _ := s.Poll(ctx, dc); p.Outcome != PollUnknown {
			t.Errorf("second Poll after deny = %+v; want unknown", p)
		}

		dc, d, _ = s.NewDevice(ctx, Device{ClientID: "llmgate-cli"})
		clk.Add(601 * time.Second)
		if p, _ := s.Poll(ctx, dc); p.Outcome != PollExpired {
			t.Errorf("Poll after 601s = %+v; want expired_token", p)
		}
		if _, err := s.Decide(ctx, d.UserCode, true, alice); !errors.Is(err, ErrExpired) {
			t.Errorf("Decide after 601s: err %v, want ErrExpired", err)
		}
	})
}

func TestWrongCodeLimit(t *testing.T) {
	redistest.Each(t, func(t *testing.T, rs *redistest.Server) {
		ctx := context.Background()
		s, _ := newStore(t, rs)
		for i := range 5 {
			if limited, err := s.WrongCodeLimited(ctx, "sess-a"); err != nil || limited {
				t.Fatalf("after %d wrong codes: limited %v (err %v), want false", i, limited, err)
			}
			if err := s.WrongCode(ctx, "sess-a"); err != nil {
				t.Fatal(err)
			}
		}
		if limited, _ := s.WrongCodeLimited(ctx, "sess-a"); !limited {
			t.Errorf("after 5 wrong codes: not limited, want limited")
		}
		if limited, _ := s.WrongCodeLimited(ctx, "sess-b"); limited {
			t.Errorf("another session is limited too, want only the one that guessed")
		}
		if rs.Mini != nil {
			rs.Mini.FastForward(61 * time.Second)
			if limited, _ := s.WrongCodeLimited(ctx, "sess-a"); limited {
				t.Errorf("a minute later: still limited, want the window over")
			}
		}
	})
}
