package demoupstream

import (
	"bytes"
	"encoding/binary"
	"errors"
	"math/bits"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf16"
	"unicode/utf8"
)

// A strict JSON reader, for the few request bodies this server reads by
// hand (decode.go): it accepts exactly the documents encoding/json accepts
// and, at the first bad byte, gives the message encoding/json's syntax
// error has. Strings are checked, not decoded, as they are read; a text
// decodes one when asked.

// maxDepth is encoding/json's limit on nesting.
const maxDepth = 10000

// reader reads a JSON document. Its methods return false, and set err,
// at the first syntax error: the one encoding/json would report.
type reader struct {
	b       []byte
	i       int // the next byte to read
	depth   int // arrays and objects open
	err     error
	typeErr error // the first value of the wrong type for a request field
}

// fail sets r.err to encoding/json's error for the byte at r.i, met while
// context. At the end of the document encoding/json reports the byte a
// space would be when a space cannot go there (inToken: inside a number,
// literal or escape), and the end as such otherwise.
func (r *reader) fail(context string, inToken bool) bool {
	switch {
	case r.i < len(r.b):
		r.err = errors.New("invalid character " + quoteChar(r.b[r.i]) + " " + context)
	case inToken:
		r.err = errors.New("invalid character ' ' " + context)
	default:
		r.err = errors.New("unexpected end of JSON input")
	}
	return false
}

// quoteChar quotes c as encoding/json's syntax errors do.
func quoteChar(c byte) string {
	switch c {
	case '\'':
		return `'\''`
	case '"':
		return `'"'`
	}
	s := strconv.Quote(string(rune(c)))
	return "'" + s[1:len(s)-1] + "'"
}

// mismatch sets *dst, unless set, to encoding/json's error for a value
// that starts with c where goType is wanted; path is the struct field
// ("block.text"), "" for a value outside any struct.
func mismatch(dst *error, c byte, goType, path string) {
	value := "number"
	switch c {
	case '"':
		value = "string"
	case '{':
		value = "object"
	case '[':
		value = "array"
	case 't', 'f':
		value = "bool"
	}
	typeError(dst, value, goType, path)
}

// typeError sets *dst, unless set, to encoding/json's error for value
// ("number 1.5") where goType is wanted.
func typeError(dst *error, value, goType, path string) {
	if *dst != nil {
		return
	}
	if path == "" {
		*dst = errors.New("json: cannot unmarshal " + value + " into Go value of type " + goType)
		return
	}
	*dst = errors.New("json: cannot unmarshal " + value + " into Go struct field " + path + " of type " + goType)
}

// space skips JSON white space.
func (r *reader) space() {
	for r.i < len(r.b) {
		switch r.b[r.i] {
		case ' ', '\t', '\n', '\r':
			r.i++
		default:
			return
		}
	}
}

// peek returns the first byte of the value at r.i, after white space.
func (r *reader) peek() (byte, bool) {
	r.space()
	if r.i == len(r.b) {
		return 0, r.fail("looking for beginning of value", false)
	}
	return r.b[r.i], true
}

// end checks that only white space follows the document's value.
func (r *reader) end() bool {
	r.space()
	if r.i < len(r.b) {
		return r.fail("after top-level value", false)
	}
	return true
}

// open reads the '{' or '[' at r.i and reports whether a member or
// element follows (false also at an error).
func (r *reader) open() bool {
	if r.depth == maxDepth {
		return r.fail("exceeded max depth", false)
	}
	closing := r.b[r.i] + 2 // '}' or ']'
	r.depth++
	r.i++
	r.space()
	if r.i < len(r.b) && r.b[r.i] == closing {
		r.i++
		r.depth--
		return false
	}
	return true
}

// next reads what follows a member or an element and reports whether
// another one follows (false also at an error).
func (r *reader) next(closing byte) bool {
	r.space()
	if r.i < len(r.b) {
		switch r.b[r.i] {
		case ',':
			r.i++
			return true
		case closing:
			r.i++
			r.depth--
			return false
		}
	}
	if closing == '}' {
		return r.fail("after object key:value pair", false)
	}
	return r.fail("after array element", false)
}

