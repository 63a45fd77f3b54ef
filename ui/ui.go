package ui

import (
	"bytes"
	"embed"
	"fmt"
	"html/template"
	"io"
	"io/fs"
	"strings"
	"sync"
	"time"
)

//go:embed templates/*.html
var templateFS embed.FS

//go:embed static
var staticFS embed.FS

// Static returns the assets served under /static/.
func Static() fs.FS {
	sub, err := fs.Sub(staticFS, "static")
	if err != nil {
		panic(err) // the embedded tree is fixed at build time
	}
	return sub
}

// Page is one renderable page; its Template names the file under templates/.
type Page interface {
	Template() string
}

// Layout is what every page shows around its content.
type Layout struct {
	Title     string
	User      *User  // nil when nobody is signed in
	CSRFToken string // for the sign-out form
	// Section is the navigation entry to mark as current: "tokens",
	// "usage", "admin-sessions", "admin-tokens", "admin-users",
	// "admin-usage", "admin-audit", "admin-spend".
	Section string
	// Flash says what the last action did (after a redirect).
	Flash string
	// FlashError marks a Flash that says an action was refused.
	FlashError bool
}

// User is the signed-in person as pages show them.
type User struct {
	Email  string
	Name   string
	Groups []string
	Admin  bool
}

// HomePage is the signed-in home page: who you are and your tokens.
type HomePage struct {
	Layout
	SessionExpires time.Time
	// BaseURL is the gateway's public URL, for the ready-to-paste settings.
	BaseURL string
	Tokens  []TokenRow
	// NewToken is set right after a token was created: shown this once.
	NewToken *NewToken
	// FormError says what was wrong with the last create form.
	FormError string
	// MaxTTLDays bounds the lifetime choices.
	MaxTTLDays int
	// Spend is this month's spend against the cap.
	Spend SpendBar
}

// TokenRow is one token in the list.
type TokenRow struct {
	ID        string
	Name      string
	Models    []string
	CreatedAt time.Time
	ExpiresAt time.Time
	LastUsed  *time.Time
	Status    string // active, revoked, expired
}

// NewToken is a token just created.
type NewToken struct {
	Name  string
	Token string
	// Model is the first model the token allows, "" for any: the
	// settings to paste use it.
	Model string
}

// ErrorPage explains a refusal or failure and what to do next.
type ErrorPage struct {
	Layout
	Status  int
	Heading string
	Message string
	// Advice says what to do about it, when Message does not.
	Advice string
	// ActionURL and ActionText offer the next step, e.g. signing in again.
	ActionURL  string
	ActionText string
}

// SignedOutPage confirms a sign-out.
type SignedOutPage struct {
	Layout
}

func (HomePage) Template() string      { return "home.html" }
func (ErrorPage) Template() string     { return "error.html" }
func (SignedOutPage) Template() string { return "signed_out.html" }

// Renderer renders pages. It is safe for concurrent use.
//
// A page's template is parsed when it is first rendered and kept from then
// on: parse trees are dense with pointers, and a gateway that only proxies
// API calls would otherwise have the garbage collector walk every page's
// tree (a third of its live heap) in each cycle, on the processor its calls
// wait for. NewRenderer still parses every page once, so that a broken
// template stops the gateway at start.
type Renderer struct {
	pages map[string]*page
}

// page is one page's template, parsed on first use.
type page struct {
	file string // e.g. templates/home.html
	once sync.Once
	t    *template.Template
	err  error
}

func (p *page) template() (*template.Template, error) {
	p.once.Do(func() { p.t, p.err = parsePage(p.file) })
	return p.t, p.err
}

// parsePage parses the page in file with the frame and the partials.
func parsePage(file string) (*template.Template, error) {
	return template.New("layout.html").Funcs(funcs).ParseFS(templateFS, "templates/layout.html", "templates/_*.html", file)
}

var funcs = template.FuncMap{
	"datetime": func(t time.Time) string { return t.UTC().Format("2006-01-02 15:04 UTC") },
	"join": func(s []string) string {
		out := ""
		for i, x := range s {
			if i > 0 {
				out += ", "
			}
			out += x
		}
		return out
	},
	"lifetimes": func(maxDays int) []int {
		var out []int
		for _, d := range []int{1, 7, 30, 90} {
			if d <= maxDays {
				out = append(out, d)
			}
		}
		return out
	},
}

// NewRenderer parses the embedded templates.
func NewRenderer() (*Renderer, error) {
	names, err := fs.Glob(templateFS, "templates/*.html")
	if err != nil {
		return nil, err
	}
	r := &Renderer{pages: map[string]*page{}}
	for _, n := range names {
		base := n[len("templates/"):]
		if base == "layout.html" || strings.HasPrefix(base, "_") {
			continue // the frame and partials, parsed with every page
		}
		if _, err := parsePage(n); err != nil {
			return nil, fmt.Errorf("parse template %s: %w", base, err)
		}
		r.pages[base] = &page{file: n}
	}
	return r, nil
}

// Render writes p. It renders into a buffer first so that a template error
// never leaves half a page behind.
func (r *Renderer) Render(w io.Writer, p Page) error {
	pg, ok := r.pages[p.Template()]
	if !ok {
		return fmt.Errorf("render: no template %s", p.Template())
	}
	t, err := pg.template()
	if err != nil {
		return fmt.Errorf("render %s: %w", p.Template(), err)
	}
	var buf bytes.Buffer
	if err := t.ExecuteTemplate(&buf, "layout.html", p); err != nil {
		return fmt.Errorf("render %s: %w", p.Template(), err)
	}
	_, err = buf.WriteTo(w)
	return err
}
