package main

import (
	"net/http"
	"net/url"
	"os"
	"regexp"
	"strings"
	"testing"

	"golang.org/x/net/html"

	"github.com/llmgate/llmgate/internal/devidp"
	"github.com/llmgate/llmgate/internal/webtest"
)

// signInBrowser opens u in a fresh browser and signs in at the dev
// provider as person; it returns the browser and the page it lands on.
func signInBrowser(t *testing.T, u string, person devidp.User) (*webtest.Browser, webtest.Page) {
	t.Helper()
	b := webtest.NewBrowser(t)
	p := b.Get(u)
	p = b.SubmitLogin(p, person.Email, person.Password)
	return b, p
}

// decide submits the approval form of page p with action approve or deny,
// from the gateway's own origin, as a browser does.
func decide(t *testing.T, b *webtest.Browser, gw string, p webtest.Page, action string) webtest.Page {
	t.Helper()
	f := formWithButton(t, p, "action", action)
	f.Values.Set("action", action)
	return b.PostForm(p.URL.ResolveReference(f.Action).String(), f.Values, http.Header{"Origin": {gw}})
}

// formWithButton reads the form of p that has a button name=value (the
// page has other forms, such as Sign out).
func formWithButton(t *testing.T, p webtest.Page, name, value string) webtest.Form {
	t.Helper()
	doc, err := html.Parse(strings.NewReader(p.Body))
	if err != nil {
		t.Fatal(err)
	}
	attr := func(n *html.Node, k string) string {
		for _, a := range n.Attr {
			if a.Key == k {
				return a.Val
			}
		}
		return ""
	}
	var found *webtest.Form
	var walk func(n *html.Node, form *webtest.Form, hasButton *bool)
	walk = func(n *html.Node, form *webtest.Form, hasButton *bool) {
		if n.Type == html.ElementNode {
			switch n.Data {
			case "form":
				f := &webtest.Form{Action: &url.URL{}, Values: url.Values{}}
				f.Action, _ = url.Parse(attr(n, "action"))
				var has bool
				for c := n.FirstChild; c != nil; c = c.NextSibling {
					walk(c, f, &has)
				}
				if has && found == nil {
					found = f
				}
				return
			case "input":
				if form != nil && attr(n, "name") != "" {
					form.Values.Set(attr(n, "name"), attr(n, "value"))
				}
			case "button":
				if form != nil && attr(n, "name") == name && attr(n, "value") == value {
					*hasButton = true
				}
			}
		}
		for c := n.FirstChild; c != nil; c = c.NextSibling {
			walk(c, form, hasButton)
		}
	}
	walk(doc, nil, nil)
	if found == nil {
		t.Fatalf("page %s (%d) has no form with a %s=%s button:\n%s", p.URL, p.Status, name, value, p.Body)
	}
	return *found
}

// TestLoginLoopback signs in end to end: llmgate login prints the URL, the
// test plays the browser (SSO at the dev provider, then the consent page),
// the gateway redirects to the CLI's loopback listener, and the stored
// credential then works for whoami, token and the proxy.
func TestLoginLoopback(t *testing.T) {
	t.Parallel()
	g := startGateway(t)
	alice := devidp.DemoUsers()[0]
	u := newUser(t)
	hostname, _ := os.Hostname()

	cli, au := loopbackStart(t, u, g.url, "--name", "laptop")
	b, p := signInBrowser(t, au.String(), alice)
	if p.Status != http.StatusOK || !strings.Contains(p.Body, "llmgate login") || !strings.Contains(p.Body, hostname) {
		t.Fatalf("after SSO: %d at %s, want the consent page naming host %q:\n%s", p.Status, p.URL, hostname, p.Body)
	}
	p = decide(t, b, g.url, p, "approve")
	if !strings.HasPrefix(p.URL.String(), "http://127.0.0.1:") || !strings.Contains(p.Body, "Signed in") {
		t.Errorf("after Approve the browser is at %s (%d):\n%s\nwant the CLI's signed-in page on the loopback address", p.URL, p.Status, p.Body)
	}
	r := cli.wait(t)
	if r.code != 0 || !strings.Contains(r.stdout, "Signed in to "+g.url+" as alice@example.com") {
		t.Fatalf("llmgate login: %v", r)
	}
	f, err := loadCredentials(u.credsPath())
	if err != nil || f.Servers[g.url] == nil {
		t.Fatalf("no credential stored for %s: %v", g.url, err)
	}
	first := *f.Servers[g.url]
	checkCredentialFile(t, u, g.url, first.Token)
	if first.Scope != "llm tokens" || first.TokenID == "" || first.ExpiresAt.IsZero() {
		t.Errorf("stored credential = %+v, want scope llm tokens, a token id and the expiry", first)
	}

	r = u.run(t, "whoami")
	if r.code != 0 || !strings.Contains(r.stdout, "alice@example.com") || !strings.Contains(r.stdout, "llm tokens") || !strings.Contains(r.stdout, "laptop") {
		t.Errorf("whoami after login: %v\nwant alice, llm tokens, the credential named laptop", r)
	}
	r = u.run(t, "token", "list")
	if r.code != 0 || !regexp.MustCompile(`laptop +llmgate-cli .*\(this CLI\)`).MatchString(r.stdout) {
		t.Errorf("token list after login: %v\nwant the credential laptop from llmgate-cli marked (this CLI)", r)
	}
	if s := proxyStatus(t, g.url, first.Token); s != http.StatusOK {
		t.Errorf("the login credential on the proxy: %d, want 200", s)
	}

	// Signing in again (the browser's session is still there: straight to
	// consent) replaces the credential and revokes the old one.
	cli, au = loopbackStart(t, u, g.url)
	p = b.Get(au.String())
	p = decide(t, b, g.url, p, "approve")
	if r := cli.wait(t); r.code != 0 {
		t.Fatalf("second llmgate login: %v", r)
	}
	f, _ = loadCredentials(u.credsPath())
	if f.Servers[g.url].Token == first.Token {
		t.Fatal("the second login did not replace the credential")
	}
	if s := proxyStatus(t, g.url, first.Token); s != http.StatusUnauthorized {
		t.Errorf("the replaced credential on the proxy: %d, want 401 (revoked by the new login)", s)
	}

	// Deny on the consent page: the CLI says so and stores nothing new.
	cli, au = loopbackStart(t, u, g.url)
	p = decide(t, b, g.url, b.Get(au.String()), "deny")
	if r := cli.wait(t); r.code != 1 || !strings.Contains(r.stderr, "denied") {
		t.Errorf("llmgate login denied on the consent page: %v\nwant exit 1, denied", r)
	}
	if after, _ := loadCredentials(u.credsPath()); after.Servers[g.url].Token != f.Servers[g.url].Token {
		t.Error("a denied login changed the stored credential")
	}
}

