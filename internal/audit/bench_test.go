package audit

import (
	"testing"

	"github.com/llmgate/llmgate/internal/redistest"
)

// BenchmarkRecord measures the request path's cost of an audit event:
// normalising, the (discarded) log line, the counter and the queue hand-off.
func BenchmarkRecord(b *testing.B) {
	l := newLog(b, redistest.Mini(b), func(c *Config) { c.StoreQueueSize = 1 << 20 })
	e := Event{Type: TypeAPIRefused, Email: "alice@example.com", TokenID: "tok-1", IP: "192.0.2.1", Status: 401, Reason: "token revoked",
		Details: map[string]string{"path": "/v1/chat/completions"}}
	b.ReportAllocs()
	for b.Loop() {
		l.Record(e)
	}
}
