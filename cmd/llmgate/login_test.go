package main

import (
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/llmgate/llmgate/internal/logtest"
)

// background is an llmgate process the test talks to while it runs.
type background struct {
	cmd    *exec.Cmd
	stdout *logtest.Buffer
	stderr *logtest.Buffer
	done   chan struct{}
}

func (u *user) start(tb testing.TB, args ...string) *background {
	tb.Helper()
	cmd := exec.Command(binary, args...)
	for k, v := range u.env {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	b := &background{cmd: cmd, stdout: &logtest.Buffer{}, stderr: &logtest.Buffer{}, done: make(chan struct{})}
	cmd.Stdout, cmd.Stderr = b.stdout, b.stderr
	if err := cmd.Start(); err != nil {
		tb.Fatal(err)
	}
	go func() { cmd.Wait(); close(b.done) }()
	tb.Cleanup(func() {
		cmd.Process.Kill()
		<-b.done
		if tb.Failed() {
			tb.Logf("llmgate %s stderr:\n%s", strings.Join(args, " "), b.stderr.String())
		}
	})
	return b
}

// waitFor waits until stderr matches re and returns the first submatch.
func (b *background) waitFor(tb testing.TB, re *regexp.Regexp) string {
	tb.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		if m := re.FindStringSubmatch(b.stderr.String()); m != nil {
			return m[1]
		}
		select {
		case <-b.done:
			tb.Fatalf("llmgate exited (%d) before printing %s:\n%s", b.cmd.ProcessState.ExitCode(), re, b.stderr.String())
		case <-time.After(20 * time.Millisecond):
		}
	}
	tb.Fatalf("llmgate did not print %s within 20 s:\n%s", re, b.stderr.String())
	return ""
}

// wait waits for the process to exit and returns its result.
func (b *background) wait(tb testing.TB) result {
	tb.Helper()
	select {
	case <-b.done:
	case <-time.After(60 * time.Second):
		tb.Fatalf("llmgate did not exit within 60 s:\n%s", b.stderr.String())
	}
	return result{code: b.cmd.ProcessState.ExitCode(), stdout: b.stdout.String(), stderr: b.stderr.String()}
}

// checkCredentialFile checks the stored credential for server and the
// file's and directory's modes.
func checkCredentialFile(tb testing.TB, u *user, server, token string) {
	tb.Helper()
	f, err := loadCredentials(u.credsPath())
	if err != nil {
		tb.Fatal(err)
	}
	if c := f.Servers[server]; c == nil || c.Token != token || f.Default != server {
		tb.Errorf("credentials file holds %+v (default %q), want the token for %s as the default", f.Servers, f.Default, server)
	}
	if runtime.GOOS == "windows" {
		return
	}
	for path, want := range map[string]os.FileMode{u.credsPath(): 0o600, filepath.Dir(u.credsPath()): 0o700} {
		st, err := os.Stat(path)
		if err != nil {
			tb.Fatal(err)
		}
		if st.Mode().Perm() != want {
			tb.Errorf("%s has mode %04o, want %04o", path, st.Mode().Perm(), want)
		}
	}
}

// contractServer plays the gateway's side of the sign-in contract with
// scripted answers, for the states a real gateway cannot be made to show
// on demand (slow_down) and to check exactly what the CLI sends.
type contractServer struct {
	*httptest.Server
	mu sync.Mutex
	// device flow
	interval int
	script   []string // answers of successive polls: an error code or "ok"
	polls    []time.Time
	issued   time.Time
	codeForm url.Values
	// loopback flow
	challenge, redirectURI string
	exchanges              []url.Values
	exchangeAnswer         string // "ok" or an error code
}

