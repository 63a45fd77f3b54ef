package usage

import (
	"bytes"
	"encoding/json"
	"errors"
)

// sseState is the incremental parser of an event stream
// (https://html.spec.whatwg.org/multipage/server-sent-events.html):
// lines end with "\r\n", "\n" or "\r"; a blank line ends an event; the data
// lines of an event are joined with "\n"; lines starting with ':' are
// comments. Complete lines are read where they lie in the written chunk;
// only a line split across writes is copied (into carry), and the data of
// an event only when it has several data lines or does not end in the
// write its data lies in.
type sseState struct {
	carry     []byte // the start of a line split across writes
	skipLine  bool   // the current line outgrew maxLine: skip to its end
	pendingCR bool   // the last write ended with '\r': a leading '\n' belongs to it
	started   bool   // the first line (which may start with a BOM) is done
	data      []byte // the data of the current event, unless inPlace
	inPlace   []byte // the data of the current event, in the written chunk
	placed    bool   // the data is inPlace
	hasData   bool   // the current event has a data field
	dropEvent bool   // the current event is too large: ignore it
}

var (
	bom = []byte("\xEF\xBB\xBF")
	// The key, without its opening quote: a letter is a rarer first byte
	// to search for than '"'.
	keyModel = []byte(`model"`)
)

func (m *Meter) writeSSE(p []byte) {
	s := &m.sse
	cr := bytes.IndexByte(p, '\r') >= 0
	for len(p) > 0 {
		if s.pendingCR {
			s.pendingCR = false
			if p[0] == '\n' {
				p = p[1:]
				continue
			}
		}
		end := bytes.IndexByte(p, '\n')
		next := end + 1
		if cr {
			seg := p
			if end >= 0 {
				seg = p[:end]
			}
			if r := bytes.IndexByte(seg, '\r'); r >= 0 {
				end, next = r, r+1
				if next == len(p) {
					s.pendingCR = true
				} else if p[next] == '\n' {
					next++
				}
			}
		}
		if end < 0 {
			s.stash(p)
			break
		}
		line := p[:end]
		p = p[next:]
		switch {
		case s.skipLine:
			s.skipLine = false
			continue
		case len(s.carry) > 0:
			if len(s.carry)+len(line) > maxLine {
				s.carry = s.carry[:0]
				s.dropEvent = true
				continue
			}
			s.carry = append(s.carry, line...)
			m.sseLine(s.carry)
			s.unplace() // the carry is overwritten next
			s.carry = s.carry[:0]
			continue
		}
		m.sseLine(line)
	}
	s.unplace() // the caller may overwrite p
}

// unplace copies data that lies in the written chunk.
func (s *sseState) unplace() {
	if s.placed {
		s.data = append(s.data[:0], s.inPlace...)
		s.inPlace, s.placed = nil, false
	}
}

// stash keeps the start of a line that continues in the next write.
func (s *sseState) stash(p []byte) {
	if s.skipLine {
		return
	}
	if len(s.carry)+len(p) > maxLine {
		s.carry = nil
		s.skipLine = true
		s.dropEvent = true
		return
	}
	s.carry = append(s.carry, p...)
}

// sseLine handles one complete line, without its end.
func (m *Meter) sseLine(line []byte) {
	s := &m.sse
	if !s.started {
		s.started = true
		line = bytes.TrimPrefix(line, bom)
	}
	if len(line) == 0 {
		m.dispatch()
		return
	}
	// Only "data" fields matter: the name is what comes before the first
	// ':', or the whole line; one space after the ':' is not the value's.
	if len(line) < 4 || string(line[:4]) != "data" || len(line) > 4 && line[4] != ':' || s.dropEvent {
		return
	}
	var value []byte
	if len(line) > 4 {
		value = line[5:]
		if len(value) > 0 && value[0] == ' ' {
			value = value[1:]
		}
	}
	n := len(s.data)
	if s.placed {
		n = len(s.inPlace)
	}
	if n+len(value)+1 > maxEvent {
		s.data = s.data[:0]
		s.inPlace, s.placed = nil, false
		s.dropEvent = true
		return
	}
	if !s.hasData {
		s.inPlace, s.placed = value, true
		s.hasData = true
		return
	}
	s.unplace()
	s.data = append(s.data, '\n')
	s.data = append(s.data, value...)
}

