package main

import (
	"bufio"
	"encoding/json"
	"flag"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/llmgate/llmgate/internal/binarytest"
	"github.com/llmgate/llmgate/internal/devidp"
	"github.com/llmgate/llmgate/internal/logtest"
	"github.com/llmgate/llmgate/internal/redistest"
	"github.com/llmgate/llmgate/internal/webtest"
)

// binary is the llmgate built from this tree, once per test run.
var binary string

func TestMain(m *testing.M) {
	flag.Parse()
	if f := flag.Lookup("test.fuzzworker"); f != nil && f.Value.String() == "true" {
		// A fuzzing worker runs only the fuzz function: no binary needed,
		// and building one in every worker would stall the fuzzer.
		os.Exit(m.Run())
	}
	os.Exit(binarytest.Run(m, ".", &binary))
}

// started is a running llmgate process.
type started struct {
	cmd    *exec.Cmd
	stdout *bufio.Reader
	stderr *logtest.Buffer
	done   chan struct{} // closed when the process has exited
}

func start(tb testing.TB, env []string, args ...string) *started {
	tb.Helper()
	cmd := exec.Command(binary, args...)
	cmd.Env = env
	out, err := cmd.StdoutPipe()
	if err != nil {
		tb.Fatal(err)
	}
	stderr := &logtest.Buffer{}
	cmd.Stderr = stderr
	if err := cmd.Start(); err != nil {
		tb.Fatal(err)
	}
	s := &started{cmd: cmd, stdout: bufio.NewReader(out), stderr: stderr, done: make(chan struct{})}
	go func() { cmd.Wait(); close(s.done) }()
	tb.Cleanup(func() {
		cmd.Process.Kill()
		<-s.done
		if tb.Failed() {
			tb.Logf("llmgate %s stderr:\n%s", strings.Join(args, " "), stderr.String())
		}
	})
	return s
}

// stop sends SIGINT and returns the exit code and how long it took.
func (s *started) stop(tb testing.TB) (int, time.Duration) {
	tb.Helper()
	t0 := time.Now()
	s.cmd.Process.Signal(syscall.SIGINT)
	select {
	case <-s.done:
	case <-time.After(10 * time.Second):
		tb.Fatal("llmgate did not exit within 10 s of SIGINT")
	}
	return s.cmd.ProcessState.ExitCode(), time.Since(t0)
}

func TestDev(t *testing.T) {
	s := start(t, []string{"HOME=" + t.TempDir(), "PATH=" + os.Getenv("PATH")}, "dev", "--listen", "127.0.0.1:0")
	lines := map[string]string{}
	var logins []string
	lineRE := regexp.MustCompile(`^(gateway|provider|upstream|login): +(.+)$`)
	for len(logins) < 2 || lines["upstream"] == "" {
		line, err := s.stdout.ReadString('\n')
		if err != nil {
			t.Fatalf("reading llmgate dev output: %v (so far %v %v)", err, lines, logins)
		}
		m := lineRE.FindStringSubmatch(strings.TrimRight(line, "\n"))
		if m == nil {
			continue
		}
		if m[1] == "login" {
			logins = append(logins, m[2])
		} else {
			lines[m[1]] = m[2]
		}
	}
	for _, k := range []string{"gateway", "provider", "upstream"} {
		if !strings.HasPrefix(lines[k], "http://127.0.0.1:") {
			t.Errorf("%s line = %q, want http://127.0.0.1:PORT", k, lines[k])
		}
	}
	alice := devidp.DemoUsers()[0]
	if logins[0] != alice.Email+" / "+alice.Password || !strings.HasPrefix(logins[1], "bob@example.com / ") {
		t.Errorf("login lines = %q, want alice@example.com / PASSWORD then bob@example.com / PASSWORD", logins)
	}
	gw := lines["gateway"]

	b := webtest.NewBrowser(t)
	waitHealthy(t, gw)
	p := b.Get(gw + "/")
	if !strings.HasPrefix(p.URL.String(), lines["provider"]) {
		t.Fatalf("GET / ended at %s, want the provider's login page at %s", p.URL, lines["provider"])
	}
	email, password, _ := strings.Cut(logins[0], " / ")
	p = b.SubmitLogin(p, email, password)
	if p.URL.String() != gw+"/" || !strings.Contains(p.Body, "alice@example.com") || !strings.Contains(p.Body, "admin") {
		t.Fatalf("after login: %d at %s, want alice's home page:\n%s", p.Status, p.URL, p.Body)
	}
	var me struct {
		Email string `json:"email"`
		Admin bool   `json:"admin"`
		CSRF  string `json:"csrf_token"`
	}
	p = b.Get(gw + "/api/me")
	if err := json.Unmarshal([]byte(p.Body), &me); err != nil || me.Email != "alice@example.com" || !me.Admin {
		t.Errorf("GET /api/me = %s, want alice as admin", p.Body)
	}
	// Mint an API token as the README shows, and check it with it.
	req, _ := http.NewRequest(http.MethodPost, gw+"/api/tokens", strings.NewReader(`{"name":"readme","ttl":"1d"}`))
	req.Header.Set("X-CSRF-Token", me.CSRF)
	req.Header.Set("Content-Type", "application/json")
	p = b.Do(req)
	var created struct{ Token string }
	if json.Unmarshal([]byte(p.Body), &created); p.Status != http.StatusCreated || created.Token == "" {
		t.Fatalf("POST /api/tokens: %d %s, want 201 with a token", p.Status, p.Body)
	}
	p = webtest.NewBrowser(t).Get(gw + "/.well-known/jwks.json")
	if p.Status != http.StatusOK || !strings.Contains(p.Body, `"OKP"`) {
		t.Errorf("GET /.well-known/jwks.json: %d %s, want an Ed25519 key set", p.Status, p.Body)
	}

	code, took := s.stop(t)
	if code != 0 || took > 5*time.Second {
		t.Errorf("after SIGINT: exit %d in %v, want 0 within 5s", code, took)
	}
	for _, u := range []string{gw, lines["provider"], lines["upstream"]} {
		if c, err := net.DialTimeout("tcp", strings.TrimPrefix(u, "http://"), time.Second); err == nil {
			c.Close()
			t.Errorf("%s still accepts connections after llmgate dev exited", u)
		}
	}
}

