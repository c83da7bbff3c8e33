package sim

import (
	"fmt"
	"slices"
	"time"

	"github.com/eclipse/paho.golang/packets"
)

// broker is a small MQTT 5 broker for one client with a persistent session
// (Session Expiry > 0), correct as far as the client can observe:
//
//   - QoS 1 from the client: delivered to subscribers (the delivery log)
//     each time it arrives, PUBACK — at least once.
//   - QoS 2 from the client: delivered when its packet id is new, the id
//     kept until PUBREL, PUBREC repeated for duplicates, PUBCOMP on
//     PUBREL (0x92 for an unknown id) — exactly once within a session.
//   - Messages to the client ("b2c", published by other clients) are routed
//     into the session while it holds the subscription, queued while the
//     client is away, sent within the client's Receive Maximum, and after a
//     reconnect with the session kept the unacknowledged ones are sent
//     again with DUP, PUBRELs again, in their original order.
//   - Keepalive: a connection on which nothing arrives for 1.5 × keepalive
//     is closed (MQTT-3.1.2-22).
//   - A new connection takes the session over (the old one is closed).
//
// Session loss: on a reconnect the broker may have lost the session
// (Config.SessionLoss: a restart without persistence, an expiry): it
// answers session present = 0 and everything in the session is gone —
// subscription, queued and in-flight messages to the client, and the QoS 2
// packet ids awaiting PUBREL. MQTT 5 guarantees nothing for what is lost
// that way: a message to the client is lost with it (it is marked, and
// only at-most-once is checked for it), and a QoS 2 message from the client
// whose PUBREC had not yet reached the client is sent again by the client
// as a new message and delivered a second time (marked atRisk: at least
// once is checked, and the duplicate counted). A QoS 2 message whose
// PUBREC had reached the client is reported by state.Connected in
// Resumed.Completed and never sent again: it stays exactly once.
type broker struct {
	s        *Sim
	conn     *conn // the connection the broker serves, nil while the client is away
	sess     *bsession
	incs     int
	kaI      time.Duration // keepalive enforced on conn (0: none)
	lastRecv time.Duration
	recvMax  int // Receive Maximum announced on conn
}

type bsession struct {
	inc        int
	subscribed bool
	phantom    bool // the client took it for an older session (see Sim.clientReceives)
	// inQoS2: QoS 2 packet ids from the client awaiting PUBREL → message.
	inQoS2 map[uint16]uint64
	// seen: the last message received with each packet id (DUP check).
	seen     map[uint16]uint64
	out      []*bout // messages to the client in flight, in send order
	outByID  map[uint16]*bout
	queue    []uint64 // messages to the client not yet sent
	nextID   uint16
	clientRM int
}

type bout struct {
	id  uint16
	msg uint64
	qos byte
	rel bool // PUBREC received, PUBREL sent
}

func newBroker(s *Sim) *broker { return &broker{s: s} }

func (b *broker) newSession() {
	b.incs++
	b.sess = &bsession{
		inc:     b.incs,
		inQoS2:  make(map[uint16]uint64),
		seen:    make(map[uint16]uint64),
		outByID: make(map[uint16]*bout),
	}
}

// loseSession forgets the session, recording what MQTT no longer
// guarantees.
func (b *broker) loseSession(why string) {
	s := b.s
	sess := b.sess
	for _, m := range sess.inQoS2 {
		s.c2b[m].atRisk = true
	}
	for _, o := range sess.out {
		s.b2c[o.msg].lost = true
	}
	for _, m := range sess.queue {
		s.b2c[m].lost = true
	}
	s.noteText(tSessionLost, uint64(sess.inc), fmt.Sprintf("%s: %d QoS 2 ids unreleased, %d in flight and %d queued to the client",
		why, len(sess.inQoS2), len(sess.out), len(sess.queue)))
	b.sess = nil
}

func (b *broker) send(p packets.Packet) { b.s.sendBroker(b.conn, p, nil, false) }

