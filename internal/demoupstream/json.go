package demoupstream

import (
	"net/http"
	"strconv"
	"strings"
	"unicode/utf8"
)

// Answers are built by appending JSON text to byte slices, not by
// encoding/json: this server is the baseline of proxy benchmarks, so it
// should cost little next to the proxy it measures.

const hexDigits = "0123456789abcdef"

// appendString appends s as a JSON string. Invalid UTF-8 becomes U+FFFD, as
// with encoding/json; HTML characters are left alone.
func appendString(dst []byte, s string) []byte {
	dst = append(dst, '"')
	start := 0
	for i := 0; i < len(s); {
		b := s[i]
		if b < utf8.RuneSelf {
			if b >= 0x20 && b != '"' && b != '\\' {
				i++
				continue
			}
			dst = append(dst, s[start:i]...)
			switch b {
			case '"', '\\':
				dst = append(dst, '\\', b)
			case '\n':
				dst = append(dst, '\\', 'n')
			case '\r':
				dst = append(dst, '\\', 'r')
			case '\t':
				dst = append(dst, '\\', 't')
			default:
				dst = append(dst, '\\', 'u', '0', '0', hexDigits[b>>4], hexDigits[b&0xf])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			dst = append(dst, s[start:i]...)
			dst = append(dst, `\ufffd`...)
			i += size
			start = i
			continue
		}
		if r == '\u2028' || r == '\u2029' { // valid JSON, but not JavaScript
			dst = append(dst, s[start:i]...)
			dst = append(dst, '\\', 'u', '2', '0', '2', hexDigits[r&0xf])
			i += size
			start = i
			continue
		}
		i += size
	}
	dst = append(dst, s[start:]...)
	return append(dst, '"')
}

// appendInt appends n in decimal.
func appendInt(dst []byte, n int) []byte { return strconv.AppendInt(dst, int64(n), 10) }

// modelCreated is the creation time every listed model claims.
const (
	modelCreated   = 1735689600 // 2025-01-01T00:00:00Z
	modelCreatedAt = "2025-01-01T00:00:00Z"
)

// ownedBy guesses an OpenAI "owned_by" for a model id.
func ownedBy(id string) string {
	switch {
	case strings.HasPrefix(id, "claude"):
		return "anthropic"
	case strings.HasPrefix(id, "gpt-"), strings.HasPrefix(id, "text-embedding-"),
		strings.HasPrefix(id, "o1"), strings.HasPrefix(id, "o3"), strings.HasPrefix(id, "o4"):
		return "openai"
	default:
		return "llmgate-demo"
	}
}

// displayName turns claude-sonnet-4-6 into "Claude Sonnet 4.6"; other ids
// are their own display name.
func displayName(id string) string {
	if !strings.HasPrefix(id, "claude-") {
		return id
	}
	var words, version []string
	for _, p := range strings.Split(id, "-") {
		if p == "" {
			continue
		}
		if strings.Trim(p, "0123456789") == "" && len(p) < 4 { // not a date stamp
			version = append(version, p)
			continue
		}
		if len(p) >= 8 && strings.Trim(p, "0123456789") == "" {
			continue
		}
		words = append(words, strings.ToUpper(p[:1])+p[1:])
	}
	if len(version) > 0 {
		words = append(words, strings.Join(version, "."))
	}
	return strings.Join(words, " ")
}

func appendModelOpenAI(b []byte, id string) []byte {
	b = append(b, `{"id":`...)
	b = appendString(b, id)
	b = append(b, `,"object":"model","created":`...)
	b = appendInt(b, modelCreated)
	b = append(b, `,"owned_by":`...)
	b = appendString(b, ownedBy(id))
	return append(b, '}')
}

func appendModelAnthropic(b []byte, id string) []byte {
	b = append(b, `{"type":"model","id":`...)
	b = appendString(b, id)
	b = append(b, `,"display_name":`...)
	b = appendString(b, displayName(id))
	b = append(b, `,"created_at":"`+modelCreatedAt+`"}`...)
	return b
}

// appendModelListOpenAI appends {"object":"list","data":[model…]}.
func appendModelListOpenAI(b []byte, ids []string) []byte {
	b = append(b, `{"object":"list","data":[`...)
	for i, id := range ids {
		if i > 0 {
			b = append(b, ',')
		}
		b = appendModelOpenAI(b, id)
	}
	return append(b, "]}"...)
}

// appendModelListAnthropic appends Anthropic's page of models:
// {"data":[…],"has_more":false,"first_id","last_id"}.
func appendModelListAnthropic(b []byte, ids []string) []byte {
	b = append(b, `{"data":[`...)
	for i, id := range ids {
		if i > 0 {
			b = append(b, ',')
		}
		b = appendModelAnthropic(b, id)
	}
	b = append(b, `],"has_more":false,"first_id":`...)
	if len(ids) == 0 {
		return append(b, `null,"last_id":null}`...)
	}
	b = appendString(b, ids[0])
	b = append(b, `,"last_id":`...)
	b = appendString(b, ids[len(ids)-1])
	return append(b, '}')
}

// model answers GET /v1/models/{id} in the family's shape.
func (s *Server) model(w http.ResponseWriter, fam family, id string) {
	if !s.known[id] {
		e := apiError{status: http.StatusNotFound, oaType: "invalid_request_error", oaCode: "model_not_found", antType: "not_found_error",
			msg: "The model `" + id + "` does not exist or you do not have access to it."}
		if fam == anthropic {
			e.msg = "model: " + id
		}
		s.fail(w, fam, e)
		return
	}
	if fam == anthropic {
		writeJSON(w, http.StatusOK, appendModelAnthropic(nil, id))
		return
	}
	writeJSON(w, http.StatusOK, appendModelOpenAI(nil, id))
}
