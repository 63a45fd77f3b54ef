package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"time"
)

const envSummary = `Print what an SDK or IDE tool needs to call the LLM API through the gateway:
shell exports (openai, anthropic, claude-code), a Continue config.yaml block,
a Roo Code settings file to import, or the values for Cline's settings.

The token is your stored credential (or LLMGATE_TOKEN), or with --new NAME a
freshly minted token that may only call the LLM API — better for a tool's
saved settings, since it cannot manage your tokens and can be revoked alone.

Clients:
  openai        OPENAI_BASE_URL, OPENAI_API_KEY (OpenAI SDKs, most tools)
  anthropic     ANTHROPIC_BASE_URL, ANTHROPIC_API_KEY (Anthropic SDKs)
  claude-code   ANTHROPIC_BASE_URL, ANTHROPIC_AUTH_TOKEN; with --managed, the
                managed settings that make Claude Code sign in through the
                gateway by itself (/login), and where that file goes
  continue      a models: block for ~/.continue/config.yaml
  roo           a Roo Code settings file (Settings > About > Import)
  cline         the values for Cline's "OpenAI Compatible" provider
Without --client: both the openai and anthropic variables.

Examples:
  eval "$(llmgate env)"
  eval "$(llmgate env --client claude-code)" && claude
  llmgate env --client openai --shell fish | source
  llmgate env --client openai --shell powershell | Invoke-Expression
  llmgate env --client continue --new continue --model claude-sonnet-4-6 >> ~/.continue/config.yaml
  llmgate env --client roo --new "roo code" > roo-settings.json
  llmgate env --client claude-code --managed --json | sudo tee /etc/claude-code/managed-settings.json`

var (
	envClients = []string{"openai", "anthropic", "claude-code", "roo", "continue", "cline"}
	envShells  = []string{"bash", "zsh", "fish", "powershell"}
)

// managedSettingsPaths are where Claude Code reads file-based managed
// settings, per operating system (Claude Code's "managed settings" docs).
var managedSettingsPaths = []struct{ OS, Path string }{
	{"macOS", "/Library/Application Support/ClaudeCode/managed-settings.json"},
	{"Linux", "/etc/claude-code/managed-settings.json"},
	{"Windows", `C:\Program Files\ClaudeCode\managed-settings.json`},
}

type envOptions struct {
	client, shell, model string
	managed, asJSON      bool
}

func cmdEnv(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	c := newCLI(stdout, stderr)
	fs := newFlagSet("env", envSummary, stderr)
	server := fs.String("server", "", "gateway URL (default: LLMGATE_SERVER, else the one you signed in to)")
	client := fs.String("client", "", "what to configure: "+strings.Join(envClients, ", "))
	shell := fs.String("shell", "", "shell syntax of the exports: "+strings.Join(envShells, ", ")+" (default: from $SHELL)")
	managed := fs.Bool("managed", false, "with --client claude-code: print Claude Code's managed settings for gateway sign-in")
	newName := fs.String("new", "", "mint a new LLM-only token with this name and use it instead of your credential")
	ttl := fs.String("ttl", "", "with --new: the token's lifetime, like 30d (default: the gateway's)")
	models := fs.String("models", "", "with --new: comma-separated models the token may call")
	model := fs.String("model", "", "model id for continue, roo and cline (default: the first the gateway lists)")
	asJSON := fs.Bool("json", false, "print JSON only: the variables, the settings file or the managed settings")
	if code := parseFlags(fs, args); code >= 0 {
		return code
	}
	o := envOptions{client: *client, shell: *shell, model: *model, managed: *managed, asJSON: *asJSON}
	if o.client != "" && !slices.Contains(envClients, o.client) {
		fmt.Fprintf(stderr, "llmgate env: unknown --client %q: choose one of %s\n", o.client, strings.Join(envClients, ", "))
		return exitUsage
	}
	if o.shell == "" {
		o.shell = c.defaultShell()
	} else if !slices.Contains(envShells, o.shell) {
		fmt.Fprintf(stderr, "llmgate env: unknown --shell %q: choose one of %s\n", o.shell, strings.Join(envShells, ", "))
		return exitUsage
	}
	if o.managed && o.client != "claude-code" {
		fmt.Fprintln(stderr, "llmgate env: --managed goes with --client claude-code")
		return exitUsage
	}
	if (*ttl != "" || *models != "") && *newName == "" {
		fmt.Fprintln(stderr, "llmgate env: --ttl and --models go with --new NAME")
		return exitUsage
	}
	if o.managed {
		return c.managedSettings(*server, o)
	}

	a, err := c.resolve(*server)
	if err != nil {
		return c.fail("env", err)
	}
	token, note := a.token, ""
	var allowed []string
	if *newName != "" {
		t, err := c.createToken(ctx, a, createRequest{Name: *newName, TTL: *ttl, Models: splitList(*models)})
		if err != nil {
			return c.fail("env", err)
		}
		token, allowed = t.Token, t.Models
		note = fmt.Sprintf("token %q (id %s), expires %s", cell(t.Name), t.ID, formatTime(t.ExpiresAt))
		fmt.Fprintf(stderr, "Created %s.\n", note)
	} else {
		switch {
		case a.fromEnv():
			note = "the token in " + envToken
		case !a.cred.ExpiresAt.IsZero():
			note = "your llmgate CLI credential, expires " + formatTime(a.cred.ExpiresAt)
		default:
			note = "your llmgate CLI credential"
		}
		if o.client == "roo" || o.client == "continue" || o.client == "cline" {
			fmt.Fprintf(stderr, "Note: this uses %s, which can also manage your tokens. For a tool's saved settings prefer a token of its own: add --new %q.\n", note, o.client)
		}
	}

	switch o.client {
	case "roo", "continue", "cline":
		if o.model == "" && len(allowed) > 0 {
			o.model = allowed[0]
		}
		if o.model == "" {
			o.model = c.firstModel(ctx, a.server, token)
		}
		if o.model == "" {
			o.model = "YOUR-MODEL-ID"
			fmt.Fprintln(stderr, "Note: the gateway listed no models; set the model id with --model, or edit YOUR-MODEL-ID below.")
		}
	}
	switch o.client {
	case "roo":
		return c.rooSettings(a.server, token, o)
	case "continue":
		return c.continueBlock(a.server, token, o)
	case "cline":
		return c.clineSettings(a.server, token, o)
	}
	return c.exports(a.server, token, note, o)
}

