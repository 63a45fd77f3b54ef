package main

import (
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	collogs "go.opentelemetry.io/proto/otlp/collector/logs/v1"
	colmetrics "go.opentelemetry.io/proto/otlp/collector/metrics/v1"
	resourcepb "go.opentelemetry.io/proto/otlp/resource/v1"
	"google.golang.org/protobuf/proto"

	"github.com/llmgate/llmgate/internal/demoupstream"
	"github.com/llmgate/llmgate/internal/devidp"
	"github.com/llmgate/llmgate/internal/redistest"
	"github.com/llmgate/llmgate/internal/webtest"
)

// claudeCodeVersion is the Claude Code release SPEC §8 was checked against.
const claudeCodeVersion = "2.1.328"

// managedSettingsFile is where Claude Code reads managed settings on Linux.
// Its release builds ignore CLAUDE_CODE_MANAGED_SETTINGS_PATH (the
// override is compiled out), so the test has to write the real file.
const managedSettingsFile = "/etc/claude-code/managed-settings.json"

// TestRealClaudeCode signs the real Claude Code in to `llmgate serve` the
// way a developer does — managed settings forcing the gateway sign-in,
// /login, the code approved in the browser by alice — then sends a prompt
// and checks that it reached the upstream as alice's. It needs npm, tmux
// and network access to the npm registry, and writes the machine-wide
// managed settings file, so it runs only with LLMGATE_TEST_CLAUDE_CODE=1.
func TestRealClaudeCode(t *testing.T) {
	cc := startClaudeCode(t, claudeCodeOptions{})
	cc.signIn()
	tm, up, home := cc.tm, cc.up, cc.home

	const prompt = "Say hello to the llmgate test"
	up.Reset()
	tm.send(prompt)
	tm.keys("Enter")
	tm.waitFor(`Hello alice@example\.com`)
	var found bool
	for _, r := range up.Requests() {
		if r.Path == "/v1/messages" && strings.Contains(string(r.Body), prompt) {
			found = true
			if got := r.Header.Get("X-Llmgate-User-Email"); got != "alice@example.com" {
				t.Errorf("the prompt reached the upstream as %q, want alice@example.com", got)
			}
			if r.Header.Get("Authorization") != "" || r.Header.Get("X-Api-Key") != "" {
				t.Error("Claude Code's access token reached the upstream")
			}
		}
	}
	// The client keeps the managed settings it got in its home. (2.1.328
	// keeps them even when the checksum does not match its own: the
	// checksum is not what this proves; TestManagedSettings pins it.)
	if kept, err := os.ReadFile(filepath.Join(home, ".claude", "remote-settings.json")); err != nil || !regexp.MustCompile(`"cleanupPeriodDays":\s*45`).Match(kept) {
		t.Errorf("Claude Code did not keep the policy's settings: %v %s", err, kept)
	}
	if !found {
		t.Errorf("the upstream did not get the prompt; it got %d requests", len(up.Requests()))
	}
	// Its telemetry reached the collector through the gateway, stamped
	// with alice's email.
	col := cc.col
	deadline := time.Now().Add(30 * time.Second)
	for col.stamped("alice@example.com") == 0 && time.Now().Before(deadline) {
		time.Sleep(200 * time.Millisecond)
	}
	t.Logf("telemetry exports: %v", col.paths())
	if n := col.stamped("alice@example.com"); n <= 0 {
		t.Errorf("no telemetry export with user.email alice@example.com (and no other email) reached the collector; it got %v", col.paths())
	}
	if log := cc.gw.stderr.String(); !strings.Contains(log, `"route":"/managed/settings","path":"/managed/settings","status":200`) {
		t.Errorf("Claude Code did not load its managed settings (200) from the gateway; log:\n%s", log)
	}
}

// claudeCodeOptions varies the gateway and upstream a real Claude Code
// runs against.
type claudeCodeOptions struct {
	// policyYAML is added to the example.com Claude Code policy, indented
	// as its other keys ("      key: value\n").
	policyYAML string
	// costUSD is the cost the upstream reports for every answer.
	costUSD float64
}

