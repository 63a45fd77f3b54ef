package e2e

import (
	"encoding/json"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"
)

// faultyUpstream misbehaves on request, by model name:
//
//	reset         streams one event, then resets the connection (TCP RST)
//	slow-headers  sends its headers after 3 s
//	status-NNN    answers status NNN with an error body of its own
//
// Any other model gets a normal small JSON answer.
func faultyUpstream(tb testing.TB) (url string, stop func()) {
	tb.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var req struct{ Model string }
		json.NewDecoder(r.Body).Decode(&req)
		anthropic := strings.HasSuffix(r.URL.Path, "/messages")
		switch {
		case req.Model == "reset":
			w.Header().Set("Content-Type", "text/event-stream")
			w.WriteHeader(http.StatusOK)
			if anthropic {
				io.WriteString(w, "event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"id\":\"m1\",\"type\":\"message\",\"role\":\"assistant\",\"content\":[],\"model\":\"reset\",\"usage\":{\"input_tokens\":3,\"output_tokens\":1}}}\n\n")
			} else {
				io.WriteString(w, "data: {\"id\":\"c1\",\"object\":\"chat.completion.chunk\",\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":\"Hel\"}}]}\n\n")
			}
			w.(http.Flusher).Flush()
			time.Sleep(100 * time.Millisecond)
			conn, _, err := w.(http.Hijacker).Hijack()
			if err != nil {
				panic(err)
			}
			conn.(*net.TCPConn).SetLinger(0) // close with RST
			conn.Close()
		case req.Model == "slow-headers":
			select {
			case <-time.After(3 * time.Second):
			case <-r.Context().Done():
				return
			}
			w.Header().Set("Content-Type", "application/json")
			io.WriteString(w, `{"late":true}`)
		case strings.HasPrefix(req.Model, "status-"):
			w.Header().Set("Content-Type", "application/json")
			w.Header().Set("Retry-After", "7")
			code, err := strconv.Atoi(strings.TrimPrefix(req.Model, "status-"))
			if err != nil {
				code = 500
			}
			w.WriteHeader(code)
			io.WriteString(w, `{"error":{"message":"upstream says: model overloaded (`+req.Model+`)","type":"upstream_own_error","code":"overloaded"}}`)
		default:
			w.Header().Set("Content-Type", "application/json")
			io.WriteString(w, `{"id":"x","object":"chat.completion","choices":[{"index":0,"message":{"role":"assistant","content":"ok"},"finish_reason":"stop"}],"usage":{"prompt_tokens":1,"completion_tokens":1,"total_tokens":2}}`)
		}
	})}
	go srv.Serve(ln)
	var stopped bool
	stop = func() {
		if !stopped {
			stopped = true
			srv.Close()
		}
	}
	tb.Cleanup(stop)
	return "http://" + ln.Addr().String(), stop
}

// send posts body to path on r with tok and reads the whole answer within
// 15 s (a hang fails the test).
func (st *stack) send(t *testing.T, r *replica, tok, path, body string) (int, http.Header, string, time.Duration) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, r.url+path, strings.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+tok)
	req.Header.Set("Content-Type", "application/json")
	hc := &http.Client{Timeout: 15 * time.Second}
	t0 := time.Now()
	resp, err := hc.Do(req)
	if err != nil {
		t.Fatalf("POST %s: %v (after %v)", path, err, time.Since(t0))
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("POST %s: reading the answer: %v after %v (got %q)", path, err, time.Since(t0), b)
	}
	return resp.StatusCode, resp.Header, string(b), time.Since(t0)
}

// TestUpstreamFaults runs the proxy against an upstream that fails in the
// ways real ones do: the client always gets a clear, prompt answer in its
// API family's shape.
func TestUpstreamFaults(t *testing.T) {
	up, stopUpstream := faultyUpstream(t)
	st := newStack(t, options{upstream: up, env: []string{"LLMGATE_UPSTREAM_HEADER_TIMEOUT=1s"}})
	bob := st.signIn("bob@example.com")
	tok := st.mint(bob, "faults").raw
	r := st.replicas[0]

	t.Run("reset mid-stream", func(t *testing.T) {
		for _, c := range []struct{ path, want string }{
			{"/v1/chat/completions", "data: {\"error\":{"},
			{"/v1/messages", "event: error\ndata: {\"type\":\"error\""},
		} {
			status, _, body, took := st.send(t, r, tok, c.path, `{"model":"reset","stream":true,"max_tokens":5,"messages":[{"role":"user","content":"hi"}]}`)
			if status != http.StatusOK || !strings.Contains(body, "Hel") && !strings.Contains(body, "message_start") {
				t.Errorf("%s: %d %q, want 200 with the event sent before the reset", c.path, status, body)
			}
			if !strings.Contains(body, c.want) || !strings.Contains(body, "mid-stream") {
				t.Errorf("%s: stream ended without a closing error event:\n%s", c.path, body)
			}
			t.Logf("%s: the client had the closing error event %v after sending", c.path, took.Round(time.Millisecond))
		}
	})

	t.Run("slow headers", func(t *testing.T) {
		for _, path := range []string{"/v1/chat/completions", "/v1/messages"} {
			status, _, body, took := st.send(t, r, tok, path, `{"model":"slow-headers","messages":[]}`)
			if status != http.StatusGatewayTimeout || took > 2500*time.Millisecond {
				t.Errorf("%s: %d after %v %s, want 504 after LLMGATE_UPSTREAM_HEADER_TIMEOUT (1s)", path, status, took, body)
			}
			if path == "/v1/messages" && !strings.Contains(body, `"type":"error"`) || path != "/v1/messages" && !strings.Contains(body, `"error":{`) {
				t.Errorf("%s: 504 body %s is not in the API family's error shape", path, body)
			}
		}
	})

	t.Run("5xx passed through", func(t *testing.T) {
		for _, code := range []int{500, 502, 503, 529} {
			model := "status-" + strconv.Itoa(code)
			status, h, body, _ := st.send(t, r, tok, "/v1/chat/completions", `{"model":"`+model+`","messages":[]}`)
			want := `{"error":{"message":"upstream says: model overloaded (` + model + `)","type":"upstream_own_error","code":"overloaded"}}`
			if status != code || body != want {
				t.Errorf("upstream %d: got %d %s, want the upstream's own %d and body %s", code, status, body, code, want)
			}
			if h.Get("Retry-After") != "7" {
				t.Errorf("upstream %d: Retry-After %q, want the upstream's 7", code, h.Get("Retry-After"))
			}
		}
	})

	t.Run("upstream down", func(t *testing.T) {
		stopUpstream()
		for _, path := range []string{"/v1/chat/completions", "/v1/messages"} {
			status, _, body, took := st.send(t, r, tok, path, `{"model":"gpt-4o-mini","messages":[]}`)
			if status != http.StatusBadGateway || took > 5*time.Second {
				t.Errorf("%s with the upstream down: %d after %v %s, want 502 at once", path, status, took, body)
			}
			if path == "/v1/messages" && !strings.Contains(body, `"type":"error"`) || path != "/v1/messages" && !strings.Contains(body, `"error":{`) {
				t.Errorf("%s: 502 body %s is not in the API family's error shape", path, body)
			}
		}
	})
}
