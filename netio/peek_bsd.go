//go:build darwin || freebsd || netbsd || dragonfly

package netio

import "syscall"

// peekByte looks at the next byte of socket fd without taking it
// (recv(2) with MSG_PEEK; the socket is non-blocking): nil when there is
// one or the peer closed, syscall.EAGAIN when nothing waits.
func peekByte(fd uintptr, b *byte) error {
	var one [1]byte
	_, _, err := syscall.Recvfrom(int(fd), one[:], syscall.MSG_PEEK)
	*b = one[0]
	return err
}
