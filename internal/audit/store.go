package audit

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

// maxBatch is the most events written in one pipeline.
const maxBatch = 256

// eventField is the stream entry field holding the Event's JSON.
const eventField = "event"

// storeLoop is the single writer: it takes whatever is queued, up to
// maxBatch events, and writes it in one pipeline, until Close closes the
// queue and it is drained.
func (l *Log) storeLoop() {
	defer close(l.storeDone)
	batch := make([]Event, 0, maxBatch)
	for e := range l.storeQ {
		batch = append(batch[:0], *e)
	fill:
		for len(batch) < maxBatch {
			select {
			case e, ok := <-l.storeQ:
				if !ok {
					break fill
				}
				batch = append(batch, *e)
			default:
				break fill
			}
		}
		l.write(batch)
	}
}

// write stores batch, retrying what failed up to storeAttempts times with
// backoff (once only while closing), then drops and counts the rest.
func (l *Log) write(batch []Event) {
	pending := batch
	var err error
	for attempt := 1; ; attempt++ {
		if pending, err = l.xadd(pending); err == nil {
			return
		}
		if attempt >= l.cfg.storeAttempts || l.isClosing() {
			break
		}
		d := l.cfg.storeBackoff << (attempt - 1)
		t := time.NewTimer(d)
		select {
		case <-t.C:
		case <-l.closing:
			t.Stop()
		}
	}
	l.storeDropped.Add(float64(len(pending)))
	l.log.Error("audit events not stored in redis (see llmgate_audit_dropped_total)", "count", len(pending), "err", err)
	if l.isClosing() {
		l.lostAtClose += len(pending)
		l.lastStoreErr = err
	}
}

func (l *Log) isClosing() bool {
	select {
	case <-l.closing:
		return true
	default:
		return false
	}
}

// xadd appends events to the stream in one pipeline, trimming it to about
// MaxLen entries, and returns the events whose XADD failed.
func (l *Log) xadd(events []Event) ([]Event, error) {
	if err := l.storeCtx.Err(); err != nil {
		return events, fmt.Errorf("store audit events: %w", err)
	}
	ctx, cancel := context.WithTimeout(l.storeCtx, l.cfg.writeTimeout)
	defer cancel()
	pipe := l.rdb.Pipeline()
	cmds := make([]*redis.StringCmd, len(events))
	for i, e := range events {
		b, err := json.Marshal(e)
		if err != nil { // cannot happen: Event holds only strings, ints and a time
			return events, fmt.Errorf("encode audit event: %w", err)
		}
		cmds[i] = pipe.XAdd(ctx, &redis.XAddArgs{
			Stream: l.key,
			MaxLen: l.cfg.MaxLen,
			Approx: true,
			Values: []string{eventField, string(b)},
		})
	}
	_, err := pipe.Exec(ctx)
	if err == nil {
		return nil, nil
	}
	var failed []Event
	for i, c := range cmds {
		if c.Err() != nil {
			failed = append(failed, events[i])
		}
	}
	if len(failed) == 0 {
		return nil, nil
	}
	return failed, fmt.Errorf("store audit events: %w", err)
}

