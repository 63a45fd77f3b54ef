package main

import (
	"encoding/json"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"
)

// bashEval evaluates script in bash and returns what printf of the
// variables prints, one per line.
func bashEval(tb testing.TB, script string, vars ...string) []string {
	tb.Helper()
	dir := tb.TempDir()
	f := filepath.Join(dir, "env.sh")
	if err := os.WriteFile(f, []byte(script), 0o600); err != nil {
		tb.Fatal(err)
	}
	if out, err := exec.Command("bash", "-n", f).CombinedOutput(); err != nil {
		tb.Fatalf("bash -n rejects the output: %v\n%s\n--- script:\n%s", err, out, script)
	}
	prog := `set -eu; eval "$(cat "$1")"`
	for _, v := range vars {
		prog += `; printf '%s\n' "$` + v + `"`
	}
	out, err := exec.Command("bash", "-c", prog, "bash", f).CombinedOutput()
	if err != nil {
		tb.Fatalf("bash eval of the output: %v\n%s\n--- script:\n%s", err, out, script)
	}
	return strings.Split(strings.TrimSuffix(string(out), "\n"), "\n")
}

// TestExportQuoting: any value survives each shell's quoting.
func TestExportQuoting(t *testing.T) {
	nasty := `it's a "$HOME" \n $(touch /tmp/pwned) ` + "`id`" + ` \' end\`
	script := exportLine("bash", "V", nasty) + "\n"
	if got := bashEval(t, script, "V"); len(got) != 1 || got[0] != nasty {
		t.Errorf("bash: %q evaluates to %q, want the value unchanged", script, got)
	}
	for _, sh := range []struct{ shell, bin string }{{"zsh", "zsh"}, {"fish", "fish"}, {"powershell", "pwsh"}} {
		t.Run(sh.shell, func(t *testing.T) {
			if _, err := exec.LookPath(sh.bin); err != nil {
				t.Skipf("%s is not installed", sh.bin)
			}
			line := exportLine(sh.shell, "V", nasty)
			var prog string
			switch sh.shell {
			case "zsh":
				prog = line + `; printf '%s' "$V"`
			case "fish":
				prog = line + `; printf '%s' "$V"`
			case "powershell":
				prog = line + `; [Console]::Out.Write($env:V)`
			}
			args := []string{"-c", prog}
			if sh.bin == "pwsh" {
				args = []string{"-NoProfile", "-Command", prog}
			}
			out, err := exec.Command(sh.bin, args...).CombinedOutput()
			if err != nil || string(out) != nasty {
				t.Errorf("%s: %s sets %q (%v), want %q", sh.shell, line, out, err, nasty)
			}
		})
	}
	// The expected forms, for shells this machine may not have.
	for shell, want := range map[string]string{
		"zsh":        `export V='a'\''b'`,
		"fish":       `set -gx V 'a\'b'`,
		"powershell": `$env:V = 'a''b'`,
	} {
		if got := exportLine(shell, "V", "a'b"); got != want {
			t.Errorf("exportLine(%s, V, a'b) = %s, want %s", shell, got, want)
		}
	}
}

