package sim

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
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
// Every field is guarded by the Sim's mutex.
type memConn struct {
	s    *Sim
	c    *conn
	proc int // the client process that dialed it

	in     []byte // arrived, not yet read
	eof    error  // the loop learned that the connection ended
	closed bool   // the loop closed it
	wbuf   []byte // written bytes not yet a whole packet

	notify chan struct{}  // wakes ReadWait
	sig    chan os.Signal // the readiness Arm hands out
}

var _ netio.Conn = (*memConn)(nil)

func newMemConn(s *Sim, c *conn, proc int) *memConn {
	m := &memConn{s: s, c: c, proc: proc, notify: make(chan struct{}, 1), sig: make(chan os.Signal, 1)}
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

// ReadWait implements netio.Conn: it blocks on a channel and a timer, so
// that under synctest the wait is durable and virtual time runs on.
func (m *memConn) ReadWait(p []byte, deadline time.Time) (int, error) {
	var t *time.Timer
	defer func() {
		if t != nil {
			t.Stop()
		}
	}()
	for {
		m.s.mu.Lock()
		n, err := m.read(p)
		m.s.mu.Unlock()
		if n > 0 || err != nil {
			return n, err
		}
		var expired <-chan time.Time
		if !deadline.IsZero() {
			d := time.Until(deadline)
			if d <= 0 {
				return 0, os.ErrDeadlineExceeded
			}
			if t == nil {
				t = time.NewTimer(d)
			} else {
				t.Reset(d)
			}
			expired = t.C
		}
		select {
		case <-m.notify:
		case <-expired:
			return 0, os.ErrDeadlineExceeded
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
