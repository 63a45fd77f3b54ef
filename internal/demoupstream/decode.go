package demoupstream

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"unicode"
)

// Bodies of POST /v1/messages, count_tokens and /v1/chat/completions are
// read by hand in one pass, not by encoding/json: a Claude Code request is
// 100 KB and more, and encoding/json went over it four times (validation,
// the struct, each content value, each content block), which made this
// server, not the proxy, the bottleneck of the proxy benchmarks.
//
// The reader behaves as encoding/json.Unmarshal did into this package's
// old request structs (content as json.RawMessage, walked block by block):
// it rejects every body that encoding/json rejects, with the same message
// (the first syntax error, else the first type error, naming the old Go
// types), matches keys as encoding/json matches field names (the exact
// name, else any name equal under Unicode case folding), lets the last of
// duplicate keys win, decodes strings the same way (invalid UTF-8 and lone
// surrogates become U+FFFD), and reproduces what Unmarshal does when a
// second "messages" array lands on the slice the first one filled: each
// element is decoded into the old element at its index. FuzzDecodeMessages
// compares the reader with the old code, which its test file keeps.

// reminderTag starts the text that Claude Code wraps around a prompt,
// which readPrompt does not quote.
const reminderTag = "<system-reminder>"

// errContent says a content field has a shape neither family allows.
var errContent = errors.New("content must be a string or an array of content blocks")

// field is a member of a request body that the demo reads.
type field uint8

const (
	fOther field = iota
	fModel
	fMessages
	fSystem
	fStream
	fStreamOptions
	fMaxTokens
	fMaxCompletionTokens
)

// schema is the body of one route: the fields read, and the name of the
// Go struct encoding/json used to decode it into, which its type errors
// named.
type schema struct {
	goName string
	names  []string // JSON names, indexed by field
	paths  []string // goName.name, as type errors name a field
}

// newSchema returns the schema of the struct goName with the JSON names.
func newSchema(goName string, names []string) *schema {
	s := &schema{goName: goName, names: names, paths: make([]string, len(names))}
	for i, name := range names {
		s.paths[i] = goName + "." + name
	}
	return s
}

var (
	messagesSchema = newSchema("messagesRequest", []string{
		fModel: "model", fMessages: "messages", fSystem: "system", fStream: "stream", fMaxTokens: "max_tokens"})
	chatSchema = newSchema("chatRequest", []string{
		fModel: "model", fMessages: "messages", fStream: "stream", fStreamOptions: "stream_options",
		fMaxTokens: "max_tokens", fMaxCompletionTokens: "max_completion_tokens"})
)

// request is what the demo reads of a messages or chat body.
type request struct {
	model               string
	stream              bool
	maxTokens           *int
	maxCompletionTokens *int
	streamOptions       bool // stream_options is an object
	includeUsage        bool
	system              summary
	turns               []turn
	// all is the array under turns as encoding/json leaves it: it decodes
	// each element of a later messages array into the element at the same
	// index, even past the length an earlier, shorter array cut turns to,
	// so what an element does not say stays as before. null and [] drop it.
	all []turn
}

// readRequest reads a body of the route s describes, or returns the error
// encoding/json gave for it.
func readRequest(body []byte, s *schema) (request, error) {
	r := reader{b: body}
	var req request
	if c, ok := r.peek(); ok {
		switch c {
		case '{':
			r.request(&req, s)
		case 'n':
			r.literal("null")
		default:
			mismatch(&r.typeErr, c, "demoupstream."+s.goName, "")
			r.skip()
		}
	}
	if r.err == nil {
		r.end()
	}
	if r.err != nil {
		return request{}, r.err
	}
	if r.typeErr != nil {
		return request{}, r.typeErr
	}
	return req, nil
}

// request reads the members of a request object.
func (r *reader) request(req *request, s *schema) bool {
	for more := r.open(); more; more = r.next('}') {
		k, ok := r.key()
		if ok {
			ok = r.member(req, s, field(max(match(k, s.names...), 0)))
		}
		if !ok {
			return false
		}
	}
	return r.err == nil
}

