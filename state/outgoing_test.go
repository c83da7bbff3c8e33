package state

import (
	"errors"
	"fmt"
	"testing"

	"github.com/eclipse/paho.golang/packets"
)

func TestOutgoingQoS1(t *testing.T) {
	s := New(Config{})
	p := pub("a/b", 1)
	s.Enqueue(Pending{Packet: p, Tag: "tag1"})
	if s.InFlight() != 0 || p.PacketID != 0 {
		t.Fatalf("Enqueue alone put the publish in flight or gave it an id")
	}

	pend, pkt := send(t, s)
	if pend.Tag != "tag1" || pkt != p {
		t.Fatalf("NextToSend() = (%v, %p), want (tag1, %p)", pend.Tag, pkt, p)
	}
	id := p.PacketID
	if id == 0 {
		t.Fatalf("QoS 1 publish sent with packet id 0")
	}
	fl := s.InFlightPublishes()
	if len(fl) != 1 || fl[0].Publish != p || fl[0].Stage != AwaitingAck || fl[0].Tag != "tag1" {
		t.Fatalf("InFlightPublishes() = %+v, want the publish awaiting its ack", fl)
	}
	checkInvariants(t, s)

	// The wrong acks for a QoS 1 flow are violations and change nothing.
	handleViolation(t, s, &packets.Pubrec{PacketID: id})
	handleViolation(t, s, &packets.Pubcomp{PacketID: id})
	handleViolation(t, s, &packets.Suback{PacketID: id, Reasons: []byte{0}})
	handleViolation(t, s, &packets.Unsuback{PacketID: id, Reasons: []byte{0}})
	if s.InFlight() != 1 {
		t.Fatalf("a rejected ack changed the flight")
	}

	props := &packets.Properties{ReasonString: "nobody listens"}
	ev, reply := handle(t, s, &packets.Puback{PacketID: id, ReasonCode: packets.PubackNoMatchingSubscribers, Properties: props})
	if reply != nil {
		t.Fatalf("PUBACK got reply %v, want none", reply)
	}
	d := wantDone(t, ev, p, "tag1", packets.PubackNoMatchingSubscribers)
	if d.Properties != props {
		t.Fatalf("PublishDone.Properties = %v, want the PUBACK's", d.Properties)
	}
	if s.InFlight() != 0 || !s.Idle() || len(s.inUse) != 0 {
		t.Fatalf("after PUBACK: InFlight %d, Idle %v, ids in use %d", s.InFlight(), s.Idle(), len(s.inUse))
	}

	// A second PUBACK for the same id is a protocol violation.
	_, _, err := s.HandleIncoming(in(&packets.Puback{PacketID: id}))
	if !errors.Is(err, ErrProtocol) {
		t.Fatalf("second PUBACK: err = %v, want ErrProtocol", err)
	}
	checkInvariants(t, s)
}

func TestOutgoingQoS1FailureReason(t *testing.T) {
	s := New(Config{})
	p := pub("a", 1)
	s.Enqueue(Pending{Packet: p, Tag: 7})
	id := sendID(t, s)
	ev, _ := handle(t, s, &packets.Puback{PacketID: id, ReasonCode: packets.PubackNotAuthorized})
	wantDone(t, ev, p, 7, packets.PubackNotAuthorized)
	if !s.Idle() {
		t.Fatalf("session not idle after a failed PUBACK")
	}
}

