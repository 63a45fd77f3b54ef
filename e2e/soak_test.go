package e2e

import (
	"bufio"
	"fmt"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/llmgate/llmgate/internal/demoupstream"
)

// goroutines reads go_goroutines from r's /metrics.
func (st *stack) goroutines(t *testing.T, r *replica) int {
	t.Helper()
	resp, err := st.client.Get(r.url + "/metrics")
	if err != nil {
		t.Fatalf("GET /metrics: %v", err)
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "go_goroutines "); ok {
			f, _ := strconv.ParseFloat(v, 64)
			return int(f)
		}
	}
	t.Fatal("no go_goroutines in /metrics")
	return 0
}

// TestSoak runs mixed load for LLMGATE_E2E_SOAK (e.g. 10m) against two
// replicas — plain and streamed calls, refused calls, clients that hang up
// mid-stream, session API calls, tokens minted and revoked — and checks
// that resident memory and goroutines stay flat: the last quarter's
// average is within 25% (RSS) and 50 goroutines of the second quarter's.
func TestSoak(t *testing.T) {
	d, err := time.ParseDuration(os.Getenv("LLMGATE_E2E_SOAK"))
	if err != nil || d <= 0 {
		t.Skip("soak test: set LLMGATE_E2E_SOAK to a duration, e.g. LLMGATE_E2E_SOAK=10m go test -run TestSoak -v -timeout 30m ./e2e/")
	}
	st := newStack(t, options{replicas: 2, demo: demoupstream.Options{Chunks: 8, ChunkDelay: 20 * time.Millisecond}})
	bob := st.signIn("bob@example.com")
	alice := st.signIn("alice@example.com")
	tok := st.mint(bob, "soak")

	var calls, bad atomic.Int64
	var firstBad atomic.Value
	stop := make(chan struct{})
	var wg sync.WaitGroup
	worker := func(fn func(i int) error) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				calls.Add(1)
				if err := fn(i); err != nil {
					bad.Add(1)
					firstBad.CompareAndSwap(nil, err.Error())
				}
			}
		}()
	}
	expect := func(what string, got, want int) error {
		if got != want {
			return fmt.Errorf("%s: %d, want %d", what, got, want)
		}
		return nil
	}
	for w := range 4 {
		worker(func(i int) error {
			s, _, _ := st.call(st.replicas[(i+w)%2], tok.raw)
			return expect("chat", s, http.StatusOK)
		})
	}
	for w := range 2 {
		worker(func(i int) error {
			var done sync.WaitGroup
			s := st.openStream(st.replicas[(i+w)%2], tok.raw, &done)
			done.Wait()
			return s.complete(8)
		})
	}
	worker(func(i int) error { // clients that hang up mid-stream
		req, _ := http.NewRequest(http.MethodPost, st.replicas[i%2].url+"/v1/messages",
			strings.NewReader(`{"model":"claude-haiku-4-5","max_tokens":50,"stream":true,"messages":[{"role":"user","content":"bye"}]}`))
		req.Header.Set("x-api-key", tok.raw)
		resp, err := st.client.Do(req)
		if err != nil {
			return err
		}
		buf := make([]byte, 64)
		resp.Body.Read(buf)
		resp.Body.Close()
		return expect("stream hung up", resp.StatusCode, http.StatusOK)
	})
	worker(func(i int) error { // refused: a token that does not verify
		s, _, _ := st.call(st.replicas[i%2], tok.raw[:len(tok.raw)-4]+"AAAA")
		time.Sleep(5 * time.Millisecond)
		return expect("bad token", s, http.StatusUnauthorized)
	})
	worker(func(i int) error { // session API, token churn
		r := st.replicas[i%2]
		if s, _ := st.as(bob, r, http.MethodGet, "/api/tokens", ""); s != http.StatusOK {
			return expect("GET /api/tokens", s, http.StatusOK)
		}
		if i%10 == 0 {
			tk := st.mint(bob, fmt.Sprintf("churn-%d", i))
			if s, _, _ := st.call(r, tk.raw); s != http.StatusOK {
				return expect("new token", s, http.StatusOK)
			}
			if s, _ := st.as(alice, r, http.MethodDelete, "/api/admin/tokens/"+tk.id, ""); s != http.StatusOK {
				return expect("revoke", s, http.StatusOK)
			}
		}
		time.Sleep(20 * time.Millisecond)
		return nil
	})

	type sample struct{ rss, goroutines [2]int }
	var samples []sample
	every := max(d/40, time.Second)
	end := time.Now().Add(d)
	for time.Now().Before(end) {
		time.Sleep(every)
		var s sample
		for i, r := range st.replicas {
			s.rss[i] = r.rss(t)
			s.goroutines[i] = st.goroutines(t, r)
		}
		samples = append(samples, s)
		t.Logf("%v: calls %d, failed %d, RSS %v KiB, goroutines %v", time.Until(end).Round(time.Second), calls.Load(), bad.Load(), s.rss, s.goroutines)
	}
	close(stop)
	wg.Wait()
	if n := bad.Load(); n > 0 {
		t.Errorf("%d of %d calls failed; first: %v", n, calls.Load(), firstBad.Load())
	}
	q := len(samples) / 4
	if q == 0 {
		t.Fatalf("only %d samples: run longer", len(samples))
	}
	avg := func(from, to, i int, rss bool) float64 {
		sum := 0
		for _, s := range samples[from:to] {
			if rss {
				sum += s.rss[i]
			} else {
				sum += s.goroutines[i]
			}
		}
		return float64(sum) / float64(to-from)
	}
	for i := range st.replicas {
		rss2, rss4 := avg(q, 2*q, i, true), avg(len(samples)-q, len(samples), i, true)
		g2, g4 := avg(q, 2*q, i, false), avg(len(samples)-q, len(samples), i, false)
		t.Logf("replica %d: RSS %.0f → %.0f KiB, goroutines %.0f → %.0f (second quarter → last quarter)", i, rss2, rss4, g2, g4)
		if rss4 > rss2*1.25 {
			t.Errorf("replica %d: RSS grew from %.0f to %.0f KiB under steady load", i, rss2, rss4)
		}
		if g4 > g2+50 {
			t.Errorf("replica %d: goroutines grew from %.0f to %.0f under steady load", i, g2, g4)
		}
	}
}
