package main

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"html/template"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"runtime"
	"time"

	"github.com/llmgate/llmgate/gateway"
)

const loginSummary = `Sign in to a gateway and store a credential for the other commands
(token, env, whoami), like 'gh auth login'.

By default llmgate opens your browser on the gateway (and prints the URL in
case no browser opens); after company sign-in you approve "llmgate login" on
this host, and the browser hands a one-time code back to llmgate on a
loopback address (127.0.0.1, a random port; RFC 8252 with PKCE).

On a machine without a browser (SSH, containers) use --device: llmgate prints
a URL and a short code to enter on any device where you can sign in (RFC 8628).

The credential is an API token (scopes llm and tokens) that lasts
LLMGATE_CLI_TOKEN_TTL (30 days by default). It is stored in
$XDG_CONFIG_HOME/llmgate/credentials.json (~/.config/llmgate/…; file mode
0600), one per gateway; the last one signed in to is the default.
LLMGATE_TOKEN and LLMGATE_SERVER override the stored credential and gateway.

Examples:
  llmgate login --server https://llm.example.com
  llmgate login --server https://llm.example.com --device
  llmgate login --server http://127.0.0.1:8080 --no-browser
  llmgate login --name "ci runner 7"`

// loginResult is the answer of /api/cli/token and of the device token endpoint.
type loginResult struct {
	AccessToken string    `json:"access_token"`
	TokenType   string    `json:"token_type"`
	ExpiresIn   int64     `json:"expires_in"`
	Scope       string    `json:"scope"`
	Email       string    `json:"email"`
	TokenID     string    `json:"token_id"`
	ExpiresAt   time.Time `json:"expires_at"`
}

// oauthError is an RFC 6749 §5.2 error answer.
type oauthError struct {
	Code        string `json:"error"`
	Description string `json:"error_description"`
}

type loginOptions struct {
	server, name, host string
	device, noBrowser  bool
	timeout            time.Duration
}

func cmdLogin(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	c := newCLI(stdout, stderr)
	fs := newFlagSet("login", loginSummary, stderr)
	server := fs.String("server", "", "gateway URL, like https://llm.example.com (default: LLMGATE_SERVER, else the last one)")
	device := fs.Bool("device", false, "sign in with a code on another device (no browser needed here)")
	name := fs.String("name", "", `name of the credential in your token list (default: "llmgate CLI on HOSTNAME")`)
	noBrowser := fs.Bool("no-browser", false, "do not open a browser; only print the URL to open")
	timeout := fs.Duration("timeout", 10*time.Minute, "give up when sign-in takes longer than this")
	if code := parseFlags(fs, args); code >= 0 {
		return code
	}
	path, err := credentialsPath(c.getenv)
	if err != nil {
		return c.fail("login", err)
	}
	f, err := loadCredentials(path)
	if err != nil {
		return c.fail("login", err)
	}
	o := loginOptions{name: *name, device: *device, noBrowser: *noBrowser, timeout: *timeout}
	o.server, err = c.server(*server, f)
	if err != nil {
		return c.fail("login", err)
	}
	if o.server == "" {
		fmt.Fprintln(stderr, "llmgate login: which gateway? Pass --server, e.g. llmgate login --server https://llm.example.com")
		return exitUsage
	}
	if w := plainHTTPWarning(o.server); w != "" {
		fmt.Fprintf(stderr, "warning: %s is plain http: your credential would cross the network unencrypted; use https://\n", o.server)
	}
	o.host, _ = os.Hostname()

	ctx, cancel := context.WithTimeout(ctx, o.timeout)
	defer cancel()
	if err := c.preflight(ctx, o.server); err != nil {
		return c.fail("login", err)
	}
	var res *loginResult
	if o.device {
		res, err = c.deviceLogin(ctx, o)
	} else {
		res, err = c.loopbackLogin(ctx, o)
	}
	switch {
	case errors.Is(err, context.DeadlineExceeded) && ctx.Err() != nil:
		err = fmt.Errorf("sign-in did not finish within %v: run 'llmgate login' again", o.timeout)
	case errors.Is(err, context.Canceled):
		err = errors.New("cancelled; nothing was stored")
	}
	if err != nil {
		return c.fail("login", err)
	}

	old := f.Servers[o.server]
	cred := &credential{Token: res.AccessToken, TokenID: res.TokenID, Email: res.Email, Scope: res.Scope, ExpiresAt: res.ExpiresAt, CreatedAt: c.now().UTC()}
	if cred.ExpiresAt.IsZero() && res.ExpiresIn > 0 {
		cred.ExpiresAt = c.now().Add(time.Duration(res.ExpiresIn) * time.Second).UTC()
	}
	f.Servers[o.server] = cred
	f.Default = o.server
	if err := saveCredentials(path, f); err != nil {
		return c.fail("login", err)
	}
	// The credential this one replaces is of no use any more: revoke it
	// (best effort) so it does not linger in the token list.
	if old != nil && old.TokenID != "" && old.TokenID != cred.TokenID {
		rctx, rcancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
		_ = c.call(rctx, &auth{server: o.server, token: old.Token, cred: old}, http.MethodDelete, "/api/tokens/"+url.PathEscape(old.TokenID), nil, nil)
		rcancel()
	}
	fmt.Fprintf(stdout, "Signed in to %s as %s. The credential expires %s and is stored in %s.\n",
		o.server, res.Email, formatTime(cred.ExpiresAt), path)
	if c.getenv(envToken) != "" {
		fmt.Fprintf(stderr, "Note: %s is set and takes precedence over the stored credential; unset it to use this one.\n", envToken)
	}
	return exitOK
}

