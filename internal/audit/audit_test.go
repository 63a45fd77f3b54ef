package audit

import (
	"encoding/json"
	"log/slog"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/llmgate/llmgate/internal/logtest"
	"github.com/llmgate/llmgate/internal/redistest"
)

func TestDefaultSecurity(t *testing.T) {
	tests := []struct {
		typ  string
		want bool
	}{
		{TypeLogin, false},
		{TypeLoginRefused, true},
		{TypeLogout, false},
		{TypeTokenCreate, false},
		{TypeTokenRevoke, true},
		{TypeSessionRevoke, true},
		{TypeUserRevoke, true},
		{TypeUserBlock, true},
		{TypeUserUnblock, true},
		{TypeAPIRefused, true},
		{TypeAdminDenied, true},
		{TypeDeprovision, true},
		{"deprovision.tokens", true},
		{TypeBackchannelLogout, true},
		{"device.refused", true},
		{"deprovisioned", false},
		{"", false},
	}
	for _, tt := range tests {
		t.Run(tt.typ, func(t *testing.T) {
			if got := DefaultSecurity(Event{Type: tt.typ}); got != tt.want {
				t.Errorf("DefaultSecurity(Type %q) = %v, want %v", tt.typ, got, tt.want)
			}
		})
	}
}

func TestFilterMatch(t *testing.T) {
	e := Event{Type: "token.revoke", Actor: "root@example.com", Email: "alice@example.com"}
	tests := []struct {
		name string
		f    Filter
		want bool
	}{
		{"zero", Filter{}, true},
		{"email", Filter{Email: "alice@example.com"}, true},
		{"email case", Filter{Email: "ALICE@example.com"}, true},
		{"actor", Filter{Email: "root@example.com"}, true},
		{"other email", Filter{Email: "bob@example.com"}, false},
		{"email prefix is not a match", Filter{Email: "alice"}, false},
		{"type exact", Filter{Type: "token.revoke"}, true},
		{"type other", Filter{Type: "token.create"}, false},
		{"type prefix", Filter{Type: "token."}, true},
		{"type without dot is exact", Filter{Type: "token"}, false},
		{"type other prefix", Filter{Type: "user."}, false},
		{"both", Filter{Email: "alice@example.com", Type: "token."}, true},
		{"both, type differs", Filter{Email: "alice@example.com", Type: "user."}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.f.match(e); got != tt.want {
				t.Errorf("%+v.match(%+v) = %v, want %v", tt.f, e, got, tt.want)
			}
		})
	}
}

func TestMetricLabelsBounded(t *testing.T) {
	l := newLog(t, redistest.Mini(t))
	l.Record(Event{Type: TypeLogin, Email: "alice@example.com", Actor: "alice@example.com"})
	l.Record(Event{Type: "made.up.alice@example.com", Email: "alice@example.com"})
	l.Record(Event{Type: "another.new.type"})
	l.Close()
	for _, s := range labels(t, l) {
		if strings.Contains(s, "@") {
			t.Errorf("metric series %s holds an email", s)
		}
	}
	if got := counter(t, l, "llmgate_audit_events_total", "type", "other"); got != 2 {
		t.Errorf("events_total{type=other} = %v, want 2", got)
	}
	if got := counter(t, l, "llmgate_audit_events_total", "type", TypeLogin); got != 1 {
		t.Errorf("events_total{type=login} = %v, want 1", got)
	}
	want := len(knownTypes) + 1 + 2 + 3 // types and other; store, webhook; ok, failed, retried
	if got := len(labels(t, l)); got != want {
		t.Errorf("%d series, want %d: %v", got, want, labels(t, l))
	}
	for _, s := range []string{
		`llmgate_audit_dropped_total{queue=store}`,
		`llmgate_audit_dropped_total{queue=webhook}`,
		`llmgate_audit_webhook_deliveries_total{result=retried}`,
		`llmgate_audit_events_total{type=backchannel.logout}`,
	} {
		if !slices.Contains(labels(t, l), s) {
			t.Errorf("series %s missing before its first increment", s)
		}
	}
}

