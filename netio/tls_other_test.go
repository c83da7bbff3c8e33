//go:build !(linux || darwin || freebsd || netbsd || dragonfly)

package netio

import "testing"

// socketEmpty needs the SIGIO socket's raw descriptor, which other systems
// do not have.
func socketEmpty(t *testing.T, _ Conn) bool {
	t.Skip("no SIGIO socket on this system")
	return false
}
