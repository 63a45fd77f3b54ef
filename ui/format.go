package ui

import (
	"math"
	"strconv"
	"strings"
)

func init() {
	funcs["num"] = Num
	funcs["usd"] = USD
	funcs["compact"] = Compact
	funcs["ms"] = func(v float64) string { return strconv.FormatFloat(math.Round(v), 'f', -1, 64) + " ms" }
}

func itoa(n int) string { return strconv.Itoa(n) }

// Num formats a whole number with thousands separators: 12,345.
func Num(n int64) string {
	s := strconv.FormatInt(n, 10)
	neg := strings.HasPrefix(s, "-")
	s = strings.TrimPrefix(s, "-")
	var b strings.Builder
	if neg {
		b.WriteByte('-')
	}
	for i, r := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(r)
	}
	return b.String()
}

// USD formats dollars: cents for sums of a dollar or more, four decimals
// below, so small calls do not show as $0.00.
func USD(v float64) string {
	if math.Abs(v) >= 1 || v == 0 {
		return "$" + strconv.FormatFloat(v, 'f', 2, 64)
	}
	return "$" + strconv.FormatFloat(v, 'f', 4, 64)
}

func init() {
	funcs["inout"] = func(r UsageRow) float64 { return float64(r.InputTokens + r.OutputTokens) }
}
