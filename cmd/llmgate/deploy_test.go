package main

// Tests of what deploy/ and docker-compose.yml ship: the files an operator
// adopts as they are. They check the files against the gateway itself: its
// settings table, its configuration validation and the metrics it exports.

import (
	"bufio"
	"bytes"
	"context"
	"debug/elf"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"
	"time"

	composecli "github.com/compose-spec/compose-go/v2/cli"
	"github.com/compose-spec/compose-go/v2/types"
	"go.yaml.in/yaml/v3"

	"github.com/llmgate/llmgate/internal/devidp"
	"github.com/llmgate/llmgate/internal/webtest"
)

// repoRoot is the repository's top directory (the tests run in cmd/llmgate).
func repoRoot(tb testing.TB) string {
	tb.Helper()
	root, err := filepath.Abs(filepath.Join("..", ".."))
	if err != nil {
		tb.Fatal(err)
	}
	return root
}

// knownVariables are the LLMGATE_* names `llmgate serve` reads.
func knownVariables() map[string]bool {
	known := map[string]bool{configEnv: true}
	for _, s := range settings() {
		known[s.env] = true
	}
	return known
}

// loadEnvConfig runs the gateway's own configuration loading on env, as
// `llmgate serve` would with that environment and no flags.
func loadEnvConfig(env map[string]string) (*Config, []string, error) {
	var environ []string
	for k, v := range env {
		environ = append(environ, k+"="+v)
	}
	return LoadConfig(nil, func(k string) string { return env[k] }, environ, io.Discard)
}

// envExampleKeys reads the variable names deploy/.env.example defines.
func envExampleKeys(tb testing.TB, root string) []string {
	tb.Helper()
	b, err := os.ReadFile(filepath.Join(root, "deploy", ".env.example"))
	if err != nil {
		tb.Fatal(err)
	}
	var keys []string
	for _, line := range strings.Split(string(b), "\n") {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		k, _, ok := strings.Cut(line, "=")
		if !ok {
			tb.Fatalf("deploy/.env.example: line %q is not NAME=value", line)
		}
		keys = append(keys, k)
	}
	return keys
}

// loadCompose loads docker-compose.yml the way `docker compose` does, with
// every variable of deploy/.env.example set to a distinct value (and nothing
// from this machine's environment or a developer's own .env).
func loadCompose(tb testing.TB, root string) (*types.Project, map[string]string) {
	tb.Helper()
	vars := map[string]string{}
	var env []string
	for _, k := range envExampleKeys(tb, root) {
		v := "value-of-" + strings.ToLower(k) + "-that-is-long-enough-for-a-secret"
		if k == "LITELLM_MASTER_KEY" {
			v = "sk-" + v
		}
		vars[k] = v
		env = append(env, k+"="+v)
	}
	opts, err := composecli.NewProjectOptions([]string{filepath.Join(root, "docker-compose.yml")},
		composecli.WithWorkingDirectory(root), composecli.WithEnv(env), composecli.WithDiscardEnvFile)
	if err != nil {
		tb.Fatal(err)
	}
	project, err := opts.LoadProject(context.Background())
	if err != nil {
		tb.Fatalf("load docker-compose.yml with compose-go: %v", err)
	}
	return project, vars
}

func envOf(s types.ServiceConfig) map[string]string {
	env := map[string]string{}
	for k, v := range s.Environment {
		if v != nil {
			env[k] = *v
		}
	}
	return env
}

