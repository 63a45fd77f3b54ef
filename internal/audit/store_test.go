package audit

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"github.com/redis/go-redis/v9"

	"github.com/llmgate/llmgate/internal/redistest"
)

// ignoreID compares events without their stream ids.
var ignoreID = cmpopts.IgnoreFields(Event{}, "ID")

// listAll pages through f with limit per page and returns every event and
// the number of List calls.
func listAll(tb testing.TB, l *Log, f Filter) ([]Event, int) {
	tb.Helper()
	var all []Event
	for calls := 1; ; calls++ {
		p, err := l.List(context.Background(), f)
		if err != nil {
			tb.Fatalf("List(%+v) call %d: %v", f, calls, err)
		}
		limit := f.Limit
		if limit <= 0 {
			limit = DefaultLimit
		}
		if len(p.Events) > min(limit, MaxLimit) {
			tb.Fatalf("List(%+v) returned %d events, more than the limit", f, len(p.Events))
		}
		all = append(all, p.Events...)
		if p.Next == "" {
			return all, calls
		}
		if calls > 10_000 {
			tb.Fatalf("List(%+v) never ends", f)
		}
		f.Cursor = p.Next
	}
}

// reversed returns a copy of evs, newest (last recorded) first.
func reversed(evs []Event) []Event {
	out := make([]Event, len(evs))
	for i, e := range evs {
		out[len(evs)-1-i] = e
	}
	return out
}

// record records evs on l, fills in the times the fake clock gave them and
// returns them as List should return them (without ids).
func record(l *Log, evs []Event) []Event {
	out := make([]Event, len(evs))
	for i, e := range evs {
		l.Record(e)
		out[i] = normalize(e, func() time.Time { return time.Time{} })
	}
	return out
}

func TestListNewestFirst(t *testing.T) {
	redistest.Each(t, func(t *testing.T, srv *redistest.Server) {
		l := newLog(t, srv)
		given := time.Date(2029, 5, 6, 7, 8, 9, 0, time.FixedZone("CEST", 2*3600))
		in := []Event{
			{Type: TypeLogin, Email: "alice@example.com", IP: "192.0.2.1", Details: map[string]string{"groups": "eng,ml"}},
			{Type: TypeTokenCreate, Actor: "alice@example.com", Email: "alice@example.com", TokenID: "tok-1", Details: map[string]string{"name": "laptop"}},
			{Type: TypeAPIRefused, Email: "alice@example.com", TokenID: "tok-1", IP: "192.0.2.1", Status: 401, Reason: "token revoked"},
			{Type: TypeUserBlock, Actor: "root@example.com", Email: "bob@example.com", Reason: "left the company"},
			{Type: TypeLogout, Email: "alice@example.com", Time: given},
		}
		for _, e := range in {
			l.Record(e)
		}
		if err := l.Close(); err != nil {
			t.Fatalf("Close: %v", err)
		}
		p, err := l.List(context.Background(), Filter{})
		if err != nil {
			t.Fatalf("List: %v", err)
		}
		want := []Event{in[4], in[3], in[2], in[1], in[0]}
		want[0].Time = given.UTC()
		for i := range 4 { // the fake clock moves a second per reading
			want[4-i].Time = t0.Add(time.Duration(i+1) * time.Second)
		}
		if diff := cmp.Diff(want, p.Events, ignoreID); diff != "" {
			t.Errorf("List(Filter{}) events (-want +got):\n%s", diff)
		}
		if p.Next != "" {
			t.Errorf("List(Filter{}).Next = %q, want empty: every event fits one page", p.Next)
		}
		for i, e := range p.Events {
			if e.ID == "" {
				t.Fatalf("event %d has no ID", i)
			}
			if i > 0 {
				prev, _ := parseID(p.Events[i-1].ID)
				cur, _ := parseID(e.ID)
				if !(cur.ms < prev.ms || cur.ms == prev.ms && cur.seq < prev.seq) {
					t.Errorf("IDs not descending: %s then %s", p.Events[i-1].ID, e.ID)
				}
			}
		}
		if got := p.Events[0].Time.Location(); got != time.UTC {
			t.Errorf("stored Time location = %v, want UTC", got)
		}
	})
}

