package sim

import (
	"bytes"
	"errors"
	"fmt"
	"maps"
	"slices"
	"time"

	"github.com/eclipse/paho.golang/packets"

	"github.com/mqttloop/mqttloop/keepalive"
	"github.com/mqttloop/mqttloop/reconnect"
	"github.com/mqttloop/mqttloop/state"
)

type phase int

const (
	phaseOffline    phase = iota // waiting for the next attempt, at retryAt
	phaseConnecting              // CONNECT written, awaiting CONNACK until connDeadline
	phaseConnected
	phaseStopped // the policy ended the run; the application resumes it from its state later
)

// request is one of the client application's requests: subscribe to
// "b2c", or publish message msg at qos to "c2b".
type request struct {
	at  time.Duration
	sub bool
	msg uint64
	qos byte
}

// Why the client dropped a connection.
type downKind int

const (
	downClosed     downKind = iota // the network or the broker ended it
	downKeepalive                  // keepalive.Dead
	downAckTimeout                 // OldestUnacked older than AckTimeout
	downConnect                    // connect timeout
	downProtocol                   // HandleIncoming refused a packet
)

// client is the simulated client: the real state.MqttState,
// keepalive.Timer and reconnect.Schedule, driven the way the event loop
// drives them. Each "iteration" (step) takes requests, sends what the
// window allows, checks the timers, commits the session and only then
// flushes what it wrote.
type client struct {
	s     *Sim
	scfg  state.Config
	st    *state.MqttState
	store *state.MemoryStore

	ka         *keepalive.Timer
	kaInterval time.Duration // in force on the current (or last) connection
	sched      *reconnect.Schedule
	model      backoffModel

	phase        phase
	conn         *conn
	run          int  // runs of the loop: process starts and resumptions
	proc         int  // client process number (crash starts a new one)
	connects     int  // successful CONNACKs in this run
	firstRun     bool // CleanStart until the first CONNACK
	upSince      time.Duration
	connDeadline time.Duration
	retryAt      time.Duration
	downAt       time.Duration // when the schedule was last consulted (or the run/process restarted)
	delay        time.Duration // the delay it gave: the next attempt is at downAt+delay
	wakeAt       time.Duration // earliest pending wake-up, -1 if none
	outbox       []packets.Packet
	crashPending bool

	reqs           []request
	arrived, taken int

	// knownInc is the broker session incarnation the client's session
	// corresponds to: that of the last CONNACK it received.
	knownInc int

	// idOwner: the message last delivered with each packet id (QoS 1/2).
	idOwner map[uint16]uint64

	// written maps each message to the packet id of its last PUBLISH
	// written in the broker's current session incarnation.
	written map[uint64]uint16
}

func newClient(s *Sim) *client {
	c := &client{s: s, wakeAt: -1, firstRun: true, written: make(map[uint64]uint16), idOwner: make(map[uint16]uint64)}
	c.scfg = state.Config{MaxInflight: s.cfg.MaxInflight, ManualAcks: s.cfg.ManualAcks}
	c.st = state.New(c.scfg)
	c.st.SetIdentity(state.Identity{Server: "sim://broker", ClientID: "sim"})
	if s.cfg.Store {
		c.store = state.NewMemoryStore()
		if err := c.st.AttachStore(c.store); err != nil {
			panic(err)
		}
	}
	c.kaInterval = s.cfg.KeepAlive
	c.newRun()
	return c
}

// newRun starts a run of the loop: a fresh schedule, no CONNACK yet.
func (c *client) newRun() {
	c.run++
	c.sched = reconnect.NewSchedule(newSeededBackOff(c.s))
	c.model = backoffModel{initial: c.s.cfg.BackoffInitial, max: c.s.cfg.BackoffMax, jitter: c.s.cfg.BackoffJitter}
	c.model.reset()
	c.connects = 0
}

func (c *client) pingTimeout() time.Duration {
	if c.s.cfg.PingTimeout > 0 {
		return c.s.cfg.PingTimeout
	}
	return c.kaInterval
}