func TestComposeFile(t *testing.T) {
	root := repoRoot(t)
	raw, err := os.ReadFile(filepath.Join(root, "docker-compose.yml"))
	if err != nil {
		t.Fatal(err)
	}

	// One .env: every variable the file interpolates is in the example.
	documented := map[string]bool{}
	for _, k := range envExampleKeys(t, root) {
		documented[k] = true
	}
	for _, m := range regexp.MustCompile(`\$\{([A-Za-z_][A-Za-z0-9_]*)`).FindAllStringSubmatch(string(raw), -1) {
		if !documented[m[1]] {
			t.Errorf("docker-compose.yml uses ${%s}, which deploy/.env.example does not define", m[1])
		}
	}

	project, vars := loadCompose(t, root)
	gw, ok := project.Services["llmgate"]
	if !ok {
		t.Fatalf("docker-compose.yml has no llmgate service; services: %v", project.ServiceNames())
	}
	known := knownVariables()
	for _, name := range project.ServiceNames() {
		s := project.Services[name]
		t.Run("service "+name, func(t *testing.T) {
			hc := s.HealthCheck
			if hc == nil || hc.Disable || len(hc.Test) == 0 || hc.Test[0] == "NONE" {
				t.Errorf("service %s has no healthcheck (got %+v); depends_on service_healthy needs one", name, hc)
			}
			if name != "llmgate" && len(s.Ports) > 0 {
				t.Errorf("service %s publishes ports %+v; only llmgate may", name, s.Ports)
			}
			switch {
			case s.NetworkMode == "service:llmgate":
			case s.NetworkMode != "":
				t.Errorf("service %s: network_mode %q, want the private network or service:llmgate", name, s.NetworkMode)
			default:
				if _, ok := s.Networks["private"]; !ok || len(s.Networks) != 1 {
					t.Errorf("service %s is on networks %v, want only the private network", name, keys(s.Networks))
				}
			}
			for dep, d := range s.DependsOn {
				if d.Condition != types.ServiceConditionHealthy {
					t.Errorf("service %s depends on %s with condition %q, want service_healthy", name, dep, d.Condition)
				}
			}
			for k := range s.Environment {
				if strings.HasPrefix(k, envPrefix) && !known[k] {
					t.Errorf("service %s sets %s, which is not an llmgate setting (closest: %s)", name, k, closest(k, keysOf(known)))
				}
			}
		})
	}
	for _, p := range gw.Ports {
		if p.HostIP != "127.0.0.1" {
			t.Errorf("llmgate publishes %s:%s→%d; publish on 127.0.0.1 only (a demo secret is in .env)", p.HostIP, p.Published, p.Target)
		}
	}
	if gw.Build == nil || gw.Build.Dockerfile != "deploy/Dockerfile" {
		t.Errorf("llmgate build = %+v, want dockerfile deploy/Dockerfile", gw.Build)
	}
	if !gw.ReadOnly || !contains(gw.CapDrop, "ALL") {
		t.Errorf("llmgate: read_only %v, cap_drop %v; want a read-only root and every capability dropped", gw.ReadOnly, gw.CapDrop)
	}

	// The gateway's environment is a valid configuration.
	gwEnv := envOf(gw)
	cfg, warnings, err := loadEnvConfig(gwEnv)
	if err != nil {
		t.Fatalf("llmgate's environment in docker-compose.yml does not pass the gateway's configuration check:\n%v", err)
	}
	if len(warnings) > 0 {
		t.Errorf("configuration warnings: %v", warnings)
	}
	if gw.StopGracePeriod == nil || time.Duration(*gw.StopGracePeriod) <= cfg.ShutdownGrace {
		t.Errorf("llmgate stop_grace_period %v, want more than LLMGATE_SHUTDOWN_GRACE %v so streams drain", gw.StopGracePeriod, cfg.ShutdownGrace)
	}

	t.Run("redis", func(t *testing.T) {
		r := project.Services["redis"]
		cmd := strings.Join(r.Command, " ")
		if !strings.Contains(cmd, "--appendonly yes") || !strings.Contains(cmd, "--maxmemory-policy noeviction") {
			t.Errorf("redis command %q, want --appendonly yes and --maxmemory-policy noeviction", cmd)
		}
		u, err := url.Parse(cfg.RedisURL)
		if err != nil {
			t.Fatal(err)
		}
		pw, _ := u.User.Password()
		if u.Hostname() != "redis" || !strings.Contains(cmd, "--requirepass "+pw) || pw == "" {
			t.Errorf("LLMGATE_REDIS_URL host %q password %q; want host redis with the password redis-server requires (%q)", u.Hostname(), pw, cmd)
		}
		if !hasVolume(r, "/data") {
			t.Errorf("redis keeps /data on no volume: %+v", r.Volumes)
		}
	})

	t.Run("litellm", func(t *testing.T) {
		l, ok := project.Services["litellm"]
		if !ok {
			t.Fatal("no litellm service")
		}
		if u, _ := url.Parse(cfg.UpstreamURL); u == nil || u.Hostname() != "litellm" {
			t.Errorf("LLMGATE_UPSTREAM_URL = %s, want the litellm service", cfg.UpstreamURL)
		}
		args := []string(l.Command)
		i := indexOf(args, "--config")
		if i < 0 || i+1 >= len(args) {
			t.Fatalf("litellm command %v has no --config FILE", args)
		}
		src := mountSource(l, args[i+1])
		if src == "" {
			t.Fatalf("litellm's --config %s is not a file mounted from the repository: %+v", args[i+1], l.Volumes)
		}
		b, err := os.ReadFile(src)
		if err != nil {
			t.Fatalf("the LiteLLM config docker-compose.yml mounts: %v", err)
		}
		var lc struct {
			ModelList       []map[string]any `yaml:"model_list"`
			GeneralSettings map[string]any   `yaml:"general_settings"`
		}
		if err := yaml.Unmarshal(b, &lc); err != nil {
			t.Fatalf("%s: %v", src, err)
		}
		if _, ok := lc.GeneralSettings["user_header_name"]; ok {
			t.Errorf("%s uses general_settings.user_header_name, deprecated in LiteLLM: use user_header_mappings", src)
		}
		if !litellmAttributes(lc.GeneralSettings, cfg.IdentityHeaders) {
			t.Errorf("%s does not name any header the gateway sends (%v) as LiteLLM's customer: map one in general_settings.user_header_mappings with litellm_user_role customer, or add x-litellm-end-user-id to LLMGATE_IDENTITY_HEADER", src, cfg.IdentityHeaders)
		}
		// The gateway's upstream credential is a key LiteLLM accepts.
		mk, _ := lc.GeneralSettings["master_key"].(string)
		env := envOf(l)
		if v, ok := strings.CutPrefix(mk, "os.environ/"); !ok || env[v] == "" || env[v] != cfg.UpstreamAPIKey {
			t.Errorf("LiteLLM master_key %q (= %q) is not the gateway's LLMGATE_UPSTREAM_API_KEY", mk, env[strings.TrimPrefix(mk, "os.environ/")])
		}
		if len(lc.ModelList) == 0 {
			t.Error("the LiteLLM config lists no model")
		}
	})

	t.Run("dex", func(t *testing.T) {
		d, ok := project.Services["dex"]
		if !ok {
			t.Fatal("no dex service")
		}
		src := ""
		for _, arg := range d.Command {
			if s := mountSource(d, arg); s != "" {
				src = s
			}
		}
		b, err := os.ReadFile(src)
		if err != nil {
			t.Fatalf("Dex config named in dex's command %v: %v", d.Command, err)
		}
		var dc struct {
			Issuer string `yaml:"issuer"`
			Web    struct {
				HTTP string `yaml:"http"`
			} `yaml:"web"`
			StaticClients []struct {
				ID           string   `yaml:"id"`
				SecretEnv    string   `yaml:"secretEnv"`
				RedirectURIs []string `yaml:"redirectURIs"`
			} `yaml:"staticClients"`
			StaticPasswords []struct {
				Email string `yaml:"email"`
			} `yaml:"staticPasswords"`
		}
		if err := yaml.Unmarshal(b, &dc); err != nil {
			t.Fatal(err)
		}
		if dc.Issuer != cfg.OIDCIssuer {
			t.Errorf("Dex issuer %q, gateway's LLMGATE_OIDC_ISSUER %q", dc.Issuer, cfg.OIDCIssuer)
		}
		if len(dc.StaticClients) != 1 {
			t.Fatalf("Dex has %d static clients, want 1", len(dc.StaticClients))
		}
		c := dc.StaticClients[0]
		if c.ID != cfg.OIDCClientID || !contains(c.RedirectURIs, cfg.PublicURL+"/oauth2/callback") {
			t.Errorf("Dex client %s with redirect URIs %v; want %s with %s/oauth2/callback", c.ID, c.RedirectURIs, cfg.OIDCClientID, cfg.PublicURL)
		}
		if envOf(d)[c.SecretEnv] != cfg.OIDCClientSecret {
			t.Errorf("Dex reads the client secret from %s = %q, gateway has %q", c.SecretEnv, envOf(d)[c.SecretEnv], vars["DEX_CLIENT_SECRET"])
		}
		if len(dc.StaticPasswords) == 0 || !contains(cfg.AdminEmails, dc.StaticPasswords[0].Email) {
			t.Errorf("Dex's demo user is not in LLMGATE_ADMIN_EMAILS %v", cfg.AdminEmails)
		}
		// The browser reaches Dex at the issuer through a port llmgate publishes.
		iu, _ := url.Parse(dc.Issuer)
		_, webPort, _ := net.SplitHostPort(dc.Web.HTTP)
		published := false
		for _, p := range gw.Ports {
			if p.Published == iu.Port() && fmt.Sprint(p.Target) == webPort {
				published = true
			}
		}
		if !published || d.NetworkMode != "service:llmgate" {
			t.Errorf("Dex (network_mode %q) listens on %s but llmgate does not publish issuer port %s to it: %+v", d.NetworkMode, dc.Web.HTTP, iu.Port(), gw.Ports)
		}
	})
}

