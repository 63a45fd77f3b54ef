package users_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/llmgate/llmgate/internal/redistest"
	"github.com/llmgate/llmgate/internal/users"
)

func TestConfigValidate(t *testing.T) {
	tests := []struct {
		name string
		cfg  users.Config
		want []string // substrings, one per expected error
	}{
		{"ok", users.Config{Secret: secret}, nil},
		{"ok, re-check off", users.Config{Secret: secret, RecheckInterval: 0}, nil},
		{"short secret", users.Config{Secret: []byte("short")}, []string{"LLMGATE_SECRET"}},
		{"everything wrong", users.Config{RecheckInterval: -1, SyncInterval: -1, Lease: -1},
			[]string{"LLMGATE_SECRET", "LLMGATE_USER_RECHECK_INTERVAL", "SyncInterval", "Lease"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			errs := tt.cfg.Validate()
			if len(errs) != len(tt.want) {
				t.Fatalf("Validate() = %v, want %d errors mentioning %q", errs, len(tt.want), tt.want)
			}
			for i, err := range errs {
				if !strings.Contains(err.Error(), tt.want[i]) {
					t.Errorf("Validate() error %d = %q, want it to mention %q", i, err, tt.want[i])
				}
			}
		})
	}
}

func TestLoginCreatesThenUpdates(t *testing.T) {
	redistest.Each(t, func(t *testing.T, srv *redistest.Server) {
		e := newEnv(t, srv)
		s := e.store(t, nil)
		ctx := context.Background()

		first := e.clock()
		p := person("  Alice@Example.COM ")
		p.Admin = true
		p.FirstLogin = time.Unix(1, 0) // ignored
		if err := s.Login(ctx, p, ""); err != nil {
			t.Fatalf("Login: %v", err)
		}
		want := users.Person{
			Email: "alice@example.com", Name: "Name of   Alice@Example.COM ", Subject: "sub-  Alice@Example.COM ",
			Issuer: "https://idp.example.com", Groups: []string{"eng", "ml"}, Admin: true,
			FirstLogin: first, LastLogin: first,
		}
		got, err := s.Get(ctx, "ALICE@example.com")
		if err != nil {
			t.Fatalf("Get after first Login: %v", err)
		}
		if d := cmp.Diff(want, got); d != "" {
			t.Errorf("Get after first Login (-want +got):\n%s", d)
		}

		e.advance(3 * time.Hour)
		second := e.clock()
		p2 := users.Person{Email: "alice@example.com", Name: "Alice A.", Subject: "sub-2", Issuer: "https://idp2", Groups: nil}
		if err := s.Login(ctx, p2, ""); err != nil {
			t.Fatalf("second Login: %v", err)
		}
		want = users.Person{
			Email: "alice@example.com", Name: "Alice A.", Subject: "sub-2", Issuer: "https://idp2",
			FirstLogin: first, LastLogin: second,
		}
		got, err = s.Get(ctx, "alice@example.com")
		if err != nil {
			t.Fatalf("Get after second Login: %v", err)
		}
		if d := cmp.Diff(want, got); d != "" {
			t.Errorf("Get after second Login: FirstLogin must stay, LastLogin move (-want +got):\n%s", d)
		}
		if at, ok := s.LastLogin("Alice@example.com"); !ok || !at.Equal(second.Truncate(time.Millisecond)) {
			t.Errorf("LastLogin on the same Store = %v, %v; want %v, true", at, ok, second.Truncate(time.Millisecond))
		}
		if n, err := s.Count(ctx); err != nil || n != 1 {
			t.Errorf("Count() = %d, %v; want 1, nil", n, err)
		}
	})
}

func TestLoginRejectsEmptyEmail(t *testing.T) {
	e := newEnv(t, redistest.Mini(t))
	s := e.store(t, nil)
	if err := s.Login(context.Background(), users.Person{Email: "  "}, "rt"); err == nil {
		t.Error("Login with an empty email: got nil error")
	}
}

