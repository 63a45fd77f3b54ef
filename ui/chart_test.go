package ui

import (
	"strings"
	"testing"
)

func TestNiceScale(t *testing.T) {
	tests := []struct {
		peak      float64
		step, top float64
	}{
		{0, 1, 4},
		{1, 1, 1},
		{3, 1, 3},
		{7, 2, 8},
		{10, 5, 10},
		{95, 50, 100},
		{1234, 500, 1500},
		{0.03, 0.01, 0.03},
	}
	for _, tt := range tests {
		step, top := niceScale(tt.peak)
		if step != tt.step || top != tt.top {
			t.Errorf("niceScale(%v) = %v, %v; want %v, %v", tt.peak, step, top, tt.step, tt.top)
		}
	}
}

// TestBarChart: bars stand on the x axis, the tallest reaches no higher
// than the axis top, every bar keeps its tooltip, and the newest day is
// always labelled.
func TestBarChart(t *testing.T) {
	var pts []Point
	for i := range 30 {
		pts = append(pts, Point{Label: "d" + Num(int64(i)), Value: float64(i % 7), Title: "day " + Num(int64(i))})
	}
	c := NewBarChart("Requests per day", "requests", pts, nil)
	if len(c.Bars) != 30 {
		t.Fatalf("bars: %d, want 30", len(c.Bars))
	}
	for i, b := range c.Bars {
		if b.Y+b.H < c.Bottom-0.2 || b.Y+b.H > c.Bottom+0.2 {
			t.Errorf("bar %d ends at %v, want the axis at %v", i, b.Y+b.H, c.Bottom)
		}
		if b.Y < c.Top-0.1 {
			t.Errorf("bar %d rises to %v, above the plot top %v", i, b.Y, c.Top)
		}
		if b.Title != pts[i].Title {
			t.Errorf("bar %d title %q, want %q", i, b.Title, pts[i].Title)
		}
	}
	if n := len(c.XTicks); n == 0 || n > 11 || c.XTicks[n-1].Label != "d29" {
		t.Errorf("x ticks %+v: want at most ~10 ending with the newest day", c.XTicks)
	}
	if c.Empty || c.YTicks[0].Label != "0" {
		t.Errorf("y ticks %+v, empty %v", c.YTicks, c.Empty)
	}
	if e := NewBarChart("x", "y", []Point{{Label: "a"}}, nil); !e.Empty {
		t.Error("all-zero chart not marked empty")
	}
}

func TestFormat(t *testing.T) {
	for in, want := range map[int64]string{0: "0", 999: "999", 1000: "1,000", 1234567: "1,234,567", -4200: "-4,200"} {
		if got := Num(in); got != want {
			t.Errorf("Num(%d) = %q, want %q", in, got, want)
		}
	}
	for in, want := range map[float64]string{0: "$0.00", 12.345: "$12.35", 0.0012: "$0.0012"} {
		if got := USD(in); got != want {
			t.Errorf("USD(%v) = %q, want %q", in, got, want)
		}
	}
	if got := Compact(1500); !strings.HasPrefix(got, "1.5k") {
		t.Errorf("Compact(1500) = %q", got)
	}
}
