package gateway

import (
	"io"
	"sync"
	"time"
)

// keepaliveComment is what an idle stream gets: an SSE comment, which
// every SSE parser ignores, keeping proxies and clients from timing out a
// connection while the model thinks.
var keepaliveComment = []byte(": keepalive\n\n")

// keepaliveBody passes an SSE body through and, when the upstream has sent
// nothing for every, inserts a keep-alive comment — only between events,
// never inside one. A goroutine reads the upstream so that the reader can
// wait for bytes and for the clock at once.
type keepaliveBody struct {
	src   io.ReadCloser
	every time.Duration

	chunks chan keepaliveChunk
	done   chan struct{}
	close  sync.Once

	pending []byte // the part of the last chunk the reader has not taken
	last    [4]byte
	nlast   int // how many of last are set
	timer   *time.Timer
	err     error
}

type keepaliveChunk struct {
	b   []byte
	err error
}

func newKeepalive(src io.ReadCloser, every time.Duration) *keepaliveBody {
	k := &keepaliveBody{src: src, every: every, chunks: make(chan keepaliveChunk), done: make(chan struct{})}
	go k.pump()
	return k
}

// pump reads the upstream until it ends or the body is closed.
func (k *keepaliveBody) pump() {
	buf := make([]byte, 32<<10)
	for {
		n, err := k.src.Read(buf)
		var b []byte
		if n > 0 {
			b = append([]byte(nil), buf[:n]...)
		}
		if n > 0 || err != nil {
			select {
			case k.chunks <- keepaliveChunk{b, err}:
			case <-k.done:
				return
			}
		}
		if err != nil {
			return
		}
	}
}

func (k *keepaliveBody) Read(p []byte) (int, error) {
	if len(k.pending) > 0 {
		return k.take(p), nil
	}
	if k.err != nil {
		return 0, k.err
	}
	if k.timer == nil {
		k.timer = time.NewTimer(k.every)
	} else {
		k.timer.Reset(k.every)
	}
	for {
		select {
		case ch := <-k.chunks:
			k.timer.Stop()
			k.pending, k.err = ch.b, ch.err
			if len(k.pending) > 0 {
				return k.take(p), nil
			}
			return 0, k.err
		case <-k.timer.C:
			if k.atBoundary() && len(p) >= len(keepaliveComment) {
				return copy(p, keepaliveComment), nil
			}
			k.timer.Reset(k.every) // mid-event: wait for the rest of it
		}
	}
}

// take hands the reader what it can of the pending bytes and remembers the
// last ones, which say whether the stream stands between two events.
func (k *keepaliveBody) take(p []byte) int {
	n := copy(p, k.pending)
	out := k.pending[:n]
	k.pending = k.pending[n:]
	for _, c := range out[max(0, len(out)-4):] {
		copy(k.last[:], k.last[1:])
		k.last[3] = c
		k.nlast = min(k.nlast+1, 4)
	}
	return n
}

// atBoundary reports whether everything sent so far ends an event (a
// blank line: \n\n, \r\r or \r\n\r\n), or nothing was sent yet.
func (k *keepaliveBody) atBoundary() bool {
	if k.nlast == 0 {
		return true
	}
	l := k.last
	if k.nlast >= 2 && (l[2] == '\n' && l[3] == '\n' || l[2] == '\r' && l[3] == '\r') {
		return true
	}
	return k.nlast == 4 && string(l[:]) == "\r\n\r\n"
}

func (k *keepaliveBody) Close() error {
	k.close.Do(func() { close(k.done) })
	if k.timer != nil {
		k.timer.Stop()
	}
	return k.src.Close()
}