// TestAuthorizeRefusesNonLoopback: the gateway sends codes only to a
// loopback /callback; anything else is an error page, never a redirect.
func TestAuthorizeRefusesNonLoopback(t *testing.T) {
	t.Parallel()
	g := startGateway(t)
	b, _ := signInBrowser(t, g.url+"/", devidp.DemoUsers()[1])
	b.StopAt = func(u *url.URL) bool { return "http://"+u.Host != g.url } // never follow a redirect off the gateway
	challenge := pkceChallenge(randomString(32))
	for _, redirect := range []string{
		"http://evil.example.com/callback",
		"https://127.0.0.1:4000/callback",
		"http://127.0.0.1:4000/other",
		"http://user@127.0.0.1:4000/callback",
		"http://127.0.0.1.evil.example.com/callback",
	} {
		q := url.Values{"redirect_uri": {redirect}, "state": {"s"}, "code_challenge": {challenge}, "code_challenge_method": {"S256"}, "host": {"h"}}
		p := b.Get(g.url + "/cli/authorize?" + q.Encode())
		if p.Status != http.StatusBadRequest || p.Header.Get("Location") != "" || p.URL.String() != g.url+"/cli/authorize?"+q.Encode() ||
			!strings.Contains(p.Header.Get("Content-Type"), "text/html") {
			t.Errorf("GET /cli/authorize with redirect_uri %s: %d at %s (Location %q), want a 400 HTML page and no redirect",
				redirect, p.Status, p.URL, p.Header.Get("Location"))
		}
	}
}

var userCodeLine = regexp.MustCompile(`(?m)^\s+([B-DF-HJ-NP-TV-XZ]{4}-[B-DF-HJ-NP-TV-XZ]{4})$`)

// TestLoginDevice signs in with --device end to end: the CLI prints the
// code, the person approves it on /device after SSO, the CLI's polling
// picks up the credential; a denial ends the CLI with exit 1.
func TestLoginDevice(t *testing.T) {
	t.Parallel()
	g := startGateway(t)
	bob := devidp.DemoUsers()[1]
	u := newUser(t)

	cli := u.start(t, "login", "--server", g.url, "--device", "--name", "ssh box")
	code := cli.waitFor(t, userCodeLine)
	b, p := signInBrowser(t, g.url+"/device?user_code="+url.QueryEscape(code), bob)
	if !strings.Contains(p.Body, code) || !strings.Contains(p.Body, "Approve") {
		t.Fatalf("after SSO: %d at %s, want the approval page showing %s:\n%s", p.Status, p.URL, code, p.Body)
	}
	p = decide(t, b, g.url, p, "approve")
	if !strings.Contains(p.Body, "Signed in") {
		t.Errorf("after Approve: %d %s", p.Status, p.Body)
	}
	r := cli.wait(t)
	if r.code != 0 || !strings.Contains(r.stdout, "as bob@example.com") {
		t.Fatalf("llmgate login --device: %v", r)
	}
	f, _ := loadCredentials(u.credsPath())
	cred := f.Servers[g.url]
	if cred == nil {
		t.Fatal("login --device stored no credential")
	}
	checkCredentialFile(t, u, g.url, cred.Token)
	if r := u.run(t, "whoami"); r.code != 0 || !strings.Contains(r.stdout, "bob@example.com") || !strings.Contains(r.stdout, "ssh box") {
		t.Errorf("whoami after login --device: %v", r)
	}
	if s := proxyStatus(t, g.url, cred.Token); s != http.StatusOK {
		t.Errorf("the device credential on the proxy: %d, want 200", s)
	}

	cli = u.start(t, "login", "--server", g.url, "--device")
	code = cli.waitFor(t, userCodeLine)
	p = b.Get(g.url + "/device?user_code=" + url.QueryEscape(code))
	decide(t, b, g.url, p, "deny")
	if r := cli.wait(t); r.code != 1 || !strings.Contains(r.stderr, "denied") {
		t.Errorf("llmgate login --device denied: %v\nwant exit 1, denied", r)
	}
}
