//go:build !(linux || darwin || freebsd || netbsd || dragonfly)

package netio

import "net"

// wrapSocket reports that this system has no SIGIO transport: WrapConn
// uses the polling fallback.
func wrapSocket(net.Conn) (Conn, bool) { return nil, false }

// dispatchReady has nothing to do: no transport sets Readiness.Shared
// here.
func dispatchReady() {}

// RegisteredSockets returns how many sockets the process's readiness set
// holds; this system has none.
func RegisteredSockets() int { return 0 }
