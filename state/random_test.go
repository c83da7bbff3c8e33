package state

import (
	"errors"
	"fmt"
	"math/rand"
	"slices"
	"testing"

	"github.com/eclipse/paho.golang/packets"
)

// TestRandomizedSessions drives sessions through random sequences of
// requests, sends, broker answers, incoming messages and reconnects (with
// and without a session), checking after every step that:
//   - every request is, exactly once, either completed (acked, refused, sent
//     at QoS 0, or completed by a lost session) or still queued / in flight;
//   - the session's counts match a model of it;
//   - packet ids in flight are unique and never 0;
//   - the queue is FIFO and nothing is sent beyond the window;
//   - an incoming QoS 2 message is delivered once per id until released.
func TestRandomizedSessions(t *testing.T) {
	for seed := int64(1); seed <= 60; seed++ {
		t.Run(fmt.Sprint(seed), func(t *testing.T) { runRandomSession(t, seed, 1500) })
	}
}

type reqStatus uint8

const (
	statusQueued reqStatus = iota + 1
	statusInFlight
	statusDone
)

type randomModel struct {
	t      *testing.T
	rng    *rand.Rand
	s      *MqttState
	status map[int]reqStatus
	sentAt map[int]int // tag → send order
	sends  int
	nextID int
	// incoming QoS 2 ids delivered and not yet released
	incoming map[uint16]bool
	// the window may be exceeded after a session-present reconnect lowered
	// it; nothing new may be sent until the flight is back within it.
	overWindow bool
	held       []uint16 // in-flight ids whose replay the window held back, in order
}

func runRandomSession(t *testing.T, seed int64, steps int) {
	m := &randomModel{
		t:        t,
		rng:      rand.New(rand.NewSource(seed)),
		status:   map[int]reqStatus{},
		sentAt:   map[int]int{},
		incoming: map[uint16]bool{},
	}
	m.s = New(Config{MaxInflight: m.rng.Intn(6)})
	for step := range steps {
		switch r := m.rng.Intn(100); {
		case r < 30:
			m.enqueue()
		case r < 60:
			m.send()
		case r < 85:
			m.answer()
		case r < 90:
			m.incomingPublish()
		case r < 93:
			m.bogusAck()
		default:
			m.reconnect()
		}
		m.check(step)
	}
	// Drain: with the broker's defaults every request completes.
	m.connect(m.rng.Intn(2) == 0, nil)
	for i := 0; !m.s.Idle(); i++ {
		if i > 100000 {
			t.Fatalf("session does not drain")
		}
		if m.s.Queued() > 0 && m.rng.Intn(2) == 0 {
			m.send()
		} else if m.s.Outstanding() > 0 {
			m.answer()
		} else {
			m.send()
		}
		m.check(-1)
	}
	for tag, st := range m.status {
		if st != statusDone {
			t.Fatalf("request %d not completed after drain (status %d)", tag, st)
		}
	}
}

func (m *randomModel) done(tag any) {
	m.t.Helper()
	n, ok := tag.(int)
	if !ok {
		m.t.Fatalf("completion with tag %v", tag)
	}
	switch m.status[n] {
	case statusDone:
		m.t.Fatalf("request %d completed twice", n)
	case 0:
		m.t.Fatalf("request %d completed but never enqueued", n)
	}
	m.status[n] = statusDone
}

func (m *randomModel) enqueue() {
	var p packets.Packet
	switch k := m.rng.Intn(10); {
	case k < 2:
		p = pub("t", 0)
	case k < 5:
		p = pub("t", 1)
	case k < 8:
		p = pub("t", 2)
	case k < 9:
		p = sub("t", "u")
	default:
		p = unsub("t")
	}
	if pp, ok := p.(*packets.Publish); ok && m.rng.Intn(8) == 0 {
		pp.Retain = true
	}
	m.s.Enqueue(Pending{Packet: p, Tag: m.nextID})
	m.status[m.nextID] = statusQueued
	m.nextID++
}

