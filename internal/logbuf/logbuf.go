// Package logbuf takes the process log off the request path. The gateway
// logs a line for every proxied call; written straight to stderr, that
// line is a write system call inside the call, before the answer's bytes
// leave, and a call then waits on whatever is behind stderr: a file the
// kernel is committing, or a pipe a log collector drains slowly.
//
// A Writer appends lines to memory and a goroutine of its own writes them
// out, a batch at a time, a short delay after the first one arrives. A
// busy gateway then writes its log in a few large writes rather than one
// per call. Nothing is dropped: when the output falls behind by more than
// the buffer's limit, Write waits, as it would have on the output itself.
// Lines still in memory when the process crashes are lost; Close writes
// them at shutdown.
package logbuf

import (
	"io"
	"sync"
	"time"
)

const (
	// DefaultDelay is how long the first line of a batch waits for more.
	DefaultDelay = 50 * time.Millisecond
	// DefaultLimit is how much may wait in memory before Write blocks.
	DefaultLimit = 1 << 20
	// writeAt is the size at which a batch is written without waiting
	// for the delay to end.
	writeAt = 64 << 10
)

// Writer is an io.Writer that writes to its output in the background.
// Each Write's bytes stay together and in order. Use New; Close it before
// the process exits.
type Writer struct {
	out   io.Writer
	delay time.Duration
	limit int

	outMu sync.Mutex // held while writing to out: batches stay in order

	mu     sync.Mutex
	buf    []byte     // waiting to be written
	spare  []byte     // the last batch's buffer, for reuse
	room   *sync.Cond // signalled when a batch has been written
	closed bool

	kick    chan struct{} // capacity 1: the buffer went from empty to not
	full    chan struct{} // capacity 1: writeAt bytes are waiting
	stop    chan struct{}
	stopped chan struct{}
	once    sync.Once
}

// New returns a Writer to out that holds lines for delay (DefaultDelay
// if 0) and at most limit bytes (DefaultLimit if 0), and starts its
// writer goroutine.
func New(out io.Writer, delay time.Duration, limit int) *Writer {
	if delay <= 0 {
		delay = DefaultDelay
	}
	if limit <= 0 {
		limit = DefaultLimit
	}
	w := &Writer{
		out: out, delay: delay, limit: limit,
		kick:    make(chan struct{}, 1),
		full:    make(chan struct{}, 1),
		stop:    make(chan struct{}),
		stopped: make(chan struct{}),
	}
	w.room = sync.NewCond(&w.mu)
	go w.run()
	return w
}

// Write queues p. It returns at once unless limit bytes are waiting, in
// which case it waits for the output to take a batch. After Close it
// writes p to the output directly.
func (w *Writer) Write(p []byte) (int, error) {
	w.mu.Lock()
	for len(w.buf) >= w.limit && !w.closed {
		w.room.Wait()
	}
	if w.closed {
		w.mu.Unlock()
		w.outMu.Lock()
		defer w.outMu.Unlock()
		return w.out.Write(p)
	}
	first := len(w.buf) == 0
	w.buf = append(w.buf, p...)
	n := len(w.buf)
	w.mu.Unlock()
	if first {
		signal(w.kick)
	}
	if n >= writeAt {
		signal(w.full)
	}
	return len(p), nil
}

// Close writes what is queued and stops the writer goroutine; later
// writes go to the output directly.
func (w *Writer) Close() error {
	w.once.Do(func() {
		close(w.stop)
		<-w.stopped
	})
	return nil
}

func (w *Writer) run() {
	defer close(w.stopped)
	timer := time.NewTimer(w.delay)
	timer.Stop()
	for {
		select {
		case <-w.kick:
		case <-w.full:
		case <-w.stop:
			w.finish()
			return
		}
		// A batch has begun: let it gather for the delay, unless it grows
		// large first.
		timer.Reset(w.delay)
		select {
		case <-timer.C:
		case <-w.full:
			timer.Stop()
		case <-w.stop:
			timer.Stop()
			w.finish()
			return
		}
		w.writeOut()
	}
}

// writeOut writes the waiting bytes in one write.
func (w *Writer) writeOut() {
	w.outMu.Lock()
	w.mu.Lock()
	batch := w.buf
	w.buf = w.spare[:0]
	w.mu.Unlock()
	if len(batch) > 0 {
		// An output error is not the caller's to handle: stderr has
		// nowhere to report it either. The batch is dropped.
		w.out.Write(batch)
	}
	w.outMu.Unlock()
	w.mu.Lock()
	if cap(batch) <= 2*w.limit {
		w.spare = batch[:0]
	} else {
		w.spare = nil
	}
	w.room.Broadcast()
	w.mu.Unlock()
}

// finish writes what is left and turns Write into a direct write.
func (w *Writer) finish() {
	w.outMu.Lock()
	defer w.outMu.Unlock()
	w.mu.Lock()
	w.closed = true
	batch := w.buf
	w.buf = nil
	w.room.Broadcast()
	w.mu.Unlock()
	if len(batch) > 0 {
		w.out.Write(batch)
	}
}

func signal(ch chan struct{}) {
	select {
	case ch <- struct{}{}:
	default:
	}
}