// preflight checks that the gateway answers before a browser is sent to
// it: GET /healthz. Only getting no answer at all stops the sign-in.
func (c *cli) preflight(ctx context.Context, server string) error {
	ctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, server+"/healthz", nil)
	if err != nil {
		return err
	}
	req.Header.Set("User-Agent", userAgent())
	resp, err := c.http.Do(req)
	if err != nil {
		return unreachable(server+"/healthz", err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		fmt.Fprintf(c.stderr, "warning: %s/healthz answered %s; is %s the llmgate URL?\n", server, resp.Status, server)
	}
	return nil
}

// randomString is n random bytes, base64url without padding.
func randomString(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)
}

// pkceChallenge is the S256 code challenge of verifier (RFC 7636 §4.2).
func pkceChallenge(verifier string) string {
	sum := sha256.Sum256([]byte(verifier))
	return base64.RawURLEncoding.EncodeToString(sum[:])
}

// callbackOutcome is what the browser brought back to the loopback listener.
type callbackOutcome struct {
	code string
	err  error
	// done receives the result of the exchange, for the page the browser shows.
	done chan error
}

// loopbackLogin runs the authorization code flow with PKCE through the
// browser and a listener on 127.0.0.1 (RFC 8252 §7.3).
func (c *cli) loopbackLogin(ctx context.Context, o loginOptions) (*loginResult, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("listen on 127.0.0.1 for the browser's answer: %w (use --device instead)", err)
	}
	redirectURI := fmt.Sprintf("http://127.0.0.1:%d/callback", ln.Addr().(*net.TCPAddr).Port)
	state := randomString(32)
	verifier := randomString(32) // 43 characters, RFC 7636 §4.1
	q := url.Values{
		"redirect_uri":          {redirectURI},
		"state":                 {state},
		"code_challenge":        {pkceChallenge(verifier)},
		"code_challenge_method": {"S256"},
		"host":                  {o.host},
	}
	if o.name != "" {
		q.Set("name", o.name)
	}
	authURL := o.server + "/cli/authorize?" + q.Encode()

	outcomes := make(chan callbackOutcome, 1)
	srv := &http.Server{
		Handler:           callbackHandler(state, outcomes),
		ReadHeaderTimeout: 10 * time.Second,
	}
	go srv.Serve(ln)
	defer func() {
		sctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		srv.Shutdown(sctx)
		cancel()
	}()

	if o.noBrowser {
		fmt.Fprintf(c.stderr, "Open this URL in a browser on this machine to sign in to %s:\n\n  %s\n\n", o.server, authURL)
	} else {
		fmt.Fprintf(c.stderr, "Opening your browser to sign in to %s. If it does not open, visit:\n\n  %s\n\n", o.server, authURL)
		if err := c.openBrowser(authURL); err != nil {
			fmt.Fprintf(c.stderr, "(could not open a browser: %v; open the URL yourself, or use --device)\n", err)
		}
	}
	if c.getenv("SSH_CONNECTION") != "" {
		fmt.Fprintln(c.stderr, "(Over SSH the browser must run on this machine to reach 127.0.0.1; if it cannot, Ctrl-C and use --device.)")
	}
	fmt.Fprintln(c.stderr, "Waiting for the browser… (Ctrl-C cancels)")

	select {
	case <-ctx.Done():
		return nil, ctx.Err()
	case out := <-outcomes:
		if out.err != nil {
			out.done <- out.err
			return nil, out.err
		}
		res, err := c.exchangeCode(ctx, o.server, out.code, verifier, redirectURI)
		out.done <- err
		return res, err
	}
}

