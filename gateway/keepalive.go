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

// keepaliveWriter is the ResponseWriter of a proxied call when
// LLMGATE_SSE_KEEPALIVE is on. Once armed (the answer is an event stream)
// and its headers are out, it writes a keep-alive comment whenever nothing
// was written for every — only between events, never inside one. It
// serializes its own writes with the reverse proxy's, and stops for good
// when the handler returns. An idle stream costs a timer, no goroutine.
type keepaliveWriter struct {
	http.ResponseWriter
	every time.Duration

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
	if code >= 200 {
		k.wroteHeader = true
	}
	k.ResponseWriter.WriteHeader(code)
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

func (k *keepaliveWriter) Flush() {
	k.mu.Lock()
	defer k.mu.Unlock()
	http.NewResponseController(k.ResponseWriter).Flush()
}

// Unwrap lets http.ResponseController reach the connection (deadlines).
func (k *keepaliveWriter) Unwrap() http.ResponseWriter { return k.ResponseWriter }

// arm starts the keep-alives: the answer is an event stream.
func (k *keepaliveWriter) arm() {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.done || k.timer != nil {
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
		http.NewResponseController(k.ResponseWriter).Flush()
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
