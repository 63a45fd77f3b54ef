package audit

import (
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/llmgate/llmgate/internal/logtest"
	"github.com/llmgate/llmgate/internal/redistest"
)

// receiver is a webhook endpoint that answers each POST with the next of
// its statuses (repeating the last) and keeps what it received.
type receiver struct {
	srv *httptest.Server

	mu       sync.Mutex
	statuses []int
	got      []received
}

type received struct {
	Method, ContentType, UserAgent, Query string
	Event                                 Event
}

func newReceiver(tb testing.TB, statuses ...int) *receiver {
	tb.Helper()
	r := &receiver{statuses: statuses}
	r.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		body, _ := io.ReadAll(req.Body)
		var e Event
		if err := json.Unmarshal(body, &e); err != nil {
			tb.Errorf("webhook body %q is not an Event: %v", body, err)
		}
		r.mu.Lock()
		r.got = append(r.got, received{req.Method, req.Header.Get("Content-Type"), req.Header.Get("User-Agent"), req.URL.RawQuery, e})
		status := http.StatusOK
		if len(r.statuses) > 0 {
			status = r.statuses[0]
			if len(r.statuses) > 1 {
				r.statuses = r.statuses[1:]
			}
		}
		r.mu.Unlock()
		if status == http.StatusFound {
			w.Header().Set("Location", "/elsewhere")
		}
		w.WriteHeader(status)
	}))
	tb.Cleanup(r.srv.Close)
	return r
}

func (r *receiver) received() []received {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]received(nil), r.got...)
}

// webhookLog returns a Log on miniredis posting to url with one worker.
func webhookLog(tb testing.TB, url string, opts ...func(*Config)) *Log {
	tb.Helper()
	return newLog(tb, redistest.Mini(tb), append([]func(*Config){func(c *Config) {
		c.WebhookURL = url
		c.workers = 1
	}}, opts...)...)
}

func deliveries(tb testing.TB, l *Log) (ok, failed, retried float64) {
	tb.Helper()
	const name = "llmgate_audit_webhook_deliveries_total"
	return counter(tb, l, name, "result", "ok"), counter(tb, l, name, "result", "failed"), counter(tb, l, name, "result", "retried")
}

func TestWebhookSecurityEventsOnly(t *testing.T) {
	r := newReceiver(t)
	l := webhookLog(t, r.srv.URL+"/hook?token=s3cr3t")
	in := []Event{
		{Type: TypeLogin, Email: "alice@example.com"},
		{Type: TypeAPIRefused, Email: "alice@example.com", TokenID: "tok-1", IP: "192.0.2.1", Status: 401, Reason: "token revoked"},
		{Type: TypeTokenCreate, Email: "alice@example.com"},
		{Type: TypeUserBlock, Actor: "root@example.com", Email: "bob@example.com", Details: map[string]string{"note": "left"}},
		{Type: TypeLogout, Email: "alice@example.com"},
		{Type: TypeDeprovision, Email: "carol@example.com", Reason: "invalid_grant"},
	}
	stored := record(l, in)
	if err := l.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	var want []received
	for i, e := range stored {
		e.Time = t0.Add(time.Duration(i+1) * time.Second)
		if DefaultSecurity(e) {
			want = append(want, received{"POST", "application/json", "llmgate", "token=s3cr3t", e})
		}
	}
	if len(want) != 3 {
		t.Fatalf("test expects 3 security events, has %d", len(want))
	}
	if diff := cmp.Diff(want, r.received()); diff != "" {
		t.Errorf("webhook received (-want +got):\n%s", diff)
	}
	if ok, failed, retried := deliveries(t, l); ok != 3 || failed != 0 || retried != 0 {
		t.Errorf("deliveries ok/failed/retried = %v/%v/%v, want 3/0/0", ok, failed, retried)
	}
}