// member reads the value of field f of a request.
func (r *reader) member(req *request, s *schema, f field) bool {
	switch f {
	case fOther:
		return r.skip()
	case fSystem:
		var ok bool
		req.system, ok = r.content()
		return ok
	}
	c, ok := r.peek()
	if !ok {
		return false
	}
	if c == 'n' {
		return r.null(req, f)
	}
	path := s.paths[f]
	switch f {
	case fModel:
		return r.stringField(&req.model, c, path)
	case fMessages:
		return r.messages(req, c, path)
	case fStream:
		return r.boolField(&req.stream, c, path)
	case fStreamOptions:
		return r.streamOptions(req, c, path)
	case fMaxTokens:
		return r.intField(&req.maxTokens, c, path)
	default: // fMaxCompletionTokens
		return r.intField(&req.maxCompletionTokens, c, path)
	}
}

// null reads a null given to field f: it clears pointers and slices and
// leaves the rest alone.
func (r *reader) null(req *request, f field) bool {
	switch f {
	case fMessages:
		req.turns, req.all = nil, req.all[:0]
	case fStreamOptions:
		req.streamOptions, req.includeUsage = false, false
	case fMaxTokens:
		req.maxTokens = nil
	case fMaxCompletionTokens:
		req.maxCompletionTokens = nil
	}
	return r.literal("null")
}

// stringField reads the value, starting with c, of a string field (not
// null).
func (r *reader) stringField(dst *string, c byte, path string) bool {
	if c == '"' {
		t, ok := r.str()
		*dst = t.String()
		return ok
	}
	mismatch(&r.typeErr, c, "string", path)
	return r.skip()
}

// boolField reads the value, starting with c, of a bool field: null
// leaves *dst alone.
func (r *reader) boolField(dst *bool, c byte, path string) bool {
	switch c {
	case 't':
		*dst = true
		return r.literal("true")
	case 'f':
		*dst = false
		return r.literal("false")
	case 'n':
		return r.literal("null")
	}
	mismatch(&r.typeErr, c, "bool", path)
	return r.skip()
}

// intField reads the value, starting with c, of an *int field (not null).
func (r *reader) intField(dst **int, c byte, path string) bool {
	if c != '-' && !isDigit(c) {
		mismatch(&r.typeErr, c, "int", path)
		return r.skip()
	}
	start := r.i
	if !r.number() {
		return false
	}
	lit := string(r.b[start:r.i])
	n, err := strconv.ParseInt(lit, 10, 64)
	if err != nil {
		typeError(&r.typeErr, "number "+lit, "int", path)
		return true
	}
	v := int(n)
	*dst = &v
	return true
}

// streamOptions reads the value, starting with c, of stream_options (not
// null): an object is decoded into the one already there, if any (null
// cleared includeUsage with it).
func (r *reader) streamOptions(req *request, c byte, path string) bool {
	if c != '{' {
		mismatch(&r.typeErr, c, "demoupstream.streamOptions", path)
		return r.skip()
	}
	req.streamOptions = true
	for more := r.open(); more; more = r.next('}') {
		k, ok := r.key()
		if !ok {
			return false
		}
		if match(k, "include_usage") < 0 {
			ok = r.skip()
		} else if c, ok = r.peek(); ok {
			ok = r.boolField(&req.includeUsage, c, "streamOptions.stream_options.include_usage")
		}
		if !ok {
			return false
		}
	}
	return r.err == nil
}

// messages reads the value, starting with c, of messages (not null).
func (r *reader) messages(req *request, c byte, path string) bool {
	if c != '[' {
		mismatch(&r.typeErr, c, "[]demoupstream.message", path)
		return r.skip()
	}
	n := 0
	for more := r.open(); more; more = r.next(']') {
		if n == len(req.all) {
			req.all = append(req.all, turn{})
		}
		t := &req.all[n]
		n++
		c, ok := r.peek()
		switch {
		case !ok:
			return false
		case c == '{':
			ok = r.turn(t)
		case c == 'n':
			ok = r.literal("null") // leaves the element alone
		default:
			mismatch(&r.typeErr, c, "demoupstream.message", path)
			ok = r.skip()
		}
		if !ok {
			return false
		}
	}
	if r.err != nil {
		return false
	}
	if n == 0 { // encoding/json makes a new empty slice
		req.all = req.all[:0]
	}
	req.turns = req.all[:n]
	return true
}

