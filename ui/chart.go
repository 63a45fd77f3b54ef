package ui

import (
	"math"
	"strconv"
)

// BarChart is a bar chart drawn as server-side SVG: every coordinate is
// computed here, so the template only places rectangles and text and the
// page needs no script. Colours come from the stylesheet (classes), so
// dark mode and the strict CSP both hold.
type BarChart struct {
	// Label describes the whole chart for screen readers (aria-label).
	Label string
	// Width and Height are the viewBox; the stylesheet scales the chart to
	// the page's width.
	Width, Height int
	// Plot is the area inside the axes.
	Left, Top, Right, Bottom float64
	Bars                     []Bar
	YTicks                   []Tick
	XTicks                   []Tick
	// YTitle names the values (e.g. "requests").
	YTitle string
	// Empty is true when every value is zero.
	Empty bool
	// Points are the values drawn, for the table that goes with the chart.
	Points []Point
	// Format formats a value as the axis does.
	Format func(float64) string
}

// YLabelX is where the y axis labels end.
func (c BarChart) YLabelX() float64 { return c.Left - 8 }

// XLabelY is the baseline of the x axis labels.
func (c BarChart) XLabelY() float64 { return c.Bottom + 18 }

// YTitleY is where the y axis title sits (rotated, left of the labels).
func (c BarChart) YTitleY() float64 { return (c.Top + c.Bottom) / 2 }

// Bar is one day's bar. Title is its tooltip (<title>).
type Bar struct {
	X, Y, W, H float64
	Title      string
}

// Tick is a labelled position on an axis.
type Tick struct {
	Pos   float64
	Label string
}

// Point is one value of a chart, in the order drawn (oldest first).
type Point struct {
	Label string // x-axis label, e.g. "11-25"
	Value float64
	Title string // tooltip
}

// Chart geometry, in viewBox units.
const (
	chartWidth  = 720
	chartHeight = 240
	chartLeft   = 64
	chartRight  = 12
	chartTop    = 12
	chartBottom = 36
)

// NewBarChart lays out points as bars, with a y axis of round numbers
// formatted by format (nil: compact numbers such as 1.2k).
func NewBarChart(label, yTitle string, points []Point, format func(float64) string) BarChart {
	if format == nil {
		format = Compact
	}
	c := BarChart{
		Label: label, YTitle: yTitle, Width: chartWidth, Points: points, Format: format, Height: chartHeight,
		Left: chartLeft, Top: chartTop, Right: chartWidth - chartRight, Bottom: chartHeight - chartBottom,
	}
	peak := 0.0
	for _, p := range points {
		peak = math.Max(peak, p.Value)
	}
	c.Empty = peak == 0
	step, top := niceScale(peak)
	for v := 0.0; v <= top+step/2; v += step {
		c.YTicks = append(c.YTicks, Tick{Pos: c.Bottom - (v/top)*(c.Bottom-c.Top), Label: format(v)})
	}
	if len(points) == 0 {
		return c
	}
	slot := (c.Right - c.Left) / float64(len(points))
	w := math.Max(slot*0.75, 1)
	every := (len(points) + 9) / 10 // at most about ten x labels
	for i, p := range points {
		x := c.Left + float64(i)*slot + (slot-w)/2
		h := (math.Max(p.Value, 0) / top) * (c.Bottom - c.Top)
		c.Bars = append(c.Bars, Bar{X: round1(x), Y: round1(c.Bottom - h), W: round1(w), H: round1(h), Title: p.Title})
		if (len(points)-1-i)%every == 0 { // always label the newest day
			c.XTicks = append(c.XTicks, Tick{Pos: round1(x + w/2), Label: p.Label})
		}
	}
	return c
}

// niceScale picks a step of 1, 2 or 5 × 10^k giving about four intervals
// and the axis top, a multiple of the step at or above peak.
func niceScale(peak float64) (step, top float64) {
	if peak <= 0 {
		return 1, 4
	}
	raw := peak / 4
	mag := math.Pow(10, math.Floor(math.Log10(raw)))
	switch f := raw / mag; {
	case f <= 1:
		step = mag
	case f <= 2:
		step = 2 * mag
	case f <= 5:
		step = 5 * mag
	default:
		step = 10 * mag
	}
	if peak < 4 && step < 1 && peak == math.Trunc(peak) {
		step = 1 // whole counts: no 0.5 requests
	}
	top = math.Ceil(peak/step) * step
	return step, top
}

func round1(v float64) float64 { return math.Round(v*10) / 10 }

// Compact formats a count briefly: 950, 1.2k, 3.4M.
func Compact(v float64) string {
	switch a := math.Abs(v); {
	case a >= 1e9:
		return trim(v/1e9) + "G"
	case a >= 1e6:
		return trim(v/1e6) + "M"
	case a >= 1e3:
		return trim(v/1e3) + "k"
	default:
		return trim(v)
	}
}

func trim(v float64) string {
	return strconv.FormatFloat(math.Round(v*10)/10, 'f', -1, 64)
}