func TestOutgoingQoS2(t *testing.T) {
	s := New(Config{})
	p := pub("a", 2)
	s.Enqueue(Pending{Packet: p, Tag: "q2"})
	id := sendID(t, s)
	if id == 0 {
		t.Fatalf("QoS 2 publish sent with packet id 0")
	}

	// PUBCOMP before PUBREC, and PUBACK for a QoS 2 flow, are violations.
	handleViolation(t, s, &packets.Pubcomp{PacketID: id})
	handleViolation(t, s, &packets.Puback{PacketID: id})
	if fl := s.InFlightPublishes(); len(fl) != 1 || fl[0].Stage != AwaitingAck {
		t.Fatalf("a rejected ack changed the flow: %+v", fl)
	}

	ev, reply := handle(t, s, &packets.Pubrec{PacketID: id})
	wantNoEvent(t, ev)
	wantReply(t, reply, &packets.Pubrel{PacketID: id})
	fl := s.InFlightPublishes()
	if len(fl) != 1 || fl[0].Stage != AwaitingComplete || fl[0].Publish != p {
		t.Fatalf("after PUBREC: InFlightPublishes() = %+v, want the publish awaiting PUBCOMP", fl)
	}
	if s.InFlight() != 1 || s.Outstanding() != 1 || s.Idle() {
		t.Fatalf("a publish awaiting PUBCOMP must stay in flight")
	}
	if _, used := s.inUse[id]; !used {
		t.Fatalf("id %d freed before PUBCOMP", id)
	}
	checkInvariants(t, s)

	ev, reply = handle(t, s, &packets.Pubcomp{PacketID: id})
	if reply != nil {
		t.Fatalf("PUBCOMP got reply %v, want none", reply)
	}
	wantDone(t, ev, p, "q2", 0)
	if !s.Idle() || len(s.inUse) != 0 {
		t.Fatalf("after PUBCOMP: Idle %v, ids in use %d", s.Idle(), len(s.inUse))
	}
	handleViolation(t, s, &packets.Pubcomp{PacketID: id})
	handleViolation(t, s, &packets.Pubrec{PacketID: id})
	checkInvariants(t, s)
}

// A PUBREC with a failure reason code ends the QoS 2 flow: no PUBREL.
func TestOutgoingQoS2PubrecFailure(t *testing.T) {
	for _, reason := range []byte{0x80, packets.PubrecNotAuthorized, packets.PubrecPacketIdentifierInUse, packets.PubrecQuotaExceeded, 0xff} {
		t.Run(fmt.Sprintf("%#x", reason), func(t *testing.T) {
			s := New(Config{})
			p := pub("a", 2)
			s.Enqueue(Pending{Packet: p, Tag: "q2"})
			id := sendID(t, s)
			ev, reply := handle(t, s, &packets.Pubrec{PacketID: id, ReasonCode: reason})
			if reply != nil {
				t.Fatalf("PUBREC %#x got reply %v, want none", reason, reply)
			}
			wantDone(t, ev, p, "q2", reason)
			if !s.Idle() || s.InFlight() != 0 || len(s.inUse) != 0 {
				t.Fatalf("flow not ended by PUBREC %#x", reason)
			}
			handleViolation(t, s, &packets.Pubcomp{PacketID: id})
			checkInvariants(t, s)
		})
	}
	// Below 0x80 the flow goes on.
	s := New(Config{})
	s.Enqueue(Pending{Packet: pub("a", 2)})
	id := sendID(t, s)
	ev, reply := handle(t, s, &packets.Pubrec{PacketID: id, ReasonCode: packets.PubrecNoMatchingSubscribers})
	wantNoEvent(t, ev)
	wantReply(t, reply, &packets.Pubrel{PacketID: id})
}

func TestOutgoingQoS0(t *testing.T) {
	s := New(Config{})
	p := pub("a", 0)
	s.Enqueue(Pending{Packet: p, Tag: "q0"})
	if s.Idle() || s.Queued() != 1 {
		t.Fatalf("queued QoS 0 publish: Idle %v, Queued %d", s.Idle(), s.Queued())
	}
	pend, pkt := send(t, s)
	if pend.Tag != "q0" || pkt != p || p.PacketID != 0 {
		t.Fatalf("QoS 0 send = (%v, %p, id %d), want (q0, %p, id 0)", pend.Tag, pkt, p.PacketID, p)
	}
	if s.InFlight() != 0 || s.Outstanding() != 0 || !s.Idle() || len(s.inUse) != 0 {
		t.Fatalf("QoS 0 publish left state behind: InFlight %d, Outstanding %d, ids %d", s.InFlight(), s.Outstanding(), len(s.inUse))
	}
	noSend(t, s)
}

func TestNextToSendEmpty(t *testing.T) {
	s := New(Config{})
	noSend(t, s)
	if !s.Idle() {
		t.Fatalf("new session not idle")
	}
}

func TestNextToSendUnknownRequest(t *testing.T) {
	s := New(Config{})
	s.Enqueue(Pending{Packet: &packets.Pingreq{}, Tag: "ping"})
	s.Enqueue(Pending{Packet: pub("next", 1)})
	if n := s.NextToSend(); n.Err == nil || n.Tag != "ping" {
		t.Fatalf("NextToSend() of a PINGREQ request = %+v, want it refused", n)
	}
	if len(s.inUse) != 0 {
		t.Fatalf("refused request kept a packet id")
	}
	if id := sendID(t, s); id == 0 {
		t.Fatalf("next request got id 0")
	}
	checkInvariants(t, s)
}

