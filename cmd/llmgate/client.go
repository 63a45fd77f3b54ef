package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"strings"
	"syscall"
	"time"
)

// cli is what the client commands (login, token, env, whoami, logout)
// share: the environment, the output streams, the clock and HTTP.
type cli struct {
	getenv func(string) string
	stdout io.Writer
	stderr io.Writer
	now    func() time.Time
	http   *http.Client
}

func newCLI(stdout, stderr io.Writer) *cli {
	return &cli{
		getenv: os.Getenv,
		stdout: stdout,
		stderr: stderr,
		now:    time.Now,
		http: &http.Client{
			Timeout: 30 * time.Second,
			// A redirect means the URL is not the gateway's API (http → https,
			// a login page): say so instead of following it with the token.
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		},
	}
}

// usageError is a mistake in how a command was called: exit 2.
type usageError struct{ msg string }

func (e *usageError) Error() string { return e.msg }

func usagef(format string, args ...any) error { return &usageError{fmt.Sprintf(format, args...)} }

// fail prints err for command name and returns its exit code.
func (c *cli) fail(name string, err error) int {
	fmt.Fprintf(c.stderr, "llmgate %s: %v\n", name, err)
	var ue *usageError
	if errors.As(err, &ue) {
		return exitUsage
	}
	return exitFailure
}

// auth is the credential a command uses and where it came from.
type auth struct {
	server string
	token  string
	// source is LLMGATE_TOKEN or the credentials file's path.
	source string
	// cred is the stored credential, nil when LLMGATE_TOKEN is used.
	cred *credential
	path string
}

func (a *auth) fromEnv() bool { return a.cred == nil }

// loginHint is the command that gets a fresh credential for server.
func loginHint(server string) string {
	if server == "" {
		return "llmgate login --server https://YOUR-GATEWAY"
	}
	return "llmgate login --server " + server
}

// server picks the gateway: --server, else LLMGATE_SERVER, else the stored
// default, else the only stored one. "" when there is none.
func (c *cli) server(flagValue string, f *credentialsFile) (string, error) {
	raw, from := flagValue, "--server"
	if raw == "" {
		raw, from = c.getenv(envServer), envServer
	}
	if raw != "" {
		s, err := normalizeServer(raw)
		if err != nil {
			return "", usagef("%s: %v", from, err)
		}
		return s, nil
	}
	if f != nil {
		if f.Default != "" && f.Servers[f.Default] != nil {
			return f.Default, nil
		}
		if names := f.serverNames(); len(names) == 1 {
			return names[0], nil
		}
	}
	return "", nil
}

// resolve finds the credential for --server (or the default gateway):
// LLMGATE_TOKEN when set, else the stored one. The errors say what to run.
func (c *cli) resolve(serverFlag string) (*auth, error) {
	path, err := credentialsPath(c.getenv)
	if err != nil {
		return nil, err
	}
	f, err := loadCredentials(path)
	if err != nil {
		return nil, err
	}
	server, err := c.server(serverFlag, f)
	if err != nil {
		return nil, err
	}
	if tok := strings.TrimSpace(c.getenv(envToken)); tok != "" {
		if server == "" {
			return nil, fmt.Errorf("%s is set but no gateway is named: set %s=https://YOUR-GATEWAY or pass --server", envToken, envServer)
		}
		return &auth{server: server, token: tok, source: envToken, path: path}, nil
	}
	if server == "" {
		if len(f.Servers) > 1 {
			return nil, fmt.Errorf("signed in to several gateways (%s): choose one with --server", strings.Join(f.serverNames(), ", "))
		}
		return nil, fmt.Errorf("not signed in: run '%s' (or set %s and %s)", loginHint(""), envServer, envToken)
	}
	cred := f.Servers[server]
	if cred == nil || cred.Token == "" {
		return nil, fmt.Errorf("not signed in to %s: run '%s'", server, loginHint(server))
	}
	if !cred.ExpiresAt.IsZero() && !c.now().Before(cred.ExpiresAt) {
		return nil, fmt.Errorf("your credential for %s expired on %s: run '%s'", server, formatTime(cred.ExpiresAt), loginHint(server))
	}
	if w := looseModeWarning(path); w != "" {
		fmt.Fprintln(c.stderr, w)
	}
	return &auth{server: server, token: cred.Token, source: path, cred: cred, path: path}, nil
}

// apiError is an answer of the gateway's JSON API other than success.
type apiError struct {
	Status  int
	Code    string
	Message string
}

func (e *apiError) Error() string { return e.Message }

// call sends a JSON API request with the credential and decodes the answer
// into out. Its errors say which URL failed, how, and what to do.
func (c *cli) call(ctx context.Context, a *auth, method, path string, in, out any) error {
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return err
		}
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, a.server+path, body)
	if err != nil {
		return fmt.Errorf("%s %s: %w", method, a.server+path, err)
	}
	req.Header.Set("Authorization", "Bearer "+a.token)
	req.Header.Set("Accept", "application/json")
	req.Header.Set("User-Agent", userAgent())
	if in != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return unreachable(a.server+path, err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, 4<<20))
	if err != nil {
		return fmt.Errorf("reading the answer of %s: %w", a.server+path, err)
	}
	if resp.StatusCode/100 == 2 {
		if out == nil {
			return nil
		}
		if err := json.Unmarshal(raw, out); err != nil {
			return fmt.Errorf("%s answered %s with something that is not the gateway's JSON (%v): is %s the llmgate URL?", a.server+path, resp.Status, err, a.server)
		}
		return nil
	}
	return c.refusal(a, method, path, resp, raw)
}