// defaultShell guesses the shell from $SHELL (PowerShell on Windows).
func (c *cli) defaultShell() string {
	if sh := filepath.Base(c.getenv("SHELL")); slices.Contains(envShells, sh) {
		return sh
	}
	if runtime.GOOS == "windows" {
		return "powershell"
	}
	return "bash"
}

type envVar struct{ name, value string }

// envVars are the variables of an export client.
func envVars(client, server, token string) []envVar {
	openai := []envVar{{"OPENAI_BASE_URL", server + "/v1"}, {"OPENAI_API_KEY", token}}
	anthropic := []envVar{{"ANTHROPIC_BASE_URL", server}, {"ANTHROPIC_API_KEY", token}}
	switch client {
	case "openai":
		return openai
	case "anthropic":
		return anthropic
	case "claude-code":
		// Claude Code sends ANTHROPIC_AUTH_TOKEN as a bearer token.
		return []envVar{{"ANTHROPIC_BASE_URL", server}, {"ANTHROPIC_AUTH_TOKEN", token}}
	default:
		return append(openai, anthropic...)
	}
}

// exports prints the variables of an export client in the shell's syntax.
func (c *cli) exports(server, token, note string, o envOptions) int {
	vars := envVars(o.client, server, token)
	if o.asJSON {
		m := map[string]string{}
		for _, v := range vars {
			m[v.name] = v.value
		}
		return c.printJSON(m)
	}
	what := o.client
	if what == "" {
		what = "openai and anthropic"
	}
	fmt.Fprintf(c.stdout, "# llmgate: %s settings for %s, using %s\n", what, server, note)
	for _, v := range vars {
		fmt.Fprintln(c.stdout, exportLine(o.shell, v.name, v.value))
	}
	self := "llmgate env"
	if o.client != "" {
		self += " --client " + o.client
	}
	switch o.shell {
	case "fish":
		fmt.Fprintf(c.stdout, "# Run: %s --shell fish | source\n", self)
	case "powershell":
		fmt.Fprintf(c.stdout, "# Run: %s --shell powershell | Invoke-Expression\n", self)
	default:
		fmt.Fprintf(c.stdout, "# Run: eval \"$(%s)\"\n", self)
	}
	return exitOK
}