// Config.MaxInflight caps QoS 1 and 2 publishes in flight; the queue stays
// FIFO: nothing overtakes a publish waiting for the window.
func TestWindowMaxInflight(t *testing.T) {
	s := New(Config{MaxInflight: 3})
	if s.Window() != 3 {
		t.Fatalf("Window() = %d, want 3", s.Window())
	}
	pubs := make([]*packets.Publish, 4)
	for i := range pubs {
		pubs[i] = pub(fmt.Sprintf("p%d", i), 1+byte(i%2))
		s.Enqueue(Pending{Packet: pubs[i], Tag: i})
	}
	q0 := pub("q0", 0)
	s.Enqueue(Pending{Packet: q0, Tag: "q0"})
	sb := sub("s")
	s.Enqueue(Pending{Packet: sb, Tag: "sub"})

	for i := range 3 {
		if p, _ := send(t, s); p.Tag != i {
			t.Fatalf("sent %v, want %d", p.Tag, i)
		}
	}
	if s.InFlight() != 3 {
		t.Fatalf("InFlight() = %d, want 3", s.InFlight())
	}
	// The 4th publish waits, and the QoS 0 publish and SUBSCRIBE behind it
	// wait too.
	for range 3 {
		noSend(t, s)
	}
	if got := s.QueuedRequests(); len(got) != 3 || got[0].Packet != pubs[3] || got[1].Packet != q0 || got[2].Packet != sb {
		t.Fatalf("QueuedRequests() = %v, want [p3 q0 sub]", got)
	}

	// QoS 2 at PUBREC still holds its slot.
	handle(t, s, &packets.Pubrec{PacketID: pubs[1].PacketID})
	noSend(t, s)

	// One completes: the 4th goes, then the others in order.
	handle(t, s, &packets.Pubcomp{PacketID: pubs[1].PacketID})
	for _, want := range []any{3, "q0", "sub"} {
		if p, _ := send(t, s); p.Tag != want {
			t.Fatalf("sent %v, want %v", p.Tag, want)
		}
	}
	noSend(t, s)
	if s.InFlight() != 3 || s.Outstanding() != 4 {
		t.Fatalf("InFlight %d, Outstanding %d; want 3 and 4", s.InFlight(), s.Outstanding())
	}

	// SUBSCRIBE and QoS 0 do not need the window.
	s.Enqueue(Pending{Packet: sub("s2"), Tag: "sub2"})
	s.Enqueue(Pending{Packet: unsub("s2"), Tag: "unsub2"})
	s.Enqueue(Pending{Packet: pub("q0b", 0), Tag: "q0b"})
	for _, want := range []any{"sub2", "unsub2", "q0b"} {
		if p, _ := send(t, s); p.Tag != want {
			t.Fatalf("with a full window sent %v, want %v", p.Tag, want)
		}
	}
	checkInvariants(t, s)
}

func TestWindow(t *testing.T) {
	for _, tc := range []struct {
		maxInflight int
		props       *packets.Properties
		want        int
	}{
		{0, nil, 65535},
		{-1, nil, 65535},
		{3, nil, 3},
		{70000, nil, 65535},
		{0, &packets.Properties{ReceiveMaximum: ptr[uint16](2)}, 2},
		{1, &packets.Properties{ReceiveMaximum: ptr[uint16](2)}, 1},
		{5, &packets.Properties{ReceiveMaximum: ptr[uint16](2)}, 2},
		{0, &packets.Properties{ReceiveMaximum: ptr[uint16](0)}, 65535}, // 0 is invalid: ignored
		{0, &packets.Properties{}, 65535},
	} {
		s := New(Config{MaxInflight: tc.maxInflight})
		s.Connected(connack(false, tc.props), false)
		if got := s.Window(); got != tc.want {
			t.Errorf("MaxInflight %d, CONNACK %+v: Window() = %d, want %d", tc.maxInflight, tc.props, got, tc.want)
		}
	}
}

