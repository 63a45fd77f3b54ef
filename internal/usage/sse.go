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
// only a line split across writes is copied (into carry).
type sseState struct {
	carry     []byte // the start of a line split across writes
	skipLine  bool   // the current line outgrew maxLine: skip to its end
	pendingCR bool   // the last write ended with '\r': a leading '\n' belongs to it
	started   bool   // the first line (which may start with a BOM) is done
	data      []byte // the data of the current event
	hasData   bool   // the current event has a data field
	dropEvent bool   // the current event is too large: ignore it
}

var (
	bom = []byte("\xEF\xBB\xBF")
	// The keys, without their opening quote: a letter is a rarer first byte
	// to search for than '"'.
	keyUsage = []byte(`usage"`)
	keyModel = []byte(`model"`)
)

func (m *Meter) writeSSE(p []byte) {
	s := &m.sse
	for len(p) > 0 {
		if s.pendingCR {
			s.pendingCR = false
			if p[0] == '\n' {
				p = p[1:]
				continue
			}
		}
		end := bytes.IndexByte(p, '\n')
		seg := p
		if end >= 0 {
			seg = p[:end]
		}
		cr := bytes.IndexByte(seg, '\r')
		if cr >= 0 {
			end = cr
		}
		if end < 0 {
			s.stash(p)
			return
		}
		next := end + 1
		if cr >= 0 {
			if next == len(p) {
				s.pendingCR = true
			} else if p[next] == '\n' {
				next++
			}
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
			line = s.carry
		}
		m.sseLine(line)
		s.carry = s.carry[:0]
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
	if line[0] == ':' {
		return
	}
	name, value := line, []byte(nil)
	if i := bytes.IndexByte(line, ':'); i >= 0 {
		name, value = line[:i], line[i+1:]
		if len(value) > 0 && value[0] == ' ' {
			value = value[1:]
		}
	}
	if string(name) != "data" || s.dropEvent {
		return
	}
	if len(s.data)+len(value)+1 > maxEvent {
		s.data = s.data[:0]
		s.dropEvent = true
		return
	}
	if s.hasData {
		s.data = append(s.data, '\n')
	}
	s.data = append(s.data, value...)
	s.hasData = true
}

// dispatch ends the current event.
func (m *Meter) dispatch() {
	s := &m.sse
	if s.hasData && !s.dropEvent {
		m.event(s.data)
	}
	s.data = s.data[:0]
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
	if !hasObject(data, keyUsage) && (m.t.model != "" || !hasKey(data, keyModel)) {
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

// hasObject reports whether the quoted key (given without its opening
// quote) occurs in data followed by ':' and '{' (with JSON whitespace
// between), as in `"usage": {` but not `"usage":null`.
func hasObject(data, key []byte) bool {
	for i := 0; ; {
		k := bytes.Index(data[i:], key)
		if k < 0 {
			return false
		}
		at := i + k
		i = at + len(key)
		if at == 0 || data[at-1] != '"' {
			continue
		}
		j := skipSpace(data, i)
		if j < len(data) && data[j] == ':' {
			j = skipSpace(data, j+1)
			if j < len(data) && data[j] == '{' {
				return true
			}
		}
	}
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

func skipSpace(b []byte, i int) int {
	for i < len(b) && (b[i] == ' ' || b[i] == '\t' || b[i] == '\n' || b[i] == '\r') {
		i++
	}
	return i
}