func waitHealthy(tb testing.TB, base string) {
	tb.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		resp, err := http.Get(base + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	tb.Fatalf("%s/readyz did not answer 200 within 10 s", base)
}

// TestServeConfigErrors runs serve with nothing configured: exit 2 and one
// message naming every missing variable.
func TestServeConfigErrors(t *testing.T) {
	cmd := exec.Command(binary, "serve")
	cmd.Env = []string{"HOME=" + t.TempDir(), "LLMGATE_SECRET=too-short", "LLMGATE_PUBLIC_URL=ftp://x"}
	out, _ := cmd.CombinedOutput()
	if code := cmd.ProcessState.ExitCode(); code != 2 {
		t.Errorf("llmgate serve unconfigured: exit %d, want 2\n%s", code, out)
	}
	for _, v := range []string{"LLMGATE_REDIS_URL", "LLMGATE_OIDC_ISSUER", "LLMGATE_OIDC_CLIENT_ID", "LLMGATE_OIDC_CLIENT_SECRET", "LLMGATE_UPSTREAM_URL", "LLMGATE_SECRET", "LLMGATE_PUBLIC_URL"} {
		if !strings.Contains(string(out), v) {
			t.Errorf("output does not name %s:\n%s", v, out)
		}
	}
	if strings.Contains(string(out), "too-short") {
		t.Errorf("output echoes the secret's value:\n%s", out)
	}
}

// TestServe runs `llmgate serve` against Redis (embedded and real) and the
// dev OpenID Provider, configured only by environment variables, and signs in.
func TestServe(t *testing.T) {
	redistest.Each(t, func(t *testing.T, rs *redistest.Server) {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		addr := ln.Addr().String()
		ln.Close()
		public := "http://" + addr
		idp, err := devidp.Start("127.0.0.1:0", devidp.Config{
			Users:   devidp.DemoUsers(),
			Clients: []devidp.Client{{ID: "gw", Secret: "gw-secret", RedirectURIs: []string{public + "/oauth2/callback"}}},
		})
		if err != nil {
			t.Fatal(err)
		}
		defer idp.Close()
		s := start(t, []string{
			"HOME=" + t.TempDir(),
			"LLMGATE_LISTEN=" + addr,
			"LLMGATE_PUBLIC_URL=" + public,
			"LLMGATE_SECRET=" + strings.Repeat("k", 40),
			"LLMGATE_REDIS_URL=redis://" + rs.Addr + "/0",
			"LLMGATE_OIDC_ISSUER=" + idp.Issuer(),
			"LLMGATE_OIDC_CLIENT_ID=gw",
			"LLMGATE_OIDC_CLIENT_SECRET=gw-secret",
			"LLMGATE_ADMIN_GROUPS=admins",
			"LLMGATE_UPSTREAM_URL=http://127.0.0.1:9",
			"LLMGATE_LOG_FORMAT=json",
			"LLMGATE_IDP_TOKEN_AUDIENCES=claude-desktop",
			"LLMGATE_CONFIG=" + writeYAML(t, "claude_code:\n  policies:\n    - match: {groups: [engineering]}\n      settings: {permissions: {defaultMode: acceptEdits}}\n"),
		}, "serve")
		waitHealthy(t, public)

		// Claude Code's start-up gate, with the YAML policy, for Claude
		// Desktop's kind of credential (the provider's own ID token).
		idTok, err := idp.IDToken("claude-desktop", "bob@example.com", nil)
		if err != nil {
			t.Fatal(err)
		}
		req, _ := http.NewRequest(http.MethodGet, public+"/managed/settings", nil)
		req.Header.Set("Authorization", "Bearer "+idTok)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		settings, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK || !strings.Contains(string(settings), `"settings":{"permissions":{"defaultMode":"acceptEdits"}}`) {
			t.Errorf("GET /managed/settings with bob's ID token: %d %s, want the engineering policy", resp.StatusCode, settings)
		}
		b := webtest.NewBrowser(t)
		p := b.SubmitLogin(b.Get(public+"/"), "bob@example.com", devidp.DemoUsers()[1].Password)
		if p.URL.String() != public+"/" || !strings.Contains(p.Body, "bob@example.com") {
			t.Fatalf("after login: %d at %s, want bob's home page", p.Status, p.URL)
		}
		p = b.Get(public + "/api/me")
		if !strings.Contains(p.Body, `"admin":false`) {
			t.Errorf("GET /api/me for bob = %s, want admin false (not in admins group)", p.Body)
		}
		if code, _ := s.stop(t); code != 0 {
			t.Errorf("serve after SIGINT: exit %d, want 0", code)
		}
		// JSON logs, none of which carry the session cookie.
		if ck := b.Cookie(public, "llmgate"); ck != nil && strings.Contains(s.stderr.String(), ck.Value) {
			t.Error("serve's log contains the session cookie")
		}
		for _, line := range strings.Split(strings.TrimSpace(s.stderr.String()), "\n") {
			if !json.Valid([]byte(line)) {
				t.Errorf("log line is not JSON: %s", line)
				break
			}
		}
	})
}
