package sim

import (
	"bytes"
	"time"

	"github.com/eclipse/paho.golang/packets"
)

// Directions of a connection.
const (
	toBroker = 0
	toClient = 1
)

// Sides that close a connection.
const (
	clientSide = 0
	brokerSide = 1
)

// conn is one simulated TCP connection between the event loop and the
// broker. The loop's end is a memConn (a netio.Conn); the broker's end is
// the broker itself.
//
// What a side writes travels as one segment per write, each with its own
// delay, in order within a direction (TCP): a segment never overtakes the
// one written before it, and nothing is ever duplicated on a connection. A
// connection that is cut by the network loses everything in flight in
// both directions, and each peer learns of it after a notice delay, unless
// the path towards it is silent. A connection that one side closes (or
// whose process dies) loses what was in flight towards that side, while
// what that side had written still arrives (the kernel sends it before
// the FIN); the peer learns of the close after that.
//
// A silent direction (half-open connection) swallows segments without
// anyone being told: only keepalive finds out.
type conn struct {
	id      int
	open    bool
	silent  [2]bool
	gen     [2]uint32        // bumped to lose what is in flight in a direction
	last    [2]time.Duration // arrival time of the last segment, per direction
	packets int              // packets written on it, both directions
	cutAt   int              // cut when packets reaches this (0: no plan)

	half *halfOpen // the half-open period on this connection, if any

	cli *memConn // the event loop's end

	// Broker's view.
	brokerUp bool   // the broker sent CONNACK on it
	inc      int    // the broker session incarnation that CONNACK was for
	lastPub  uint64 // message number of the last client PUBLISH received
	rbuf     []byte // bytes from the client not yet a whole packet
	// Client's view.
	clientUp bool // a CONNACK reached the client on it
	// bad: an invalid packet reached the client on it: the loop must
	// close the connection before it waits again.
	bad bool
	// resubPending: the CONNACK said the session was lost while the
	// client held a subscription: its first SUBSCRIBE or PUBLISH must be
	// the SUBSCRIBE that re-establishes it.
	resubPending bool
}

// halfOpen is a period during which one or both directions of a connection
// silently lose everything.
type halfOpen struct {
	conn       *conn
	at         time.Duration // when the path went silent
	dirs       [2]bool
	bound      time.Duration // detection must happen within at+bound
	detected   bool
	detectedAt time.Duration
	excused    bool // the client process died before it could detect it
}

func (s *Sim) newConn() *conn {
	s.nconns++
	return &conn{id: s.nconns, open: true}
}

// delay draws a segment's network delay.
func (s *Sim) delay() time.Duration {
	d := s.uniform(s.cfg.MinDelay, s.cfg.MaxDelay)
	if s.cfg.SpikeProb > 0 && s.rng.Float64() < s.cfg.SpikeProb {
		d += s.uniform(0, s.cfg.SpikeMax)
	}
	return d
}

// notice draws how long a peer takes to learn that a connection ended.
func (s *Sim) notice() time.Duration { return s.uniform(s.cfg.NoticeMin, s.cfg.NoticeMax) }

// isApp reports whether a packet belongs to a message flow (not a ping),
// for the "nothing in flight" check.
func isApp(p packets.Packet) bool {
	switch p.(type) {
	case *packets.Pingreq, *packets.Pingresp:
		return false
	}
	return true
}

// sendBroker writes p from the broker to the client on c: encoded as the
// broker's codec would (paho's), or as raw when the codec cannot encode it.
// bogus marks a packet the broker may never send there.
func (s *Sim) sendBroker(c *conn, p packets.Packet, raw []byte, bogus bool) {
	data := raw
	if data == nil {
		var b bytes.Buffer
		if _, err := p.WriteTo(&b); err != nil {
			s.violation("broker cannot encode %s: %v", describe(p), err)
			return
		}
		data = b.Bytes()
	}
	s.send(c, toClient, []packets.Packet{p}, data, bogus)
}

