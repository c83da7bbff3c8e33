package state

import (
	"errors"
	"fmt"
	"testing"

	"github.com/eclipse/paho.golang/packets"
)

// PUBLISH, SUBSCRIBE and UNSUBSCRIBE share one id space: no two requests
// awaiting an answer ever carry the same id, and QoS 0 publishes take none.
func TestPacketIDsSharedAcrossKinds(t *testing.T) {
	s := New(Config{})
	inFlight := make(map[uint16]string) // id → request
	enqueueRound := func(round int) {
		for i := range 10 {
			s.Enqueue(Pending{Packet: pub(fmt.Sprintf("q1/%d/%d", round, i), 1)})
			s.Enqueue(Pending{Packet: pub(fmt.Sprintf("q2/%d/%d", round, i), 2)})
			s.Enqueue(Pending{Packet: sub(fmt.Sprintf("s/%d/%d", round, i))})
			s.Enqueue(Pending{Packet: unsub(fmt.Sprintf("u/%d/%d", round, i))})
			s.Enqueue(Pending{Packet: pub(fmt.Sprintf("q0/%d/%d", round, i), 0)})
		}
	}
	sendAll := func() {
		for s.Queued() > 0 {
			_, pkt := send(t, s)
			id := packetID(t, pkt)
			if p, isPub := pkt.(*packets.Publish); isPub && p.QoS == 0 {
				if id != 0 {
					t.Fatalf("QoS 0 publish got packet id %d", id)
				}
				continue
			}
			if id == 0 {
				t.Fatalf("%T got packet id 0", pkt)
			}
			if prev, dup := inFlight[id]; dup {
				t.Fatalf("packet id %d handed to %T while still used by %s", id, pkt, prev)
			}
			inFlight[id] = fmt.Sprintf("%T", pkt)
			checkInvariants(t, s)
		}
	}
	enqueueRound(0)
	sendAll()
	if got, want := s.Outstanding(), 40; got != want {
		t.Fatalf("Outstanding() = %d, want %d", got, want)
	}
	if got, want := s.InFlight(), 20; got != want {
		t.Fatalf("InFlight() = %d, want %d (QoS 0 publishes are not in flight)", got, want)
	}

	// Complete every other request, then send more: new ids never collide
	// with those still in use.
	n := 0
	for id, kind := range inFlight {
		n++
		if n%2 == 0 {
			continue
		}
		switch kind {
		case "*packets.Publish":
			if o, _ := s.outgoing.Get(id); o.Publish.QoS == 1 {
				handle(t, s, &packets.Puback{PacketID: id})
			} else {
				handle(t, s, &packets.Pubrec{PacketID: id})
				handle(t, s, &packets.Pubcomp{PacketID: id})
			}
		case "*packets.Subscribe":
			handle(t, s, &packets.Suback{PacketID: id, Reasons: []byte{1}})
		case "*packets.Unsubscribe":
			handle(t, s, &packets.Unsuback{PacketID: id, Reasons: []byte{0}})
		}
		delete(inFlight, id)
	}
	checkInvariants(t, s)
	enqueueRound(1)
	sendAll()
	checkInvariants(t, s)
}

