package gateway

import (
	"bytes"
	"compress/gzip"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"sync"
	"testing"

	collogs "go.opentelemetry.io/proto/otlp/collector/logs/v1"
	colmetrics "go.opentelemetry.io/proto/otlp/collector/metrics/v1"
	coltrace "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	commonpb "go.opentelemetry.io/proto/otlp/common/v1"
	logspb "go.opentelemetry.io/proto/otlp/logs/v1"
	metricspb "go.opentelemetry.io/proto/otlp/metrics/v1"
	resourcepb "go.opentelemetry.io/proto/otlp/resource/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	"github.com/llmgate/llmgate/internal/redistest"
	"github.com/llmgate/llmgate/tokens"
)

// collector is a loopback OTLP/HTTP collector that keeps what it gets.
type collector struct {
	srv *httptest.Server
	mu  sync.Mutex
	got []collected
}

type collected struct {
	path, contentType, encoding string
	body                        []byte
}

func newCollector(tb testing.TB) *collector {
	c := &collector{}
	c.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		c.mu.Lock()
		c.got = append(c.got, collected{r.URL.Path, r.Header.Get("Content-Type"), r.Header.Get("Content-Encoding"), b})
		c.mu.Unlock()
		if r.Header.Get("Authorization") != "" {
			http.Error(w, "the caller's credential reached the collector", 400)
			return
		}
		w.Header().Set("Content-Type", r.Header.Get("Content-Type"))
		if r.Header.Get("Content-Type") == "application/json" {
			io.WriteString(w, `{"partialSuccess":{}}`)
		}
	}))
	tb.Cleanup(c.srv.Close)
	return c
}

func (c *collector) last(tb testing.TB) collected {
	tb.Helper()
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.got) == 0 {
		tb.Fatal("the collector got nothing")
	}
	return c.got[len(c.got)-1]
}

func strAttr(k, v string) *commonpb.KeyValue {
	return &commonpb.KeyValue{Key: k, Value: &commonpb.AnyValue{Value: &commonpb.AnyValue_StringValue{StringValue: v}}}
}

// emailsOf returns the user.email values and the other attribute keys of a
// resource.
func emailsOf(r *resourcepb.Resource) (emails, others []string) {
	for _, kv := range r.GetAttributes() {
		if kv.Key == otlpEmailKey {
			emails = append(emails, kv.GetValue().GetStringValue())
		} else {
			others = append(others, kv.Key)
		}
	}
	return emails, others
}