// receive handles a packet from the client.
func (b *broker) receive(c *conn, p packets.Packet) {
	s := b.s
	if cp, ok := p.(*packets.Connect); ok {
		b.connect(c, cp)
		return
	}
	if c != b.conn || !c.brokerUp {
		s.violation("broker got %s on connection %d, which it does not serve", describe(p), c.id)
		return
	}
	b.lastRecv = s.now
	sess := b.sess
	switch v := p.(type) {
	case *packets.Publish:
		b.incomingPublish(c, v)
	case *packets.Pubrel:
		if _, ok := sess.inQoS2[v.PacketID]; ok {
			delete(sess.inQoS2, v.PacketID)
			b.send(&packets.Pubcomp{PacketID: v.PacketID})
		} else {
			b.send(&packets.Pubcomp{PacketID: v.PacketID, ReasonCode: packets.PubcompPacketIdentifierNotFound})
		}
	case *packets.Puback:
		o := sess.outByID[v.PacketID]
		if o == nil || o.qos != 1 || o.rel {
			b.unknownAck(v.PacketID, "PUBACK")
			return
		}
		b.checkAppAcked(o, "PUBACK")
		b.complete(o)
	case *packets.Pubrec:
		o := sess.outByID[v.PacketID]
		if o == nil || o.qos != 2 {
			b.unknownAck(v.PacketID, "PUBREC")
			b.send(&packets.Pubrel{PacketID: v.PacketID, ReasonCode: 0x92})
			return
		}
		if v.ReasonCode >= 0x80 {
			s.violation("client refused message %d: PUBREC %#x", o.msg, v.ReasonCode)
		}
		if !o.rel {
			b.checkAppAcked(o, "PUBREC")
		}
		o.rel = true
		b.send(&packets.Pubrel{PacketID: v.PacketID})
	case *packets.Pubcomp:
		o := sess.outByID[v.PacketID]
		if o == nil || !o.rel {
			b.unknownAck(v.PacketID, "PUBCOMP")
			return
		}
		b.complete(o)
	case *packets.Subscribe:
		reasons := make([]byte, len(v.Subscriptions))
		for i, o := range v.Subscriptions {
			if o.Topic != "b2c" {
				s.violation("client subscribed to %q", o.Topic)
			}
			reasons[i] = o.QoS
		}
		sess.subscribed = true
		b.send(&packets.Suback{PacketID: v.PacketID, Reasons: reasons})
	case *packets.Pingreq:
		b.send(&packets.Pingresp{})
	case *packets.Disconnect:
		b.conn = nil
		s.closeBy(c, brokerSide, "DISCONNECT")
	default:
		s.violation("client sent %s", describe(p))
	}
}

// connect handles CONNECT: take over, find or create the session, CONNACK,
// resend what is unacknowledged.
func (b *broker) connect(c *conn, cp *packets.Connect) {
	s := b.s
	if old := b.conn; old != nil && old != c {
		s.closeBy(old, brokerSide, "session taken over")
	}
	b.conn = nil
	present := false
	switch {
	case b.sess == nil:
		b.newSession()
	case cp.CleanStart:
		b.loseSession("clean start")
		b.newSession()
	case s.faultsOn && s.cfg.SessionLoss > 0 && s.rng.Float64() < s.cfg.SessionLoss:
		s.stats.SessionsLost++
		b.loseSession("broker lost the session")
		b.newSession()
	default:
		present = true
	}
	sess := b.sess
	b.conn = c
	c.brokerUp = true
	c.inc = sess.inc
	b.lastRecv = s.now

	props := &packets.Properties{}
	rm := s.cfg.ReceiveMaximum
	if s.cfg.ReceiveMaxVaries {
		rm = []uint16{0, 1, 2, 5, 20, 100}[s.rng.IntN(6)]
	}
	b.recvMax = 65535
	if rm > 0 {
		props.ReceiveMaximum = &rm
		b.recvMax = int(rm)
	}
	b.kaI = time.Duration(cp.KeepAlive) * time.Second
	if ska := s.cfg.ServerKeepAlive; ska > 0 {
		props.ServerKeepAlive = &ska
		b.kaI = time.Duration(ska) * time.Second
	}
	sess.clientRM = 65535
	if cp.Properties != nil && cp.Properties.ReceiveMaximum != nil {
		sess.clientRM = int(*cp.Properties.ReceiveMaximum)
	}
	if s.faultsOn && s.storm > 0 {
		s.storm--
		c.cutAt = c.packets + 2 + s.rng.IntN(8) // mid-replay
	}
	if s.faultsOn && s.cfg.CutEvery > 0 {
		c.cutAt = c.packets + s.cfg.CutEvery
	}
	b.send(&packets.Connack{SessionPresent: present, Properties: props})
	if present && s.cfg.mutation != mutNoResend {
		for _, o := range sess.out {
			if o.rel {
				b.send(&packets.Pubrel{PacketID: o.id})
			} else {
				b.send(&packets.Publish{Topic: "b2c", QoS: o.qos, PacketID: o.id, Duplicate: true, Payload: payload(o.msg)})
			}
		}
	}
	b.pump()
	b.armKeepalive(c)
}

