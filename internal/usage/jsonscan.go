package usage

import (
	"bytes"
	"encoding/json"
)

// jsonScan follows the structure of a JSON document as it is written, and
// takes out only the values of the top-level keys "model" and "usage",
// which it decodes as soon as each ends. Strings and nested values are
// passed over in bulk (a search for the next quote or bracket); a value
// wanted is decoded where it lies in the written chunk, and copied only
// when it is split across writes. So a body of any size costs a scan and
// no memory; a "usage" key nested deeper (in a tool call's input, say) is
// not the response's. When a key repeats, the last one counts, as with
// encoding/json.
//
// On input that is not JSON it never fails: it reports whatever its
// bracket counting finds, which is nothing useful.
type jsonScan struct {
	depth     int   // nesting: 1 inside the top-level object
	obj       bool  // the top-level value is an object
	state     uint8 // where the top-level object is: stKey, stColon, stValue or stNext
	inStr     bool  // inside a string
	esc       bool  // after a backslash inside a string
	keying    bool  // reading a top-level key
	key       []byte
	keyWant   uint8 // the value the last top-level key names: wantModel, wantUsage or 0
	want      uint8 // the value being captured
	capturing bool
	scalar    bool // the captured value is a number, true, false or null
	capture   []byte
}

const (
	stKey   = iota // expecting a key or '}'
	stColon        // after a key
	stValue        // after ':'
	stNext         // after a value: expecting ',' or '}'
)

const (
	wantModel = 1 + iota
	wantUsage
)

// structural marks the bytes that open or close strings, objects and arrays.
var structural = [256]uint8{'"': 1, '{': 1, '}': 1, '[': 1, ']': 1}

// nextStructural returns the index of the first structural byte of p, or
// len(p). It looks at eight bytes a step.
func nextStructural(p []byte) int {
	i := 0
	for ; i+8 <= len(p); i += 8 {
		b := p[i : i+8 : i+8]
		if structural[b[0]]|structural[b[1]]|structural[b[2]]|structural[b[3]]|
			structural[b[4]]|structural[b[5]]|structural[b[6]]|structural[b[7]] != 0 {
			break
		}
	}
	for ; i < len(p); i++ {
		if structural[p[i]] != 0 {
			return i
		}
	}
	return len(p)
}

// endsScalar marks the bytes that end a number, true, false or null.
var endsScalar = [256]bool{' ': true, '\t': true, '\n': true, '\r': true, ',': true, '}': true, ']': true, '"': true, '{': true, '[': true, ':': true}

// maxKey is the longest top-level key compared ("usage" escaped as \uXXXX
// throughout is 30 bytes).
const maxKey = 64

func (m *Meter) writeJSON(p []byte) {
	s := &m.js
	keyFrom, capFrom := 0, 0 // where this chunk's part of the key and of the capture start
	i := 0
	for i < len(p) {
		if s.inStr {
			q := s.strEnd(p, i)
			if q < 0 {
				break
			}
			s.inStr = false
			i = q + 1
			if s.keying {
				s.keying = false
				s.state = stColon
				s.keyWant = wanted(s.takeKey(p[keyFrom:q]))
			}
			if s.capturing && s.depth == 1 {
				s.endCapture(m, p[capFrom:i])
			}
			continue
		}
		if s.depth >= 2 {
			// Inside a nested value: only quotes and brackets matter.
			i += nextStructural(p[i:])
			if i == len(p) {
				break
			}
			switch p[i] {
			case '"':
				s.inStr = true
			case '{', '[':
				s.depth++
			default:
				s.depth--
				if s.depth == 1 && s.capturing {
					s.endCapture(m, p[capFrom:i+1])
				}
			}
			i++
			continue
		}
		// The top level, outside strings.
		c := p[i]
		if s.capturing && s.scalar {
			if !endsScalar[c] {
				i++
				continue
			}
			s.endCapture(m, p[capFrom:i])
		}
		switch c {
		case ' ', '\t', '\n', '\r':
			i++
			continue
		}
		top := s.depth == 1 && s.obj
		if top && s.state == stValue {
			s.state = stNext
			if s.want != 0 {
				s.capturing = true
				s.capture = s.capture[:0]
				s.scalar = c != '"' && c != '{' && c != '['
				capFrom = i
			}
		}
		switch c {
		case '"':
			s.inStr = true
			if top && s.state == stKey {
				s.keying = true
				s.key = s.key[:0]
				keyFrom = i + 1
			}
		case '{', '[':
			if s.depth == 0 {
				s.obj = c == '{'
				s.state = stKey
			}
			s.depth++
		case '}', ']':
			if s.depth > 0 {
				s.depth--
			}
		case ':':
			if top && s.state == stColon {
				s.state = stValue
				s.want = s.keyWant
			}
		case ',':
			if top {
				s.state = stKey
			}
		}
		i++
	}
	// Keep what continues in the next write.
	if s.keying {
		s.key = appendMax(s.key, p[keyFrom:], maxKey+1)
	}
	if s.capturing {
		s.capture = appendMax(s.capture, p[capFrom:], maxCapture+1)
	}
}

// strEnd returns the index of the quote that ends the string p[i:] is
// in, or -1 if the string goes on past p.
func (s *jsonScan) strEnd(p []byte, i int) int {
	for {
		if s.esc {
			if i == len(p) {
				return -1
			}
			s.esc = false
			i++
		}
		rest := p[i:]
		q := bytes.IndexByte(rest, '"')
		head := rest
		if q >= 0 {
			head = rest[:q]
		}
		if b := bytes.IndexByte(head, '\\'); b >= 0 {
			s.esc = true
			i += b + 1
			continue
		}
		if q < 0 {
			return -1
		}
		return i + q
	}
}

// appendMax appends b to buf, keeping no more than n bytes in all.
func appendMax(buf, b []byte, n int) []byte {
	return append(buf, b[:min(len(b), max(n-len(buf), 0))]...)
}

// takeKey returns a top-level key that ends with tail, nil if it is longer
// than maxKey.
func (s *jsonScan) takeKey(tail []byte) []byte {
	k := tail
	if len(s.key) > 0 {
		s.key = appendMax(s.key, tail, maxKey+1)
		k = s.key
	}
	if len(k) > maxKey {
		return nil
	}
	return k
}

// wanted says which value the raw key k names.
func wanted(k []byte) uint8 {
	if bytes.IndexByte(k, '\\') >= 0 {
		var u string
		if json.Unmarshal(append(append([]byte{'"'}, k...), '"'), &u) != nil {
			return 0
		}
		k = []byte(u)
	}
	switch string(k) {
	case "model":
		return wantModel
	case "usage":
		return wantUsage
	}
	return 0
}

// endCapture decodes a captured top-level value, which ends with tail.
func (s *jsonScan) endCapture(m *Meter, tail []byte) {
	v := tail
	if len(s.capture) > 0 {
		s.capture = appendMax(s.capture, tail, maxCapture+1)
		v = s.capture
	}
	s.capturing = false
	want := s.want
	s.want = 0
	long := len(v) > maxCapture
	switch want {
	case wantModel:
		m.t.model = ""
		if !long {
			if model, ok := decodeString(v); ok {
				m.t.model = model
			}
		}
	case wantUsage:
		m.t.resetUsage()
		var u usageJSON
		if !long && len(v) > 0 && v[0] == '{' && decodeUsage(v, &u) {
			m.t.add(&u)
		}
	}
}