func newContractServer(tb testing.TB) *contractServer {
	cs := &contractServer{interval: 1, exchangeAnswer: "ok"}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) { writeJSON(w, 200, map[string]string{"status": "ok"}) })
	mux.HandleFunc("POST /api/device/code", func(w http.ResponseWriter, r *http.Request) {
		r.ParseForm()
		cs.mu.Lock()
		cs.codeForm, cs.issued = r.PostForm, time.Now()
		cs.mu.Unlock()
		base := "http://" + r.Host
		writeJSON(w, 200, map[string]any{
			"device_code": "dev-code-123", "user_code": "BCDF-GHJK",
			"verification_uri": base + "/device", "verification_uri_complete": base + "/device?user_code=BCDFGHJK",
			"expires_in": 600, "interval": cs.interval,
		})
	})
	mux.HandleFunc("POST /api/device/token", func(w http.ResponseWriter, r *http.Request) {
		r.ParseForm()
		cs.mu.Lock()
		defer cs.mu.Unlock()
		if r.PostForm.Get("grant_type") != "urn:ietf:params:oauth:grant-type:device_code" || r.PostForm.Get("device_code") != "dev-code-123" {
			writeJSON(w, 400, map[string]string{"error": "invalid_request"})
			return
		}
		cs.polls = append(cs.polls, time.Now())
		answer := "authorization_pending"
		if len(cs.script) > 0 {
			answer, cs.script = cs.script[0], cs.script[1:]
		}
		if answer == "ok" {
			writeLogin(w, "device-token")
			return
		}
		writeJSON(w, 400, map[string]string{"error": answer})
	})
	mux.HandleFunc("POST /api/cli/token", func(w http.ResponseWriter, r *http.Request) {
		r.ParseForm()
		cs.mu.Lock()
		defer cs.mu.Unlock()
		f := r.PostForm
		cs.exchanges = append(cs.exchanges, f)
		sum := sha256.Sum256([]byte(f.Get("code_verifier")))
		switch {
		case cs.exchangeAnswer != "ok":
			writeJSON(w, 400, map[string]string{"error": cs.exchangeAnswer, "error_description": "the code was already used"})
		case f.Get("grant_type") != "authorization_code" || f.Get("code") != "the-code":
			writeJSON(w, 400, map[string]string{"error": "invalid_grant", "error_description": "unknown code"})
		case base64.RawURLEncoding.EncodeToString(sum[:]) != cs.challenge:
			writeJSON(w, 400, map[string]string{"error": "invalid_grant", "error_description": "code_verifier does not match"})
		case f.Get("redirect_uri") != cs.redirectURI:
			writeJSON(w, 400, map[string]string{"error": "invalid_grant", "error_description": "redirect_uri mismatch"})
		default:
			writeLogin(w, "loopback-token")
		}
	})
	cs.Server = httptest.NewServer(mux)
	tb.Cleanup(cs.Close)
	return cs
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(v)
}

func writeLogin(w http.ResponseWriter, token string) {
	writeJSON(w, 200, map[string]any{
		"access_token": token, "token_type": "Bearer", "expires_in": 30 * 86400, "scope": "llm tokens",
		"email": "alice@example.com", "token_id": "tid-" + token, "expires_at": time.Now().Add(30 * 24 * time.Hour).UTC().Format(time.RFC3339),
	})
}

// TestDeviceLoginPolling drives `login --device` through the RFC 8628
// answers: it waits the interval between polls, adds 5 s at slow_down,
// and stops with a clear message at access_denied and expired_token.
func TestDeviceLoginPolling(t *testing.T) {
	t.Parallel()
	t.Run("approved after pending and slow_down", func(t *testing.T) {
		t.Parallel()
		cs := newContractServer(t)
		cs.mu.Lock()
		cs.script = []string{"authorization_pending", "slow_down", "ok"}
		cs.mu.Unlock()
		u := newUser(t)
		r := u.run(t, "login", "--server", cs.URL, "--device", "--name", "laptop")
		if r.code != 0 {
			t.Fatalf("login --device: %v", r)
		}
		for _, want := range []string{"BCDF-GHJK", cs.URL + "/device", cs.URL + "/device?user_code=BCDFGHJK"} {
			if !strings.Contains(r.stderr, want) {
				t.Errorf("login --device did not print %q:\n%s", want, r.stderr)
			}
		}
		if !strings.Contains(r.stdout, "alice@example.com") {
			t.Errorf("login --device did not say who signed in:\n%s", r.stdout)
		}
		cs.mu.Lock()
		defer cs.mu.Unlock()
		if cs.codeForm.Get("client_id") != "llmgate-cli" || cs.codeForm.Get("name") != "laptop" || cs.codeForm.Get("host") == "" {
			t.Errorf("device code request form = %v, want client_id llmgate-cli, name laptop, host", cs.codeForm)
		}
		if len(cs.polls) != 3 {
			t.Fatalf("polled %d times, want 3", len(cs.polls))
		}
		gaps := []time.Duration{cs.polls[0].Sub(cs.issued), cs.polls[1].Sub(cs.polls[0]), cs.polls[2].Sub(cs.polls[1])}
		mins := []time.Duration{time.Second, time.Second, 6 * time.Second}
		for i := range gaps {
			if gaps[i] < mins[i]-50*time.Millisecond {
				t.Errorf("poll %d came %v after the previous one, want at least %v (interval 1 s, +5 s after slow_down)", i+1, gaps[i], mins[i])
			}
		}
		checkCredentialFile(t, u, cs.URL, "device-token")
	})
	for _, tt := range []struct{ answer, want string }{
		{"access_denied", "denied"},
		{"expired_token", "expired"},
	} {
		t.Run(tt.answer, func(t *testing.T) {
			t.Parallel()
			cs := newContractServer(t)
			cs.mu.Lock()
			cs.script = []string{"authorization_pending", tt.answer}
			cs.mu.Unlock()
			u := newUser(t)
			r := u.run(t, "login", "--server", cs.URL, "--device")
			if r.code != 1 || !strings.Contains(r.stderr, tt.want) {
				t.Errorf("login --device answered %s: %v\nwant exit 1 saying %q", tt.answer, r, tt.want)
			}
			if _, err := os.Stat(u.credsPath()); err == nil {
				t.Errorf("login --device answered %s stored a credential", tt.answer)
			}
		})
	}
}

