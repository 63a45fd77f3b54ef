package e2e

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/llmgate/llmgate/internal/demoupstream"
)

// openStreams is how many streams TestShutdownDrainsStreams holds open
// (LLMGATE_E2E_STREAMS overrides it).
func openStreams() int {
	if n, err := strconv.Atoi(os.Getenv("LLMGATE_E2E_STREAMS")); err == nil && n > 0 {
		return n
	}
	return 200
}

// stream is one streamed chat completion as the client saw it.
type stream struct {
	firstEvent chan struct{} // closed when the first event arrived
	body       string
	err        error
	ended      time.Time
}

// openStream starts a streamed chat completion with tok on r and reads it
// to the end in the background; done is signalled when it ends.
func (st *stack) openStream(r *replica, tok string, done *sync.WaitGroup) *stream {
	return st.openStreamAt(r, tok, "/v1/chat/completions",
		`{"model":"gpt-4o-mini","stream":true,"stream_options":{"include_usage":true},"messages":[{"role":"user","content":"count"}]}`, done)
}

// openStreamAt is openStream with another path and body.
func (st *stack) openStreamAt(r *replica, tok, path, body string, done *sync.WaitGroup) *stream {
	s := &stream{firstEvent: make(chan struct{})}
	done.Add(1)
	go func() {
		defer done.Done()
		defer func() { s.ended = time.Now() }()
		first := sync.OnceFunc(func() { close(s.firstEvent) })
		defer first()
		req, _ := http.NewRequest(http.MethodPost, r.url+path, strings.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+tok)
		req.Header.Set("Content-Type", "application/json")
		resp, err := st.client.Do(req)
		if err != nil {
			s.err = err
			return
		}
		defer resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			b, _ := io.ReadAll(resp.Body)
			s.err = fmt.Errorf("status %d: %s", resp.StatusCode, b)
			return
		}
		var b strings.Builder
		br := bufio.NewReader(resp.Body)
		for {
			line, err := br.ReadString('\n')
			b.WriteString(line)
			if line == "\n" {
				first()
			}
			if err != nil {
				if !errors.Is(err, io.EOF) {
					s.err = err
				}
				break
			}
		}
		s.body = b.String()
	}()
	return s
}

// complete reports whether a streamed chat completion ended as the
// upstream ended it: every delta, the usage chunk and [DONE], no error event.
func (s *stream) complete(chunks int) error {
	if s.err != nil {
		return s.err
	}
	if strings.Contains(s.body, `"error"`) {
		return fmt.Errorf("error event in the stream: %s", tail(s.body, 300))
	}
	if !strings.HasSuffix(s.body, "data: [DONE]\n\n") {
		return fmt.Errorf("stream truncated (no [DONE]): %s", tail(s.body, 300))
	}
	// One event per content delta, a finishing one and a usage one.
	if n := strings.Count("\n"+s.body, "\ndata: {"); n != chunks+2 {
		return fmt.Errorf("%d events, want %d (%d deltas, finish, usage)", n, chunks+2, chunks)
	}
	if !strings.Contains(s.body, `"usage":{`) {
		return fmt.Errorf("no usage chunk: %s", tail(s.body, 300))
	}
	return nil
}

// dialRefused reports whether a new TCP connection to addr is refused.
func dialRefused(addr string) bool {
	c, err := net.DialTimeout("tcp", addr, 500*time.Millisecond)
	if err == nil {
		c.Close()
		return false
	}
	return errors.Is(err, syscall.ECONNREFUSED)
}

