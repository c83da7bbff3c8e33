package netio

import (
	"errors"
	"net"
	"os"
	"sync/atomic"
	"time"
)

// DefaultPollInterval is how often the polling fallback asks the event
// loop to look at the connection while it waits for other events.
const DefaultPollInterval = time.Millisecond

// pollReadSlack is how far ahead of now ReadNow puts the read deadline of
// the polling fallback. Go refuses to read at all once a deadline has
// passed, even when bytes are waiting, so it must lie slightly in the
// future.
const pollReadSlack = 20 * time.Microsecond

// WrapConn turns a net.Conn into a Conn. TCP and Unix sockets on Linux,
// macOS, FreeBSD, NetBSD and DragonFly get the SIGIO transport: reads go
// straight to the socket and Arm's Readiness.Signal fires when bytes
// arrive. Any other net.Conn, and every connection on other systems, gets
// the polling fallback of NewPollConn with DefaultPollInterval. The Conn
// owns c: closing it closes c.
//
// SIGIO is one signal for the whole process. The SIGIO transport registers
// every socket it waits on in one process-wide readiness set (epoll on
// Linux, kqueue on macOS and the BSDs) and SIGIO with os/signal once, on
// one channel (Readiness.Shared) that every waiting connection selects
// on; the one that receives a signal runs Readiness.Dispatch, which asks
// the set which sockets are ready and wakes only their connections. So
// an arrival costs the same however many connections the process runs.
// The first Arm of the process registers with os/signal, which starts
// its single process-wide goroutine (and the runtime's ensureSigM, on an
// OS thread of its own) if the program has not done so already; when the
// last registered socket closes, the registration is stopped. A program
// that itself calls signal.Notify for SIGIO receives those signals too.
// Go ignores SIGIO that nobody asked for, so a late signal is harmless.
func WrapConn(c net.Conn) Conn {
	if sc, ok := wrapSocket(c); ok {
		return sc
	}
	return NewPollConn(c, DefaultPollInterval)
}

// NewPollConn returns the polling fallback Conn over any net.Conn. It
// works everywhere but costs latency and idle CPU: a loop waiting on
// Readiness.Tick wakes up every interval even when nothing happens.
//
//   - ReadNow reads with a read deadline a few microseconds ahead and
//     treats the timeout as "nothing available", so it may wait up to that
//     long when nothing is there;
//   - ReadWait reads with the given read deadline;
//   - Arm starts a timer of interval (DefaultPollInterval if interval <=
//     0) and returns its channel as Readiness.Tick: the loop wakes up that
//     often and polls with ReadNow. A timer is not a goroutine.
//
// The Conn owns c: closing it closes c.
func NewPollConn(c net.Conn, interval time.Duration) Conn {
	if interval <= 0 {
		interval = DefaultPollInterval
	}
	transport := "unknown"
	if a := c.LocalAddr(); a != nil {
		transport = a.Network()
	}
	return &pollConn{nc: c, interval: interval, transport: transport}
}

type pollConn struct {
	nc        net.Conn
	interval  time.Duration
	transport string
	timer     *time.Timer
	armed     bool
	closed    atomic.Bool
}

// isTimeout reports whether err is a read deadline expiring.
func isTimeout(err error) bool {
	if errors.Is(err, os.ErrDeadlineExceeded) {
		return true
	}
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// ReadNow implements Conn with a read deadline slightly in the future.
func (p *pollConn) ReadNow(b []byte) (int, error) {
	if len(b) == 0 {
		return 0, nil
	}
	if err := p.nc.SetReadDeadline(time.Now().Add(pollReadSlack)); err != nil {
		return 0, err
	}
	n, err := p.nc.Read(b)
	if err != nil && isTimeout(err) {
		return n, nil
	}
	return n, err
}

// ReadWait implements Conn with SetReadDeadline.
func (p *pollConn) ReadWait(b []byte, deadline time.Time) (int, error) {
	if len(b) == 0 {
		return 0, nil
	}
	if err := p.nc.SetReadDeadline(deadline); err != nil {
		return 0, err
	}
	n, err := p.nc.Read(b)
	if err != nil && isTimeout(err) {
		if n > 0 {
			return n, nil
		}
		return 0, os.ErrDeadlineExceeded
	}
	return n, err
}

// Arm implements Conn: it (re)starts the poll timer. Every call restarts
// it, so a loop that received a tick and arms again gets another one.
func (p *pollConn) Arm() (Readiness, error) {
	if p.timer == nil {
		p.timer = time.NewTimer(p.interval)
	} else {
		p.timer.Reset(p.interval)
	}
	p.armed = true
	return Readiness{Tick: p.timer.C}, nil
}

// Disarm implements Conn: it stops the poll timer.
func (p *pollConn) Disarm() {
	if !p.armed {
		return
	}
	p.armed = false
	p.timer.Stop()
}

// Write implements Conn.
func (p *pollConn) Write(b []byte) (int, error) { return p.nc.Write(b) }

// SetWriteDeadline implements Conn.
func (p *pollConn) SetWriteDeadline(t time.Time) error { return p.nc.SetWriteDeadline(t) }

// Transport implements Conn: the network of the local address ("tcp",
// "unix", ...).
func (p *pollConn) Transport() string { return p.transport }

// Close implements Conn; later calls return nil.
func (p *pollConn) Close() error {
	if !p.closed.CompareAndSwap(false, true) {
		return nil
	}
	return p.nc.Close()
}
