package tokens

import (
	"context"
	"encoding/json"
	"errors"
	"math"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/llmgate/llmgate/internal/redistest"
)

func TestIssueValidation(t *testing.T) {
	s := newService(t, redistest.Mini(t), quiet)
	ok := IssueRequest{Name: "laptop", Email: "alice@example.com", Subject: "00u1"}
	tests := []struct {
		name      string
		mod       func(*IssueRequest)
		wantField string
		wantMsg   string // substring
	}{
		{"no name", func(r *IssueRequest) { r.Name = "  " }, "name", "name is required"},
		{"long name", func(r *IssueRequest) { r.Name = strings.Repeat("n", 101) }, "name", "longer than 100"},
		{"control character in name", func(r *IssueRequest) { r.Name = "a\x00b" }, "name", "printable"},
		{"tab in name", func(r *IssueRequest) { r.Name = "a\tb" }, "name", "printable"},
		{"invalid UTF-8 name", func(r *IssueRequest) { r.Name = "a\xffb" }, "name", "printable"},
		{"ttl above the maximum", func(r *IssueRequest) { r.TTL = 120 * 24 * time.Hour }, "ttl", "ttl 120d exceeds the maximum 90d"},
		{"negative ttl", func(r *IssueRequest) { r.TTL = -time.Hour }, "ttl", "ttl must be positive"},
		{"tiny ttl", func(r *IssueRequest) { r.TTL = time.Second }, "ttl", "shorter than the minimum 1m0s"},
		{"bad cidr", func(r *IssueRequest) { r.CIDRs = []string{"10.0.0.0/8", "10.0.0.300/8"} }, "cidrs", `"10.0.0.300/8" is not a valid CIDR`},
		{"bare address", func(r *IssueRequest) { r.CIDRs = []string{"10.0.0.1"} }, "cidrs", "not a valid CIDR"},
		{"word as cidr", func(r *IssueRequest) { r.CIDRs = []string{"office"} }, "cidrs", "not a valid CIDR"},
		{"negative budget", func(r *IssueRequest) { r.MaxCostUSD = -1 }, "max_cost_usd", "greater than 0"},
		{"NaN budget", func(r *IssueRequest) { r.MaxCostUSD = math.NaN() }, "max_cost_usd", "greater than 0"},
		{"infinite budget", func(r *IssueRequest) { r.MaxCostUSD = math.Inf(1) }, "max_cost_usd", "greater than 0"},
		{"unknown scope", func(r *IssueRequest) { r.Scopes = []string{"admin"} }, "scopes", `unknown scope "admin"`},
		{"negative rpm", func(r *IssueRequest) { r.RPM = -1 }, "rpm", "rpm must be between"},
		{"empty model", func(r *IssueRequest) { r.Models = []string{"gpt-4o", ""} }, "models", "not a valid model"},
		{"too many models", func(r *IssueRequest) { r.Models = make([]string, 101) }, "models", "at most 100"},
		{"no email", func(r *IssueRequest) { r.Email = "" }, "email", "email is required"},
		{"not an email", func(r *IssueRequest) { r.Email = "alice" }, "email", "email is required"},
		{"no subject", func(r *IssueRequest) { r.Subject = "" }, "subject", "subject is required"},
		{"bad client id", func(r *IssueRequest) { r.ClientID = "Evil Client" }, "client_id", "not valid"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req := ok
			tt.mod(&req)
			_, _, err := s.Issue(context.Background(), req)
			var ve *ValidationError
			if !errors.As(err, &ve) {
				t.Fatalf("Issue = %v, want a *ValidationError", err)
			}
			if ve.Field != tt.wantField || !strings.Contains(ve.Message, tt.wantMsg) {
				t.Fatalf("Issue = {%s: %q}, want {%s: …%q…}", ve.Field, ve.Message, tt.wantField, tt.wantMsg)
			}
		})
	}
	t.Run("limits accepted", func(t *testing.T) {
		req := ok
		req.Name = strings.Repeat("é", 100)
		req.TTL = s.cfg.MaxTTL
		req.Scopes = []string{"tokens", "llm", "llm"}
		req.CIDRs = []string{"10.1.0.0/16", "10.1.2.3/16"}
		req.Models = []string{"a", "a", "b"}
		_, rec, err := s.Issue(context.Background(), req)
		if err != nil {
			t.Fatalf("Issue(%+v) = %v", req, err)
		}
		if !slices.Equal(rec.Scopes, []string{"tokens", "llm"}) || !slices.Equal(rec.CIDRs, []string{"10.1.0.0/16"}) || !slices.Equal(rec.Models, []string{"a", "b"}) {
			t.Errorf("record lists not deduplicated and normalized: %+v", rec)
		}
	})
}

