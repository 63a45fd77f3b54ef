package grants

import (
	"strings"
	"testing"
)

// FuzzNormalizeUserCode: whatever a person types on the device page,
// NormalizeUserCode never panics; what it accepts is exactly userCodeLen
// letters of UserCodeAlphabet, typed in ASCII (letters of any case,
// dashes, spaces, tabs); normalizing is idempotent and FormatUserCode's
// form reads back as the same code.
//
//	go test -run '^$' -fuzz '^FuzzNormalizeUserCode$' -fuzztime 20s ./internal/grants/
func FuzzNormalizeUserCode(f *testing.F) {
	for _, s := range []string{"", "BCDF-GHJK", "bcdf ghjk", "bcdfghjk", " B-C-D-F-G-H-J-K ", "BCDF-GHJ", "BCDF-GHJKL",
		"AEIO-U123", "BCDF\u2010GHJK", "ＢＣＤＦ-ＧＨＪＫ", "ſſſſ-ſſſſ", "ıııı-ıııı", "BCDF-GHJ\u212a", strings.Repeat("-", 100) + "BCDFGHJK"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, in string) {
		code, ok := NormalizeUserCode(in)
		if !ok {
			if code != "" {
				t.Fatalf("NormalizeUserCode(%q) = %q, false: a refused code must be empty", in, code)
			}
			return
		}
		if len(code) != userCodeLen {
			t.Fatalf("NormalizeUserCode(%q) = %q: %d letters, want %d", in, code, len(code), userCodeLen)
		}
		for _, r := range code {
			if !strings.ContainsRune(UserCodeAlphabet, r) {
				t.Fatalf("NormalizeUserCode(%q) = %q: %q is not in the alphabet %s", in, code, r, UserCodeAlphabet)
			}
		}
		for _, r := range in {
			if r > 0x7f {
				t.Fatalf("NormalizeUserCode(%q) accepted a non-ASCII character %q (look-alike input)", in, r)
			}
		}
		if again, ok := NormalizeUserCode(code); !ok || again != code {
			t.Fatalf("NormalizeUserCode(%q) = %q, %v: not idempotent", code, again, ok)
		}
		if back, ok := NormalizeUserCode(FormatUserCode(code)); !ok || back != code {
			t.Fatalf("FormatUserCode(%q) = %q reads back as %q, %v", code, FormatUserCode(code), back, ok)
		}
	})
}