func TestWindowReceiveMaximum(t *testing.T) {
	s := New(Config{})
	s.Connected(connack(false, &packets.Properties{ReceiveMaximum: ptr[uint16](2)}), false)
	if s.Window() != 2 || s.Limits().ReceiveMaximum != 2 {
		t.Fatalf("Window() = %d, Limits().ReceiveMaximum = %d; want 2", s.Window(), s.Limits().ReceiveMaximum)
	}
	for i := range 3 {
		s.Enqueue(Pending{Packet: pub("p", 1), Tag: i})
	}
	a := sendID(t, s)
	sendID(t, s)
	noSend(t, s)
	handle(t, s, &packets.Puback{PacketID: a})
	if p, _ := send(t, s); p.Tag != 2 {
		t.Fatalf("sent %v, want 2", p.Tag)
	}

	// A later CONNACK without the property restores the default.
	s.Connected(connack(true, nil), false)
	if s.Window() != 65535 {
		t.Fatalf("after a CONNACK without Receive Maximum, Window() = %d, want 65535", s.Window())
	}
}

func TestConnectedLimits(t *testing.T) {
	s := New(Config{})
	if s.Limits() != DefaultLimits {
		t.Fatalf("new session limits = %+v, want %+v", s.Limits(), DefaultLimits)
	}
	s.Connected(connack(false, &packets.Properties{
		ReceiveMaximum:    ptr[uint16](10),
		MaximumPacketSize: ptr[uint32](1024),
		TopicAliasMaximum: ptr[uint16](5),
		MaximumQOS:        ptr[byte](1),
		RetainAvailable:   ptr[byte](0),
	}), false)
	want := Limits{ReceiveMaximum: 10, MaximumPacketSize: 1024, TopicAliasMaximum: 5, MaximumQoS: 1, RetainAvailable: false}
	if s.Limits() != want {
		t.Fatalf("Limits() = %+v, want %+v", s.Limits(), want)
	}
	// Receive Maximum 0 is not allowed: the default stays.
	s.Connected(connack(true, &packets.Properties{RetainAvailable: ptr[byte](1), ReceiveMaximum: ptr[uint16](0)}), false)
	if s.Limits() != DefaultLimits {
		t.Fatalf("limits not reset by a new CONNACK: %+v, want %+v", s.Limits(), DefaultLimits)
	}
}

// Requests the broker said it cannot take are refused one by one, without
// taking a packet id or a window slot, and what follows goes on.
func TestNotSupported(t *testing.T) {
	for _, tc := range []struct {
		name  string
		props *packets.Properties
		bad   *packets.Publish
	}{
		{"QoS 2 above maximum 1", &packets.Properties{MaximumQOS: ptr[byte](1)}, pub("q2", 2)},
		{"QoS 1 above maximum 0", &packets.Properties{MaximumQOS: ptr[byte](0)}, pub("q1", 1)},
		{"QoS 2 above maximum 0", &packets.Properties{MaximumQOS: ptr[byte](0)}, pub("q2", 2)},
		{"retained QoS 0", &packets.Properties{RetainAvailable: ptr[byte](0)}, &packets.Publish{Topic: "r", QoS: 0, Retain: true}},
		{"retained QoS 1", &packets.Properties{RetainAvailable: ptr[byte](0)}, &packets.Publish{Topic: "r", QoS: 1, Retain: true}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := New(Config{MaxInflight: 1})
			s.Connected(connack(false, tc.props), false)
			ok0 := pub("fine", 0)
			s.Enqueue(Pending{Packet: tc.bad, Tag: "bad"})
			s.Enqueue(Pending{Packet: ok0, Tag: "fine"})
			n := s.NextToSend()
			if !errors.Is(n.Err, ErrNotSupported) || n.Tag != "bad" || n.Packet != tc.bad {
				t.Fatalf("NextToSend() = (%v, %v, err %v), want the request refused with ErrNotSupported", n.Tag, n.Packet, n.Err)
			}
			if tc.bad.PacketID != 0 || s.InFlight() != 0 || len(s.inUse) != 0 || s.Queued() != 1 {
				t.Fatalf("refused request left state: id %d, InFlight %d, ids %d, Queued %d", tc.bad.PacketID, s.InFlight(), len(s.inUse), s.Queued())
			}
			if p, _ := send(t, s); p.Tag != "fine" {
				t.Fatalf("sent %v after the refusal, want fine", p.Tag)
			}
			checkInvariants(t, s)
		})
	}

	// At the limit is fine.
	s := New(Config{})
	s.Connected(connack(false, &packets.Properties{MaximumQOS: ptr[byte](1), RetainAvailable: ptr[byte](1)}), false)
	s.Enqueue(Pending{Packet: &packets.Publish{Topic: "r", QoS: 1, Retain: true}})
	sendID(t, s)
}

