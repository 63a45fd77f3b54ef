package gateway

import (
	"bytes"
	"compress/gzip"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"strings"
	"time"

	"github.com/gin-gonic/gin"
	"google.golang.org/protobuf/encoding/protowire"
)

// The OTLP/HTTP paths Claude Code posts its telemetry to. They are
// answered by the gateway itself, never by an LLM upstream, though they
// are under /v1/.
var otlpPaths = map[string]bool{"/v1/metrics": true, "/v1/logs": true, "/v1/traces": true}

// otlpEmailKey is the resource attribute that carries the person's email.
const otlpEmailKey = "user.email"

// otlpMaxBody bounds a telemetry batch (after decompression).
const otlpMaxBody = 16 << 20

func newOTLPClient() *http.Client {
	t := http.DefaultTransport.(*http.Transport).Clone()
	t.Proxy = nil
	t.IdleConnTimeout = 30 * time.Second
	return &http.Client{Transport: t, Timeout: 30 * time.Second,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
}

// handleOTLP takes an OTLP/HTTP export (protobuf or JSON) from a signed-in
// client and forwards it to LLMGATE_OTLP_ENDPOINT with the person's email
// stamped on every resource, replacing any the client sent; with no
// endpoint it is accepted and dropped (a 404 would make Claude Code log
// an error at every flush).
func (s *Server) handleOTLP(c *gin.Context) {
	raw := bearerToken(c.Request)
	if raw == "" {
		s.fail(c, refuse(http.StatusUnauthorized, "missing_token", "no credential: send the token as Authorization: Bearer"))
		return
	}
	id, err := s.identify(c.Request.Context(), raw, true)
	if err != nil {
		s.fail(c, s.identifyError(err))
		return
	}
	mt, _, _ := mime.ParseMediaType(c.GetHeader("Content-Type"))
	isJSON := mt == "application/json"
	if !isJSON && mt != "application/x-protobuf" {
		s.fail(c, refuse(http.StatusUnsupportedMediaType, "unsupported_media_type",
			"OTLP/HTTP bodies are application/x-protobuf or application/json, not %q", mt))
		return
	}
	body, err := readOTLPBody(c.Request)
	if err != nil {
		s.fail(c, refuse(http.StatusBadRequest, "invalid_body", "%v", err))
		return
	}
	if s.cfg.OTLPEndpoint == nil {
		otlpOK(c, isJSON)
		return
	}
	if isJSON {
		body, err = stampOTLPJSON(body, id.claims.Email)
	} else {
		body, err = stampOTLPProto(body, id.claims.Email)
	}
	if err != nil {
		s.fail(c, refuse(http.StatusBadRequest, "invalid_body", "not an OTLP export request: %v", err))
		return
	}
	target := *s.cfg.OTLPEndpoint
	target.Path = strings.TrimSuffix(target.Path, "/") + c.Request.URL.Path
	target.RawPath = ""
	req, err := http.NewRequestWithContext(c.Request.Context(), http.MethodPost, target.String(), bytes.NewReader(body))
	if err != nil {
		s.fail(c, internal("otlp request", err))
		return
	}
	req.Header.Set("Content-Type", mt)
	resp, err := s.otlp.Do(req)
	if err != nil {
		s.log.Warn("otlp collector failed", "path", c.Request.URL.Path, "err", err)
		s.fail(c, refuse(http.StatusBadGateway, "collector_unreachable", "the telemetry collector could not be reached"))
		return
	}
	defer resp.Body.Close()
	out, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	ct := resp.Header.Get("Content-Type")
	if ct == "" {
		ct = mt
	}
	c.Data(resp.StatusCode, ct, out)
}

// otlpOK is the answer to an export that was dropped: a full success.
func otlpOK(c *gin.Context, isJSON bool) {
	if isJSON {
		c.Data(http.StatusOK, "application/json", []byte("{}"))
		return
	}
	c.Data(http.StatusOK, "application/x-protobuf", nil)
}

// readOTLPBody reads the export, inflating a gzip body.
func readOTLPBody(r *http.Request) ([]byte, error) {
	var src io.Reader = r.Body
	switch strings.ToLower(strings.TrimSpace(r.Header.Get("Content-Encoding"))) {
	case "", "identity":
	case "gzip":
		zr, err := gzip.NewReader(r.Body)
		if err != nil {
			return nil, fmt.Errorf("the gzip body cannot be read: %w", err)
		}
		defer zr.Close()
		src = zr
	default:
		return nil, errors.New("Content-Encoding must be gzip or none")
	}
	b, err := io.ReadAll(io.LimitReader(src, otlpMaxBody+1))
	if err != nil {
		return nil, fmt.Errorf("the body could not be read: %w", err)
	}
	if len(b) > otlpMaxBody {
		return nil, fmt.Errorf("the telemetry batch is larger than %d MiB", otlpMaxBody>>20)
	}
	return b, nil
}

// stampOTLPProto sets the user.email resource attribute of every
// ResourceMetrics / ResourceLogs / ResourceSpans of an OTLP export request.
// The three messages share their layout (field 1: the repeated resource
// entries; in each, field 1: the Resource; in it, field 1: the repeated
// KeyValue attributes), so one walk of the wire format serves all three
// and keeps every other field, known or not, byte for byte.
func stampOTLPProto(b []byte, email string) ([]byte, error) {
	out := make([]byte, 0, len(b)+len(b)/8+64)
	err := eachField(b, func(num protowire.Number, typ protowire.Type, field, value []byte) error {
		if num != 1 || typ != protowire.BytesType {
			out = append(out, field...)
			return nil
		}
		entry, err := stampResourceEntry(value, email)
		if err != nil {
			return err
		}
		out = protowire.AppendTag(out, 1, protowire.BytesType)
		out = protowire.AppendBytes(out, entry)
		return nil
	})
	return out, err
}

// stampResourceEntry rewrites one ResourceX message.
func stampResourceEntry(b []byte, email string) ([]byte, error) {
	out := make([]byte, 0, len(b)+64)
	stamped := false
	err := eachField(b, func(num protowire.Number, typ protowire.Type, field, value []byte) error {
		if num != 1 || typ != protowire.BytesType {
			out = append(out, field...)
			return nil
		}
		res, err := stampResource(value, email, !stamped)
		if err != nil {
			return err
		}
		stamped = true
		out = protowire.AppendTag(out, 1, protowire.BytesType)
		out = protowire.AppendBytes(out, res)
		return nil
	})
	if err != nil {
		return nil, err
	}
	if !stamped {
		res, _ := stampResource(nil, email, true)
		pre := protowire.AppendTag(nil, 1, protowire.BytesType)
		pre = protowire.AppendBytes(pre, res)
		out = append(pre, out...)
	}
	return out, nil
}

// stampResource drops every user.email attribute of a Resource and, when
// add is set, appends ours.
func stampResource(b []byte, email string, add bool) ([]byte, error) {
	out := make([]byte, 0, len(b)+64)
	err := eachField(b, func(num protowire.Number, typ protowire.Type, field, value []byte) error {
		if num == 1 && typ == protowire.BytesType {
			key, err := keyValueKey(value)
			if err != nil {
				return err
			}
			if key == otlpEmailKey {
				return nil
			}
		}
		out = append(out, field...)
		return nil
	})
	if err != nil {
		return nil, err
	}
	if add {
		var anyValue []byte
		anyValue = protowire.AppendTag(anyValue, 1, protowire.BytesType) // string_value
		anyValue = protowire.AppendString(anyValue, email)
		var kv []byte
		kv = protowire.AppendTag(kv, 1, protowire.BytesType) // key
		kv = protowire.AppendString(kv, otlpEmailKey)
		kv = protowire.AppendTag(kv, 2, protowire.BytesType) // value
		kv = protowire.AppendBytes(kv, anyValue)
		out = protowire.AppendTag(out, 1, protowire.BytesType)
		out = protowire.AppendBytes(out, kv)
	}
	return out, nil
}

// keyValueKey is the key of an encoded KeyValue.
func keyValueKey(b []byte) (string, error) {
	var key string
	err := eachField(b, func(num protowire.Number, typ protowire.Type, field, value []byte) error {
		if num == 1 && typ == protowire.BytesType {
			key = string(value)
		}
		return nil
	})
	return key, err
}

// eachField calls fn for every field of the encoded message b with its
// whole encoding (tag included) and, for length-delimited fields, its
// content.
func eachField(b []byte, fn func(num protowire.Number, typ protowire.Type, field, value []byte) error) error {
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return protowire.ParseError(n)
		}
		m := protowire.ConsumeFieldValue(num, typ, b[n:])
		if m < 0 {
			return protowire.ParseError(m)
		}
		var value []byte
		if typ == protowire.BytesType {
			v, k := protowire.ConsumeBytes(b[n:])
			if k < 0 {
				return protowire.ParseError(k)
			}
			value = v
		}
		if err := fn(num, typ, b[:n+m], value); err != nil {
			return err
		}
		b = b[n+m:]
	}
	return nil
}

