package gateway

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"golang.org/x/net/html"

	"github.com/llmgate/llmgate/internal/webtest"
)

// formByAction reads the form of p whose action is action (pages carry the
// sign-out form first), with its inputs' values.
func formByAction(tb testing.TB, p webtest.Page, action string) webtest.Form {
	tb.Helper()
	doc, err := html.Parse(strings.NewReader(p.Body))
	if err != nil {
		tb.Fatalf("parse page %s: %v", p.URL, err)
	}
	var f *webtest.Form
	var walk func(n *html.Node, in bool)
	walk = func(n *html.Node, in bool) {
		if n.Type == html.ElementNode {
			switch n.Data {
			case "form":
				if f == nil && attrOf(n, "action") == action {
					u, _ := url.Parse(action)
					f = &webtest.Form{Action: u, Values: url.Values{}}
					in = true
				} else {
					in = false
				}
			case "input":
				if in && attrOf(n, "name") != "" {
					f.Values.Set(attrOf(n, "name"), attrOf(n, "value"))
				}
			}
		}
		for c := n.FirstChild; c != nil; c = c.NextSibling {
			walk(c, in)
		}
	}
	walk(doc, false)
	if f == nil {
		tb.Fatalf("page %s (status %d) has no form with action %s:\n%s", p.URL, p.Status, action, p.Body)
	}
	return *f
}

func attrOf(n *html.Node, name string) string {
	for _, a := range n.Attr {
		if a.Key == name {
			return a.Val
		}
	}
	return ""
}

// loopback is the CLI's side of the loopback sign-in: a listener on
// 127.0.0.1 whose /callback answers 200, and the PKCE pair.
type loopback struct {
	redirect  string
	state     string
	verifier  string
	challenge string
}

func newLoopback(tb testing.TB) loopback {
	tb.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "you can close this page")
	})}
	go srv.Serve(ln)
	tb.Cleanup(func() { srv.Close() })
	v := randomString(48)
	sum := sha256.Sum256([]byte(v))
	return loopback{
		redirect:  "http://" + ln.Addr().String() + "/callback",
		state:     randomString(16),
		verifier:  v,
		challenge: base64.RawURLEncoding.EncodeToString(sum[:]),
	}
}

func randomString(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)[:n]
}

// authorizeURL is where the CLI sends the browser.
func (l loopback) authorizeURL(h *harness, host, name string) string {
	q := url.Values{
		"redirect_uri": {l.redirect}, "state": {l.state}, "code_challenge": {l.challenge},
		"code_challenge_method": {"S256"}, "host": {host},
	}
	if name != "" {
		q.Set("name", name)
	}
	return h.url + "/cli/authorize?" + q.Encode()
}

// sameOrigin is the header a browser sends with a form of the gateway's own page.
func sameOrigin(h *harness) http.Header { return http.Header{"Origin": {h.url}} }

// submit posts form f of page p (with the button's action) from the gateway's origin.
func (b *browser) submit(h *harness, f webtest.Form, action string) webtest.Page {
	b.t.Helper()
	v := url.Values{}
	for k, vs := range f.Values {
		v[k] = append([]string(nil), vs...)
	}
	if action != "" {
		v.Set("action", action)
	}
	return b.PostForm(h.url+f.Action.String(), v, sameOrigin(h))
}

// approveLoopback plays the browser of a signed-in person through the
// consent page and returns the loopback page it ended on.
func (b *browser) approveLoopback(h *harness, l loopback, action string) webtest.Page {
	b.t.Helper()
	p := b.Get(l.authorizeURL(h, "laptop", ""))
	if p.Status != http.StatusOK || p.URL.Path != "/cli/authorize" {
		b.t.Fatalf("GET /cli/authorize: %d at %s, want the consent page\n%s", p.Status, p.URL, p.Body)
	}
	return b.submit(h, formByAction(b.t, p, "/cli/authorize"), action)
}

// oauthPost posts a form to the gateway as a CLI does (no cookies) and
// decodes the JSON answer.
func (h *harness) oauthPost(tb testing.TB, path string, form url.Values, header http.Header) (*http.Response, map[string]any) {
	tb.Helper()
	req, err := http.NewRequest(http.MethodPost, h.url+path, strings.NewReader(form.Encode()))
	if err != nil {
		tb.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	for k, v := range header {
		req.Header[k] = v
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		tb.Fatalf("POST %s: %v", path, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	var out map[string]any
	if err := json.Unmarshal(body, &out); err != nil {
		tb.Fatalf("POST %s: %d, answer is not JSON: %v\n%s", path, resp.StatusCode, err, body)
	}
	return resp, out
}

// exchange trades a loopback code for the CLI credential.
func (h *harness) exchange(tb testing.TB, l loopback, code string) (*http.Response, map[string]any) {
	tb.Helper()
	return h.oauthPost(tb, "/api/cli/token", url.Values{
		"grant_type": {"authorization_code"}, "code": {code}, "code_verifier": {l.verifier}, "redirect_uri": {l.redirect},
	}, nil)
}

func str(m map[string]any, k string) string {
	s, _ := m[k].(string)
	return s
}