func (m *randomModel) send() {
	t, s := m.t, m.s
	t.Helper()
	// Replays held back by the broker's Receive Maximum go first.
	m.held = slices.DeleteFunc(m.held, func(id uint16) bool { return !s.outgoing.Has(id) })
	if len(m.held) > 0 {
		room := s.InFlight()-len(m.held) < s.Window()
		n := s.NextToSend()
		pkt, ok := n.Packet, n.Packet != nil
		if n.Err != nil || ok != room {
			t.Fatalf("NextToSend() with %d held replays = ok %v, err %v; want ok %v (%d in flight, window %d)", len(m.held), ok, n.Err, room, s.InFlight(), s.Window())
		}
		if !ok {
			return
		}
		want := m.held[0]
		m.held = m.held[1:]
		if id := packetID(t, pkt); id != want {
			t.Fatalf("held replay released id %d, want %d (in order)", id, want)
		}
		o, _ := s.outgoing.Get(want)
		if o.Stage == AwaitingComplete {
			wantReply(t, pkt, &packets.Pubrel{PacketID: want})
		} else if pkt != o.Publish || !o.Publish.Duplicate {
			t.Fatalf("held replay %d: %v, want its publish with DUP", want, pkt)
		}
		return
	}
	queued := s.QueuedRequests()
	inFlightBefore := s.InFlight()
	busy := map[uint16]bool{}
	for id := range s.inUse {
		busy[id] = true
	}
	n := s.NextToSend()
	p, pkt, err := n.Pending, n.Packet, n.Err
	if pkt == nil {
		if err != nil {
			t.Fatalf("NextToSend() = %v", err)
		}
		if len(queued) == 0 {
			return
		}
		head, isPub := queued[0].Packet.(*packets.Publish)
		if !isPub || head.QoS == 0 || inFlightBefore < s.Window() {
			t.Fatalf("NextToSend() held back %T with %d of %d in flight", queued[0].Packet, inFlightBefore, s.Window())
		}
		return
	}
	if len(queued) == 0 || p.Tag != queued[0].Tag {
		t.Fatalf("NextToSend() returned %v, want the head of the queue", p.Tag)
	}
	tag := p.Tag.(int)
	if err != nil {
		if !errors.Is(err, ErrNotSupported) || pkt != p.Packet {
			t.Fatalf("NextToSend() = (%v, %v), want ErrNotSupported", pkt, err)
		}
		pp := p.Packet.(*packets.Publish)
		if pp.QoS <= s.Limits().MaximumQoS && (!pp.Retain || s.Limits().RetainAvailable) {
			t.Fatalf("publish refused within the broker's limits %+v", s.Limits())
		}
		m.done(tag)
		return
	}
	if m.status[tag] != statusQueued {
		t.Fatalf("sent request %d with status %d", tag, m.status[tag])
	}
	m.sends++
	m.sentAt[tag] = m.sends
	if pp, isPub := pkt.(*packets.Publish); isPub {
		if pp.QoS > s.Limits().MaximumQoS || (pp.Retain && !s.Limits().RetainAvailable) {
			t.Fatalf("sent a publish beyond the broker's limits %+v", s.Limits())
		}
		if pp.QoS == 0 {
			m.done(tag)
			return
		}
		if m.overWindow || s.InFlight() > s.Window() {
			t.Fatalf("sent a QoS %d publish with %d in flight, window %d", pp.QoS, inFlightBefore, s.Window())
		}
	}
	id := packetID(t, pkt)
	if id == 0 || busy[id] {
		t.Fatalf("%T sent with id %d, which is 0 or in use", pkt, id)
	}
	m.status[tag] = statusInFlight
}

// outstanding lists the requests awaiting an answer, in a deterministic
// order: publishes in send order, then (un)subscribes by id.
func (m *randomModel) outstanding() (pubs []Outgoing, reqs []uint16) {
	pubs = m.s.InFlightPublishes()
	for id := range m.s.subscribing.Keys() {
		reqs = append(reqs, id)
	}
	for id := range m.s.unsubscribing.Keys() {
		reqs = append(reqs, id)
	}
	slices.Sort(reqs)
	return pubs, reqs
}