// litellmAttributes reports whether LiteLLM, with these general_settings,
// takes one of the gateway's identity headers as the customer (end user).
func litellmAttributes(general map[string]any, headers []string) bool {
	for _, h := range headers {
		if strings.EqualFold(h, "x-litellm-end-user-id") || strings.EqualFold(h, "x-litellm-customer-id") {
			return true
		}
	}
	mappings, _ := general["user_header_mappings"].([]any)
	for _, m := range mappings {
		mm, _ := m.(map[string]any)
		name, _ := mm["header_name"].(string)
		role, _ := mm["litellm_user_role"].(string)
		if role != "customer" {
			continue
		}
		for _, h := range headers {
			if strings.EqualFold(h, name) {
				return true
			}
		}
	}
	return false
}

func hasVolume(s types.ServiceConfig, target string) bool {
	for _, v := range s.Volumes {
		if v.Target == target {
			return true
		}
	}
	return false
}

// mountSource is the host file bind-mounted at target, "" if none.
func mountSource(s types.ServiceConfig, target string) string {
	for _, v := range s.Volumes {
		if v.Type == types.VolumeTypeBind && v.Target == target {
			return v.Source
		}
	}
	return ""
}

func indexOf(list []string, s string) int {
	for i, v := range list {
		if v == s {
			return i
		}
	}
	return -1
}

func keys[V any](m map[string]V) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

func keysOf(m map[string]bool) []string { return keys(m) }

