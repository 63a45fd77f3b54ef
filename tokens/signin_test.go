package tokens

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/llmgate/llmgate/internal/redistest"
)

func startSignIn(t *testing.T, s *Service, email string) SignIn {
	t.Helper()
	si, err := s.StartSignIn(context.Background(), SignInRequest{
		Name: "Claude Code", Email: email, Subject: "sub-" + email, UserName: "Someone", ClientID: ClientClaudeCode,
		AccessTTL: time.Hour, RefreshTTL: 14 * 24 * time.Hour, Address: "10.1.2.3",
	})
	if err != nil {
		t.Fatalf("StartSignIn: %v", err)
	}
	return si
}

func TestSignInRefresh(t *testing.T) {
	redistest.Each(t, func(t *testing.T, srv *redistest.Server) {
		ctx := context.Background()
		clk := newClock()
		s := newService(t, srv, withClock(clk))
		si := startSignIn(t, s, "carol@example.com")
		c := verifyOK(t, s, si.AccessToken)
		if c.ID != si.Record.ID || c.ClientID != ClientClaudeCode || strings.Join(c.Scopes, " ") != "llm" || c.Name != "Someone" {
			t.Errorf("access token claims %+v: want jti %s, client claude-code, scope llm, name Someone", c, si.Record.ID)
		}
		if !c.ExpiresAt.Equal(clk.Now().Add(time.Hour)) || !si.Record.ExpiresAt.Equal(clk.Now().Add(14*24*time.Hour)) {
			t.Errorf("access expires %s, sign-in %s: want in 1h and in 14d", c.ExpiresAt, si.Record.ExpiresAt)
		}
		if dump := srv.Dump(t); strings.Contains(dump, si.RefreshToken) || strings.Contains(dump, strings.SplitN(si.RefreshToken, ".", 2)[1]) {
			t.Errorf("Redis holds the refresh token itself:\n%s", dump)
		}

		clk.Advance(time.Second)
		next, err := s.Refresh(ctx, RefreshRequest{Token: si.RefreshToken, AccessTTL: time.Hour, Address: "10.9.9.9"})
		if err != nil {
			t.Fatalf("Refresh: %v", err)
		}
		if next.RefreshToken == si.RefreshToken || next.AccessToken == si.AccessToken {
			t.Errorf("Refresh did not rotate: same refresh or access token")
		}
		if c := verifyOK(t, s, next.AccessToken); c.ID != si.Record.ID {
			t.Errorf("refreshed access token jti %s, want the sign-in's %s", c.ID, si.Record.ID)
		}
		if rec, _ := s.Get(ctx, si.Record.ID); rec.Address != "10.9.9.9" {
			t.Errorf("record address %q after refresh, want 10.9.9.9", rec.Address)
		}

		// The old token, within the grace: refused, the sign-in kept.
		if _, err := s.Refresh(ctx, RefreshRequest{Token: si.RefreshToken, AccessTTL: time.Hour}); !errors.Is(err, ErrInvalidGrant) || errors.Is(err, ErrReplay) {
			t.Errorf("reuse within the grace: err %v, want ErrInvalidGrant without replay", err)
		}
		verifyOK(t, s, next.AccessToken)

		// A check refusing the person refuses the refresh and consumes nothing.
		deny := func(context.Context, Record) error { return errors.New("not in an allowed group") }
		if _, err := s.Refresh(ctx, RefreshRequest{Token: next.RefreshToken, AccessTTL: time.Hour, Check: deny}); !errors.Is(err, ErrInvalidGrant) {
			t.Errorf("refresh refused by Check: err %v, want ErrInvalidGrant", err)
		}
		down := func(context.Context, Record) error { return ErrUnavailable }
		if _, err := s.Refresh(ctx, RefreshRequest{Token: next.RefreshToken, AccessTTL: time.Hour, Check: down}); !errors.Is(err, ErrUnavailable) || errors.Is(err, ErrInvalidGrant) {
			t.Errorf("refresh with the store down: err %v, want ErrUnavailable only", err)
		}
		third, err := s.Refresh(ctx, RefreshRequest{Token: next.RefreshToken, AccessTTL: time.Hour})
		if err != nil {
			t.Fatalf("Refresh after refused ones: %v (they must not consume the token)", err)
		}

		// The first token again, past the grace: a replay ends the sign-in.
		clk.Advance(DefaultRefreshGrace + time.Second)
		if _, err := s.Refresh(ctx, RefreshRequest{Token: si.RefreshToken, AccessTTL: time.Hour}); !errors.Is(err, ErrReplay) {
			t.Fatalf("replay after the grace: err %v, want ErrReplay", err)
		}
		wantRefused(t, s, third.AccessToken, ScopeLLM, ErrRevoked)
		if _, err := s.Refresh(ctx, RefreshRequest{Token: third.RefreshToken, AccessTTL: time.Hour}); !errors.Is(err, ErrInvalidGrant) {
			t.Errorf("refresh of the revoked sign-in's newest token: err %v, want ErrInvalidGrant", err)
		}
	})
}