// otlpJSONLists are the top-level lists of the three OTLP/JSON export
// requests (lowerCamelCase per the spec; snake_case as some senders write).
var otlpJSONLists = []string{"resourceMetrics", "resourceLogs", "resourceSpans", "resource_metrics", "resource_logs", "resource_spans"}

// stampOTLPJSON is stampOTLPProto for the JSON encoding. Fields it does
// not touch pass through as they came.
func stampOTLPJSON(b []byte, email string) ([]byte, error) {
	var top map[string]json.RawMessage
	if err := json.Unmarshal(b, &top); err != nil {
		return nil, err
	}
	ours, _ := json.Marshal(map[string]any{"key": otlpEmailKey, "value": map[string]string{"stringValue": email}})
	for _, name := range otlpJSONLists {
		list, ok := top[name]
		if !ok {
			continue
		}
		var entries []map[string]json.RawMessage
		if err := json.Unmarshal(list, &entries); err != nil {
			return nil, fmt.Errorf("%s: %w", name, err)
		}
		for _, e := range entries {
			res := map[string]json.RawMessage{}
			if r, ok := e["resource"]; ok && string(r) != "null" {
				if err := json.Unmarshal(r, &res); err != nil {
					return nil, fmt.Errorf("%s resource: %w", name, err)
				}
			}
			var attrs []json.RawMessage
			if a, ok := res["attributes"]; ok && string(a) != "null" {
				if err := json.Unmarshal(a, &attrs); err != nil {
					return nil, fmt.Errorf("%s resource attributes: %w", name, err)
				}
			}
			kept := attrs[:0]
			for _, a := range attrs {
				var kv struct {
					Key string `json:"key"`
				}
				if json.Unmarshal(a, &kv) == nil && kv.Key == otlpEmailKey {
					continue
				}
				kept = append(kept, a)
			}
			res["attributes"], _ = json.Marshal(append(kept, ours))
			e["resource"], _ = json.Marshal(res)
		}
		top[name], _ = json.Marshal(entries)
	}
	return json.Marshal(top)
}
