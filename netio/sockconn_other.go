//go:build !(linux || darwin || freebsd || netbsd || dragonfly)

package netio

import "net"

// wrapSocket reports that this system has no SIGIO transport: WrapConn
// uses the polling fallback.
func wrapSocket(net.Conn) (Conn, bool) { return nil, false }