// key reads a member's key and the ':' after it. An object is read as
//
//	for more := r.open(); more; more = r.next('}') {
//		k, ok := r.key() … read the value …
//	}
//	if r.err != nil { … }
func (r *reader) key() (text, bool) {
	r.space()
	if r.i == len(r.b) || r.b[r.i] != '"' {
		return text{}, r.fail("looking for beginning of object key string", false)
	}
	k, ok := r.str()
	if !ok {
		return text{}, false
	}
	r.space()
	if r.i == len(r.b) || r.b[r.i] != ':' {
		return text{}, r.fail("after object key", false)
	}
	r.i++
	return k, true
}

// match returns the index of the name k stands for, -1 for none. Each
// pair of names differs under case folding, so whether encoding/json
// tried the exact name first makes no difference.
func match(k text, names ...string) int {
	key := k.raw
	if !k.plain {
		key = []byte(k.String())
	}
	for i, name := range names {
		if name != "" && bytes.EqualFold(key, []byte(name)) {
			return i
		}
	}
	return -1
}

// str reads the string at r.i.
func (r *reader) str() (text, bool) {
	b := r.b
	start := r.i + 1
	i, n, plain := start, 0, true
	for {
		k := plainRun(b[i:])
		i += k
		n += k
		if i == len(b) {
			r.i = i
			return text{}, r.fail("in string literal", false)
		}
		switch c := b[i]; {
		case c == '"':
			r.i = i + 1
			return text{raw: b[start:i], n: n, plain: plain}, true
		case c == '\\':
			plain = false
			if i+1 == len(b) {
				r.i = i + 1
				return text{}, r.fail("in string escape code", true)
			}
			switch b[i+1] {
			case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
				i += 2
				n++
			case 'u':
				for j := i + 2; j < i+6; j++ {
					if _, ok := hexValue(r.at(j)); !ok {
						r.i = j
						return text{}, r.fail(`in \u hexadecimal character escape`, true)
					}
				}
				// decodeRune takes a pair of surrogates together; a lone
				// one becomes U+FFFD, and a bad escape after it is left
				// for this loop to find.
				var ch rune
				ch, i = decodeRune(b, i)
				n += utf8.RuneLen(ch)
			default:
				r.i = i + 1
				return text{}, r.fail("in string escape code", true)
			}
		case c < 0x20:
			r.i = i
			return text{}, r.fail("in string literal", false)
		default: // not ASCII
			ch, size := utf8.DecodeRune(b[i:])
			if ch == utf8.RuneError && size == 1 {
				plain = false
				n += 3 // U+FFFD
			} else {
				n += size
			}
			i += size
		}
	}
}

// at returns the byte at i, 0 past the end.
func (r *reader) at(i int) byte {
	if i < len(r.b) {
		return r.b[i]
	}
	return 0
}

// literal reads the true, false or null at r.i.
func (r *reader) literal(word string) bool {
	for k := 1; k < len(word); k++ {
		if r.i++; r.at(r.i) != word[k] {
			return r.fail("in literal "+word+" (expecting "+quoteChar(word[k])+")", true)
		}
	}
	r.i++
	return true
}

// number reads the number at r.i (which is '-' or a digit).
func (r *reader) number() bool {
	if r.b[r.i] == '-' {
		r.i++
	}
	switch c := r.at(r.i); {
	case c == '0':
		r.i++
	case '1' <= c && c <= '9':
		r.digits()
	default:
		return r.fail("in numeric literal", true)
	}
	if r.at(r.i) == '.' {
		r.i++
		if !isDigit(r.at(r.i)) {
			return r.fail("after decimal point in numeric literal", true)
		}
		r.digits()
	}
	if c := r.at(r.i); c == 'e' || c == 'E' {
		r.i++
		if c := r.at(r.i); c == '+' || c == '-' {
			r.i++
		}
		if !isDigit(r.at(r.i)) {
			return r.fail("in exponent of numeric literal", true)
		}
		r.digits()
	}
	return true
}

// digits skips digits.
func (r *reader) digits() {
	for isDigit(r.at(r.i)) {
		r.i++
	}
}

func isDigit(c byte) bool { return '0' <= c && c <= '9' }

// skip reads a value of any kind.
func (r *reader) skip() bool {
	c, ok := r.peek()
	if !ok {
		return false
	}
	switch {
	case c == '"':
		_, ok := r.str()
		return ok
	case c == '{':
		for more := r.open(); more; more = r.next('}') {
			if _, ok := r.key(); !ok || !r.skip() {
				return false
			}
		}
	case c == '[':
		for more := r.open(); more; more = r.next(']') {
			if !r.skip() {
				return false
			}
		}
	case c == 't':
		return r.literal("true")
	case c == 'f':
		return r.literal("false")
	case c == 'n':
		return r.literal("null")
	case c == '-' || isDigit(c):
		return r.number()
	default:
		return r.fail("looking for beginning of value", false)
	}
	return r.err == nil
}