func TestListFilters(t *testing.T) {
	redistest.Each(t, func(t *testing.T, srv *redistest.Server) {
		l := newLog(t, srv)
		emails := []string{"alice@example.com", "bob@example.com", "carol@example.com"}
		types := []string{TypeLogin, TypeTokenCreate, TypeTokenRevoke, TypeAPIRefused, TypeLogout, TypeUserRevoke, "tokenish"}
		var in []Event
		for i := range 120 {
			e := Event{Type: types[i%len(types)], Email: emails[i%len(emails)], Details: map[string]string{"n": fmt.Sprint(i)}}
			if e.Type == TypeUserRevoke {
				e.Actor = "root@example.com"
			}
			in = append(in, e)
		}
		stored := reversed(record(l, in))
		if err := l.Close(); err != nil {
			t.Fatalf("Close: %v", err)
		}
		// Times are the fake clock's, one second apart, in recording order.
		for i := range stored {
			stored[i].Time = t0.Add(time.Duration(len(stored)-i) * time.Second)
		}
		tests := []struct {
			name string
			f    Filter
			keep func(Event) bool
		}{
			{"all", Filter{}, func(Event) bool { return true }},
			{"email", Filter{Email: "bob@example.com"}, func(e Event) bool { return e.Email == "bob@example.com" }},
			{"email any case", Filter{Email: "Alice@Example.COM"}, func(e Event) bool { return e.Email == "alice@example.com" }},
			{"email matches actor", Filter{Email: "root@example.com"}, func(e Event) bool { return e.Actor == "root@example.com" }},
			{"type exact", Filter{Type: TypeTokenCreate}, func(e Event) bool { return e.Type == TypeTokenCreate }},
			{"type exact is not a prefix", Filter{Type: "token"}, func(Event) bool { return false }},
			{"type prefix", Filter{Type: "token."}, func(e Event) bool { return strings.HasPrefix(e.Type, "token.") }},
			{"email and type", Filter{Email: "carol@example.com", Type: "token."}, func(e Event) bool {
				return e.Email == "carol@example.com" && strings.HasPrefix(e.Type, "token.")
			}},
			{"no match", Filter{Email: "nobody@example.com"}, func(Event) bool { return false }},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				var want []Event
				for _, e := range stored {
					if tt.keep(e) {
						want = append(want, e)
					}
				}
				for _, limit := range []int{0, 1, 7, 500} {
					f := tt.f
					f.Limit = limit
					got, _ := listAll(t, l, f)
					if diff := cmp.Diff(want, got, ignoreID, cmpopts.EquateEmpty()); diff != "" {
						t.Errorf("List(%+v), all pages (-want +got):\n%s", f, diff)
					}
				}
			})
		}
	})
}

func TestListPaging(t *testing.T) {
	redistest.Each(t, func(t *testing.T, srv *redistest.Server) {
		l := newLog(t, srv)
		var in []Event
		for i := range 1234 {
			in = append(in, Event{Type: TypeLogin, Email: fmt.Sprintf("u%d@example.com", i)})
		}
		record(l, in)
		if err := l.Close(); err != nil {
			t.Fatalf("Close: %v", err)
		}
		tests := []struct {
			name  string
			limit int
			sizes []int // events per page; Next empty after the last
		}{
			{"default 50", 0, pages(1234, 50)},
			{"limit 100", 100, pages(1234, 100)},
			{"capped at 500", 5000, []int{500, 500, 234}},
			{"last page exactly full", 2, pages(1234, 2)},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				f := Filter{Limit: tt.limit}
				var sizes []int
				var emails []string
				for {
					p, err := l.List(context.Background(), f)
					if err != nil {
						t.Fatalf("List(%+v): %v", f, err)
					}
					sizes = append(sizes, len(p.Events))
					for _, e := range p.Events {
						emails = append(emails, e.Email)
					}
					if p.Next == "" {
						break
					}
					f.Cursor = p.Next
				}
				if diff := cmp.Diff(tt.sizes, sizes); diff != "" {
					t.Errorf("page sizes with Limit %d (-want +got):\n%s", tt.limit, diff)
				}
				for i, e := range emails {
					if want := fmt.Sprintf("u%d@example.com", 1233-i); e != want {
						t.Fatalf("event %d across pages = %s, want %s (newest first, none repeated or skipped)", i, e, want)
					}
				}
			})
		}
	})
}

