//go:build unix

package h1transport

import "syscall"

// alive reports whether the upstream has neither closed c nor sent
// anything unasked while it sat in the pool, without blocking: a peek at
// the socket, one system call per reused connection.
func alive(c *conn) bool {
	if c.rc == nil {
		return true
	}
	if c.peekFn == nil {
		c.peekFn = c.peek
	}
	c.peekOK = false
	if err := c.rc.Read(c.peekFn); err != nil {
		return false
	}
	return c.peekOK
}

// peek is alive's look at the socket: nothing waiting is what a live idle
// connection shows.
func (c *conn) peek(fd uintptr) bool {
	_, _, err := syscall.Recvfrom(int(fd), c.peekBuf[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
	c.peekOK = err == syscall.EAGAIN || err == syscall.EWOULDBLOCK
	return true
}