var authorizeURL = regexp.MustCompile(`(?m)^\s+(http\S+/cli/authorize\?\S+)$`)

// loopbackStart runs `login` and returns the authorize URL it printed.
func loopbackStart(t *testing.T, u *user, server string, extra ...string) (*background, *url.URL) {
	t.Helper()
	b := u.start(t, append([]string{"login", "--server", server, "--no-browser"}, extra...)...)
	raw := b.waitFor(t, authorizeURL)
	au, err := url.Parse(raw)
	if err != nil {
		t.Fatalf("login printed %q: %v", raw, err)
	}
	q := au.Query()
	if !regexp.MustCompile(`^http://127\.0\.0\.1:\d+/callback$`).MatchString(q.Get("redirect_uri")) ||
		q.Get("code_challenge_method") != "S256" || len(q.Get("code_challenge")) != 43 || len(q.Get("state")) < 43 || q.Get("host") == "" {
		t.Fatalf("authorize URL %s: want a loopback redirect_uri on 127.0.0.1, S256, a 43-character challenge, a state of ≥256 bits and the host", au)
	}
	return b, au
}

// TestLoopbackLoginContract plays the browser against `llmgate login`:
// the callback takes only the right state, the code is exchanged with the
// PKCE verifier and redirect_uri, and the listener is gone afterwards.
func TestLoopbackLoginContract(t *testing.T) {
	t.Parallel()
	t.Run("approved", func(t *testing.T) {
		t.Parallel()
		cs := newContractServer(t)
		u := newUser(t)
		b, au := loopbackStart(t, u, cs.URL)
		q := au.Query()
		cs.mu.Lock()
		cs.challenge, cs.redirectURI = q.Get("code_challenge"), q.Get("redirect_uri")
		cs.mu.Unlock()

		// A forged callback (wrong state) is refused and does not end the wait.
		status, body := get(t, q.Get("redirect_uri")+"?code=the-code&state=forged")
		if status != http.StatusBadRequest || !strings.Contains(body, "does not belong") {
			t.Errorf("callback with a wrong state: %d %s, want 400 saying it is not this sign-in", status, body)
		}
		status, body = get(t, q.Get("redirect_uri")+"?"+url.Values{"code": {"the-code"}, "state": {q.Get("state")}}.Encode())
		if status != http.StatusOK || !strings.Contains(body, "Signed in") {
			t.Errorf("callback with the code: %d %s, want the signed-in page", status, body)
		}
		r := b.wait(t)
		if r.code != 0 || !strings.Contains(r.stdout, "alice@example.com") {
			t.Fatalf("login: %v", r)
		}
		cs.mu.Lock()
		if len(cs.exchanges) != 1 {
			t.Errorf("the code was exchanged %d times, want once (the forged callback must not be)", len(cs.exchanges))
		}
		cs.mu.Unlock()
		checkCredentialFile(t, u, cs.URL, "loopback-token")
		if _, err := http.Get(q.Get("redirect_uri")); err == nil {
			t.Errorf("the loopback listener still answers after sign-in")
		}
	})
	t.Run("denied", func(t *testing.T) {
		t.Parallel()
		cs := newContractServer(t)
		u := newUser(t)
		b, au := loopbackStart(t, u, cs.URL)
		q := au.Query()
		get(t, q.Get("redirect_uri")+"?"+url.Values{"error": {"access_denied"}, "state": {q.Get("state")}}.Encode())
		if r := b.wait(t); r.code != 1 || !strings.Contains(r.stderr, "denied") {
			t.Errorf("login denied in the browser: %v\nwant exit 1, denied", r)
		}
	})
	t.Run("code refused", func(t *testing.T) {
		t.Parallel()
		cs := newContractServer(t)
		cs.mu.Lock()
		cs.exchangeAnswer = "invalid_grant"
		cs.mu.Unlock()
		u := newUser(t)
		b, au := loopbackStart(t, u, cs.URL)
		q := au.Query()
		status, body := get(t, q.Get("redirect_uri")+"?"+url.Values{"code": {"the-code"}, "state": {q.Get("state")}}.Encode())
		if status != http.StatusOK || !strings.Contains(body, "Not signed in") {
			t.Errorf("callback whose code the gateway refuses: %d %s, want a not-signed-in page", status, body)
		}
		if r := b.wait(t); r.code != 1 || !strings.Contains(r.stderr, "already used") || !strings.Contains(r.stderr, "llmgate login") {
			t.Errorf("login whose code is refused: %v\nwant exit 1 with the gateway's reason and what to run", r)
		}
	})
	t.Run("interrupted", func(t *testing.T) {
		t.Parallel()
		cs := newContractServer(t)
		u := newUser(t)
		b, _ := loopbackStart(t, u, cs.URL)
		b.cmd.Process.Signal(syscall.SIGINT)
		if r := b.wait(t); r.code != 1 || !strings.Contains(r.stderr, "cancelled") {
			t.Errorf("login after Ctrl-C: %v, want exit 1, cancelled", r)
		}
	})
}

