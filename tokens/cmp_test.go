package tokens

import (
	"encoding/base64"
	"net/netip"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
)

func cmpDiff(want, got any) string {
	return cmp.Diff(want, got, cmpopts.IgnoreUnexported(Claims{}), cmpopts.EquateEmpty())
}

func mustAddr(tb testing.TB, s string) netip.Addr {
	tb.Helper()
	a, err := netip.ParseAddr(s)
	if err != nil {
		tb.Fatalf("ParseAddr(%q): %v", s, err)
	}
	return a
}

func stdB64(b []byte) string { return base64.StdEncoding.EncodeToString(b) }