func (m *randomModel) answer() {
	t, s := m.t, m.s
	t.Helper()
	pubs, reqs := m.outstanding()
	n := len(pubs) + len(reqs)
	if n == 0 {
		return
	}
	i := m.rng.Intn(n)
	if i >= len(pubs) {
		id := reqs[i-len(pubs)]
		var ev any
		if s.subscribing.Has(id) {
			ev, _ = handle(t, s, &packets.Suback{PacketID: id, Reasons: []byte{1, 0x80}})
			m.done(ev.(SubscribeDone).Tag)
		} else {
			ev, _ = handle(t, s, &packets.Unsuback{PacketID: id, Reasons: []byte{0}})
			m.done(ev.(UnsubscribeDone).Tag)
		}
		return
	}
	o := pubs[i]
	id := o.Publish.PacketID
	fail := m.rng.Intn(6) == 0
	var reason byte
	if fail {
		reason = 0x80
	}
	switch {
	case o.Publish.QoS == 1:
		ev, reply := handle(t, s, &packets.Puback{PacketID: id, ReasonCode: reason})
		wantReply(t, reply, nil)
		m.done(wantDone(t, ev, o.Publish, o.Tag, reason).Tag)
	case o.Stage == AwaitingAck:
		ev, reply := handle(t, s, &packets.Pubrec{PacketID: id, ReasonCode: reason})
		if fail {
			wantReply(t, reply, nil)
			m.done(wantDone(t, ev, o.Publish, o.Tag, reason).Tag)
		} else {
			wantNoEvent(t, ev)
			wantReply(t, reply, &packets.Pubrel{PacketID: id})
		}
	default:
		ev, reply := handle(t, s, &packets.Pubcomp{PacketID: id})
		wantReply(t, reply, nil)
		m.done(wantDone(t, ev, o.Publish, o.Tag, 0).Tag)
	}
}

// bogusAck sends an ack for an id with nothing to acknowledge: refused,
// with nothing changed.
func (m *randomModel) bogusAck() {
	t, s := m.t, m.s
	t.Helper()
	var id uint16
	for {
		id = uint16(1 + m.rng.Intn(65535))
		if _, used := s.inUse[id]; !used {
			break
		}
	}
	pkts := []packets.Packet{
		&packets.Puback{PacketID: id},
		&packets.Pubrec{PacketID: id},
		&packets.Pubcomp{PacketID: id},
		&packets.Suback{PacketID: id, Reasons: []byte{0}},
		&packets.Unsuback{PacketID: id, Reasons: []byte{0}},
	}
	before := snap(s)
	handleViolation(t, s, pkts[m.rng.Intn(len(pkts))])
	if after := snap(s); len(after.inFlight) != len(before.inFlight) || after.outstanding != before.outstanding || len(after.queued) != len(before.queued) {
		t.Fatalf("a refused ack changed the session")
	}
}

func (m *randomModel) incomingPublish() {
	t, s := m.t, m.s
	t.Helper()
	id := uint16(1 + m.rng.Intn(4))
	if m.rng.Intn(3) == 0 {
		if m.incoming[id] {
			_, reply := handle(t, s, &packets.Pubrel{PacketID: id})
			wantReply(t, reply, &packets.Pubcomp{PacketID: id})
			delete(m.incoming, id)
		}
		return
	}
	qos := byte(m.rng.Intn(3))
	p := &packets.Publish{Topic: "in", QoS: qos, PacketID: id}
	if qos == 0 {
		p.PacketID = 0
	}
	ev, reply := handle(t, s, p)
	switch {
	case qos == 2 && m.incoming[id]:
		wantNoEvent(t, ev)
		wantReply(t, reply, &packets.Pubrec{PacketID: id})
	case qos == 2:
		wantDelivered(t, ev, p)
		wantReply(t, reply, &packets.Pubrec{PacketID: id})
		m.incoming[id] = true
	default:
		wantDelivered(t, ev, p)
	}
}

func (m *randomModel) reconnect() {
	var props *packets.Properties
	if m.rng.Intn(2) == 0 {
		props = &packets.Properties{}
		if m.rng.Intn(2) == 0 {
			props.ReceiveMaximum = ptr(uint16(1 + m.rng.Intn(6)))
		}
		if m.rng.Intn(4) == 0 {
			props.MaximumQOS = ptr(byte(m.rng.Intn(2)))
		}
		if m.rng.Intn(4) == 0 {
			props.RetainAvailable = ptr(byte(0))
		}
	}
	m.connect(m.rng.Intn(2) == 0, props)
}