// arrive: request i reaches the client's request channel.
func (c *client) arrive(i int) {
	c.arrived = max(c.arrived, i+1)
	c.step()
}

// step is one iteration of the event loop.
func (c *client) step() {
	s := c.s
	for progress := true; progress; {
		progress = c.take()
		if c.phase == phaseConnected && c.sendQueued() {
			progress = true
		}
	}
	switch c.phase {
	case phaseConnected:
		c.checkTimers()
	case phaseConnecting:
		if s.now >= c.connDeadline {
			c.down("connect timeout", downConnect)
		}
	}
	if c.phase == phaseOffline && s.now >= c.retryAt {
		c.dial()
	}
	c.flush()
	c.arm()
}

// take accepts arrived requests into the session while the offline queue
// has room.
func (c *client) take() bool {
	if c.phase == phaseStopped {
		return false
	}
	took := false
	for c.taken < c.arrived && (c.s.cfg.OfflineQueue == 0 || c.st.Queued() < c.s.cfg.OfflineQueue) {
		r := c.reqs[c.taken]
		c.taken++
		var p packets.Packet
		if r.sub {
			p = &packets.Subscribe{Subscriptions: []packets.SubOptions{{Topic: "b2c", QoS: 2}}, Properties: &packets.Properties{}}
		} else {
			p = &packets.Publish{Topic: "c2b", QoS: r.qos, Payload: payload(r.msg)}
		}
		c.st.Enqueue(state.Pending{Packet: p, Tag: r.msg})
		took = true
	}
	return took
}

// sendQueued writes what NextToSend releases.
func (c *client) sendQueued() bool {
	s := c.s
	sent := false
	for {
		next := c.st.NextToSend()
		pkt := next.Packet
		if pkt == nil {
			if next.Err != nil {
				s.violation("NextToSend: %v", next.Err)
			}
			return sent
		}
		sent = true
		if next.Err != nil {
			s.violation("NextToSend refused %s: %v", describe(pkt), next.Err)
			continue
		}
		c.write(pkt)
		if pub, isPub := pkt.(*packets.Publish); isPub && pub.QoS > 0 {
			c.st.MarkSent(pkt, s.time())
		}
	}
}

// checkTimers applies keepalive and the ack timeout.
func (c *client) checkTimers() {
	s := c.s
	now := s.time()
	switch act, _ := c.ka.Check(now); act {
	case keepalive.SendPing:
		if s.cfg.mutation == mutNoPing {
			break
		}
		c.write(&packets.Pingreq{})
		c.ka.PingSent(now)
	case keepalive.Dead:
		s.stats.KeepaliveDeaths++
		c.down("keepalive: no answer to PINGREQ", downKeepalive)
		return
	}
	if to := s.cfg.AckTimeout; to > 0 {
		if sent, ok := c.st.OldestUnacked(); ok && now.Sub(sent) >= to {
			s.stats.AckTimeouts++
			c.down("ack timeout", downAckTimeout)
		}
	}
}

// write puts a packet in the write buffer (a copy: the session reuses and
// changes its structs), checking what the client may put on the wire.
func (c *client) write(p packets.Packet) {
	if pub, ok := p.(*packets.Publish); ok {
		c.checkPublish(pub)
	}
	c.outbox = append(c.outbox, clone(p))
}

// checkPublish: DUP is set exactly on retransmissions within one broker
// session; a publish carries its topic (no alias across connections).
func (c *client) checkPublish(pub *packets.Publish) {
	s := c.s
	m := msgOf(pub)
	if pub.Topic != "c2b" || m == 0 {
		s.violation("client writes %s: wrong topic or payload", describe(pub))
		return
	}
	if pub.QoS == 0 {
		if pub.Duplicate {
			s.violation("client writes QoS 0 %s with DUP set", describe(pub))
		}
		return
	}
	if pub.PacketID == 0 {
		s.violation("client writes %s without a packet id", describe(pub))
	}
	prev, seen := c.written[m]
	switch {
	case pub.Duplicate && !seen:
		s.violation("client writes %s with DUP set, but message %d was never sent in this broker session", describe(pub), m)
	case pub.Duplicate && prev != pub.PacketID:
		s.violation("client writes %s with DUP set, but message %d was sent with packet id %d", describe(pub), m, prev)
	case !pub.Duplicate && seen:
		s.violation("client writes %s again without DUP (first sent with packet id %d in this broker session)", describe(pub), prev)
	}
	c.written[m] = pub.PacketID
}