// pages returns the page sizes of n events at limit per page.
func pages(n, limit int) []int {
	var out []int
	for ; n > limit; n -= limit {
		out = append(out, limit)
	}
	return append(out, n)
}

// scanCounter counts the stream entries XREVRANGE returns.
type scanCounter struct{ n atomic.Int64 }

func (c *scanCounter) DialHook(next redis.DialHook) redis.DialHook { return next }
func (c *scanCounter) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		err := next(ctx, cmd)
		if x, ok := cmd.(*redis.XMessageSliceCmd); ok && strings.EqualFold(cmd.Name(), "xrevrange") {
			c.n.Add(int64(len(x.Val())))
		}
		return err
	}
}
func (c *scanCounter) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return next
}

func TestListSelectiveFilterIsBounded(t *testing.T) {
	redistest.Each(t, func(t *testing.T, srv *redistest.Server) {
		l := newLog(t, srv, func(c *Config) { c.scanBatch, c.scanMax = 10, 30 })
		rare := Event{Type: TypeUserBlock, Email: "mallory@example.com"}
		in := []Event{rare} // the oldest
		for i := range 100 {
			in = append(in, Event{Type: TypeLogin, Email: fmt.Sprintf("u%d@example.com", i)})
		}
		record(l, in)
		if err := l.Close(); err != nil {
			t.Fatalf("Close: %v", err)
		}
		scans := &scanCounter{}
		srv.Client.AddHook(scans)

		f := Filter{Type: TypeUserBlock, Limit: 10}
		var got []Event
		for call := 1; ; call++ {
			before := scans.n.Load()
			p, err := l.List(context.Background(), f)
			if err != nil {
				t.Fatalf("List call %d: %v", call, err)
			}
			if n := scans.n.Load() - before; n > 30 {
				t.Errorf("List call %d read %d entries, want at most scanMax=30", call, n)
			}
			got = append(got, p.Events...)
			if call < 4 && (len(p.Events) != 0 || p.Next == "") {
				t.Errorf("List call %d = %d events, Next %q; want none yet and a Next cursor to keep paging", call, len(p.Events), p.Next)
			}
			if p.Next == "" {
				if call != 4 {
					t.Errorf("List took %d calls to read 101 entries 30 at a time, want 4", call)
				}
				break
			}
			if call > 10 {
				t.Fatal("List never ends")
			}
			f.Cursor = p.Next
		}
		if len(got) != 1 || got[0].Email != rare.Email {
			t.Errorf("paging List(Type %q) found %+v, want only the blocked person", TypeUserBlock, got)
		}
	})
}

func TestListCursor(t *testing.T) {
	redistest.Each(t, func(t *testing.T, srv *redistest.Server) {
		l := newLog(t, srv)
		record(l, []Event{{Type: TypeLogin}, {Type: TypeLogout}})
		if err := l.Close(); err != nil {
			t.Fatalf("Close: %v", err)
		}
		b64 := base64.RawURLEncoding.EncodeToString
		bad := []struct{ name, cursor string }{
			{"not base64", "!!!"},
			{"not an id", b64([]byte("nope"))},
			{"half an id", b64([]byte("123-"))},
			{"raw id", "1-0"},
		}
		for _, tt := range bad {
			t.Run(tt.name, func(t *testing.T) {
				_, err := l.List(context.Background(), Filter{Cursor: tt.cursor})
				if !errors.Is(err, ErrInvalidCursor) {
					t.Errorf("List(Cursor %q) error = %v, want ErrInvalidCursor", tt.cursor, err)
				}
			})
		}
		t.Run("before the first entry", func(t *testing.T) {
			p, err := l.List(context.Background(), Filter{Cursor: b64([]byte("0-0"))})
			if err != nil || len(p.Events) != 0 || p.Next != "" {
				t.Errorf("List(Cursor 0-0) = %+v, %v; want an empty last page", p, err)
			}
		})
		t.Run("ms boundary", func(t *testing.T) {
			// An id with sequence 0 continues below its millisecond.
			all, err := l.List(context.Background(), Filter{})
			if err != nil || len(all.Events) != 2 {
				t.Fatalf("List() = %+v, %v", all, err)
			}
			id, _ := parseID(all.Events[0].ID)
			c := b64([]byte(streamID{id.ms, 0}.String()))
			p, err := l.List(context.Background(), Filter{Cursor: c})
			if err != nil {
				t.Fatalf("List(Cursor %s-0): %v", fmt.Sprint(id.ms), err)
			}
			for _, e := range p.Events {
				eid, _ := parseID(e.ID)
				if eid.ms >= id.ms {
					t.Errorf("List(Cursor %d-0) returned %s, want only ids below it", id.ms, e.ID)
				}
			}
		})
	})
}