// TestDockerfile checks the image recipe, then builds the binary the way it
// does and checks what the flags promise; with a container engine it also
// builds the image itself.
func TestDockerfile(t *testing.T) {
	root := repoRoot(t)
	b, err := os.ReadFile(filepath.Join(root, "deploy", "Dockerfile"))
	if err != nil {
		t.Fatal(err)
	}
	df := string(b)
	stages := regexp.MustCompile(`(?m)^FROM\s+(?:--platform=\S+\s+)?(\S+)`).FindAllStringSubmatch(df, -1)
	if len(stages) < 2 {
		t.Fatalf("deploy/Dockerfile has %d stages, want a build stage and a final one", len(stages))
	}
	final := stages[len(stages)-1][1]
	if !strings.HasPrefix(final, "gcr.io/distroless/static") && final != "scratch" {
		t.Errorf("final image %s, want distroless/static or scratch", final)
	}
	final = df[strings.LastIndex(df, "\nFROM "):]
	user := regexp.MustCompile(`(?m)^USER\s+(\S+)`).FindStringSubmatch(final)
	if user == nil || strings.HasPrefix(user[1], "0") || strings.HasPrefix(user[1], "root") {
		t.Errorf("final stage USER %v, want a numeric non-root user", user)
	}
	if !regexp.MustCompile(`(?s)HEALTHCHECK.*CMD \["/usr/local/bin/llmgate", "healthcheck"\]`).MatchString(final) {
		t.Error(`final stage has no HEALTHCHECK CMD ["/usr/local/bin/llmgate", "healthcheck"]`)
	}
	for _, want := range []string{"CGO_ENABLED=0", "-trimpath", "-X main.version=${VERSION}", "-X main.commit=${COMMIT}", "./cmd/llmgate"} {
		if !strings.Contains(df, want) {
			t.Errorf("deploy/Dockerfile's build does not use %s", want)
		}
	}
	ignore, err := os.ReadFile(filepath.Join(root, ".dockerignore"))
	if err != nil || !regexp.MustCompile(`(?m)^\.env$`).Match(ignore) || !regexp.MustCompile(`(?m)^\.git$`).Match(ignore) {
		t.Errorf(".dockerignore must keep .env and .git out of the build context (err %v)", err)
	}

	t.Run("static binary", func(t *testing.T) {
		if testing.Short() {
			t.Skip("-short: skipping the trimpath rebuild of the binary")
		}
		bin := filepath.Join(t.TempDir(), "llmgate")
		build := exec.Command("go", "build", "-trimpath", "-buildvcs=false",
			"-ldflags", "-s -w -X main.version=v9.8.7 -X main.commit=0123abc", "-o", bin, ".")
		build.Env = append(os.Environ(), "CGO_ENABLED=0")
		if out, err := build.CombinedOutput(); err != nil {
			t.Fatalf("go build as the Dockerfile does: %v\n%s", err, out)
		}
		out, err := exec.Command(bin, "version").CombinedOutput()
		if err != nil || !strings.HasPrefix(string(out), "llmgate v9.8.7 (commit 0123abc,") {
			t.Errorf("llmgate version = %q (%v), want the stamped version and commit", out, err)
		}
		f, err := elf.Open(bin)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		for _, p := range f.Progs {
			if p.Type == elf.PT_INTERP || p.Type == elf.PT_DYNAMIC {
				t.Errorf("the binary is dynamically linked (%v); distroless/static has no libc", p.Type)
			}
		}
	})

	t.Run("image", func(t *testing.T) {
		if err := exec.Command("docker", "info").Run(); err != nil {
			t.Skipf("no container engine here (docker info: %v); the image build is checked where one exists", err)
		}
		tag := "llmgate-test:" + fmt.Sprint(time.Now().UnixNano())
		build := exec.Command("docker", "build", "-f", "deploy/Dockerfile", "--build-arg", "VERSION=v9.8.7",
			"--build-arg", "COMMIT=0123abc", "-t", tag, ".")
		build.Dir = root
		if out, err := build.CombinedOutput(); err != nil {
			t.Fatalf("docker build: %v\n%s", err, out)
		}
		t.Cleanup(func() { exec.Command("docker", "rmi", "-f", tag).Run() })
		out, err := exec.Command("docker", "run", "--rm", tag, "version").CombinedOutput()
		if err != nil || !strings.HasPrefix(string(out), "llmgate v9.8.7 (commit 0123abc,") {
			t.Errorf("docker run %s version = %q (%v)", tag, out, err)
		}
		out, _ = exec.Command("docker", "image", "inspect", "-f", "{{.Config.User}} {{json .Config.Healthcheck.Test}}", tag).CombinedOutput()
		if !strings.HasPrefix(string(out), "65532:65532 ") || !strings.Contains(string(out), "healthcheck") {
			t.Errorf("image user and healthcheck: %s", out)
		}
	})
}

// renderChart runs helm template on the chart with the given values files
// and --set flags and decodes every object.
func renderChart(t *testing.T, helm, chart string, args ...string) ([]map[string]any, error) {
	t.Helper()
	cmd := exec.Command(helm, append([]string{"template", "gw", chart, "--namespace", "llm", "--kube-version", "1.31.0"}, args...)...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("helm template %v: %v\n%s", args, err, stderr.String())
	}
	var objs []map[string]any
	dec := yaml.NewDecoder(bytes.NewReader(out))
	for {
		var o map[string]any
		if err := dec.Decode(&o); errors.Is(err, io.EOF) {
			break
		} else if err != nil {
			t.Fatalf("helm template output is not YAML: %v\n%s", err, out)
		}
		if o != nil {
			objs = append(objs, o)
		}
	}
	return objs, nil
}

// helmBinary finds helm, or skips (fails under LLMGATE_TEST_REQUIRE_HELM=1).
func helmBinary(t *testing.T) string {
	t.Helper()
	helm, err := exec.LookPath("helm")
	if err != nil {
		if os.Getenv("LLMGATE_TEST_REQUIRE_HELM") == "1" {
			t.Fatal("helm is not on PATH and LLMGATE_TEST_REQUIRE_HELM=1 (go install helm.sh/helm/v3/cmd/helm@v3.22.0)")
		}
		t.Skip("helm is not on PATH: go install helm.sh/helm/v3/cmd/helm@v3.22.0 to test the chart")
	}
	return helm
}

// objects indexes rendered objects by kind and name.
type objects map[string]map[string]any

func index(objs []map[string]any) objects {
	idx := objects{}
	for _, o := range objs {
		idx[str(o, "kind")+"/"+str(o, "metadata", "name")] = o
	}
	return idx
}

func (idx objects) one(t *testing.T, kind string) map[string]any {
	t.Helper()
	var found []map[string]any
	for k, o := range idx {
		if strings.HasPrefix(k, kind+"/") {
			found = append(found, o)
		}
	}
	if len(found) != 1 {
		t.Fatalf("rendered %d objects of kind %s, want 1 (have %v)", len(found), kind, keys(idx))
	}
	return found[0]
}

// get walks nested maps and lists (by int index).
func field(v any, path ...any) any {
	for _, p := range path {
		switch k := p.(type) {
		case string:
			m, _ := v.(map[string]any)
			v = m[k]
		case int:
			l, _ := v.([]any)
			if k >= len(l) {
				return nil
			}
			v = l[k]
		}
	}
	return v
}

func str(v any, path ...any) string {
	s, _ := field(v, path...).(string)
	return s
}

func num(v any, path ...any) int {
	switch n := field(v, path...).(type) {
	case int:
		return n
	case float64:
		return int(n)
	}
	return -1
}