// A refused request at the head of the queue is refused even when the window
// is full: it never waits for a slot it could not use.
func TestNotSupportedWithFullWindow(t *testing.T) {
	s := New(Config{MaxInflight: 1})
	s.Connected(connack(false, &packets.Properties{MaximumQOS: ptr[byte](1)}), false)
	s.Enqueue(Pending{Packet: pub("a", 1)})
	sendID(t, s)
	s.Enqueue(Pending{Packet: pub("b", 2), Tag: "b"})
	if n := s.NextToSend(); n.Packet == nil || !errors.Is(n.Err, ErrNotSupported) || n.Tag != "b" {
		t.Fatalf("NextToSend() = (%v, err %v), want b refused", n.Tag, n.Err)
	}
}

func TestAbandon(t *testing.T) {
	for _, tc := range []struct {
		name string
		pkt  packets.Packet
		ack  packets.Packet // the broker's answer, which must now be unknown
	}{
		{"QoS 1", pub("a", 1), &packets.Puback{}},
		{"QoS 2", pub("a", 2), &packets.Pubrec{}},
		{"subscribe", sub("a"), &packets.Suback{Reasons: []byte{0}}},
		{"unsubscribe", unsub("a"), &packets.Unsuback{Reasons: []byte{0}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := New(Config{MaxInflight: 1})
			keep := pub("keep", 1)
			s.Enqueue(Pending{Packet: sub("keep")})
			s.Enqueue(Pending{Packet: tc.pkt})
			sendID(t, s)
			_, pkt := send(t, s)
			id := packetID(t, pkt)
			s.Abandon(pkt)
			if s.InFlight() != 0 || s.Outstanding() != 1 || len(s.inUse) != 1 {
				t.Fatalf("after Abandon: InFlight %d, Outstanding %d, ids %d; want 0, 1, 1", s.InFlight(), s.Outstanding(), len(s.inUse))
			}
			if _, used := s.inUse[id]; used {
				t.Fatalf("Abandon did not free id %d", id)
			}
			checkInvariants(t, s)
			switch a := tc.ack.(type) {
			case *packets.Puback:
				a.PacketID = id
			case *packets.Pubrec:
				a.PacketID = id
			case *packets.Suback:
				a.PacketID = id
			case *packets.Unsuback:
				a.PacketID = id
			}
			handleViolation(t, s, tc.ack)
			// The window slot is free again.
			s.Enqueue(Pending{Packet: keep})
			sendID(t, s)
		})
	}

	// Abandoning a QoS 0 publish changes nothing.
	s := New(Config{})
	s.Enqueue(Pending{Packet: pub("a", 1)})
	sendID(t, s)
	q0 := pub("b", 0)
	s.Enqueue(Pending{Packet: q0})
	send(t, s)
	s.Abandon(q0)
	if s.InFlight() != 1 {
		t.Fatalf("abandoning a QoS 0 publish removed another flow")
	}
	checkInvariants(t, s)
}

