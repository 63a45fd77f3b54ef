package usage

import (
	"encoding/json"
	"unicode/utf8"
)

// A hand-written reader of the few JSON values a Meter decodes: a usage
// object, a model string, and a stream event. It gives exactly what
// encoding/json gives when decoding into usageJSON, a string or eventJSON
// (the tests compare the two), without reflection or allocation: it checks
// the whole document as strictly as encoding/json does, and matches keys
// the way encoding/json matches struct fields (the exact name, else any
// ASCII case). On what it does not handle itself (a key to match that has
// an escape or a non-ASCII byte, deep nesting) it says so, and the caller
// uses encoding/json.

// verdict is the outcome of reading a document.
type verdict uint8

const (
	valid   verdict = iota // the document is JSON and was read
	invalid                // encoding/json rejects the document
	punt                   // beyond this reader: use encoding/json
)

// maxDepth is the deepest nesting read here; encoding/json allows 10000,
// so documents deeper than maxDepth are left to it.
const maxDepth = 500

// reader reads one document.
type reader struct {
	b []byte
	i int
}

// strStop marks the bytes that may not stand for themselves inside a
// string: '"', '\\' and control characters.
var strStop = func() (t [256]uint8) {
	for c := range 0x20 {
		t[c] = 1
	}
	t['"'], t['\\'] = 1, 1
	return t
}()

// plainRun returns the length of the run of bytes at the start of b that
// stand for themselves in a string, and all of them ORed. It looks at
// eight bytes a step.
func plainRun(b []byte) (n int, all byte) {
	i := 0
	for ; i+8 <= len(b); i += 8 {
		w := b[i : i+8 : i+8]
		if strStop[w[0]]|strStop[w[1]]|strStop[w[2]]|strStop[w[3]]|
			strStop[w[4]]|strStop[w[5]]|strStop[w[6]]|strStop[w[7]] != 0 {
			break
		}
		all |= w[0] | w[1] | w[2] | w[3] | w[4] | w[5] | w[6] | w[7]
	}
	for ; i < len(b); i++ {
		if strStop[b[i]] != 0 {
			break
		}
		all |= b[i]
	}
	return i, all
}

func (r *reader) space() {
	for r.i < len(r.b) {
		if c := r.b[r.i]; c > ' ' || c != ' ' && c != '\t' && c != '\n' && c != '\r' {
			return
		}
		r.i++
	}
}

// end reports whether only whitespace is left.
func (r *reader) end() bool {
	r.space()
	return r.i == len(r.b)
}

// str reads a string at r.i (which is '"'). It reports whether the string
// has an escape and whether it has a byte outside ASCII; on an invalid
// string ok is false.
func (r *reader) str() (esc, high, ok bool) {
	b, i := r.b, r.i+1
	for {
		n, all := plainRun(b[i:])
		i += n
		high = high || all >= utf8.RuneSelf
		if i == len(b) {
			return false, false, false
		}
		switch b[i] {
		case '"':
			r.i = i + 1
			return esc, high, true
		case '\\':
			esc = true
			if i+1 == len(b) {
				return false, false, false
			}
			switch b[i+1] {
			case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
				i += 2
			case 'u':
				if i+6 > len(b) || !isHex(b[i+2]) || !isHex(b[i+3]) || !isHex(b[i+4]) || !isHex(b[i+5]) {
					return false, false, false
				}
				i += 6
			default:
				return false, false, false
			}
		default: // a control character
			return false, false, false
		}
	}
}

func isHex(c byte) bool {
	return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F'
}

func isDigit(c byte) bool { return '0' <= c && c <= '9' }

// num reads a number at r.i (which is '-' or a digit).
func (r *reader) num() bool {
	b, i := r.b, r.i
	if b[i] == '-' {
		i++
	}
	switch {
	case i == len(b) || !isDigit(b[i]):
		return false
	case b[i] == '0':
		i++
	default:
		for i < len(b) && isDigit(b[i]) {
			i++
		}
	}
	if i < len(b) && b[i] == '.' {
		i++
		if i == len(b) || !isDigit(b[i]) {
			return false
		}
		for i < len(b) && isDigit(b[i]) {
			i++
		}
	}
	if i < len(b) && (b[i] == 'e' || b[i] == 'E') {
		i++
		if i < len(b) && (b[i] == '+' || b[i] == '-') {
			i++
		}
		if i == len(b) || !isDigit(b[i]) {
			return false
		}
		for i < len(b) && isDigit(b[i]) {
			i++
		}
	}
	r.i = i
	return true
}

func (r *reader) lit(s string) verdict {
	if len(r.b)-r.i < len(s) || string(r.b[r.i:r.i+len(s)]) != s {
		return invalid
	}
	r.i += len(s)
	return valid
}