// subset reports whether every key of sub has the same value in m.
func subset(sub, m any) bool {
	sm, _ := sub.(map[string]any)
	mm, _ := m.(map[string]any)
	if len(sm) == 0 {
		return false
	}
	for k, v := range sm {
		if mm[k] != v {
			return false
		}
	}
	return true
}

var apiVersions = map[string]string{
	"Deployment": "apps/v1", "Service": "v1", "ConfigMap": "v1", "Secret": "v1", "ServiceAccount": "v1",
	"PodDisruptionBudget": "policy/v1", "Ingress": "networking.k8s.io/v1", "NetworkPolicy": "networking.k8s.io/v1",
	"HorizontalPodAutoscaler": "autoscaling/v2", "ServiceMonitor": "monitoring.coreos.com/v1",
	"PrometheusRule": "monitoring.coreos.com/v1",
}

func TestHelmChart(t *testing.T) {
	helm := helmBinary(t)
	root := repoRoot(t)
	chart := filepath.Join(root, "deploy", "helm", "llmgate")
	ha := filepath.Join(chart, "ci", "ha-values.yaml")

	for _, args := range [][]string{nil, {"-f", ha}} {
		cmd := exec.Command(helm, append([]string{"lint", "--strict", chart}, args...)...)
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Errorf("helm lint --strict %v: %v\n%s", args, err, out)
		}
	}

	// Values the tests give for the secrets an operator must supply.
	secretEnv := map[string]string{
		"LLMGATE_SECRET":             strings.Repeat("s", 48),
		"LLMGATE_OIDC_CLIENT_SECRET": "client-secret",
		"LLMGATE_UPSTREAM_API_KEY":   "sk-virtual-key",
		"LLMGATE_REDIS_URL":          "redis://:pw@redis:6379/0",
	}
	cases := []struct {
		name     string
		args     []string
		replicas int // 0: an HPA decides
		secret   string
	}{
		{"default", []string{"--set", "secret.oidcClientSecret=client-secret"}, 2, "gw-llmgate"},
		{"ha", []string{"-f", ha}, 0, "llmgate-secrets"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			objs, err := renderChart(t, helm, chart, tc.args...)
			if err != nil {
				t.Fatal(err)
			}
			idx := index(objs)
			for k, o := range idx {
				kind := str(o, "kind")
				if want, ok := apiVersions[kind]; !ok || str(o, "apiVersion") != want {
					t.Errorf("%s: apiVersion %q, want %q (kind known: %v)", k, str(o, "apiVersion"), want, ok)
				}
				if str(o, "metadata", "name") == "" {
					t.Errorf("%s has no metadata.name", k)
				}
			}
			dep := idx.one(t, "Deployment")
			pod := field(dep, "spec", "template")
			podLabels := field(pod, "metadata", "labels")
			if !subset(field(dep, "spec", "selector", "matchLabels"), podLabels) {
				t.Errorf("Deployment selector %v does not match its pod labels %v", field(dep, "spec", "selector", "matchLabels"), podLabels)
			}
			if got := num(dep, "spec", "replicas"); tc.replicas != 0 && got != tc.replicas {
				t.Errorf("replicas = %d, want %d", got, tc.replicas)
			}
			if tc.replicas == 0 {
				hpa := idx.one(t, "HorizontalPodAutoscaler")
				if field(dep, "spec", "replicas") != nil || num(hpa, "spec", "minReplicas") < 2 {
					t.Errorf("with autoscaling: Deployment replicas %v (want none), HPA minReplicas %d (want ≥ 2)", field(dep, "spec", "replicas"), num(hpa, "spec", "minReplicas"))
				}
			}
			svc := idx.one(t, "Service")
			if !subset(field(svc, "spec", "selector"), podLabels) {
				t.Errorf("Service selector %v does not match the pods %v", field(svc, "spec", "selector"), podLabels)
			}
			pdb := idx.one(t, "PodDisruptionBudget")
			if !subset(field(pdb, "spec", "selector", "matchLabels"), podLabels) || num(pdb, "spec", "maxUnavailable") != 1 {
				t.Errorf("PodDisruptionBudget %v, want maxUnavailable 1 over the gateway's pods", field(pdb, "spec"))
			}

			// Security context: non-root, read-only root, no privilege escalation.
			if field(pod, "spec", "securityContext", "runAsNonRoot") != true || num(pod, "spec", "securityContext", "runAsUser") < 1 {
				t.Errorf("pod securityContext %v, want runAsNonRoot and a non-zero runAsUser", field(pod, "spec", "securityContext"))
			}
			if field(pod, "spec", "automountServiceAccountToken") != false {
				t.Error("the pod mounts a Kubernetes API token it never uses")
			}
			ctr := field(pod, "spec", "containers", 0)
			sc := field(ctr, "securityContext")
			if field(sc, "readOnlyRootFilesystem") != true || field(sc, "allowPrivilegeEscalation") != false ||
				field(sc, "runAsNonRoot") != true || !containsAny(field(sc, "capabilities", "drop"), "ALL") {
				t.Errorf("container securityContext %v", sc)
			}

			// Probes on the port the container declares.
			if str(ctr, "ports", 0, "name") != "http" || num(ctr, "ports", 0, "containerPort") != 8080 {
				t.Errorf("container ports %v, want http 8080", field(ctr, "ports"))
			}
			for probe, path := range map[string]string{"readinessProbe": "/readyz", "livenessProbe": "/healthz", "startupProbe": "/healthz"} {
				if str(ctr, probe, "httpGet", "path") != path || str(ctr, probe, "httpGet", "port") != "http" {
					t.Errorf("%s = %v, want GET %s on port http", probe, field(ctr, probe), path)
				}
			}

			// Configuration: ConfigMap + Secret, loaded as the gateway does.
			cm := idx["ConfigMap/"+str(dep, "metadata", "name")]
			if cm == nil {
				t.Fatalf("no ConfigMap named like the Deployment; have %v", keys(idx))
			}
			if str(ctr, "envFrom", 0, "configMapRef", "name") != str(cm, "metadata", "name") {
				t.Errorf("envFrom %v does not name ConfigMap %s", field(ctr, "envFrom"), str(cm, "metadata", "name"))
			}
			if got := str(ctr, "envFrom", 1, "secretRef", "name"); got != tc.secret {
				t.Errorf("envFrom secretRef %q, want %q", got, tc.secret)
			}
			env := map[string]string{}
			for k, v := range field(cm, "data").(map[string]any) {
				env[k] = fmt.Sprint(v)
			}
			if s, ok := idx["Secret/"+tc.secret]; ok {
				for k, v := range field(s, "data").(map[string]any) {
					dec, err := decodeB64(fmt.Sprint(v))
					if err != nil {
						t.Fatalf("Secret %s key %s: %v", tc.secret, k, err)
					}
					env[k] = dec
				}
				if len(env["LLMGATE_SECRET"]) < minSecretLen {
					t.Errorf("generated LLMGATE_SECRET has %d bytes, want ≥ %d", len(env["LLMGATE_SECRET"]), minSecretLen)
				}
			} else {
				for k, v := range secretEnv {
					if _, set := env[k]; !set {
						env[k] = v
					}
				}
			}
			if file := env[configEnv]; file != "" {
				fcm, ok := idx["ConfigMap/"+str(cm, "metadata", "name")+"-file"]
				if !ok || !mountsConfigMap(pod, ctr, filepath.Dir(file), str(fcm, "metadata", "name")) {
					t.Fatalf("%s=%s, but no ConfigMap with the file is mounted there", configEnv, file)
				}
				local := filepath.Join(t.TempDir(), "config.yaml")
				os.WriteFile(local, []byte(str(fcm, "data", "config.yaml")), 0o600)
				env[configEnv] = local
			}
			cfg, warnings, err := loadEnvConfig(env)
			if err != nil {
				t.Fatalf("the chart's environment does not pass the gateway's configuration check:\n%v", err)
			}
			if len(warnings) > 0 {
				t.Errorf("configuration warnings: %v", warnings)
			}

			// Grace: the pod outlives the preStop sleep plus the streams' drain.
			sleep := num(ctr, "lifecycle", "preStop", "sleep", "seconds")
			grace := num(pod, "spec", "terminationGracePeriodSeconds")
			if sleep <= 0 || time.Duration(grace)*time.Second <= time.Duration(sleep)*time.Second+cfg.ShutdownGrace {
				t.Errorf("terminationGracePeriodSeconds %d, preStop sleep %ds, LLMGATE_SHUTDOWN_GRACE %v: the grace period must exceed the other two together", grace, sleep, cfg.ShutdownGrace)
			}

			if tc.name != "ha" {
				return
			}
			if cfg.RedisSentinelMaster == "" || len(cfg.RedisAddrs) != 3 {
				t.Errorf("HA values: Sentinel master %q, addrs %v", cfg.RedisSentinelMaster, cfg.RedisAddrs)
			}
			if !strings.Contains(str(ctr, "image"), "@sha256:") {
				t.Errorf("image %q, want pinned by digest", str(ctr, "image"))
			}
			ing := idx.one(t, "Ingress")
			if str(ing, "spec", "rules", 0, "http", "paths", 0, "backend", "service", "name") != str(svc, "metadata", "name") ||
				str(ing, "spec", "rules", 0, "http", "paths", 0, "backend", "service", "port", "name") != str(svc, "spec", "ports", 0, "name") {
				t.Errorf("Ingress backend %v is not the Service", field(ing, "spec", "rules", 0, "http", "paths", 0, "backend"))
			}
			sm := idx.one(t, "ServiceMonitor")
			if !subset(field(sm, "spec", "selector", "matchLabels"), field(svc, "metadata", "labels")) ||
				str(sm, "spec", "endpoints", 0, "port") != str(svc, "spec", "ports", 0, "name") || str(sm, "spec", "endpoints", 0, "path") != "/metrics" {
				t.Errorf("ServiceMonitor %v does not scrape the Service's /metrics", field(sm, "spec"))
			}
			pr := idx.one(t, "PrometheusRule")
			if rules, _ := field(pr, "spec", "groups", 0, "rules").([]any); len(rules) == 0 {
				t.Errorf("PrometheusRule has no rules: %v", field(pr, "spec"))
			}
			np := idx.one(t, "NetworkPolicy")
			if !subset(field(np, "spec", "podSelector", "matchLabels"), podLabels) || str(np, "spec", "ingress", 0, "ports", 0, "port") != "http" {
				t.Errorf("NetworkPolicy %v does not guard the gateway's port", field(np, "spec"))
			}
			if !containsAny(field(np, "spec", "policyTypes"), "Egress") || num(np, "spec", "egress", 0, "ports", 0, "port") != 53 {
				t.Errorf("NetworkPolicy with egress rules must allow DNS first: %v", field(np, "spec", "egress"))
			}
		})
	}

	t.Run("refuses a grace period streams cannot drain in", func(t *testing.T) {
		_, err := renderChart(t, helm, chart, "--set", "shutdownGraceSeconds=30", "--set", "preStopSleepSeconds=10", "--set", "terminationGracePeriodSeconds=35")
		if err == nil || !strings.Contains(err.Error(), "terminationGracePeriodSeconds") {
			t.Errorf("helm template with terminationGracePeriodSeconds 35 < 10 + 30: err = %v, want a message naming terminationGracePeriodSeconds", err)
		}
	})
	t.Run("refuses unknown env names", func(t *testing.T) {
		_, err := renderChart(t, helm, chart, "--set", "env.ADMIN_EMAILS=a@example.com")
		if err == nil || !strings.Contains(err.Error(), "ADMIN_EMAILS") {
			t.Errorf("helm template with env.ADMIN_EMAILS: err = %v, want a message naming it", err)
		}
	})
}