func TestMaxLen(t *testing.T) {
	redistest.Each(t, func(t *testing.T, srv *redistest.Server) {
		const limit = 100
		l := newLog(t, srv, func(c *Config) { c.MaxLen = limit })
		for i := range 1000 {
			l.Record(Event{Type: TypeLogin, Email: fmt.Sprintf("u%d@example.com", i)})
		}
		if err := l.Close(); err != nil {
			t.Fatalf("Close: %v", err)
		}
		n, err := srv.Client.XLen(context.Background(), srv.Prefix+"audit").Result()
		if err != nil {
			t.Fatalf("XLEN: %v", err)
		}
		// MAXLEN ~ trims whole stream nodes only: never below the cap,
		// above it by less than a node (100 entries by default).
		if n < limit || n > limit+100 {
			t.Errorf("XLEN after 1000 events with MaxLen %d = %d, want %d..%d", limit, n, limit, limit+100)
		}
		p, err := l.List(context.Background(), Filter{Limit: 1})
		if err != nil || len(p.Events) != 1 || p.Events[0].Email != "u999@example.com" {
			t.Errorf("List(Limit 1) = %+v, %v; want the newest event u999", p, err)
		}
	})
}

func TestCloseFlushes(t *testing.T) {
	redistest.Each(t, func(t *testing.T, srv *redistest.Server) {
		l := newLog(t, srv)
		for i := range 2000 {
			l.Record(Event{Type: TypeTokenCreate, TokenID: fmt.Sprint(i)})
		}
		if err := l.Close(); err != nil {
			t.Fatalf("Close: %v", err)
		}
		if err := l.Close(); err != nil {
			t.Errorf("second Close: %v", err)
		}
		got, _ := listAll(t, l, Filter{Limit: 500})
		if len(got) != 2000 {
			t.Fatalf("after Close, List finds %d events, want all 2000", len(got))
		}
		if got[0].TokenID != "1999" || got[1999].TokenID != "0" {
			t.Errorf("after Close, newest/oldest = %s/%s, want 1999/0", got[0].TokenID, got[1999].TokenID)
		}
		if d := counter(t, l, "llmgate_audit_dropped_total", "queue", "store"); d != 0 {
			t.Errorf("dropped{store} = %v, want 0", d)
		}

		l.Record(Event{Type: TypeLogin}) // after Close: logged, counted, not stored
		if d := counter(t, l, "llmgate_audit_dropped_total", "queue", "store"); d != 1 {
			t.Errorf("Record after Close: dropped{store} = %v, want 1", d)
		}
	})
}

