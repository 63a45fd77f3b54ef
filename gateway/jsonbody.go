package gateway

import (
	"bytes"
	"encoding/json"
	"strconv"
)

// topLevelString returns the string value of key in the top-level JSON
// object body, without decoding the rest: agent requests are 100–300 KB of
// JSON and the proxy only needs "model". It scans until it finds the key,
// so the usual body, with "model" near the front, costs a few bytes.
func topLevelString(body []byte, key string) (string, bool) {
	i := skipSpace(body, 0)
	if i >= len(body) || body[i] != '{' {
		return "", false
	}
	i++
	for {
		i = skipSpace(body, i)
		if i >= len(body) || body[i] != '"' {
			return "", false
		}
		kEnd := stringEnd(body, i)
		if kEnd < 0 {
			return "", false
		}
		k := body[i+1 : kEnd-1]
		i = skipSpace(body, kEnd)
		if i >= len(body) || body[i] != ':' {
			return "", false
		}
		i = skipSpace(body, i+1)
		if string(k) == key {
			if i >= len(body) || body[i] != '"' {
				return "", false
			}
			end := stringEnd(body, i)
			if end < 0 {
				return "", false
			}
			raw := body[i:end]
			if bytes.IndexByte(raw, '\\') < 0 {
				return string(raw[1 : len(raw)-1]), true
			}
			s, err := strconv.Unquote(string(raw))
			if err != nil {
				var out string
				if json.Unmarshal(raw, &out) != nil {
					return "", false
				}
				return out, true
			}
			return s, true
		}
		i = valueEnd(body, i)
		if i < 0 {
			return "", false
		}
		i = skipSpace(body, i)
		if i >= len(body) {
			return "", false
		}
		if body[i] == '}' {
			return "", false
		}
		if body[i] != ',' {
			return "", false
		}
		i++
	}
}

func skipSpace(b []byte, i int) int {
	for i < len(b) && (b[i] == ' ' || b[i] == '\n' || b[i] == '\r' || b[i] == '\t') {
		i++
	}
	return i
}

// stringEnd returns the index just past the JSON string starting at b[i]
// (which is '"'), or -1.
func stringEnd(b []byte, i int) int {
	for j := i + 1; j < len(b); j++ {
		switch b[j] {
		case '\\':
			j++
		case '"':
			return j + 1
		}
	}
	return -1
}

// valueEnd returns the index just past the JSON value starting at b[i], or
// -1. It tracks nesting and strings only; the upstream validates the rest.
func valueEnd(b []byte, i int) int {
	if i >= len(b) {
		return -1
	}
	switch b[i] {
	case '"':
		return stringEnd(b, i)
	case '{', '[':
		depth := 0
		for j := i; j < len(b); j++ {
			switch b[j] {
			case '"':
				e := stringEnd(b, j)
				if e < 0 {
					return -1
				}
				j = e - 1
			case '{', '[':
				depth++
			case '}', ']':
				depth--
				if depth == 0 {
					return j + 1
				}
			}
		}
		return -1
	default: // number, true, false, null
		j := i
		for j < len(b) && b[j] != ',' && b[j] != '}' && b[j] != ']' && b[j] != ' ' && b[j] != '\n' && b[j] != '\r' && b[j] != '\t' {
			j++
		}
		if j == i {
			return -1
		}
		return j
	}
}

// injectUser sets the caller's email where the upstream reads the end
// user: OpenAI "user", Anthropic "metadata.user_id"; for OpenAI streams it
// also asks for the final usage chunk so metering sees the counts. Bodies
// that are not a JSON object are returned unchanged.
func injectUser(body []byte, email string, anthropic bool) []byte {
	var obj map[string]json.RawMessage
	if err := json.Unmarshal(body, &obj); err != nil {
		return body
	}
	emailJSON, _ := json.Marshal(email)
	if anthropic {
		meta := map[string]json.RawMessage{}
		if m, ok := obj["metadata"]; ok {
			if err := json.Unmarshal(m, &meta); err != nil {
				meta = map[string]json.RawMessage{}
			}
		}
		meta["user_id"] = emailJSON
		obj["metadata"], _ = json.Marshal(meta)
	} else {
		obj["user"] = emailJSON
		if s, ok := obj["stream"]; ok && string(bytes.TrimSpace(s)) == "true" {
			opts := map[string]json.RawMessage{}
			if o, ok := obj["stream_options"]; ok {
				if err := json.Unmarshal(o, &opts); err != nil {
					opts = map[string]json.RawMessage{}
				}
			}
			if _, set := opts["include_usage"]; !set {
				opts["include_usage"] = json.RawMessage("true")
				obj["stream_options"], _ = json.Marshal(opts)
			}
		}
	}
	out, err := json.Marshal(obj)
	if err != nil {
		return body
	}
	return out
}