// incomingPublish handles a PUBLISH from the client.
func (b *broker) incomingPublish(c *conn, p *packets.Publish) {
	s := b.s
	sess := b.sess
	m := msgOf(p)
	if p.Topic != "c2b" || m == 0 || m >= uint64(len(s.c2b)) {
		s.violation("client published %s: bad topic or payload", describe(p))
		return
	}
	r := &s.c2b[m]
	if p.QoS != r.qos {
		s.violation("client published message %d at QoS %d, requested %d", m, p.QoS, r.qos)
	}
	// TCP keeps order, and the client sends replays first, then its queue
	// in order: messages arrive in increasing order on each connection.
	if m <= c.lastPub {
		s.violation("client sent message %d after message %d on connection %d: out of order", m, c.lastPub, c.id)
	}
	c.lastPub = m
	if p.QoS > 0 {
		if prev, ok := sess.seen[p.PacketID]; ok && prev == m && !p.Duplicate {
			s.violation("client retransmitted message %d (packet id %d) without DUP", m, p.PacketID)
		}
		sess.seen[p.PacketID] = m
	}
	switch p.QoS {
	case 0:
		b.deliver(m)
	case 1:
		b.deliver(m)
		b.send(&packets.Puback{PacketID: p.PacketID})
	case 2:
		if prev, ok := sess.inQoS2[p.PacketID]; ok && s.cfg.mutation != mutNoDedup {
			if prev != m {
				s.violation("client reused packet id %d for message %d while message %d awaits PUBREL: the broker takes it for a duplicate and message %d is lost",
					p.PacketID, m, prev, m)
			}
			b.send(&packets.Pubrec{PacketID: p.PacketID})
			return
		}
		if len(sess.inQoS2) >= b.recvMax {
			if !p.Duplicate {
				s.violation("client exceeded the broker's Receive Maximum %d with the new message %d (packet id %d)", b.recvMax, m, p.PacketID)
			} else {
				s.violation("client replayed message %d (packet id %d) beyond the broker's Receive Maximum %d [MQTT-3.3.4-7]", m, p.PacketID, b.recvMax)
			}
		}
		sess.inQoS2[p.PacketID] = m
		b.deliver(m)
		b.send(&packets.Pubrec{PacketID: p.PacketID})
	}
}

// deliver hands a client message to the subscribers: the delivery log.
func (b *broker) deliver(m uint64) {
	s := b.s
	r := &s.c2b[m]
	r.delivered++
	s.note(tBrokerDeliver, nil, int(m), nil)
	if r.qos == 2 && r.delivered > 1 && !r.atRisk {
		s.violation("broker delivered client→broker QoS 2 message %d %d times within one session", m, r.delivered)
	}
}

// complete ends the flow of a message to the client.
func (b *broker) complete(o *bout) {
	s := b.s
	sess := b.sess
	i := slices.Index(sess.out, o)
	sess.out = slices.Delete(sess.out, i, i+1)
	delete(sess.outByID, o.id)
	s.b2c[o.msg].acked++
	b.pump()
}

// publish: another client publishes message m to "b2c".
func (b *broker) publish(m uint64) {
	sess := b.sess
	if sess == nil || !sess.subscribed {
		return // no subscription, nothing routed
	}
	b.s.b2c[m].routed = true
	if sess.phantom {
		// The client's session state is not this session's (see
		// client.connected): MQTT guarantees nothing here.
		b.s.b2c[m].lost = true
	}
	sess.queue = append(sess.queue, m)
	b.pump()
}

