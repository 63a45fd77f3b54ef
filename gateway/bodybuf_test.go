package gateway

import (
	"bufio"
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"sync"
	"testing"

	"github.com/llmgate/llmgate/internal/h1transport"
	"github.com/llmgate/llmgate/internal/redistest"
	"github.com/llmgate/llmgate/tokens"
)

// TestProxyBodiesArriveIntact sends many large bodies at once, of sizes
// across the pooled buffer classes and beyond them (written by
// h1transport's own writer), through an upstream that drops half of the
// requests arriving on a kept-alive connection unanswered (each body once),
// so that those calls are replayed from the held body. Every body must reach the upstream exactly
// as sent: a buffer reused while a call still needed it would mix calls'
// bodies (and the race detector would report it).
func TestProxyBodiesArriveIntact(t *testing.T) {
	var mu sync.Mutex
	dropped := map[[32]byte]bool{}
	drop := func(sum [32]byte) bool {
		mu.Lock()
		defer mu.Unlock()
		if dropped[sum] || sum[0]%2 == 0 {
			return false
		}
		dropped[sum] = true
		return true
	}
	up := newConnUpstream(t, func(conn net.Conn, rd *bufio.Reader) {
		for n := 1; ; n++ {
			req, err := http.ReadRequest(rd)
			if err != nil {
				return
			}
			b, err := io.ReadAll(req.Body)
			if err != nil {
				return
			}
			sum := sha256.Sum256(b)
			if n > 1 && drop(sum) {
				return // the stale keep-alive race: read, then dropped
			}
			resp := &http.Response{StatusCode: 200, ProtoMajor: 1, ProtoMinor: 1,
				Header:        http.Header{"Content-Type": {"application/json"}, "X-Body-Sha256": {hex.EncodeToString(sum[:])}},
				ContentLength: 2, Body: io.NopCloser(bytes.NewReader([]byte("{}")))}
			if resp.Write(conn) != nil {
				return
			}
		}
	})
	h := newHarness(t, redistest.Mini(t), func(s *setup) {
		s.proxy.Upstreams = []Upstream{{Name: "dropping", URL: up, Paths: []string{"/v1/"}}}
	})
	tok := h.mint(t, tokens.IssueRequest{})
	sizes := []int{minPooledBody - 100, minPooledBody + 1, 40 << 10, 100 << 10, 200 << 10,
		h1transport.InlineWriteMax, h1transport.InlineWriteMax + 1, 300 << 10}
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 16}}
	defer client.CloseIdleConnections()

	var wg sync.WaitGroup
	for g := range 12 {
		wg.Go(func() {
			for i := range 2 * len(sizes) {
				size := sizes[(g+i)%len(sizes)]
				body := jsonBody(t, size)
				req, _ := http.NewRequest("POST", h.url+"/v1/chat/completions", bytes.NewReader(body))
				req.Header.Set("Authorization", "Bearer "+tok)
				req.Header.Set("Content-Type", "application/json")
				resp, err := client.Do(req)
				if err != nil {
					t.Errorf("call of %d bytes: %v", size, err)
					return
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				sum := sha256.Sum256(body)
				if resp.StatusCode != 200 || resp.Header.Get("X-Body-Sha256") != hex.EncodeToString(sum[:]) {
					t.Errorf("call of %d bytes: status %d, upstream got a body with sha256 %s, want %x",
						size, resp.StatusCode, resp.Header.Get("X-Body-Sha256"), sum)
					return
				}
			}
		})
	}
	wg.Wait()
	mu.Lock()
	defer mu.Unlock()
	if len(dropped) == 0 {
		t.Error("the upstream dropped no request: no call was replayed")
	}
}

// jsonBody is a chat request of exactly size bytes whose content is random.
func jsonBody(tb testing.TB, size int) []byte {
	head := []byte(`{"model":"gpt-4o-mini","messages":[{"role":"user","content":"`)
	tail := []byte(`"}]}`)
	n := size - len(head) - len(tail)
	if n < 2 {
		tb.Fatalf("body size %d too small", size)
	}
	raw := make([]byte, n/2)
	rand.Read(raw)
	text := hex.EncodeToString(raw)
	if len(text) < n {
		text += "x"
	}
	b := append(append(append([]byte{}, head...), text...), tail...)
	if len(b) != size {
		tb.Fatalf("built a body of %d bytes, want %d", len(b), size)
	}
	return b
}

// TestBodyBufClasses checks which bodies are pooled and that a pooled
// buffer comes back at its class's size.
func TestBodyBufClasses(t *testing.T) {
	for _, tc := range []struct {
		n      int
		pooled bool
		class  int
	}{
		{minPooledBody - 1, true, -1},
		{minPooledBody, true, 0},
		{minPooledBody + 1, true, 1},
		{100 << 10, true, 3},
		{256 << 10, true, 4},
		{256<<10 + 1, true, -1},
		{100 << 10, false, -1},
	} {
		t.Run(strconv.Itoa(tc.n)+fmt.Sprint(tc.pooled), func(t *testing.T) {
			bb := newBodyBuf(tc.n, tc.pooled)
			class := -1
			if bb.pool != nil {
				class = bodyClass(cap(*bb.pool))
			}
			if len(bb.b) != tc.n || class != tc.class {
				t.Fatalf("newBodyBuf(%d, %v): %d bytes, class %d; want %d bytes, class %d (-1: not pooled)", tc.n, tc.pooled, len(bb.b), class, tc.n, tc.class)
			}
			if tc.class >= 0 && cap(bb.b) != minPooledBody<<tc.class {
				t.Errorf("class %d buffer holds %d bytes, want %d", tc.class, cap(bb.b), minPooledBody<<tc.class)
			}
			bb.release()
			bb.release() // a second release must not pool the buffer twice
			if tc.class >= 0 && (bb.pool != nil || bb.b != nil) {
				t.Errorf("after release the bodyBuf still holds its pooled buffer")
			}
		})
	}
}