// claudeCode is a real Claude Code in tmux, before sign-in, with managed
// settings pointing it at a running `llmgate serve`.
type claudeCode struct {
	t      *testing.T
	public string // the gateway's URL
	gw     *started
	up     *demoupstream.Server
	col    *otlpCollector
	home   string // the client's HOME
	tm     *tmuxScreen
}

// startClaudeCode skips the test unless LLMGATE_TEST_CLAUDE_CODE=1, then
// starts the gateway with its identity provider, upstream, store and OTLP
// collector, writes the managed settings (removed when t ends) and starts
// Claude Code in tmux on an isolated home.
func startClaudeCode(t *testing.T, opts claudeCodeOptions) *claudeCode {
	t.Helper()
	if os.Getenv("LLMGATE_TEST_CLAUDE_CODE") != "1" {
		t.Skip("set LLMGATE_TEST_CLAUDE_CODE=1 to run the real Claude Code " + claudeCodeVersion + " against the gateway (needs npm, tmux, registry access and a writable " + managedSettingsFile + ")")
	}
	for _, bin := range []string{"npm", "tmux"} {
		if _, err := exec.LookPath(bin); err != nil {
			t.Fatalf("LLMGATE_TEST_CLAUDE_CODE=1 but %s is not on PATH", bin)
		}
	}
	if _, err := os.Stat(managedSettingsFile); err == nil {
		t.Fatalf("%s exists already: the test will not overwrite this machine's Claude Code policy; move it away to run the test", managedSettingsFile)
	}
	claude := installClaudeCode(t)

	// The gateway, its identity provider, upstream and store.
	rs := redistest.Mini(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	public := "http://" + addr // Claude Code accepts http on loopback only
	idp, err := devidp.Start("127.0.0.1:0", devidp.Config{
		Clients: []devidp.Client{{ID: "gw", Secret: "gw-secret", RedirectURIs: []string{public + "/oauth2/callback"}}},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { idp.Close() })
	up, upURL, closeUp, err := demoupstream.Start("127.0.0.1:0", demoupstream.Options{CostUSD: opts.costUSD})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { closeUp() })
	col := newOTLPCollector(t)
	gw := start(t, []string{
		"LLMGATE_OTLP_ENDPOINT=" + col.srv.URL,
		"HOME=" + t.TempDir(),
		"LLMGATE_LISTEN=" + addr,
		"LLMGATE_PUBLIC_URL=" + public,
		"LLMGATE_SECRET=" + strings.Repeat("k", 40),
		"LLMGATE_REDIS_URL=redis://" + rs.Addr + "/0",
		"LLMGATE_OIDC_ISSUER=" + idp.Issuer(),
		"LLMGATE_OIDC_CLIENT_ID=gw",
		"LLMGATE_OIDC_CLIENT_SECRET=gw-secret",
		"LLMGATE_UPSTREAM_URL=" + upURL,
		"LLMGATE_LOG_FORMAT=json",
		// A policy for alice (example.com), so the client gets settings
		// at start-up.
		"LLMGATE_CONFIG=" + writeYAML(t, "claude_code:\n  policies:\n    - match: {email_domains: [example.com]}\n      settings: {cleanupPeriodDays: 45}\n"+opts.policyYAML),
	}, "serve")
	waitHealthy(t, public)

	// Managed settings forcing the gateway sign-in, removed afterwards.
	if err := os.MkdirAll(filepath.Dir(managedSettingsFile), 0o755); err != nil {
		t.Fatalf("cannot create %s (run as root): %v", filepath.Dir(managedSettingsFile), err)
	}
	ms, _ := json.Marshal(map[string]string{"forceLoginMethod": "gateway", "forceLoginGatewayUrl": public})
	if err := os.WriteFile(managedSettingsFile, ms, 0o644); err != nil {
		t.Fatalf("write %s: %v", managedSettingsFile, err)
	}
	t.Cleanup(func() {
		os.Remove(managedSettingsFile)
		os.Remove(filepath.Dir(managedSettingsFile)) // only if empty
	})

	// An isolated home that has done the first-run onboarding and trusts
	// the work directory, so the session opens on the prompt.
	home, work := t.TempDir(), t.TempDir()
	state, _ := json.Marshal(map[string]any{
		"hasCompletedOnboarding": true, "lastOnboardingVersion": claudeCodeVersion, "theme": "dark",
		"projects": map[string]any{work: map[string]any{"hasTrustDialogAccepted": true}},
	})
	if err := os.WriteFile(filepath.Join(home, ".claude.json"), state, 0o600); err != nil {
		t.Fatal(err)
	}
	session := fmt.Sprintf("llmgate-claude-%d", os.Getpid())
	// Telemetry to the gateway, flushed every second.
	otel := "CLAUDE_CODE_ENABLE_TELEMETRY=1 OTEL_METRICS_EXPORTER=otlp OTEL_LOGS_EXPORTER=otlp " +
		"OTEL_EXPORTER_OTLP_PROTOCOL=http/protobuf OTEL_EXPORTER_OTLP_ENDPOINT=" + public +
		" OTEL_METRIC_EXPORT_INTERVAL=1000 OTEL_LOGS_EXPORT_INTERVAL=1000"
	cmd := fmt.Sprintf("env -i PATH=%s HOME=%s TERM=xterm-256color DISABLE_AUTOUPDATER=1 %s %s; sleep 600",
		os.Getenv("PATH"), home, otel, claude)
	if out, err := exec.Command("tmux", "new-session", "-d", "-s", session, "-x", "200", "-y", "50", "-c", work, cmd).CombinedOutput(); err != nil {
		t.Fatalf("tmux new-session: %v: %s", err, out)
	}
	tm := &tmuxScreen{t: t, session: session}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("Claude Code's screen:\n%s", tm.capture())
		}
		exec.Command("tmux", "kill-session", "-t", session).Run()
	})
	return &claudeCode{t: t, public: public, gw: gw, up: up, col: col, home: home, tm: tm}
}