// flush commits the session (before anything reaches the wire) and sends
// the write buffer.
func (c *client) flush() {
	s := c.s
	if s.cfg.mutation == mutFlushThenCommit {
		// Flush first, commit after: a crash in between loses what the
		// wire already announced.
		if c.conn != nil {
			for _, p := range c.outbox {
				s.send(c.conn, toBroker, p, false)
			}
		}
		c.outbox = c.outbox[:0]
		if c.crashPending {
			c.crash()
			return
		}
		c.st.Commit()
		return
	}
	if err := c.st.Commit(); err != nil {
		s.violation("Commit: %v", err)
	}
	if c.crashPending {
		c.crash() // after the commit, before the flush: the worst moment
		return
	}
	if len(c.outbox) == 0 {
		return
	}
	if c.conn == nil {
		s.violation("client wrote %d packets with no connection", len(c.outbox))
		c.outbox = c.outbox[:0]
		return
	}
	for i, p := range c.outbox {
		s.send(c.conn, toBroker, p, false)
		c.outbox[i] = nil
	}
	c.outbox = c.outbox[:0]
	if c.phase == phaseConnected {
		c.ka.Sent(s.time())
	}
}

// arm schedules the next wake-up: keepalive, ack timeout, connect
// timeout or the next attempt.
func (c *client) arm() {
	s := c.s
	next := time.Duration(-1)
	switch c.phase {
	case phaseConnected:
		if _, due := c.ka.Check(s.time()); !due.IsZero() {
			next = due.Sub(epoch)
		}
		if to := s.cfg.AckTimeout; to > 0 {
			if sent, ok := c.st.OldestUnacked(); ok {
				if t := sent.Sub(epoch) + to; next < 0 || t < next {
					next = t
				}
			}
		}
	case phaseConnecting:
		next = c.connDeadline
	case phaseOffline:
		next = c.retryAt
	}
	if next < 0 {
		return
	}
	next = max(next, s.now)
	if c.wakeAt >= s.now && c.wakeAt <= next {
		return // an earlier wake-up is pending
	}
	c.wakeAt = next
	s.at(next, func() {
		if c.wakeAt == next {
			c.wakeAt = -1
		}
		c.step()
	})
}

// dial starts a connection attempt.
func (c *client) dial() {
	s := c.s
	if want := c.downAt + c.delay; s.now != want {
		s.violation("connection attempt at %v, the schedule said %v after %v: %v", s.now, c.delay, c.downAt, want)
	}
	s.stats.Connections++
	conn := s.newConn()
	c.conn = conn
	c.phase = phaseConnecting
	c.connDeadline = s.now + s.cfg.ConnectTimeout
	clean := c.firstRun && c.connects == 0
	s.noteText(tDial, uint64(conn.id), fmt.Sprintf("conn=%d clean=%v", conn.id, clean))
	if s.faultsOn && s.cfg.DialFail > 0 && s.rng.Float64() < s.cfg.DialFail {
		s.stats.DialFailures++
		if s.rng.IntN(2) == 0 {
			// Refused: the client learns it after a delay.
			s.end(conn)
			s.after(s.notice(), func() { c.connClosed(conn, "connection refused") })
		} else {
			// Accepted by something that never answers: connect timeout.
			conn.silent = [2]bool{true, true}
		}
	}
	rm := s.cfg.ClientReceiveMax
	exp := uint32(3600)
	connect := &packets.Connect{
		ProtocolName:    "MQTT",
		ProtocolVersion: 5,
		ClientID:        "sim",
		KeepAlive:       uint16(s.cfg.KeepAlive / time.Second),
		CleanStart:      clean,
		Properties:      &packets.Properties{SessionExpiryInterval: &exp},
	}
	if rm > 0 {
		connect.Properties.ReceiveMaximum = &rm
	}
	c.write(connect)
}