func TestNotFound(t *testing.T) {
	redistest.Each(t, func(t *testing.T, srv *redistest.Server) {
		e := newEnv(t, srv)
		s := e.store(t, nil)
		login(t, s, "known@example.com", "rt")
		ctx := context.Background()
		tests := []struct {
			name string
			call func() error
		}{
			{"Get", func() error { _, err := s.Get(ctx, "nobody@example.com"); return err }},
			{"Get empty", func() error { _, err := s.Get(ctx, ""); return err }},
			{"Checked", func() error { return s.Checked(ctx, "nobody@example.com", "rt") }},
			{"Postpone", func() error { return s.Postpone(ctx, "nobody@example.com", time.Minute) }},
			{"Forget", func() error { return s.Forget(ctx, "nobody@example.com") }},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				if err := tt.call(); !errors.Is(err, users.ErrNotFound) {
					t.Errorf("%s(nobody@example.com) = %v, want ErrNotFound", tt.name, err)
				}
			})
		}
		if _, err := s.Get(ctx, "nobody@example.com"); err == nil || err.Error() != "person not found" {
			t.Errorf("Get error text = %v", err)
		}
		if n, _ := s.Count(ctx); n != 1 {
			t.Errorf("Count() = %d after calls on an unknown person, want 1 (nothing created)", n)
		}
	})
}

func TestListAndCount(t *testing.T) {
	redistest.Each(t, func(t *testing.T, srv *redistest.Server) {
		e := newEnv(t, srv)
		s := e.store(t, nil)
		ctx := context.Background()
		var all []string
		for _, name := range []string{"gus", "Dora", "alice", "eve", "bob", "carol", "fay"} {
			login(t, s, name+"@example.com", "")
			e.advance(time.Minute)
			all = append(all, strings.ToLower(name)+"@example.com")
		}
		// Signing in again neither duplicates nor reorders.
		login(t, s, "bob@example.com", "")
		want := []string{"alice@example.com", "bob@example.com", "carol@example.com", "dora@example.com",
			"eve@example.com", "fay@example.com", "gus@example.com"}

		if n, err := s.Count(ctx); err != nil || n != len(want) {
			t.Fatalf("Count() = %d, %v; want %d", n, err, len(want))
		}
		tests := []struct {
			limit int
			pages int
		}{{1, 7}, {3, 3}, {6, 2}, {7, 1}, {8, 1}, {0, 1}, {-5, 1}, {5000, 1}}
		for _, tt := range tests {
			t.Run(fmt.Sprintf("limit=%d", tt.limit), func(t *testing.T) {
				var got []string
				cursor, pages := "", 0
				for {
					list, next, err := s.List(ctx, cursor, tt.limit)
					if err != nil {
						t.Fatalf("List(%q, %d): %v", cursor, tt.limit, err)
					}
					pages++
					if pages > 10 {
						t.Fatalf("List(%q, %d): more than 10 pages", cursor, tt.limit)
					}
					for _, p := range list {
						got = append(got, p.Email)
						if p.FirstLogin.IsZero() || p.Name == "" {
							t.Errorf("List returned %s without its record: %+v", p.Email, p)
						}
					}
					if next == "" {
						break
					}
					cursor = next
				}
				if d := cmp.Diff(want, got); d != "" {
					t.Errorf("List pages of %d (-want +got):\n%s", tt.limit, d)
				}
				if pages != tt.pages {
					t.Errorf("List pages of %d: %d pages, want %d", tt.limit, pages, tt.pages)
				}
			})
		}
		t.Run("cursor in any case", func(t *testing.T) {
			list, _, err := s.List(ctx, "DORA@example.com", 1)
			if err != nil || len(list) != 1 || list[0].Email != "eve@example.com" {
				t.Errorf("List(DORA@example.com, 1) = %v, %v; want eve@example.com", list, err)
			}
		})
		t.Run("empty store", func(t *testing.T) {
			empty := newEnv(t, redistest.Mini(t)).store(t, nil)
			list, next, err := empty.List(ctx, "", 10)
			if err != nil || len(list) != 0 || next != "" {
				t.Errorf("List on an empty store = %v, %q, %v; want nothing", list, next, err)
			}
		})
	})
}