func TestWebhookCustomSecurity(t *testing.T) {
	r := newReceiver(t)
	l := webhookLog(t, r.srv.URL, func(c *Config) {
		c.Security = func(e Event) bool { return e.Type == TypeLogin }
	})
	l.Record(Event{Type: TypeLogin})
	l.Record(Event{Type: TypeAPIRefused})
	l.Close()
	if got := r.received(); len(got) != 1 || got[0].Event.Type != TypeLogin {
		t.Errorf("with Security selecting logins, webhook received %+v, want the login only", got)
	}
}

func TestWebhookRetries(t *testing.T) {
	tests := []struct {
		name         string
		statuses     []int
		maxAttempts  int
		wantAttempts int
		wantOK       float64
		wantFailed   float64
		wantRetried  float64
	}{
		{"500s then success", []int{500, 500, 200}, 5, 3, 1, 0, 2},
		{"503 then 204", []int{503, 204}, 5, 2, 1, 0, 1},
		{"429 retried", []int{429, 429, 202}, 5, 3, 1, 0, 2},
		{"gives up after MaxAttempts", []int{500}, 3, 3, 0, 1, 2},
		{"default MaxAttempts is 5", []int{502}, 0, 5, 0, 1, 4},
		{"400 not retried", []int{400, 200}, 5, 1, 0, 1, 0},
		{"404 not retried", []int{404, 200}, 5, 1, 0, 1, 0},
		{"redirect not followed", []int{302, 200}, 5, 1, 0, 1, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := newReceiver(t, tt.statuses...)
			l := webhookLog(t, r.srv.URL, func(c *Config) { c.MaxAttempts = tt.maxAttempts })
			l.Record(Event{Type: TypeAPIRefused, Status: 403, Reason: "user blocked"})
			waitFor(t, "the delivery to end", func() bool {
				ok, failed, _ := deliveries(t, l)
				return ok+failed == 1
			})
			l.Close()
			if got := len(r.received()); got != tt.wantAttempts {
				t.Errorf("webhook answering %v was called %d times, want %d", tt.statuses, got, tt.wantAttempts)
			}
			if ok, failed, retried := deliveries(t, l); ok != tt.wantOK || failed != tt.wantFailed || retried != tt.wantRetried {
				t.Errorf("deliveries ok/failed/retried = %v/%v/%v, want %v/%v/%v", ok, failed, retried, tt.wantOK, tt.wantFailed, tt.wantRetried)
			}
			for _, got := range r.received() {
				if got.Event.Type != TypeAPIRefused {
					t.Errorf("received %+v, want the refusal", got.Event)
				}
			}
		})
	}
}

func TestWebhookNeverLogsSecrets(t *testing.T) {
	// A port nothing listens on: every attempt is a network error.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := ln.Addr().String()
	ln.Close()
	r := newReceiver(t, http.StatusBadRequest)

	tests := []struct {
		name, url, wantLogged string
		wantAttempts          float64 // retried + 1
	}{
		{"network error", "http://hookuser:pa55w0rd@" + closed + "/hook?token=s3cr3t&x=1", "http://" + closed + "/hook", 3},
		{"refused with 400", strings.Replace(r.srv.URL, "http://", "http://hookuser:pa55w0rd@", 1) + "/hook?token=s3cr3t", r.srv.URL + "/hook", 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var buf logtest.Buffer
			l := webhookLog(t, tt.url, func(c *Config) {
				c.MaxAttempts = 3
				c.Logger = textLogger(&buf)
			})
			l.Record(Event{Type: TypeAdminDenied, Email: "eve@example.com", Status: 403})
			waitFor(t, "the delivery to fail", func() bool {
				_, failed, _ := deliveries(t, l)
				return failed == 1
			})
			l.Close()
			if _, _, retried := deliveries(t, l); retried+1 != tt.wantAttempts {
				t.Errorf("attempts = %v, want %v", retried+1, tt.wantAttempts)
			}
			logs := buf.String()
			if !strings.Contains(logs, "audit webhook delivery failed") || !strings.Contains(logs, "webhook="+tt.wantLogged) {
				t.Errorf("logs do not report the failed delivery to %s:\n%s", tt.wantLogged, logs)
			}
			for _, secret := range []string{"s3cr3t", "pa55w0rd", "hookuser"} {
				if strings.Contains(logs, secret) {
					t.Errorf("logs contain %q from the webhook URL:\n%s", secret, logs)
				}
			}
		})
	}
}