// TestOTLPForward: telemetry posted with a token reaches the collector,
// in protobuf and JSON, gzip or not, with the person's email stamped on
// every resource — replacing one the client claimed — and everything else
// intact; it never goes to the LLM upstream.
func TestOTLPForward(t *testing.T) {
	col := newCollector(t)
	u, _ := url.Parse(col.srv.URL + "/base/")
	h := newHarness(t, redistest.Mini(t), func(s *setup) { s.otlp = u })
	tok := h.mint(t, tokens.IssueRequest{})

	metrics := &colmetrics.ExportMetricsServiceRequest{ResourceMetrics: []*metricspb.ResourceMetrics{
		{
			Resource: &resourcepb.Resource{Attributes: []*commonpb.KeyValue{strAttr("service.name", "claude-code"), strAttr(otlpEmailKey, "mallory@evil.example")}},
			ScopeMetrics: []*metricspb.ScopeMetrics{{Metrics: []*metricspb.Metric{{Name: "claude_code.token.usage", Data: &metricspb.Metric_Sum{Sum: &metricspb.Sum{
				DataPoints: []*metricspb.NumberDataPoint{{Value: &metricspb.NumberDataPoint_AsInt{AsInt: 42}}}}}}}}},
			SchemaUrl: "https://opentelemetry.io/schemas/1.26.0",
		},
		{ScopeMetrics: []*metricspb.ScopeMetrics{{}}}, // no resource at all
	}}
	logs := &collogs.ExportLogsServiceRequest{ResourceLogs: []*logspb.ResourceLogs{{
		Resource:  &resourcepb.Resource{Attributes: []*commonpb.KeyValue{strAttr("service.name", "claude-code")}, DroppedAttributesCount: 3},
		ScopeLogs: []*logspb.ScopeLogs{{LogRecords: []*logspb.LogRecord{{Body: &commonpb.AnyValue{Value: &commonpb.AnyValue_StringValue{StringValue: "claude_code.api_request"}}}}}},
	}}}
	traces := &coltrace.ExportTraceServiceRequest{ResourceSpans: []*tracepb.ResourceSpans{{
		ScopeSpans: []*tracepb.ScopeSpans{{Spans: []*tracepb.Span{{Name: "interaction", TraceId: bytes.Repeat([]byte{1}, 16), SpanId: bytes.Repeat([]byte{2}, 8)}}}},
	}}}

	type signal struct {
		path  string
		msg   proto.Message
		fresh func() proto.Message
		check func(t *testing.T, m proto.Message)
	}
	checkResources := func(t *testing.T, rs []*resourcepb.Resource, wantOthers [][]string) {
		t.Helper()
		if len(rs) != len(wantOthers) {
			t.Fatalf("collector got %d resources, want %d", len(rs), len(wantOthers))
		}
		for i, r := range rs {
			emails, others := emailsOf(r)
			if len(emails) != 1 || emails[0] != "alice@example.com" {
				t.Errorf("resource %d: user.email %v, want exactly [alice@example.com]", i, emails)
			}
			if len(others) != len(wantOthers[i]) || len(others) > 0 && others[0] != wantOthers[i][0] {
				t.Errorf("resource %d: other attributes %v, want %v", i, others, wantOthers[i])
			}
		}
	}
	signals := []signal{
		{"/v1/metrics", metrics, func() proto.Message { return &colmetrics.ExportMetricsServiceRequest{} }, func(t *testing.T, m proto.Message) {
			got := m.(*colmetrics.ExportMetricsServiceRequest)
			var rs []*resourcepb.Resource
			for _, r := range got.ResourceMetrics {
				rs = append(rs, r.Resource)
			}
			checkResources(t, rs, [][]string{{"service.name"}, nil})
			if got.ResourceMetrics[0].SchemaUrl == "" || got.ResourceMetrics[0].ScopeMetrics[0].Metrics[0].GetSum().DataPoints[0].GetAsInt() != 42 {
				t.Errorf("metric data changed: %v", got)
			}
		}},
		{"/v1/logs", logs, func() proto.Message { return &collogs.ExportLogsServiceRequest{} }, func(t *testing.T, m proto.Message) {
			got := m.(*collogs.ExportLogsServiceRequest)
			checkResources(t, []*resourcepb.Resource{got.ResourceLogs[0].Resource}, [][]string{{"service.name"}})
			if got.ResourceLogs[0].Resource.DroppedAttributesCount != 3 || got.ResourceLogs[0].ScopeLogs[0].LogRecords[0].Body.GetStringValue() != "claude_code.api_request" {
				t.Errorf("log data changed: %v", got)
			}
		}},
		{"/v1/traces", traces, func() proto.Message { return &coltrace.ExportTraceServiceRequest{} }, func(t *testing.T, m proto.Message) {
			got := m.(*coltrace.ExportTraceServiceRequest)
			checkResources(t, []*resourcepb.Resource{got.ResourceSpans[0].Resource}, [][]string{nil})
			if got.ResourceSpans[0].ScopeSpans[0].Spans[0].Name != "interaction" {
				t.Errorf("span data changed: %v", got)
			}
		}},
	}
	h.upstream.Reset()
	for _, sig := range signals {
		for _, enc := range []string{"protobuf", "json", "protobuf+gzip"} {
			t.Run(sig.path+" "+enc, func(t *testing.T) {
				var body []byte
				ct := "application/x-protobuf"
				hdr := bearer(tok)
				switch enc {
				case "json":
					ct = "application/json"
					body, _ = protojson.Marshal(sig.msg)
				default:
					body, _ = proto.Marshal(sig.msg)
				}
				if enc == "protobuf+gzip" {
					var zb bytes.Buffer
					zw := gzip.NewWriter(&zb)
					zw.Write(body)
					zw.Close()
					body = zb.Bytes()
					hdr.Set("Content-Encoding", "gzip")
				}
				hdr.Set("Content-Type", ct)
				resp, rbody := h.api(t, "POST", sig.path, string(body), hdr)
				if resp.StatusCode != 200 {
					t.Fatalf("POST %s (%s): %d %s, want 200", sig.path, enc, resp.StatusCode, rbody)
				}
				got := col.last(t)
				if got.path != "/base"+sig.path || got.contentType != ct || got.encoding != "" {
					t.Errorf("collector got %s %s %q, want /base%s %s uncompressed", got.path, got.contentType, got.encoding, sig.path, ct)
				}
				m := sig.fresh()
				var err error
				if ct == "application/json" {
					err = protojson.Unmarshal(got.body, m)
				} else {
					err = proto.Unmarshal(got.body, m)
				}
				if err != nil {
					t.Fatalf("the collector cannot decode what it got: %v\n%q", err, got.body)
				}
				sig.check(t, m)
			})
		}
	}
	if n := len(h.upstream.Requests()); n != 0 {
		t.Errorf("telemetry reached the LLM upstream %d times", n)
	}

	for name, hdr := range map[string]http.Header{"no token": {}, "bad token": bearer("nope")} {
		hdr.Set("Content-Type", "application/x-protobuf")
		if resp, body := h.api(t, "POST", "/v1/metrics", "", hdr); resp.StatusCode != 401 {
			t.Errorf("%s: %d %s, want 401", name, resp.StatusCode, body)
		}
	}
	hdr := bearer(tok)
	hdr.Set("Content-Type", "application/x-protobuf")
	if resp, body := h.api(t, "POST", "/v1/metrics", "\xff\xff\xff", hdr); resp.StatusCode != 400 {
		t.Errorf("garbage protobuf: %d %s, want 400", resp.StatusCode, body)
	}
}

// TestOTLPNoCollector: without LLMGATE_OTLP_ENDPOINT telemetry is
// accepted and dropped with 200 (a 404 makes Claude Code log an error at
// every flush), and still never reaches the LLM upstream.
func TestOTLPNoCollector(t *testing.T) {
	h := newHarness(t, redistest.Mini(t))
	tok := h.mint(t, tokens.IssueRequest{})
	h.upstream.Reset()
	for _, path := range []string{"/v1/metrics", "/v1/logs", "/v1/traces"} {
		for _, ct := range []string{"application/x-protobuf", "application/json"} {
			hdr := bearer(tok)
			hdr.Set("Content-Type", ct)
			if resp, body := h.api(t, "POST", path, "{}", hdr); resp.StatusCode != 200 {
				t.Errorf("POST %s %s: %d %s, want 200", path, ct, resp.StatusCode, body)
			}
		}
	}
	if n := len(h.upstream.Requests()); n != 0 {
		t.Errorf("telemetry reached the LLM upstream %d times", n)
	}
}
