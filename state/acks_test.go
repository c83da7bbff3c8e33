package state

import (
	"testing"

	"github.com/eclipse/paho.golang/packets"
)

func TestSubackReasonCountMustMatch(t *testing.T) {
	s := New(Config{})
	s.Enqueue(Pending{Packet: sub("a", "b")})
	id := sendID(t, s)
	handleViolation(t, s, &packets.Suback{PacketID: id, Reasons: []byte{0x01}})
}

func TestRefusedUnsubscribeKeepsSubscription(t *testing.T) {
	s := New(Config{})
	s.Enqueue(Pending{Packet: sub("a", "b")})
	id := sendID(t, s)
	handle(t, s, &packets.Suback{PacketID: id, Reasons: []byte{0x01, 0x01}})
	s.Enqueue(Pending{Packet: unsub("a", "b")})
	id = sendID(t, s)
	handle(t, s, &packets.Unsuback{PacketID: id, Reasons: []byte{0x87, 0x00}})
	subs := s.Subscriptions()
	if _, ok := subs["a"]; !ok {
		t.Error("refused unsubscribe removed filter a")
	}
	if _, ok := subs["b"]; ok {
		t.Error("granted unsubscribe kept filter b")
	}
}

// A replayed QoS 2 publish answered with PUBREC 0x91 ("packet identifier
// in use": the broker holds it awaiting PUBREL) continues with PUBREL; a
// first send answered so is a refusal.
func TestPubrecInUseAfterReplay(t *testing.T) {
	s := New(Config{})
	p1 := pub("t", 2)
	s.Enqueue(Pending{Packet: p1})
	id := sendID(t, s)
	s.Connected(connack(true, nil), false) // replay: DUP set
	_, reply := handle(t, s, &packets.Pubrec{PacketID: id, ReasonCode: 0x91})
	wantReply(t, reply, &packets.Pubrel{PacketID: id})
	ev, _ := handle(t, s, &packets.Pubcomp{PacketID: id})
	wantDone(t, ev, p1, nil, 0)

	p2 := pub("t", 2)
	s.Enqueue(Pending{Packet: p2})
	id = sendID(t, s)
	ev, reply = handle(t, s, &packets.Pubrec{PacketID: id, ReasonCode: 0x91})
	if reply != nil {
		t.Fatalf("first-send refusal answered with %T", reply)
	}
	wantDone(t, ev, p2, nil, 0x91)
}

// After a reconnect whose CONNACK lowered Receive Maximum, only that many
// in-flight publishes are replayed at once; the rest follow, in order and
// before anything new, as acks free the window (MQTT-3.3.4-7; found by the
// simulation, seed 1332).
func TestReplayHeldToReceiveMaximum(t *testing.T) {
	s := New(Config{})
	var ids []uint16
	for i := 0; i < 4; i++ {
		s.Enqueue(Pending{Packet: pub("t", 1), Tag: i})
		ids = append(ids, sendID(t, s))
	}
	s.Enqueue(Pending{Packet: pub("t", 1), Tag: "new"})
	r := s.Connected(connack(true, &packets.Properties{ReceiveMaximum: ptr(uint16(2))}), false)
	if len(r.Replay) != 2 || r.Held != 2 {
		t.Fatalf("replayed %d, held %d; want 2 and 2", len(r.Replay), r.Held)
	}
	noSend(t, s) // window full: neither the held replays nor the new publish
	handle(t, s, &packets.Puback{PacketID: ids[0]})
	n := s.NextToSend()
	if n.Packet == nil || n.Err != nil || packetID(t, n.Packet) != ids[2] || !n.Packet.(*packets.Publish).Duplicate {
		t.Fatalf("after one ack: %v %v, want the replay of id %d with DUP", n.Packet, n.Err, ids[2])
	}
	noSend(t, s)
	handle(t, s, &packets.Puback{PacketID: ids[1]})
	if id := sendID(t, s); id != ids[3] {
		t.Fatalf("released id %d, want %d", id, ids[3])
	}
	handle(t, s, &packets.Puback{PacketID: ids[2]})
	if n := s.NextToSend(); n.Packet == nil || n.Tag != "new" {
		t.Fatalf("after the replays: %v, want the new publish", n.Tag)
	}
}
