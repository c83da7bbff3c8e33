//go:build linux || darwin || freebsd || netbsd || dragonfly

package netio

import "testing"

// assertSocket fails unless c is the SIGIO socket transport.
func assertSocket(t *testing.T, c Conn) {
	t.Helper()
	if _, ok := c.(*sockConn); !ok {
		t.Fatalf("connection is a %T, want the socket transport (*sockConn)", c)
	}
}