// TestEnv prints what tools need and checks it works: evaluated by bash,
// parsed as the tool's file format, the token accepted by the proxy.
func TestEnv(t *testing.T) {
	t.Parallel()
	g := startGateway(t)
	cred, rec := g.credential(t, "alice@example.com")
	u := newUser(t)
	u.signIn(t, g.url, cred, rec)

	tests := []struct {
		client string
		vars   []string
		want   []string
	}{
		{"openai", []string{"OPENAI_BASE_URL", "OPENAI_API_KEY"}, []string{g.url + "/v1", cred}},
		{"anthropic", []string{"ANTHROPIC_BASE_URL", "ANTHROPIC_API_KEY"}, []string{g.url, cred}},
		{"claude-code", []string{"ANTHROPIC_BASE_URL", "ANTHROPIC_AUTH_TOKEN"}, []string{g.url, cred}},
		{"", []string{"OPENAI_BASE_URL", "OPENAI_API_KEY", "ANTHROPIC_BASE_URL", "ANTHROPIC_API_KEY"}, []string{g.url + "/v1", cred, g.url, cred}},
	}
	for _, tt := range tests {
		args := []string{"env", "--shell", "bash"}
		if tt.client != "" {
			args = append(args, "--client", tt.client)
		}
		r := u.run(t, args...)
		if r.code != 0 {
			t.Errorf("llmgate %s: %v", strings.Join(args, " "), r)
			continue
		}
		got := bashEval(t, r.stdout, tt.vars...)
		if strings.Join(got, "\n") != strings.Join(tt.want, "\n") {
			t.Errorf("llmgate %s, evaluated by bash: %s = %q, want %q", strings.Join(args, " "), tt.vars, got, tt.want)
		}
	}
	// The shell comes from $SHELL.
	u.env["SHELL"] = "/usr/bin/fish"
	if r := u.run(t, "env", "--client", "openai"); !strings.Contains(r.stdout, "set -gx OPENAI_API_KEY '"+cred+"'") {
		t.Errorf("llmgate env with SHELL=fish: %v\nwant fish's set -gx", r)
	}
	delete(u.env, "SHELL")
	if r := u.run(t, "env", "--client", "openai", "--shell", "powershell"); !strings.Contains(r.stdout, "$env:OPENAI_BASE_URL = '"+g.url+"/v1'") {
		t.Errorf("llmgate env --shell powershell: %v", r)
	}
	r := u.run(t, "env", "--client", "openai", "--json")
	var vars map[string]string
	if err := json.Unmarshal([]byte(r.stdout), &vars); err != nil || vars["OPENAI_API_KEY"] != cred || vars["OPENAI_BASE_URL"] != g.url+"/v1" {
		t.Errorf("llmgate env --client openai --json: %v (%v)", r, err)
	}

	// --new mints a token of its own, which works on the proxy and is not the credential.
	r = u.run(t, "env", "--client", "openai", "--shell", "bash", "--new", "sdk", "--ttl", "1d")
	if r.code != 0 {
		t.Fatalf("llmgate env --new sdk: %v", r)
	}
	got := bashEval(t, r.stdout, "OPENAI_API_KEY")
	if got[0] == cred || got[0] == "" || proxyStatus(t, g.url, got[0]) != http.StatusOK {
		t.Errorf("llmgate env --new sdk set OPENAI_API_KEY=%.12s…, want a new token that the proxy accepts", got[0])
	}
	if !strings.Contains(r.stderr, `"sdk"`) {
		t.Errorf("llmgate env --new sdk does not say which token it created:\n%s", r.stderr)
	}

	// Continue: a YAML block whose model entry points at the gateway.
	r = u.run(t, "env", "--client", "continue", "--new", "continue", "--model", "claude-sonnet-4-6")
	var cont struct {
		Models []map[string]string `yaml:"models"`
	}
	if err := yaml.Unmarshal([]byte(r.stdout), &cont); err != nil || r.code != 0 || len(cont.Models) != 1 {
		t.Fatalf("llmgate env --client continue: %v (%v), want a YAML models: block", r, err)
	}
	m := cont.Models[0]
	if m["provider"] != "openai" || m["model"] != "claude-sonnet-4-6" || m["apiBase"] != g.url+"/v1" || proxyStatus(t, g.url, m["apiKey"]) != http.StatusOK {
		t.Errorf("continue model entry = %v, want provider openai, claude-sonnet-4-6, apiBase %s/v1 and a working key", m, g.url)
	}

	// Roo Code: an importable settings file; the model comes from the gateway's list.
	r = u.run(t, "env", "--client", "roo")
	var roo struct {
		ProviderProfiles struct {
			Current string                       `json:"currentApiConfigName"`
			Configs map[string]map[string]string `json:"apiConfigs"`
		} `json:"providerProfiles"`
	}
	if err := json.Unmarshal([]byte(r.stdout), &roo); err != nil || r.code != 0 {
		t.Fatalf("llmgate env --client roo: %v (%v)", r, err)
	}
	p := roo.ProviderProfiles.Configs[roo.ProviderProfiles.Current]
	if p["apiProvider"] != "openai" || p["openAiBaseUrl"] != g.url+"/v1" || p["openAiApiKey"] != cred || p["openAiModelId"] == "" || p["openAiModelId"] == "YOUR-MODEL-ID" {
		t.Errorf("roo profile = %v, want OpenAI Compatible at %s/v1 with the credential and a listed model", p, g.url)
	}
	if !strings.Contains(r.stderr, "--new") || !strings.Contains(r.stderr, "Import") {
		t.Errorf("llmgate env --client roo with the CLI credential: stderr should say how to import and suggest --new:\n%s", r.stderr)
	}

	r = u.run(t, "env", "--client", "cline", "--model", "gpt-4o-mini")
	for _, want := range []string{"OpenAI Compatible", g.url + "/v1", cred, "gpt-4o-mini"} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("llmgate env --client cline lacks %q:\n%s", want, r.stdout)
		}
	}

	for _, args := range [][]string{
		{"env", "--client", "vim"}, {"env", "--shell", "tcsh"}, {"env", "--managed"}, {"env", "--client", "openai", "--ttl", "1d"}, {"env", "extra"},
	} {
		if r := u.run(t, args...); r.code != 2 {
			t.Errorf("llmgate %s: %v\nwant exit 2", strings.Join(args, " "), r)
		}
	}
}

// TestEnvManaged prints Claude Code's managed settings; it needs a server
// but no credential.
func TestEnvManaged(t *testing.T) {
	t.Parallel()
	u := newUser(t)
	r := u.run(t, "env", "--client", "claude-code", "--managed", "--server", "llm.example.com/", "--json")
	var got map[string]string
	if err := json.Unmarshal([]byte(r.stdout), &got); err != nil || r.code != 0 {
		t.Fatalf("env --client claude-code --managed --json: %v (%v), want only JSON", r, err)
	}
	want := map[string]string{"forceLoginMethod": "gateway", "forceLoginGatewayUrl": "https://llm.example.com"}
	if len(got) != 2 || got["forceLoginMethod"] != want["forceLoginMethod"] || got["forceLoginGatewayUrl"] != want["forceLoginGatewayUrl"] {
		t.Errorf("managed settings = %v, want %v", got, want)
	}
	u.env["LLMGATE_SERVER"] = "https://llm.example.com"
	r = u.run(t, "env", "--client", "claude-code", "--managed")
	for _, want := range []string{
		"/Library/Application Support/ClaudeCode/managed-settings.json",
		"/etc/claude-code/managed-settings.json",
		`C:\Program Files\ClaudeCode\managed-settings.json`,
		`"forceLoginGatewayUrl": "https://llm.example.com"`,
	} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("env --client claude-code --managed lacks %q:\n%s", want, r.stdout)
		}
	}
	delete(u.env, "LLMGATE_SERVER")
	if r := u.run(t, "env", "--client", "claude-code", "--managed"); r.code != 2 || !strings.Contains(r.stderr, "--server") {
		t.Errorf("env --managed with no gateway known: %v\nwant exit 2 asking for --server", r)
	}
}
