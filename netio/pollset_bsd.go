//go:build darwin || freebsd || netbsd || dragonfly

package netio

import (
	"os"
	"syscall"
)

// pollSet is a kqueue of the readiness set, not the Go runtime's: only
// the dispatch reads it, without blocking. Tokens are descriptors: a
// report for a closed descriptor whose number was reused wakes the new
// socket's loop once for nothing, which a readiness signal may do.
type pollSet struct{ kq int }

type pollBuf [128]syscall.Kevent_t

func openPollSet() (*pollSet, error) {
	kq, err := syscall.Kqueue()
	if err != nil {
		return nil, os.NewSyscallError("kqueue", err)
	}
	syscall.CloseOnExec(kq)
	return &pollSet{kq: kq}, nil
}

// add registers fd for input, edge-triggered (EV_CLEAR).
func (p *pollSet) add(fd int) (uint64, error) {
	var ev [1]syscall.Kevent_t
	syscall.SetKevent(&ev[0], fd, syscall.EVFILT_READ, syscall.EV_ADD|syscall.EV_CLEAR)
	if _, err := syscall.Kevent(p.kq, ev[:], nil, nil); err != nil {
		return 0, os.NewSyscallError("kevent", err)
	}
	return uint64(fd), nil
}

// del unregisters fd. Errors are ignored: closing fd removes it anyway.
func (p *pollSet) del(fd int) {
	var ev [1]syscall.Kevent_t
	syscall.SetKevent(&ev[0], fd, syscall.EVFILT_READ, syscall.EV_DELETE)
	_, _ = syscall.Kevent(p.kq, ev[:], nil, nil)
}

// poll appends the tokens of the sockets ready now to out, without
// waiting; full reports that the buffer filled and more may be ready.
func (p *pollSet) poll(buf *pollBuf, out []uint64) ([]uint64, bool) {
	var zero syscall.Timespec
	for {
		n, err := syscall.Kevent(p.kq, nil, buf[:], &zero)
		if err == syscall.EINTR {
			continue
		}
		if err != nil || n <= 0 {
			return out, false
		}
		for _, ev := range buf[:n] {
			out = append(out, uint64(ev.Ident))
		}
		return out, n == len(buf)
	}
}
