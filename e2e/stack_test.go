package e2e

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/llmgate/llmgate/internal/binarytest"
	"github.com/llmgate/llmgate/internal/demoupstream"
	"github.com/llmgate/llmgate/internal/devidp"
	"github.com/llmgate/llmgate/internal/logtest"
	"github.com/llmgate/llmgate/internal/redistest"
)

// binary is the llmgate built from this tree, once per test run.
var binary string

func TestMain(m *testing.M) {
	if _, err := exec.LookPath("redis-server"); err != nil && os.Getenv("LLMGATE_TEST_REQUIRE_REDIS") != "1" {
		// Every test skips without redis-server: do not build for nothing.
		os.Exit(m.Run())
	}
	os.Exit(binarytest.Run(m, "../cmd/llmgate", &binary))
}

// options shape a stack.
type options struct {
	replicas int
	failsafe string // LLMGATE_FAILSAFE, default closed
	upstream string // upstream base URL; default a demo upstream
	demo     demoupstream.Options
	redis    func(addr string) string // maps the real Redis address to the one replicas use
	env      []string                 // extra LLMGATE_* settings
}

// stack is a deployment: one Redis, one identity provider, one upstream,
// several replicas of llmgate sharing them.
type stack struct {
	tb       testing.TB
	redis    *redistest.Proc
	idp      *devidp.Provider
	demo     *demoupstream.Server
	upstream string
	public   string // LLMGATE_PUBLIC_URL: replica 0, where people sign in
	env      []string
	replicas []*replica
	client   *http.Client // no cookie jar, for API calls
}

// replica is one `llmgate serve` process.
type replica struct {
	url    string
	addr   string
	cmd    *exec.Cmd
	stderr *logtest.Buffer
	done   chan struct{}
}

// freeAddr returns a loopback address nothing listens on right now.
func freeAddr(tb testing.TB) string {
	tb.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// newStack starts Redis, the provider, the upstream and o.replicas replicas,
// and waits until every replica is ready.
func newStack(tb testing.TB, o options) *stack {
	tb.Helper()
	if o.replicas == 0 {
		o.replicas = 1
	}
	if o.failsafe == "" {
		o.failsafe = "closed"
	}
	st := &stack{tb: tb, redis: redistest.Process(tb)}
	st.client = &http.Client{
		Timeout: 20 * time.Second,
		Transport: &http.Transport{
			MaxIdleConns: 1024, MaxIdleConnsPerHost: 512, IdleConnTimeout: 30 * time.Second,
			DisableCompression: true,
		},
	}
	tb.Cleanup(st.client.CloseIdleConnections)

	st.upstream = o.upstream
	if st.upstream == "" {
		o.demo.NoRecord = true
		demo, u, closeFn, err := demoupstream.Start("127.0.0.1:0", o.demo)
		if err != nil {
			tb.Fatal(err)
		}
		tb.Cleanup(func() { closeFn() })
		st.demo, st.upstream = demo, u
	}

	addrs := make([]string, o.replicas)
	for i := range addrs {
		addrs[i] = freeAddr(tb)
	}
	st.public = "http://" + addrs[0]
	idp, err := devidp.Start("127.0.0.1:0", devidp.Config{
		Users:   devidp.DemoUsers(),
		Clients: []devidp.Client{{ID: "gw", Secret: "gw-secret", RedirectURIs: []string{st.public + "/oauth2/callback"}}},
	})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { idp.Close() })
	st.idp = idp

	redisAddr := st.redis.Addr
	if o.redis != nil {
		redisAddr = o.redis(redisAddr)
	}
	st.env = append([]string{
		"HOME=" + tb.TempDir(),
		"PATH=" + os.Getenv("PATH"),
		"LLMGATE_PUBLIC_URL=" + st.public,
		"LLMGATE_SECRET=" + strings.Repeat("s", 40),
		"LLMGATE_REDIS_URL=redis://" + redisAddr + "/0",
		"LLMGATE_OIDC_ISSUER=" + idp.Issuer(),
		"LLMGATE_OIDC_CLIENT_ID=gw",
		"LLMGATE_OIDC_CLIENT_SECRET=gw-secret",
		"LLMGATE_ADMIN_EMAILS=alice@example.com",
		"LLMGATE_UPSTREAM_URL=" + st.upstream,
		"LLMGATE_FAILSAFE=" + o.failsafe,
		"LLMGATE_LOG_FORMAT=json",
	}, o.env...)
	for _, a := range addrs {
		st.replicas = append(st.replicas, st.startReplica(a))
	}
	for _, r := range st.replicas {
		st.waitReady(r, 30*time.Second)
	}
	return st
}

// startReplica starts `llmgate serve` on addr.
func (st *stack) startReplica(addr string) *replica {
	tb := st.tb
	tb.Helper()
	cmd := exec.Command(binary, "serve")
	cmd.Env = append(append([]string{}, st.env...), "LLMGATE_LISTEN="+addr)
	r := &replica{url: "http://" + addr, addr: addr, cmd: cmd, stderr: &logtest.Buffer{}, done: make(chan struct{})}
	cmd.Stderr = r.stderr
	if err := cmd.Start(); err != nil {
		tb.Fatal(err)
	}
	go func() { cmd.Wait(); close(r.done) }()
	tb.Cleanup(func() {
		cmd.Process.Kill()
		<-r.done
		if tb.Failed() {
			tb.Logf("replica %s stderr (last 8 KiB):\n%s", addr, tail(r.stderr.String(), 8<<10))
		}
	})
	return r
}

func tail(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[len(s)-n:]
}

