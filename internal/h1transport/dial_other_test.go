//go:build !unix

package h1transport_test

import "testing"

// unansweredAddr skips: it needs a listen backlog of 0 (unix sockets API).
func unansweredAddr(tb testing.TB) string {
	tb.Helper()
	tb.Skip("needs a unix listen backlog of 0")
	return ""
}