// signIn signs Claude Code in as alice: /login in the terminal, the code
// approved in her browser, and returns at the prompt.
func (c *claudeCode) signIn() {
	t, tm, public := c.t, c.tm, c.public
	t.Helper()
	tm.waitFor(`Cloud gateway`)
	tm.waitFor(`Not logged in|/login`)
	tm.send("/login")
	tm.keys("Enter")
	tm.waitFor(`Enter to connect`)
	tm.keys("Enter")
	tm.waitFor(`Trust gateway`)
	tm.keys("Up", "Enter") // "Yes, trust this gateway" is above the default "No"
	code := tm.waitFor(`Code:\s+([A-Z0-9]{4}-[A-Z0-9]{4})`)[1]

	// Alice approves the code in her browser.
	b := webtest.NewBrowser(t)
	p := b.SubmitLogin(b.Get(public+"/device?user_code="+url.QueryEscape(code)), "alice@example.com", "alice")
	m := regexp.MustCompile(`name="csrf_token" value="([^"]+)"`).FindStringSubmatch(p.Body)
	if p.Status != http.StatusOK || m == nil || !strings.Contains(p.Body, code) {
		t.Fatalf("device page for %s after alice's sign-in: %d at %s:\n%s", code, p.Status, p.URL, p.Body)
	}
	p = b.PostForm(public+"/device", url.Values{"csrf_token": {m[1]}, "user_code": {code}, "action": {"approve"}},
		http.Header{"Origin": {public}})
	if p.Status != http.StatusOK || !strings.Contains(p.Body, "alice@example.com") {
		t.Fatalf("approve %s: %d %s", code, p.Status, p.Body)
	}

	tm.waitFor(`Signed in to Cloud gateway as alice@example\.com`)
	tm.keys("Up", "Enter") // "Yes, continue"
	tm.waitFor(`Connected to Cloud gateway|Press Enter`)
	tm.keys("Enter")
	tm.waitFor(`Login successful|⏵⏵`)
}