// pump sends queued messages to the client within its Receive Maximum.
func (b *broker) pump() {
	s := b.s
	sess := b.sess
	if b.conn == nil || sess == nil {
		return
	}
	for len(sess.queue) > 0 {
		m := sess.queue[0]
		q := s.b2c[m].qos
		if q > 0 && len(sess.out) >= sess.clientRM {
			return
		}
		sess.queue = sess.queue[1:]
		pub := &packets.Publish{Topic: "b2c", QoS: q, Payload: payload(m)}
		if q > 0 {
			for {
				sess.nextID++
				if sess.nextID == 0 {
					sess.nextID = 1
				}
				if sess.outByID[sess.nextID] == nil {
					break
				}
			}
			o := &bout{id: sess.nextID, msg: m, qos: q}
			sess.out = append(sess.out, o)
			sess.outByID[o.id] = o
			pub.PacketID = o.id
		}
		b.send(pub)
	}
}

// armKeepalive enforces the keepalive on c: 1.5 × keepalive of silence
// closes it.
func (b *broker) armKeepalive(c *conn) {
	s := b.s
	if b.kaI <= 0 {
		return
	}
	limit := b.kaI * 3 / 2
	var check func()
	check = func() {
		if b.conn != c {
			return
		}
		if s.now-b.lastRecv < limit {
			s.at(b.lastRecv+limit, check)
			return
		}
		// On a working connection the client sends something (PINGREQ at
		// the latest) within each keepalive. (With a ping outstanding on a
		// connection whose broker→client path is silent, a client with a
		// ping timeout over keepalive/2 stays quiet until it gives up: the
		// broker may well close first.)
		if healthy(c) {
			s.violation("broker's keepalive expired on the healthy connection %d: nothing from the client for %v", c.id, s.now-b.lastRecv)
		}
		s.stats.BrokerKeepalive++
		b.conn = nil
		s.closeBy(c, brokerSide, "keepalive expired at the broker")
	}
	s.at(b.lastRecv+limit, check)
}

// restart: the broker process restarts. Every connection is closed; a
// broker without persistence (Config.SessionLoss) loses the session.
func (b *broker) restart() {
	s := b.s
	s.stats.BrokerRestarts++
	s.noteText(tBrokerRestart, 0, "broker restarts")
	if c := b.conn; c != nil {
		b.conn = nil
		s.closeBy(c, brokerSide, "broker restart")
	}
	if b.sess != nil && s.cfg.SessionLoss > 0 && s.rng.Float64() < s.cfg.SessionLoss {
		s.stats.SessionsLost++
		b.loseSession("broker restarted without the session")
	}
}

// connClosed: the broker learns that c ended.
func (b *broker) connClosed(c *conn, _ string) {
	if b.conn == c {
		b.conn = nil
	}
}

// markPhantom: the client took session incarnation inc for its own older
// session. Everything routed into it from now on is unguaranteed.
func (b *broker) markPhantom(inc int) {
	if b.sess == nil || b.sess.inc != inc {
		return
	}
	b.sess.phantom = true
	for _, o := range b.sess.out {
		b.s.b2c[o.msg].lost = true
	}
	for _, m := range b.sess.queue {
		b.s.b2c[m].lost = true
	}
}

// checkAppAcked: the client acknowledges message o only once its
// application has (with automatic acks: once it was delivered).
func (b *broker) checkAppAcked(o *bout, ack string) {
	if r := &b.s.b2c[o.msg]; r.appAcked == 0 {
		if b.sess.phantom {
			// The client took it for a duplicate of a message of the
			// session the broker lost (a stale incoming QoS 2 id), or
			// the like: lost, a consequence of the phantom session.
			b.s.stats.PhantomSwallowed++
			return
		}
		b.s.violation("broker got %s (packet id %d) for message %d, which the client's application has not acknowledged (delivered %d times)",
			ack, o.id, o.msg, r.delivered)
	}
}

// unknownAck: an ack for a packet id with nothing in flight. With manual
// acks the application may acknowledge a message of an earlier connection
// or session (written before CONNACK, or after the session was lost; the
// broker's resend then draws a second PUBREC, and a second PUBREL a
// PUBCOMP 0x92); brokers ignore those. Otherwise the client made it up.
func (b *broker) unknownAck(id uint16, ack string) {
	if b.s.cfg.ManualAcks {
		b.s.stats.UnknownAcks++
		return
	}
	b.s.violation("client sent %s for packet id %d, which has no such message in flight", ack, id)
}
