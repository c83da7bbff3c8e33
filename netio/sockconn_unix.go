//go:build linux || darwin || freebsd || netbsd || dragonfly

package netio

import (
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/signal"
	"sync"
	"syscall"
	"time"
)

// sockConn is the Conn of TCP and Unix stream sockets on systems with
// SIGIO: reads go straight to the file descriptor through syscall.RawConn
// and readiness is signalled with SIGIO (O_ASYNC).
//
// SIGIO is process-wide: every armed sockConn's channel receives every
// SIGIO of the process, whichever socket raised it, so wakeups can be
// spurious; the loop copes by reading (ReadNow) after each one. The Go
// runtime ignores SIGIO that nobody asked for, so a signal raised after
// the last channel was unregistered is harmless.
type sockConn struct {
	nc        net.Conn // *net.TCPConn or *net.UnixConn
	rc        syscall.RawConn
	transport string

	// State shared with the callbacks below, which are bound once so that
	// a read does not allocate a closure.
	p          []byte
	n          int
	rerr       error
	cerr       error
	readNowCB  func(fd uintptr) bool
	readWaitCB func(fd uintptr) bool
	armCB      func(fd uintptr)
	disarmCB   func(fd uintptr)

	deadline time.Time // read deadline last set on nc; zero means none
	armed    bool      // O_ASYNC is set
	owned    bool      // F_SETOWN done and flags read
	flags    int       // file status flags without O_ASYNC

	mu     sync.Mutex     // guards sig against Close, and closed
	sig    chan os.Signal // registered for SIGIO at the first Arm
	closed bool
}

// wrapSocket returns the SIGIO Conn for TCP and Unix sockets.
func wrapSocket(c net.Conn) (Conn, bool) {
	var (
		rc        syscall.RawConn
		err       error
		transport string
	)
	switch v := c.(type) {
	case *net.TCPConn:
		_ = v.SetNoDelay(true) // Go's default; keep it explicit for MQTT's small packets
		rc, err = v.SyscallConn()
		transport = "tcp"
	case *net.UnixConn:
		rc, err = v.SyscallConn()
		transport = "unix"
	default:
		return nil, false
	}
	if err != nil {
		return nil, false
	}
	s := &sockConn{nc: c, rc: rc, transport: transport}
	s.readNowCB = s.readNow
	s.readWaitCB = s.readWait
	s.armCB = s.arm
	s.disarmCB = s.disarm
	return s, true
}

func (s *sockConn) read(fd uintptr, wait bool) bool {
	for {
		n, err := syscall.Read(int(fd), s.p)
		switch {
		case err == syscall.EINTR:
			continue
		case err == syscall.EAGAIN:
			s.n, s.rerr = 0, nil
			return !wait // false parks the goroutine in the netpoller
		case err != nil:
			s.n, s.rerr = 0, os.NewSyscallError("read", err)
		case n == 0:
			s.n, s.rerr = 0, io.EOF
		default:
			s.n, s.rerr = n, nil
		}
		return true
	}
}

func (s *sockConn) readNow(fd uintptr) bool  { return s.read(fd, false) }
func (s *sockConn) readWait(fd uintptr) bool { return s.read(fd, true) }

// rawRead runs one RawConn.Read with callback cb over p.
func (s *sockConn) rawRead(p []byte, cb func(uintptr) bool) (int, error) {
	s.p = p
	err := s.rc.Read(cb)
	n, rerr := s.n, s.rerr
	s.p, s.n, s.rerr = nil, 0, nil
	if err != nil {
		return 0, err
	}
	return n, rerr
}

// ReadNow implements Conn with one non-blocking read(2).
func (s *sockConn) ReadNow(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	n, err := s.rawRead(p, s.readNowCB)
	if err != nil && !s.deadline.IsZero() && errors.Is(err, os.ErrDeadlineExceeded) {
		// The runtime refuses to read once the read deadline of an earlier
		// ReadWait has passed, even without blocking: clear it and retry.
		if err := s.nc.SetReadDeadline(time.Time{}); err != nil {
			return 0, err
		}
		s.deadline = time.Time{}
		n, err = s.rawRead(p, s.readNowCB)
	}
	return n, err
}