// Idle, Outstanding, Queued and InFlight across one flow of each kind.
func TestAccounting(t *testing.T) {
	s := New(Config{})
	type counts struct {
		queued, outstanding, inFlight, awaitingRelease int
		idle                                           bool
	}
	check := func(step string, want counts) {
		t.Helper()
		got := counts{s.Queued(), s.Outstanding(), s.InFlight(), s.AwaitingRelease(), s.Idle()}
		if got != want {
			t.Fatalf("%s: got %+v, want %+v", step, got, want)
		}
		if len(s.QueuedRequests()) != s.Queued() || len(s.InFlightPublishes()) != s.InFlight() {
			t.Fatalf("%s: QueuedRequests/InFlightPublishes disagree with Queued/InFlight", step)
		}
		checkInvariants(t, s)
	}
	check("new", counts{0, 0, 0, 0, true})

	q1, q2, sb, us, q0 := pub("q1", 1), pub("q2", 2), sub("s"), unsub("s"), pub("q0", 0)
	for _, p := range []packets.Packet{q1, q2, sb, us, q0} {
		s.Enqueue(Pending{Packet: p})
	}
	check("enqueued", counts{5, 0, 0, 0, false})
	send(t, s)
	check("QoS 1 sent", counts{4, 1, 1, 0, false})
	send(t, s)
	check("QoS 2 sent", counts{3, 2, 2, 0, false})
	send(t, s)
	check("subscribe sent", counts{2, 3, 2, 0, false})
	send(t, s)
	check("unsubscribe sent", counts{1, 4, 2, 0, false})
	send(t, s)
	check("QoS 0 sent", counts{0, 4, 2, 0, false})

	handle(t, s, &packets.Puback{PacketID: q1.PacketID})
	check("PUBACK", counts{0, 3, 1, 0, false})
	handle(t, s, &packets.Pubrec{PacketID: q2.PacketID})
	check("PUBREC", counts{0, 3, 1, 0, false})
	handle(t, s, &packets.Suback{PacketID: sb.PacketID, Reasons: []byte{1}})
	check("SUBACK", counts{0, 2, 1, 0, false})

	// Incoming QoS 2 awaiting release is not a request of ours.
	handle(t, s, &packets.Publish{Topic: "in", QoS: 2, PacketID: 9})
	check("incoming QoS 2", counts{0, 2, 1, 1, false})
	handle(t, s, &packets.Unsuback{PacketID: us.PacketID, Reasons: []byte{0}})
	check("UNSUBACK", counts{0, 1, 1, 1, false})
	handle(t, s, &packets.Pubcomp{PacketID: q2.PacketID})
	check("PUBCOMP", counts{0, 0, 0, 1, true})
	handle(t, s, &packets.Pubrel{PacketID: 9})
	check("PUBREL", counts{0, 0, 0, 0, true})
}

// The queue of a session whose backlog never drains (a full window and a
// steady producer) must not grow with the number of requests ever queued.
func TestQueueMemoryBounded(t *testing.T) {
	s := New(Config{})
	const backlog = 8
	next, want := 0, 0
	for range backlog {
		s.Enqueue(Pending{Packet: pub("t", 0), Tag: next})
		next++
	}
	for range 100_000 {
		s.Enqueue(Pending{Packet: pub("t", 0), Tag: next})
		next++
		p, _ := send(t, s)
		if p.Tag != want {
			t.Fatalf("sent request %v, want %d (FIFO)", p.Tag, want)
		}
		want++
		if s.Queued() != backlog {
			t.Fatalf("Queued() = %d, want %d", s.Queued(), backlog)
		}
	}
	if c := s.queue.Cap(); c > 64*backlog {
		t.Fatalf("queue capacity %d for a backlog of %d: the queue leaks sent requests", c, backlog)
	}
	q := s.QueuedRequests()
	for i, p := range q {
		if p.Tag != want+i {
			t.Fatalf("QueuedRequests()[%d] = %v, want %d", i, p.Tag, want+i)
		}
	}
}

// Requests put back at the head of the queue keep the order they were sent
// in, across kinds and across a packet id wraparound.
func TestPushFrontKeepsQueuedOrder(t *testing.T) {
	s := New(Config{})
	for i := range 3 {
		s.Enqueue(Pending{Packet: pub("t", 1), Tag: i})
	}
	sendID(t, s)
	s.Connected(connack(false, nil), false) // request 0 back at the head
	s.Enqueue(Pending{Packet: pub("t", 1), Tag: 3})
	for i := range 4 {
		if p, _ := send(t, s); p.Tag != i {
			t.Fatalf("sent %v, want %d", p.Tag, i)
		}
	}
}

// SetConfig takes effect for what follows: the window and the ack mode.
func TestSetConfig(t *testing.T) {
	s := New(Config{})
	s.SetConfig(Config{MaxInflight: 1, ManualAcks: true})
	if s.Window() != 1 {
		t.Fatalf("Window() = %d after SetConfig, want 1", s.Window())
	}
	s.Enqueue(Pending{Packet: pub("a", 1)})
	s.Enqueue(Pending{Packet: pub("b", 1)})
	sendID(t, s)
	noSend(t, s)
	_, reply := handle(t, s, &packets.Publish{Topic: "in", QoS: 1, PacketID: 1})
	wantReply(t, reply, nil)
	if _, err := s.Ack(1, 1, 0, 0); err != nil {
		t.Fatalf("Ack after SetConfig(ManualAcks) = %v", err)
	}
}