func mountsConfigMap(pod, ctr any, dir, name string) bool {
	vol := ""
	for _, m := range asList(field(ctr, "volumeMounts")) {
		if str(m, "mountPath") == dir {
			vol = str(m, "name")
		}
	}
	for _, v := range asList(field(pod, "spec", "volumes")) {
		if vol != "" && str(v, "name") == vol && str(v, "configMap", "name") == name {
			return true
		}
	}
	return false
}

func asList(v any) []any {
	l, _ := v.([]any)
	return l
}

func containsAny(list any, s string) bool {
	for _, v := range asList(list) {
		if v == s {
			return true
		}
	}
	return false
}

func decodeB64(s string) (string, error) {
	b, err := base64.StdEncoding.DecodeString(s)
	return string(b), err
}

// metricFamily is one family scraped from /metrics: its type and every
// label name its series carry.
type metricFamily struct {
	typ    string
	labels map[string]bool
}

// scrapeMetrics parses the Prometheus text format.
func scrapeMetrics(t *testing.T, u string) map[string]*metricFamily {
	t.Helper()
	resp, err := http.Get(u)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	fams := map[string]*metricFamily{}
	sampleRE := regexp.MustCompile(`^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? `)
	labelRE := regexp.MustCompile(`([a-zA-Z_][a-zA-Z0-9_]*)="`)
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if f, ok := strings.CutPrefix(line, "# TYPE "); ok {
			name, typ, _ := strings.Cut(f, " ")
			fams[name] = &metricFamily{typ: typ, labels: map[string]bool{}}
			continue
		}
		m := sampleRE.FindStringSubmatch(line)
		if m == nil {
			continue
		}
		fam := fams[familyOf(m[1], fams)]
		if fam == nil {
			continue
		}
		for _, l := range labelRE.FindAllStringSubmatch(m[2], -1) {
			fam.labels[l[1]] = true
		}
	}
	return fams
}