// ReadWait implements Conn: it parks in the runtime's netpoller until the
// socket is readable or the deadline passes.
func (s *sockConn) ReadWait(p []byte, deadline time.Time) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	if !deadline.Equal(s.deadline) {
		if err := s.nc.SetReadDeadline(deadline); err != nil {
			return 0, err
		}
		s.deadline = deadline
	}
	n, err := s.rawRead(p, s.readWaitCB)
	if err != nil && errors.Is(err, os.ErrDeadlineExceeded) {
		return 0, os.ErrDeadlineExceeded
	}
	return n, err
}

// Arm implements Conn: it sets O_ASYNC on the socket so that the kernel
// raises SIGIO when bytes arrive, and returns the channel os/signal
// delivers SIGIO to. The first Arm registers that channel with
// signal.Notify (os/signal then runs its one process-wide goroutine) and
// makes this process the owner of the socket (F_SETOWN).
func (s *sockConn) Arm() (Readiness, error) {
	if s.sig == nil {
		s.mu.Lock()
		if s.closed {
			s.mu.Unlock()
			return Readiness{}, fmt.Errorf("netio: arm %s: %w", s.transport, net.ErrClosed)
		}
		s.sig = make(chan os.Signal, 1)
		signal.Notify(s.sig, syscall.SIGIO)
		s.mu.Unlock()
	}
	if !s.armed {
		select {
		case <-s.sig: // a stale wakeup from an earlier arming or another socket
		default:
		}
		s.cerr = nil
		if err := s.rc.Control(s.armCB); err != nil {
			return Readiness{}, fmt.Errorf("netio: arm %s: %w", s.transport, err)
		}
		if s.cerr != nil {
			return Readiness{}, fmt.Errorf("netio: arm %s: %w", s.transport, s.cerr)
		}
		s.armed = true
	}
	return Readiness{Signal: s.sig}, nil
}

func (s *sockConn) arm(fd uintptr) {
	if !s.owned {
		if _, err := fcntl(fd, syscall.F_SETOWN, syscall.Getpid()); err != nil {
			s.cerr = os.NewSyscallError("fcntl F_SETOWN", err)
			return
		}
		// The flags are read once: only this type changes them after the
		// net package created the socket.
		flags, err := fcntl(fd, syscall.F_GETFL, 0)
		if err != nil {
			s.cerr = os.NewSyscallError("fcntl F_GETFL", err)
			return
		}
		s.flags = flags &^ syscall.O_ASYNC
		s.owned = true
	}
	if _, err := fcntl(fd, syscall.F_SETFL, s.flags|syscall.O_ASYNC); err != nil {
		s.cerr = os.NewSyscallError("fcntl F_SETFL", err)
	}
}

// Disarm implements Conn: it clears O_ASYNC. It does nothing when the
// socket is not armed.
func (s *sockConn) Disarm() {
	if !s.armed {
		return
	}
	s.armed = false
	// An error means the socket is closed: there is nothing left to undo.
	_ = s.rc.Control(s.disarmCB)
}

func (s *sockConn) disarm(fd uintptr) {
	_, _ = fcntl(fd, syscall.F_SETFL, s.flags)
}

func fcntl(fd uintptr, cmd, arg int) (int, error) {
	r, _, errno := syscall.RawSyscall(syscall.SYS_FCNTL, fd, uintptr(cmd), uintptr(arg))
	if errno != 0 {
		return 0, errno
	}
	return int(r), nil
}

// Write implements Conn.
func (s *sockConn) Write(p []byte) (int, error) { return s.nc.Write(p) }

// SetWriteDeadline implements Conn.
func (s *sockConn) SetWriteDeadline(t time.Time) error { return s.nc.SetWriteDeadline(t) }

// Transport implements Conn: "tcp" or "unix".
func (s *sockConn) Transport() string { return s.transport }

// Close implements Conn. It stops SIGIO delivery to this connection's
// channel and closes the socket; later calls return nil.
func (s *sockConn) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	sig := s.sig
	s.mu.Unlock()
	if sig != nil {
		signal.Stop(sig)
	}
	return s.nc.Close()
}
