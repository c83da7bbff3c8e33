package state

import (
	"errors"
	"fmt"
	"reflect"
	"testing"

	"github.com/eclipse/paho.golang/packets"
)

func TestIncomingPublishAutoAck(t *testing.T) {
	for _, tc := range []struct {
		qos   byte
		id    uint16
		reply packets.Packet
	}{
		{0, 0, nil},
		{1, 1, &packets.Puback{PacketID: 1}},
		{1, 65535, &packets.Puback{PacketID: 65535}},
		{2, 7, &packets.Pubrec{PacketID: 7}},
		{2, 65535, &packets.Pubrec{PacketID: 65535}},
	} {
		t.Run(fmt.Sprintf("QoS%d/id%d", tc.qos, tc.id), func(t *testing.T) {
			s := New(Config{})
			p := &packets.Publish{Topic: "a/b", QoS: tc.qos, PacketID: tc.id, Payload: []byte("x")}
			ev, reply := handle(t, s, p)
			wantDelivered(t, ev, p)
			wantReply(t, reply, tc.reply)
			wantAwaiting := 0
			if tc.qos == 2 {
				wantAwaiting = 1
			}
			if s.AwaitingRelease() != wantAwaiting {
				t.Fatalf("AwaitingRelease() = %d, want %d", s.AwaitingRelease(), wantAwaiting)
			}
			if !s.Idle() {
				t.Fatalf("an incoming message made the session busy")
			}
		})
	}
}

// QoS 1 messages may come again (at least once): each is delivered.
func TestIncomingQoS1Redelivery(t *testing.T) {
	s := New(Config{})
	for range 2 {
		p := &packets.Publish{Topic: "a", QoS: 1, PacketID: 3, Duplicate: true}
		ev, reply := handle(t, s, p)
		wantDelivered(t, ev, p)
		wantReply(t, reply, &packets.Puback{PacketID: 3})
	}
}

// A QoS 2 message is delivered once: a duplicate before PUBREL only gets its
// PUBREC again; after PUBREL the id is free and a new message may use it.
func TestIncomingQoS2ExactlyOnce(t *testing.T) {
	s := New(Config{})
	first := &packets.Publish{Topic: "a", QoS: 2, PacketID: 7, Payload: []byte("1")}
	ev, reply := handle(t, s, first)
	wantDelivered(t, ev, first)
	wantReply(t, reply, &packets.Pubrec{PacketID: 7})

	for range 3 {
		dup := &packets.Publish{Topic: "a", QoS: 2, PacketID: 7, Duplicate: true, Payload: []byte("1")}
		ev, reply = handle(t, s, dup)
		wantNoEvent(t, ev)
		wantReply(t, reply, &packets.Pubrec{PacketID: 7})
	}
	if s.AwaitingRelease() != 1 {
		t.Fatalf("AwaitingRelease() = %d, want 1", s.AwaitingRelease())
	}

	// Another id meanwhile is its own message.
	other := &packets.Publish{Topic: "a", QoS: 2, PacketID: 8}
	ev, _ = handle(t, s, other)
	wantDelivered(t, ev, other)

	ev, reply = handle(t, s, &packets.Pubrel{PacketID: 7})
	wantNoEvent(t, ev)
	wantReply(t, reply, &packets.Pubcomp{PacketID: 7})
	if s.AwaitingRelease() != 1 {
		t.Fatalf("after PUBREL: AwaitingRelease() = %d, want 1", s.AwaitingRelease())
	}

	// The id is released: the same id is now a new message.
	second := &packets.Publish{Topic: "a", QoS: 2, PacketID: 7, Payload: []byte("2")}
	ev, reply = handle(t, s, second)
	wantDelivered(t, ev, second)
	wantReply(t, reply, &packets.Pubrec{PacketID: 7})

	// A QoS 1 or 0 message is never taken for a QoS 2 duplicate.
	q1 := &packets.Publish{Topic: "a", QoS: 1, PacketID: 8}
	ev, _ = handle(t, s, q1)
	wantDelivered(t, ev, q1)
}