var callbackPage = template.Must(template.New("callback").Parse(`<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>llmgate login</title>
<style>body{font-family:system-ui,sans-serif;max-width:36rem;margin:4rem auto;padding:0 1rem;line-height:1.5}</style></head>
<body><h1>{{.Heading}}</h1><p>{{.Message}}</p></body></html>
`))

// callbackHandler answers the browser's redirect to the loopback address.
// Only the first answer with the right state counts; anything else gets a
// page saying what is wrong and does not end the wait.
func callbackHandler(state string, outcomes chan<- callbackOutcome) http.Handler {
	taken := make(chan struct{}, 1)
	page := func(w http.ResponseWriter, status int, heading, msg string) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		w.Header().Set("Cache-Control", "no-store")
		w.WriteHeader(status)
		callbackPage.Execute(w, struct{ Heading, Message string }{heading, msg})
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/callback" || r.Method != http.MethodGet {
			http.NotFound(w, r)
			return
		}
		q := r.URL.Query()
		if subtle.ConstantTimeCompare([]byte(q.Get("state")), []byte(state)) != 1 {
			page(w, http.StatusBadRequest, "Not this sign-in",
				"This answer does not belong to the sign-in this terminal started (the state does not match). Nothing was signed in. Run llmgate login again if you are still signing in.")
			return
		}
		select {
		case taken <- struct{}{}:
		default:
			page(w, http.StatusConflict, "Already done", "This sign-in has already been handled; you can close this window.")
			return
		}
		out := callbackOutcome{code: q.Get("code"), done: make(chan error, 1)}
		switch e := q.Get("error"); {
		case e == "access_denied":
			out.err = errors.New("sign-in was denied in the browser")
		case e != "":
			out.err = fmt.Errorf("the gateway refused the sign-in: %s %s", e, q.Get("error_description"))
		case out.code == "":
			out.err = errors.New("the browser came back without a code")
		}
		outcomes <- out
		var err error
		select {
		case err = <-out.done:
		case <-r.Context().Done():
			return
		}
		if err != nil {
			page(w, http.StatusOK, "Not signed in", "llmgate login did not finish: "+err.Error()+". The terminal says more; you can close this window.")
			return
		}
		page(w, http.StatusOK, "Signed in", "llmgate on this machine is signed in. You can close this window and return to the terminal.")
	})
}

// exchangeCode trades the one-time code for the credential:
// POST /api/cli/token (authorization_code grant with the PKCE verifier).
func (c *cli) exchangeCode(ctx context.Context, server, code, verifier, redirectURI string) (*loginResult, error) {
	status, body, err := c.postForm(ctx, server, "/api/cli/token", url.Values{
		"grant_type":    {"authorization_code"},
		"code":          {code},
		"code_verifier": {verifier},
		"redirect_uri":  {redirectURI},
	})
	if err != nil {
		return nil, err
	}
	if status == http.StatusOK {
		return decodeLogin(server, "/api/cli/token", body)
	}
	var oe oauthError
	if json.Unmarshal(body, &oe) != nil || oe.Code == "" {
		return nil, fmt.Errorf("%s/api/cli/token answered %d, not an llmgate answer: is %s the gateway's URL (and is it recent enough for 'llmgate login')?", server, status, server)
	}
	switch oe.Code {
	case "invalid_grant":
		return nil, fmt.Errorf("the gateway did not accept the sign-in code (%s): run 'llmgate login' again", oe.Description)
	case "temporarily_unavailable":
		return nil, fmt.Errorf("the gateway cannot reach its store right now: try 'llmgate login' again shortly")
	}
	return nil, fmt.Errorf("the gateway refused the sign-in: %s %s", oe.Code, oe.Description)
}