func get(tb testing.TB, u string) (int, string) {
	tb.Helper()
	resp, err := http.Get(u)
	if err != nil {
		tb.Fatalf("GET %s: %v", u, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// TestLoginUsage: login needs to know the gateway.
func TestLoginUsage(t *testing.T) {
	t.Parallel()
	u := newUser(t)
	if r := u.run(t, "login"); r.code != 2 || !strings.Contains(r.stderr, "--server") {
		t.Errorf("login with no gateway: %v\nwant exit 2 asking for --server", r)
	}
	if r := u.run(t, "login", "--server", "ftp://x"); r.code != 2 {
		t.Errorf("login --server ftp://x: %v\nwant exit 2", r)
	}
	r := u.run(t, "login", "--server", closedPort(t), "--device")
	if r.code != 1 || !strings.Contains(r.stderr, "cannot reach the gateway") || !strings.Contains(r.stderr, "/healthz") {
		t.Errorf("login --device against nothing: %v\nwant exit 1 naming the URL", r)
	}
	down := closedPort(t)
	r = u.run(t, "login", "--server", down, "--no-browser")
	if r.code != 1 || !strings.Contains(r.stderr, "cannot reach the gateway at "+down+"/healthz") || strings.Contains(r.stderr, "/cli/authorize") {
		t.Errorf("login against nothing: %v\nwant exit 1 naming the URL, before any browser is sent there", r)
	}
	if r := u.run(t, "logout"); r.code != 1 || !strings.Contains(r.stderr, "not signed in") {
		t.Errorf("logout when not signed in: %v\nwant exit 1, not signed in", r)
	}
}

// TestCredentialsFileModes: the file is 0600 and its directory 0700 even
// when they existed with looser modes or the umask is 0.
func TestCredentialsFileModes(t *testing.T) {
	if runtime.GOOS == "windows" {
		t.Skip("POSIX modes")
	}
	old := syscall.Umask(0)
	defer syscall.Umask(old)
	dir := filepath.Join(t.TempDir(), "llmgate")
	if err := os.MkdirAll(dir, 0o777); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "credentials.json")
	if err := os.WriteFile(path, []byte(`{"servers":{}}`), 0o666); err != nil {
		t.Fatal(err)
	}
	if w := looseModeWarning(path); !strings.Contains(w, "chmod 600") {
		t.Errorf("looseModeWarning on a 0666 file = %q, want a chmod 600 hint", w)
	}
	f := &credentialsFile{Default: "https://a", Servers: map[string]*credential{"https://a": {Token: "t1"}}}
	if err := saveCredentials(path, f); err != nil {
		t.Fatal(err)
	}
	for p, want := range map[string]os.FileMode{path: 0o600, dir: 0o700} {
		if st, _ := os.Stat(p); st.Mode().Perm() != want {
			t.Errorf("%s: mode %04o, want %04o", p, st.Mode().Perm(), want)
		}
	}
	got, err := loadCredentials(path)
	if err != nil || got.Servers["https://a"].Token != "t1" || got.Default != "https://a" {
		t.Errorf("loadCredentials after save = %+v, %v", got, err)
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 1 {
		t.Errorf("the directory holds %d files after save, want only credentials.json (no temp file left)", len(entries))
	}
	if w := looseModeWarning(path); w != "" {
		t.Errorf("looseModeWarning on a 0600 file = %q", w)
	}
}

func TestNormalizeServer(t *testing.T) {
	for _, tt := range []struct{ in, want string }{
		{"llm.example.com", "https://llm.example.com"},
		{"https://LLM.Example.com/", "https://llm.example.com"},
		{"http://127.0.0.1:8080", "http://127.0.0.1:8080"},
		{" https://gw.example.com/llm/ ", "https://gw.example.com/llm"},
	} {
		if got, err := normalizeServer(tt.in); err != nil || got != tt.want {
			t.Errorf("normalizeServer(%q) = %q, %v; want %q", tt.in, got, err, tt.want)
		}
	}
	for _, bad := range []string{"", "ftp://x", "https://user:pw@x", "https://x/?a=b", "https://"} {
		if got, err := normalizeServer(bad); err == nil {
			t.Errorf("normalizeServer(%q) = %q, want an error", bad, got)
		}
	}
}
