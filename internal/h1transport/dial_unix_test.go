//go:build unix

package h1transport_test

import (
	"errors"
	"fmt"
	"net"
	"syscall"
	"testing"
	"time"
)

// unansweredAddr returns a loopback address where connecting hangs: a
// socket listening with a backlog of 0, never accepting, its queue
// filled, so the kernel drops further SYNs.
func unansweredAddr(tb testing.TB) string {
	tb.Helper()
	fd, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_STREAM, 0)
	if err != nil {
		tb.Skipf("raw socket: %v", err)
	}
	tb.Cleanup(func() { syscall.Close(fd) })
	if err := syscall.Bind(fd, &syscall.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}); err != nil {
		tb.Fatal(err)
	}
	if err := syscall.Listen(fd, 0); err != nil {
		tb.Fatal(err)
	}
	sa, err := syscall.Getsockname(fd)
	if err != nil {
		tb.Fatal(err)
	}
	addr := fmt.Sprintf("127.0.0.1:%d", sa.(*syscall.SockaddrInet4).Port)
	for range 10 {
		c, err := net.DialTimeout("tcp", addr, 50*time.Millisecond)
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				return addr
			}
			tb.Fatalf("filling the backlog of %s: %v", addr, err)
		}
		tb.Cleanup(func() { c.Close() })
	}
	tb.Skipf("connecting to %s never hangs here", addr)
	return ""
}
