//go:build linux || darwin || freebsd || netbsd || dragonfly

package netio

import (
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"sync"
	"syscall"
	"time"
)

// sockConn is the Conn of TCP and Unix stream sockets on systems with
// SIGIO: reads go straight to the file descriptor through syscall.RawConn
// and readiness comes from the process's readiness set (readySet): the
// socket is registered there at the first Arm, raises SIGIO (O_ASYNC)
// while its loop waits for anything, and the loop that takes the shared
// SIGIO wakes the loops whose sockets are ready through their own
// channels.
//
// O_ASYNC stays set from one Arm to the next, so a loop that alternates
// between handling a message and waiting costs no fcntl per wait; it is
// cleared when the loop parks in the runtime's poller (ReadWait), where
// signals would only cost CPU, and set again by the next Arm.
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
	addCB      func(fd uintptr)
	removeCB   func(fd uintptr)

	deadline time.Time      // read deadline last set on nc; zero means none
	async    bool           // O_ASYNC is set
	owned    bool           // F_SETOWN done and flags read
	flags    int            // file status flags without O_ASYNC
	wake     chan os.Signal // the readiness set's dispatch signals here

	mu     sync.Mutex // guards inSet, tok and closed against Close
	inSet  bool       // registered in the process's readiness set
	tok    uint64     // the registration's token
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
	s := &sockConn{nc: c, rc: rc, transport: transport, wake: make(chan os.Signal, 1)}
	s.readNowCB = s.readNow
	s.readWaitCB = s.readWait
	s.armCB = s.arm
	s.disarmCB = s.disarm
	s.addCB = func(fd uintptr) { s.tok, s.cerr = rset.add(s, int(fd)) }
	s.removeCB = func(fd uintptr) { rset.remove(s, int(fd), s.tok) }
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
	if s.async {
		// Parked in the poller, the loop needs no signal: stop them.
		s.async = false
		_ = s.rc.Control(s.disarmCB)
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

// Arm implements Conn. The first Arm registers the socket in the
// process's readiness set (and, for the first socket of the process,
// SIGIO with os/signal, which then runs its one process-wide goroutine)
// and makes this process the owner of the socket (F_SETOWN); Arm sets
// O_ASYNC unless it is still set from the last one.
func (s *sockConn) Arm() (Readiness, error) {
	if !s.inSet {
		s.mu.Lock()
		if s.closed {
			s.mu.Unlock()
			return Readiness{}, fmt.Errorf("netio: arm %s: %w", s.transport, net.ErrClosed)
		}
		s.cerr = nil
		err := s.rc.Control(s.addCB)
		if err == nil && s.cerr == nil {
			s.inSet = true
		}
		s.mu.Unlock()
		if err == nil {
			err = s.cerr
		}
		if err != nil {
			return Readiness{}, fmt.Errorf("netio: arm %s: %w", s.transport, err)
		}
	}
	select {
	case <-s.wake: // a stale wakeup: the caller reads once more after Arm
	default:
	}
	if !s.async {
		s.cerr = nil
		if err := s.rc.Control(s.armCB); err != nil {
			return Readiness{}, fmt.Errorf("netio: arm %s: %w", s.transport, err)
		}
		if s.cerr != nil {
			return Readiness{}, fmt.Errorf("netio: arm %s: %w", s.transport, s.cerr)
		}
		s.async = true
	}
	return Readiness{Signal: s.wake, Shared: rset.sig}, nil
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

// Disarm implements Conn. It keeps O_ASYNC set, so that the next Arm
// costs nothing; a signal that arrives meanwhile is harmless (the
// dispatch wakes this connection's channel, and Arm drains it).
func (s *sockConn) Disarm() {}

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

// Close implements Conn. It removes the socket from the readiness set
// (before the descriptor is closed and its number can be reused) and
// closes it; later calls return nil.
func (s *sockConn) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	if s.inSet {
		// Control fails only when the descriptor is already gone, which
		// removed it from the kernel set; the token goes either way.
		if s.rc.Control(s.removeCB) != nil {
			rset.remove(s, -1, s.tok)
		}
	}
	s.mu.Unlock()
	return s.nc.Close()
}
