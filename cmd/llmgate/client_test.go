package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/llmgate/llmgate/internal/devstack"
	"github.com/llmgate/llmgate/internal/logtest"
	"github.com/llmgate/llmgate/internal/redisconn"
	"github.com/llmgate/llmgate/tokens"
)

// testGateway is a gateway running in this test process, wired exactly as
// `llmgate dev` wires it, with a second token service on its store that
// mints credentials the way a sign-in does.
type testGateway struct {
	url    string
	stack  *devstack.Stack
	tokens *tokens.Service
	log    *logtest.Buffer
}

func startGateway(tb testing.TB) *testGateway {
	tb.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	base := "http://" + ln.Addr().String()
	logBuf := &logtest.Buffer{}
	log := slog.New(slog.NewTextHandler(logBuf, nil))
	stack, err := devstack.Start(devstack.Options{GatewayURL: base, Logger: log})
	if err != nil {
		ln.Close()
		tb.Fatal(err)
	}
	cfg := devConfig(base, stack)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- runGateway(ctx, cfg, ln, log) }()
	g := &testGateway{url: base, stack: stack, log: logBuf}
	tb.Cleanup(func() {
		cancel()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			tb.Error("gateway did not stop within 10 s")
		}
		if g.tokens != nil {
			g.tokens.Close()
		}
		stack.Close()
		if tb.Failed() {
			tb.Logf("gateway log:\n%s", logBuf.String())
		}
	})
	waitHealthy(tb, base)
	rdb, err := redisconn.New(redisconn.Config{URL: stack.RedisURL})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { rdb.Close() })
	g.tokens, err = tokens.New(ctx, rdb, tokens.Config{Issuer: base, Secret: []byte(cfg.Secret)})
	if err != nil {
		tb.Fatal(err)
	}
	return g
}

// credential mints what `llmgate login` obtains for email: client
// llmgate-cli, scopes llm and tokens.
func (g *testGateway) credential(tb testing.TB, email string) (string, tokens.Record) {
	tb.Helper()
	return g.mint(tb, email, tokens.ClientCLI, tokens.ScopeLLM, tokens.ScopeTokens)
}

func (g *testGateway) mint(tb testing.TB, email, client string, scopes ...string) (string, tokens.Record) {
	tb.Helper()
	raw, rec, err := g.tokens.Issue(context.Background(), tokens.IssueRequest{
		Name: "llmgate CLI on testhost", Email: email, Subject: "sub-" + email, UserName: strings.Split(email, "@")[0],
		ClientID: client, Scopes: scopes,
	})
	if err != nil {
		tb.Fatalf("mint a token for %s: %v", email, err)
	}
	return raw, rec
}

// user is a person at a terminal: a home and config directory of their
// own, and the environment the CLI runs with.
type user struct {
	home, config string
	env          map[string]string
}

func newUser(tb testing.TB) *user {
	home := tb.TempDir()
	return &user{home: home, config: filepath.Join(home, ".config"), env: map[string]string{
		"HOME":            home,
		"XDG_CONFIG_HOME": filepath.Join(home, ".config"),
		"PATH":            os.Getenv("PATH"),
		"TZ":              "UTC",
	}}
}

func (u *user) credsPath() string { return filepath.Join(u.config, "llmgate", "credentials.json") }

// signIn stores a credential for server as `llmgate login` does.
func (u *user) signIn(tb testing.TB, server, token string, rec tokens.Record) {
	tb.Helper()
	f, err := loadCredentials(u.credsPath())
	if err != nil {
		tb.Fatal(err)
	}
	f.Servers[server] = &credential{Token: token, TokenID: rec.ID, Email: rec.Email, Scope: strings.Join(rec.Scopes, " "), ExpiresAt: rec.ExpiresAt, CreatedAt: rec.CreatedAt}
	f.Default = server
	if err := saveCredentials(u.credsPath(), f); err != nil {
		tb.Fatal(err)
	}
}

type result struct {
	code           int
	stdout, stderr string
}

func (r result) String() string {
	return "exit " + itoa(r.code) + "\nstdout:\n" + r.stdout + "\nstderr:\n" + r.stderr
}

func itoa(n int) string { b, _ := json.Marshal(n); return string(b) }

// run runs the llmgate binary as u and waits for it.
func (u *user) run(tb testing.TB, args ...string) result {
	tb.Helper()
	cmd := exec.Command(binary, args...)
	for k, v := range u.env {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	done := make(chan error, 1)
	if err := cmd.Start(); err != nil {
		tb.Fatal(err)
	}
	go func() { done <- cmd.Wait() }()
	select {
	case <-done:
	case <-time.After(60 * time.Second):
		cmd.Process.Kill()
		<-done
		tb.Fatalf("llmgate %s did not finish within 60 s\nstderr:\n%s", strings.Join(args, " "), errb.String())
	}
	return result{code: cmd.ProcessState.ExitCode(), stdout: out.String(), stderr: errb.String()}
}

// proxyStatus calls the LLM API through the gateway with token.
func proxyStatus(tb testing.TB, base, token string) int {
	tb.Helper()
	req, _ := http.NewRequest(http.MethodPost, base+"/v1/chat/completions",
		strings.NewReader(`{"model":"gpt-4o-mini","messages":[{"role":"user","content":"hello"}]}`))
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		tb.Fatalf("POST %s/v1/chat/completions: %v", base, err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode
}

// htmlServer answers everything with an HTML page: not a gateway.
func htmlServer(tb testing.TB, status int) string {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html")
		w.WriteHeader(status)
		io.WriteString(w, "<html><body>Welcome to nginx!</body></html>")
	}))
	tb.Cleanup(srv.Close)
	return srv.URL
}

// closedPort is a loopback URL where nothing listens.
func closedPort(tb testing.TB) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	u := "http://" + ln.Addr().String()
	ln.Close()
	return u
}