// text is a JSON string read but not yet decoded.
type text struct {
	raw   []byte // the bytes between the quotes
	n     int    // the length of the decoded string
	plain bool   // raw is the decoded string: no escapes, valid UTF-8
}

// String returns the decoded string.
func (t text) String() string {
	if t.plain {
		return string(t.raw)
	}
	var b strings.Builder
	b.Grow(t.n)
	s := t.raw
	for i := 0; i < len(s); {
		k := plainRun(s[i:])
		b.Write(s[i : i+k])
		if i += k; i == len(s) {
			break
		}
		var r rune
		r, i = decodeRune(s, i)
		b.WriteRune(r)
	}
	return b.String()
}

// is reports whether t decodes to s.
func (t text) is(s string) bool {
	if t.plain {
		return string(t.raw) == s
	}
	return t.n == len(s) && t.String() == s
}

// decodeRune decodes the rune at s[i] of a valid string's raw bytes, as
// encoding/json does, and returns the index after it.
func decodeRune(s []byte, i int) (rune, int) {
	c := s[i]
	if c >= utf8.RuneSelf {
		r, size := utf8.DecodeRune(s[i:]) // RuneError for a bad byte
		return r, i + size
	}
	if c != '\\' {
		return rune(c), i + 1
	}
	switch c = s[i+1]; c {
	case 'b':
		return '\b', i + 2
	case 'f':
		return '\f', i + 2
	case 'n':
		return '\n', i + 2
	case 'r':
		return '\r', i + 2
	case 't':
		return '\t', i + 2
	case 'u':
		r, _ := hex4(s[i:])
		if !utf16.IsSurrogate(r) {
			return r, i + 6
		}
		if r2, ok := hex4(s[i+6:]); ok {
			if pair := utf16.DecodeRune(r, r2); pair != unicode.ReplacementChar {
				return pair, i + 12
			}
		}
		return unicode.ReplacementChar, i + 6
	default: // '"', '\\', '/'
		return rune(c), i + 2
	}
}

// hex4 decodes the \uXXXX escape that s starts with, if it does.
func hex4(s []byte) (rune, bool) {
	if len(s) < 6 || s[0] != '\\' || s[1] != 'u' {
		return 0, false
	}
	var r rune
	for _, c := range s[2:6] {
		d, ok := hexValue(c)
		if !ok {
			return 0, false
		}
		r = r<<4 | d
	}
	return r, true
}

// hexValue is the value of the hexadecimal digit c.
func hexValue(c byte) (rune, bool) {
	switch {
	case '0' <= c && c <= '9':
		return rune(c - '0'), true
	case 'a' <= c && c <= 'f':
		return rune(c - 'a' + 10), true
	case 'A' <= c && c <= 'F':
		return rune(c - 'A' + 10), true
	}
	return 0, false
}

const (
	lsb = 0x0101010101010101 // the low bit of each byte of a word
	msb = 0x8080808080808080 // the high bit of each byte
)

// plainRun returns how many bytes at the start of s stand for themselves
// in a JSON string and are ASCII: neither '"', '\\', a control character,
// nor a byte of a multi-byte rune. It tests eight bytes at a time.
func plainRun(s []byte) int {
	i := 0
	for ; i+8 <= len(s); i += 8 {
		x := binary.LittleEndian.Uint64(s[i:])
		q := x ^ (lsb * '"')
		e := x ^ (lsb * '\\')
		// The high bit of a byte ends up set where the byte is '"' or
		// '\\' (the byte of q or e is 0), below 0x20, or not ASCII. A
		// borrow can set it wrongly only above a byte where it is rightly
		// set, so the lowest one set is the first stop.
		if stop := ((q-lsb)&^q | (e-lsb)&^e | (x-lsb*0x20)&^x | x) & msb; stop != 0 {
			return i + bits.TrailingZeros64(stop)/8
		}
	}
	for ; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c >= utf8.RuneSelf || c == '"' || c == '\\' {
			break
		}
	}
	return i
}
