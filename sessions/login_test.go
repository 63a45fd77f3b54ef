package sessions_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/llmgate/llmgate/internal/redistest"
	"github.com/llmgate/llmgate/sessions"
)

func TestLoginFlow(t *testing.T) {
	t.Parallel()
	redistest.Each(t, func(t *testing.T, srv *redistest.Server) {
		e := newEnv(t, srv, nil)
		ctx := context.Background()
		const state = "st4te-Zq8fX1vB7nK2mLp0wYc3RdE6hJ9tUa5s"
		f := sessions.LoginFlow{
			Nonce:        "nonce-abc",
			PKCEVerifier: "verifier-xyz",
			RedirectPath: "/ui/tokens",
			CreatedAt:    time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC),
		}
		if err := e.store.SaveLogin(ctx, state, f, 10*e.u); err != nil {
			t.Fatalf("SaveLogin: %v", err)
		}

		dump := e.dump(t)
		if strings.Contains(dump, state) {
			t.Errorf("the OAuth state is stored in Redis:\n%s", dump)
		}
		sum := sha256.Sum256([]byte(state))
		if key := srv.Prefix + "login:" + hex.EncodeToString(sum[:]); !strings.Contains(dump, "string "+key+" = ") {
			t.Errorf("Redis lacks the key %s; it holds:\n%s", key, dump)
		}

		if err := e.store.SaveLogin(ctx, state, f, 10*e.u); err == nil {
			t.Errorf("SaveLogin of a pending state succeeded, want an error")
		}

		got, err := e.store.TakeLogin(ctx, state)
		if err != nil {
			t.Fatalf("TakeLogin: %v", err)
		}
		if diff := cmp.Diff(f, got); diff != "" {
			t.Errorf("TakeLogin (-saved +taken):\n%s", diff)
		}
		if _, err := e.store.TakeLogin(ctx, state); !errors.Is(err, sessions.ErrNotFound) {
			t.Errorf("second TakeLogin error = %v, want ErrNotFound", err)
		}
		for _, s := range []string{"", "unknown-state", hex.EncodeToString(sum[:])} {
			if _, err := e.store.TakeLogin(ctx, s); !errors.Is(err, sessions.ErrNotFound) {
				t.Errorf("TakeLogin(%q) error = %v, want ErrNotFound", s, err)
			}
		}
		if dump := e.dump(t); dump != "" {
			t.Errorf("Redis still holds after TakeLogin:\n%s", dump)
		}
	})
}

func TestLoginFlowExpires(t *testing.T) {
	t.Parallel()
	redistest.Each(t, func(t *testing.T, srv *redistest.Server) {
		e := newEnv(t, srv, nil)
		ctx := context.Background()
		if err := e.store.SaveLogin(ctx, "old", sessions.LoginFlow{Nonce: "n"}, e.u); err != nil {
			t.Fatalf("SaveLogin: %v", err)
		}
		e.advance(e.u / 2)
		if err := e.store.SaveLogin(ctx, "young", sessions.LoginFlow{Nonce: "n"}, e.u); err != nil {
			t.Fatalf("SaveLogin: %v", err)
		}
		e.advance(3 * e.u / 4) // old is 1.25u, young 0.75u, both saved for 1u
		if _, err := e.store.TakeLogin(ctx, "old"); !errors.Is(err, sessions.ErrNotFound) {
			t.Errorf("TakeLogin after its ttl error = %v, want ErrNotFound", err)
		}
		if _, err := e.store.TakeLogin(ctx, "young"); err != nil {
			t.Errorf("TakeLogin within its ttl: %v", err)
		}
	})
}

func TestSaveLoginDefaultsAndRefusals(t *testing.T) {
	t.Parallel()
	srv := redistest.Mini(t)
	e := newEnv(t, srv, nil)
	ctx := context.Background()
	if err := e.store.SaveLogin(ctx, "s", sessions.LoginFlow{Nonce: "n"}, time.Minute); err != nil {
		t.Fatalf("SaveLogin: %v", err)
	}
	got, err := e.store.TakeLogin(ctx, "s")
	if err != nil {
		t.Fatalf("TakeLogin: %v", err)
	}
	if want := e.clock(); !got.CreatedAt.Equal(want) {
		t.Errorf("SaveLogin with zero CreatedAt stored %v, want now %v", got.CreatedAt, want)
	}
	tests := []struct {
		name  string
		state string
		ttl   time.Duration
	}{
		{"empty state", "", time.Minute},
		{"zero ttl", "s2", 0},
		{"negative ttl", "s3", -time.Second},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := e.store.SaveLogin(ctx, tt.state, sessions.LoginFlow{}, tt.ttl); err == nil {
				t.Errorf("SaveLogin(%q, ttl %v) succeeded, want an error", tt.state, tt.ttl)
			}
		})
	}
}
