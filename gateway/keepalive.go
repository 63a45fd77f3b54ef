package gateway

import (
	"net/http"
	"sync"
	"time"
)

// keepaliveComment is what an idle stream gets: an SSE comment, which
// every SSE parser ignores, keeping proxies and clients from timing out a
// connection while the model thinks.
var keepaliveComment = []byte(": keepalive\n\n")

// keepaliveWriter is the ResponseWriter of a proxied call. When the
// answer is an event stream (stream) it sends the headers as soon as they
// are set, and, with LLMGATE_SSE_KEEPALIVE on, once they are out writes a
// keep-alive comment whenever nothing was written for every — only
// between events, never inside one. It serializes its own writes with the
// reverse proxy's, and stops for good when the handler returns. An idle
// stream costs a timer, no goroutine.
type keepaliveWriter struct {
	http.ResponseWriter
	every time.Duration
	sse   bool

	mu          sync.Mutex
	timer       *time.Timer
	wroteHeader bool
	done        bool
	last        [4]byte
	nlast       int
}

func (k *keepaliveWriter) WriteHeader(code int) {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.ResponseWriter.WriteHeader(code)
	if code >= 200 {
		k.wroteHeader = true
		if k.sse {
			// Out now, while the goroutine's stack is shallow: writing the
			// headers is the deepest call of a stream, and it would
			// otherwise happen under the first event's copy, doubling the
			// stack every open stream keeps.
			flush(k.ResponseWriter)
		}
	}
}

func (k *keepaliveWriter) Write(p []byte) (int, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.wroteHeader = true
	n, err := k.ResponseWriter.Write(p)
	for _, c := range p[max(0, n-4):n] {
		copy(k.last[:], k.last[1:])
		k.last[3] = c
		k.nlast = min(k.nlast+1, 4)
	}
	if k.timer != nil && !k.done {
		k.timer.Reset(k.every)
	}
	return n, err
}

func (k *keepaliveWriter) Flush() { k.FlushError() }

// FlushError is what http.ResponseController (the reverse proxy's flush
// after every event) looks for first.
func (k *keepaliveWriter) FlushError() error {
	k.mu.Lock()
	defer k.mu.Unlock()
	return flush(k.ResponseWriter)
}

// flush flushes w without http.ResponseController's layers: a stream's
// first flush writes its headers, the deepest point of the goroutine's
// stack before the stream idles.
func flush(w http.ResponseWriter) error {
	switch f := w.(type) {
	case interface{ FlushError() error }:
		return f.FlushError()
	case http.Flusher:
		f.Flush()
		return nil
	}
	return http.NewResponseController(w).Flush()
}

// Unwrap lets http.ResponseController reach the connection (deadlines).
func (k *keepaliveWriter) Unwrap() http.ResponseWriter { return k.ResponseWriter }

// stream marks the answer as an event stream and starts the keep-alives
// when they are on.
func (k *keepaliveWriter) stream() {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.sse = true
	if k.every <= 0 || k.done || k.timer != nil {
		return
	}
	k.timer = time.AfterFunc(k.every, k.fire)
}

// fire writes a keep-alive if the stream stands between two events, and
// waits again.
func (k *keepaliveWriter) fire() {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.done {
		return
	}
	if k.wroteHeader && k.atBoundary() {
		if _, err := k.ResponseWriter.Write(keepaliveComment); err != nil {
			return // the client is gone: the proxy will notice
		}
		flush(k.ResponseWriter)
	}
	k.timer.Reset(k.every)
}

// stop ends the keep-alives; the handler is about to return.
func (k *keepaliveWriter) stop() {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.done = true
	if k.timer != nil {
		k.timer.Stop()
	}
}

// atBoundary reports whether everything written so far ends an event (a
// blank line: \n\n, \r\r or \r\n\r\n), or nothing was written yet.
func (k *keepaliveWriter) atBoundary() bool {
	if k.nlast == 0 {
		return true
	}
	l := k.last
	if k.nlast >= 2 && (l[2] == '\n' && l[3] == '\n' || l[2] == '\r' && l[3] == '\r') {
		return true
	}
	return k.nlast == 4 && string(l[:]) == "\r\n\r\n"
}
