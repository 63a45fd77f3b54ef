package demoupstream

import (
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"hash/fnv"
	"math"
	"net/http"
	"strconv"
)

// systemFingerprint is the OpenAI system_fingerprint of every answer.
const systemFingerprint = "fp_llmgate_demo"

type streamOptions struct {
	IncludeUsage bool `json:"include_usage"`
}

// chatRequest is the part of POST /v1/chat/completions the demo reads
// besides the prompt.
type chatRequest struct {
	Model        string
	Stream       bool
	IncludeUsage bool // stream_options.include_usage
	Limit        int  // max_completion_tokens, else max_tokens; 0 for none
}

// decodeChat reads a chat completion request body, or says what is wrong.
func decodeChat(body []byte) (chatRequest, prompt, *apiError) {
	d, err := readRequest(body, chatSchema)
	if err != nil {
		e := errInvalidJSON(err)
		return chatRequest{}, prompt{}, &e
	}
	if d.model == "" {
		e := errInvalid("you must provide a model parameter")
		return chatRequest{}, prompt{}, &e
	}
	limit, e := maxTokens(namedLimit{"max_completion_tokens", d.maxCompletionTokens}, namedLimit{"max_tokens", d.maxTokens})
	if e != nil {
		return chatRequest{}, prompt{}, e
	}
	p, err := promptOf(summary{}, d.turns)
	if err != nil {
		e := errInvalid(err.Error())
		return chatRequest{}, prompt{}, &e
	}
	req := chatRequest{Model: d.model, Stream: d.stream, IncludeUsage: d.streamOptions && d.includeUsage, Limit: limit}
	return req, p, nil
}

// maxTokens returns the first limit given, 0 for none, or the error for a
// limit below 1.
func maxTokens(limits ...namedLimit) (int, *apiError) {
	for _, l := range limits {
		if l.v == nil {
			continue
		}
		if *l.v < 1 {
			e := errInvalid(fmt.Sprintf("Invalid '%s': integer below minimum value. Expected a value >= 1, but got %d instead.", l.name, *l.v))
			return 0, &e
		}
		return *l.v, nil
	}
	return 0, nil
}

type namedLimit struct {
	name string
	v    *int
}

// chatCompletions answers POST /v1/chat/completions.
func (s *Server) chatCompletions(w http.ResponseWriter, r *http.Request, body []byte) {
	req, p, e := decodeChat(body)
	if e != nil {
		s.fail(w, openAI, *e)
		return
	}
	rp, cut := newReply(s.who(r), req.Model, p.ask, s.chunks).truncate(req.Limit)
	finish := "stop"
	if cut {
		finish = "length"
	}
	in, out := p.inputTokens(), rp.words()
	id := s.newID("chatcmpl-")
	created := s.now().Unix()

	if !req.Stream {
		b := make([]byte, 0, 768+len(rp.text))
		b = append(b, `{"id":`...)
		b = appendString(b, id)
		b = append(b, `,"object":"chat.completion","created":`...)
		b = strconv.AppendInt(b, created, 10)
		b = append(b, `,"model":`...)
		b = appendString(b, req.Model)
		b = append(b, `,"choices":[{"index":0,"message":{"role":"assistant","content":`...)
		b = appendString(b, rp.text)
		b = append(b, `,"refusal":null,"annotations":[]},"logprobs":null,"finish_reason":"`...)
		b = append(b, finish...)
		b = append(b, `"}],"usage":`...)
		b = appendChatUsage(b, in, out)
		b = append(b, `,"service_tier":"default","system_fingerprint":"`+systemFingerprint+`"}`...)
		s.setCost(w)
		writeJSON(w, http.StatusOK, b)
		return
	}

	ev := oaStream{
		first:  `{"index":0,"delta":{"role":"assistant","content":`,
		rest:   `{"index":0,"delta":{"content":`,
		after:  `},"logprobs":null,"finish_reason":null}`,
		finish: `{"index":0,"delta":{},"logprobs":null,"finish_reason":"` + finish + `"}`,
	}
	ev.head = appendStreamHead(nil, id, "chat.completion.chunk", created, req.Model)
	var usage []byte
	if req.IncludeUsage {
		usage = appendChatUsage(nil, in, out)
	}
	s.streamOpenAI(w, r, ev, rp.deltas(s.chunks), usage)
}

