package main

import (
	"slices"
	"testing"
)

// fakeRun is a load result with the given latencies (µs).
func fakeRun(lat ...int64) loadResult {
	lat = slices.Sorted(slices.Values(lat))
	r := loadResult{Requests: int64(len(lat)), DurationUS: 1e6, Max: lat[len(lat)-1], Quant: quantiles(lat)}
	var sum int64
	for _, v := range lat {
		sum += v
	}
	r.Mean = float64(sum) / float64(len(lat))
	return r
}

func repeat(v int64, n int) []int64 { return slices.Repeat([]int64{v}, n) }

// TestMergeRuns: percentiles of slices merged are those of all the calls
// together, so a slow slice moves the tail by its share of the calls.
func TestMergeRuns(t *testing.T) {
	fast := fakeRun(repeat(100, 990)...)
	slow := fakeRun(append(repeat(100, 980), repeat(5000, 20)...)...)
	m := mergeRuns([]loadResult{fast, slow})
	if m.Requests != 1990 || m.DurationUS != 2e6 || m.Max != 5000 {
		t.Errorf("merged totals = %d requests, %d µs, max %d", m.Requests, m.DurationUS, m.Max)
	}
	// 20 slow calls in 1990: 1 % of the calls is the 20th slowest.
	if m.P50 != 100 || m.P99 != 5000 || m.P90 != 100 {
		t.Errorf("merged p50/p90/p99 = %d/%d/%d, want 100/100/5000", m.P50, m.P90, m.P99)
	}
	two := mergeRuns([]loadResult{fast, fast})
	if two.P99 != 100 || two.P50 != 100 || two.Requests != 1980 {
		t.Errorf("a run merged with itself: p50 %d p99 %d, %d requests", two.P50, two.P99, two.Requests)
	}
	// Half the calls at 200 µs, half at 300: the median is the faster half's.
	m = mergeRuns([]loadResult{fakeRun(repeat(200, 500)...), fakeRun(repeat(300, 500)...)})
	if m.P50 != 200 || m.P99 != 300 || m.Mean != 250 {
		t.Errorf("p50 %d p99 %d mean %v, want 200, 300, 250", m.P50, m.P99, m.Mean)
	}
}

// The per-slice spread pairs each slice of one target with the same slice
// of the other, so that one noisy slice moves only its own pair.
func TestSliceSpread(t *testing.T) {
	mk := func(p99s ...int64) []loadResult {
		var rs []loadResult
		for _, v := range p99s {
			rs = append(rs, loadResult{P99: v})
		}
		return rs
	}
	// Added p99 per pair: +10, +20, +30, +40, +5000 (a burst on one slice).
	a := mk(510, 520, 530, 540, 5500)
	b := mk(500, 500, 500, 500, 500)
	q, ok := sliceSpread(a, b)
	if !ok || q != [3]int64{20, 30, 40} {
		t.Errorf("sliceSpread = %v, %v; want [20 30 40], true", q, ok)
	}
	// An even count: the median lies between the middle two.
	q, ok = sliceSpread(mk(510, 540, 520, 530), b[:4])
	if !ok || q != [3]int64{18, 25, 33} {
		t.Errorf("sliceSpread of four = %v, %v; want [18 25 33], true", q, ok)
	}
	if _, ok := sliceSpread(mk(1, 2, 3), mk(1, 2, 3)); ok {
		t.Error("sliceSpread of three slices reported a spread")
	}
}
