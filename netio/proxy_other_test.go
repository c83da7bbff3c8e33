//go:build !(linux || darwin || freebsd || netbsd || dragonfly)

package netio

import "testing"

// assertSocket: no SIGIO socket transport on this system.
func assertSocket(*testing.T, Conn) {}