func TestSignInRefreshRace(t *testing.T) {
	redistest.Each(t, func(t *testing.T, srv *redistest.Server) {
		ctx := context.Background()
		s := newService(t, srv)
		si := startSignIn(t, s, "dave@example.com")
		var wg sync.WaitGroup
		results := make([]SignIn, 8)
		errs := make([]error, 8)
		for i := range 8 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				results[i], errs[i] = s.Refresh(ctx, RefreshRequest{Token: si.RefreshToken, AccessTTL: time.Hour})
			}()
		}
		wg.Wait()
		winner := -1
		for i, err := range errs {
			switch {
			case err == nil && winner >= 0:
				t.Fatalf("two refreshes of one token succeeded")
			case err == nil:
				winner = i
			case !errors.Is(err, ErrInvalidGrant) || errors.Is(err, ErrReplay):
				t.Errorf("losing refresh: err %v, want ErrInvalidGrant (no replay)", err)
			}
		}
		if winner < 0 {
			t.Fatalf("no refresh succeeded: %v", errs)
		}
		verifyOK(t, s, results[winner].AccessToken)
		if _, err := s.Refresh(ctx, RefreshRequest{Token: results[winner].RefreshToken, AccessTTL: time.Hour}); err != nil {
			t.Errorf("the winner's refresh token: %v, want it to work", err)
		}
	})
}

func TestSignInRevokedBy(t *testing.T) {
	redistest.Each(t, func(t *testing.T, srv *redistest.Server) {
		ctx := context.Background()
		s := newService(t, srv)
		tests := []struct {
			name   string
			revoke func(si SignIn) error
		}{
			{"revoke by id", func(si SignIn) error { _, err := s.Revoke(ctx, si.Record.ID, "x"); return err }},
			{"revoke user", func(si SignIn) error { _, err := s.RevokeUser(ctx, si.Record.Email, "admin"); return err }},
			{"block", func(si SignIn) error { return s.Block(ctx, si.Record.Email, "admin") }},
			{"revoke the access token", func(si SignIn) error { _, err := s.RevokeCredential(ctx, si.AccessToken, "x"); return err }},
			{"revoke the refresh token", func(si SignIn) error { _, err := s.RevokeCredential(ctx, si.RefreshToken, "x"); return err }},
		}
		for i, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				si := startSignIn(t, s, "user"+string(rune('a'+i))+"@example.com")
				verifyOK(t, s, si.AccessToken)
				if err := tt.revoke(si); err != nil {
					t.Fatalf("%s: %v", tt.name, err)
				}
				if _, err := s.Verify(ctx, si.AccessToken, ScopeLLM); err == nil {
					t.Errorf("access token still verifies after %s", tt.name)
				}
				if _, err := s.Refresh(ctx, RefreshRequest{Token: si.RefreshToken, AccessTTL: time.Hour}); !errors.Is(err, ErrInvalidGrant) {
					t.Errorf("refresh after %s: err %v, want ErrInvalidGrant", tt.name, err)
				}
			})
		}
		if _, err := s.RevokeCredential(ctx, "not-a-token", "x"); !errors.Is(err, ErrNotFound) {
			t.Errorf("RevokeCredential(garbage): err %v, want ErrNotFound", err)
		}
		si := startSignIn(t, s, "zed@example.com")
		forged := si.Record.ID + "." + strings.Repeat("A", 43)
		if _, err := s.RevokeCredential(ctx, forged, "x"); !errors.Is(err, ErrNotFound) {
			t.Errorf("RevokeCredential(forged refresh token naming a real sign-in): err %v, want ErrNotFound", err)
		}
		verifyOK(t, s, si.AccessToken)
	})
}

// TestRevokeCredentialExpiredAccess: Claude Code's /logout may post an
// access token that has expired; it still ends its sign-in.
func TestRevokeCredentialExpiredAccess(t *testing.T) {
	srv := redistest.Mini(t)
	ctx := context.Background()
	clk := newClock()
	s := newService(t, srv, withClock(clk))
	si := startSignIn(t, s, "erin@example.com")
	clk.Advance(2 * time.Hour)
	if _, err := s.Verify(ctx, si.AccessToken, ScopeLLM); !errors.Is(err, ErrExpired) {
		t.Fatalf("Verify after 2h: %v, want ErrExpired", err)
	}
	rec, err := s.RevokeCredential(ctx, si.AccessToken, "oauth/revoke")
	if err != nil || rec.ID != si.Record.ID || rec.RevokedAt.IsZero() {
		t.Fatalf("RevokeCredential(expired access token) = %+v, %v; want the sign-in revoked", rec, err)
	}
	if _, err := s.Refresh(ctx, RefreshRequest{Token: si.RefreshToken, AccessTTL: time.Hour}); !errors.Is(err, ErrInvalidGrant) {
		t.Errorf("refresh after revoking by the expired access token: %v, want ErrInvalidGrant", err)
	}
	// A token signed by someone else is not ours to revoke.
	other := newService(t, redistest.Mini(t))
	foreign := startSignIn(t, other, "erin@example.com")
	if _, err := s.RevokeCredential(ctx, foreign.AccessToken, "x"); !errors.Is(err, ErrNotFound) {
		t.Errorf("RevokeCredential(token of another deployment): %v, want ErrNotFound", err)
	}
}