// decodeLogin reads a successful token answer.
func decodeLogin(server, path string, body []byte) (*loginResult, error) {
	var res loginResult
	if err := json.Unmarshal(body, &res); err != nil || res.AccessToken == "" {
		return nil, fmt.Errorf("%s%s answered 200 without a credential: is %s the gateway's URL?", server, path, server)
	}
	return &res, nil
}

// deviceCode is the answer of POST /api/device/code (RFC 8628 §3.2).
type deviceCode struct {
	DeviceCode              string `json:"device_code"`
	UserCode                string `json:"user_code"`
	VerificationURI         string `json:"verification_uri"`
	VerificationURIComplete string `json:"verification_uri_complete"`
	ExpiresIn               int    `json:"expires_in"`
	Interval                int    `json:"interval"`
}

// slowDownStep is what RFC 8628 §3.5 adds to the interval at slow_down.
const slowDownStep = 5 * time.Second

// deviceLogin runs the device authorization grant (RFC 8628).
func (c *cli) deviceLogin(ctx context.Context, o loginOptions) (*loginResult, error) {
	form := url.Values{"client_id": {"llmgate-cli"}, "host": {o.host}}
	if o.name != "" {
		form.Set("name", o.name)
	}
	status, body, err := c.postForm(ctx, o.server, "/api/device/code", form)
	if err != nil {
		return nil, err
	}
	var dc deviceCode
	if status != http.StatusOK || json.Unmarshal(body, &dc) != nil || dc.DeviceCode == "" || dc.UserCode == "" {
		var oe oauthError
		if json.Unmarshal(body, &oe) == nil && oe.Code != "" {
			return nil, fmt.Errorf("%s refused to start a device sign-in: %s %s", o.server, oe.Code, oe.Description)
		}
		return nil, fmt.Errorf("%s/api/device/code answered %d, not an llmgate answer: is %s the gateway's URL (and is it recent enough for --device)?", o.server, status, o.server)
	}
	interval := time.Duration(dc.Interval) * time.Second
	if interval <= 0 {
		interval = 5 * time.Second // RFC 8628 §3.2 default
	}
	expires := time.Duration(dc.ExpiresIn) * time.Second
	if expires <= 0 {
		expires = 10 * time.Minute
	}
	deadline := time.Now().Add(expires)

	fmt.Fprintf(c.stderr, "To sign in to %s, open on any device\n\n  %s\n\nand enter the code\n\n  %s\n\n", o.server, dc.VerificationURI, dc.UserCode)
	if dc.VerificationURIComplete != "" {
		fmt.Fprintf(c.stderr, "(or open %s, which has the code filled in)\n", dc.VerificationURIComplete)
	}
	fmt.Fprintf(c.stderr, "Waiting for approval; the code expires in %s… (Ctrl-C cancels)\n", expires.Round(time.Second))

	timer := time.NewTimer(interval)
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-timer.C:
		}
		status, body, err := c.postForm(ctx, o.server, "/api/device/token", url.Values{
			"grant_type":  {"urn:ietf:params:oauth:grant-type:device_code"},
			"device_code": {dc.DeviceCode},
			"client_id":   {"llmgate-cli"},
		})
		if err != nil {
			return nil, err
		}
		if status == http.StatusOK {
			return decodeLogin(o.server, "/api/device/token", body)
		}
		var oe oauthError
		if json.Unmarshal(body, &oe) != nil || oe.Code == "" {
			return nil, fmt.Errorf("%s/api/device/token answered %d, not an llmgate answer", o.server, status)
		}
		switch oe.Code {
		case "authorization_pending":
		case "slow_down":
			interval += slowDownStep
		case "access_denied":
			return nil, errors.New("sign-in was denied in the browser")
		case "expired_token":
			return nil, errors.New("the code expired before it was approved: run 'llmgate login --device' again")
		case "temporarily_unavailable":
			// The gateway's store is briefly down; keep polling.
		default:
			return nil, fmt.Errorf("the gateway refused the sign-in: %s %s", oe.Code, oe.Description)
		}
		if time.Now().After(deadline) {
			return nil, errors.New("the code expired before it was approved: run 'llmgate login --device' again")
		}
		timer.Reset(interval)
	}
}

