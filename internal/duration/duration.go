// Package duration reads and writes the durations people type into
// llmgate's settings and API: Go's syntax ("90m", "1h30m") plus "d" for
// days ("30d", "1d12h").
package duration

import (
	"fmt"
	"strconv"
	"strings"
	"time"
)

// Parse reads s. A "d" unit is 24 hours and may stand anywhere a Go unit
// may ("1d12h", "1.5d"). Negative values parse; callers decide if they may.
func Parse(s string) (time.Duration, error) {
	in := strings.TrimSpace(s)
	if in == "" {
		return 0, fmt.Errorf("empty duration: use e.g. 30d, 12h or 90m")
	}
	if in == "0" {
		return 0, nil
	}
	neg := false
	rest := in
	if rest[0] == '-' || rest[0] == '+' {
		neg = rest[0] == '-'
		rest = rest[1:]
	}
	var total time.Duration
	for rest != "" {
		// Read a number.
		i := 0
		for i < len(rest) && (rest[i] == '.' || (rest[i] >= '0' && rest[i] <= '9')) {
			i++
		}
		if i == 0 {
			return 0, fmt.Errorf("invalid duration %q: use e.g. 30d, 12h or 90m", s)
		}
		num := rest[:i]
		rest = rest[i:]
		// Read its unit.
		j := 0
		for j < len(rest) && !(rest[j] == '.' || (rest[j] >= '0' && rest[j] <= '9')) {
			j++
		}
		unit := rest[:j]
		rest = rest[j:]
		if unit == "" {
			return 0, fmt.Errorf("invalid duration %q: %s has no unit (d, h, m, s, ms)", s, num)
		}
		if unit == "d" {
			f, err := strconv.ParseFloat(num, 64)
			if err != nil {
				return 0, fmt.Errorf("invalid duration %q: use e.g. 30d, 12h or 90m", s)
			}
			d := time.Duration(f * float64(24*time.Hour))
			if f > float64(1<<63-1)/float64(24*time.Hour) {
				return 0, fmt.Errorf("invalid duration %q: too long", s)
			}
			total += d
			continue
		}
		d, err := time.ParseDuration(num + unit)
		if err != nil {
			return 0, fmt.Errorf("invalid duration %q: use e.g. 30d, 12h or 90m", s)
		}
		total += d
	}
	if neg {
		total = -total
	}
	return total, nil
}

// Format writes d the way people read it: whole days as "30d", else Go's
// form ("36h0m0s" becomes "1d12h").
func Format(d time.Duration) string {
	if d == 0 {
		return "0s"
	}
	day := 24 * time.Hour
	if d%day == 0 {
		return strconv.FormatInt(int64(d/day), 10) + "d"
	}
	if d > day {
		return strconv.FormatInt(int64(d/day), 10) + "d" + strings.TrimSuffix(strings.TrimSuffix((d%day).String(), "0s"), "0m")
	}
	return d.String()
}
