// Package webtest plays a browser in tests: a cookie-keeping HTTP client
// that follows redirects, remembers where it went, and fills in and
// submits HTML forms such as an identity provider's login page.
package webtest

import (
	"errors"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"strings"
	"testing"
	"time"

	"golang.org/x/net/html"
)

// Browser is a cookie-keeping HTTP client for one test.
type Browser struct {
	tb testing.TB
	// Client is the underlying client; its Jar holds the cookies.
	Client *http.Client
	// Visited lists every URL requested, redirects included, in order.
	Visited []string
	// StopAt, when it returns true for a redirect target, makes the
	// browser stop there and return the redirect response itself.
	StopAt func(*url.URL) bool
}

// NewBrowser returns a browser with an empty cookie jar.
func NewBrowser(tb testing.TB) *Browser {
	jar, _ := cookiejar.New(nil)
	b := &Browser{tb: tb}
	b.Client = &http.Client{Jar: jar, Timeout: 10 * time.Second}
	b.Client.CheckRedirect = func(req *http.Request, via []*http.Request) error {
		b.Visited = append(b.Visited, req.URL.String())
		if b.StopAt != nil && b.StopAt(req.URL) {
			return http.ErrUseLastResponse
		}
		if len(via) > 20 {
			return errors.New("too many redirects")
		}
		return nil
	}
	return b
}

// Page is where a request ended.
type Page struct {
	Status int
	URL    *url.URL // final URL, after redirects
	Body   string
	Header http.Header
}

// Do sends req and reads the whole answer.
func (b *Browser) Do(req *http.Request) Page {
	b.tb.Helper()
	b.Visited = append(b.Visited, req.URL.String())
	resp, err := b.Client.Do(req)
	if err != nil {
		b.tb.Fatalf("%s %s: %v", req.Method, req.URL, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return Page{Status: resp.StatusCode, URL: resp.Request.URL, Body: string(body), Header: resp.Header}
}

// Get visits u.
func (b *Browser) Get(u string) Page {
	b.tb.Helper()
	req, err := http.NewRequest(http.MethodGet, u, nil)
	if err != nil {
		b.tb.Fatal(err)
	}
	return b.Do(req)
}

// PostForm posts form to u with extra headers.
func (b *Browser) PostForm(u string, form url.Values, header http.Header) Page {
	b.tb.Helper()
	req, err := http.NewRequest(http.MethodPost, u, strings.NewReader(form.Encode()))
	if err != nil {
		b.tb.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	for k, v := range header {
		req.Header[k] = v
	}
	return b.Do(req)
}

// SubmitLogin fills the login form on p (fields username and password)
// and submits it.
func (b *Browser) SubmitLogin(p Page, username, password string) Page {
	b.tb.Helper()
	f := ParseForm(b.tb, p)
	f.Values.Set("username", username)
	f.Values.Set("password", password)
	return b.PostForm(p.URL.ResolveReference(f.Action).String(), f.Values, nil)
}

// Cookie returns the cookie name the browser holds for u, or nil.
func (b *Browser) Cookie(u, name string) *http.Cookie {
	pu, _ := url.Parse(u)
	for _, c := range b.Client.Jar.Cookies(pu) {
		if c.Name == name {
			return c
		}
	}
	return nil
}

// Form is an HTML form's action and the values of its inputs.
type Form struct {
	Action *url.URL
	Values url.Values
}

// ParseForm reads the first form of p.
func ParseForm(tb testing.TB, p Page) Form {
	tb.Helper()
	doc, err := html.Parse(strings.NewReader(p.Body))
	if err != nil {
		tb.Fatalf("parse page %s: %v", p.URL, err)
	}
	var f *Form
	var walk func(n *html.Node)
	walk = func(n *html.Node) {
		if n.Type == html.ElementNode {
			switch n.Data {
			case "form":
				if f == nil {
					f = &Form{Action: &url.URL{}, Values: url.Values{}}
					if a := attr(n, "action"); a != "" {
						f.Action, _ = url.Parse(a)
					}
				}
			case "input":
				if f != nil && attr(n, "name") != "" {
					f.Values.Set(attr(n, "name"), attr(n, "value"))
				}
			}
		}
		for c := n.FirstChild; c != nil; c = c.NextSibling {
			walk(c)
		}
	}
	walk(doc)
	if f == nil {
		tb.Fatalf("page %s (status %d) has no form:\n%s", p.URL, p.Status, p.Body)
	}
	return *f
}

func attr(n *html.Node, name string) string {
	for _, a := range n.Attr {
		if a.Key == name {
			return a.Val
		}
	}
	return ""
}
