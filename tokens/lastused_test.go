package tokens

import (
	"sync"
	"testing"
)

// TestLastUsedTakeWhileNoting: the flush may take the queue while requests
// note uses; an empty take must not hand out the map note writes to (run
// with -race).
func TestLastUsedTakeWhileNoting(t *testing.T) {
	l := newLastUsed()
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := range 2000 {
			l.note("a", int64(i+1))
		}
	}()
	var taken int64
	for range 2000 {
		if p := l.take(); len(p) > 0 {
			taken = max(taken, p["a"])
		}
	}
	wg.Wait()
	if p := l.take(); len(p) > 0 {
		taken = max(taken, p["a"])
	}
	if taken != 2000 {
		t.Errorf("the last noted time taken = %d, want 2000", taken)
	}
}
