package main

import (
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// FuzzLoadConfig: any YAML file and any value for any setting never make
// LoadConfig panic; a configuration it accepts passes Validate; what it
// rejects it rejects with a *ConfigError (or a YAML error naming the file);
// and the value of a secret setting never appears in its problems or
// warnings.
//
//	go test -run '^$' -fuzz '^FuzzLoadConfig$' -fuzztime 20s ./cmd/llmgate/
func FuzzLoadConfig(f *testing.F) {
	f.Add("", uint8(0), "")
	f.Add("listen: \":9090\"\nlog_format: text\n", uint8(1), "https://llm.example.com")
	f.Add("upstreams:\n  - name: litellm\n    url: http://litellm:4000\n    api_key_env: LITELLM_KEY\n    paths: [\"/v1/\"]\n", uint8(2), "30d")
	f.Add("upstreams:\n  - name: a\n    url: ftp://x\n    paths: [\"\"]\n    strip_prefix: /a\n", uint8(3), "1e9h")
	f.Add("prices: {claude-sonnet-4-6: {input_per_mtok: 3, output_per_mtok: 15}}\nbudgets: {groups: {ml: 500}}\n", uint8(4), "32MiB")
	f.Add("claude_code:\n  policies:\n    - match: {groups: [ml]}\n      models: [m]\n      settings: {a: {b: 1}}\n      monthly_budget_usd: -1\n", uint8(5), "10.0.0.0/8,::1")
	f.Add("secret: yaml-secret-value-0123456789abcdef\n", uint8(6), "redis://:pw@redis:port/0")
	f.Add("[1, 2", uint8(7), "\x00")
	f.Add("a: &a [*a]\n", uint8(8), "-5s")
	all := settings()
	f.Fuzz(func(t *testing.T, yaml string, which uint8, value string) {
		s := all[int(which)%len(all)]
		const open, shut = "Qz8", "Jx3"
		if s.secret {
			value = open + value + shut
		}
		env := validEnv()
		env[s.env] = value
		path := filepath.Join(t.TempDir(), "llmgate.yaml")
		if err := os.WriteFile(path, []byte(yaml), 0o600); err != nil {
			t.Fatal(err)
		}
		cfg, warnings, err := LoadConfig([]string{"--config", path}, getenv(env), environ(env), io.Discard)
		if err == nil {
			if cfg == nil {
				t.Fatal("LoadConfig returned neither a Config nor an error")
			}
			if verr := cfg.Validate(); verr != nil {
				t.Fatalf("LoadConfig accepted a configuration that Validate rejects: %v", verr)
			}
		}
		text := strings.Join(warnings, "\n")
		var ce *ConfigError
		if err != nil {
			text += "\n" + err.Error()
			if !errors.As(err, &ce) && !strings.Contains(err.Error(), path) && !strings.Contains(err.Error(), "config") {
				t.Fatalf("LoadConfig error is neither a *ConfigError nor about the file: %v", err)
			}
		}
		if s.secret && strings.Contains(text, open) && strings.Contains(text, shut) {
			t.Fatalf("LoadConfig output shows the value of %s:\n%s", s.env, text)
		}
	})
}