// openBrowser opens u in the person's browser, best effort: $BROWSER when
// set (as gh does), else the platform's opener.
func (c *cli) openBrowser(u string) error {
	var cmd *exec.Cmd
	if b := c.getenv("BROWSER"); b != "" {
		cmd = exec.Command(b, u)
	} else {
		switch runtime.GOOS {
		case "darwin":
			cmd = exec.Command("open", u)
		case "windows":
			cmd = exec.Command("rundll32", "url.dll,FileProtocolHandler", u)
		default:
			if c.getenv("DISPLAY") == "" && c.getenv("WAYLAND_DISPLAY") == "" {
				return errors.New("no graphical display here")
			}
			cmd = exec.Command("xdg-open", u)
		}
	}
	cmd.Stdout, cmd.Stderr = nil, nil
	if err := cmd.Start(); err != nil {
		return err
	}
	go cmd.Wait() // reap it; openers return at once or run the browser
	return nil
}

const logoutSummary = `Sign out: revoke the stored credential on the gateway and delete it from the
credentials file. Other gateways' credentials stay.

Examples:
  llmgate logout
  llmgate logout --server https://llm.example.com`

func cmdLogout(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	c := newCLI(stdout, stderr)
	fs := newFlagSet("logout", logoutSummary, stderr)
	server := fs.String("server", "", "gateway URL (default: LLMGATE_SERVER, else the one you signed in to)")
	if code := parseFlags(fs, args); code >= 0 {
		return code
	}
	path, err := credentialsPath(c.getenv)
	if err != nil {
		return c.fail("logout", err)
	}
	f, err := loadCredentials(path)
	if err != nil {
		return c.fail("logout", err)
	}
	s, err := c.server(*server, f)
	if err != nil {
		return c.fail("logout", err)
	}
	if c.getenv(envToken) != "" {
		fmt.Fprintf(stderr, "Note: %s is set; commands keep using it until you unset it.\n", envToken)
	}
	cred := f.Servers[s]
	if s == "" || cred == nil {
		where := s
		if where == "" {
			where = "any gateway"
		}
		fmt.Fprintf(stderr, "llmgate logout: not signed in to %s; nothing to do\n", where)
		return exitFailure
	}

	a := &auth{server: s, token: cred.Token, source: path, cred: cred, path: path}
	revokeErr := c.revokeOwn(ctx, a)

	delete(f.Servers, s)
	if f.Default == s {
		f.Default = ""
	}
	if err := saveCredentials(path, f); err != nil {
		return c.fail("logout", err)
	}
	if revokeErr != nil {
		fmt.Fprintf(stderr, "llmgate logout: deleted the credential from %s, but could not revoke it on the gateway: %v\n", path, revokeErr)
		fmt.Fprintf(stderr, "It stays valid until %s unless revoked: revoke token %s in the web UI at %s.\n", formatTime(cred.ExpiresAt), cred.TokenID, s)
		return exitFailure
	}
	fmt.Fprintf(stdout, "Signed out of %s: the credential is revoked and deleted from %s.\n", s, path)
	return exitOK
}

// revokeOwn revokes a's credential on the gateway. A credential that the
// gateway already refuses (expired, revoked) needs nothing more.
func (c *cli) revokeOwn(ctx context.Context, a *auth) error {
	id := a.cred.TokenID
	if id == "" {
		var me gateway.Me
		err := c.call(ctx, a, http.MethodGet, "/api/me", nil, &me)
		var ae *apiError
		if errors.As(err, &ae) && ae.Status == http.StatusUnauthorized {
			return nil
		}
		if err != nil {
			return err
		}
		id = me.TokenID
	}
	err := c.call(ctx, a, http.MethodDelete, "/api/tokens/"+url.PathEscape(id), nil, nil)
	var ae *apiError
	if errors.As(err, &ae) && (ae.Status == http.StatusUnauthorized || ae.Status == http.StatusNotFound) {
		return nil
	}
	return err
}
