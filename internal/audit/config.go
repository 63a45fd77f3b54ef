package audit

import (
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"time"
)

// Defaults for zero Config fields.
const (
	DefaultPrefix         = "llmgate:"
	DefaultMaxLen         = 100_000
	DefaultQueueSize      = 1000
	DefaultStoreQueueSize = 10_000
	DefaultMaxAttempts    = 5
	DefaultWebhookTimeout = 5 * time.Second
)

// Config configures a Log. Zero fields take the documented defaults.
type Config struct {
	// Prefix starts the stream's key. Default "llmgate:".
	Prefix string
	// MaxLen caps the stream (XADD MAXLEN ~, so Redis may keep up to about
	// a hundred entries more). Default 100 000.
	MaxLen int64
	// WebhookURL is LLMGATE_AUDIT_WEBHOOK_URL: security events are POSTed
	// here, one per request, as the Event's JSON (with an empty id: the
	// POST does not wait for Redis), Content-Type application/json,
	// User-Agent llmgate. A 2xx answer is a delivery; 5xx, 429 (honouring
	// Retry-After) and network errors are retried; any other status,
	// redirects included, is not. Empty turns the webhook off. Its user
	// info and query string may hold secrets and are never logged.
	WebhookURL string
	// Security selects the events POSTed to the webhook. Default
	// DefaultSecurity.
	Security func(Event) bool
	// HTTPClient posts to the webhook. Default: a client with a 5 s timeout.
	HTTPClient *http.Client
	// QueueSize bounds the events waiting for the webhook; when it is full
	// an event is dropped and counted. Default 1000.
	QueueSize int
	// StoreQueueSize bounds the events waiting to be written to Redis; when
	// it is full an event is dropped (its log line remains) and counted.
	// Default 10 000.
	StoreQueueSize int
	// MaxAttempts is how often a webhook POST is tried before the event is
	// given up, with exponential backoff and jitter from 500 ms (capped at
	// 30 s) between attempts. Default 5.
	MaxAttempts int
	// Now is the clock. Default time.Now.
	Now func() time.Time
	// Logger receives one line per event (Info; refusals Warn) and the
	// package's own errors. Default: discard.
	Logger *slog.Logger

	// Tuning of the background loops; zero means the defaults in
	// withDefaults. Unexported: tests shorten them.
	backoff       time.Duration // first webhook retry delay, 500ms
	maxBackoff    time.Duration // webhook retry delay cap, 30s
	workers       int           // webhook workers, 4
	storeBackoff  time.Duration // first Redis write retry delay, 500ms
	storeAttempts int           // Redis write attempts per batch, 3
	writeTimeout  time.Duration // one pipelined Redis write, 5s
	flushTimeout  time.Duration // Close: writing what is queued, 5s
	webhookGrace  time.Duration // Close: delivering what is queued, 2s
	scanBatch     int64         // List: entries per XREVRANGE when filtering, 500
	scanMax       int           // List: entries scanned per call at most, 5000
}

func (c Config) withDefaults() Config {
	if c.Prefix == "" {
		c.Prefix = DefaultPrefix
	}
	if c.MaxLen <= 0 {
		c.MaxLen = DefaultMaxLen
	}
	if c.Security == nil {
		c.Security = DefaultSecurity
	}
	if c.HTTPClient == nil {
		c.HTTPClient = &http.Client{Timeout: DefaultWebhookTimeout}
	}
	if c.QueueSize <= 0 {
		c.QueueSize = DefaultQueueSize
	}
	if c.StoreQueueSize <= 0 {
		c.StoreQueueSize = DefaultStoreQueueSize
	}
	if c.MaxAttempts <= 0 {
		c.MaxAttempts = DefaultMaxAttempts
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.backoff <= 0 {
		c.backoff = 500 * time.Millisecond
	}
	if c.maxBackoff <= 0 {
		c.maxBackoff = 30 * time.Second
	}
	if c.workers <= 0 {
		c.workers = 4
	}
	if c.storeBackoff <= 0 {
		c.storeBackoff = 500 * time.Millisecond
	}
	if c.storeAttempts <= 0 {
		c.storeAttempts = 3
	}
	if c.writeTimeout <= 0 {
		c.writeTimeout = 5 * time.Second
	}
	if c.flushTimeout <= 0 {
		c.flushTimeout = 5 * time.Second
	}
	if c.webhookGrace <= 0 {
		c.webhookGrace = 2 * time.Second
	}
	if c.scanBatch <= 0 {
		c.scanBatch = 500
	}
	if c.scanMax <= 0 {
		c.scanMax = 5000
	}
	return c
}

// Validate reports every problem with c, each naming its variable.
func (c Config) Validate() []error {
	var errs []error
	if c.WebhookURL != "" {
		if _, err := parseWebhookURL(c.WebhookURL); err != nil {
			errs = append(errs, fmt.Errorf("LLMGATE_AUDIT_WEBHOOK_URL: %w", err))
		}
	}
	if c.MaxLen < 0 {
		errs = append(errs, fmt.Errorf("audit stream cap must not be negative, got %d", c.MaxLen))
	}
	return errs
}

// parseWebhookURL accepts absolute http and https URLs. Its errors never
// quote the URL, whose query may hold a secret.
func parseWebhookURL(s string) (*url.URL, error) {
	u, err := url.Parse(s)
	if err != nil {
		return nil, errors.New("not a valid URL")
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return nil, errors.New("must be an http or https URL")
	}
	if u.Host == "" {
		return nil, errors.New("must be an absolute URL with a host")
	}
	return u, nil
}

// redactURL is u without user info, query or fragment: safe to log.
func redactURL(u *url.URL) string {
	r := url.URL{Scheme: u.Scheme, Host: u.Host, Path: u.Path}
	return r.String()
}