// waitReady waits until r's /readyz answers 200.
func (st *stack) waitReady(r *replica, within time.Duration) {
	st.tb.Helper()
	deadline := time.Now().Add(within)
	for time.Now().Before(deadline) {
		select {
		case <-r.done:
			st.tb.Fatalf("replica %s exited before it was ready:\n%s", r.addr, tail(r.stderr.String(), 4<<10))
		default:
		}
		resp, err := st.client.Get(r.url + "/readyz")
		if err == nil {
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	st.tb.Fatalf("replica %s: /readyz did not answer 200 within %v", r.addr, within)
}

// signal sends sig to r.
func (r *replica) signal(sig os.Signal) { r.cmd.Process.Signal(sig) }

// exitCode waits up to d for r to exit and returns its exit code, or -1 if it
// is still running.
func (r *replica) exitCode(d time.Duration) int {
	select {
	case <-r.done:
		return r.cmd.ProcessState.ExitCode()
	case <-time.After(d):
		return -1
	}
}

// rss returns r's resident set size in KiB, from /proc.
func (r *replica) rss(tb testing.TB) int {
	tb.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", r.cmd.Process.Pid))
	if err != nil {
		tb.Fatalf("read VmRSS: %v", err)
	}
	sc := bufio.NewScanner(strings.NewReader(string(b)))
	for sc.Scan() {
		var kib int
		if n, _ := fmt.Sscanf(sc.Text(), "VmRSS: %d kB", &kib); n == 1 {
			return kib
		}
	}
	tb.Fatal("no VmRSS in /proc status")
	return 0
}

// person is someone signed in through the provider: a session cookie and
// its CSRF token.
type person struct {
	email  string
	cookie string // session cookie value
	csrf   string
}

// signIn signs email in at the gateway's public URL through the provider's
// HTML login form, as a browser does.
func (st *stack) signIn(email string) *person {
	tb := st.tb
	tb.Helper()
	var password string
	for _, u := range devidp.DemoUsers() {
		if u.Email == email {
			password = u.Password
		}
	}
	jar, _ := cookiejar.New(nil)
	hc := &http.Client{Jar: jar, Timeout: 20 * time.Second}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	resp, err := st.idp.SignIn(ctx, hc, st.public+"/oauth2/start?rd=/", email, password)
	if err != nil {
		tb.Fatalf("sign in as %s: %v", email, err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || resp.Request.URL.String() != st.public+"/" {
		tb.Fatalf("sign in as %s ended with %d at %s, want 200 at the home page", email, resp.StatusCode, resp.Request.URL)
	}
	pu, _ := url.Parse(st.public)
	p := &person{email: email}
	for _, c := range jar.Cookies(pu) {
		if c.Name == "llmgate" {
			p.cookie = c.Value
		}
	}
	if p.cookie == "" {
		tb.Fatalf("sign in as %s: no llmgate session cookie", email)
	}
	var me struct {
		CSRF string `json:"csrf_token"`
	}
	status, body := st.as(p, st.replicas[0], http.MethodGet, "/api/me", "")
	if status != http.StatusOK || json.Unmarshal([]byte(body), &me) != nil || me.CSRF == "" {
		tb.Fatalf("GET /api/me as %s: %d %s", email, status, body)
	}
	p.csrf = me.CSRF
	return p
}

// as calls r's JSON API with p's session and CSRF token; it returns the
// status and body, or status 0 and the error text.
func (st *stack) as(p *person, r *replica, method, path, body string) (int, string) {
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, r.url+path, rd)
	if err != nil {
		st.tb.Fatal(err)
	}
	req.Header.Set("Cookie", "llmgate="+p.cookie)
	req.Header.Set("X-CSRF-Token", p.csrf)
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := st.client.Do(req)
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// token is an API token and its id.
type token struct{ id, raw string }

// mint creates an API token for p on replica 0.
func (st *stack) mint(p *person, name string) token {
	st.tb.Helper()
	status, body := st.as(p, st.replicas[0], http.MethodPost, "/api/tokens", fmt.Sprintf(`{"name":%q,"ttl":"1d"}`, name))
	var t struct{ ID, Token string }
	if status != http.StatusCreated || json.Unmarshal([]byte(body), &t) != nil || t.Token == "" {
		st.tb.Fatalf("POST /api/tokens as %s: %d %s, want 201 with a token", p.email, status, body)
	}
	return token{id: t.ID, raw: t.Token}
}

// call makes one small chat completion with tok on r and returns the status
// (0 on a transport error) and the body.
func (st *stack) call(r *replica, tok string) (int, http.Header, string) {
	req, _ := http.NewRequest(http.MethodPost, r.url+"/v1/chat/completions",
		strings.NewReader(`{"model":"gpt-4o-mini","messages":[{"role":"user","content":"hi"}]}`))
	req.Header.Set("Authorization", "Bearer "+tok)
	req.Header.Set("Content-Type", "application/json")
	resp, err := st.client.Do(req)
	if err != nil {
		return 0, nil, err.Error()
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header, string(b)
}

// mustWork asserts that tok is accepted on every replica.
func (st *stack) mustWork(tok string) {
	st.tb.Helper()
	for _, r := range st.replicas {
		if status, _, body := st.call(r, tok); status != http.StatusOK {
			st.tb.Fatalf("call on %s: %d %s, want 200", r.addr, status, body)
		}
	}
}

// parallel runs fn(i) for i in [0, n) concurrently and waits.
func parallel(n int, fn func(i int)) {
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() { defer wg.Done(); fn(i) }()
	}
	wg.Wait()
}

// decode unmarshals a JSON body.
func decode(body string, v any) error { return json.Unmarshal([]byte(body), v) }