// The id allocator wraps from 65535 to 1, skipping 0 and every id still in
// use, whatever kind of request holds it; a completed id comes back on the
// next lap.
func TestPacketIDWraparound(t *testing.T) {
	s := New(Config{})

	// Long-lived flows: a QoS 2 publish awaiting PUBCOMP, a subscribe and a
	// QoS 1 publish awaiting their acks.
	longQoS2 := pub("long/2", 2)
	s.Enqueue(Pending{Packet: longQoS2, Tag: "long2"})
	s.Enqueue(Pending{Packet: sub("long/sub")})
	longQoS1 := pub("long/1", 1)
	s.Enqueue(Pending{Packet: longQoS1, Tag: "long1"})
	held := map[uint16]bool{}
	for range 3 {
		held[sendID(t, s)] = true
	}
	if len(held) != 3 || !held[1] || !held[2] || !held[3] {
		t.Fatalf("first ids = %v, want 1, 2 and 3", held)
	}
	_, reply := handle(t, s, &packets.Pubrec{PacketID: longQoS2.PacketID})
	wantReply(t, reply, &packets.Pubrel{PacketID: longQoS2.PacketID})

	next := func(prev uint16) uint16 {
		for {
			prev++
			if prev != 0 && !held[prev] {
				return prev
			}
		}
	}
	prev := uint16(3)
	issue := func(i int) uint16 {
		var id uint16
		switch i % 3 {
		case 0:
			s.Enqueue(Pending{Packet: pub("t", 1)})
			id = sendID(t, s)
			handle(t, s, &packets.Puback{PacketID: id})
		case 1:
			s.Enqueue(Pending{Packet: pub("t", 2)})
			id = sendID(t, s)
			handle(t, s, &packets.Pubrec{PacketID: id})
			handle(t, s, &packets.Pubcomp{PacketID: id})
		case 2:
			s.Enqueue(Pending{Packet: unsub("t")})
			id = sendID(t, s)
			handle(t, s, &packets.Unsuback{PacketID: id, Reasons: []byte{0}})
		}
		if want := next(prev); id != want {
			t.Fatalf("request %d after id %d got id %d, want %d", i, prev, id, want)
		}
		prev = id
		return id
	}
	// Two full laps.
	wrapped := 0
	for i := range 2 * 65535 {
		before := prev
		if id := issue(i); id < before {
			wrapped++
		}
	}
	if wrapped != 2 {
		t.Fatalf("ids wrapped %d times in two laps, want 2", wrapped)
	}
	if s.InFlight() != 2 || s.Outstanding() != 3 {
		t.Fatalf("InFlight %d, Outstanding %d; want the long-lived 2 and 3", s.InFlight(), s.Outstanding())
	}
	checkInvariants(t, s)

	// The long-lived QoS 2 flow completes: its id is handed out on the next
	// lap, the others are still skipped.
	ev, _ := handle(t, s, &packets.Pubcomp{PacketID: longQoS2.PacketID})
	wantDone(t, ev, longQoS2, "long2", 0)
	delete(held, longQoS2.PacketID)
	sawOne := false
	for i := 0; i < 65535 && !sawOne; i++ {
		sawOne = issue(i) == 1
	}
	if !sawOne {
		t.Fatalf("id 1 was not handed out again after its flow completed")
	}
	ev, _ = handle(t, s, &packets.Puback{PacketID: longQoS1.PacketID})
	wantDone(t, ev, longQoS1, "long1", 0)
	checkInvariants(t, s)
}