// skip reads any value at r.i (after whitespace), depth levels deep.
func (r *reader) skip(depth int) verdict {
	r.space()
	if r.i == len(r.b) {
		return invalid
	}
	switch c := r.b[r.i]; c {
	case '"':
		if _, _, ok := r.str(); !ok {
			return invalid
		}
		return valid
	case '{':
		more, v := r.open(depth + 1)
		for more && v == valid {
			if _, _, v = r.key(); v == valid {
				if v = r.skip(depth + 1); v == valid {
					more, v = r.next()
				}
			}
		}
		return v
	case '[':
		if depth+1 > maxDepth {
			return punt
		}
		r.i++
		r.space()
		if r.i < len(r.b) && r.b[r.i] == ']' {
			r.i++
			return valid
		}
		for {
			if v := r.skip(depth + 1); v != valid {
				return v
			}
			r.space()
			if r.i == len(r.b) {
				return invalid
			}
			switch r.b[r.i] {
			case ',':
				r.i++
			case ']':
				r.i++
				return valid
			default:
				return invalid
			}
		}
	case 't':
		return r.lit("true")
	case 'f':
		return r.lit("false")
	case 'n':
		return r.lit("null")
	default:
		if c == '-' || isDigit(c) {
			if r.num() {
				return valid
			}
		}
		return invalid
	}
}

// An object is read with open, then key, the value and next for each
// member:
//
//	more, v := r.open(depth)
//	for more && v == valid {
//		key, plain, v = r.key(); ...read the value...; more, v = r.next()
//	}

// open reads the '{' at r.i of an object depth deep; more is false when
// the object is empty.
func (r *reader) open(depth int) (more bool, v verdict) {
	if depth > maxDepth {
		return false, punt
	}
	r.i++
	r.space()
	if r.i < len(r.b) && r.b[r.i] == '}' {
		r.i++
		return false, valid
	}
	return true, valid
}

// key reads a member's key and ':', and leaves r at the value. plain
// reports that the raw key returned (between its quotes) is ASCII without
// escapes: a caller that matches keys must punt on any other key, which
// may still name a field (encoding/json unescapes it and folds Unicode
// case), calling odd.
func (r *reader) key() (key []byte, plain bool, v verdict) {
	r.space()
	if r.i == len(r.b) || r.b[r.i] != '"' {
		return nil, false, invalid
	}
	start := r.i
	esc, high, ok := r.str()
	if !ok {
		return nil, false, invalid
	}
	key = r.b[start+1 : r.i-1]
	r.space()
	if r.i == len(r.b) || r.b[r.i] != ':' {
		return nil, false, invalid
	}
	r.i++
	r.space()
	if r.i == len(r.b) {
		return nil, false, invalid
	}
	return key, !esc && !high, valid
}

// odd reads the value of a member whose key is not plain, and punts
// unless the value is invalid.
func (r *reader) odd(depth int) verdict {
	if v := r.skip(depth); v != valid {
		return v
	}
	return punt
}

// next reads what follows a member's value; more is false after the
// closing '}'.
func (r *reader) next() (more bool, v verdict) {
	r.space()
	if r.i < len(r.b) {
		switch r.b[r.i] {
		case ',':
			r.i++
			return true, valid
		case '}':
			r.i++
			return false, valid
		}
	}
	return false, invalid
}

// name is a key the reader looks for.
type name uint8

const (
	nOther name = iota
	nModel
	nUsage
	nMessage
	nResponse
	nPromptTokens
	nCompletionTokens
	nTotalTokens
	nInputTokens
	nOutputTokens
	nCacheCreation
	nCacheRead
)

// nameOf says which name a plain key is, matching as encoding/json
// matches struct fields: exactly, else in any ASCII case (the names being
// lower-case ASCII).
func nameOf(key []byte) name {
	n := exactName(key)
	if n != nOther || len(key) < len("model") || len(key) > len("cache_creation_input_tokens") {
		return n
	}
	var buf [32]byte
	k, upper := buf[:len(key)], false
	for i, c := range key {
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
			upper = true
		}
		k[i] = c
	}
	if !upper {
		return nOther
	}
	return exactName(k)
}

func exactName(k []byte) name {
	switch string(k) {
	case "model":
		return nModel
	case "usage":
		return nUsage
	case "message":
		return nMessage
	case "response":
		return nResponse
	case "prompt_tokens":
		return nPromptTokens
	case "completion_tokens":
		return nCompletionTokens
	case "total_tokens":
		return nTotalTokens
	case "input_tokens":
		return nInputTokens
	case "output_tokens":
		return nOutputTokens
	case "cache_creation_input_tokens":
		return nCacheCreation
	case "cache_read_input_tokens":
		return nCacheRead
	}
	return nOther
}

// usageObject reads the object at r.i into u as encoding/json decodes an
// object into a usageJSON: into the values u already has.
func (r *reader) usageObject(depth int, u *usageJSON) verdict {
	more, v := r.open(depth + 1)
	for more && v == valid {
		key, plain, kv := r.key()
		if v = kv; v != valid {
			break
		}
		if !plain {
			v = r.odd(depth + 1)
			break
		}
		start := r.i
		if v = r.skip(depth + 1); v != valid {
			break
		}
		if c := u.field(key); c != nil {
			if n, ok := parseCount(r.b[start:r.i]); ok {
				c.n, c.ok = n, true
			}
		}
		more, v = r.next()
	}
	return v
}