// installClaudeCode installs the pinned Claude Code into a directory kept
// between runs (LLMGATE_TEST_CLAUDE_DIR, default under the user cache) and
// returns the path of its claude command.
func installClaudeCode(t *testing.T) string {
	t.Helper()
	dir := os.Getenv("LLMGATE_TEST_CLAUDE_DIR")
	if dir == "" {
		cache, err := os.UserCacheDir()
		if err != nil {
			cache = os.TempDir()
		}
		dir = filepath.Join(cache, "llmgate-test", "claude-code-"+claudeCodeVersion)
	}
	bin := filepath.Join(dir, "node_modules", ".bin", "claude")
	if out, err := exec.Command(bin, "--version").Output(); err == nil && strings.HasPrefix(string(out), claudeCodeVersion) {
		return bin
	}
	npm := exec.Command("npm", "install", "--no-audit", "--no-fund", "--prefix", dir, "@anthropic-ai/claude-code@"+claudeCodeVersion)
	if out, err := npm.CombinedOutput(); err != nil {
		t.Fatalf("npm install @anthropic-ai/claude-code@%s: %v\n%s", claudeCodeVersion, err, out)
	}
	out, err := exec.Command(bin, "--version").Output()
	if err != nil || !strings.HasPrefix(string(out), claudeCodeVersion) {
		t.Fatalf("%s --version = %q, %v; want %s", bin, out, err, claudeCodeVersion)
	}
	return bin
}

// tmuxScreen drives a program in a tmux session.
type tmuxScreen struct {
	t       *testing.T
	session string
}

func (s *tmuxScreen) capture() string {
	out, _ := exec.Command("tmux", "capture-pane", "-p", "-t", s.session).Output()
	return string(out)
}

// send types text literally.
func (s *tmuxScreen) send(text string) {
	s.t.Helper()
	if out, err := exec.Command("tmux", "send-keys", "-t", s.session, "-l", text).CombinedOutput(); err != nil {
		s.t.Fatalf("tmux send-keys %q: %v: %s", text, err, out)
	}
	time.Sleep(300 * time.Millisecond) // let the input settle before a key
}

// keys presses keys one after the other (tmux key names).
func (s *tmuxScreen) keys(keys ...string) {
	s.t.Helper()
	for _, k := range keys {
		if out, err := exec.Command("tmux", "send-keys", "-t", s.session, k).CombinedOutput(); err != nil {
			s.t.Fatalf("tmux send-keys %s: %v: %s", k, err, out)
		}
		time.Sleep(300 * time.Millisecond)
	}
}

// waitFor waits up to a minute for the screen to match re and returns the
// match and its groups.
func (s *tmuxScreen) waitFor(re string) []string {
	s.t.Helper()
	rx := regexp.MustCompile(re)
	deadline := time.Now().Add(time.Minute)
	for {
		screen := s.capture()
		if m := rx.FindStringSubmatch(screen); m != nil {
			return m
		}
		if time.Now().After(deadline) {
			s.t.Fatalf("Claude Code's screen did not show %q within a minute", re)
		}
		time.Sleep(300 * time.Millisecond)
	}
}

// otlpCollector is a loopback OTLP/HTTP collector that decodes protobuf
// exports with the official types and remembers each resource's user.email.
type otlpCollector struct {
	srv    *httptest.Server
	mu     sync.Mutex
	got    []string // path of every export
	emails []string
}

func newOTLPCollector(t *testing.T) *otlpCollector {
	c := &otlpCollector{}
	c.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		var resources []*resourcepb.Resource
		switch r.URL.Path {
		case "/v1/logs":
			var m collogs.ExportLogsServiceRequest
			if proto.Unmarshal(body, &m) == nil {
				for _, rl := range m.ResourceLogs {
					resources = append(resources, rl.Resource)
				}
			}
		case "/v1/metrics":
			var m colmetrics.ExportMetricsServiceRequest
			if proto.Unmarshal(body, &m) == nil {
				for _, rm := range m.ResourceMetrics {
					resources = append(resources, rm.Resource)
				}
			}
		}
		c.mu.Lock()
		c.got = append(c.got, r.URL.Path+" "+r.Header.Get("Content-Type"))
		for _, res := range resources {
			for _, kv := range res.GetAttributes() {
				if kv.Key == "user.email" {
					c.emails = append(c.emails, kv.GetValue().GetStringValue())
				}
			}
		}
		c.mu.Unlock()
		w.Header().Set("Content-Type", "application/x-protobuf")
	}))
	t.Cleanup(c.srv.Close)
	return c
}

// stamped counts the resources that carried user.email = email.
func (c *otlpCollector) stamped(email string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := 0
	for _, e := range c.emails {
		if e == email {
			n++
		} else {
			return -1 // someone else's email: never
		}
	}
	return n
}

func (c *otlpCollector) paths() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]string(nil), c.got...)
}
