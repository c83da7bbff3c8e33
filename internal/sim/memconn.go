package sim

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/eclipse/paho.golang/packets"

	"github.com/mqttloop/mqttloop/netio"
)

// errReset is what a write on a connection the peer ended returns.
var errReset = fmt.Errorf("sim: %w", syscall.ECONNRESET)

// memConn is the event loop's end of a simulated connection: an in-memory
// netio.Conn whose readiness the simulated network signals. Its waits block
// on channels and timers only, which testing/synctest sees as durably
// blocked, so the bubble's virtual clock advances while the loop waits.
//
// Every field is guarded by the Sim's mutex, except cuts and cut, which
// InterruptWait touches from any goroutine without it.
//
// A wait (ReadWait, WaitReadable) decides how it ends from the state it
// reads under the Sim's mutex, in a fixed order (a cut, then bytes or the
// end, then the deadline), never from which channel woke it: the driver
// may deliver bytes and cut the wait in the same step, and a select that
// chose between them at random would make a seed's run unrepeatable.
type memConn struct {
	s    *Sim
	c    *conn
	proc int // the client process that dialed it

	in     []byte // arrived, not yet read
	eof    error  // the loop learned that the connection ended
	closed bool   // the loop closed it
	wbuf   []byte // written bytes not yet a whole packet

	notify chan struct{}  // wakes ReadWait and WaitReadable
	sig    chan os.Signal // the readiness Arm hands out

	// InterruptWait counts its calls in cuts and wakes a wait through cut
	// (one buffered value; a stale one only makes a wait look again). A
	// wait that finds cuts != cutSeen takes the cut into account
	// (cutSeen = cuts) and returns os.ErrDeadlineExceeded: a cut made
	// while no wait is in progress ends the next one at once.
	cuts    atomic.Uint32
	cut     chan struct{}
	cutSeen uint32 // guarded by the Sim's mutex, like the rest
}

var (
	_ netio.Conn            = (*memConn)(nil)
	_ netio.ReadableWaiter  = (*memConn)(nil)
	_ netio.WaitInterrupter = (*memConn)(nil)
)

func newMemConn(s *Sim, c *conn, proc int) *memConn {
	m := &memConn{s: s, c: c, proc: proc, notify: make(chan struct{}, 1), sig: make(chan os.Signal, 1), cut: make(chan struct{}, 1)}
	c.cli = m
	return m
}

// wake signals the loop that it may read.
func (m *memConn) wake() {
	select {
	case m.notify <- struct{}{}:
	default:
	}
	select {
	case m.sig <- syscall.SIGIO:
	default:
	}
}

// deliver: bytes from the broker arrived (network side, s.mu held).
func (m *memConn) deliver(data []byte) {
	if m.closed {
		return
	}
	m.in = append(m.in, data...)
	m.wake()
}

// ended: the loop's end learns that the connection ended (network side,
// s.mu held).
func (m *memConn) ended() {
	if m.eof == nil {
		m.eof = io.EOF
		m.wake()
	}
}

// read takes what arrived (s.mu held).
func (m *memConn) read(p []byte) (int, error) {
	if m.closed {
		return 0, net.ErrClosed
	}
	if len(m.in) > 0 {
		n := copy(p, m.in)
		m.in = m.in[n:]
		if len(m.in) == 0 {
			m.in = nil
		}
		return n, nil
	}
	if m.eof != nil {
		return 0, m.eof
	}
	return 0, nil
}

// ReadNow implements netio.Conn.
func (m *memConn) ReadNow(p []byte) (int, error) {
	m.s.mu.Lock()
	defer m.s.mu.Unlock()
	return m.read(p)
}

// ReadWait implements netio.Conn: it blocks on channels and a timer, so
// that under synctest the wait is durable and virtual time runs on.
// InterruptWait cuts it short (see memConn).
func (m *memConn) ReadWait(p []byte, deadline time.Time) (int, error) {
	var (
		n   int
		err error
	)
	werr := m.wait(deadline, func() bool {
		n, err = m.read(p)
		return n > 0 || err != nil
	})
	if werr != nil {
		return 0, werr
	}
	return n, err
}

// WaitReadable implements netio.ReadableWaiter: it returns nil once bytes
// wait to be read, the connection ended or the loop closed it (the next
// read says which), without reading; os.ErrDeadlineExceeded at the
// deadline or when InterruptWait cuts it. Like ReadWait it blocks on
// channels and a timer only.
func (m *memConn) WaitReadable(deadline time.Time) error {
	m.s.mu.Lock()
	m.s.stats.PollerWaits++
	m.s.mu.Unlock()
	return m.wait(deadline, func() bool {
		return len(m.in) > 0 || m.eof != nil || m.closed
	})
}

// InterruptWait implements netio.WaitInterrupter: it ends a ReadWait or
// WaitReadable in progress with os.ErrDeadlineExceeded, or, if none is,
// the next one at once. Safe from any goroutine, and it does not take the
// Sim's mutex (the driver calls EventLoop.Wake with it held).
func (m *memConn) InterruptWait() {
	m.cuts.Add(1)
	select {
	case m.cut <- struct{}{}:
	default:
	}
}