// field is the count key names, or nil.
func (u *usageJSON) field(key []byte) *count {
	switch nameOf(key) {
	case nPromptTokens:
		return &u.PromptTokens
	case nCompletionTokens:
		return &u.CompletionTokens
	case nTotalTokens:
		return &u.TotalTokens
	case nInputTokens:
		return &u.InputTokens
	case nOutputTokens:
		return &u.OutputTokens
	case nCacheCreation:
		return &u.CacheCreation
	case nCacheRead:
		return &u.CacheRead
	}
	return nil
}

// decodeUsage decodes a JSON document holding a usage object as
// json.Unmarshal(b, u) does, reporting whether it succeeded.
func decodeUsage(b []byte, u *usageJSON) bool {
	r := reader{b: b}
	r.space()
	v := invalid
	if r.i < len(b) && b[r.i] == '{' {
		var got usageJSON
		if v = r.usageObject(0, &got); v == valid && !r.end() {
			v = invalid
		}
		if v == valid {
			*u = got
		}
	} else if v = r.skip(0); v == valid {
		v = invalid
		if r.end() {
			v = punt // JSON of another type: encoding/json says what it does
		}
	}
	if v == punt {
		return json.Unmarshal(b, u) == nil
	}
	return v == valid
}

// decodeString decodes a JSON document holding a string as
// json.Unmarshal(b, &s) does, reporting whether it succeeded.
func decodeString(b []byte) (string, bool) {
	r := reader{b: b}
	if len(b) >= 2 && b[0] == '"' {
		esc, high, ok := r.str()
		if ok && r.i == len(b) && !esc && (!high || utf8.Valid(b)) {
			return string(b[1 : len(b)-1]), true
		}
	}
	var s string
	err := json.Unmarshal(b, &s)
	return s, err == nil
}

// eventDoc is what a stream event's data decodes to, as eventJSON without
// its pointers: a member "usage" (or "message", "response") that is null
// leaves it absent, one of another type present and empty.
type eventDoc struct {
	top      bodyDoc
	message  bodyDoc
	response bodyDoc
}

type bodyDoc struct {
	present  bool
	model    []byte // the last string "model", as written
	usage    usageJSON
	hasUsage bool
}

// decodeEvent decodes data as json.Unmarshal(data, &eventJSON{}) does,
// reporting whether the caller may use ev: also when only an
// *json.UnmarshalTypeError is wrong, as event requires.
func decodeEvent(data []byte, ev *eventDoc) verdict {
	r := reader{b: data}
	r.space()
	if r.i == len(data) || data[r.i] != '{' {
		// Not an object: nothing to use, whether valid or not.
		return invalid
	}
	more, v := r.open(1)
	for more && v == valid {
		key, plain, kv := r.key()
		if v = kv; v != valid {
			break
		}
		if !plain {
			v = r.odd(1)
			break
		}
		switch n := nameOf(key); n {
		case nMessage:
			v = r.body(&ev.message)
		case nResponse:
			v = r.body(&ev.response)
		default:
			v = r.bodyField(n, 1, &ev.top)
		}
		if v == valid {
			more, v = r.next()
		}
	}
	if v == valid && !r.end() {
		v = invalid
	}
	return v
}

// body reads the value of "message" or "response" into b as encoding/json
// decodes a value into a *bodyJSON.
func (r *reader) body(b *bodyDoc) verdict {
	switch r.b[r.i] {
	case 'n':
		if r.lit("null") != valid {
			return invalid
		}
		*b = bodyDoc{}
		return valid
	case '{':
		if !b.present {
			*b = bodyDoc{present: true}
		}
		more, v := r.open(2)
		for more && v == valid {
			key, plain, kv := r.key()
			if v = kv; v == valid {
				if !plain {
					return r.odd(2)
				}
				if v = r.bodyField(nameOf(key), 2, b); v == valid {
					more, v = r.next()
				}
			}
		}
		return v
	}
	if !b.present {
		*b = bodyDoc{present: true}
	}
	return r.skip(1)
}

// bodyField reads the value of a member named n of an object depth deep
// into b, for its "model" and "usage".
func (r *reader) bodyField(n name, depth int, b *bodyDoc) verdict {
	start := r.i
	switch n {
	case nModel:
		if v := r.skip(depth); v != valid {
			return v
		}
		if r.b[start] == '"' {
			b.model = r.b[start:r.i]
		}
		return valid
	case nUsage:
		switch r.b[r.i] {
		case 'n':
			if r.lit("null") != valid {
				return invalid
			}
			b.usage, b.hasUsage = usageJSON{}, false
			return valid
		case '{':
			if !b.hasUsage {
				b.usage, b.hasUsage = usageJSON{}, true
			}
			return r.usageObject(depth, &b.usage)
		}
		if !b.hasUsage {
			b.usage, b.hasUsage = usageJSON{}, true
		}
	}
	return r.skip(depth)
}
