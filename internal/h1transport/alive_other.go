//go:build !unix

package h1transport

import "net"

// alive cannot look at the socket here; a closed connection shows when
// the request fails.
func alive(net.Conn) bool { return true }