// exportLine sets name to value in shell, quoted so that any value survives.
func exportLine(shell, name, value string) string {
	switch shell {
	case "fish":
		// In fish single quotes only \\ and \' are escapes.
		v := strings.NewReplacer(`\`, `\\`, `'`, `\'`).Replace(value)
		return fmt.Sprintf("set -gx %s '%s'", name, v)
	case "powershell":
		return fmt.Sprintf("$env:%s = '%s'", name, strings.ReplaceAll(value, "'", "''"))
	default: // bash, zsh: nothing is special inside single quotes but the quote itself
		return fmt.Sprintf("export %s='%s'", name, strings.ReplaceAll(value, "'", `'\''`))
	}
}

// firstModel asks the gateway which models exist (GET /v1/models) and
// returns the first id, or "" when it cannot tell.
func (c *cli) firstModel(ctx context.Context, server, token string) string {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	var list struct {
		Data []struct {
			ID string `json:"id"`
		} `json:"data"`
	}
	a := &auth{server: server, token: token}
	if err := c.call(ctx, a, http.MethodGet, "/v1/models", nil, &list); err != nil || len(list.Data) == 0 {
		return ""
	}
	return list.Data[0].ID
}

// rooSettings prints a Roo Code settings file: Settings > About > Import,
// or the path in the VS Code setting roo-cline.autoImportSettingsPath.
func (c *cli) rooSettings(server, token string, o envOptions) int {
	settings := map[string]any{
		"providerProfiles": map[string]any{
			"currentApiConfigName": "llmgate",
			"apiConfigs": map[string]any{
				"llmgate": map[string]any{
					"id":            "llmgate",
					"apiProvider":   "openai", // Roo Code's "OpenAI Compatible"
					"openAiBaseUrl": server + "/v1",
					"openAiApiKey":  token,
					"openAiModelId": o.model,
				},
			},
			"modeApiConfigs": map[string]any{},
		},
	}
	if !o.asJSON {
		fmt.Fprintln(c.stderr, `Save this as a file and load it in Roo Code: Settings > About > Import (or point the VS Code setting "roo-cline.autoImportSettingsPath" at it). Keep the file private: it holds the token.`)
	}
	return c.printJSON(settings)
}

// continueBlock prints a models: entry for Continue's config.yaml.
func (c *cli) continueBlock(server, token string, o envOptions) int {
	if o.asJSON {
		return c.printJSON(map[string]any{"models": []map[string]string{{
			"name": "llmgate " + o.model, "provider": "openai", "model": o.model, "apiBase": server + "/v1", "apiKey": token,
		}}})
	}
	q := func(s string) string { b, _ := json.Marshal(s); return string(b) } // a JSON string is a YAML string
	fmt.Fprintf(c.stdout, `# Continue (~/.continue/config.yaml): add this entry to "models:",
# or append the whole block to a config that has no "models:" yet.
models:
  - name: %s
    provider: openai
    model: %s
    apiBase: %s
    apiKey: %s
`, q("llmgate "+o.model), q(o.model), q(server+"/v1"), q(token))
	return exitOK
}

// clineSettings prints what goes in Cline's provider settings.
func (c *cli) clineSettings(server, token string, o envOptions) int {
	if o.asJSON {
		return c.printJSON(map[string]string{
			"apiProvider": "openai", "openAiBaseUrl": server + "/v1", "openAiApiKey": token, "openAiModelId": o.model,
		})
	}
	fmt.Fprintf(c.stdout, `Cline: open Cline's settings (the gear icon) and set
  API Provider:  OpenAI Compatible
  Base URL:      %s/v1
  API Key:       %s
  Model ID:      %s
`, server, token, o.model)
	return exitOK
}

// managedSettings prints Claude Code's managed settings for signing in
// through this gateway, and where the file goes. It needs no credential.
func (c *cli) managedSettings(serverFlag string, o envOptions) int {
	var f *credentialsFile
	if path, err := credentialsPath(c.getenv); err == nil {
		f, _ = loadCredentials(path)
	}
	server, err := c.server(serverFlag, f)
	if err != nil {
		return c.fail("env", err)
	}
	if server == "" {
		fmt.Fprintln(c.stderr, "llmgate env: which gateway? Pass --server https://YOUR-GATEWAY (or set LLMGATE_SERVER)")
		return exitUsage
	}
	settings := struct {
		Method string `json:"forceLoginMethod"`
		URL    string `json:"forceLoginGatewayUrl"`
	}{"gateway", server}
	if o.asJSON {
		return c.printJSON(settings)
	}
	fmt.Fprintln(c.stdout, "Claude Code managed settings: Claude Code signs in through this gateway by itself")
	fmt.Fprintln(c.stdout, "(the developer types /login and approves a code in the browser after SSO).")
	fmt.Fprintln(c.stdout, "Install this JSON as the managed settings file (merge the two keys into an existing one):")
	for _, p := range managedSettingsPaths {
		fmt.Fprintf(c.stdout, "  %-8s %s\n", p.OS+":", p.Path)
	}
	fmt.Fprintln(c.stdout, "Or deliver the same keys through your MDM's Claude Code policy. The JSON alone: --json.")
	fmt.Fprintln(c.stdout)
	return c.printJSON(settings)
}