func TestRecords(t *testing.T) {
	redistest.Each(t, func(t *testing.T, srv *redistest.Server) {
		ctx := context.Background()
		clk := newClock()
		s := newService(t, srv, withClock(clk), quiet)
		var alice []Record
		var raws []string
		for i := range 3 {
			raw, rec := issue(t, s, IssueRequest{Name: "t" + string(rune('0'+i)), Email: "alice@example.com", RPM: 5, MaxCostUSD: 3})
			alice = append(alice, rec)
			raws = append(raws, raw)
			clk.Advance(time.Millisecond)
		}
		_, bob := issue(t, s, IssueRequest{Email: "bob@example.com"})

		got, err := s.Get(ctx, alice[1].ID)
		if err != nil {
			t.Fatalf("Get: %v", err)
		}
		if diff := cmpDiff(alice[1], got); diff != "" {
			t.Errorf("Get differs from Issue's record (-issue +get):\n%s", diff)
		}
		for _, id := range []string{"nope", newID(), "../../etc"} {
			if _, err := s.Get(ctx, id); !errors.Is(err, ErrNotFound) {
				t.Errorf("Get(%q) = %v, want ErrNotFound", id, err)
			}
		}
		list, err := s.List(ctx, "Alice@Example.com")
		if err != nil {
			t.Fatalf("List: %v", err)
		}
		if ids := recordIDs(list); !slices.Equal(ids, []string{alice[2].ID, alice[1].ID, alice[0].ID}) {
			t.Errorf("List(alice) = %v, want newest first %v", ids, []string{alice[2].ID, alice[1].ID, alice[0].ID})
		}
		all, err := s.ListAll(ctx, 0)
		if err != nil || len(all) != 4 || all[0].ID != bob.ID {
			t.Errorf("ListAll = %v, %v; want 4 records, bob's first", recordIDs(all), err)
		}
		if list, _ := s.List(ctx, "nobody@example.com"); list == nil || len(list) != 0 {
			t.Errorf("List(nobody) = %#v, want an empty list", list)
		}

		// Never the token.
		stored, _ := srv.Client.HGetAll(ctx, s.tokKey(alice[0].ID)).Result()
		for _, v := range stored {
			sig := raws[0][strings.LastIndexByte(raws[0], '.')+1:]
			if strings.Contains(v, sig) || strings.Contains(v, raws[0]) {
				t.Fatalf("the record stores the token")
			}
		}
		var keys map[string]any
		if err := json.Unmarshal(mustJSON(t, alice[0]), &keys); err != nil {
			t.Fatal(err)
		}
		for _, k := range []string{"id", "name", "email", "subject", "client_id", "scopes", "rpm", "max_cost_usd", "created_at", "expires_at"} {
			if _, ok := keys[k]; !ok {
				t.Errorf("record JSON lacks %q: %v", k, keys)
			}
		}

		// Revoke is idempotent.
		r1, err := s.Revoke(ctx, alice[0].ID, "alice@example.com")
		if err != nil || r1.RevokedAt.IsZero() || r1.RevokedBy != "alice@example.com" || r1.Status(clk.Now()) != StatusRevoked {
			t.Fatalf("Revoke = %+v, %v", r1, err)
		}
		clk.Advance(time.Second)
		r2, err := s.Revoke(ctx, alice[0].ID, "admin@example.com")
		if err != nil || !r2.RevokedAt.Equal(r1.RevokedAt) || r2.RevokedBy != r1.RevokedBy {
			t.Fatalf("second Revoke = %+v, %v; want the first revocation unchanged", r2, err)
		}
		if _, err := s.Revoke(ctx, newID(), "x"); !errors.Is(err, ErrNotFound) {
			t.Errorf("Revoke(unknown) = %v, want ErrNotFound", err)
		}

		// RevokeUser revokes the rest and counts them.
		n, err := s.RevokeUser(ctx, "alice@example.com", "admin@example.com")
		if err != nil || n != 2 {
			t.Fatalf("RevokeUser = %d, %v; want 2", n, err)
		}
		list, _ = s.List(ctx, "alice@example.com")
		for _, r := range list {
			if r.RevokedAt.IsZero() {
				t.Errorf("token %s not revoked by RevokeUser", r.ID)
			}
		}
		if _, ok := s.RevokedSince("alice@example.com"); !ok {
			t.Errorf("RevokedSince(alice) not set")
		}
		// A token issued after the cut-off works, even in the same second.
		clk.Advance(time.Millisecond)
		raw, _ := issue(t, s, IssueRequest{Email: "alice@example.com"})
		verifyOK(t, s, raw)

		if err := s.Block(ctx, "Bob@Example.com", "admin@example.com"); err != nil {
			t.Fatalf("Block: %v", err)
		}
		if _, _, err := s.Issue(ctx, IssueRequest{Name: "x", Email: "bob@example.com", Subject: "b"}); !errors.Is(err, ErrUserBlocked) {
			t.Errorf("Issue for a blocked user = %v, want ErrUserBlocked", err)
		}
		if b := s.BlockedUsers(); len(b) != 1 || b[0].Email != "bob@example.com" || b[0].By != "admin@example.com" {
			t.Errorf("BlockedUsers = %+v", b)
		}
		// The state survives a restart (a new replica loads it).
		s2 := newService(t, srv, withClock(clk), quiet)
		if !s2.Blocked("bob@example.com") {
			t.Errorf("new replica does not know bob is blocked")
		}
		wantRefused(t, s2, raws[1], ScopeLLM, ErrRevoked) // marked revoked by RevokeUser; the cut-off would refuse it too

		// Expired records remain listed for a while, marked expired.
		clk.Advance(s.cfg.DefaultTTL + time.Second)
		if got, _ := s.Get(ctx, bob.ID); got.Status(clk.Now()) != StatusExpired {
			t.Errorf("Status after expiry = %s, want expired", got.Status(clk.Now()))
		}
	})
}

func recordIDs(rs []Record) []string {
	var ids []string
	for _, r := range rs {
		ids = append(ids, r.ID)
	}
	return ids
}

func TestConfigValidate(t *testing.T) {
	errs := Config{Secret: []byte("short"), Algorithm: "HS256", DefaultTTL: 100 * 24 * time.Hour}.Validate()
	var msgs []string
	for _, e := range errs {
		msgs = append(msgs, e.Error())
	}
	all := strings.Join(msgs, "\n")
	for _, want := range []string{"LLMGATE_PUBLIC_URL", "LLMGATE_SECRET", `"HS256"`, "LLMGATE_TOKEN_DEFAULT_TTL"} {
		if !strings.Contains(all, want) {
			t.Errorf("Validate() = %q, want a problem naming %s", all, want)
		}
	}
	if errs := (Config{Issuer: "https://x", Secret: testSecret}).Validate(); len(errs) != 0 {
		t.Errorf("Validate(defaults) = %v, want none", errs)
	}
}
