package demoupstream

import "net/http"

// messagesRequest is the part of POST /v1/messages (and count_tokens) the
// demo reads besides the prompt; everything else (tools, thinking,
// metadata, …) is ignored.
type messagesRequest struct {
	Model     string
	Stream    bool
	MaxTokens *int
}

// decodeMessages reads an Anthropic request body, or says what is wrong.
func decodeMessages(body []byte) (messagesRequest, prompt, *apiError) {
	d, err := readRequest(body, messagesSchema)
	if err != nil {
		e := errInvalidJSON(err)
		return messagesRequest{}, prompt{}, &e
	}
	if d.model == "" {
		e := errInvalid("model: Field required")
		return messagesRequest{}, prompt{}, &e
	}
	p, err := promptOf(d.system, d.turns)
	if err != nil {
		e := errInvalid(err.Error())
		return messagesRequest{}, prompt{}, &e
	}
	return messagesRequest{Model: d.model, Stream: d.stream, MaxTokens: d.maxTokens}, p, nil
}

// messages answers POST /v1/messages, as JSON or as Anthropic's event stream.
func (s *Server) messages(w http.ResponseWriter, r *http.Request, body []byte) {
	req, p, e := decodeMessages(body)
	if e != nil {
		s.fail(w, anthropic, *e)
		return
	}
	limit := 0
	if req.MaxTokens != nil {
		if *req.MaxTokens < 1 {
			s.fail(w, anthropic, errInvalid("max_tokens: must be greater than or equal to 1"))
			return
		}
		limit = *req.MaxTokens
	}
	rp, cut := newReply(s.who(r), req.Model, p.ask, s.chunks).truncate(limit)
	stop := "end_turn"
	if cut {
		stop = "max_tokens"
	}
	in, out := p.inputTokens(), rp.words()
	id := s.newID("msg_")

	if !req.Stream {
		b := make([]byte, 0, 512+len(rp.text))
		b = append(b, `{"id":`...)
		b = appendString(b, id)
		b = append(b, `,"type":"message","role":"assistant","model":`...)
		b = appendString(b, req.Model)
		b = append(b, `,"content":[{"type":"text","text":`...)
		b = appendString(b, rp.text)
		b = append(b, `}],"stop_reason":"`...)
		b = append(b, stop...)
		b = append(b, `","stop_sequence":null,"usage":`...)
		b = appendMessageUsage(b, in, out)
		b = append(b, '}')
		s.setCost(w)
		writeJSON(w, http.StatusOK, b)
		return
	}

	ctx := r.Context()
	st := s.openStream(w, r)
	buf := make([]byte, 0, 512)
	buf = append(buf, "event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"id\":"...)
	buf = appendString(buf, id)
	buf = append(buf, `,"type":"message","role":"assistant","model":`...)
	buf = appendString(buf, req.Model)
	buf = append(buf, `,"content":[],"stop_reason":null,"stop_sequence":null,"usage":`...)
	buf = appendMessageUsage(buf, in, 1)
	buf = append(buf, "}}\n\n"...)
	if st.send(ctx, buf) != nil ||
		st.send(ctx, eventBlockStart) != nil ||
		st.send(ctx, eventPing) != nil {
		return
	}
	for i, d := range rp.deltas(s.chunks) {
		if st.pause(ctx, i) != nil {
			return
		}
		buf = append(buf[:0], eventDeltaHead...)
		buf = appendString(buf, d)
		buf = append(buf, "}}\n\n"...)
		if st.send(ctx, buf) != nil {
			return
		}
	}
	if st.send(ctx, eventBlockStop) != nil {
		return
	}
	buf = append(buf[:0], "event: message_delta\ndata: {\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\""...)
	buf = append(buf, stop...)
	buf = append(buf, `","stop_sequence":null},"usage":{"output_tokens":`...)
	buf = appendInt(buf, out)
	buf = append(buf, "}}\n\n"...)
	if st.send(ctx, buf) != nil {
		return
	}
	_ = st.send(ctx, eventMessageStop)
}

// The fixed events of an Anthropic stream.
var (
	eventBlockStart  = []byte("event: content_block_start\ndata: {\"type\":\"content_block_start\",\"index\":0,\"content_block\":{\"type\":\"text\",\"text\":\"\"}}\n\n")
	eventPing        = []byte("event: ping\ndata: {\"type\": \"ping\"}\n\n")
	eventDeltaHead   = []byte("event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":")
	eventBlockStop   = []byte("event: content_block_stop\ndata: {\"type\":\"content_block_stop\",\"index\":0}\n\n")
	eventMessageStop = []byte("event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n")
)

// appendMessageUsage appends an Anthropic usage object.
func appendMessageUsage(b []byte, in, out int) []byte {
	b = append(b, `{"input_tokens":`...)
	b = appendInt(b, in)
	b = append(b, `,"cache_creation_input_tokens":0,"cache_read_input_tokens":0,"output_tokens":`...)
	b = appendInt(b, out)
	b = append(b, `,"service_tier":"standard"}`...)
	return b
}

// countTokens answers POST /v1/messages/count_tokens with the input_tokens
// that /v1/messages reports for the same body.
func (s *Server) countTokens(w http.ResponseWriter, body []byte) {
	_, p, e := decodeMessages(body)
	if e != nil {
		s.fail(w, anthropic, *e)
		return
	}
	b := append([]byte(`{"input_tokens":`), appendInt(nil, p.inputTokens())...)
	writeJSON(w, http.StatusOK, append(b, '}'))
}