// List returns the events f selects, newest first (in the order they were
// stored, which every replica shares), and the cursor of the next page.
//
// List reads the stream backwards in bounded steps (XREVRANGE … COUNT) and
// filters as it goes. It examines at most a few thousand entries per call
// (5000): when a filter is so selective that those hold fewer than
// f.Limit matches, it returns the matches found — possibly none — with a
// Next cursor just past the last entry examined, and the client keeps
// paging. Next is empty only when the stream has been read to its oldest
// entry (or, unfiltered, when no older entry exists).
//
// List returns an error wrapping ErrInvalidCursor for a cursor it did not
// hand out, and wraps Redis errors.
func (l *Log) List(ctx context.Context, f Filter) (Page, error) {
	limit := f.Limit
	if limit <= 0 {
		limit = DefaultLimit
	}
	limit = min(limit, MaxLimit)
	page := Page{Events: make([]Event, 0, min(limit, 64))}

	start := "+"
	if f.Cursor != "" {
		id, err := decodeCursor(f.Cursor)
		if err != nil {
			return Page{}, fmt.Errorf("list audit events: %w", err)
		}
		prev, ok := id.before()
		if !ok {
			return page, nil
		}
		start = prev.String()
	}

	filtered := f.Email != "" || f.Type != ""
	last := "" // id of the newest entry not yet examined is just below last
	scanned := 0
	for {
		// Unfiltered, one entry more than the page tells whether a next
		// page exists; filtered, scan in steps within the budget.
		n := int64(limit + 1 - len(page.Events))
		if filtered {
			n = l.cfg.scanBatch
		}
		n = min(n, int64(l.cfg.scanMax-scanned))
		if n <= 0 {
			page.Next = encodeCursor(last)
			return page, nil
		}
		msgs, err := l.rdb.XRevRangeN(ctx, l.key, start, "-", n).Result()
		if err != nil {
			return Page{}, fmt.Errorf("list audit events: %w", err)
		}
		for _, m := range msgs {
			e, ok := l.decode(m)
			if ok && f.match(e) {
				if len(page.Events) == limit {
					// A match that does not fit: the next page starts here.
					page.Next = encodeCursor(last)
					return page, nil
				}
				page.Events = append(page.Events, e)
			}
			last = m.ID
			scanned++
		}
		if int64(len(msgs)) < n || last == "" {
			return page, nil // the oldest entry has been read
		}
		id, err := parseID(last)
		if err != nil {
			return Page{}, fmt.Errorf("list audit events: entry id %q: %w", last, err)
		}
		prev, ok := id.before()
		if !ok {
			return page, nil
		}
		start = prev.String()
	}
}

// decode turns a stream entry into its Event; entries that are not (a
// foreign writer, a corrupted value) are skipped with a log line.
func (l *Log) decode(m redis.XMessage) (Event, bool) {
	var e Event
	s, _ := m.Values[eventField].(string)
	if err := json.Unmarshal([]byte(s), &e); err != nil {
		l.log.Warn("audit stream entry is not an event: skipped", "id", m.ID, "err", err)
		return Event{}, false
	}
	e.ID = m.ID
	return e, true
}

// streamID is a Redis stream entry id, ms-seq.
type streamID struct{ ms, seq uint64 }

func parseID(s string) (streamID, error) {
	a, b, ok := strings.Cut(s, "-")
	if !ok {
		return streamID{}, errors.New("not a stream id")
	}
	ms, err := strconv.ParseUint(a, 10, 64)
	if err != nil {
		return streamID{}, errors.New("not a stream id")
	}
	seq, err := strconv.ParseUint(b, 10, 64)
	if err != nil {
		return streamID{}, errors.New("not a stream id")
	}
	return streamID{ms, seq}, nil
}

func (id streamID) String() string {
	return strconv.FormatUint(id.ms, 10) + "-" + strconv.FormatUint(id.seq, 10)
}

// before returns the greatest id below id (an inclusive XREVRANGE bound
// that excludes id itself on every Redis version); false for 0-0.
func (id streamID) before() (streamID, bool) {
	switch {
	case id.seq > 0:
		return streamID{id.ms, id.seq - 1}, true
	case id.ms > 0:
		return streamID{id.ms - 1, ^uint64(0)}, true
	default:
		return streamID{}, false
	}
}

// Cursors are the id of the last entry examined, base64url-encoded: opaque
// to clients, and nothing to keep server-side.
func encodeCursor(id string) string {
	return base64.RawURLEncoding.EncodeToString([]byte(id))
}

func decodeCursor(c string) (streamID, error) {
	b, err := base64.RawURLEncoding.DecodeString(c)
	if err != nil {
		return streamID{}, ErrInvalidCursor
	}
	id, err := parseID(string(b))
	if err != nil {
		return streamID{}, ErrInvalidCursor
	}
	return id, nil
}
