package e2e

import (
	"fmt"
	"net/http"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// result is one call of a load run.
type result struct {
	at         time.Time // when it was sent
	took       time.Duration
	replica    int
	kind       string // "api" or "session"
	status     int    // 0: transport error
	retryAfter string
	err        string
}

// load keeps workers calling the replicas until stopped: proxied calls with
// tok and, when p is set, session API calls (GET /api/tokens, which reads
// Redis).
type load struct {
	st      *stack
	mu      sync.Mutex
	results []result
	stop    chan struct{}
	wg      sync.WaitGroup
	n       atomic.Int64
}

// startLoad starts workers goroutines; each sends one call at a time, to
// the replicas in turn.
func (st *stack) startLoad(workers int, tok string, p *person) *load {
	l := &load{st: st, stop: make(chan struct{})}
	for w := range workers {
		l.wg.Add(1)
		go func() {
			defer l.wg.Done()
			for i := w; ; i++ {
				select {
				case <-l.stop:
					return
				default:
				}
				ri := i % len(st.replicas)
				r := st.replicas[ri]
				res := result{at: time.Now(), replica: ri, kind: "api"}
				if p != nil && w == 0 {
					res.kind = "session"
					res.status, res.err = st.as(p, r, http.MethodGet, "/api/tokens", "")
					if res.status != 0 {
						res.err = ""
					}
					time.Sleep(5 * time.Millisecond)
				} else {
					var h http.Header
					res.status, h, res.err = st.call(r, tok)
					if res.status != 0 {
						res.retryAfter = h.Get("Retry-After")
						if res.status == http.StatusOK {
							res.err = ""
						} else {
							res.err = firstLine(res.err)
						}
					}
				}
				res.took = time.Since(res.at)
				l.mu.Lock()
				l.results = append(l.results, res)
				l.mu.Unlock()
				l.n.Add(1)
			}
		}()
	}
	return l
}

func firstLine(s string) string {
	s, _, _ = strings.Cut(s, "\n")
	if len(s) > 300 {
		s = s[:300]
	}
	return s
}

// finish stops the workers and returns every result, in order sent.
func (l *load) finish() []result {
	close(l.stop)
	l.wg.Wait()
	l.mu.Lock()
	defer l.mu.Unlock()
	sort.Slice(l.results, func(i, j int) bool { return l.results[i].at.Before(l.results[j].at) })
	return l.results
}

// summary counts results by kind and status.
func summary(rs []result) string {
	counts := map[string]int{}
	for _, r := range rs {
		counts[fmt.Sprintf("%s %d", r.kind, r.status)]++
	}
	keys := make([]string, 0, len(counts))
	for k := range counts {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var b strings.Builder
	for _, k := range keys {
		fmt.Fprintf(&b, "%s: %d; ", k, counts[k])
	}
	return b.String()
}
