package logbuf

import (
	"bytes"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"
)

// waitFor bounds every wait in these tests; passing runs never wait this long.
const waitFor = 5 * time.Second

// sink records what reaches the output, one entry per Write, and can be
// made to block like a pipe nobody reads.
type sink struct {
	mu      sync.Mutex
	writes  [][]byte
	gate    chan struct{} // when non-nil, each Write waits for a value
	written chan int      // receives each Write's length
}

func newSink() *sink { return &sink{written: make(chan int, 1024)} }

func (s *sink) Write(p []byte) (int, error) {
	if s.gate != nil {
		<-s.gate
	}
	s.mu.Lock()
	s.writes = append(s.writes, append([]byte(nil), p...))
	s.mu.Unlock()
	s.written <- len(p)
	return len(p), nil
}

func (s *sink) all() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return string(bytes.Join(s.writes, nil))
}

func (s *sink) count() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.writes)
}

// TestBatchesArriveInOrder: lines written by many goroutines all reach
// the output, each whole, each goroutine's in its order, in fewer writes
// than lines, and without Close once the delay has passed.
func TestBatchesArriveInOrder(t *testing.T) {
	out := newSink()
	w := New(out, 20*time.Millisecond, 0)
	defer w.Close()
	const goroutines, lines = 8, 500
	var wg sync.WaitGroup
	for g := range goroutines {
		wg.Go(func() {
			for i := range lines {
				fmt.Fprintf(w, "g%d line %d %s\n", g, i, strings.Repeat("x", 100))
			}
		})
	}
	wg.Wait()
	want := goroutines * lines
	deadline := time.After(waitFor)
	for strings.Count(out.all(), "\n") < want {
		select {
		case <-out.written:
		case <-deadline:
			t.Fatalf("after %s, %d of %d lines reached the output (before Close)", waitFor, strings.Count(out.all(), "\n"), want)
		}
	}
	next := make([]int, goroutines)
	for _, line := range strings.Split(strings.TrimSuffix(out.all(), "\n"), "\n") {
		var g, i int
		var rest string
		if _, err := fmt.Sscanf(line, "g%d line %d %s", &g, &i, &rest); err != nil || len(rest) != 100 {
			t.Fatalf("line %q is not whole", line)
		}
		if i != next[g] {
			t.Fatalf("goroutine %d: line %d arrived where line %d should have", g, i, next[g])
		}
		next[g]++
	}
	if n := out.count(); n >= want/10 {
		t.Errorf("%d lines took %d writes to the output, want them batched", want, n)
	}
}

// TestClose: Close writes what is left, and later writes go straight out.
func TestClose(t *testing.T) {
	out := newSink()
	w := New(out, time.Hour, 0) // nothing is written by the delay here
	w.Write([]byte("one\n"))
	w.Write([]byte("two\n"))
	w.Close()
	if got := out.all(); got != "one\ntwo\n" {
		t.Fatalf("after Close the output has %q, want %q", got, "one\ntwo\n")
	}
	w.Write([]byte("three\n"))
	if got := out.all(); got != "one\ntwo\nthree\n" {
		t.Fatalf("a write after Close left the output with %q, want it written at once", got)
	}
	w.Close() // a second Close is harmless
}

// TestSlowOutputHoldsBackNothing: while the output is blocked, writes
// return at once up to the limit, then wait; nothing is dropped, and all
// arrives in order once the output moves.
func TestSlowOutputHoldsBackNothing(t *testing.T) {
	out := newSink()
	out.gate = make(chan struct{})
	const limit = 4 << 10
	w := New(out, time.Millisecond, limit)
	line := strings.Repeat("y", 99) + "\n"
	// The first batch is taken and blocks in the output; then the limit
	// fills without blocking the writer.
	w.Write([]byte(line))
	for range limit / len(line) {
		w.Write([]byte(line))
	}
	blocked := make(chan struct{})
	go func() {
		defer close(blocked)
		for range 100 {
			w.Write([]byte(line))
		}
	}()
	select {
	case <-blocked:
		t.Fatal("100 more lines were taken with the output blocked and the limit reached: memory would grow without bound")
	case <-time.After(50 * time.Millisecond):
	}
	close(out.gate) // the output drains
	select {
	case <-blocked:
	case <-time.After(waitFor):
		t.Fatal("writers stayed blocked after the output drained")
	}
	w.Close()
	want := 1 + limit/len(line) + 100
	if got := strings.Count(out.all(), line); got != want {
		t.Errorf("%d lines reached the output, want all %d", got, want)
	}
}