func TestLogLine(t *testing.T) {
	tests := []struct {
		name  string
		e     Event
		level string
		want  map[string]any // JSON attributes besides time, level and msg
	}{
		{
			name:  "login is info",
			e:     Event{Type: TypeLogin, Email: "alice@example.com", IP: "192.0.2.1"},
			level: "INFO",
			want:  map[string]any{"type": "login", "email": "alice@example.com", "ip": "192.0.2.1"},
		},
		{
			name:  "refusal is warn",
			e:     Event{Type: TypeAPIRefused, Email: "alice@example.com", TokenID: "tok-1", Status: 403, Reason: "user blocked"},
			level: "WARN",
			want:  map[string]any{"type": "api.refused", "email": "alice@example.com", "token_id": "tok-1", "status": float64(403), "reason": "user blocked"},
		},
		{
			name:  "denied is warn",
			e:     Event{Type: TypeAdminDenied, Email: "eve@example.com"},
			level: "WARN",
			want:  map[string]any{"type": "admin.denied", "email": "eve@example.com"},
		},
		{
			name:  "admin action with details, secrets redacted",
			e:     Event{Type: TypeUserRevoke, Actor: "root@example.com", Email: "bob@example.com", Details: map[string]string{"deleted": "3", "refresh_token": "rt-SECRET"}},
			level: "INFO",
			want: map[string]any{"type": "user.revoke", "actor": "root@example.com", "email": "bob@example.com",
				"details": map[string]any{"deleted": "3", "refresh_token": redacted}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var buf logtest.Buffer
			l := newLog(t, redistest.Mini(t), func(c *Config) {
				c.Logger = slog.New(slog.NewJSONHandler(&buf, nil))
			})
			l.Record(tt.e)
			l.Close()
			line, _, _ := strings.Cut(buf.String(), "\n")
			var got map[string]any
			if err := json.Unmarshal([]byte(line), &got); err != nil {
				t.Fatalf("log line %q: %v", line, err)
			}
			if got["level"] != tt.level || got["msg"] != "audit" {
				t.Errorf("level, msg = %v, %v; want %s, audit", got["level"], got["msg"], tt.level)
			}
			delete(got, "time")
			delete(got, "level")
			delete(got, "msg")
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("Record(%+v) log attributes (-want +got):\n%s", tt.e, diff)
			}
			if strings.Contains(buf.String(), "SECRET") {
				t.Errorf("log holds a secret: %s", buf.String())
			}
		})
	}
}

func TestValidate(t *testing.T) {
	tests := []struct {
		name    string
		c       Config
		wantErr string // substring of the only error; empty for none
	}{
		{"zero", Config{}, ""},
		{"https with secret query", Config{WebhookURL: "https://hooks.example.com/x?token=s3cr3t"}, ""},
		{"not http", Config{WebhookURL: "ftp://hooks.example.com/?token=s3cr3t"}, "LLMGATE_AUDIT_WEBHOOK_URL: must be an http or https URL"},
		{"relative", Config{WebhookURL: "/hook?token=s3cr3t"}, "LLMGATE_AUDIT_WEBHOOK_URL"},
		{"unparsable", Config{WebhookURL: "http://[::1?token=s3cr3t"}, "LLMGATE_AUDIT_WEBHOOK_URL: not a valid URL"},
		{"negative cap", Config{MaxLen: -1}, "cap"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			errs := tt.c.Validate()
			switch {
			case tt.wantErr == "" && len(errs) != 0:
				t.Errorf("Validate() = %v, want no errors", errs)
			case tt.wantErr != "" && (len(errs) != 1 || !strings.Contains(errs[0].Error(), tt.wantErr)):
				t.Errorf("Validate() = %v, want one error containing %q", errs, tt.wantErr)
			}
			for _, err := range errs {
				if strings.Contains(err.Error(), "s3cr3t") {
					t.Errorf("Validate() error %q quotes the webhook URL's secret", err)
				}
			}
		})
	}
}

func TestInvalidWebhookURLDisablesWebhook(t *testing.T) {
	var buf logtest.Buffer
	l := newLog(t, redistest.Mini(t), func(c *Config) {
		c.WebhookURL = "ftp://example.com/?token=s3cr3t"
		c.Logger = textLogger(&buf)
	})
	l.Record(Event{Type: TypeUserBlock})
	if err := l.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if !strings.Contains(buf.String(), "audit webhook disabled") || strings.Contains(buf.String(), "s3cr3t") {
		t.Errorf("logs = %s; want the webhook reported disabled without its URL", buf.String())
	}
	if d := counter(t, l, "llmgate_audit_dropped_total", "queue", "webhook"); d != 0 {
		t.Errorf("dropped{webhook} = %v with the webhook off, want 0", d)
	}
}

func TestNormalize(t *testing.T) {
	now := func() time.Time { return t0 }
	in := Event{ID: "1-1", Type: TypeLogin, Details: map[string]string{}}
	got := normalize(in, now)
	want := Event{Type: TypeLogin, Time: t0}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("normalize(%+v) (-want +got):\n%s", in, diff)
	}
}
