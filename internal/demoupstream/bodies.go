package demoupstream

import (
	"fmt"
	"strings"
)

// ClaudeCodeBody returns a /v1/messages body shaped like Claude Code's
// (system blocks, tool definitions, a tool_use / tool_result exchange
// carrying file contents) of about size bytes: the load that benchmarks
// of the proxy send, 90–140 KB in real use.
func ClaudeCodeBody(size int) []byte {
	var tools strings.Builder
	for i := range 12 {
		if i > 0 {
			tools.WriteByte(',')
		}
		fmt.Fprintf(&tools, `{"name":"Tool%d","description":"%s","input_schema":{"type":"object","properties":{"path":{"type":"string","description":"Absolute path"},"limit":{"type":"integer"}},"required":["path"]}}`,
			i, strings.Repeat("Reads or edits files in the workspace. ", 30))
	}
	head := `{"model":"claude-sonnet-4-6","max_tokens":32000,"system":[{"type":"text","text":"You are Claude Code, Anthropic's official CLI for Claude.","cache_control":{"type":"ephemeral"}},{"type":"text","text":"` +
		strings.Repeat("Follow the repository's conventions. Prefer small, reviewable changes. ", 40) + `"}],"tools":[` + tools.String() +
		`],"messages":[{"role":"user","content":[{"type":"text","text":"Fix the failing test in gateway/proxy.go"}]},` +
		`{"role":"assistant","content":[{"type":"tool_use","id":"toolu_01","name":"Tool0","input":{"path":"/repo/gateway/proxy.go"}}]},` +
		`{"role":"user","content":[{"type":"tool_result","tool_use_id":"toolu_01","content":"`
	tail := `"}]}],"metadata":{"user_id":"user_0123456789abcdef_account__session_0123"}}`
	line := `package gateway\n\nfunc (s *Server) proxy(w http.ResponseWriter, r *http.Request) { /* ... */ }\n`
	n := max(size-len(head)-len(tail), 0)
	file := strings.Repeat(line, n/len(line)+1)[:n]
	file = strings.TrimRight(file, `\`)
	return []byte(head + file + tail)
}
