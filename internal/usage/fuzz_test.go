package usage

import (
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// contentTypes is what the fuzzer's mode byte picks from.
var contentTypes = []string{"text/event-stream", "application/json", "text/plain"}

// FuzzMeter: on any body, cut any way, a Meter never panics, never blocks,
// always accepts every byte, and reports the same usage however the body
// is cut; in JSON mode it agrees with encoding/json on every JSON object,
// and in SSE mode with a reference that reads the whole stream at once.
//
//	go test -run '^$' -fuzz FuzzMeter -fuzztime 1m ./internal/usage/
func FuzzMeter(f *testing.F) {
	for _, tc := range demoCases {
		if tc.chunks != 0 {
			continue
		}
		ct, body := demoCall(f, tc.server(), tc.path, tc.streamBody())
		mode := uint8(1)
		if modeOf(ct) == modeSSE {
			mode = 0
		}
		f.Add(mode, body, uint64(1))
	}
	for _, s := range []string{
		"data: {\"usage\":{\"prompt_tokens\":1}}\r\n\r\n",
		"data: {\"usage\":{\"prompt_tokens\":1}}\r",
		": keepalive\n\ndata: {\"message\":{\"model\":\"m\",\"usage\":{\"input_tokens\":2}}}\n\n",
		"data: {\"model\": \"m\",\ndata: \"usage\":\ndata: {\"prompt_tokens\": 4}}\n\n",
		"\xEF\xBB\xBFdata:{\"usage\":{\"output_tokens\":1e3}}",
	} {
		f.Add(uint8(0), []byte(s), uint64(2))
	}
	for _, s := range []string{
		`{"model":"m","usage":{"prompt_tokens":1,"completion_tokens":2}}`,
		`{"\u0075sage":{"input_tokens":1},"usage":null}`,
		`{"a":{"usage":{"input_tokens":1}},"model":"x\"y"}`,
		`{"model":1,"usage":[1]}`,
		`[{"usage":{}}]`,
		`{"usage":{"prompt_tokens":-1.5e3}} {"usage":{}}`,
	} {
		f.Add(uint8(1), []byte(s), uint64(3))
	}
	f.Fuzz(func(t *testing.T, mode uint8, body []byte, seed uint64) {
		ct := contentTypes[int(mode)%len(contentTypes)]
		done := make(chan struct{})
		var one, each, random Usage
		go func() {
			defer close(done)
			one = meter(t, ct, whole(body))
			each = meter(t, ct, bytewise(body))
			random = meter(t, ct, randomChunks(body, seed))
		}()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			t.Fatalf("a Meter took more than 10s on %d bytes", len(body))
		}
		if diff := cmp.Diff(one, each); diff != "" {
			t.Fatalf("%s: written byte by byte (-whole +byte by byte):\n%s\nbody %q", ct, diff, body)
		}
		if diff := cmp.Diff(one, random); diff != "" {
			t.Fatalf("%s: written in random chunks (-whole +random):\n%s\nbody %q", ct, diff, body)
		}
		switch ct {
		case "application/json":
			if len(body) > maxCapture {
				return
			}
			if ref, ok := referenceJSON(body); ok {
				if diff := cmp.Diff(ref, one); diff != "" {
					t.Fatalf("JSON object (-encoding/json +Meter):\n%s\nbody %q", diff, body)
				}
			}
		case "text/event-stream":
			if ref, ok := referenceSSE(body); ok {
				if diff := cmp.Diff(ref, one); diff != "" {
					t.Fatalf("event stream (-reference +Meter):\n%s\nbody %q", diff, body)
				}
			}
		}
	})
}
