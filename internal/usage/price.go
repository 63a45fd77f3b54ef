package usage

import (
	"math"
	"slices"
	"strings"
)

// Price is what a model costs in USD per million tokens (the YAML
// "prices" table).
type Price struct {
	InputPerMTok  float64
	OutputPerMTok float64
}

// Prices prices calls from their usage when the upstream reports no cost.
// Each entry is a model-name prefix; the longest prefix of a model wins.
// The zero value (and nil) prices nothing.
type Prices struct {
	entries []priceEntry // longest prefix first
}

type priceEntry struct {
	prefix string
	price  Price
}

// NewPrices returns the table of table (model-name prefix → price).
func NewPrices(table map[string]Price) *Prices {
	p := &Prices{}
	for prefix, pr := range table {
		p.entries = append(p.entries, priceEntry{prefix, pr})
	}
	slices.SortFunc(p.entries, func(a, b priceEntry) int {
		if d := len(b.prefix) - len(a.prefix); d != 0 {
			return d
		}
		return strings.Compare(a.prefix, b.prefix)
	})
	return p
}

// Lookup returns the price of model: that of the longest prefix of model
// in the table.
func (p *Prices) Lookup(model string) (Price, bool) {
	if p == nil || model == "" {
		return Price{}, false
	}
	for _, e := range p.entries {
		if strings.HasPrefix(model, e.prefix) {
			return e.price, true
		}
	}
	return Price{}, false
}

// Cost is what u cost: its token counts at the price of its model (the
// response's model, else requested, the model the caller asked for). It
// reports false when the response carried no usage or no price applies.
func (p *Prices) Cost(requested string, u Usage) (float64, bool) {
	if p == nil || !u.Found {
		return 0, false
	}
	pr, ok := p.Lookup(u.Model)
	if !ok {
		pr, ok = p.Lookup(requested)
	}
	if !ok {
		return 0, false
	}
	c := (float64(u.InputTokens)*pr.InputPerMTok + float64(u.OutputTokens)*pr.OutputPerMTok) / 1e6
	if math.IsNaN(c) || math.IsInf(c, 0) || c < 0 {
		return 0, false
	}
	return c, true
}