// A PUBREL for an id the session does not know (e.g. a repeated PUBREL, or
// one for a session lost) is answered with PUBCOMP 0x92, not an error.
func TestIncomingPubrelUnknown(t *testing.T) {
	s := New(Config{})
	ev, reply := handle(t, s, &packets.Pubrel{PacketID: 9})
	wantNoEvent(t, ev)
	wantReply(t, reply, &packets.Pubcomp{PacketID: 9, ReasonCode: 0x92})

	handle(t, s, &packets.Publish{Topic: "a", QoS: 2, PacketID: 9})
	_, reply = handle(t, s, &packets.Pubrel{PacketID: 9})
	wantReply(t, reply, &packets.Pubcomp{PacketID: 9})
	_, reply = handle(t, s, &packets.Pubrel{PacketID: 9})
	wantReply(t, reply, &packets.Pubcomp{PacketID: 9, ReasonCode: packets.PubcompPacketIdentifierNotFound})
}

// The broker's packet ids and the client's are separate spaces.
func TestIncomingAndOutgoingIDsIndependent(t *testing.T) {
	s := New(Config{})
	out := pub("out", 2)
	s.Enqueue(Pending{Packet: out, Tag: "out"})
	id := sendID(t, s)

	inc := &packets.Publish{Topic: "in", QoS: 2, PacketID: id}
	ev, reply := handle(t, s, inc)
	wantDelivered(t, ev, inc)
	wantReply(t, reply, &packets.Pubrec{PacketID: id})

	_, reply = handle(t, s, &packets.Pubrec{PacketID: id})
	wantReply(t, reply, &packets.Pubrel{PacketID: id})
	_, reply = handle(t, s, &packets.Pubrel{PacketID: id})
	wantReply(t, reply, &packets.Pubcomp{PacketID: id})
	ev, _ = handle(t, s, &packets.Pubcomp{PacketID: id})
	wantDone(t, ev, out, "out", 0)
	if !s.Idle() || s.AwaitingRelease() != 0 {
		t.Fatalf("flows not both complete")
	}
}

// sessionWithFlows returns a session with one request of each kind in
// flight: QoS 1 publish id 1, QoS 2 publish id 2 (awaiting PUBREC), QoS 2
// publish id 3 (awaiting PUBCOMP), subscribe id 4, unsubscribe id 5, and
// incoming QoS 2 id 6 awaiting PUBREL.
func sessionWithFlows(t *testing.T, cfg Config) *MqttState {
	t.Helper()
	s := New(cfg)
	s.Enqueue(Pending{Packet: pub("q1", 1), Tag: "q1"})
	s.Enqueue(Pending{Packet: pub("q2", 2), Tag: "q2"})
	s.Enqueue(Pending{Packet: pub("q2c", 2), Tag: "q2c"})
	s.Enqueue(Pending{Packet: sub("s/#"), Tag: "sub"})
	s.Enqueue(Pending{Packet: unsub("u"), Tag: "unsub"})
	for want := uint16(1); want <= 5; want++ {
		if id := sendID(t, s); id != want {
			t.Fatalf("setup: id %d, want %d", id, want)
		}
	}
	if _, reply := handle(t, s, &packets.Pubrec{PacketID: 3}); reply == nil {
		t.Fatalf("setup: no PUBREL")
	}
	handle(t, s, &packets.Publish{Topic: "in", QoS: 2, PacketID: 6})
	s.Enqueue(Pending{Packet: pub("queued", 1), Tag: "queued"})
	checkInvariants(t, s)
	return s
}

type snapshot struct {
	queued          []Pending
	inFlight        []Outgoing
	outstanding     int
	awaitingRelease int
	subscriptions   map[string]packets.SubOptions
	incoming        map[uint16]bool
	unackedQoS1     map[uint16]struct{}
}

func snap(s *MqttState) snapshot {
	return snapshot{s.QueuedRequests(), s.InFlightPublishes(), s.Outstanding(), s.AwaitingRelease(), s.Subscriptions(), s.incomingQoS2.Clone(), s.unackedQoS1.Clone()}
}