// appendChatUsage appends a chat completion's usage object.
func appendChatUsage(b []byte, in, out int) []byte {
	b = append(b, `{"prompt_tokens":`...)
	b = appendInt(b, in)
	b = append(b, `,"completion_tokens":`...)
	b = appendInt(b, out)
	b = append(b, `,"total_tokens":`...)
	b = appendInt(b, in+out)
	b = append(b, `,"prompt_tokens_details":{"cached_tokens":0,"audio_tokens":0},"completion_tokens_details":{"reasoning_tokens":0,"audio_tokens":0,"accepted_prediction_tokens":0,"rejected_prediction_tokens":0}}`...)
	return b
}

// appendPlainUsage appends the usage object of completions.
func appendPlainUsage(b []byte, in, out int) []byte {
	b = append(b, `{"prompt_tokens":`...)
	b = appendInt(b, in)
	b = append(b, `,"completion_tokens":`...)
	b = appendInt(b, out)
	b = append(b, `,"total_tokens":`...)
	b = appendInt(b, in+out)
	return append(b, '}')
}

// appendStreamHead appends what every chunk of an OpenAI stream starts with,
// up to and including the choices array's '['.
func appendStreamHead(b []byte, id, object string, created int64, model string) []byte {
	b = append(b, `data: {"id":`...)
	b = appendString(b, id)
	b = append(b, `,"object":"`...)
	b = append(b, object...)
	b = append(b, `","created":`...)
	b = strconv.AppendInt(b, created, 10)
	b = append(b, `,"model":`...)
	b = appendString(b, model)
	b = append(b, `,"system_fingerprint":"`+systemFingerprint+`","choices":[`...)
	return b
}

// oaStream is an OpenAI event stream, pre-encoded but for the delta texts.
type oaStream struct {
	head        []byte // "data: {…" up to "choices":[
	first, rest string // the choice up to the text of the first / a later delta
	after       string // the choice after the text
	finish      string // the whole last choice, with finish_reason
}

// streamOpenAI sends one chunk per delta, a finishing chunk, a usage chunk
// with no choices when usage is not nil, and "data: [DONE]".
func (s *Server) streamOpenAI(w http.ResponseWriter, r *http.Request, ev oaStream, deltas []string, usage []byte) {
	tail := "}\n\n"
	if usage != nil {
		tail = `,"usage":null}` + "\n\n"
	}
	ctx := r.Context()
	st := s.openStream(w, r)
	buf := make([]byte, 0, 512)
	for i, d := range deltas {
		if st.pause(ctx, i) != nil {
			return
		}
		buf = append(buf[:0], ev.head...)
		if i == 0 {
			buf = append(buf, ev.first...)
		} else {
			buf = append(buf, ev.rest...)
		}
		buf = appendString(buf, d)
		buf = append(buf, ev.after...)
		buf = append(buf, ']')
		buf = append(buf, tail...)
		if st.send(ctx, buf) != nil {
			return
		}
	}
	buf = append(buf[:0], ev.head...)
	buf = append(buf, ev.finish...)
	buf = append(buf, ']')
	buf = append(buf, tail...)
	if st.send(ctx, buf) != nil {
		return
	}
	if usage != nil {
		buf = append(buf[:0], ev.head...)
		buf = append(buf, `],"usage":`...)
		buf = append(buf, usage...)
		buf = append(buf, "}\n\n"...)
		if st.send(ctx, buf) != nil {
			return
		}
	}
	_ = st.send(ctx, eventDone)
}

// eventDone ends every OpenAI stream.
var eventDone = []byte("data: [DONE]\n\n")

// completionRequest is the part of POST /v1/completions the demo reads.
type completionRequest struct {
	Model         string          `json:"model"`
	Prompt        json.RawMessage `json:"prompt"`
	Stream        bool            `json:"stream"`
	StreamOptions *streamOptions  `json:"stream_options"`
	MaxTokens     *int            `json:"max_tokens"`
}