// TestShutdownDrainsStreams sends SIGTERM to a replica holding 200 open
// streams: /readyz turns 503 while new connections are still accepted
// (LLMGATE_SHUTDOWN_DELAY), then new connections are refused, every open
// stream runs to its end within LLMGATE_SHUTDOWN_GRACE with nothing cut off,
// and the process exits 0.
func TestShutdownDrainsStreams(t *testing.T) {
	const (
		chunks     = 10
		chunkDelay = 300 * time.Millisecond // a stream lasts about 3 s
		delay      = time.Second
		grace      = 15 * time.Second
	)
	st := newStack(t, options{
		demo: demoupstream.Options{Chunks: chunks, ChunkDelay: chunkDelay},
		env:  []string{"LLMGATE_SHUTDOWN_DELAY=" + delay.String(), "LLMGATE_SHUTDOWN_GRACE=" + grace.String()},
	})
	bob := st.signIn("bob@example.com")
	tok := st.mint(bob, "streams")
	st.mustWork(tok.raw)
	r := st.replicas[0]

	n := openStreams()
	var done sync.WaitGroup
	streams := make([]*stream, n)
	for i := range streams {
		streams[i] = st.openStream(r, tok.raw, &done)
	}
	for i, s := range streams {
		select {
		case <-s.firstEvent:
		case <-time.After(20 * time.Second):
			t.Fatalf("stream %d: no first event within 20 s", i)
		}
	}
	for i, s := range streams {
		if s.err != nil {
			t.Fatalf("stream %d failed before shutdown: %v", i, s.err)
		}
	}

	tSig := time.Now()
	r.signal(syscall.SIGTERM)
	// /readyz turns 503 on fresh connections while the listener is open.
	fresh := &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	var readyAt time.Duration
	for time.Since(tSig) < delay {
		resp, err := fresh.Get(r.url + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusServiceUnavailable {
				readyAt = time.Since(tSig)
				break
			}
		}
		time.Sleep(10 * time.Millisecond)
	}
	if readyAt == 0 {
		t.Errorf("/readyz did not answer 503 on a new connection within LLMGATE_SHUTDOWN_DELAY (%v) of SIGTERM", delay)
	}
	// Then new connections are refused.
	var refusedAt time.Duration
	for time.Since(tSig) < delay+3*time.Second {
		if dialRefused(r.addr) {
			refusedAt = time.Since(tSig)
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if refusedAt == 0 {
		t.Errorf("new connections still accepted %v after SIGTERM (delay %v)", delay+3*time.Second, delay)
	}

	done.Wait()
	tDone := time.Since(tSig)
	code := r.exitCode(grace)
	tExit := time.Since(tSig)
	t.Logf("SIGTERM with %d open streams: /readyz 503 after %v, connections refused after %v, last stream ended %v, exit %d after %v (delay %v, grace %v)",
		n, readyAt.Round(time.Millisecond), refusedAt.Round(time.Millisecond), tDone.Round(time.Millisecond), code, tExit.Round(time.Millisecond), delay, grace)
	bad := 0
	for i, s := range streams {
		if err := s.complete(chunks); err != nil {
			bad++
			if bad <= 5 {
				t.Errorf("stream %d: %v", i, err)
			}
		}
		if s.ended.Sub(tSig) > delay+grace {
			t.Errorf("stream %d ended %v after SIGTERM, after delay + grace (%v)", i, s.ended.Sub(tSig), delay+grace)
		}
	}
	if bad > 0 {
		t.Errorf("%d of %d streams did not end as the upstream ended them", bad, n)
	}
	if code != 0 {
		t.Errorf("exit code %d after SIGTERM, want 0", code)
	}
}

// TestShutdownGraceOver sends SIGTERM while streams are longer than the
// grace period: the process still exits 0 soon after the grace, and the
// clients see their streams end with an error event of their API family,
// saying the gateway is restarting, instead of hanging or being cut.
func TestShutdownGraceOver(t *testing.T) {
	const grace = time.Second
	st := newStack(t, options{
		demo: demoupstream.Options{Chunks: 10, ChunkDelay: time.Second},
		env:  []string{"LLMGATE_SHUTDOWN_GRACE=" + grace.String()},
	})
	bob := st.signIn("bob@example.com")
	tok := st.mint(bob, "long-streams")
	r := st.replicas[0]
	var done sync.WaitGroup
	streams := make([]*stream, 5)
	for i := range streams {
		if i < 3 {
			streams[i] = st.openStream(r, tok.raw, &done)
		} else {
			streams[i] = st.openStreamAt(r, tok.raw, "/v1/messages",
				`{"model":"claude-haiku-4-5","max_tokens":50,"stream":true,"messages":[{"role":"user","content":"count"}]}`, &done)
		}
		<-streams[i].firstEvent
	}
	tSig := time.Now()
	r.signal(syscall.SIGTERM)
	code := r.exitCode(grace + 5*time.Second)
	tExit := time.Since(tSig)
	ended := make(chan struct{})
	go func() { done.Wait(); close(ended) }()
	select {
	case <-ended:
	case <-time.After(5 * time.Second):
		t.Fatal("clients of streams cut at the end of the grace period are still waiting 5 s after the process exited")
	}
	t.Logf("exit %d %v after SIGTERM with grace %v", code, tExit.Round(time.Millisecond), grace)
	if code != 0 || tExit > grace+3*time.Second {
		t.Errorf("exit %d after %v, want 0 within grace (%v) + 3 s", code, tExit, grace)
	}
	for i, s := range streams {
		if i < 3 && s.complete(10) == nil {
			t.Errorf("stream %d of 10 s finished within a grace of %v: the test did not test the cut", i, grace)
		}
		if s.err != nil {
			t.Errorf("stream %d: %v after %q; want the stream to end cleanly after an error event", i, s.err, tail(s.body, 200))
			continue
		}
		end := `data: {"error":{"message":"the gateway is restarting and ended the stream; retry the request","type":"api_error","code":"gateway_restarting"}}` + "\n\ndata: [DONE]\n\n"
		if i >= 3 {
			end = "event: error\n" + `data: {"type":"error","error":{"type":"api_error","message":"the gateway is restarting and ended the stream; retry the request"}}` + "\n\n"
		}
		if !strings.HasSuffix(s.body, "\n\n"+end) {
			t.Errorf("stream %d ends %q; want it to end with the event\n%s", i, tail(s.body, 300), end)
		}
	}
}