func TestIncomingProtocolViolations(t *testing.T) {
	for _, tc := range []struct {
		name string
		pkt  packets.Packet
	}{
		{"PUBLISH with topic alias", &packets.Publish{Topic: "a", QoS: 1, PacketID: 9, Properties: &packets.Properties{TopicAlias: ptr[uint16](1)}}},
		{"PUBLISH with topic alias only", &packets.Publish{QoS: 0, Properties: &packets.Properties{TopicAlias: ptr[uint16](1)}}},
		{"PUBLISH QoS 2 with topic alias", &packets.Publish{Topic: "a", QoS: 2, PacketID: 9, Properties: &packets.Properties{TopicAlias: ptr[uint16](3)}}},
		{"PUBLISH with empty topic", &packets.Publish{QoS: 0}},
		{"PUBLISH QoS 1 id 0", &packets.Publish{Topic: "a", QoS: 1}},
		{"PUBLISH QoS 2 id 0", &packets.Publish{Topic: "a", QoS: 2}},
		{"PUBLISH QoS 3", &packets.Publish{Topic: "a", QoS: 3, PacketID: 9}},
		{"PUBLISH QoS 3 known id", &packets.Publish{Topic: "a", QoS: 3, PacketID: 6}},
		{"PUBACK unknown id", &packets.Puback{PacketID: 99}},
		{"PUBACK id 0", &packets.Puback{PacketID: 0}},
		{"PUBACK for QoS 2", &packets.Puback{PacketID: 2}},
		{"PUBACK for QoS 2 at PUBREL", &packets.Puback{PacketID: 3}},
		{"PUBACK for subscribe", &packets.Puback{PacketID: 4}},
		{"PUBACK for incoming id", &packets.Puback{PacketID: 6}},
		{"PUBREC unknown id", &packets.Pubrec{PacketID: 99}},
		{"PUBREC for QoS 1", &packets.Pubrec{PacketID: 1}},
		{"PUBREC for unsubscribe", &packets.Pubrec{PacketID: 5}},
		{"PUBCOMP unknown id", &packets.Pubcomp{PacketID: 99}},
		{"PUBCOMP for QoS 1", &packets.Pubcomp{PacketID: 1}},
		{"PUBCOMP before PUBREC", &packets.Pubcomp{PacketID: 2}},
		{"PUBCOMP for incoming id", &packets.Pubcomp{PacketID: 6}},
		{"SUBACK unknown id", &packets.Suback{PacketID: 99, Reasons: []byte{0}}},
		{"SUBACK for publish", &packets.Suback{PacketID: 1, Reasons: []byte{0}}},
		{"SUBACK for unsubscribe", &packets.Suback{PacketID: 5, Reasons: []byte{0}}},
		{"UNSUBACK unknown id", &packets.Unsuback{PacketID: 99, Reasons: []byte{0}}},
		{"UNSUBACK for subscribe", &packets.Unsuback{PacketID: 4, Reasons: []byte{0}}},
		{"UNSUBACK for publish", &packets.Unsuback{PacketID: 2, Reasons: []byte{0}}},
		{"CONNACK", &packets.Connack{Properties: &packets.Properties{}}},
		{"AUTH", &packets.Auth{Properties: &packets.Properties{}}},
		{"CONNECT", &packets.Connect{ProtocolName: "MQTT", ProtocolVersion: 5}},
		{"SUBSCRIBE", sub("a")},
		{"UNSUBSCRIBE", unsub("a")},
		{"PINGREQ", &packets.Pingreq{}},
		{"nil content", nil},
	} {
		for _, manual := range []bool{false, true} {
			t.Run(fmt.Sprintf("%s/manual=%v", tc.name, manual), func(t *testing.T) {
				s := sessionWithFlows(t, Config{ManualAcks: manual})
				before := snap(s)
				ev, reply, err := s.HandleIncoming(in(tc.pkt))
				if !errors.Is(err, ErrProtocol) {
					t.Fatalf("err = %v, want one wrapping ErrProtocol", err)
				}
				if ev != nil || reply != nil {
					t.Fatalf("event %v, reply %v; want none", ev, reply)
				}
				if after := snap(s); !reflect.DeepEqual(before, after) {
					t.Fatalf("a rejected packet changed the session:\nbefore %+v\nafter  %+v", before, after)
				}
				checkInvariants(t, s)
			})
		}
	}
}