// familyOf maps a series name to its family: histograms and summaries
// export name_bucket, name_sum and name_count.
func familyOf(series string, fams map[string]*metricFamily) string {
	if _, ok := fams[series]; ok {
		return series
	}
	for _, suffix := range []string{"_bucket", "_sum", "_count"} {
		if base, ok := strings.CutSuffix(series, suffix); ok {
			if f := fams[base]; f != nil && (f.typ == "histogram" || f.typ == "summary") {
				return base
			}
		}
	}
	return series
}

// checkQueries reports every metric a PromQL expression names that /metrics
// does not export, and every label matcher on a label the metric lacks.
// Prometheus adds job and instance; synthetic lists series Prometheus makes
// itself (up).
func checkQueries(t *testing.T, where string, exprs []string, fams map[string]*metricFamily, synthetic ...string) {
	t.Helper()
	metricRE := regexp.MustCompile(`\b([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})?`)
	matcherRE := regexp.MustCompile(`([a-zA-Z_][a-zA-Z0-9_]*)\s*(?:=~|!~|!=|=)\s*"`)
	named := 0
	for _, e := range exprs {
		for _, m := range metricRE.FindAllStringSubmatch(e, -1) {
			name := m[1]
			isMetric := contains(synthetic, name)
			for _, p := range []string{"llmgate_", "go_", "process_", "promhttp_"} {
				isMetric = isMetric || strings.HasPrefix(name, p)
			}
			if !isMetric {
				continue
			}
			named++
			if contains(synthetic, name) {
				continue
			}
			fam := fams[familyOf(name, fams)]
			if fam == nil {
				t.Errorf("%s: query names %s, which /metrics does not export:\n%s", where, name, e)
				continue
			}
			for _, l := range matcherRE.FindAllStringSubmatch(m[2], -1) {
				if l[1] == "job" || l[1] == "instance" || (l[1] == "le" && strings.HasSuffix(name, "_bucket")) {
					continue
				}
				if !fam.labels[l[1]] {
					t.Errorf("%s: %s has no label %q (labels: %v):\n%s", where, name, l[1], keysOf(fam.labels), e)
				}
			}
		}
	}
	if named == 0 {
		t.Errorf("%s: no query names an llmgate metric", where)
	}
}

