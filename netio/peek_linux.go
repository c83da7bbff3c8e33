package netio

import (
	"syscall"
	"unsafe"
)

// peekByte looks at the next byte of socket fd without taking it
// (recv(2) with MSG_PEEK): nil when there is one or the peer closed,
// syscall.EAGAIN when nothing waits. The raw call passes no address
// buffer, so it does not allocate.
func peekByte(fd uintptr, b *byte) error {
	_, _, errno := syscall.Syscall6(syscall.SYS_RECVFROM, fd, uintptr(unsafe.Pointer(b)), 1,
		syscall.MSG_PEEK|syscall.MSG_DONTWAIT, 0, 0)
	if errno != 0 {
		return errno
	}
	return nil
}