func TestIncomingDisconnectAndPingresp(t *testing.T) {
	s := sessionWithFlows(t, Config{})
	before := snap(s)

	ev, reply := handle(t, s, &packets.Pingresp{})
	wantNoEvent(t, ev)
	if reply != nil {
		t.Fatalf("PINGRESP got reply %v", reply)
	}

	d := &packets.Disconnect{ReasonCode: packets.DisconnectServerShuttingDown, Properties: &packets.Properties{ReasonString: "bye"}}
	ev, reply = handle(t, s, d)
	if reply != nil {
		t.Fatalf("DISCONNECT got reply %v", reply)
	}
	if bd, ok := ev.(BrokerDisconnect); !ok || bd.Disconnect != d {
		t.Fatalf("event = %#v, want BrokerDisconnect of the packet", ev)
	}
	if after := snap(s); !reflect.DeepEqual(before, after) {
		t.Fatalf("PINGRESP/DISCONNECT changed the session")
	}
}

// Each known ack completes its own flow and only its own.
func TestIncomingAcksCompleteFlows(t *testing.T) {
	s := sessionWithFlows(t, Config{})
	ev, _ := handle(t, s, &packets.Puback{PacketID: 1})
	if d := ev.(PublishDone); d.Tag != "q1" {
		t.Fatalf("PUBACK 1 completed %v", d.Tag)
	}
	ev, _ = handle(t, s, &packets.Pubcomp{PacketID: 3})
	if d := ev.(PublishDone); d.Tag != "q2c" {
		t.Fatalf("PUBCOMP 3 completed %v", d.Tag)
	}
	suback := &packets.Suback{PacketID: 4, Reasons: []byte{2}}
	ev, _ = handle(t, s, suback)
	if d, ok := ev.(SubscribeDone); !ok || d.Tag != "sub" || d.Suback != suback || d.Subscribe.Subscriptions[0].Topic != "s/#" {
		t.Fatalf("SUBACK 4 = %#v", ev)
	}
	unsuback := &packets.Unsuback{PacketID: 5, Reasons: []byte{0}}
	ev, _ = handle(t, s, unsuback)
	if d, ok := ev.(UnsubscribeDone); !ok || d.Tag != "unsub" || d.Unsuback != unsuback || d.Unsubscribe.Topics[0] != "u" {
		t.Fatalf("UNSUBACK 5 = %#v", ev)
	}
	if s.Outstanding() != 1 || s.InFlightPublishes()[0].Tag != "q2" {
		t.Fatalf("left in flight: %+v", s.InFlightPublishes())
	}
	checkInvariants(t, s)
}

func TestManualAcksQoS1(t *testing.T) {
	s := New(Config{ManualAcks: true})

	q0 := &packets.Publish{Topic: "a", QoS: 0}
	ev, reply := handle(t, s, q0)
	wantDelivered(t, ev, q0)
	wantReply(t, reply, nil)

	for id := uint16(1); id <= 3; id++ {
		p := &packets.Publish{Topic: "a", QoS: 1, PacketID: id}
		ev, reply := handle(t, s, p)
		wantDelivered(t, ev, p)
		if reply != nil {
			t.Fatalf("manual-ack QoS 1 message %d answered with %v", id, reply)
		}
	}
	// Acked out of order, each with its own reason code.
	for _, a := range []struct {
		id     uint16
		reason byte
	}{{3, 0}, {1, packets.PubackImplementationSpecificError}, {2, 0}} {
		reply, err := s.Ack(a.id, 1, a.reason, 0)
		if err != nil {
			t.Fatalf("Ack(%d) = %v", a.id, err)
		}
		wantReply(t, reply, &packets.Puback{PacketID: a.id, ReasonCode: a.reason})
	}
	for id := uint16(1); id <= 3; id++ {
		if _, err := s.Ack(id, 1, 0, 0); !errors.Is(err, ErrUnknownPacketID) {
			t.Fatalf("second Ack(%d) = %v, want ErrUnknownPacketID", id, err)
		}
	}
}