// turn reads a message object into t.
func (r *reader) turn(t *turn) bool {
	for more := r.open(); more; more = r.next('}') {
		k, ok := r.key()
		if !ok {
			return false
		}
		switch match(k, "role", "content") {
		case 0:
			ok = r.role(t)
		case 1:
			t.content, ok = r.content()
		default:
			ok = r.skip()
		}
		if !ok {
			return false
		}
	}
	return r.err == nil
}

// role reads a message's role.
func (r *reader) role(t *turn) bool {
	c, ok := r.peek()
	switch {
	case !ok:
		return false
	case c == '"':
		s, ok := r.str()
		t.user = s.is("user")
		return ok
	case c == 'n':
		return r.literal("null")
	}
	mismatch(&r.typeErr, c, "string", "message.messages.role")
	return r.skip()
}

// content reads a content value: a string, null, or an array of content
// blocks; any other value is read and summarized as errContent.
func (r *reader) content() (summary, bool) {
	var s summary
	c, ok := r.peek()
	switch {
	case !ok:
		return s, false
	case c == '"':
		t, ok := r.str()
		s.addText(t)
		return s, ok
	case c == '[':
		return r.blocks()
	case c == 'n':
		return s, r.literal("null")
	}
	s.err = errContent
	return s, r.skip()
}

// blocks reads an array of content blocks: text blocks, and tool_result
// blocks whose content is itself content. Its error is the first block
// field of the wrong type, else the first error of a block's content.
func (r *reader) blocks() (summary, bool) {
	var s summary
	var direct, nested error
	for more := r.open(); more; more = r.next(']') {
		c, ok := r.peek()
		switch {
		case !ok:
			return s, false
		case c == '{':
			var b summary
			b, ok = r.block(&direct)
			if b.err != nil && nested == nil {
				nested = b.err
			}
			s.add(b)
		case c == 'n':
			ok = r.literal("null")
		default:
			mismatch(&direct, c, "demoupstream.block", "")
			ok = r.skip()
		}
		if !ok {
			return s, false
		}
	}
	if direct != nil {
		s.err = fmt.Errorf("decode content blocks: %w", direct)
	} else {
		s.err = nested
	}
	return s, r.err == nil
}

// block reads a content block: its text, then the texts of its content.
// A field of the wrong type sets *direct.
func (r *reader) block(direct *error) (summary, bool) {
	var t text
	var inner summary
	for more := r.open(); more; more = r.next('}') {
		k, ok := r.key()
		if !ok {
			return summary{}, false
		}
		switch i := match(k, blockFields[:]...); i {
		case 0, 1: // type, text: strings
			ok = r.blockString(&t, i == 1, direct, blockPaths[i])
		case 2:
			inner, ok = r.content()
		default:
			ok = r.skip()
		}
		if !ok {
			return summary{}, false
		}
	}
	var s summary
	s.addText(t)
	s.add(inner)
	s.err = inner.err
	return s, r.err == nil
}

// blockFields are the fields of a content block that the demo reads, and
// blockPaths how type errors name the string ones.
var (
	blockFields = [...]string{"type", "text", "content"}
	blockPaths  = [...]string{"block.type", "block.text"}
)

// blockString reads a string field of a block into *dst when keep is set;
// null leaves it alone, and another value sets *direct.
func (r *reader) blockString(dst *text, keep bool, direct *error, path string) bool {
	c, ok := r.peek()
	switch {
	case !ok:
		return false
	case c == '"':
		t, ok := r.str()
		if keep {
			*dst = t
		}
		return ok
	case c == 'n':
		return r.literal("null")
	}
	mismatch(direct, c, "string", path)
	return r.skip()
}