func (m *randomModel) connect(present bool, props *packets.Properties) {
	t, s := m.t, m.s
	t.Helper()
	queuedBefore := s.QueuedRequests()
	inFlight := s.InFlightPublishes()
	_, reqIDs := m.outstanding()
	var unanswered []int
	for _, id := range reqIDs {
		if p, ok := s.subscribing.Get(id); ok {
			unanswered = append(unanswered, p.Tag.(int))
		} else {
			u, _ := s.unsubscribing.Get(id)
			unanswered = append(unanswered, u.Tag.(int))
		}
	}
	total := s.Queued() + s.Outstanding()

	r := s.Connected(connack(present, props), false)

	if got := s.Queued() + s.Outstanding() + len(r.Completed); got != total {
		t.Fatalf("reconnect (session %v): %d requests before, %d after", present, total, got)
	}
	var requeued []int
	if present {
		wantHeld := max(0, len(inFlight)-s.Window())
		if len(r.Replay)+r.Held != len(inFlight) || r.Held != wantHeld || len(r.Completed) != 0 || s.InFlight() != len(inFlight) {
			t.Fatalf("session present: replay %d + held %d, completed %d, in flight %d; want %d + %d, 0, %d",
				len(r.Replay), r.Held, len(r.Completed), s.InFlight(), len(inFlight)-wantHeld, wantHeld, len(inFlight))
		}
		m.held = m.held[:0]
		for _, o := range inFlight[len(r.Replay):] {
			m.held = append(m.held, o.Publish.PacketID)
		}
		for i, o := range inFlight[:len(r.Replay)] {
			if o.Stage == AwaitingComplete {
				wantReply(t, r.Replay[i], &packets.Pubrel{PacketID: o.Publish.PacketID})
			} else if r.Replay[i] != o.Publish || !o.Publish.Duplicate {
				t.Fatalf("Replay[%d] = %v, want publish %v with DUP", i, r.Replay[i], o.Tag)
			}
		}
		requeued = unanswered
		m.overWindow = s.InFlight() > s.Window()
	} else {
		if len(r.Replay) != 0 || s.Outstanding() != 0 {
			t.Fatalf("session absent: replay %d, outstanding %d", len(r.Replay), s.Outstanding())
		}
		var completed []any
		for _, o := range inFlight {
			if o.Stage == AwaitingComplete {
				completed = append(completed, o.Tag)
			} else {
				requeued = append(requeued, o.Tag.(int))
			}
		}
		var got []any
		for _, c := range r.Completed {
			got = append(got, c.Tag)
			m.done(c.Tag)
		}
		if !slices.Equal(got, completed) {
			t.Fatalf("Completed = %v, want %v", got, completed)
		}
		requeued = append(requeued, unanswered...)
		clear(m.incoming)
		m.overWindow = false
		m.held = m.held[:0]
	}
	// Requeued requests come first, in the order they were sent, then
	// those that were waiting.
	slices.SortFunc(requeued, func(a, b int) int { return m.sentAt[a] - m.sentAt[b] })
	q := s.QueuedRequests()
	if len(q) != len(requeued)+len(queuedBefore) || r.Requeued != len(requeued) {
		t.Fatalf("queue has %d (Requeued %d), want %d requeued + %d waiting", len(q), r.Requeued, len(requeued), len(queuedBefore))
	}
	for i, tag := range requeued {
		if q[i].Tag != tag {
			t.Fatalf("queue[%d] = %v, want requeued %d (send order)", i, q[i].Tag, tag)
		}
		if p, ok := q[i].Packet.(*packets.Publish); ok && (p.Duplicate || p.PacketID != 0) {
			t.Fatalf("requeued publish %d: DUP %v, id %d", tag, p.Duplicate, p.PacketID)
		}
		m.status[tag] = statusQueued
	}
	if !sameRequests(q[len(requeued):], queuedBefore) {
		t.Fatalf("requests waiting before the reconnect are not behind the requeued ones, in order")
	}
}

func (m *randomModel) check(step int) {
	t, s := m.t, m.s
	t.Helper()
	checkInvariants(t, s)
	var queued, inFlight int
	for _, st := range m.status {
		switch st {
		case statusQueued:
			queued++
		case statusInFlight:
			inFlight++
		}
	}
	if queued != s.Queued() || inFlight != s.Outstanding() {
		t.Fatalf("step %d: model has %d queued, %d in flight; session %d, %d", step, queued, inFlight, s.Queued(), s.Outstanding())
	}
	if s.InFlight() <= s.Window() {
		m.overWindow = false
	} else if !m.overWindow {
		t.Fatalf("step %d: %d publishes in flight, window %d", step, s.InFlight(), s.Window())
	}
	if s.AwaitingRelease() != len(m.incoming) {
		t.Fatalf("step %d: AwaitingRelease() = %d, model %d", step, s.AwaitingRelease(), len(m.incoming))
	}
}
