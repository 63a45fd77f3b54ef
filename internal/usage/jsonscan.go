package usage

import (
	"bytes"
	"encoding/json"
)

// jsonScan follows the structure of a JSON document as it is written, and
// copies out only the values of the top-level keys "model" and "usage",
// which it decodes as soon as each ends. Nothing else is kept, so a body of
// any size costs a byte loop and no memory; a "usage" key nested deeper (in
// a tool call's input, say) is not the response's. When a key repeats, the
// last one counts, as with encoding/json.
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
	keyEsc    bool  // the key has an escape
	keyLong   bool  // the key is longer than maxKey
	key       []byte
	want      uint8 // the value to capture: wantModel, wantUsage or 0
	capturing bool
	scalar    bool // the captured value is a number, true, false or null
	capLong   bool // the captured value outgrew maxCapture
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
var structural = [256]bool{'"': true, '{': true, '}': true, '[': true, ']': true}

// maxKey is the longest top-level key compared ("usage" escaped as \uXXXX
// throughout is 30 bytes).
const maxKey = 64

func (m *Meter) writeJSON(p []byte) {
	s := &m.js
	for i := 0; i < len(p); i++ {
		if !s.inStr {
			if s.depth >= 2 && !s.capturing {
				// Inside a nested value nobody wants: only quotes and
				// brackets matter.
				for i < len(p) && !structural[p[i]] {
					i++
				}
				if i == len(p) {
					return
				}
			}
			s.step(m, p[i])
			continue
		}
		if !s.capturing && !s.keying && !s.esc {
			// Skip string content up to the next quote or backslash.
			rest := p[i:]
			q := bytes.IndexByte(rest, '"')
			head := rest
			if q >= 0 {
				head = rest[:q]
			}
			if b := bytes.IndexByte(head, '\\'); b >= 0 {
				q = b
			}
			if q < 0 {
				return
			}
			i += q
		}
		s.strByte(m, p[i])
	}
}

// strByte handles byte c of a string.
func (s *jsonScan) strByte(m *Meter, c byte) {
	if s.capturing {
		s.capByte(c)
	}
	if s.esc {
		s.esc = false
		s.keyByte(c)
		return
	}
	switch c {
	case '\\':
		s.esc = true
		s.keyEsc = s.keyEsc || s.keying
		s.keyByte(c)
	case '"':
		s.inStr = false
		if s.keying {
			s.keying = false
			s.state = stColon
		}
		if s.capturing && s.depth == 1 {
			s.endCapture(m)
		}
	default:
		s.keyByte(c)
	}
}

// step handles byte c outside strings.
func (s *jsonScan) step(m *Meter, c byte) {
	if s.capturing && s.scalar {
		switch c {
		case ' ', '\t', '\n', '\r', ',', '}', ']', '"', '{', '[', ':':
			s.endCapture(m)
		default:
			s.capByte(c)
			return
		}
	}
	switch c {
	case ' ', '\t', '\n', '\r':
		return
	}
	top := s.depth == 1 && s.obj
	if top && s.state == stValue {
		s.state = stNext
		if s.want != 0 {
			s.capturing, s.capLong = true, false
			s.capture = s.capture[:0]
			s.scalar = c != '"' && c != '{' && c != '['
		}
	}
	if s.capturing {
		s.capByte(c)
	}
	switch c {
	case '"':
		s.inStr = true
		if top && s.state == stKey {
			s.keying, s.keyEsc, s.keyLong = true, false, false
			s.key = s.key[:0]
		}
	case '{', '[':
		if s.depth == 0 {
			s.obj = c == '{'
			s.state = stKey
		}
		s.depth++
	case '}', ']':
		if s.depth == 0 {
			return
		}
		s.depth--
		if s.depth == 1 && s.capturing {
			s.endCapture(m)
		}
	case ':':
		if top && s.state == stColon {
			s.state = stValue
			s.want = s.wanted()
		}
	case ',':
		if top {
			s.state = stKey
		}
	}
}

func (s *jsonScan) keyByte(c byte) {
	if !s.keying {
		return
	}
	if len(s.key) >= maxKey {
		s.keyLong = true
		return
	}
	s.key = append(s.key, c)
}

func (s *jsonScan) capByte(c byte) {
	if len(s.capture) >= maxCapture {
		s.capLong = true
		return
	}
	s.capture = append(s.capture, c)
}

// wanted says which value the key just read names.
func (s *jsonScan) wanted() uint8 {
	if s.keyLong {
		return 0
	}
	k := s.key
	if s.keyEsc {
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

// endCapture decodes a captured top-level value.
func (s *jsonScan) endCapture(m *Meter) {
	s.capturing = false
	want := s.want
	s.want = 0
	switch want {
	case wantModel:
		m.t.model = ""
		if !s.capLong {
			if model, ok := decodeString(s.capture); ok {
				m.t.model = model
			}
		}
	case wantUsage:
		m.t.resetUsage()
		var u usageJSON
		if !s.capLong && len(s.capture) > 0 && s.capture[0] == '{' && decodeUsage(s.capture, &u) {
			m.t.add(&u)
		}
	}
}