// summary is what a prompt needs of one content value (a message's, the
// system prompt, a content block's): the bytes of its texts, the last text
// that is not blank and the last one that is not a reminder either, and
// the error, if any, that walking the value would meet first.
type summary struct {
	bytes int
	any   text // n == 0: none
	ask   text
	err   error
}

// addText adds a text that comes after what s has seen.
func (s *summary) addText(t text) {
	s.bytes += t.n
	blank, reminder := t.shape()
	if blank {
		return
	}
	s.any = t
	if !reminder {
		s.ask = t
	}
}

// add adds the texts of o, which come after those s has seen.
func (s *summary) add(o summary) {
	s.bytes += o.bytes
	if o.any.n > 0 {
		s.any = o.any
	}
	if o.ask.n > 0 {
		s.ask = o.ask
	}
}

// shape says what readPrompt's choice of the question to quote needs to
// know of t: whether it is blank (all white space, as strings.TrimSpace
// sees it) and whether what follows the leading space is a reminder.
func (t text) shape() (blank, reminder bool) {
	if t.plain {
		s := bytes.TrimLeftFunc(t.raw, unicode.IsSpace)
		return len(s) == 0, bytes.HasPrefix(s, []byte(reminderTag))
	}
	s, i := t.raw, 0
	for i < len(s) {
		r, next := decodeRune(s, i)
		if !unicode.IsSpace(r) {
			break
		}
		i = next
	}
	if i == len(s) {
		return true, false
	}
	for k := range len(reminderTag) {
		if i == len(s) {
			return false, false
		}
		var r rune
		if r, i = decodeRune(s, i); r != rune(reminderTag[k]) {
			return false, false
		}
	}
	return false, true
}

// turn is one element of messages.
type turn struct {
	user    bool // role is "user"
	content summary
}

// promptOf measures the system prompt and the messages, and picks the
// question to quote: the last text of the last user message, skipping the
// <system-reminder> blocks Claude Code puts around it. Its error names the
// first value, in that order, that is not content.
func promptOf(system summary, turns []turn) (prompt, error) {
	if system.err != nil {
		return prompt{}, fmt.Errorf("system: %w", system.err)
	}
	p := prompt{bytes: system.bytes}
	var ask text
	for i, t := range turns {
		if t.content.err != nil {
			return prompt{}, fmt.Errorf("messages.%d: %w", i, t.content.err)
		}
		p.bytes += t.content.bytes
		if t.user {
			ask = t.content.ask
			if ask.n == 0 {
				ask = t.content.any
			}
		}
	}
	p.ask = ask.String()
	return p, nil
}

// message is one chat message as encoding/json decodes it: content is a
// string, null, or an array of content blocks (OpenAI parts, Anthropic
// blocks).
type message struct {
	Role    string          `json:"role"`
	Content json.RawMessage `json:"content"`
}

// readPrompt is promptOf for messages that encoding/json has decoded
// (TestReadPrompt pins the choice of the question through it); system
// (Anthropic's top-level field) may be nil.
func readPrompt(system json.RawMessage, msgs []message) (prompt, error) {
	sys, err := readContent(system)
	if err != nil {
		return prompt{}, fmt.Errorf("system: %w", err)
	}
	turns := make([]turn, len(msgs))
	for i, m := range msgs {
		turns[i].user = m.Role == "user"
		if turns[i].content, err = readContent(m.Content); err != nil {
			return prompt{}, fmt.Errorf("messages.%d: %w", i, err)
		}
	}
	return promptOf(sys, turns)
}

// readContent summarizes one raw content value; nil is none.
func readContent(raw json.RawMessage) (summary, error) {
	if len(trimSpace(raw)) == 0 {
		return summary{}, nil
	}
	r := reader{b: raw}
	s, ok := r.content()
	if ok {
		r.end()
	}
	if r.err != nil {
		return summary{}, fmt.Errorf("decode content: %w", r.err)
	}
	return s, nil
}