// completions answers the legacy POST /v1/completions.
func (s *Server) completions(w http.ResponseWriter, r *http.Request, body []byte) {
	var req completionRequest
	if err := json.Unmarshal(body, &req); err != nil {
		s.fail(w, openAI, errInvalidJSON(err))
		return
	}
	if req.Model == "" {
		s.fail(w, openAI, errInvalid("you must provide a model parameter"))
		return
	}
	limit, e := maxTokens(namedLimit{"max_tokens", req.MaxTokens})
	if e != nil {
		s.fail(w, openAI, *e)
		return
	}
	var p prompt
	inputs, err := readInputs(req.Prompt)
	if err != nil {
		s.fail(w, openAI, errInvalid("prompt: "+err.Error()))
		return
	}
	for _, in := range inputs {
		p.bytes += in.bytes
		if in.text != "" {
			p.ask = in.text
		}
	}
	rp, cut := newReply(s.who(r), req.Model, p.ask, s.chunks).truncate(limit)
	finish := "stop"
	if cut {
		finish = "length"
	}
	in, out := p.inputTokens(), rp.words()
	id := s.newID("cmpl-")
	created := s.now().Unix()

	if !req.Stream {
		b := make([]byte, 0, 384+len(rp.text))
		b = append(b, `{"id":`...)
		b = appendString(b, id)
		b = append(b, `,"object":"text_completion","created":`...)
		b = strconv.AppendInt(b, created, 10)
		b = append(b, `,"model":`...)
		b = appendString(b, req.Model)
		b = append(b, `,"choices":[{"text":`...)
		b = appendString(b, rp.text)
		b = append(b, `,"index":0,"logprobs":null,"finish_reason":"`...)
		b = append(b, finish...)
		b = append(b, `"}],"usage":`...)
		b = appendPlainUsage(b, in, out)
		b = append(b, `,"system_fingerprint":"`+systemFingerprint+`"}`...)
		s.setCost(w)
		writeJSON(w, http.StatusOK, b)
		return
	}
	ev := oaStream{
		first:  `{"text":`,
		rest:   `{"text":`,
		after:  `,"index":0,"logprobs":null,"finish_reason":null}`,
		finish: `{"text":"","index":0,"logprobs":null,"finish_reason":"` + finish + `"}`,
	}
	ev.head = appendStreamHead(nil, id, "text_completion", created, req.Model)
	var usage []byte
	if req.StreamOptions != nil && req.StreamOptions.IncludeUsage {
		usage = appendPlainUsage(nil, in, out)
	}
	s.streamOpenAI(w, r, ev, rp.deltas(s.chunks), usage)
}

// input is one prompt of /v1/completions or one input of /v1/embeddings.
type input struct {
	key   string // what the embedding is derived from
	text  string // the prompt text, "" for token arrays
	bytes int    // text bytes, or 4 per token of a token array
}

// readInputs reads a string, an array of strings, an array of tokens or an
// array of token arrays. Missing (nil) is no input.
func readInputs(raw json.RawMessage) ([]input, error) {
	if len(trimSpace(raw)) == 0 {
		return nil, nil
	}
	var v any
	if err := json.Unmarshal(raw, &v); err != nil {
		return nil, fmt.Errorf("decode: %w", err)
	}
	tokens := func(a []any) (input, error) {
		var b []byte
		for _, t := range a {
			f, ok := t.(float64)
			if !ok {
				return input{}, errContentInput
			}
			b = strconv.AppendFloat(append(b, ','), f, 'g', -1, 64)
		}
		return input{key: string(b), bytes: 4 * len(a)}, nil
	}
	switch v := v.(type) {
	case nil:
		return nil, nil
	case string:
		return []input{{key: v, text: v, bytes: len(v)}}, nil
	case []any:
		if len(v) == 0 {
			return nil, errContentInput
		}
		if _, ok := v[0].(float64); ok {
			in, err := tokens(v)
			if err != nil {
				return nil, err
			}
			return []input{in}, nil
		}
		out := make([]input, 0, len(v))
		for _, e := range v {
			switch e := e.(type) {
			case string:
				out = append(out, input{key: e, text: e, bytes: len(e)})
			case []any:
				in, err := tokens(e)
				if err != nil {
					return nil, err
				}
				out = append(out, in)
			default:
				return nil, errContentInput
			}
		}
		return out, nil
	default:
		return nil, errContentInput
	}
}

