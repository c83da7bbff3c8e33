// Status: what a run is doing, readable from any goroutine.

package eventloop

import (
	"sync"
	"sync/atomic"
	"time"
)

// Status is a snapshot of a loop, from EventLoop.Status.
type Status struct {
	// Running: a run is in progress (between Run and the end of the run).
	Running bool
	// Connected: the broker accepted the current connection (CONNACK).
	Connected bool
	// Server and Transport are those of the current connection, or of the
	// last one when there is none (see Connected).
	Server    string
	Transport string
	// ConnectedSince is when the current connection was accepted (zero
	// while not connected).
	ConnectedSince time.Time
	// Connections counts the connections the broker accepted in this loop's
	// lifetime; more than one means it reconnected.
	Connections int
	// InFlight counts QoS 1 and 2 publishes sent and awaiting their final
	// acknowledgement; Queued counts requests taken from the channel and
	// not yet sent (Options.MaxQueued caps it). Both are as of the loop's
	// last iteration.
	InFlight, Queued int
	// LastError is the latest reason a connection failed or was lost, or
	// the error that ended the last run; nil if there was none.
	LastError error
	// MessagesIn counts application messages received; MessagesOut counts
	// PUBLISH packets sent (a publish resent after a reconnect counts
	// again). BytesIn and BytesOut count bytes of MQTT read from and
	// written to the connections (below TLS, WebSocket and QUIC framing).
	MessagesIn, MessagesOut uint64
	BytesIn, BytesOut       uint64
}

// liveStatus is what Status reads: counters the loop publishes with
// atomic stores (once per iteration, only those that changed), and the
// connection's description behind a mutex, changed only when a connection
// comes or goes.
type liveStatus struct {
	msgsIn, msgsOut, bytesIn, bytesOut atomic.Uint64
	inFlight, queued                   atomic.Int64

	// The loop's own counts (its goroutine only), and those last
	// published. Bytes are the control stream's reader and writer totals
	// plus those of the data streams, open (summed when published) and
	// closed (retired).
	counts, shown         statusCounts
	retiredIn, retiredOut uint64

	mu          sync.Mutex
	running     bool
	connected   bool
	server      string
	transport   string
	since       time.Time
	connections int
	lastErr     error
}

// Status returns a snapshot of the loop: connection, backlog, last error
// and traffic counters. It is safe to call from any goroutine at any time,
// during a run or not, and cheap (a mutex and a few atomic loads: polling
// it every second costs nothing noticeable), so it suits health checks and
// metrics exports (see the expvar example).
func (l *EventLoop) Status() Status {
	s := &l.status
	st := Status{
		MessagesIn:  s.msgsIn.Load(),
		MessagesOut: s.msgsOut.Load(),
		BytesIn:     s.bytesIn.Load(),
		BytesOut:    s.bytesOut.Load(),
		InFlight:    int(s.inFlight.Load()),
		Queued:      int(s.queued.Load()),
	}
	s.mu.Lock()
	st.Running, st.Connected, st.Server, st.Transport = s.running, s.connected, s.server, s.transport
	st.ConnectedSince, st.Connections, st.LastError = s.since, s.connections, s.lastErr
	s.mu.Unlock()
	return st
}

type statusCounts struct {
	msgsIn, msgsOut, bytesIn, bytesOut uint64
	inFlight, queued                   int64
}

// publishCounts makes the loop's counts and the session's backlog
// visible to Status.
func (l *EventLoop) publishCounts() {
	s := &l.status
	c := &s.counts
	c.inFlight, c.queued = int64(l.st.InFlight()), int64(l.st.Queued())
	c.bytesIn, c.bytesOut = s.retiredIn, s.retiredOut
	if l.rd != nil {
		c.bytesIn += l.rd.Total()
		c.bytesOut += l.wr.Total()
	}
	for _, i := range l.streams.open {
		if ds := l.streams.data[i]; ds != nil {
			c.bytesIn += ds.rd.Total()
			c.bytesOut += ds.wr.Total()
		}
	}
	if *c == s.shown {
		return
	}
	if c.msgsIn != s.shown.msgsIn {
		s.msgsIn.Store(c.msgsIn)
	}
	if c.msgsOut != s.shown.msgsOut {
		s.msgsOut.Store(c.msgsOut)
	}
	if c.bytesIn != s.shown.bytesIn {
		s.bytesIn.Store(c.bytesIn)
	}
	if c.bytesOut != s.shown.bytesOut {
		s.bytesOut.Store(c.bytesOut)
	}
	if c.inFlight != s.shown.inFlight {
		s.inFlight.Store(c.inFlight)
	}
	if c.queued != s.shown.queued {
		s.queued.Store(c.queued)
	}
	s.shown = *c
}

// retireStreams keeps the byte counts of data streams about to be
// dropped.
func (l *EventLoop) retireStreams() {
	s := &l.status
	for _, i := range l.streams.open {
		if ds := l.streams.data[i]; ds != nil {
			s.retiredIn += ds.rd.Total()
			s.retiredOut += ds.wr.Total()
		}
	}
}

func (l *EventLoop) statusRunning(running bool, err error) {
	s := &l.status
	s.mu.Lock()
	s.running = running
	if err != nil {
		s.lastErr = err
	}
	s.mu.Unlock()
}

func (l *EventLoop) statusUp(transport string, now time.Time) {
	s := &l.status
	s.mu.Lock()
	s.connected, s.server, s.transport, s.since = true, l.server, transport, now
	s.connections++
	s.mu.Unlock()
}

func (l *EventLoop) statusDown(err error) {
	s := &l.status
	s.mu.Lock()
	s.connected, s.since = false, time.Time{}
	if err != nil {
		s.lastErr = err
	}
	s.mu.Unlock()
}

// noteQueue reports QueueFull when MaxQueued requests wait and the loop
// stops reading the channel: once, until the queue has emptied again. A
// loop with a spool (Options.SpoolBytes) never stops: a request beyond its
// budget is Dropped with ErrSpoolFull instead.
func (l *EventLoop) noteQueue() {
	q := l.st.Queued()
	switch {
	case q == 0:
		l.queueFull = false
	case !l.queueFull && l.reqOpen && q >= l.opts.MaxQueued && !l.spooling():
		l.queueFull = true
		l.emit(QueueFull{Queued: q})
	}
}