// wait blocks until done (called with s.mu held) reports true, a cut that
// the last wait did not see, or the deadline (zero: none). It returns nil
// for done, os.ErrDeadlineExceeded for the other two. Each round decides
// from the state under s.mu, in a fixed order: a cut, then done, then the
// deadline.
func (m *memConn) wait(deadline time.Time, done func() bool) error {
	var t *time.Timer
	defer func() {
		if t != nil {
			t.Stop()
		}
	}()
	expired := false
	for {
		m.s.mu.Lock()
		cut := false
		if c := m.cuts.Load(); c != m.cutSeen {
			m.cutSeen, cut = c, true
			m.s.stats.WaitsCut++
		}
		ok := !cut && done()
		m.s.mu.Unlock()
		switch {
		case cut:
			return os.ErrDeadlineExceeded
		case ok:
			return nil
		case expired:
			return os.ErrDeadlineExceeded
		}
		var timeout <-chan time.Time
		if !deadline.IsZero() {
			d := time.Until(deadline)
			if d <= 0 {
				return os.ErrDeadlineExceeded
			}
			if t == nil {
				t = time.NewTimer(d)
			} else {
				t.Reset(d)
			}
			timeout = t.C
		}
		select {
		case <-m.notify:
		case <-m.cut:
		case <-timeout:
			expired = true
		}
	}
}

// Arm implements netio.Conn.
func (m *memConn) Arm() (netio.Readiness, error) { return netio.Readiness{Signal: m.sig}, nil }

// Disarm implements netio.Conn.
func (m *memConn) Disarm() {}

// SetWriteDeadline implements netio.Conn (writes never block).
func (m *memConn) SetWriteDeadline(time.Time) error { return nil }

// Transport implements netio.Conn.
func (m *memConn) Transport() string { return "sim" }

// Write implements netio.Conn: the bytes become a segment on the network.
func (m *memConn) Write(p []byte) (int, error) {
	s := m.s
	s.mu.Lock()
	s.tick()
	n, err := m.write(p)
	post := s.takePost()
	s.mu.Unlock()
	for _, f := range post {
		f()
	}
	return n, err
}

func (m *memConn) write(p []byte) (int, error) {
	s := m.s
	switch {
	case m.closed:
		return 0, net.ErrClosed
	case m.proc != s.proc:
		return 0, errors.New("sim: the process is gone")
	case m.eof != nil:
		return 0, errReset
	case s.done:
		return len(p), nil // the farewell after the run: nobody listens
	}
	pkts := m.parse(p)
	for _, pk := range pkts {
		s.clientWrites(m.c, pk)
	}
	if s.crashPending {
		// The process dies now, after the iteration's Commit: before
		// this flush reaches the wire (what it wrote counts as sent: the
		// session says so), or just after.
		if s.rng.IntN(2) == 0 && len(pkts) > 0 {
			s.send(m.c, toBroker, pkts, nil, false)
		}
		s.kill(true)
		return 0, errors.New("sim: the process is gone")
	}
	if len(pkts) > 0 {
		s.send(m.c, toBroker, pkts, nil, false)
	}
	return len(p), nil
}

// parse takes the whole packets out of what the loop wrote.
func (m *memConn) parse(p []byte) []packets.Packet {
	m.wbuf = append(m.wbuf, p...)
	var pkts []packets.Packet
	for {
		n := frameLen(m.wbuf)
		if n == 0 {
			break
		}
		cp, err := decode(m.wbuf[:n])
		if err != nil {
			m.s.violation("the loop wrote an undecodable packet % x: %v", m.wbuf[:min(n, 32)], err)
			m.wbuf = nil
			break
		}
		m.wbuf = m.wbuf[n:]
		pkts = append(pkts, cp.Content)
	}
	if len(m.wbuf) == 0 {
		m.wbuf = nil
	}
	return pkts
}

// Close implements netio.Conn; safe from any goroutine.
func (m *memConn) Close() error {
	s := m.s
	s.mu.Lock()
	if !m.closed {
		s.tick()
		m.closed = true
		m.in = nil
		s.clientClosed(m.c)
		m.wake()
	}
	s.mu.Unlock()
	return nil
}

// frameLen returns the length of the whole MQTT packet at the start of b,
// or 0 while it is incomplete.
func frameLen(b []byte) int {
	if len(b) < 2 {
		return 0
	}
	rl, mul := 0, 1
	for i := 1; i < len(b) && i <= 4; i++ {
		rl += int(b[i]&0x7f) * mul
		mul <<= 7
		if b[i]&0x80 == 0 {
			if n := i + 1 + rl; n <= len(b) {
				return n
			}
			return 0
		}
	}
	return 0
}

// decode decodes one whole packet from the loop, as the broker's codec
// (paho's) does; paho does not take the shortest DISCONNECT (no reason
// code: normal disconnection).
func decode(b []byte) (*packets.ControlPacket, error) {
	if len(b) == 2 && b[0] == packets.DISCONNECT<<4 {
		return &packets.ControlPacket{Content: &packets.Disconnect{Properties: &packets.Properties{}}}, nil
	}
	return packets.ReadPacket(bytes.NewReader(b))
}
