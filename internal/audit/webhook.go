package audit

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/url"
	"strconv"
	"time"
)

// hookLoop is one webhook worker: it delivers queued events until Close
// closes the queue; after the grace period it drops what is left.
func (l *Log) hookLoop() {
	defer l.hookWG.Done()
	for e := range l.hookQ {
		if l.hookCtx.Err() != nil {
			l.hookDropped.Inc()
			continue
		}
		l.deliver(*e)
	}
}

// deliver POSTs e until a 2xx, a status that retrying cannot fix (4xx but
// 429, 3xx), MaxAttempts, or the end of Close's grace period.
func (l *Log) deliver(e Event) {
	body, err := json.Marshal(e)
	if err != nil { // cannot happen: Event holds only strings, ints and a time
		l.m.deliveries.WithLabelValues(resultFailed).Inc()
		l.log.Error("audit webhook: encode event", "type", e.Type, "err", err)
		return
	}
	for attempt := 1; ; attempt++ {
		status, wait, err := l.post(body)
		if err == nil && status >= 200 && status < 300 {
			l.m.deliveries.WithLabelValues(resultOK).Inc()
			return
		}
		if l.hookCtx.Err() != nil {
			l.hookDropped.Inc() // shutting down
			return
		}
		retryable := err != nil || status == http.StatusTooManyRequests || status >= 500
		if !retryable || attempt >= l.cfg.MaxAttempts {
			l.m.deliveries.WithLabelValues(resultFailed).Inc()
			args := []any{"webhook", l.hookName, "type", e.Type, "attempts", attempt}
			if err != nil {
				args = append(args, "err", err)
			} else {
				args = append(args, "status", status)
			}
			l.log.Warn("audit webhook delivery failed", args...)
			return
		}
		l.m.deliveries.WithLabelValues(resultRetried).Inc()
		d := max(l.backoff(attempt), wait)
		d = min(d, l.cfg.maxBackoff)
		args := []any{"webhook", l.hookName, "type", e.Type, "attempt", attempt, "wait", d}
		if err != nil {
			args = append(args, "err", err)
		} else {
			args = append(args, "status", status)
		}
		l.log.Debug("audit webhook delivery retried", args...)
		t := time.NewTimer(d)
		select {
		case <-t.C:
		case <-l.hookCtx.Done():
			t.Stop()
			l.hookDropped.Inc()
			return
		}
	}
}

// backoff is the wait after failed attempt n (1-based): backoff·2ⁿ⁻¹,
// capped, with "equal jitter" (between half and all of it).
func (l *Log) backoff(n int) time.Duration {
	d := l.cfg.maxBackoff
	if n < 32 {
		d = min(l.cfg.backoff<<(n-1), l.cfg.maxBackoff)
	}
	if d <= 0 {
		d = l.cfg.maxBackoff
	}
	half := d / 2
	return half + time.Duration(rand.Int64N(int64(d-half)+1))
}

// post makes one attempt. It returns the status and the wait the receiver
// asked for in Retry-After. Its error never includes the URL's query.
func (l *Log) post(body []byte) (int, time.Duration, error) {
	req, err := http.NewRequestWithContext(l.hookCtx, http.MethodPost, l.hookURL, bytes.NewReader(body))
	if err != nil {
		return 0, 0, errors.New("audit webhook: cannot build the request") // the error would quote the URL
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "llmgate")
	resp, err := l.client.Do(req)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err // ue.Error() quotes the whole URL
		}
		return 0, 0, fmt.Errorf("post to audit webhook: %w", err)
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	return resp.StatusCode, l.retryAfter(resp.Header.Get("Retry-After")), nil
}

// retryAfter parses a Retry-After header: seconds or an HTTP date.
func (l *Log) retryAfter(v string) time.Duration {
	if v == "" {
		return 0
	}
	if s, err := strconv.Atoi(v); err == nil && s > 0 {
		return time.Duration(s) * time.Second
	}
	if t, err := http.ParseTime(v); err == nil {
		return max(t.Sub(l.cfg.Now()), 0)
	}
	return 0
}