// send writes a segment on c in direction dir: pkts are the packets it
// holds (for the trace, the checks and the receiver on the broker side),
// data its bytes (for the loop's end). bogus marks a deliberately invalid
// packet.
func (s *Sim) send(c *conn, dir int, pkts []packets.Packet, data []byte, bogus bool) {
	if !c.open || c.silent[dir] {
		for _, p := range pkts {
			s.note(tVanish, c, dir, p)
			s.stats.Vanished++
		}
		return
	}
	app := 0
	for _, p := range pkts {
		s.note(tSend, c, dir, p)
		if isApp(p) {
			app++
		}
	}
	s.stats.Packets += len(pkts)
	c.packets += len(pkts)
	at := s.now + s.delay()
	if at < c.last[dir] {
		at = c.last[dir]
	}
	c.last[dir] = at
	gen := c.gen[dir]
	s.inflight += app
	s.at(at, func() {
		s.inflight -= app
		if c.gen[dir] != gen {
			for _, p := range pkts {
				s.note(tLost, c, dir, p)
			}
			return
		}
		if dir == toBroker {
			for _, p := range pkts {
				s.note(tRecv, c, dir, p)
				s.brk.receive(c, p)
			}
			return
		}
		for _, p := range pkts {
			s.note(tRecv, c, dir, p)
			s.clientReceives(c, p, bogus)
		}
		c.cli.deliver(data)
	})
	if dir == toBroker && s.cfg.mutation == mutDupSegment && s.rng.IntN(20) == 0 {
		// A broken network: the segment arrives a second time.
		s.at(at, func() {
			if c.gen[dir] == gen {
				for _, p := range pkts {
					s.brk.receive(c, p)
				}
			}
		})
	}
	if c.cutAt > 0 && c.packets >= c.cutAt {
		c.cutAt = 0
		s.cut(c, "planned cut")
	}
}

// end closes c: everything in flight is lost.
func (s *Sim) end(c *conn) {
	c.open = false
	c.gen[0]++
	c.gen[1]++
	c.cutAt = 0
}

// cut breaks c in the network: both peers learn of it after a delay (a
// peer behind a silent path never does).
func (s *Sim) cut(c *conn, why string) {
	if !c.open {
		return
	}
	s.stats.Cuts++
	s.note(tCut, c, 0, nil)
	s.end(c)
	if !c.silent[toClient] {
		s.after(s.notice(), func() { c.cli.ended() })
	}
	if !c.silent[toBroker] {
		s.after(s.notice(), func() { s.brk.connClosed(c, why) })
	}
}

// closeBy closes c from one side: nothing more is written on it, what was
// in flight towards that side is lost, what it had written still arrives,
// and the other side learns of the close after that (unless the path
// towards it is silent).
func (s *Sim) closeBy(c *conn, side int, why string) {
	out := toBroker // the direction away from the closing side
	if side == brokerSide {
		out = toClient
	}
	c.gen[1-out]++ // the closing side reads nothing more, even if the other closed first
	if !c.open {
		return
	}
	s.note(tClose, c, side, nil)
	c.open = false
	c.cutAt = 0
	if c.silent[out] {
		return
	}
	at := max(s.now, c.last[out]) + s.notice()
	if side == clientSide {
		s.at(at, func() { s.brk.connClosed(c, why) })
	} else {
		s.at(at, func() { c.cli.ended() })
	}
}

// silence starts a half-open period on c in the given directions: what is
// in flight there is lost and nothing passes until the connection ends.
func (s *Sim) silence(c *conn, dirs [2]bool) {
	h := &halfOpen{conn: c, at: s.now, dirs: dirs}
	// Bounds (see Config.HalfOpenMean): a silent broker→client path is
	// found by the client's keepalive within keepalive + ping timeout; a
	// silent client→broker path alone by the broker's keepalive (1.5 ×
	// keepalive), whose close reaches the client after the packets the
	// broker wrote before it and a notice delay.
	ka, pt := s.kaInterval, s.pingTimeout()
	h.bound = ka + pt
	if !dirs[toClient] {
		h.bound = max(h.bound, ka*3/2+s.cfg.MaxDelay+s.cfg.SpikeMax+s.cfg.NoticeMax)
	}
	for d, on := range dirs {
		if on {
			c.silent[d] = true
			c.gen[d]++
		}
	}
	c.half = h
	s.halfOpens = append(s.halfOpens, h)
	s.stats.HalfOpens++
	s.note(tSilence, c, boolInt(dirs[toBroker])|boolInt(dirs[toClient])<<1, nil)
}

// healthy reports whether c is working in both directions, so that
// nothing may declare it dead.
func healthy(c *conn) bool { return c.open && !c.silent[0] && !c.silent[1] }

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}

func dirNames(d [2]bool) string {
	switch {
	case d[0] && d[1]:
		return "both ways"
	case d[0]:
		return "client→broker"
	}
	return "broker→client"
}
