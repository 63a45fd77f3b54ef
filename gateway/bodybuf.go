package gateway

import (
	"math/bits"
	"sync"
)

// Request bodies are held in memory for the model check and for replay
// (SPEC §4). Claude Code sends 100 KB or more on every call, so their
// buffers are pooled by size class rather than allocated, zeroed and
// collected per call.
//
// A buffer may go back to its pool only when nothing can read it any
// more. That is known for a body h1transport writes inline
// (h1transport.WritesInline): once the reverse proxy has returned.
// net/http's transport (TLS upstreams, upgrades) and h1transport's writer
// of larger bodies may read a body after RoundTrip returns, so those
// bodies are allocated as before.
const (
	minPooledBody = 16 << 10 // smaller bodies are cheap to allocate
	bodyClasses   = 5        // 16, 32, 64, 128, 256 KiB
)

var bodyPools [bodyClasses]sync.Pool // of *[]byte

// A bodyBuf holds one request body.
type bodyBuf struct {
	b    []byte
	pool *[]byte // the pooled buffer b is from, or nil
}

// bodyClass is the index into bodyPools of the class that holds n bytes.
func bodyClass(n int) int { return bits.Len(uint(n-1)) - bits.Len(minPooledBody-1) }

// newBodyBuf returns a buffer of n bytes, with undefined contents, from
// the pools when pooled is set and n is in a pooled class.
func newBodyBuf(n int, pooled bool) bodyBuf {
	if !pooled || n < minPooledBody || n > minPooledBody<<(bodyClasses-1) {
		return bodyBuf{b: make([]byte, n)}
	}
	class := bodyClass(n)
	p, _ := bodyPools[class].Get().(*[]byte)
	if p == nil {
		b := make([]byte, minPooledBody<<class)
		p = &b
	}
	return bodyBuf{b: (*p)[:n], pool: p}
}

// release returns a pooled buffer to its pool; bb.b must not be used
// after. Releasing twice, or an unpooled buffer, does nothing.
func (bb *bodyBuf) release() {
	if bb.pool != nil {
		bodyPools[bodyClass(cap(*bb.pool))].Put(bb.pool)
		bb.pool, bb.b = nil, nil
	}
}
