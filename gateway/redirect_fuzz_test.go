package gateway

import (
	"net/url"
	"regexp"
	"strings"
	"testing"
)

// schemeRE matches a URL that starts with a scheme.
var schemeRE = regexp.MustCompile(`^[a-zA-Z][a-zA-Z0-9+.\-]*:`)

// browserForm is rd as a lenient browser reads it: tabs and newlines
// dropped, backslashes taken for slashes, leading spaces and controls
// trimmed.
func browserForm(rd string) string {
	rd = strings.Map(func(r rune) rune {
		switch r {
		case '\t', '\n', '\r':
			return -1
		case '\\':
			return '/'
		}
		return r
	}, rd)
	return strings.TrimLeft(rd, " \x00\x01\x02\x03\x04\x05\x06\x07\x08\x0b\x0c\x0e\x0f\x10\x11\x12\x13\x14\x15\x16\x17\x18\x19\x1a\x1b\x1c\x1d\x1e\x1f")
}

// FuzzSafeRedirect: whatever rd= a sign-in link carries, safeRedirect sends
// the browser to "/" or to rd itself, and rd only when it stays on this
// gateway: resolved against the gateway's URL it keeps the host, and
// neither it nor its first two percent-decodings (as chained proxies may
// do), read by a lenient browser, start with "//" or a scheme.
//
//	go test -run '^$' -fuzz '^FuzzSafeRedirect$' -fuzztime 20s ./gateway/
func FuzzSafeRedirect(f *testing.F) {
	for _, s := range []string{"/", "/api/me", "/ui/tokens?page=2", "/a%20b", "//evil.example", "/\\evil.example",
		"/%2F/evil.example", "/%252F%252Fevil.example", "https://evil.example", "/\t/evil.example", "/／evil.example",
		"javascript:alert(1)", "/#//evil.example", "/?next=//evil.example", "/%5C%5Cevil.example", "/.//evil.example"} {
		f.Add(s)
	}
	base, _ := url.Parse("https://gw.example.com/oauth2/callback")
	f.Fuzz(func(t *testing.T, rd string) {
		got := safeRedirect(rd)
		if got == "/" {
			return
		}
		if got != rd {
			t.Fatalf("safeRedirect(%q) = %q: neither / nor rd", rd, got)
		}
		u, err := url.Parse(got)
		if err != nil {
			t.Fatalf("safeRedirect(%q) accepted a URL that does not parse: %v", rd, err)
		}
		if r := base.ResolveReference(u); r.Host != base.Host || r.Scheme != base.Scheme {
			t.Fatalf("safeRedirect(%q) accepted a URL that leaves the gateway: %s", rd, r)
		}
		v := got
		for range 3 {
			b := browserForm(v)
			if !strings.HasPrefix(b, "/") || strings.HasPrefix(b, "//") || schemeRE.MatchString(b) {
				t.Fatalf("safeRedirect(%q) accepted it, but a browser may read %q as another origin", rd, b)
			}
			d, err := url.PathUnescape(v)
			if err != nil || d == v {
				break
			}
			v = d
		}
	})
}