func TestManualAcksQoS2(t *testing.T) {
	s := New(Config{ManualAcks: true})
	p := &packets.Publish{Topic: "a", QoS: 2, PacketID: 5}
	ev, reply := handle(t, s, p)
	wantDelivered(t, ev, p)
	wantReply(t, reply, nil)
	if s.AwaitingRelease() != 1 {
		t.Fatalf("AwaitingRelease() = %d, want 1", s.AwaitingRelease())
	}

	// A duplicate before the ack: not delivered again, nothing to send.
	ev, reply = handle(t, s, &packets.Publish{Topic: "a", QoS: 2, PacketID: 5, Duplicate: true})
	wantNoEvent(t, ev)
	wantReply(t, reply, nil)

	// The broker cannot release what it has not had PUBREC for.
	handleViolation(t, s, &packets.Pubrel{PacketID: 5})

	// An ack of the wrong QoS is refused.
	if _, err := s.Ack(5, 1, 0, 0); !errors.Is(err, ErrUnknownPacketID) {
		t.Fatalf("Ack(5, QoS 1) = %v, want ErrUnknownPacketID", err)
	}

	reply, err := s.Ack(5, 2, 0, 0)
	if err != nil {
		t.Fatalf("Ack(5, 2) = %v", err)
	}
	wantReply(t, reply, &packets.Pubrec{PacketID: 5})
	if _, err := s.Ack(5, 2, 0, 0); !errors.Is(err, ErrUnknownPacketID) {
		t.Fatalf("second Ack(5, 2) = %v, want ErrUnknownPacketID", err)
	}

	// A duplicate after the ack gets the PUBREC again.
	ev, reply = handle(t, s, &packets.Publish{Topic: "a", QoS: 2, PacketID: 5, Duplicate: true})
	wantNoEvent(t, ev)
	wantReply(t, reply, &packets.Pubrec{PacketID: 5})

	ev, reply = handle(t, s, &packets.Pubrel{PacketID: 5})
	wantNoEvent(t, ev)
	wantReply(t, reply, &packets.Pubcomp{PacketID: 5})
	if s.AwaitingRelease() != 0 {
		t.Fatalf("AwaitingRelease() = %d after PUBREL, want 0", s.AwaitingRelease())
	}
	again := &packets.Publish{Topic: "a", QoS: 2, PacketID: 5}
	ev, _ = handle(t, s, again)
	wantDelivered(t, ev, again)
}

func TestManualAcksQoS2AnyOrder(t *testing.T) {
	s := New(Config{ManualAcks: true})
	for id := uint16(1); id <= 3; id++ {
		handle(t, s, &packets.Publish{Topic: "a", QoS: 2, PacketID: id})
	}
	for _, id := range []uint16{3, 1, 2} {
		reply, err := s.Ack(id, 2, 0, 0)
		if err != nil {
			t.Fatalf("Ack(%d) = %v", id, err)
		}
		wantReply(t, reply, &packets.Pubrec{PacketID: id})
		_, reply = handle(t, s, &packets.Pubrel{PacketID: id})
		wantReply(t, reply, &packets.Pubcomp{PacketID: id})
	}
	if s.AwaitingRelease() != 0 {
		t.Fatalf("AwaitingRelease() = %d, want 0", s.AwaitingRelease())
	}
}

// Refusing a QoS 2 message (reason ≥ 0x80) ends its flow at PUBREC.
func TestManualAckQoS2Refused(t *testing.T) {
	s := New(Config{ManualAcks: true})
	handle(t, s, &packets.Publish{Topic: "a", QoS: 2, PacketID: 5})
	reply, err := s.Ack(5, 2, packets.PubrecNotAuthorized, 0)
	if err != nil {
		t.Fatalf("Ack = %v", err)
	}
	wantReply(t, reply, &packets.Pubrec{PacketID: 5, ReasonCode: packets.PubrecNotAuthorized})
	if s.AwaitingRelease() != 0 {
		t.Fatalf("refused message still awaits release")
	}
	_, reply = handle(t, s, &packets.Pubrel{PacketID: 5})
	wantReply(t, reply, &packets.Pubcomp{PacketID: 5, ReasonCode: 0x92})
	p := &packets.Publish{Topic: "a", QoS: 2, PacketID: 5}
	ev, _ := handle(t, s, p)
	wantDelivered(t, ev, p)

	// Below 0x80 the flow goes on.
	reply, _ = s.Ack(5, 2, packets.PubrecNoMatchingSubscribers, 0)
	wantReply(t, reply, &packets.Pubrec{PacketID: 5, ReasonCode: packets.PubrecNoMatchingSubscribers})
	if s.AwaitingRelease() != 1 {
		t.Fatalf("message acked with 0x10 no longer awaits release")
	}
}