func TestRecordRedisDown(t *testing.T) {
	srv := redistest.Mini(t)
	l := newLog(t, srv, func(c *Config) { c.StoreQueueSize = 10 })
	l.Record(Event{Type: TypeLogin, Email: "before@example.com"})
	waitFor(t, "the first event to be stored", func() bool {
		n, _ := srv.Client.XLen(context.Background(), srv.Prefix+"audit").Result()
		return n == 1
	})

	srv.Mini.Close()
	const n = 5000
	start := time.Now()
	var slowest time.Duration
	for i := range n {
		s := time.Now()
		l.Record(Event{Type: TypeAPIRefused, Status: 401, TokenID: fmt.Sprint(i)})
		slowest = max(slowest, time.Since(s))
	}
	// A Record that waited for Redis would take at least go-redis's retries
	// of a refused connection; the bounds leave room for a loaded machine.
	if d := time.Since(start); d > 5*time.Second || slowest > time.Second {
		t.Errorf("%d Records with Redis down took %v, slowest %v; Record must not wait", n, d, slowest)
	}
	if d := counter(t, l, "llmgate_audit_dropped_total", "queue", "store"); d < n-10-maxBatch {
		t.Errorf("dropped{store} = %v after %d events into a queue of 10, want at least %d", d, n, n-10-maxBatch)
	}

	// Redis comes back: new events are stored again.
	if err := srv.Mini.Restart(); err != nil {
		t.Fatalf("restart miniredis: %v", err)
	}
	waitFor(t, "the queue to drain", func() bool { return len(l.storeQ) == 0 })
	time.Sleep(50 * time.Millisecond) // let an in-flight batch finish
	l.Record(Event{Type: TypeLogin, Email: "after@example.com"})
	l.Close()
	if got := counter(t, l, "llmgate_audit_events_total", "type", TypeAPIRefused); got != n {
		t.Errorf("events_total{api.refused} = %v, want %d", got, n)
	}
	p, err := l.List(context.Background(), Filter{Type: TypeLogin})
	if err != nil {
		t.Fatalf("List after restart: %v", err)
	}
	var emails []string
	for _, e := range p.Events {
		emails = append(emails, e.Email)
	}
	if diff := cmp.Diff([]string{"after@example.com", "before@example.com"}, emails); diff != "" {
		t.Errorf("logins stored around the outage (-want +got):\n%s", diff)
	}
}

func TestRecordRedisHangs(t *testing.T) {
	// A "Redis" that accepts connections and never answers.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	var mu sync.Mutex
	var conns []net.Conn
	defer func() {
		mu.Lock()
		defer mu.Unlock()
		for _, c := range conns {
			c.Close()
		}
	}()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c) // read by nobody, closed by the test
			mu.Unlock()
		}
	}()
	rdb := redis.NewClient(&redis.Options{Addr: ln.Addr().String(), ReadTimeout: time.Second, DialTimeout: time.Second})
	defer rdb.Close()
	l := New(rdb, Config{StoreQueueSize: 10, writeTimeout: time.Minute, flushTimeout: 300 * time.Millisecond, storeBackoff: time.Millisecond})

	const n = 5000
	start := time.Now()
	for range n {
		l.Record(Event{Type: TypeLoginRefused})
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("%d Records with Redis hanging took %v; Record must not wait", n, d)
	}
	start = time.Now()
	err = l.Close()
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("Close with Redis hanging took %v, want about the flush timeout", d)
	}
	if err == nil || !strings.Contains(err.Error(), "not written") {
		t.Errorf("Close with Redis hanging = %v, want an error saying events were not written", err)
	}
	if d := counter(t, l, "llmgate_audit_dropped_total", "queue", "store"); d != n {
		t.Errorf("dropped{store} = %v, want all %d", d, n)
	}
}

func TestRecordCopiesAndRedacts(t *testing.T) {
	redistest.Each(t, func(t *testing.T, srv *redistest.Server) {
		l := newLog(t, srv)
		d := map[string]string{"name": "laptop", "Token": "eyJ.secret.value", "password": "hunter2"}
		l.Record(Event{Type: TypeTokenCreate, Details: d})
		d["name"] = "changed after Record"
		if err := l.Close(); err != nil {
			t.Fatalf("Close: %v", err)
		}
		p, err := l.List(context.Background(), Filter{})
		if err != nil || len(p.Events) != 1 {
			t.Fatalf("List = %+v, %v", p, err)
		}
		want := map[string]string{"name": "laptop", "Token": redacted, "password": redacted}
		if diff := cmp.Diff(want, p.Events[0].Details); diff != "" {
			t.Errorf("stored Details (-want +got):\n%s", diff)
		}
	})
}
