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