// TestDashboardAndAlerts checks deploy/grafana/llmgate.json and the alert
// rules against the metrics a running gateway exports after it has served
// sign-ins, a proxied call and a refusal.
func TestDashboardAndAlerts(t *testing.T) {
	root := repoRoot(t)
	s := start(t, []string{"HOME=" + t.TempDir(), "PATH=" + os.Getenv("PATH")}, "dev", "--listen", "127.0.0.1:0")
	var gw string
	for gw == "" {
		line, err := s.stdout.ReadString('\n')
		if err != nil {
			t.Fatalf("reading llmgate dev output: %v", err)
		}
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), "gateway:"); ok {
			gw = strings.TrimSpace(v)
		}
	}
	waitHealthy(t, gw)

	// Exercise the gateway so that every labelled series exists.
	b := webtest.NewBrowser(t)
	alice := devidp.DemoUsers()[0]
	if p := b.SubmitLogin(b.Get(gw+"/"), alice.Email, alice.Password); p.URL.String() != gw+"/" {
		t.Fatalf("sign-in ended at %s (%d)", p.URL, p.Status)
	}
	var me struct {
		CSRF string `json:"csrf_token"`
	}
	json.Unmarshal([]byte(b.Get(gw+"/api/me").Body), &me)
	req, _ := http.NewRequest(http.MethodPost, gw+"/api/tokens", strings.NewReader(`{"name":"metrics","ttl":"1d"}`))
	req.Header.Set("X-CSRF-Token", me.CSRF)
	req.Header.Set("Content-Type", "application/json")
	var created struct{ Token string }
	if p := b.Do(req); json.Unmarshal([]byte(p.Body), &created) != nil || created.Token == "" {
		t.Fatalf("POST /api/tokens: %d %s", p.Status, p.Body)
	}
	for _, token := range []string{created.Token, "not-a-token"} {
		req, _ := http.NewRequest(http.MethodPost, gw+"/v1/chat/completions",
			strings.NewReader(`{"model":"gpt-4o-mini","messages":[{"role":"user","content":"hi"}]}`))
		req.Header.Set("Authorization", "Bearer "+token)
		req.Header.Set("Content-Type", "application/json")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
	fams := scrapeMetrics(t, gw+"/metrics")
	for _, want := range []string{"llmgate_proxy_requests_total", "llmgate_proxy_refusals_total", "llmgate_proxy_duration_seconds", "llmgate_http_requests_total"} {
		if fams[want] == nil {
			t.Fatalf("/metrics lacks %s after a proxied call and a refusal; families: %v", want, keys(fams))
		}
	}

	t.Run("grafana", func(t *testing.T) {
		raw, err := os.ReadFile(filepath.Join(root, "deploy", "grafana", "llmgate.json"))
		if err != nil {
			t.Fatal(err)
		}
		var dash struct {
			UID        string `json:"uid"`
			Title      string `json:"title"`
			Templating struct {
				List []struct {
					Name  string `json:"name"`
					Query any    `json:"query"`
				} `json:"list"`
			} `json:"templating"`
			Panels []struct {
				Title      string          `json:"title"`
				Type       string          `json:"type"`
				Datasource json.RawMessage `json:"datasource"`
				GridPos    *struct{ W, H int }
				Targets    []struct {
					Expr string `json:"expr"`
				} `json:"targets"`
			} `json:"panels"`
		}
		dec := json.NewDecoder(bytes.NewReader(raw))
		if err := dec.Decode(&dash); err != nil {
			t.Fatalf("deploy/grafana/llmgate.json does not parse: %v", err)
		}
		if dash.UID == "" || dash.Title == "" || len(dash.Panels) == 0 {
			t.Fatalf("dashboard uid %q title %q with %d panels", dash.UID, dash.Title, len(dash.Panels))
		}
		vars := map[string]bool{"__rate_interval": true, "__interval": true, "__range": true}
		var exprs []string
		for _, v := range dash.Templating.List {
			vars[v.Name] = true
			if q, ok := v.Query.(map[string]any); ok {
				exprs = append(exprs, fmt.Sprint(q["query"]))
			}
		}
		for _, p := range dash.Panels {
			if p.GridPos == nil || p.GridPos.W == 0 || len(p.Datasource) == 0 || len(p.Targets) == 0 {
				t.Errorf("panel %q lacks a position, a data source or a query", p.Title)
			}
			for _, tg := range p.Targets {
				exprs = append(exprs, tg.Expr)
				for _, m := range regexp.MustCompile(`\$\{?([a-zA-Z_]+)`).FindAllStringSubmatch(tg.Expr, -1) {
					if !vars[m[1]] {
						t.Errorf("panel %q uses $%s, which the dashboard does not define", p.Title, m[1])
					}
				}
			}
		}
		checkQueries(t, "grafana dashboard", exprs, fams)
	})

	t.Run("alerts", func(t *testing.T) {
		raw, err := os.ReadFile(filepath.Join(root, "deploy", "helm", "llmgate", "files", "prometheus-rules.yaml"))
		if err != nil {
			t.Fatal(err)
		}
		var rules struct {
			Groups []struct {
				Rules []struct {
					Alert, Expr string
					Labels      map[string]string
				}
			}
		}
		if err := yaml.Unmarshal(raw, &rules); err != nil || len(rules.Groups) == 0 {
			t.Fatalf("alert rules: %v (%d groups)", err, len(rules.Groups))
		}
		var exprs []string
		for _, g := range rules.Groups {
			for _, r := range g.Rules {
				if r.Alert == "" || r.Expr == "" || r.Labels["severity"] == "" {
					t.Errorf("rule %+v lacks a name, an expression or a severity", r)
				}
				exprs = append(exprs, r.Expr)
			}
		}
		checkQueries(t, "alert rules", exprs, fams, "up")
		// Refusal reasons the rules filter on are codes the gateway uses.
		src, _ := os.ReadFile(filepath.Join(root, "gateway", "errors.go"))
		proxy, _ := os.ReadFile(filepath.Join(root, "gateway", "proxy.go"))
		for _, m := range regexp.MustCompile(`reason=~?"([^"]+)"`).FindAllStringSubmatch(string(raw), -1) {
			for _, code := range strings.Split(m[1], "|") {
				if !bytes.Contains(src, []byte(`"`+code+`"`)) && !bytes.Contains(proxy, []byte(`"`+code+`"`)) {
					t.Errorf("alert rules filter on refusal reason %q, which the gateway never uses", code)
				}
			}
		}
	})
}
