//go:build linux || darwin || freebsd || netbsd || dragonfly

package netio

import (
	"syscall"
	"testing"
)

// socketEmpty reports whether the TCP socket under c has no unread byte
// (a non-blocking MSG_PEEK).
func socketEmpty(t *testing.T, c Conn) bool {
	t.Helper()
	sc, ok := c.(*tlsConn).inner.(*sockConn)
	if !ok {
		t.Skip("no SIGIO socket on this system")
	}
	empty := false
	err := sc.rc.Read(func(fd uintptr) bool {
		var b [1]byte
		n, _, err := syscall.Recvfrom(int(fd), b[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
		empty = n <= 0 && err == syscall.EAGAIN
		return true
	})
	if err != nil {
		t.Fatal(err)
	}
	return empty
}