// With all 65,535 ids in use, NextToSend reports ErrNoPacketID and keeps the
// request queued; the first id freed is taken by it.
func TestPacketIDExhaustion(t *testing.T) {
	s := New(Config{MaxInflight: 0})
	s.Connected(connack(false, &packets.Properties{ReceiveMaximum: ptr[uint16](65535)}), false)
	if s.Window() != 65535 {
		t.Fatalf("Window() = %d, want 65535", s.Window())
	}
	var seen [65536]bool
	for i := range 65535 {
		switch {
		case i < 1000:
			s.Enqueue(Pending{Packet: pub("p", 1+byte(i%2))})
		case i < 2000:
			s.Enqueue(Pending{Packet: unsub("u")})
		default:
			// SUBSCRIBEs do not count against the window.
			s.Enqueue(Pending{Packet: sub("s")})
		}
		id := sendID(t, s)
		if id == 0 || seen[id] {
			t.Fatalf("request %d got id %d, already in use or 0", i, id)
		}
		seen[id] = true
	}
	checkInvariants(t, s)

	last := sub("last")
	s.Enqueue(Pending{Packet: last, Tag: "last"})
	s.Enqueue(Pending{Packet: pub("behind", 0)})
	for range 2 {
		if n := s.NextToSend(); !errors.Is(n.Err, ErrNoPacketID) || n.Packet != nil || n.Tag != nil {
			t.Fatalf("NextToSend() with every id in use = %+v, want ErrNoPacketID and nothing to send", n)
		}
		if s.Queued() != 2 || s.QueuedRequests()[0].Packet != last {
			t.Fatalf("request refused for lack of ids left the head of the queue")
		}
	}

	// Free one id: the waiting subscribe takes it.
	handle(t, s, &packets.Suback{PacketID: 4242, Reasons: []byte{1}})
	p, _ := send(t, s)
	if p.Tag != "last" || last.PacketID != 4242 {
		t.Fatalf("after freeing id 4242, sent %v with id %d; want the waiting subscribe with id 4242", p.Tag, last.PacketID)
	}
	// A QoS 0 publish needs no id and goes out even now.
	_, pkt := send(t, s)
	if pkt.(*packets.Publish).Topic != "behind" {
		t.Fatalf("sent %v, want the QoS 0 publish", pkt)
	}
	checkInvariants(t, s)
}

// Outgoing ids avoid those the broker is using towards us (incoming QoS 2
// awaiting PUBREL, QoS 1 awaiting a manual ack): some brokers keep one
// in-flight table per client. Once released, they are usable again.
func TestPacketIDAvoidsBrokerIDs(t *testing.T) {
	s := New(Config{ManualAcks: true})
	handle(t, s, &packets.Publish{Topic: "in", QoS: 2, PacketID: 1})
	handle(t, s, &packets.Publish{Topic: "in", QoS: 1, PacketID: 2})
	handle(t, s, &packets.Publish{Topic: "in", QoS: 2, PacketID: 4})
	if _, err := s.Ack(4, 2, 0, 0); err != nil {
		t.Fatalf("Ack(4) = %v", err)
	}
	for _, want := range []uint16{3, 5} {
		s.Enqueue(Pending{Packet: pub("out", 1)})
		if id := sendID(t, s); id != want {
			t.Fatalf("outgoing id %d, want %d (skipping the broker's 1, 2 and 4)", id, want)
		}
	}
	if _, err := s.Ack(1, 2, 0, 0); err != nil {
		t.Fatalf("Ack(1) = %v", err)
	}
	handle(t, s, &packets.Pubrel{PacketID: 1})
	if _, err := s.Ack(2, 1, 0, 0); err != nil {
		t.Fatalf("Ack(2) = %v", err)
	}
	s.nextID = 0 // next lap
	for _, want := range []uint16{1, 2, 6} {
		s.Enqueue(Pending{Packet: sub("s")})
		if id := sendID(t, s); id != want {
			t.Fatalf("outgoing id %d, want %d", id, want)
		}
	}
	checkInvariants(t, s)
}

// A broker holding every packet id towards the client (65,535 QoS 2
// messages never released) does not starve the client's own publishes:
// the directions are independent in MQTT, so an id the broker uses is
// taken when no other is free, and the publish goes out at once.
func TestPacketIDsNotStarvedByBroker(t *testing.T) {
	s := New(Config{})
	for id := 1; id <= 65535; id++ {
		handle(t, s, &packets.Publish{Topic: "in", QoS: 2, PacketID: uint16(id)})
	}
	if got := s.IncomingHeld(); got != 65535 {
		t.Fatalf("IncomingHeld() = %d, want 65535", got)
	}
	for i := 0; i < 3; i++ {
		s.Enqueue(Pending{Packet: pub("out", 1)})
		if id := sendID(t, s); id == 0 {
			t.Fatal("outgoing publish got no packet id")
		}
	}
	if got := s.InFlight(); got != 3 {
		t.Fatalf("InFlight() = %d, want 3", got)
	}
	checkInvariants(t, s)
}
