//go:build linux || darwin || freebsd || netbsd || dragonfly

package netio

import (
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"sync"
	"sync/atomic"
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
	readNowCB  func(fd uintptr)
	readWaitCB func(fd uintptr) bool
	peekCB     func(fd uintptr) bool
	armCB      func(fd uintptr)
	disarmCB   func(fd uintptr)
	addCB      func(fd uintptr)
	removeCB   func(fd uintptr)

	deadline time.Time      // read deadline last set on nc; zero means none
	wdl      time.Time      // write deadline as last set by the caller
	stop     func() bool    // see SetWriteInterrupt
	async    bool           // O_ASYNC is set
	owned    bool           // F_SETOWN done and flags read
	flags    int            // file status flags without O_ASYNC
	lowat    int            // SO_RCVLOWAT set by ReadWaitBatch; <= 1 means the default
	one      byte           // WaitReadable peeks into it
	wake     chan os.Signal // the readiness set's dispatch signals here

	// ReadNow skips read(2) when it cannot find anything: O_ASYNC was set
	// before the last read, that read emptied the socket (drained), and
	// no dispatch has signalled this socket since (pokes == seen). A byte
	// that arrived since would have raised SIGIO, and its dispatch
	// increments pokes before it signals wake.
	pokes   atomic.Uint32 // dispatches that signalled wake
	shut    atomic.Bool   // Close was called
	cuts    atomic.Uint32 // InterruptWait calls
	cutSeen uint32        // cuts taken into account; a park with cuts unseen returns at once
	seen    uint32        // pokes when the last read(2) started
	drained bool

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
	s.peekCB = s.peek
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

func (s *sockConn) readNow(fd uintptr)       { s.read(fd, false) }
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

// ReadNow implements Conn with one non-blocking read(2), or none when
// nothing can have arrived since the last one (see sockConn.drained). It
// reads through RawConn.Control, which, unlike RawConn.Read, ignores the
// read deadline an earlier ReadWait left behind.
func (s *sockConn) ReadNow(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	pokes := s.pokes.Load()
	if s.async && s.drained && pokes == s.seen && !s.shut.Load() {
		return 0, nil
	}
	s.seen = pokes
	s.p = p
	err := s.rc.Control(s.readNowCB)
	n, rerr := s.n, s.rerr
	s.p, s.n, s.rerr = nil, 0, nil
	if err == nil {
		err = rerr
	}
	if err != nil {
		s.drained = false
		return 0, err
	}
	s.drained = s.async && n < len(p)
	return n, nil
}

// setLowat sets SO_RCVLOWAT: the kernel wakes readers (and raises SIGIO)
// only once n bytes wait.
func (s *sockConn) setLowat(n int) {
	if n == s.lowat || (n <= 1 && s.lowat <= 1) {
		return
	}
	s.lowat = n
	_ = s.rc.Control(func(fd uintptr) {
		_ = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVLOWAT, max(n, 1))
	})
}

// ReadWaitBatch implements BatchReader: ReadWait, except that the poller
// wakes the caller only once lowat bytes have arrived (SO_RCVLOWAT) or
// the deadline passes, when it takes whatever has arrived.
func (s *sockConn) ReadWaitBatch(p []byte, lowat int, deadline time.Time) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	lowat = min(lowat, len(p))
	n, err := s.parkRead(p, lowat, deadline)
	if n == 0 && lowat > 1 && errors.Is(err, os.ErrDeadlineExceeded) {
		// Fewer than lowat bytes do not wake the poller: take them now.
		if n, err = s.ReadNow(p); n == 0 && err == nil {
			err = os.ErrDeadlineExceeded
		}
	}
	return n, err
}

// ReadWait implements Conn: it parks in the runtime's netpoller until the
// socket is readable or the deadline passes.
func (s *sockConn) ReadWait(p []byte, deadline time.Time) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	return s.parkRead(p, 1, deadline)
}

func (s *sockConn) parkRead(p []byte, lowat int, deadline time.Time) (int, error) {
	if err := s.prepareParking(lowat, deadline); err != nil {
		return 0, err
	}
	n, err := s.rawRead(p, s.readWaitCB)
	if err != nil && errors.Is(err, os.ErrDeadlineExceeded) {
		s.parkEnded(deadline)
		return 0, os.ErrDeadlineExceeded
	}
	return n, err
}

