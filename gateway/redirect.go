package gateway

import (
	"net/url"
	"strings"
)

// safeRedirect returns rd when it is a path on this gateway, and "/"
// otherwise. Browsers treat "//host", "/\host" and "\/host" as other
// origins, ignore tabs and newlines inside URLs, and some proxies decode
// percent-escapes once more, so every one of those forms is refused, in
// the raw value and in each decoding of it.
func safeRedirect(rd string) string {
	if isLocalPath(rd) {
		return rd
	}
	return "/"
}

func isLocalPath(rd string) bool {
	if rd == "" || len(rd) > 2048 {
		return false
	}
	v := rd
	for range 3 {
		if !localShape(v) {
			return false
		}
		d, err := url.PathUnescape(v)
		if err != nil {
			return false
		}
		if d == v {
			break
		}
		v = d
	}
	u, err := url.Parse(rd)
	if err != nil || u.Scheme != "" || u.Host != "" || u.User != nil || u.Opaque != "" {
		return false
	}
	return true
}

// localShape checks one form of rd: it starts with a single "/", holds no
// backslash and no control character.
func localShape(s string) bool {
	if !strings.HasPrefix(s, "/") || strings.HasPrefix(s, "//") {
		return false
	}
	for i := 0; i < len(s); i++ {
		b := s[i]
		if b < 0x20 || b == 0x7f || b == '\\' {
			return false
		}
	}
	// Non-ASCII look-alikes of "/" and "\" (e.g. U+FF0F, U+2215) are
	// normalised by some browsers.
	for _, r := range s {
		switch r {
		case '\uff0f', '\u2215', '\u2044', '\uff3c', '\u29f5', '\u29f8', '\ufe68':
			return false
		}
	}
	return true
}