// refusal turns a non-2xx answer into an error that teaches.
func (c *cli) refusal(a *auth, method, path string, resp *http.Response, raw []byte) error {
	u := a.server + path
	if resp.StatusCode/100 == 3 {
		loc := resp.Header.Get("Location")
		if strings.HasPrefix(loc, "https://") && strings.HasPrefix(a.server, "http://") {
			return fmt.Errorf("%s redirects to %s: use --server %s", u, loc, strings.Replace(a.server, "http://", "https://", 1))
		}
		return fmt.Errorf("%s answered %s with a redirect to %q instead of the gateway's API: is %s the llmgate URL?", u, resp.Status, loc, a.server)
	}
	var envelope struct {
		Error struct {
			Message string `json:"message"`
			Code    string `json:"code"`
		} `json:"error"`
	}
	if json.Unmarshal(raw, &envelope) != nil || envelope.Error.Message == "" {
		return &apiError{Status: resp.StatusCode, Message: fmt.Sprintf("%s %s answered %s, not an llmgate API answer: is %s the gateway's URL?", method, u, resp.Status, a.server)}
	}
	e := &apiError{Status: resp.StatusCode, Code: envelope.Error.Code, Message: envelope.Error.Message}
	switch {
	case resp.StatusCode == http.StatusUnauthorized && a.fromEnv():
		e.Message = fmt.Sprintf("%s refused %s: %s. Unset %s to use the stored credential, or set a valid one (or run '%s')",
			a.server, envToken, e.Message, envToken, loginHint(a.server))
	case resp.StatusCode == http.StatusUnauthorized:
		e.Message = fmt.Sprintf("%s refused your stored credential: %s. Run '%s' to sign in again",
			a.server, e.Message, loginHint(a.server))
	case resp.StatusCode == http.StatusForbidden && e.Code == "insufficient_scope" && a.fromEnv():
		e.Message = fmt.Sprintf("%s: %s (%s holds a token for the LLM API only; unset it, or run '%s')",
			a.server, e.Message, envToken, loginHint(a.server))
	default:
		e.Message = fmt.Sprintf("%s: %s", a.server, e.Message)
	}
	return e
}

// unreachable explains a request that got no answer at all.
func unreachable(u string, err error) error {
	why := err.Error()
	var dnsErr *net.DNSError
	var certErr *tls.CertificateVerificationError
	var unknownAuth x509.UnknownAuthorityError
	var hostErr x509.HostnameError
	var recordErr tls.RecordHeaderError
	switch {
	case errors.Is(err, context.Canceled):
		return fmt.Errorf("%s: cancelled", u)
	case errors.As(err, &dnsErr):
		why = fmt.Sprintf("the name %s does not resolve (%s): check the spelling of the server URL", dnsErr.Name, dnsErr.Err)
	case errors.Is(err, syscall.ECONNREFUSED):
		why = "connection refused: nothing listens there; is the gateway running, and are host and port right?"
	case errors.As(err, &recordErr):
		why = "the server does not speak TLS there: try http:// (only for a gateway on this machine) or the right port"
	case errors.As(err, &unknownAuth), errors.As(err, &hostErr), errors.As(err, &certErr):
		why = fmt.Sprintf("its TLS certificate is not trusted (%v): check the URL, or install your company's CA certificate", err)
	case errors.Is(err, context.DeadlineExceeded), os.IsTimeout(err):
		why = "no answer in time: is the address right, and is a proxy or firewall in the way?"
	}
	return fmt.Errorf("cannot reach the gateway at %s: %s", u, why)
}

// postForm sends an OAuth form request (no credential) and returns the
// status and body; only a failure to get any answer is an error.
func (c *cli) postForm(ctx context.Context, server, path string, form url.Values) (int, []byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, server+path, strings.NewReader(form.Encode()))
	if err != nil {
		return 0, nil, err
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Accept", "application/json")
	req.Header.Set("User-Agent", userAgent())
	resp, err := c.http.Do(req)
	if err != nil {
		return 0, nil, unreachable(server+path, err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return 0, nil, fmt.Errorf("reading the answer of %s: %w", server+path, err)
	}
	return resp.StatusCode, raw, nil
}

func userAgent() string { return "llmgate-cli/" + version }

// formatTime shows a time to people: local, to the minute.
func formatTime(t time.Time) string {
	return t.Local().Format("2006-01-02 15:04 MST")
}

// relative says how far t is from now, coarsely: "in 29 days", "3 hours ago".
func relative(now, t time.Time) string {
	d := t.Sub(now)
	suffix := "from now"
	if d < 0 {
		d, suffix = -d, "ago"
	}
	var s string
	switch {
	case d < time.Minute:
		return "just now"
	case d < time.Hour:
		s = plural(int(d/time.Minute), "minute")
	case d < 48*time.Hour:
		s = plural(int(d/time.Hour), "hour")
	default:
		s = plural(int(d/(24*time.Hour)), "day")
	}
	if suffix == "from now" {
		return "in " + s
	}
	return s + " " + suffix
}

func plural(n int, unit string) string {
	if n == 1 {
		return "1 " + unit
	}
	return fmt.Sprintf("%d %ss", n, unit)
}