// receive handles a packet from the broker: one iteration.
func (c *client) receive(conn *conn, p packets.Packet, bogus bool) {
	s := c.s
	if conn != c.conn {
		s.violation("client got %s on connection %d, which it does not hold", describe(p), conn.id)
		return
	}
	switch c.phase {
	case phaseConnecting:
		if ack, ok := p.(*packets.Connack); ok && !bogus {
			c.connected(ack)
		} else {
			s.violation("client got %s before CONNACK", describe(p))
			c.down("protocol error before CONNACK", downProtocol)
		}
	case phaseConnected:
		c.handle(p, bogus)
		if c.phase == phaseConnected {
			c.ka.Received(s.time())
		}
	default:
		s.violation("client got %s while not connected", describe(p))
	}
	c.step()
}

// connected applies a CONNACK, as eventloop.connected does.
func (c *client) connected(ack *packets.Connack) {
	s := c.s
	now := s.time()
	if ack.ReasonCode >= 0x80 {
		s.violation("CONNACK refused: %#x", ack.ReasonCode)
		c.down("refused", downClosed)
		return
	}
	if ack.SessionPresent && c.firstRun && c.connects == 0 {
		s.violation("CONNACK with session present for a clean start")
	}
	s.stats.Connacks++
	c.connects++
	c.firstRun = false
	c.phase = phaseConnected
	c.upSince = s.now
	c.conn.clientUp = true

	if inc := c.conn.inc; ack.SessionPresent && c.knownInc != 0 && inc != c.knownInc {
		// A phantom session: the broker lost the session at an earlier
		// CONNECT of ours whose CONNACK (session present = 0) never
		// arrived, and made a new one; now it truthfully says "session
		// present" about that new, empty session. The client cannot tell:
		// it keeps believing in its subscriptions (gone at the broker)
		// and its incoming QoS 2 ids (which the new session may reuse for
		// new messages, which are then taken for duplicates). MQTT 5
		// gives the client no way to see this; a client can only guard
		// against it by re-subscribing whenever a CONNECT went unanswered
		// since the last CONNACK. (A client that never had a CONNACK has
		// nothing to lose.)
		s.stats.PhantomSessions++
		s.brk.markPhantom(inc)
		s.noteText(tPhantom, uint64(inc), fmt.Sprintf("session present, but the broker's session %d is not the client's %d", inc, c.knownInc))
		if s.cfg.Strict {
			s.violation("session present = 1 for broker session %d, created at a CONNECT whose CONNACK the client never received: the client still believes in session %d (subscriptions %v)",
				inc, c.knownInc, slices.Sorted(maps.Keys(c.st.Subscriptions())))
		}
	}
	c.knownInc = c.conn.inc
	subsBefore := len(c.st.Subscriptions())
	inflightBefore := c.st.InFlight()
	res := c.st.Connected(ack, true)

	c.kaInterval = s.cfg.KeepAlive
	if ack.Properties != nil && ack.Properties.ServerKeepAlive != nil {
		c.kaInterval = time.Duration(*ack.Properties.ServerKeepAlive) * time.Second
	}
	c.ka = keepalive.New(c.kaInterval, s.cfg.PingTimeout, now)

	if ack.SessionPresent {
		if len(res.Replay)+res.Held != inflightBefore {
			s.violation("session present: %d packets replayed and %d held for %d publishes in flight", len(res.Replay), res.Held, inflightBefore)
		}
	} else {
		clear(c.written) // a new broker session: nothing was sent in it
		if subsBefore > 0 {
			q := c.st.QueuedRequests()
			if len(q) == 0 || !isResub(q[0]) || !slices.Contains(res.Resubscribed, "b2c") {
				s.violation("session lost: the subscription is not re-established first (Resubscribed %v)", res.Resubscribed)
			}
			s.stats.Resubscribes++
		}
	}
	s.stats.Replayed += len(res.Replay)
	s.stats.Requeued += res.Requeued
	for _, d := range res.Completed {
		s.stats.CompletedOnLoss++
		s.completed(d)
	}
	for _, p := range res.Replay {
		if s.cfg.mutation == mutDropReplay {
			break
		}
		c.write(p)
		c.st.MarkSent(p, now)
	}
}