// WaitReadable implements ReadableWaiter: it parks in the runtime's
// netpoller until the socket is readable, without reading. Whether bytes
// wait is asked with a one-byte MSG_PEEK, inside the poller's read
// callback: the poller forgets an earlier edge when a wait begins, so
// only a look taken there tells that nothing arrived in between.
func (s *sockConn) WaitReadable(deadline time.Time) error {
	if err := s.prepareParking(1, deadline); err != nil {
		return err
	}
	err := s.rc.Read(s.peekCB)
	if err != nil && errors.Is(err, os.ErrDeadlineExceeded) {
		s.parkEnded(deadline)
		return os.ErrDeadlineExceeded
	}
	return err
}

// peek reports whether the socket has something to read: bytes, the
// peer's close or an error (which the next read returns). false parks
// the goroutine in the netpoller.
func (s *sockConn) peek(fd uintptr) bool {
	for {
		err := peekByte(fd, &s.one)
		switch err {
		case syscall.EINTR:
			continue
		case syscall.EAGAIN:
			return false
		}
		return true
	}
}

// prepareParking readies a park in the poller: the low-water mark, no
// signals (a parked loop needs none) and the read deadline. It returns
// os.ErrDeadlineExceeded, without parking, when InterruptWait was called
// since the last park began: a cut meant for this park may come just
// before it.
func (s *sockConn) prepareParking(lowat int, deadline time.Time) error {
	s.drained = false
	s.setLowat(lowat)
	if s.async {
		s.async = false
		_ = s.rc.Control(s.disarmCB)
	}
	cuts := s.cuts.Load()
	if cuts != s.cutSeen {
		s.cutSeen = cuts
		s.deadline = interrupted // what InterruptWait left on nc
		return os.ErrDeadlineExceeded
	}
	if !deadline.Equal(s.deadline) {
		if err := s.nc.SetReadDeadline(deadline); err != nil {
			return err
		}
		s.deadline = deadline
		// A cut whose past deadline this one replaced: honour it.
		if cuts := s.cuts.Load(); cuts != s.cutSeen {
			s.cutSeen = cuts
			s.deadline = interrupted
			return os.ErrDeadlineExceeded
		}
	}
	return nil
}

// parkEnded notes a park that ended with os.ErrDeadlineExceeded: if its
// own deadline has not passed, InterruptWait cut it, which is taken into
// account, and the deadline on nc is no longer ours.
func (s *sockConn) parkEnded(deadline time.Time) {
	if deadline.IsZero() || time.Now().Before(deadline) {
		s.cutSeen = s.cuts.Load()
		s.deadline = interrupted
	}
}

// interrupted is a read deadline in the past, for InterruptWait.
var interrupted = time.Unix(1, 0)

// InterruptWait implements WaitInterrupter: it sets a read deadline in
// the past, which wakes a goroutine parked in ReadWait, ReadWaitBatch or
// WaitReadable; if none is parked, the next park returns at once (see
// prepareParking) and sets its own deadline again after that.
func (s *sockConn) InterruptWait() {
	s.cuts.Add(1)
	_ = s.nc.SetReadDeadline(interrupted)
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
	if !s.async {
		// Bytes below a low-water mark would raise no signal.
		s.setLowat(1)
		select {
		case <-s.wake: // a stale wakeup: the caller reads once more after Arm
		default:
		}
		s.drained = false // so that the caller's next ReadNow reads
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

// Write implements Conn; with a stop function installed
// (SetWriteInterrupt) a blocked write asks it every WriteSlice.
func (s *sockConn) Write(p []byte) (int, error) {
	if s.stop == nil {
		return s.nc.Write(p)
	}
	return slicedWrite(s.nc, p, s.wdl, s.stop)
}

// SetWriteDeadline implements Conn.
func (s *sockConn) SetWriteDeadline(t time.Time) error {
	s.wdl = t
	if s.stop != nil {
		return nil // Write sets its slices' deadlines
	}
	return s.nc.SetWriteDeadline(t)
}

// SetWriteInterrupt implements WriteInterrupter.
func (s *sockConn) SetWriteInterrupt(stop func() bool) {
	s.stop = stop
	if stop == nil {
		_ = s.nc.SetWriteDeadline(s.wdl)
	}
}

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
	s.shut.Store(true)
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