func TestAckUnknown(t *testing.T) {
	s := New(Config{ManualAcks: true})
	handle(t, s, &packets.Publish{Topic: "a", QoS: 0})
	for _, tc := range []struct {
		id  uint16
		qos byte
	}{{0, 0}, {1, 0}, {1, 1}, {1, 2}, {0, 1}, {1, 3}, {1, 255}} {
		if reply, err := s.Ack(tc.id, tc.qos, 0, 0); !errors.Is(err, ErrUnknownPacketID) || reply != nil {
			t.Errorf("Ack(%d, QoS %d) = (%v, %v), want ErrUnknownPacketID", tc.id, tc.qos, reply, err)
		}
	}
	// Automatic acks leave nothing to acknowledge.
	s = New(Config{})
	handle(t, s, &packets.Publish{Topic: "a", QoS: 1, PacketID: 1})
	handle(t, s, &packets.Publish{Topic: "a", QoS: 2, PacketID: 2})
	if _, err := s.Ack(1, 1, 0, 0); !errors.Is(err, ErrUnknownPacketID) {
		t.Errorf("Ack of an auto-acked QoS 1 message = %v, want ErrUnknownPacketID", err)
	}
	if _, err := s.Ack(2, 2, 0, 0); !errors.Is(err, ErrUnknownPacketID) {
		t.Errorf("Ack of an auto-acked QoS 2 message = %v, want ErrUnknownPacketID", err)
	}
}

func TestSubscriptions(t *testing.T) {
	s := New(Config{})
	sb := &packets.Subscribe{Subscriptions: []packets.SubOptions{
		{Topic: "a/#", QoS: 1, NoLocal: true},
		{Topic: "b", QoS: 2},
	}}
	s.Enqueue(Pending{Packet: sb, Tag: "s"})
	id := sendID(t, s)
	if len(s.Subscriptions()) != 0 {
		t.Fatalf("subscription recorded before SUBACK")
	}
	suback := &packets.Suback{PacketID: id, Reasons: []byte{0x01, 0x80}}
	ev, reply := handle(t, s, suback)
	if reply != nil {
		t.Fatalf("SUBACK got reply %v", reply)
	}
	if d, ok := ev.(SubscribeDone); !ok || d.Subscribe != sb || d.Tag != "s" || d.Suback != suback {
		t.Fatalf("event = %#v, want SubscribeDone", ev)
	}
	want := map[string]packets.SubOptions{"a/#": {Topic: "a/#", QoS: 1, NoLocal: true}}
	got := s.Subscriptions()
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("Subscriptions() = %v, want %v", got, want)
	}
	// The result is a copy.
	delete(got, "a/#")
	if len(s.Subscriptions()) != 1 {
		t.Fatalf("modifying Subscriptions()' result changed the session")
	}
	handleViolation(t, s, suback) // already answered

	// A new SUBSCRIBE replaces the options of a granted filter.
	sb2 := &packets.Subscribe{Subscriptions: []packets.SubOptions{{Topic: "a/#", QoS: 0}, {Topic: "c", QoS: 1}}}
	s.Enqueue(Pending{Packet: sb2})
	id = sendID(t, s)
	handle(t, s, &packets.Suback{PacketID: id, Reasons: []byte{0x00, 0x87}})
	want = map[string]packets.SubOptions{"a/#": {Topic: "a/#", QoS: 0}}
	if got := s.Subscriptions(); !reflect.DeepEqual(got, want) {
		t.Fatalf("Subscriptions() = %v, want %v", got, want)
	}

	us := unsub("a/#", "never")
	s.Enqueue(Pending{Packet: us, Tag: "u"})
	id = sendID(t, s)
	if len(s.Subscriptions()) != 1 {
		t.Fatalf("subscription removed before UNSUBACK")
	}
	unsuback := &packets.Unsuback{PacketID: id, Reasons: []byte{0x00, 0x11}}
	ev, reply = handle(t, s, unsuback)
	if reply != nil {
		t.Fatalf("UNSUBACK got reply %v", reply)
	}
	if d, ok := ev.(UnsubscribeDone); !ok || d.Unsubscribe != us || d.Tag != "u" || d.Unsuback != unsuback {
		t.Fatalf("event = %#v, want UnsubscribeDone", ev)
	}
	if got := s.Subscriptions(); len(got) != 0 {
		t.Fatalf("Subscriptions() = %v after UNSUBACK, want none", got)
	}
	if !s.Idle() {
		t.Fatalf("session not idle")
	}
	checkInvariants(t, s)
}
