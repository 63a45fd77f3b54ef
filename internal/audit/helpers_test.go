package audit

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/llmgate/llmgate/internal/logtest"
	"github.com/llmgate/llmgate/internal/redistest"
)

// t0 is the fake clock's start.
var t0 = time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)

// clock is a fake clock that moves one second per reading, so that every
// recorded event has its own time.
type clock struct {
	mu  sync.Mutex
	now time.Time
}

func newClock() *clock { return &clock{now: t0} }

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(time.Second)
	return c.now
}

// fast shortens every background delay so that tests run in milliseconds.
func fast(c *Config) {
	c.backoff = time.Millisecond
	c.maxBackoff = 5 * time.Millisecond
	c.storeBackoff = time.Millisecond
	c.writeTimeout = 2 * time.Second
	c.flushTimeout = 10 * time.Second
	c.webhookGrace = 2 * time.Second
}

// newLog returns a Log on srv under the test's prefix with a fake clock and
// fast backoffs; opts adjust the Config. The Log is closed when the test
// ends (if the test has not closed it).
func newLog(tb testing.TB, srv *redistest.Server, opts ...func(*Config)) *Log {
	tb.Helper()
	// The Log's own lines (not the event lines) are shown if the test fails.
	var buf logtest.Buffer
	h := slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug})
	c := Config{Prefix: srv.Prefix, Now: newClock().Now, Logger: slog.New(skipEvents{h})}
	fast(&c)
	for _, o := range opts {
		o(&c)
	}
	l := New(srv.Client, c)
	tb.Cleanup(func() {
		l.Close()
		if tb.Failed() {
			tb.Logf("audit log lines:\n%s", buf.String())
		}
	})
	return l
}

// skipEvents drops the one-per-event "audit" lines.
type skipEvents struct{ slog.Handler }

func (h skipEvents) Handle(ctx context.Context, r slog.Record) error {
	if r.Message == "audit" {
		return nil
	}
	return h.Handler.Handle(ctx, r)
}

// counter returns the value of the counter name{label=value} of l.
func counter(tb testing.TB, l *Log, name, label, value string) float64 {
	tb.Helper()
	reg := prometheus.NewRegistry()
	reg.MustRegister(l.Collectors()...)
	mfs, err := reg.Gather()
	if err != nil {
		tb.Fatalf("Gather: %v", err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, lp := range m.GetLabel() {
				if lp.GetName() == label && lp.GetValue() == value {
					return m.GetCounter().GetValue()
				}
			}
		}
		return 0
	}
	tb.Fatalf("no metric %s", name)
	return 0
}

// labels returns every name{label=value} series of l's metrics.
func labels(tb testing.TB, l *Log) []string {
	tb.Helper()
	reg := prometheus.NewRegistry()
	reg.MustRegister(l.Collectors()...)
	mfs, err := reg.Gather()
	if err != nil {
		tb.Fatalf("Gather: %v", err)
	}
	var out []string
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			var ls []string
			for _, lp := range m.GetLabel() {
				ls = append(ls, lp.GetName()+"="+lp.GetValue())
			}
			out = append(out, fmt.Sprintf("%s{%s}", mf.GetName(), strings.Join(ls, ",")))
		}
	}
	return out
}

// waitFor polls cond until it holds, failing tb after 5 s.
func waitFor(tb testing.TB, what string, cond func() bool) {
	tb.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			tb.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// textLogger returns a logger writing text lines at Debug and above to buf.
func textLogger(buf *logtest.Buffer) *slog.Logger {
	return slog.New(slog.NewTextHandler(buf, &slog.HandlerOptions{Level: slog.LevelDebug}))
}
