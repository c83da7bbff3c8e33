//go:build linux

package netio

import (
	"os"
	"syscall"
)

// pollSet is an epoll instance of the readiness set, not the Go runtime's:
// only the dispatch reads it, without blocking.
type pollSet struct {
	epfd int
	next uint64 // token of the next registration (never reused)
}

type pollBuf [128]syscall.EpollEvent

// epollET is EPOLLET as the uint32 of EpollEvent.Events (the syscall
// package declares it as a negative int).
const epollET = 1 << 31

func openPollSet() (*pollSet, error) {
	fd, err := syscall.EpollCreate1(syscall.EPOLL_CLOEXEC)
	if err != nil {
		return nil, os.NewSyscallError("epoll_create1", err)
	}
	return &pollSet{epfd: fd}, nil
}

// add registers fd, edge-triggered for input, and returns its token. The
// token, not the descriptor, identifies the registration in reports, so a
// report for a closed descriptor whose number was reused cannot be
// mistaken for the new socket's.
func (p *pollSet) add(fd int) (uint64, error) {
	p.next++
	tok := p.next
	ev := syscall.EpollEvent{Events: syscall.EPOLLIN | syscall.EPOLLRDHUP | epollET}
	ev.Fd, ev.Pad = int32(uint32(tok)), int32(uint32(tok>>32))
	err := syscall.EpollCtl(p.epfd, syscall.EPOLL_CTL_ADD, fd, &ev)
	if err == syscall.EEXIST {
		// A descriptor of this number whose socket is still open
		// elsewhere (a dup) was never removed: take the entry over.
		err = syscall.EpollCtl(p.epfd, syscall.EPOLL_CTL_MOD, fd, &ev)
	}
	if err != nil {
		return 0, os.NewSyscallError("epoll_ctl", err)
	}
	return tok, nil
}

// del unregisters fd. Errors are ignored: closing fd removes it anyway.
func (p *pollSet) del(fd int) {
	var ev syscall.EpollEvent
	_ = syscall.EpollCtl(p.epfd, syscall.EPOLL_CTL_DEL, fd, &ev)
}

// poll appends the tokens of the sockets ready now to out, without
// waiting; full reports that the buffer filled and more may be ready.
func (p *pollSet) poll(buf *pollBuf, out []uint64) ([]uint64, bool) {
	for {
		n, err := syscall.EpollWait(p.epfd, buf[:], 0)
		if err == syscall.EINTR {
			continue
		}
		if err != nil || n <= 0 {
			return out, false
		}
		for _, ev := range buf[:n] {
			out = append(out, uint64(uint32(ev.Fd))|uint64(uint32(ev.Pad))<<32)
		}
		return out, n == len(buf)
	}
}
