//go:build linux || darwin || freebsd || netbsd || dragonfly

package netio

import (
	"os"
	"os/signal"
	"sync"
	"syscall"
)

// readySet is the process's one readiness set: every SIGIO socket the
// loops of the process wait on is registered in one kernel poll set
// (epoll on Linux, kqueue on the BSDs and macOS), and SIGIO is delivered
// through one os/signal registration, shared by every connection.
//
// A SIGIO says only that some socket of the process received something.
// The waiting loop that takes the signal from the shared channel asks the
// kernel set which sockets are ready (a non-blocking epoll_wait or
// kevent) and wakes the loops of those sockets through their own
// channels, so an arrival costs O(ready sockets), not O(waiting loops).
// The set is edge-triggered: a socket is reported once per arrival, not as
// long as bytes wait, so a busy loop that has not read yet is not woken
// over and over.
type readySet struct {
	mu    sync.Mutex
	ps    *pollSet
	conns map[uint64]*sockConn // registered sockets by token
	sig   chan os.Signal       // registered for SIGIO while conns is not empty
	fired bool                 // signal.Notify is in force

	dmu    sync.Mutex // serialises dispatch (it owns buf)
	buf    pollBuf
	tokens []uint64
}

var rset = readySet{
	conns: map[uint64]*sockConn{},
	sig:   make(chan os.Signal, 1),
}

// add registers the socket fd of s. The first registration of the
// process (again after the set became empty) registers the shared channel
// with signal.Notify; os/signal starts its one goroutine at the first
// Notify of the process.
func (r *readySet) add(s *sockConn, fd int) (uint64, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.ps == nil {
		ps, err := openPollSet()
		if err != nil {
			return 0, err
		}
		r.ps = ps
	}
	tok, err := r.ps.add(fd)
	if err != nil {
		return 0, err
	}
	r.conns[tok] = s
	if !r.fired {
		signal.Notify(r.sig, syscall.SIGIO)
		r.fired = true
	}
	return tok, nil
}

// remove unregisters the socket fd of s (registered as tok); call it
// before closing fd. The last removal stops the SIGIO registration, so a
// process whose loops all ended has nothing registered with os/signal.
func (r *readySet) remove(s *sockConn, fd int, tok uint64) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.conns[tok] == s {
		delete(r.conns, tok)
	}
	r.ps.del(fd)
	if len(r.conns) == 0 && r.fired {
		signal.Stop(r.sig)
		r.fired = false
		select {
		case <-r.sig:
		default:
		}
	}
}

// size returns the number of registered sockets.
func (r *readySet) size() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.conns)
}

// dispatch wakes the connections whose sockets became ready since the
// last dispatch, each through its own one-slot channel.
func (r *readySet) dispatch() {
	r.dmu.Lock()
	defer r.dmu.Unlock()
	r.mu.Lock()
	ps := r.ps
	r.mu.Unlock()
	if ps == nil {
		return
	}
	r.mu.Lock()
	if len(r.conns) == 1 {
		// One socket in the set: the signal can only be its (or
		// spurious), so wake it without asking the kernel. Its event
		// stays queued in the set until a later dispatch with more
		// sockets collects it: one spurious wakeup at most.
		for _, s := range r.conns {
			s.signal()
		}
		r.mu.Unlock()
		return
	}
	r.mu.Unlock()
	for {
		var full bool
		r.tokens, full = ps.poll(&r.buf, r.tokens[:0])
		if len(r.tokens) > 0 {
			r.mu.Lock()
			for _, tok := range r.tokens {
				if s := r.conns[tok]; s != nil {
					s.signal()
				}
			}
			r.mu.Unlock()
		}
		if !full {
			return
		}
	}
}

// dispatchReady runs the dispatch of the process's readiness set; see
// Readiness.Dispatch.
func dispatchReady() { rset.dispatch() }

// RegisteredSockets returns how many sockets the process's readiness set
// holds: those of connections that waited for readiness at least once and
// are not closed yet. It is a diagnostic, for tests and monitoring.
func RegisteredSockets() int { return rset.size() }

// signal tells the connection that its socket may have bytes: pokes
// first (ReadNow reads again once it changed), then the channel.
func (s *sockConn) signal() {
	s.pokes.Add(1)
	select {
	case s.wake <- syscall.SIGIO:
	default:
	}
}
