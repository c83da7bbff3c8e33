package state

import (
	"errors"
	"reflect"
	"slices"
	"testing"

	"github.com/eclipse/paho.golang/packets"
)

func ptr[T any](v T) *T { return &v }

// in wraps a packet as if it came from the broker.
func in(p packets.Packet) *packets.ControlPacket { return &packets.ControlPacket{Content: p} }

func pub(topic string, qos byte) *packets.Publish {
	return &packets.Publish{Topic: topic, QoS: qos, Payload: []byte("payload of " + topic)}
}

func sub(filters ...string) *packets.Subscribe {
	s := &packets.Subscribe{}
	for _, f := range filters {
		s.Subscriptions = append(s.Subscriptions, packets.SubOptions{Topic: f, QoS: 1})
	}
	return s
}

func unsub(filters ...string) *packets.Unsubscribe { return &packets.Unsubscribe{Topics: filters} }

func connack(sessionPresent bool, props *packets.Properties) *packets.Connack {
	return &packets.Connack{SessionPresent: sessionPresent, Properties: props}
}

// packetID returns the packet id of an outgoing request packet.
func packetID(t *testing.T, pkt packets.Packet) uint16 {
	t.Helper()
	switch p := pkt.(type) {
	case *packets.Publish:
		return p.PacketID
	case *packets.Subscribe:
		return p.PacketID
	case *packets.Unsubscribe:
		return p.PacketID
	case *packets.Pubrel:
		return p.PacketID
	}
	t.Fatalf("packetID(%T)", pkt)
	return 0
}

// send takes the next request, which must be sendable.
func send(t *testing.T, s *MqttState) (Pending, packets.Packet) {
	t.Helper()
	n := s.NextToSend()
	if n.Packet == nil || n.Err != nil {
		t.Fatalf("NextToSend() = %+v; want a request to send", n)
	}
	return n.Pending, n.Packet
}

// sendID sends the next request and returns its packet id.
func sendID(t *testing.T, s *MqttState) uint16 {
	t.Helper()
	_, pkt := send(t, s)
	return packetID(t, pkt)
}

// noSend checks that nothing may be sent now and the queue is unchanged.
func noSend(t *testing.T, s *MqttState) {
	t.Helper()
	before := s.QueuedRequests()
	if n := s.NextToSend(); n != (ToSend{}) {
		t.Fatalf("NextToSend() = %+v, want nothing to send", n)
	}
	if after := s.QueuedRequests(); !sameRequests(before, after) {
		t.Fatalf("NextToSend() with nothing to send changed the queue")
	}
}

func sameRequests(a, b []Pending) bool {
	return slices.EqualFunc(a, b, func(x, y Pending) bool { return x.Packet == y.Packet && x.Tag == y.Tag })
}

// handle applies a packet from the broker that must be accepted.
func handle(t *testing.T, s *MqttState, p packets.Packet) (Event, packets.Packet) {
	t.Helper()
	ev, reply, err := s.HandleIncoming(in(p))
	if err != nil {
		t.Fatalf("HandleIncoming(%T %+v) = error %v, want none", p, p, err)
	}
	return ev, reply
}

// handleViolation applies a packet from the broker that breaks the protocol.
func handleViolation(t *testing.T, s *MqttState, p packets.Packet) {
	t.Helper()
	ev, reply, err := s.HandleIncoming(in(p))
	if !errors.Is(err, ErrProtocol) {
		t.Fatalf("HandleIncoming(%T %+v) = error %v, want one wrapping ErrProtocol", p, p, err)
	}
	if ev != nil || reply != nil {
		t.Fatalf("HandleIncoming(%T) with a protocol error returned event %v, reply %v; want none", p, ev, reply)
	}
}

func wantReply(t *testing.T, got, want packets.Packet) {
	t.Helper()
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("reply = %#v, want %#v", got, want)
	}
}

func wantNoEvent(t *testing.T, ev any) {
	t.Helper()
	if ev != nil {
		t.Fatalf("event = %#v, want none", ev)
	}
}

func wantDone(t *testing.T, ev any, p *packets.Publish, tag any, reason byte) PublishDone {
	t.Helper()
	d, ok := ev.(PublishDone)
	if !ok {
		t.Fatalf("event = %#v, want PublishDone", ev)
	}
	if d.Publish != p || d.Tag != tag || d.ReasonCode != reason {
		t.Fatalf("PublishDone = {%p %v reason %#x}, want {%p %v reason %#x}", d.Publish, d.Tag, d.ReasonCode, p, tag, reason)
	}
	return d
}

func wantDelivered(t *testing.T, ev any, p *packets.Publish) {
	t.Helper()
	d, ok := ev.(Delivered)
	if !ok || d.Publish != p {
		t.Fatalf("event = %#v, want Delivered of %p", ev, p)
	}
}

// checkInvariants checks the session's internal consistency: packet ids in
// use are exactly those of the requests awaiting an answer, never 0, never
// shared, and each request carries its own id.
func checkInvariants(t *testing.T, s *MqttState) {
	t.Helper()
	owner := make(map[uint16]string)
	claim := func(id uint16, what string) {
		t.Helper()
		if id == 0 {
			t.Fatalf("%s in flight with packet id 0", what)
		}
		if prev, dup := owner[id]; dup {
			t.Fatalf("packet id %d used by both %s and %s", id, prev, what)
		}
		if _, used := s.inUse[id]; !used {
			t.Fatalf("packet id %d of %s is not marked in use", id, what)
		}
		owner[id] = what
	}
	for id, o := range s.outgoing.All() {
		claim(id, "a publish")
		if o.Publish.PacketID != id {
			t.Fatalf("publish in flight under id %d carries id %d", id, o.Publish.PacketID)
		}
		if o.Publish.QoS != 1 && o.Publish.QoS != 2 {
			t.Fatalf("QoS %d publish in flight", o.Publish.QoS)
		}
		if o.Stage == AwaitingComplete && o.Publish.QoS != 2 {
			t.Fatalf("QoS %d publish awaiting PUBCOMP", o.Publish.QoS)
		}
	}
	for id, p := range s.subscribing.All() {
		claim(id, "a subscribe")
		if got := p.Packet.(*packets.Subscribe).PacketID; got != id {
			t.Fatalf("subscribe in flight under id %d carries id %d", id, got)
		}
	}
	for id, p := range s.unsubscribing.All() {
		claim(id, "an unsubscribe")
		if got := p.Packet.(*packets.Unsubscribe).PacketID; got != id {
			t.Fatalf("unsubscribe in flight under id %d carries id %d", id, got)
		}
	}
	if len(s.inUse) != len(owner) {
		t.Fatalf("%d packet ids marked in use, %d requests awaiting an answer", len(s.inUse), len(owner))
	}
	if s.Outstanding() != len(owner) {
		t.Fatalf("Outstanding() = %d, want %d", s.Outstanding(), len(owner))
	}
	if s.Idle() != (s.Queued() == 0 && len(owner) == 0) {
		t.Fatalf("Idle() = %v with %d queued and %d outstanding", s.Idle(), s.Queued(), len(owner))
	}
	fl := s.InFlightPublishes()
	if len(fl) != s.InFlight() {
		t.Fatalf("InFlightPublishes() has %d entries, InFlight() = %d", len(fl), s.InFlight())
	}
	for i := 1; i < len(fl); i++ {
		if fl[i-1].seq >= fl[i].seq {
			t.Fatalf("InFlightPublishes() not in send order: seq %d before %d", fl[i-1].seq, fl[i].seq)
		}
	}
}