func TestWebhookQueueFull(t *testing.T) {
	release := make(chan struct{})
	var once sync.Once
	unblock := func() { once.Do(func() { close(release) }) }
	var calls atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		calls.Add(1)
		io.Copy(io.Discard, r.Body)
		select {
		case <-release:
		case <-r.Context().Done():
		}
	}))
	defer srv.Close()
	defer unblock()

	l := webhookLog(t, srv.URL, func(c *Config) { c.QueueSize = 2 })
	l.Record(Event{Type: TypeAPIRefused})
	waitFor(t, "the first POST", func() bool { return calls.Load() == 1 })

	// The worker is stuck on the first POST: 2 more fit the queue, the
	// rest are dropped, and Record does not wait for any of it.
	const n = 1000
	start := time.Now()
	for range n {
		l.Record(Event{Type: TypeAPIRefused})
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("%d Records with the webhook stuck took %v; Record must not wait", n, d)
	}
	if d := counter(t, l, "llmgate_audit_dropped_total", "queue", "webhook"); d != n-2 {
		t.Errorf("dropped{webhook} = %v, want %d", d, n-2)
	}
	if d := counter(t, l, "llmgate_audit_dropped_total", "queue", "store"); d != 0 {
		t.Errorf("dropped{store} = %v, want 0: the store has its own queue", d)
	}

	unblock()
	if err := l.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if ok, failed, _ := deliveries(t, l); ok != 3 || failed != 0 {
		t.Errorf("deliveries ok/failed = %v/%v, want 3/0 (the one in flight and the 2 queued)", ok, failed)
	}
	if got := calls.Load(); got != 3 {
		t.Errorf("webhook called %d times, want 3", got)
	}
}

func TestCloseWebhookGrace(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body) // so that the server notices the client leaving
		<-r.Context().Done()        // never answers
	}))
	defer srv.Close()
	l := webhookLog(t, srv.URL, func(c *Config) {
		c.webhookGrace = 100 * time.Millisecond
		c.HTTPClient = &http.Client{} // no timeout: only the grace ends the POST
	})
	for range 5 {
		l.Record(Event{Type: TypeUserBlock})
	}
	start := time.Now()
	if err := l.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Errorf("Close with a hanging webhook took %v, want about the 100ms grace", d)
	}
	if d := counter(t, l, "llmgate_audit_dropped_total", "queue", "webhook"); d != 5 {
		t.Errorf("dropped{webhook} after Close = %v, want 5", d)
	}
	if ok, failed, _ := deliveries(t, l); ok != 0 || failed != 0 {
		t.Errorf("deliveries ok/failed = %v/%v, want 0/0 (dropped at shutdown)", ok, failed)
	}
}

func TestWebhookBackoff(t *testing.T) {
	l := &Log{cfg: Config{backoff: 500 * time.Millisecond, maxBackoff: 30 * time.Second}}
	tests := []struct {
		attempt  int
		min, max time.Duration
	}{
		{1, 250 * time.Millisecond, 500 * time.Millisecond},
		{2, 500 * time.Millisecond, time.Second},
		{4, 2 * time.Second, 4 * time.Second},
		{7, 15 * time.Second, 30 * time.Second},
		{100, 15 * time.Second, 30 * time.Second},
	}
	for _, tt := range tests {
		for range 100 {
			if d := l.backoff(tt.attempt); d < tt.min || d > tt.max {
				t.Fatalf("backoff(%d) = %v, want %v..%v", tt.attempt, d, tt.min, tt.max)
			}
		}
	}
	if d := l.retryAfter("7"); d != 7*time.Second {
		t.Errorf("retryAfter(7) = %v, want 7s", d)
	}
}