func isResub(p state.Pending) bool {
	_, ok := p.Tag.(state.Resubscribe)
	_, sub := p.Packet.(*packets.Subscribe)
	return ok && sub
}

// handle applies one packet on an established connection, as
// eventloop.handle does.
func (c *client) handle(p packets.Packet, bogus bool) {
	s := c.s
	ev, reply, err := c.st.HandleIncoming(&packets.ControlPacket{Content: p})
	if err != nil {
		if !bogus || !errors.Is(err, state.ErrProtocol) {
			s.violation("HandleIncoming(%s): %v", describe(p), err)
		}
		c.down("protocol error: "+err.Error(), downProtocol)
		return
	}
	if bogus {
		s.violation("HandleIncoming accepted the invalid %s", describe(p))
	}
	if reply != nil {
		c.write(reply)
		if _, isRel := reply.(*packets.Pubrel); isRel && s.cfg.AckTimeout > 0 {
			c.st.MarkSent(reply, s.time())
		}
	}
	switch ev := ev.(type) {
	case nil:
	case state.Delivered:
		s.appDeliver(ev.Publish)
	case state.PublishDone:
		s.completed(ev)
	case state.SubscribeDone:
		for _, r := range ev.Suback.Reasons {
			if r >= 0x80 {
				s.violation("subscription refused: %#x", r)
			}
		}
	case state.BrokerDisconnect:
		c.down("broker sent DISCONNECT", downClosed)
	default:
		s.violation("unexpected event %T", ev)
	}
}

// connClosed: the client learns that conn ended.
func (c *client) connClosed(conn *conn, why string) {
	if conn != c.conn {
		return // a connection the client already dropped
	}
	c.down("connection closed: "+why, downClosed)
	c.step()
}

