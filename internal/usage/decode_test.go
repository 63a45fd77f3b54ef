package usage

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// decodeSeeds are documents that the hand-written reader must read as
// encoding/json does: usage objects, model strings and stream events,
// valid and not.
var decodeSeeds = []string{
	`{"prompt_tokens":12,"completion_tokens":3,"total_tokens":15,"prompt_tokens_details":{"cached_tokens":8}}`,
	`{"input_tokens":1,"cache_creation_input_tokens":0,"cache_read_input_tokens":0,"output_tokens":25,"service_tier":"standard"}`,
	`{"PROMPT_TOKENS":1,"Output_Tokens":2}`,
	"{\"prompt_to\u212aens\":3}", // the Kelvin sign folds to k
	`{"prompt_tokens":1,"prompt_tokens":null,"prompt_tokens":"7"}`,
	`{"prompt_tokens":1,"prompt_tokens":2.5e1}`,
	`{"prompt_tokens":-0,"completion_tokens":1E+2,"total_tokens":0.5}`,
	`{"prompt_tokens":01}`,
	`{"prompt_tokens":1.}`,
	`{"prompt_tokens":.5}`,
	`{"prompt_tokens":+1}`,
	`{"prompt_tokens":1,}`,
	`{"prompt_tokens" 1}`,
	`{"\u0070rompt_tokens":4}`,
	`{"a":"\u00e9\ud83d\ude00\/\b\f\n\r\t\"\\","prompt_tokens":5}`,
	`{"a":"\x"}`,
	`{"a":"\u12g4"}`,
	"{\"a\":\"\t\"}",
	"{\"a\":\"\xff\xfe\",\"prompt_tokens\":6}",
	`{"a":[1,[2,{"b":[]}],{}],"prompt_tokens":7} `,
	`{"a":[1,]}`,
	`{"a":tru}`,
	`{"a":nulL}`,
	`{}`,
	` {} x`,
	`[]`,
	`null`,
	`"gpt-4o"`,
	`"gpt-\u0034o"`,
	"\"caf\xc3\xa9\"",
	"\"\xc3\"",
	`"`,
	`""`,
	`7`,
	`{"model":"gpt-4o","usage":null}`,
	`{"model":"m","usage":{"prompt_tokens":1},"usage":null,"usage":{"completion_tokens":2}}`,
	`{"usage":{"prompt_tokens":1},"usage":5}`,
	`{"usage":"x","model":7}`,
	`{"usage":[1],"message":true,"response":"r"}`,
	`{"MODEL":"a","Model":"","model":null}`,
	`{"message":{"model":"m","usage":{"input_tokens":2}},"message":null}`,
	`{"message":{"model":"m","usage":{"input_tokens":2}},"message":{"usage":null}}`,
	`{"type":"message_start","message":{"id":"msg_1","model":"claude-sonnet-4-6","content":[],"usage":{"input_tokens":10,"output_tokens":1}}}`,
	`{"type":"response.completed","response":{"model":"gpt-4.1","usage":{"input_tokens":20,"output_tokens":30,"total_tokens":50}}}`,
	`{"m\u006fdel":"x","usage":{}}`,
	"{\"m\xc3\xb6del\":\"x\",\"usage\":{}}",
	`{"model":"a\"b","usage":{"prompt_tokens":1e400}}`,
	`{"usage":{"prompt_tokens":1}}[DONE]`,
	`[DONE]`,
	strings.Repeat("[", 600) + strings.Repeat("]", 600),
	`{"a":` + strings.Repeat("[", 10001) + strings.Repeat("]", 10001) + `,"usage":{"prompt_tokens":1}}`,
}

// FuzzDecode checks the hand-written reader against encoding/json itself.
//
//	go test -run '^$' -fuzz FuzzDecode -fuzztime 1m ./internal/usage/
func FuzzDecode(f *testing.F) {
	for _, s := range decodeSeeds {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		checkDecode(t, b)
	})
}

func TestDecode(t *testing.T) {
	for _, s := range decodeSeeds {
		checkDecode(t, []byte(s))
	}
}

func checkDecode(t *testing.T, b []byte) {
	t.Helper()
	var got, want usageJSON
	gotOK, wantOK := decodeUsage(b, &got), json.Unmarshal(b, &want) == nil
	if gotOK != wantOK || gotOK && got != want {
		t.Errorf("decodeUsage(%q) = %+v, %v; encoding/json: %+v, %v", b, got, gotOK, want, wantOK)
	}
	var wantS string
	gotS, gotOK := decodeString(b)
	wantOK = json.Unmarshal(b, &wantS) == nil
	if gotOK != wantOK || gotS != wantS {
		t.Errorf("decodeString(%q) = %q, %v; encoding/json: %q, %v", b, gotS, gotOK, wantS, wantOK)
	}
	for _, model := range []string{"", "m"} {
		gotT, wantT := tally{model: model}, tally{model: model}
		gotT.takeEvent(b)
		wantT.takeEventJSON(b)
		if diff := cmp.Diff(wantT, gotT, cmp.AllowUnexported(tally{})); diff != "" {
			t.Errorf("takeEvent(%q) after model %q (-encoding/json +got):\n%s", b, model, diff)
		}
	}
}

// TestDecodeReadsAnswersItself: the usage objects and events of real
// answers of both API families are read without encoding/json.
func TestDecodeReadsAnswersItself(t *testing.T) {
	for _, tc := range demoCases {
		_, body := demoCall(t, tc.server(), tc.path, tc.streamBody())
		if !tc.stream {
			var top map[string]json.RawMessage
			if err := json.Unmarshal(body, &top); err != nil {
				t.Fatalf("%s: %v", tc.name, err)
			}
			r := reader{b: top["usage"]}
			var u usageJSON
			if v := r.usageObject(0, &u); v != valid {
				t.Errorf("%s: the usage object %s reads as %d, want valid", tc.name, top["usage"], v)
			}
			continue
		}
		for _, line := range strings.Split(string(body), "\n") {
			data, ok := strings.CutPrefix(line, "data: ")
			if !ok || !strings.HasPrefix(data, "{") {
				continue
			}
			var ev eventDoc
			if v := decodeEvent([]byte(data), &ev); v != valid {
				t.Errorf("%s: event %s reads as %d, want valid", tc.name, data, v)
			}
		}
	}
}