var errContentInput = errors.New("must be a string, an array of strings, an array of tokens or an array of token arrays")

// embeddingRequest is the part of POST /v1/embeddings the demo reads.
type embeddingRequest struct {
	Model          string          `json:"model"`
	Input          json.RawMessage `json:"input"`
	EncodingFormat string          `json:"encoding_format"`
	Dimensions     *int            `json:"dimensions"`
}

const (
	defaultDimensions = 8
	maxDimensions     = 3072
)

// embeddings answers POST /v1/embeddings with a unit vector per input,
// derived from the model and the input. encoding_format "base64" (what the
// openai SDKs ask for by default) gives little-endian float32s in base64.
func (s *Server) embeddings(w http.ResponseWriter, body []byte) {
	var req embeddingRequest
	if err := json.Unmarshal(body, &req); err != nil {
		s.fail(w, openAI, errInvalidJSON(err))
		return
	}
	if req.Model == "" {
		s.fail(w, openAI, errInvalid("you must provide a model parameter"))
		return
	}
	if req.EncodingFormat != "" && req.EncodingFormat != "float" && req.EncodingFormat != "base64" {
		s.fail(w, openAI, errInvalid("Invalid 'encoding_format': expected 'float' or 'base64', got "+strconv.Quote(req.EncodingFormat)+"."))
		return
	}
	dims := defaultDimensions
	if req.Dimensions != nil {
		if *req.Dimensions < 1 || *req.Dimensions > maxDimensions {
			s.fail(w, openAI, errInvalid(fmt.Sprintf("Invalid 'dimensions': expected a value from 1 to %d, got %d.", maxDimensions, *req.Dimensions)))
			return
		}
		dims = *req.Dimensions
	}
	inputs, err := readInputs(req.Input)
	if err == nil && len(inputs) == 0 {
		err = errContentInput
	}
	if err != nil {
		s.fail(w, openAI, errInvalid("input: "+err.Error()))
		return
	}
	tokens := 0
	vec := make([]float32, dims)
	b := make([]byte, 0, 128+len(inputs)*(64+dims*12))
	b = append(b, `{"object":"list","data":[`...)
	for i, in := range inputs {
		tokens += max(1, in.bytes/4)
		embed(vec, req.Model, in.key)
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, `{"object":"embedding","index":`...)
		b = appendInt(b, i)
		b = append(b, `,"embedding":`...)
		if req.EncodingFormat == "base64" {
			raw := make([]byte, 4*dims)
			for j, f := range vec {
				binary.LittleEndian.PutUint32(raw[4*j:], math.Float32bits(f))
			}
			b = append(b, '"')
			b = base64.StdEncoding.AppendEncode(b, raw)
			b = append(b, '"')
		} else {
			b = append(b, '[')
			for j, f := range vec {
				if j > 0 {
					b = append(b, ',')
				}
				b = strconv.AppendFloat(b, float64(f), 'g', -1, 32)
			}
			b = append(b, ']')
		}
		b = append(b, '}')
	}
	b = append(b, `],"model":`...)
	b = appendString(b, req.Model)
	b = append(b, `,"usage":{"prompt_tokens":`...)
	b = appendInt(b, tokens)
	b = append(b, `,"total_tokens":`...)
	b = appendInt(b, tokens)
	b = append(b, `}}`...)
	s.setCost(w)
	writeJSON(w, http.StatusOK, b)
}

// embed fills vec with a unit vector derived from model and key.
func embed(vec []float32, model, key string) {
	h := fnv.New64a()
	h.Write([]byte(model))
	h.Write([]byte{0})
	h.Write([]byte(key))
	x := h.Sum64()
	var norm float64
	f := make([]float64, len(vec))
	for i := range f {
		x += 0x9e3779b97f4a7c15 // splitmix64
		z := x
		z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9
		z = (z ^ (z >> 27)) * 0x94d049bb133111eb
		z ^= z >> 31
		f[i] = float64(z>>11)/(1<<53)*2 - 1
		norm += f[i] * f[i]
	}
	norm = math.Sqrt(norm)
	if norm == 0 {
		norm = 1
	}
	for i := range vec {
		vec[i] = float32(f[i] / norm)
	}
}