// down drops the current connection and schedules the next attempt, as
// eventloop.connectionDown does.
func (c *client) down(why string, kind downKind) {
	s := c.s
	conn := c.conn
	wasUp := c.phase == phaseConnected
	c.outbox = c.outbox[:0]
	if conn != nil {
		if (kind == downKeepalive || kind == downAckTimeout) && healthy(conn) {
			s.violation("%s on a healthy connection %d", why, conn.id)
		}
		if h := conn.half; h != nil && !h.detected && !h.excused {
			h.detected, h.detectedAt, h.how = true, s.now, why
			d := s.now - h.at
			s.stats.MaxDetect = max(s.stats.MaxDetect, d)
			s.noteText(tDetect, uint64(d), fmt.Sprintf("conn=%d half-open for %v (bound %v): %s", conn.id, d, h.bound, why))
			if d > h.bound {
				s.violation("half-open connection %d (silent %s since %v) detected after %v, more than %v (%s)",
					conn.id, dirNames(h.dirs), h.at, d, h.bound, why)
			}
		}
		s.closeBy(conn, clientSide, why)
	}
	c.conn = nil
	c.ka = nil
	s.noteText(tDown, uint64(kind), why)
	if wasUp && s.now-c.upSince >= s.cfg.HealthyAfter {
		c.sched.Reset()
		c.model.reset()
	}
	if !s.cfg.Policy.Retry(c.connects > 0) {
		c.phase = phaseStopped
		s.stats.RunsEnded++
		run := c.run
		s.after(s.cfg.AppRestart, func() {
			if c.run == run && c.phase == phaseStopped {
				c.resume()
			}
		})
		return
	}
	d, ok := c.sched.Next()
	if !ok {
		s.violation("the reconnect schedule gave up")
		c.phase = phaseStopped
		return
	}
	lo, hi := c.model.take()
	if d < lo || d > hi || d <= 0 {
		s.violation("reconnect delay %v outside the schedule's [%v, %v]", d, lo, hi)
	}
	c.retryAt = s.now + d
	c.downAt, c.delay = s.now, d
	if s.cfg.mutation == mutIgnoreSchedule {
		c.retryAt = s.now
	}
	c.phase = phaseOffline
	s.noteText(tDelay, uint64(d), d.String())
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

// resume continues a run the policy ended, from the session in memory
// (what State() hands to a new EventLoop).
func (c *client) resume() {
	c.newRun()
	c.phase = phaseOffline
	c.retryAt = c.s.now
	c.downAt, c.delay = c.s.now, 0
	c.step()
}

// crash kills the client process after its last Commit and starts a new
// one from the durable session (Store), or restarts it through Save and
// Load.
func (c *client) crash() {
	s := c.s
	c.crashPending = false
	old := c.st
	if conn := c.conn; conn != nil {
		if h := conn.half; h != nil && !h.detected {
			h.excused = true
		}
		s.closeBy(conn, clientSide, "process gone")
	}
	c.conn, c.ka = nil, nil
	c.outbox = c.outbox[:0]
	var (
		st  *state.MqttState
		err error
	)
	if c.store != nil {
		s.stats.CrashRestarts++
		s.noteText(tCrash, 1, "killed; rebuilding the session from the store")
		st, err = state.LoadStore(c.store)
		if err == nil && st.Identity() == (state.Identity{}) {
			err = errors.New("the store is empty")
		}
	} else {
		s.stats.SaveLoadRestarts++
		s.noteText(tCrash, 2, "restart through Save and Load")
		var buf bytes.Buffer
		if err = old.Save(&buf); err == nil {
			st, err = state.Load(&buf)
		}
	}
	if err != nil {
		s.violation("restart: %v", err)
	} else {
		c.compareSessions(old, st)
		st.SetConfig(c.scfg)
		if c.store != nil {
			if err := st.AttachStore(c.store); err != nil {
				s.violation("AttachStore after restart: %v", err)
			}
		}
		c.st = st
	}
	c.firstRun = false
	c.proc++
	c.newRun()
	c.phase = phaseOffline
	c.retryAt = s.now + s.cfg.AppRestart
	c.downAt, c.delay = s.now, s.cfg.AppRestart
}

// compareSessions: the session rebuilt after a restart is the one that was
// committed (everything, since the crash happens after Commit).
func (c *client) compareSessions(old, st *state.MqttState) {
	s := c.s
	type shape struct{ inflight, queued, outstanding, release int }
	a := shape{old.InFlight(), old.Queued(), old.Outstanding(), old.AwaitingRelease()}
	b := shape{st.InFlight(), st.Queued(), st.Outstanding(), st.AwaitingRelease()}
	if a != b {
		s.violation("restored session differs: in flight/queued/outstanding/awaiting release %v, was %v", b, a)
	}
	if !maps.Equal(old.Subscriptions(), st.Subscriptions()) {
		s.violation("restored subscriptions %v, were %v", st.Subscriptions(), old.Subscriptions())
	}
	oi, ni := old.InFlightPublishes(), st.InFlightPublishes()
	for i := range min(len(oi), len(ni)) {
		o, n := oi[i], ni[i]
		if o.Publish.PacketID != n.Publish.PacketID || o.Stage != n.Stage || msgOf(o.Publish) != msgOf(n.Publish) {
			s.violation("restored publish in flight #%d: id %d stage %d m=%d, was id %d stage %d m=%d",
				i, n.Publish.PacketID, n.Stage, msgOf(n.Publish), o.Publish.PacketID, o.Stage, msgOf(o.Publish))
			break
		}
	}
}

// appDeliver: the client's application receives a message.
func (s *Sim) appDeliver(p *packets.Publish) {
	m := msgOf(p)
	if p.Topic != "b2c" || m == 0 || m >= uint64(len(s.b2c)) {
		s.violation("client delivered a message it was never sent: %s", describe(p))
		return
	}
	r := &s.b2c[m]
	s.note(tAppDeliver, nil, int(m), nil)
	proc := s.cli.proc
	again := r.delivered > 0
	r.delivered++
	switch {
	case p.QoS != r.qos:
		s.violation("client delivered broker→client message %d at QoS %d, published at %d", m, p.QoS, r.qos)
	case !r.routed:
		s.violation("client delivered broker→client message %d, never routed to its session", m)
	case r.qos == 0 && again:
		s.violation("client delivered broker→client QoS 0 message %d %d times", m, r.delivered)
	case r.qos == 2 && r.appAcked > 0:
		s.violation("client delivered broker→client QoS 2 message %d again after the application acknowledged it", m)
	case r.qos == 2 && again && r.lastProc == proc:
		// Manual acks: a QoS 2 message delivered to a process that died
		// before acknowledging it is delivered again to the next one.
		s.violation("client delivered broker→client QoS 2 message %d twice to the same process", m)
	}
	r.lastProc = proc
	if p.QoS == 0 {
		return
	}
	s.cli.idOwner[p.PacketID] = m
	if !s.cfg.ManualAcks {
		r.appAcked++
		return
	}
	// The application acknowledges it later, by packet id (all that
	// state.Ack and eventloop.Ack take).
	id, qos := p.PacketID, p.QoS
	s.after(s.exp(s.cfg.AckDelay), func() { s.cli.appAck(m, id, qos, proc) })
}

// appAck: the application acknowledges message m, delivered with packet
// id to process proc. One iteration of the loop, as eventloop.ack.
func (c *client) appAck(m uint64, id uint16, qos byte, proc int) {
	s := c.s
	if c.proc != proc {
		return // that process is gone
	}
	owner := c.idOwner[id]
	// Session 0: without state.Ack's broker-session check (ErrStaleAck),
	// so that the known issue below stays reproducible at this level.
	pkt, err := c.st.Ack(id, qos, 0, 0)
	s.noteText(tAppAck, m, fmt.Sprintf("m=%d id=%d q%d err=%v", m, id, qos, err))
	if err != nil {
		if !errors.Is(err, state.ErrUnknownPacketID) {
			s.violation("Ack(%d, %d): %v", id, qos, err)
		}
		s.stats.AckErrors++
		return
	}
	s.b2c[m].appAcked++
	if owner != m {
		// A stale ack: m was delivered with this packet id in a session
		// the broker has since lost; the new session reused the id for
		// owner, still unacknowledged, and Ack(id, qos) — all that
		// state.Ack and eventloop.Ack know of a message — acknowledges
		// owner instead. The broker takes owner as received before the
		// application has it (lost if the process dies now), and the
		// application's own ack of owner then fails.
		s.stats.StaleAcks++
		s.b2c[owner].staleAcked = true
		if s.cfg.Strict {
			s.violation("the application's ack of message %d (packet id %d, delivered in an earlier broker session) acknowledged message %d, which it has not acknowledged",
				m, id, owner)
		}
	}
	if c.conn != nil {
		c.write(pkt)
	}
	c.step()
}

// completed: an outgoing publish completed at the client.
func (s *Sim) completed(d state.PublishDone) {
	m := msgOf(d.Publish)
	if m == 0 || m >= uint64(len(s.c2b)) {
		s.violation("client completed an unknown publish %s", describe(d.Publish))
		return
	}
	r := &s.c2b[m]
	s.note(tDone, nil, int(m), nil)
	r.completed++
	switch {
	case d.ReasonCode >= 0x80 && d.ReasonCode != packets.PubcompPacketIdentifierNotFound:
		// PUBCOMP 0x92 answers a PUBREL replayed to a broker that had
		// already completed the flow (its PUBCOMP was lost): the message
		// was accepted at PUBREC.
		s.violation("publish %d completed with reason %#x", m, d.ReasonCode)
	case r.completed > 1:
		s.violation("publish %d completed %d times", m, r.completed)
	case r.delivered == 0:
		s.violation("publish %d completed at the client, but the broker never received it", m)
	}
}