// dispatch ends the current event.
func (m *Meter) dispatch() {
	s := &m.sse
	if s.hasData && !s.dropEvent {
		data := s.data
		if s.placed {
			data = s.inPlace
		}
		m.event(data)
	}
	s.data = s.data[:0]
	s.inPlace, s.placed = nil, false
	s.hasData = false
	s.dropEvent = false
}

// finishSSE handles a last line and event that the body did not end.
func (m *Meter) finishSSE() {
	s := &m.sse
	if !s.skipLine && len(s.carry) > 0 {
		m.sseLine(s.carry)
		s.carry = s.carry[:0]
	}
	m.dispatch()
}

// eventJSON is the part of a stream event that carries usage or the model:
// OpenAI chunks (top level), Anthropic message_start ("message") and
// message_delta (top level), OpenAI Responses API events ("response").
type eventJSON struct {
	Model    string     `json:"model"`
	Usage    *usageJSON `json:"usage"`
	Message  *bodyJSON  `json:"message"`
	Response *bodyJSON  `json:"response"`
}

type bodyJSON struct {
	Model string     `json:"model"`
	Usage *usageJSON `json:"usage"`
}

// event reads the data of one event. Most events (content deltas, pings,
// "[DONE]") are passed over after a substring search: the JSON decoder
// runs only on data with a "usage" object, or naming a model while none is
// known yet. Inside JSON strings quotes are escaped, so `"usage"` and
// `"model"` match only keys (or exactly those string values).
func (m *Meter) event(data []byte) {
	if !hasUsage(data) && (m.t.model != "" || !hasKey(data, keyModel)) {
		return
	}
	m.t.takeEvent(data)
}

// takeEvent adds what the data of an event reports.
func (t *tally) takeEvent(data []byte) {
	var doc eventDoc
	switch decodeEvent(data, &doc) {
	case invalid:
		return
	case punt:
		t.takeEventJSON(data)
		return
	}
	t.setModel(doc.top.model)
	if doc.top.hasUsage {
		t.add(&doc.top.usage)
	}
	for _, b := range [...]*bodyDoc{&doc.message, &doc.response} {
		t.setModel(b.model)
		if b.hasUsage {
			t.add(&b.usage)
		}
	}
}

// takeEventJSON is takeEvent with encoding/json.
func (t *tally) takeEventJSON(data []byte) {
	var ev eventJSON
	if err := json.Unmarshal(data, &ev); err != nil {
		// A field of another type is skipped; the rest is decoded.
		var te *json.UnmarshalTypeError
		if !errors.As(err, &te) {
			return
		}
	}
	if ev.Model != "" {
		t.model = ev.Model
	}
	if ev.Usage != nil {
		t.add(ev.Usage)
	}
	for _, b := range [...]*bodyJSON{ev.Message, ev.Response} {
		if b == nil {
			continue
		}
		if b.Model != "" {
			t.model = b.Model
		}
		if b.Usage != nil {
			t.add(b.Usage)
		}
	}
}

// hasUsage reports whether data has the quoted key "usage" followed by
// ':' and '{' (with JSON whitespace between), as in `"usage": {` but not
// `"usage":null`. It looks back from each '{', a rarer byte than any of
// the key's.
func hasUsage(data []byte) bool {
	for i := 0; ; {
		k := bytes.IndexByte(data[i:], '{')
		if k < 0 {
			return false
		}
		i += k + 1
		j := spaceBefore(data, i-1)
		if j == 0 || data[j-1] != ':' {
			continue
		}
		j = spaceBefore(data, j-1)
		if j >= len(`"usage"`) && string(data[j-len(`"usage"`):j]) == `"usage"` {
			return true
		}
	}
}

// spaceBefore returns where the JSON whitespace that ends at b[i] starts.
func spaceBefore(b []byte, i int) int {
	for i > 0 && (b[i-1] == ' ' || b[i-1] == '\t' || b[i-1] == '\n' || b[i-1] == '\r') {
		i--
	}
	return i
}

// hasKey reports whether the quoted key (given without its opening quote)
// occurs in data.
func hasKey(data, key []byte) bool {
	for i := 0; ; {
		k := bytes.Index(data[i:], key)
		if k < 0 {
			return false
		}
		if at := i + k; at > 0 && data[at-1] == '"' {
			return true
		}
		i += k + len(key)
	}
}
