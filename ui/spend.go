package ui

import "time"

// SpendBar is a person's spend this month against their cap, shown on the
// home page.
type SpendBar struct {
	Month    string // YYYY-MM
	SpentUSD float64
	// CapUSD is the monthly cap that applies; HasCap is false without one.
	CapUSD float64
	HasCap bool
	// Source says where the cap comes from ("person", "group ml", …).
	Source   string
	Percent  int // of the cap spent, 0–100
	ResetsAt time.Time
}

// Level is "ok", "warning" (75 % or more) or "over" (at the cap), for the
// bar's colour.
func (b SpendBar) Level() string {
	switch {
	case b.HasCap && b.SpentUSD >= b.CapUSD:
		return "over"
	case b.Percent >= 75:
		return "warning"
	}
	return "ok"
}

// AdminSpendPage lists people by spend this month with their caps, each
// editable by a plain form.
type AdminSpendPage struct {
	Layout
	Month  string
	People []SpendRow
}

// SpendRow is one person on the admin spend page.
type SpendRow struct {
	Email    string
	SpentUSD float64
	// CapUSD is the cap that applies (the smallest); HasCap false for none.
	CapUSD  float64
	HasCap  bool
	Source  string
	Percent int
	// PersonCap is the cap an admin set for this person, "" for none: the
	// value of the form's field.
	PersonCap string
}

func (AdminSpendPage) Template() string { return "admin_spend.html" }
